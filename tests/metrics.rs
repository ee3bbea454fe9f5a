use std::collections::HashMap;

use chrono::NaiveDate;
use salesbatch::config::TieringConfig;
use salesbatch::metrics::tiers::{self, Lifecycle};
use salesbatch::metrics::{
    round_half_away, Customer, MonthlySales, PurchaseSpan, SalesSummary, SummaryBuilder, YearMonth,
};

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

/// Monthly rows summarised as the warehouse does, for the default 12-month
/// window as of 2026-11-20.
fn summary(rows: &[MonthlySales]) -> SalesSummary {
    SalesSummary::from_monthly(
        rows,
        d(2026, 11, 20),
        TieringConfig::default().window_months,
    )
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
        &summary(&monthly),
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
        &summary(&[]),
        &HashMap::new(),
        &rules,
        &["停用".into()],
        d(2026, 11, 20),
    );
    assert!(out.is_empty());
}

// ---------------------------------------------------------------------------
// One fixture for visits, development and the scorecard, as of 2026-11-20
// with period `mtd`: P = 2026-11-01 … 2026-11-20, elapsed 20, days 30, so the
// pace factor is 20/30 = 2/3.
//
// customer  region rep tier (monthly visits)   first/last purchase    first contact
//   A       华东   R1  A (4)                   2025-01-05 / 2026-11-10 2024-12-01
//   B       华东   R1  B (3)                   2026-11-02 / 2026-11-02 2026-10-01
//   C       华东   R2  E (0)                   2025-03-01 / 2026-08-20 –
//   D       华东   R2  C (2)                   2026-11-15 / 2026-11-15 2025-11-20
//   E       华北   R4  D (1)                   –                       2026-06-01
// Rep R3 (华东) has no customers and no targets.
// ---------------------------------------------------------------------------

use salesbatch::config::{DevelopmentEvent, Period, ScorecardWeights};
use salesbatch::metrics::tiers::{SubScores, TierResult};
use salesbatch::metrics::{
    changes, development, scorecard, visits, PeriodRange, PeriodSales, Rep, Survey, Target,
    VisitDay,
};

const AS_OF: (i32, u32, u32) = (2026, 11, 20);

fn as_of() -> NaiveDate {
    d(AS_OF.0, AS_OF.1, AS_OF.2)
}

pub fn tier(id: &str, region: &str, rep: &str, tier: &str) -> TierResult {
    TierResult {
        customer_id: id.into(),
        name: id.into(),
        region: region.into(),
        rep_id: rep.into(),
        avg_monthly_sales: 0.0,
        growth: 0.0,
        breadth: 0.0,
        loyalty: 0.0,
        prospect: 0.0,
        sub: SubScores::default(),
        score: 0.0,
        tier: tier.into(),
        lifecycle: Lifecycle::Existing,
        near_boundary: false,
    }
}

fn fixture_tiers() -> Vec<TierResult> {
    vec![
        tier("A", "华东", "R1", "A"),
        tier("B", "华东", "R1", "B"),
        tier("C", "华东", "R2", "E"),
        tier("D", "华东", "R2", "C"),
        tier("E", "华北", "R4", "D"),
    ]
}

fn fixture_customers() -> Vec<Customer> {
    let c = |id: &str, region: &str, rep: &str, contact: Option<NaiveDate>| Customer {
        customer_id: id.into(),
        name: id.into(),
        region: region.into(),
        rep_id: rep.into(),
        first_contact_date: contact,
        ..Default::default()
    };
    vec![
        c("A", "华东", "R1", Some(d(2024, 12, 1))),
        c("B", "华东", "R1", Some(d(2026, 10, 1))),
        c("C", "华东", "R2", None),
        c("D", "华东", "R2", Some(d(2025, 11, 20))),
        c("E", "华北", "R4", Some(d(2026, 6, 1))),
    ]
}

fn fixture_reps() -> Vec<Rep> {
    let r = |id: &str, region: &str| Rep {
        rep_id: id.into(),
        name: id.into(),
        region: region.into(),
    };
    vec![
        r("R1", "华东"),
        r("R2", "华东"),
        r("R3", "华东"),
        r("R4", "华北"),
    ]
}

