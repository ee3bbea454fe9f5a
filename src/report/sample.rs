//! A small made-up computation that puts a row in every report section,
//! so `check` can render a user's templates the way a run would (a
//! template error would otherwise surface only at night, after the
//! ingest). Nothing here is a real number or reaches a report.

use chrono::NaiveDate;

use crate::metrics::changes::TierChange;
use crate::metrics::scorecard::RepScore;
use crate::metrics::tiers::{Lifecycle, SubScores, TierResult};
use crate::metrics::{development, visits, Computed, Customer, PeriodRange, Rep, Rules};

pub const REGION: &str = "示例大区";

/// One customer of the highest tier (so it has a visit gap), one tier
/// change, one rep with a KPI, in one region.
pub fn computed(rules: &Rules, as_of: NaiveDate) -> Computed {
    let period = PeriodRange::new(as_of, rules.period);
    let tiers_config = &rules.tiering;
    let top = tiers_config.tiers.first().map_or("A", |t| t.name.as_str());
    let lower = tiers_config.tiers.get(1).map_or(top, |t| t.name.as_str());
    let tiers = vec![TierResult {
        customer_id: "C1".into(),
        name: "示例医院".into(),
        region: REGION.into(),
        rep_id: "R1".into(),
        avg_monthly_sales: 1000.0,
        growth: 0.1,
        breadth: 0.5,
        loyalty: 1.0,
        prospect: 50.0,
        sub: SubScores::default(),
        score: 95.0,
        tier: top.into(),
        lifecycle: Lifecycle::Existing,
        near_boundary: false,
    }];
    let changes = vec![TierChange {
        customer_id: "C1".into(),
        name: "示例医院".into(),
        region: REGION.into(),
        rep_id: "R1".into(),
        from_tier: lower.into(),
        to_tier: top.into(),
        upgrade: true,
        previous_score: 80.0,
        score: 95.0,
        delta: 15.0,
        driver: "sales".into(),
        driver_delta: 10.0,
    }];
    let visits = visits::compute(&tiers, &[], tiers_config, &period, 1);
    let customers = vec![Customer {
        customer_id: "C1".into(),
        name: "示例医院".into(),
        region: REGION.into(),
        rep_id: "R1".into(),
        ..Customer::default()
    }];
    let reps = vec![Rep {
        rep_id: "R1".into(),
        name: "示例代表".into(),
        region: REGION.into(),
    }];
    let development = development::compute(
        &customers,
        &reps,
        &Default::default(),
        &Default::default(),
        &[],
        rules.development,
        &period,
        as_of,
    );
    let scorecard = vec![RepScore {
        rep_id: "R1".into(),
        name: "示例代表".into(),
        region: REGION.into(),
        sales: 1000.0,
        sales_target: Some(2000.0),
        expected_sales: Some(1000.0),
        sales_achievement: Some(0.5),
        active_customers: 1,
        new_customers: 0,
        new_customer_target: None,
        visit_attainment: Some(0.5),
        visit_coverage: Some(1.0),
        visit_pace: Some(0.75),
        avg_satisfaction: Some(80.0),
        kpi: Some(80.0),
        rank: 1,
    }];
    Computed {
        as_of,
        period,
        tiers,
        changes,
        visits,
        development,
        scorecard,
        tiers_compared: true,
        tiers_not_compared: Default::default(),
        regions_not_compared: Default::default(),
    }
}
