//! Rep scorecards (业绩考核), SPEC §5: sales against a pace-adjusted target, new
//! customers, visits and satisfaction, combined into a KPI whose weights are
//! re-scaled over the components that can be measured, ranked within region.

use std::collections::{BTreeMap, HashMap};

use chrono::{Months, NaiveDate};
use serde::{Deserialize, Serialize};

use super::calendar::{within_last_months, PeriodRange};
use super::development::{period_targets, DevelopmentReport};
use super::visits::VisitReport;
use super::{ratio, Customer, PeriodSales, PurchaseSpan, Rep, Survey, Target};
use crate::config::ScorecardWeights;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepScore {
    pub rep_id: String,
    pub name: String,
    pub region: String,
    pub sales: f64,
    pub sales_target: Option<f64>,
    pub expected_sales: Option<f64>,
    pub sales_achievement: Option<f64>,
    pub active_customers: u32,
    pub new_customers: u32,
    pub new_customer_target: Option<f64>,
    pub visit_attainment: Option<f64>,
    pub visit_coverage: Option<f64>,
    pub visit_pace: Option<f64>,
    pub avg_satisfaction: Option<f64>,
    pub kpi: Option<f64>,
    pub rank: u32,
}

#[allow(clippy::too_many_arguments)]
pub fn compute(
    reps: &[Rep],
    customers: &[Customer],
    period_sales: &[PeriodSales],
    purchases: &HashMap<String, PurchaseSpan>,
    targets: &[Target],
    surveys: &[Survey],
    visits: &VisitReport,
    development: &DevelopmentReport,
    weights: &ScorecardWeights,
    period: &PeriodRange,
    as_of: NaiveDate,
) -> Vec<RepScore> {
    let assigned: HashMap<&str, &str> = customers
        .iter()
        .map(|c| (c.customer_id.as_str(), c.rep_id.as_str()))
        .collect();

    let mut sales: HashMap<&str, f64> = HashMap::new();
    for s in period_sales {
        let rep = s
            .line_rep_id
            .as_deref()
            .or_else(|| assigned.get(s.customer_id.as_str()).copied());
        if let Some(rep) = rep {
            *sales.entry(rep).or_default() += s.amount;
        }
    }

    let mut active: HashMap<&str, u32> = HashMap::new();
    for c in customers {
        if purchases
            .get(&c.customer_id)
            .is_some_and(|p| within_last_months(p.last, as_of, 3))
        {
            *active.entry(c.rep_id.as_str()).or_default() += 1;
        }
    }

    // surveys over the 12 months up to the end of P, never after D
    let survey_end = period.end.min(as_of);
    let survey_start = survey_end
        .checked_sub_months(Months::new(12))
        .unwrap_or(NaiveDate::MIN);
    let mut satisfaction: HashMap<&str, (f64, u32)> = HashMap::new();
    for s in surveys
        .iter()
        .filter(|s| s.date > survey_start && s.date <= survey_end)
    {
        if let Some(rep) = assigned.get(s.customer_id.as_str()) {
            let e = satisfaction.entry(rep).or_default();
            e.0 += s.score;
            e.1 += 1;
        }
    }

    let new_by_rep: HashMap<&str, (u32, Option<f64>)> = development
        .by_rep
        .iter()
        .map(|d| (d.rep_id.as_str(), (d.new_customers, d.new_customer_target)))
        .collect();

    let sales_targets = period_targets(targets, period);
    let pace = period.pace_factor();
    let mut out: Vec<RepScore> = reps
        .iter()
        .map(|r| {
            let id = r.rep_id.as_str();
            let sales_amount = sales.get(id).copied().unwrap_or(0.0);
            let sales_target = sales_targets.get(id).and_then(|t| t.sales);
            let expected_sales = sales_target.map(|t| t * pace);
            let (new_customers, new_customer_target) =
                new_by_rep.get(id).copied().unwrap_or((0, None));
            let v = visits.by_rep.get(id).copied().unwrap_or_default();
            let avg_satisfaction = satisfaction.get(id).map(|(sum, n)| sum / f64::from(*n));
            let visit_pace = v.pace(period);

            let components = [
                (
                    weights.sales,
                    expected_sales
                        .and_then(|e| ratio(sales_amount, e))
                        .map(|x| x.min(1.0)),
                ),
                (
                    weights.new_customers,
                    new_customer_target
                        .and_then(|t| ratio(f64::from(new_customers), t * pace))
                        .map(|x| x.min(1.0)),
                ),
                (weights.visits, visit_pace.map(|p| p.min(1.0))),
                (weights.satisfaction, avg_satisfaction.map(|s| s / 100.0)),
            ];
            RepScore {
                rep_id: r.rep_id.clone(),
                name: r.name.clone(),
                region: r.region.clone(),
                sales: sales_amount,
                sales_target,
                expected_sales,
                sales_achievement: sales_target.and_then(|t| ratio(sales_amount, t)),
                active_customers: active.get(id).copied().unwrap_or(0),
                new_customers,
                new_customer_target,
                visit_attainment: v.attainment(),
                visit_coverage: v.coverage(),
                visit_pace,
                avg_satisfaction,
                kpi: kpi(&components),
                rank: 0,
            }
        })
        .collect();
    rank_within_region(&mut out);
    out
}

/// 100 × Σ weight × component over the components that exist, with their
/// weights scaled to sum to 1; `None` when none exists (or all weigh 0).
pub fn kpi(components: &[(f64, Option<f64>)]) -> Option<f64> {
    let present: Vec<(f64, f64)> = components
        .iter()
        .filter_map(|(w, c)| c.map(|c| (*w, c)))
        .collect();
    let total: f64 = present.iter().map(|(w, _)| w).sum();
    (total > 0.0).then(|| 100.0 * present.iter().map(|(w, c)| w / total * c).sum::<f64>())
}

/// Rank 1…n by KPI (highest first) within each region; ties by rep id; reps
/// without a KPI last. Output sorted by region, then rank.
pub fn rank_within_region(scores: &mut [RepScore]) {
    scores.sort_by(|a, b| {
        a.region.cmp(&b.region).then_with(|| match (a.kpi, b.kpi) {
            (Some(x), Some(y)) => y.total_cmp(&x).then(a.rep_id.cmp(&b.rep_id)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.rep_id.cmp(&b.rep_id),
        })
    });
    let mut counters: BTreeMap<String, u32> = BTreeMap::new();
    for s in scores.iter_mut() {
        let n = counters.entry(s.region.clone()).or_default();
        *n += 1;
        s.rank = *n;
    }
}