fn fixture_purchases() -> HashMap<String, PurchaseSpan> {
    let p = |f: NaiveDate, l: NaiveDate| PurchaseSpan { first: f, last: l };
    HashMap::from([
        ("A".to_string(), p(d(2025, 1, 5), d(2026, 11, 10))),
        ("B".to_string(), p(d(2026, 11, 2), d(2026, 11, 2))),
        ("C".to_string(), p(d(2025, 3, 1), d(2026, 8, 20))),
        ("D".to_string(), p(d(2026, 11, 15), d(2026, 11, 15))),
    ])
}

/// Counted visits per customer and day (already filtered to counted types).
fn fixture_visit_days() -> Vec<VisitDay> {
    let v = |c: &str, day: NaiveDate, n: u32| VisitDay {
        customer_id: c.into(),
        date: day,
        visits: n,
    };
    vec![
        v("A", d(2026, 10, 30), 1), // before P: not counted
        v("A", d(2026, 11, 3), 2),  // capped at 1 per day
        v("A", d(2026, 11, 5), 1),
        v("A", d(2026, 11, 10), 1),
        v("A", d(2026, 11, 12), 1),
        v("A", d(2026, 11, 15), 1),
        v("B", d(2026, 11, 4), 1),
        v("C", d(2026, 11, 6), 1), // tier E: target 0, left out of the totals
        v("E", d(2026, 11, 9), 1),
    ]
}

fn period() -> PeriodRange {
    PeriodRange::new(as_of(), Period::Mtd)
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-12)
}

/// A: actual 5 (11-03 capped to 1, 10-30 outside P), target 4, gap 0.
/// B: actual 1, target 3, gap 2. D: actual 0, target 2, gap 2. E: 1 of 1.
/// R1: Σmin = 4 + 1 = 5, Σtarget = 7 → attainment 5/7, coverage 2/2,
///     pace 5 ÷ (7 × 2/3) = 15/14.
/// R2: only D counts (C has target 0) → 0/2, coverage 0/1, pace 0.
/// 华东: 5/9, coverage 2/3, pace 5 ÷ 6 = 5/6. 华北: 1/1, 1/1, pace 1.5.
/// Company: 6/10, coverage 3/4, pace 6 ÷ (10 × 2/3) = 0.9.
#[test]
fn visit_gaps_computed_by_hand() {
    let rules = TieringConfig::default();
    let r = visits::compute(
        &fixture_tiers(),
        &fixture_visit_days(),
        &rules,
        &period(),
        1,
    );
    let got: Vec<(&str, u32, u32, u32)> = r
        .customers
        .iter()
        .map(|c| (c.customer_id.as_str(), c.target, c.actual, c.gap))
        .collect();
    // highest tier first, then the worst gap
    assert_eq!(
        got,
        vec![
            ("A", 4, 5, 0),
            ("B", 3, 1, 2),
            ("D", 2, 0, 2),
            ("E", 1, 1, 0),
            ("C", 0, 1, 0)
        ]
    );
    let p = period();
    let r1 = r.by_rep["R1"];
    assert!(
        close(r1.attainment(), 5.0 / 7.0)
            && close(r1.coverage(), 1.0)
            && close(r1.pace(&p), 15.0 / 14.0)
    );
    let r2 = r.by_rep["R2"];
    assert!(close(r2.attainment(), 0.0) && close(r2.coverage(), 0.0) && close(r2.pace(&p), 0.0));
    let east = r.by_region["华东"];
    assert!(
        close(east.attainment(), 5.0 / 9.0)
            && close(east.coverage(), 2.0 / 3.0)
            && close(east.pace(&p), 5.0 / 6.0)
    );
    let north = r.by_region["华北"];
    assert!(close(north.attainment(), 1.0) && close(north.pace(&p), 1.5));
    assert!(
        close(r.company.attainment(), 0.6)
            && close(r.company.coverage(), 0.75)
            && close(r.company.pace(&p), 0.9)
    );
    // attainment is capped per customer: A's fifth visit does not cover B's gap
    assert!(r1.attainment().unwrap() < 1.0);
}

