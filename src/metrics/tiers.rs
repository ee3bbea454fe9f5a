//! Customer tiering (客户分级), SPEC §5: raw measures over the scoring window,
//! five sub-scores, the weighted score, the tier and the lifecycle.

use std::collections::HashMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::calendar::{within_last_months, YearMonth};
use super::sales::{CustomerSales, SalesSummary};
use super::{is_scored, round_half_away, Customer, PurchaseSpan};
use crate::config::{RankBands, TieringConfig, ValueBands};

/// Tolerance for comparing a computed share or growth with a band edge, so a
/// value that is exactly on the edge in decimal is not lost to binary noise.
const EDGE_EPS: f64 = 1e-9;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lifecycle {
    Potential,
    New,
    Dormant,
    Existing,
}

impl Lifecycle {
    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Potential => "potential",
            Lifecycle::New => "new",
            Lifecycle::Dormant => "dormant",
            Lifecycle::Existing => "existing",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "potential" => Lifecycle::Potential,
            "new" => Lifecycle::New,
            "dormant" => Lifecycle::Dormant,
            "existing" => Lifecycle::Existing,
            _ => return None,
        })
    }
}

/// Sub-scores in points (0–100), unrounded.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct SubScores {
    pub sales: f64,
    pub growth: f64,
    pub coverage: f64,
    pub loyalty: f64,
    pub prospect: f64,
}

impl SubScores {
    /// (name, weighted contribution) in the order of the config's weights.
    pub fn weighted(&self, rules: &TieringConfig) -> [(&'static str, f64); 5] {
        let w = &rules.weights;
        [
            ("sales", w.sales * self.sales),
            ("growth", w.growth * self.growth),
            ("coverage", w.coverage * self.coverage),
            ("loyalty", w.loyalty * self.loyalty),
            ("prospect", w.prospect * self.prospect),
        ]
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TierResult {
    pub customer_id: String,
    pub name: String,
    pub region: String,
    pub rep_id: String,
    pub avg_monthly_sales: f64,
    pub growth: f64,
    pub breadth: f64,
    pub loyalty: f64,
    pub prospect: f64,
    pub sub: SubScores,
    pub score: f64,
    pub tier: String,
    pub lifecycle: Lifecycle,
    pub near_boundary: bool,
}

/// Scores every scored customer (status not inactive) as of `as_of`.
/// Results are sorted by customer id.
pub fn compute(
    customers: &[Customer],
    sales: &SalesSummary,
    purchases: &HashMap<String, PurchaseSpan>,
    rules: &TieringConfig,
    inactive_values: &[String],
    as_of: NaiveDate,
) -> Vec<TierResult> {
    let n = rules.window_months;
    debug_assert!(
        sales.month.is_none()
            || (sales.month == Some(YearMonth::of(as_of)) && sales.window_months == n),
        "sales summarised for another as-of month or window"
    );
    let sold_products = sales.sold_products;

    let scored: Vec<&Customer> = customers
        .iter()
        .filter(|c| is_scored(c.status.as_deref(), inactive_values))
        .collect();
    let empty = CustomerSales::default();
    let window_months = f64::from(n);

    struct Measures<'a> {
        customer: &'a Customer,
        avg: f64,
        growth: f64,
        breadth: f64,
        loyalty: f64,
        prospect: f64,
        has_lines: bool,
    }
    let measures: Vec<Measures<'_>> = scored
        .iter()
        .map(|c| {
            let r = sales
                .customers
                .get(c.customer_id.as_str())
                .unwrap_or(&empty);
            let growth = if r.h1 > 0.0 {
                (r.h2 - r.h1) / r.h1
            } else if r.h2 > 0.0 {
                1.0
            } else {
                0.0
            };
            let breadth = if sold_products == 0 {
                0.0
            } else {
                f64::from(r.positive_products) / f64::from(sold_products)
            };
            Measures {
                customer: c,
                avg: r.total / window_months,
                growth,
                breadth,
                loyalty: f64::from(r.positive_months) / window_months,
                prospect: c.prospect_score.unwrap_or(rules.prospect.blank),
                has_lines: r.lines > 0,
            }
        })
        .collect();

    let sales_share = shares(measures.iter().map(|m| m.avg));
    let breadth_share = shares(measures.iter().map(|m| m.breadth));
    let thresholds: Vec<f64> = rules
        .tiers
        .iter()
        .map(|t| t.min_score)
        .filter(|&s| s > 0.0)
        .collect();

    let mut out: Vec<TierResult> = measures
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let sales = sales_share[i].map_or(0.0, |s| rank_points(&rules.sales, s));
            let growth = if m.has_lines {
                value_points(&rules.growth, m.growth)
            } else {
                0.0
            };
            let coverage = match m.customer.coverage_score {
                Some(v) => v.clamp(0.0, 100.0),
                None => breadth_share[i].map_or(0.0, |s| rank_points(&rules.coverage, s)),
            };
            let sub = SubScores {
                sales,
                growth,
                coverage,
                loyalty: 100.0 * m.loyalty,
                prospect: m.prospect.clamp(0.0, 100.0),
            };
            let score = round_half_away(sub.weighted(rules).iter().map(|(_, v)| v).sum(), 2);
            TierResult {
                customer_id: m.customer.customer_id.clone(),
                name: m.customer.name.clone(),
                region: m.customer.region.clone(),
                rep_id: m.customer.rep_id.clone(),
                avg_monthly_sales: m.avg,
                growth: m.growth,
                breadth: m.breadth,
                loyalty: m.loyalty,
                prospect: m.prospect,
                sub,
                score,
                tier: tier_for(rules, score).to_string(),
                lifecycle: lifecycle(purchases.get(&m.customer.customer_id), as_of),
                near_boundary: thresholds
                    .iter()
                    .any(|t| (score - t).abs() <= 2.0 + EDGE_EPS),
            }
        })
        .collect();
    out.sort_by(|a, b| a.customer_id.cmp(&b.customer_id));
    out
}

