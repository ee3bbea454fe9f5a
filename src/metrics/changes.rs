//! Tier changes against the latest earlier snapshot: upgrades, downgrades, the
//! score delta and the sub-score whose weighted contribution moved most.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::tiers::{tier_level, TierResult};
use crate::config::TieringConfig;

/// The latest earlier snapshot: its tiers, and the tier names (high to low)
/// of the rules it was computed with, empty when those are unknown.
#[derive(Debug, Clone, Default)]
pub struct Previous {
    pub tiers: Vec<TierResult>,
    pub tier_names: Vec<String>,
}

/// The tier changes, and the earlier tiers that could not be compared.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Compared {
    pub changes: Vec<TierChange>,
    /// earlier tier names that no level of the current rules matches (see
    /// `previous_level`), with how many of the current customers held each
    pub not_compared: BTreeMap<String, u64>,
    /// the current regions of those customers, so a region's report says
    /// its changes are incomplete only when some of its own are missing
    pub not_compared_regions: BTreeSet<String>,
}

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

/// The level (0 = highest) of an earlier tier under the current rules. When
/// the rules the earlier snapshot was computed with had as many tiers as the
/// current ones, it is the tier's position there: renaming the tiers, or
/// shifting their names by a level, keeps what each level means. Otherwise
/// it is the level of the current tier of that name. `None` when neither
/// places it: the rules changed shape, so the earlier tier says nothing
/// about direction.
fn previous_level(tier: &str, rules: &TieringConfig, previous_names: &[String]) -> Option<usize> {
    (previous_names.len() == rules.tiers.len())
        .then(|| previous_names.iter().position(|n| n == tier))
        .flatten()
        .or_else(|| tier_level(rules, tier))
}

/// Customers present in both snapshots whose tier level differs, upgrades
/// first, then by the size of the score move. A tier renamed in the rules is
/// not a change; an earlier tier whose level cannot be placed is counted in
/// `not_compared` rather than guessed. The weights used are the current
/// rules for both sides, so the driver reflects what changed in the data.
pub fn compute(current: &[TierResult], previous: &Previous, rules: &TieringConfig) -> Compared {
    let prev: HashMap<&str, &TierResult> = previous
        .tiers
        .iter()
        .map(|p| (p.customer_id.as_str(), p))
        .collect();
    let mut not_compared: BTreeMap<String, u64> = BTreeMap::new();
    let mut not_compared_regions: BTreeSet<String> = BTreeSet::new();
    let mut out: Vec<TierChange> = current
        .iter()
        .filter_map(|c| {
            let p = prev.get(c.customer_id.as_str())?;
            if p.tier == c.tier {
                return None;
            }
            let Some(before_level) = previous_level(&p.tier, rules, &previous.tier_names) else {
                *not_compared.entry(p.tier.clone()).or_default() += 1;
                not_compared_regions.insert(c.region.clone());
                return None;
            };
            let now_level = tier_level(rules, &c.tier)?;
            if now_level == before_level {
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
                upgrade: now_level < before_level,
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
    Compared {
        changes: out,
        not_compared,
        not_compared_regions,
    }
}