#[test]
fn a_rep_without_targeted_customers_has_blank_visit_ratios() {
    let rules = TieringConfig::default();
    let r = visits::compute(&[tier("C", "华东", "R2", "E")], &[], &rules, &period(), 1);
    let t = r.by_rep["R2"];
    assert_eq!(
        (t.attainment(), t.coverage(), t.pace(&period())),
        (None, None, None)
    );
}

fn fixture_monthly() -> Vec<MonthlySales> {
    vec![
        // retention base months are 2026-05 … 2026-07, later months 2026-08 … 2026-10
        sale("A", "P1", 2026, 6, 100.0),
        sale("A", "P1", 2026, 9, 50.0),
        sale("C", "P1", 2026, 5, 200.0),
        sale("C", "P1", 2026, 7, -250.0), // net −50: not in the base
        sale("E", "P1", 2026, 7, 30.0),
        sale("E", "P1", 2026, 8, -30.0), // bought before, net ≤ 0 after: churned
    ]
}

fn fixture_targets() -> Vec<Target> {
    vec![
        Target {
            rep_id: "R1".into(),
            month: YearMonth::new(2026, 11),
            sales_target: Some(3000.0),
            new_customer_target: Some(3.0),
        },
        // another month: outside P
        Target {
            rep_id: "R1".into(),
            month: YearMonth::new(2026, 10),
            sales_target: Some(9999.0),
            new_customer_target: Some(9.0),
        },
    ]
}

/// First purchases in P: B (R1) on 11-02 and D (R2) on 11-15.
/// R1: 1 new of target 3 → 1/3. R2: 1 new, no target → blank.
/// 华东: 2 new of 3 (targets by rep region) → 2/3.
/// Conversion (first contact in 2025-11-21 … 2026-11-20): B bought → 华东 1/1;
/// E never bought → 华北 0/1; D's contact is exactly 12 months back: excluded.
/// Retention: A (base, retained), E (base, churned) → 华东 1, 华北 0, company 0.5.
#[test]
fn development_computed_by_hand() {
    let r = development::compute(
        &fixture_customers(),
        &fixture_reps(),
        &fixture_purchases(),
        &SalesSummary::from_monthly(&fixture_monthly(), as_of(), 12),
        &fixture_targets(),
        DevelopmentEvent::FirstPurchase,
        &period(),
        as_of(),
    );
    let rep = |id: &str| r.by_rep.iter().find(|x| x.rep_id == id).unwrap().clone();
    let r1 = rep("R1");
    assert_eq!((r1.new_customers, r1.new_customer_target), (1, Some(3.0)));
    assert!(close(r1.achievement, 1.0 / 3.0));
    let r2 = rep("R2");
    assert_eq!(
        (r2.new_customers, r2.new_customer_target, r2.achievement),
        (1, None, None)
    );
    let east = &r.by_region["华东"];
    assert_eq!(
        (
            east.new_customers,
            east.new_customer_target,
            east.contacted,
            east.converted
        ),
        (2, Some(3.0), 1, 1)
    );
    assert!(close(east.achievement, 2.0 / 3.0) && close(east.conversion, 1.0));
    assert!(close(east.retention, 1.0) && close(east.churn, 0.0));
    let north = &r.by_region["华北"];
    assert!(close(north.conversion, 0.0) && close(north.retention, 0.0) && close(north.churn, 1.0));
    assert!(
        close(r.company.conversion, 0.5)
            && close(r.company.retention, 0.5)
            && close(r.company.churn, 0.5)
    );
}