/// For each value: `None` if ≤ 0, else its share (n − rank + 1) ÷ n among the
/// positive values, with ties given their average 1-based ascending rank.
pub fn shares(values: impl Iterator<Item = f64>) -> Vec<Option<f64>> {
    let values: Vec<f64> = values.collect();
    let mut positive: Vec<(f64, usize)> = values
        .iter()
        .enumerate()
        .filter(|(_, &v)| v > 0.0)
        .map(|(i, &v)| (v, i))
        .collect();
    positive.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = positive.len();
    let mut out = vec![None; values.len()];
    let mut start = 0;
    while start < n {
        let mut end = start;
        while end + 1 < n && positive[end + 1].0 == positive[start].0 {
            end += 1;
        }
        // ranks start+1 ..= end+1; their average is exact in f64 (an integer or .5)
        let avg_rank = (start + 1 + end + 1) as f64 / 2.0;
        let share = (n as f64 - avg_rank + 1.0) / n as f64;
        for &(_, idx) in &positive[start..=end] {
            out[idx] = Some(share);
        }
        start = end + 1;
    }
    out
}

/// Points of the first rank band whose `top` ≥ share; 0 if none matches.
pub fn rank_points(bands: &RankBands, share: f64) -> f64 {
    bands
        .bands
        .iter()
        .find(|b| share <= b.top + EDGE_EPS)
        .map_or(0.0, |b| b.points)
}

/// Points of the first value band whose `min` ≤ value; 0 if none matches.
pub fn value_points(bands: &ValueBands, value: f64) -> f64 {
    bands
        .bands
        .iter()
        .find(|b| value >= b.min - EDGE_EPS)
        .map_or(0.0, |b| b.points)
}

/// The first tier (high to low) whose `min_score` ≤ the rounded score; the
/// last tier catches the rest.
pub fn tier_for(rules: &TieringConfig, score: f64) -> &str {
    rules
        .tiers
        .iter()
        .find(|t| score >= t.min_score - EDGE_EPS)
        .or(rules.tiers.last())
        .map_or("", |t| t.name.as_str())
}

pub fn lifecycle(span: Option<&PurchaseSpan>, as_of: NaiveDate) -> Lifecycle {
    match span {
        None => Lifecycle::Potential,
        Some(s) if within_last_months(s.first, as_of, 3) => Lifecycle::New,
        Some(s) if !within_last_months(s.last, as_of, 3) => Lifecycle::Dormant,
        Some(_) => Lifecycle::Existing,
    }
}

/// Tier names by index, so "higher tier" can be compared.
pub fn tier_rank(rules: &TieringConfig, tier: &str) -> usize {
    tier_level(rules, tier).unwrap_or(usize::MAX)
}

/// The position (0 = highest) of the tier named `tier` in `rules`.
pub fn tier_level(rules: &TieringConfig, tier: &str) -> Option<usize> {
    rules.tiers.iter().position(|t| t.name == tier)
}
