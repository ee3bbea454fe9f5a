//! Metrics of SPEC §5 as pure functions: no I/O, no clock. Every function takes
//! the as-of date and the rules it needs, and typed (already aggregated) rows
//! read from the warehouse, so a past date can be recomputed exactly.

pub mod calendar;
pub mod changes;
pub mod development;
pub mod sales;
pub mod scorecard;
pub mod tiers;
pub mod visits;

use std::collections::HashMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

pub use calendar::{PeriodRange, YearMonth};
pub use sales::{CustomerSales, SalesSummary, SummaryBuilder};

/// A customer as the master describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Customer {
    pub customer_id: String,
    pub name: String,
    pub region: String,
    pub rep_id: String,
    pub customer_type: Option<String>,
    pub first_contact_date: Option<NaiveDate>,
    pub signed_date: Option<NaiveDate>,
    pub prospect_score: Option<f64>,
    pub coverage_score: Option<f64>,
    pub status: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Rep {
    pub rep_id: String,
    pub name: String,
    pub region: String,
}

/// Net sales of one customer and product in one calendar month.
#[derive(Debug, Clone, PartialEq)]
pub struct MonthlySales {
    pub customer_id: String,
    pub product_id: String,
    pub month: YearMonth,
    pub amount: f64,
    pub lines: u64,
}

/// First and last purchase (a line with amount > 0) dated on or before D.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PurchaseSpan {
    pub first: NaiveDate,
    pub last: NaiveDate,
}

/// Sales in the period for one customer, split by the line's own rep (if any).
#[derive(Debug, Clone, PartialEq)]
pub struct PeriodSales {
    pub customer_id: String,
    pub line_rep_id: Option<String>,
    pub amount: f64,
}

/// Number of visits of counted types made to a customer on one day (any rep).
#[derive(Debug, Clone, PartialEq)]
pub struct VisitDay {
    pub customer_id: String,
    pub date: NaiveDate,
    pub visits: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub rep_id: String,
    pub month: YearMonth,
    pub sales_target: Option<f64>,
    pub new_customer_target: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Survey {
    pub customer_id: String,
    pub date: NaiveDate,
    pub score: f64,
}

/// Everything the metrics read, as loaded for one as-of date.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub customers: Vec<Customer>,
    pub reps: Vec<Rep>,
    /// the scoring window and the retention months (all before M), per customer
    pub sales: SalesSummary,
    pub purchases: HashMap<String, PurchaseSpan>,
    pub period_sales: Vec<PeriodSales>,
    pub visit_days: Vec<VisitDay>,
    pub targets: Vec<Target>,
    pub surveys: Vec<Survey>,
}

/// Rounds half away from zero to `places` decimals. Binary floating point
/// stores 89.995 as 89.99499…; values within 1e-9 of a half are treated as
/// the exact half the decimal input meant.
pub fn round_half_away(x: f64, places: i32) -> f64 {
    let factor = 10f64.powi(places);
    let scaled = x * factor;
    let nudged = scaled + scaled.signum() * 1e-9 * scaled.abs().max(1.0);
    nudged.round() / factor
}

/// `a / b`, blank when the denominator is zero (SPEC: "undefined (blank)").
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (b != 0.0).then(|| a / b)
}

/// Whether a customer is scored: its trimmed status is not an inactive value.
pub fn is_scored(status: Option<&str>, inactive_values: &[String]) -> bool {
    let status = status.map_or("", str::trim);
    status.is_empty()
        || !inactive_values
            .iter()
            .any(|v| v.trim().to_lowercase() == status.to_lowercase())
}

/// The rules a snapshot was computed with (stored with it, shown in reports).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rules {
    pub tiering: crate::config::TieringConfig,
    pub inactive_values: Vec<String>,
    pub visits: crate::config::VisitsConfig,
    pub scorecard: crate::config::ScorecardWeights,
    pub development: crate::config::DevelopmentEvent,
    pub period: crate::config::Period,
}

/// Every table of one run, for one as-of date.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Computed {
    pub as_of: NaiveDate,
    pub period: PeriodRange,
    pub tiers: Vec<tiers::TierResult>,
    pub changes: Vec<changes::TierChange>,
    pub visits: visits::VisitReport,
    pub development: development::DevelopmentReport,
    pub scorecard: Vec<scorecard::RepScore>,
    /// whether an earlier snapshot existed to compare tiers with: without
    /// one, `changes` is empty because nothing could change, not because
    /// nothing did, and the report says which
    #[serde(default)]
    pub tiers_compared: bool,
    /// earlier tiers the current rules cannot place (see
    /// `changes::compute`), with how many customers held each: their tier
    /// changes are not listed
    #[serde(default)]
    pub tiers_not_compared: std::collections::BTreeMap<String, u64>,
    /// the current regions of the customers counted in
    /// `tiers_not_compared` (the empty name for those with no region)
    #[serde(default)]
    pub regions_not_compared: std::collections::BTreeSet<String>,
}

/// Runs every metric of SPEC §5 over one set of inputs.
pub fn compute_all(
    inputs: &Inputs,
    rules: &Rules,
    as_of: NaiveDate,
    previous: Option<&changes::Previous>,
) -> Computed {
    let period = PeriodRange::new(as_of, rules.period);
    let tiers = tiers::compute(
        &inputs.customers,
        &inputs.sales,
        &inputs.purchases,
        &rules.tiering,
        &rules.inactive_values,
        as_of,
    );
    let compared = previous
        .map(|p| changes::compute(&tiers, p, &rules.tiering))
        .unwrap_or_default();
    let visits = visits::compute(
        &tiers,
        &inputs.visit_days,
        &rules.tiering,
        &period,
        rules.visits.max_per_customer_per_day,
    );
    let development = development::compute(
        &inputs.customers,
        &inputs.reps,
        &inputs.purchases,
        &inputs.sales,
        &inputs.targets,
        rules.development,
        &period,
        as_of,
    );
    let scorecard = scorecard::compute(
        &inputs.reps,
        &inputs.customers,
        &inputs.period_sales,
        &inputs.purchases,
        &inputs.targets,
        &inputs.surveys,
        &visits,
        &development,
        &rules.scorecard,
        &period,
        as_of,
    );
    Computed {
        as_of,
        period,
        tiers,
        changes: compared.changes,
        visits,
        development,
        scorecard,
        tiers_compared: previous.is_some(),
        tiers_not_compared: compared.not_compared,
        regions_not_compared: compared.not_compared_regions,
    }
}