/// R1: sales 1,500 (A, no line rep) + 500 (a line on D carrying rep R1) = 2,000;
///     target 3,000 → expected 3,000 × 2/3 = 2,000, achievement 2/3;
///     components: sales min(2000/2000, 1) = 1; new min(1 ÷ (3 × 2/3), 1) = 0.5;
///     visits min(15/14, 1) = 1; satisfaction 80/100 (the 2025-10-01 survey is
///     older than 12 months) → kpi = 100 × (0.5 + 0.1 + 0.2 + 0.08) = 88.
/// R2: sales 700 (D, no line rep), no targets, visit pace 0, no survey →
///     only the visits component exists → kpi = 100 × 0 = 0.
/// R3: nothing measurable → no kpi, ranked last. R4: pace 1.5 → kpi 100.
/// Active customers (a purchase in 2026-08-21 … 2026-11-20): R1 A and B = 2;
/// R2 only D (C's last purchase, 2026-08-20, is exactly 3 months back) = 1.
#[test]
fn scorecard_computed_by_hand() {
    let tiers = fixture_tiers();
    let v = visits::compute(
        &tiers,
        &fixture_visit_days(),
        &TieringConfig::default(),
        &period(),
        1,
    );
    let dev = development::compute(
        &fixture_customers(),
        &fixture_reps(),
        &fixture_purchases(),
        &SalesSummary::from_monthly(&fixture_monthly(), as_of(), 12),
        &fixture_targets(),
        DevelopmentEvent::FirstPurchase,
        &period(),
        as_of(),
    );
    let sales = vec![
        PeriodSales {
            customer_id: "A".into(),
            line_rep_id: None,
            amount: 1500.0,
        },
        PeriodSales {
            customer_id: "D".into(),
            line_rep_id: Some("R1".into()),
            amount: 500.0,
        },
        PeriodSales {
            customer_id: "D".into(),
            line_rep_id: None,
            amount: 700.0,
        },
    ];
    let surveys = vec![
        Survey {
            customer_id: "A".into(),
            date: d(2026, 6, 1),
            score: 80.0,
        },
        Survey {
            customer_id: "A".into(),
            date: d(2025, 10, 1),
            score: 20.0,
        },
    ];
    let s = scorecard::compute(
        &fixture_reps(),
        &fixture_customers(),
        &sales,
        &fixture_purchases(),
        &fixture_targets(),
        &surveys,
        &v,
        &dev,
        &ScorecardWeights::default(),
        &period(),
        as_of(),
    );
    let order: Vec<(&str, u32)> = s.iter().map(|x| (x.rep_id.as_str(), x.rank)).collect();
    // sorted by region (byte order: 华东 before 华北), then rank
    assert_eq!(order, vec![("R1", 1), ("R2", 2), ("R3", 3), ("R4", 1)]);
    let r1 = &s[0];
    assert_eq!(
        (
            r1.sales,
            r1.sales_target,
            r1.active_customers,
            r1.new_customers
        ),
        (2000.0, Some(3000.0), 2, 1)
    );
    assert!(close(r1.expected_sales, 2000.0) && close(r1.sales_achievement, 2.0 / 3.0));
    assert!(close(r1.avg_satisfaction, 80.0) && close(r1.kpi, 88.0));
    let r2 = &s[1];
    assert_eq!(
        (r2.sales, r2.sales_target, r2.active_customers),
        (700.0, None, 1)
    );
    assert!(close(r2.kpi, 0.0));
    assert_eq!(s[2].kpi, None);
    assert!(close(s[3].kpi, 100.0));
}

#[test]
fn kpi_rescales_weights_over_present_components() {
    // only visits (0.2 → 1) and satisfaction (0.1 → 1) exist: 100 × (0.2·0.5 + 0.1·1) ÷ 0.3
    assert!(close(
        scorecard::kpi(&[(0.5, None), (0.2, None), (0.2, Some(0.5)), (0.1, Some(1.0))]),
        100.0 * 0.2 / 0.3
    ));
    assert_eq!(scorecard::kpi(&[(0.5, None), (0.5, None)]), None);
}

/// X: C (70) → B (80): sales sub-score +15 weighs 0.5 × 15 = 7.5 → driver sales.
/// Y: B (76) → C (74): growth −10 weighs 0.2 × −10 = −2 → driver growth.
/// Z keeps its tier and is not listed. Upgrades first.
#[test]
fn tier_changes_computed_by_hand() {
    let rules = TieringConfig::default();
    let with = |id: &str, t: &str, score: f64, sales: f64, growth: f64| {
        let mut r = tier(id, "华东", "R1", t);
        r.score = score;
        r.sub = SubScores {
            sales,
            growth,
            coverage: 70.0,
            loyalty: 70.0,
            prospect: 70.0,
        };
        r
    };
    let prev = vec![
        with("X", "C", 70.0, 70.0, 70.0),
        with("Y", "B", 76.0, 70.0, 100.0),
        with("Z", "C", 65.0, 70.0, 70.0),
    ];
    let now = vec![
        with("X", "B", 80.0, 85.0, 70.0),
        with("Y", "C", 74.0, 70.0, 90.0),
        with("Z", "C", 66.0, 70.0, 75.0),
    ];
    let ch = changes::compute(&now, &previous(prev, &[]), &rules).changes;
    assert_eq!(moves(&ch), [("X", "C", "B", true), ("Y", "B", "C", false)]);
    let scored: Vec<(f64, &str)> = ch.iter().map(|c| (c.delta, c.driver.as_str())).collect();
    assert_eq!(scored, [(10.0, "sales"), (-2.0, "growth")]);
    assert_eq!((ch[0].driver_delta, ch[1].driver_delta), (7.5, -2.0));
}

