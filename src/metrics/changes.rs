//! Tier changes against the latest earlier snapshot: upgrades, downgrades, the
//! score delta and the sub-score whose weighted contribution moved most.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::tiers::{tier_rank, TierResult};
use crate::config::TieringConfig;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TierChange {
    pub customer_id: String,
    pub name: String,
    pub region: String,
    pub rep_id: String,
    pub from_tier: String,
    pub to_tier: String,
    pub upgrade: bool,
    pub previous_score: f64,
    pub score: f64,
    pub delta: f64,
    /// name of the sub-score whose weighted contribution moved most; empty
    /// when none moved (the tier changed because the rules did)
    pub driver: String,
    pub driver_delta: f64,
}

/// Customers present in both snapshots whose tier differs, upgrades first,
/// then by the size of the score move. The weights used are the current
/// rules for both sides, so the driver reflects what changed in the data.
pub fn compute(
    current: &[TierResult],
    previous: &[TierResult],
    rules: &TieringConfig,
) -> Vec<TierChange> {
    let prev: HashMap<&str, &TierResult> = previous
        .iter()
        .map(|p| (p.customer_id.as_str(), p))
        .collect();
    let mut out: Vec<TierChange> = current
        .iter()
        .filter_map(|c| {
            let p = prev.get(c.customer_id.as_str())?;
            if p.tier == c.tier {
                return None;
            }
            let now = c.sub.weighted(rules);
            let before = p.sub.weighted(rules);
            let (driver, driver_delta) = now
                .iter()
                .zip(before.iter())
                .map(|((name, a), (_, b))| (*name, a - b))
                .fold(("", 0.0_f64), |best, x| {
                    if x.1.abs() > best.1.abs() {
                        x
                    } else {
                        best
                    }
                });
            Some(TierChange {
                customer_id: c.customer_id.clone(),
                name: c.name.clone(),
                region: c.region.clone(),
                rep_id: c.rep_id.clone(),
                from_tier: p.tier.clone(),
                to_tier: c.tier.clone(),
                upgrade: tier_rank(rules, &c.tier) < tier_rank(rules, &p.tier),
                previous_score: p.score,
                score: c.score,
                delta: super::round_half_away(c.score - p.score, 2),
                driver: driver.to_string(),
                driver_delta,
            })
        })
        .collect();
    out.sort_by(|a, b| {
        b.upgrade
            .cmp(&a.upgrade)
            .then(b.delta.abs().total_cmp(&a.delta.abs()))
            .then(a.customer_id.cmp(&b.customer_id))
    });
    out
}
