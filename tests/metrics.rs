use std::collections::HashMap;

use chrono::NaiveDate;
use salesbatch::config::TieringConfig;
use salesbatch::metrics::tiers::{self, Lifecycle};
use salesbatch::metrics::{round_half_away, Customer, MonthlySales, PurchaseSpan, YearMonth};

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap()
}

fn customer(id: &str, prospect: Option<f64>) -> Customer {
    Customer {
        customer_id: id.into(),
        name: id.into(),
        region: "华东".into(),
        rep_id: "R1".into(),
        prospect_score: prospect,
        ..Default::default()
    }
}

fn sale(c: &str, p: &str, y: i32, m: u32, amount: f64) -> MonthlySales {
    MonthlySales {
        customer_id: c.into(),
        product_id: p.into(),
        month: YearMonth::new(y, m),
        amount,
        lines: 1,
    }
}

#[test]
fn rounding_is_half_away_from_zero_on_the_decimal_value() {
    assert_eq!(round_half_away(89.995, 2), 90.0);
    assert_eq!(round_half_away(89.994_999, 2), 89.99);
    assert_eq!(round_half_away(-1.005, 2), -1.01);
}

#[test]
fn average_ranks_for_ties() {
    // values 10, 20, 20, 40 → ranks 1, 2.5, 2.5, 4 → shares (4-r+1)/4
    let s = tiers::shares([10.0, 20.0, 20.0, 40.0, 0.0].into_iter());
    assert_eq!(
        s,
        vec![Some(1.0), Some(0.625), Some(0.625), Some(0.25), None]
    );
}

/// Two customers over the window 2025-11 … 2026-10 (as of 2026-11-20).
///
/// A: 1,200 in each of 2025-11 and 2026-05 for product P1, 600 of P2 in 2026-10.
///    Σ = 3,000 → avg 250; H1 (2025-11..2026-04) = 1,200, H2 = 1,800 → growth 0.5
///    breadth: products with net > 0 overall = {P1, P2}; A has both → 1.0
///    loyalty: 3 positive months ÷ 12 = 0.25; prospect 80
/// B: 120 of P1 in 2026-10, a 20 return in 2026-09 → Σ 100, avg 8.333…
///    H1 = 0, H2 = 100 → growth 1.0; breadth 1/2; loyalty 1/12; prospect blank → 0
/// Sales shares: B rank 1 → share 1.0 → 50 pts; A rank 2 → share 0.5 → 70 pts.
/// Growth: A 0.5 ≥ 0.20 → 100; B 1.0 → 100.
/// Coverage (breadth ranks): A 1.0 rank 2 share 0.5 → 70; B 0.5 share 1.0 → 50.
/// A score = 0.5·70 + 0.2·100 + 0.1·70 + 0.1·25 + 0.1·80 = 35+20+7+2.5+8 = 72.5 → C
/// B score = 0.5·50 + 0.2·100 + 0.1·50 + 0.1·8.333… + 0 = 25+20+5+0.8333 = 50.83 → D
#[test]
fn tiers_computed_by_hand() {
    let rules = TieringConfig::default();
    let customers = vec![customer("A", Some(80.0)), customer("B", None)];
    let monthly = vec![
        sale("A", "P1", 2025, 11, 1200.0),
        sale("A", "P1", 2026, 5, 1200.0),
        sale("A", "P2", 2026, 10, 600.0),
        sale("B", "P1", 2026, 10, 120.0),
        sale("B", "P1", 2026, 9, -20.0),
    ];
    let mut purchases = HashMap::new();
    purchases.insert(
        "A".to_string(),
        PurchaseSpan {
            first: d(2025, 11, 3),
            last: d(2026, 10, 9),
        },
    );
    purchases.insert(
        "B".to_string(),
        PurchaseSpan {
            first: d(2026, 10, 1),
            last: d(2026, 10, 1),
        },
    );
    let out = tiers::compute(
        &customers,
        &monthly,
        &purchases,
        &rules,
        &[],
        d(2026, 11, 20),
    );
    let a = &out[0];
    assert_eq!(
        (a.avg_monthly_sales, a.growth, a.breadth, a.loyalty),
        (250.0, 0.5, 1.0, 0.25)
    );
    assert_eq!(
        (
            a.sub.sales,
            a.sub.growth,
            a.sub.coverage,
            a.sub.loyalty,
            a.sub.prospect
        ),
        (70.0, 100.0, 70.0, 25.0, 80.0)
    );
    assert_eq!(
        (a.score, a.tier.as_str(), a.lifecycle),
        (72.5, "C", Lifecycle::Existing)
    );
    let b = &out[1];
    assert_eq!((b.growth, b.breadth), (1.0, 0.5));
    assert_eq!((b.sub.sales, b.sub.coverage), (50.0, 50.0));
    assert_eq!(
        (b.score, b.tier.as_str(), b.lifecycle),
        (50.83, "D", Lifecycle::New)
    );
}

#[test]
fn inactive_customers_are_not_scored() {
    let rules = TieringConfig::default();
    let mut c = customer("Z", None);
    c.status = Some(" 停用 ".into());
    let out = tiers::compute(
        &[c],
        &[],
        &HashMap::new(),
        &rules,
        &["停用".into()],
        d(2026, 11, 20),
    );
    assert!(out.is_empty());
}