/// Each change as (customer, from, to, upgrade).
fn moves(changes: &[changes::TierChange]) -> Vec<(&str, &str, &str, bool)> {
    changes
        .iter()
        .map(|c| {
            (
                c.customer_id.as_str(),
                c.from_tier.as_str(),
                c.to_tier.as_str(),
                c.upgrade,
            )
        })
        .collect()
}

fn previous(tiers: Vec<TierResult>, tier_names: &[&str]) -> changes::Previous {
    changes::Previous {
        tiers,
        tier_names: tier_names.iter().map(ToString::to_string).collect(),
    }
}

/// The current rules are the default A…E. Against earlier rules of five
/// tiers a tier keeps its earlier position: renamed T1…T5, X was `T3`
/// (level 2) and is `C` (level 2), a rename, not listed, while Y was `T3`
/// and is `B`, an upgrade; names shifted down a level (S, A, B, C, D), U
/// was `S` and V was `A` and are `A` and `B` at the same levels, no change,
/// while W was `B` (level 2) and is `A`, an upgrade. Against earlier rules
/// of four tiers (T1…T4) a tier is placed by its name: `T3` has no level,
/// so X and Y are counted as not compared, while Z, `B` then and `C` now,
/// is a downgrade.
#[test]
fn renamed_tiers_are_not_changes_and_unplaced_ones_are_counted() {
    let rules = TieringConfig::default();
    let at = |id: &str, t: &str| tier(id, "华东", "R1", t);
    let north = |id: &str, t: &str| tier(id, "华北", "R3", t);
    let now = vec![
        north("X", "C"),
        north("Y", "B"),
        at("U", "A"),
        at("V", "B"),
        at("W", "A"),
        at("Z", "C"),
    ];
    // (earlier tiers, their rules' tier names, moves listed, not compared,
    // the regions those are in now)
    let cases = [
        (
            vec![at("X", "T3"), at("Y", "T3")],
            vec!["T1", "T2", "T3", "T4", "T5"],
            vec![("Y", "T3", "B", true)],
            vec![],
            vec![],
        ),
        (
            vec![at("U", "S"), at("V", "A"), at("W", "B")],
            vec!["S", "A", "B", "C", "D"],
            vec![("W", "B", "A", true)],
            vec![],
            vec![],
        ),
        (
            vec![at("X", "T3"), at("Y", "T3"), at("Z", "B")],
            vec!["T1", "T2", "T3", "T4"],
            vec![("Z", "B", "C", false)],
            vec![("T3", 2)],
            vec!["华北"],
        ),
    ];
    for (earlier, names, listed, not_compared, regions) in cases {
        let got = changes::compute(&now, &previous(earlier, &names), &rules);
        assert_eq!(moves(&got.changes), listed, "{names:?}");
        let unplaced: Vec<(&str, u64)> = got
            .not_compared
            .iter()
            .map(|(t, n)| (t.as_str(), *n))
            .collect();
        assert_eq!(unplaced, not_compared, "{names:?}");
        assert!(
            got.not_compared_regions
                .iter()
                .map(String::as_str)
                .eq(regions.iter().copied()),
            "{names:?}: {:?}",
            got.not_compared_regions
        );
    }
}

// ------------------------------------------------------------ edge cases

