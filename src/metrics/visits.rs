//! Visit-target gaps (拜访频率缺口), SPEC §5: per customer target from its tier,
//! counted visits (types, per-day cap), gap; attainment, coverage and pace per
//! rep, region and company, each capped per customer.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::calendar::PeriodRange;
use super::tiers::{tier_rank, TierResult};
use super::{ratio, VisitDay};
use crate::config::TieringConfig;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerVisits {
    pub customer_id: String,
    pub name: String,
    pub region: String,
    pub rep_id: String,
    pub tier: String,
    pub target: u32,
    pub actual: u32,
    pub gap: u32,
}

/// Capped sums over customers with target > 0.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct VisitTotals {
    pub customers_with_target: u32,
    pub customers_visited: u32,
    pub target: u32,
    pub capped_actual: u32,
    pub actual: u32,
    pub gap: u32,
}

impl VisitTotals {
    fn add(&mut self, c: &CustomerVisits) {
        if c.target == 0 {
            return;
        }
        self.customers_with_target += 1;
        self.customers_visited += u32::from(c.actual >= 1);
        self.target += c.target;
        self.capped_actual += c.actual.min(c.target);
        self.actual += c.actual;
        self.gap += c.gap;
    }

    /// Σ min(actual, target) ÷ Σ target.
    pub fn attainment(&self) -> Option<f64> {
        ratio(f64::from(self.capped_actual), f64::from(self.target))
    }

    /// #customers with actual ≥ 1 ÷ #customers with target > 0.
    pub fn coverage(&self) -> Option<f64> {
        ratio(
            f64::from(self.customers_visited),
            f64::from(self.customers_with_target),
        )
    }

    /// Σ min(actual, target) ÷ (Σ target × elapsed ÷ days).
    pub fn pace(&self, period: &PeriodRange) -> Option<f64> {
        ratio(
            f64::from(self.capped_actual),
            f64::from(self.target) * period.pace_factor(),
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisitReport {
    /// worst gaps on the highest tiers first
    pub customers: Vec<CustomerVisits>,
    pub by_rep: BTreeMap<String, VisitTotals>,
    pub by_region: BTreeMap<String, VisitTotals>,
    pub company: VisitTotals,
}

/// Counted visits per customer in P: each day contributes at most `cap`.
pub fn counted_visits(days: &[VisitDay], period: &PeriodRange, cap: u32) -> HashMap<String, u32> {
    let mut out: HashMap<String, u32> = HashMap::new();
    for d in days.iter().filter(|d| period.contains(d.date)) {
        *out.entry(d.customer_id.clone()).or_default() += d.visits.min(cap);
    }
    out
}

/// `tiers` are the scored customers; `days` are visits of counted types
/// grouped per customer and day.
pub fn compute(
    tiers: &[TierResult],
    days: &[VisitDay],
    rules: &TieringConfig,
    period: &PeriodRange,
    cap: u32,
) -> VisitReport {
    let actuals = counted_visits(days, period, cap);
    let months = u32::try_from(period.months().len()).unwrap_or(1);
    let monthly: HashMap<&str, u32> = rules
        .tiers
        .iter()
        .map(|t| (t.name.as_str(), t.monthly_visits))
        .collect();
    let mut customers: Vec<CustomerVisits> = tiers
        .iter()
        .map(|t| {
            let target = monthly.get(t.tier.as_str()).copied().unwrap_or(0) * months;
            let actual = actuals.get(&t.customer_id).copied().unwrap_or(0);
            CustomerVisits {
                customer_id: t.customer_id.clone(),
                name: t.name.clone(),
                region: t.region.clone(),
                rep_id: t.rep_id.clone(),
                tier: t.tier.clone(),
                target,
                actual,
                gap: target.saturating_sub(actual),
            }
        })
        .collect();
    customers.sort_by(|a, b| {
        tier_rank(rules, &a.tier)
            .cmp(&tier_rank(rules, &b.tier))
            .then(b.gap.cmp(&a.gap))
            .then(a.customer_id.cmp(&b.customer_id))
    });
    let mut by_rep: BTreeMap<String, VisitTotals> = BTreeMap::new();
    let mut by_region: BTreeMap<String, VisitTotals> = BTreeMap::new();
    let mut company = VisitTotals::default();
    for c in &customers {
        by_rep.entry(c.rep_id.clone()).or_default().add(c);
        by_region.entry(c.region.clone()).or_default().add(c);
        company.add(c);
    }
    VisitReport {
        customers,
        by_rep,
        by_region,
        company,
    }
}