/// Ten buyers; X is the top one and sits on three band edges at once:
/// share 1/10 = 0.10 (the `top = 0.10` edge → 100), growth (7,200 − 6,000) ÷
/// 6,000 = 0.20 (the `min = 0.20` edge → 100), 12 positive months (loyalty
/// 100), blank prospect (0). With coverage from the master, score = 50 + 20 +
/// 0.1 × coverage + 10 + 0 = 80 + coverage ÷ 10.
fn x_with_coverage(coverage: f64) -> TierResult {
    let mut customers = vec![customer("X", None)];
    customers[0].coverage_score = Some(coverage);
    let mut monthly = Vec::new();
    for i in 0..12u32 {
        let (y, m) = if i < 2 { (2025, 11 + i) } else { (2026, i - 1) };
        monthly.push(sale("X", "P1", y, m, if i < 6 { 1000.0 } else { 1200.0 }));
    }
    for k in 1..10 {
        let id = format!("O{k}");
        customers.push(customer(&id, None));
        monthly.push(sale(&id, "P1", 2026, 3, f64::from(k)));
    }
    let out = tiers::compute(
        &customers,
        &summary(&monthly),
        &HashMap::new(),
        &TieringConfig::default(),
        &[],
        d(2026, 11, 20),
    );
    out.into_iter().find(|t| t.customer_id == "X").unwrap()
}

#[test]
fn boundary_scores_at_exactly_90_and_89_995_are_tier_a() {
    let exact = x_with_coverage(100.0);
    assert_eq!(exact.growth, 0.2);
    assert_eq!(
        (
            exact.sub.sales,
            exact.sub.growth,
            exact.sub.loyalty,
            exact.sub.prospect
        ),
        (100.0, 100.0, 100.0, 0.0)
    );
    assert_eq!((exact.score, exact.tier.as_str()), (90.0, "A"));
    // 80 + 9.995 = 89.995 rounds half away from zero to 90.00: still A
    let half = x_with_coverage(99.95);
    assert_eq!((half.score, half.tier.as_str()), (90.0, "A"));
    assert!(half.near_boundary);
    // 89.994 rounds to 89.99: B
    let below = x_with_coverage(99.94);
    assert_eq!((below.score, below.tier.as_str()), (89.99, "B"));
}

/// Growth value bands at their exact `min` edges, H1 = 0, a customer whose
/// returns exceed purchases, and one with no line at all.
#[test]
fn growth_band_edges_h1_zero_negative_net_and_no_sales() {
    let customers: Vec<Customer> = ["G5", "GM5", "GM20", "H0", "NEG", "NONE"]
        .iter()
        .map(|id| customer(id, None))
        .collect();
    let monthly = vec![
        // H1 = 1,000 (2025-12), H2 = 1,050 (2026-06): +0.05 → 85
        sale("G5", "P1", 2025, 12, 1000.0),
        sale("G5", "P1", 2026, 6, 1050.0),
        // 1,000 → 950: −0.05 → 70
        sale("GM5", "P1", 2025, 12, 1000.0),
        sale("GM5", "P1", 2026, 6, 950.0),
        // 1,000 → 800: −0.20 → 50
        sale("GM20", "P1", 2025, 12, 1000.0),
        sale("GM20", "P1", 2026, 6, 800.0),
        // nothing in H1, 300 in H2: growth 1.0 → 100
        sale("H0", "P2", 2026, 9, 300.0),
        // 100 bought, 250 returned: net −150, avg −12.5 → sales score 0;
        // H1 100 → H2 −250: growth −3.5 → the last band, 20
        sale("NEG", "P1", 2025, 11, 100.0),
        sale("NEG", "P1", 2026, 10, -250.0),
    ];
    let out = tiers::compute(
        &customers,
        &summary(&monthly),
        &HashMap::new(),
        &TieringConfig::default(),
        &[],
        d(2026, 11, 20),
    );
    let get = |id: &str| out.iter().find(|t| t.customer_id == id).unwrap();
    assert_eq!((get("G5").growth, get("G5").sub.growth), (0.05, 85.0));
    assert_eq!((get("GM5").growth, get("GM5").sub.growth), (-0.05, 70.0));
    assert_eq!((get("GM20").growth, get("GM20").sub.growth), (-0.2, 50.0));
    assert_eq!((get("H0").growth, get("H0").sub.growth), (1.0, 100.0));
    let neg = get("NEG");
    assert_eq!(neg.avg_monthly_sales, -12.5);
    assert_eq!((neg.sub.sales, neg.sub.growth), (0.0, 20.0));
    // NEG's P1 net is −150: its breadth counts no product
    assert_eq!((neg.breadth, neg.sub.coverage), (0.0, 0.0));
    let none = get("NONE");
    assert_eq!(
        (
            none.avg_monthly_sales,
            none.sub.sales,
            none.sub.growth,
            none.score
        ),
        (0.0, 0.0, 0.0, 0.0)
    );
    assert_eq!(
        (none.tier.as_str(), none.lifecycle),
        ("E", Lifecycle::Potential)
    );
    // sales shares among the 4 positive buyers: G5 2,050 is the top (0.25 → 85)
    assert_eq!(get("G5").sub.sales, 85.0);
}

#[test]
fn periods_across_a_year_end_and_in_a_leap_year() {
    let jan = PeriodRange::new(d(2026, 1, 15), Period::PreviousMonth);
    assert_eq!(
        (jan.start, jan.end, jan.elapsed, jan.days),
        (d(2025, 12, 1), d(2025, 12, 31), 31, 31)
    );
    let leap = PeriodRange::new(d(2028, 2, 29), Period::Mtd);
    assert_eq!(
        (leap.start, leap.end, leap.elapsed, leap.days),
        (d(2028, 2, 1), d(2028, 2, 29), 29, 29)
    );
    let after_leap = PeriodRange::new(d(2028, 3, 10), Period::PreviousMonth);
    assert_eq!((after_leap.end, after_leap.days), (d(2028, 2, 29), 29));
    let mid_feb = PeriodRange::new(d(2028, 2, 10), Period::Mtd);
    assert_eq!((mid_feb.elapsed, mid_feb.days), (10, 29));
    // the scoring window before March 2028 ends with the leap February
    let w = salesbatch::metrics::calendar::window(d(2028, 3, 1), 12);
    assert_eq!(
        (w[0], w[11]),
        (YearMonth::new(2027, 3), YearMonth::new(2028, 2))
    );
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn inputs() -> impl Strategy<Value = (Vec<Customer>, Vec<MonthlySales>, Vec<VisitDay>)> {
        let n = 1..25usize;
        n.prop_flat_map(|n| {
            (
                proptest::collection::vec(
                    (
                        proptest::option::of(-50.0..150.0f64),
                        proptest::option::of(-50.0..150.0f64),
                    ),
                    n,
                ),
                proptest::collection::vec(
                    (0..n, 0..4usize, 0..14i64, -2_000.0..10_000.0f64),
                    0..120,
                ),
                proptest::collection::vec((0..n, 1..=20u32, 0..4u32), 0..80),
            )
        })
        .prop_map(|(masters, lines, visits)| {
            let customers = masters
                .iter()
                .enumerate()
                .map(|(i, (prospect, coverage))| {
                    let mut c = customer(&format!("C{i:02}"), *prospect);
                    c.coverage_score = *coverage;
                    c.rep_id = format!("R{}", i % 3);
                    c
                })
                .collect();
            let monthly = lines
                .into_iter()
                .map(|(c, p, m, amount)| {
                    let ym = YearMonth::new(2025, 10).offset(m);
                    sale(
                        &format!("C{c:02}"),
                        &format!("P{p}"),
                        ym.year,
                        ym.month,
                        amount,
                    )
                })
                .collect();
            let days = visits
                .into_iter()
                .map(|(c, day, n)| VisitDay {
                    customer_id: format!("C{c:02}"),
                    date: d(2026, 11, day),
                    visits: n,
                })
                .collect();
            (customers, monthly, days)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn scores_bounded_tiers_monotone_attainment_capped((customers, monthly, days) in inputs()) {
            let rules = TieringConfig::default();
            let out = tiers::compute(&customers, &summary(&monthly), &HashMap::new(), &rules, &[], d(2026, 11, 20));
            let order: Vec<&str> = rules.tiers.iter().map(|t| t.name.as_str()).collect();
            let rank = |t: &TierResult| order.iter().position(|n| *n == t.tier).unwrap();
            for t in &out {
                prop_assert!((0.0..=100.0).contains(&t.score), "score {}", t.score);
                for s in [t.sub.sales, t.sub.growth, t.sub.coverage, t.sub.loyalty, t.sub.prospect] {
                    prop_assert!((0.0..=100.0).contains(&s), "sub-score {s}");
                }
            }
            for a in &out {
                for b in &out {
                    if a.score > b.score {
                        prop_assert!(rank(a) <= rank(b), "{} {} above {} {}", a.score, a.tier, b.score, b.tier);
                    }
                }
            }
            let period = PeriodRange::new(d(2026, 11, 20), Period::Mtd);
            let report = visits::compute(&out, &days, &rules, &period, 1);
            let totals = report.by_rep.values().chain(report.by_region.values()).chain([&report.company]);
            for v in totals {
                if let Some(a) = v.attainment() {
                    prop_assert!((0.0..=1.0).contains(&a), "attainment {a}");
                }
                if let Some(c) = v.coverage() {
                    prop_assert!((0.0..=1.0).contains(&c), "coverage {c}");
                }
            }
        }
    }
}

/// As of 2026-11-20 with a 12-month window: W = 2025-11 … 2026-10, H1 =
/// 2025-11 … 2026-04, H2 = 2026-05 … 2026-10; retention months 2026-05 … 07
/// (before) and 2026-08 … 10 (after). Rows outside all of them are ignored.
#[test]
fn sales_summary_by_hand() {
    let rows = vec![
        sale("A", "P1", 2025, 10, 999.0), // before the window: ignored
        sale("A", "P1", 2025, 11, 0.1),
        sale("A", "P1", 2025, 11, 0.2),   // H1; month 2025-11 nets 0.3
        sale("A", "P2", 2026, 5, 50.0),   // H2, retention before
        sale("A", "P2", 2026, 9, -80.0),  // H2, retention after; P2 nets −30
        sale("A", "P3", 2026, 11, 500.0), // month M itself: ignored
        sale("B", "P2", 2026, 8, 40.0),
    ];
    let s = summary(&rows);
    let a = &s.customers["A"];
    // sums are exact in millionths: 0.1 + 0.2 is 0.3, not 0.30000000000000004
    assert_eq!(a.h1, 0.3);
    assert_eq!(a.h2, -30.0);
    assert_eq!(a.total, -29.7);
    assert_eq!(a.lines, 4);
    assert_eq!(
        a.positive_months, 2,
        "2025-11 (0.3) and 2026-05 (50); 2026-09 is negative"
    );
    assert_eq!(a.positive_products, 1, "P1 nets 0.3 > 0; P2 nets −30");
    assert_eq!((a.retention_before, a.retention_after), (50.0, -80.0));
    let b = &s.customers["B"];
    assert_eq!(
        (b.h1, b.h2, b.lines, b.positive_products),
        (0.0, 40.0, 1, 1)
    );
    // P1 nets 0.3, P2 nets 50 − 80 + 40 = 10: both sold; P3 only in M
    assert_eq!(s.sold_products, 2);

    // the same rows in any order give bit-identical sums
    let mut reversed = rows.clone();
    reversed.reverse();
    assert_eq!(summary(&reversed), s);
}

/// A parallel scan gives each thread a disjoint set of customers and merges
/// their builders: the merged summary equals one built from all rows.
#[test]
fn sales_summary_shards_merge_to_the_whole() {
    let rows: Vec<MonthlySales> = (0..60u32)
        .map(|i| {
            sale(
                &format!("C{}", i % 7),
                &format!("P{}", i % 5),
                2025 + i32::from(i % 3 == 0),
                1 + i % 12,
                f64::from(i) * 1.37 - 20.0,
            )
        })
        .collect();
    let as_of = d(2026, 11, 20);
    let mut shards: Vec<SummaryBuilder> = (0..3).map(|_| SummaryBuilder::new(as_of, 12)).collect();
    for r in &rows {
        let shard = r.customer_id[1..].parse::<usize>().unwrap() % 3;
        shards[shard].add(&r.customer_id, &r.product_id, r.month, r.amount, r.lines);
    }
    let mut merged = shards.remove(0);
    for s in shards {
        merged.merge_disjoint(s);
    }
    let whole = summary(&rows);
    assert!(whole.customers.len() > 3 && whole.sold_products > 1);
    assert_eq!(merged.finish(), whole);
}
