//! The report model: every table a workbook or page shows, built from one
//! scope's rows only. Filtering happens here and nowhere else, so a regional
//! report can never carry another region's customers.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::Serialize;

use super::i18n::Labels;
use super::Quality;
use crate::ingest::FileNote;
use crate::metrics::visits::VisitTotals;
use crate::metrics::{Computed, PeriodRange, Rules};
use crate::text::fixed;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Region(String),
    National,
}

impl Scope {
    pub fn includes(&self, region: &str) -> bool {
        match self {
            Scope::Region(r) => r == region,
            Scope::National => true,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Scope::Region(r) => r,
            Scope::National => "*",
        }
    }

    /// The stem of the scope's report files (`华东.xlsx`, `national.html`)
    /// and of the emails a dry run writes for it.
    pub fn file_stem(&self) -> String {
        match self {
            Scope::Region(r) => super::file_stem(r),
            Scope::National => "national".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "t", content = "v")]
pub enum Value {
    Text(String),
    Int(i64),
    Num(f64),
    Money(f64),
    Pct(f64),
    Date(NaiveDate),
    Blank,
}

impl Value {
    pub fn opt_pct(v: Option<f64>) -> Self {
        v.map_or(Value::Blank, Value::Pct)
    }
    pub fn opt_money(v: Option<f64>) -> Self {
        v.map_or(Value::Blank, Value::Money)
    }
    pub fn opt_num(v: Option<f64>) -> Self {
        v.map_or(Value::Blank, Value::Num)
    }
    /// A count read from a file as a number (a new-customer target): whole,
    /// it shows as the count it is (`3`, not `3.00`); a fraction someone
    /// typed keeps its decimals rather than being rounded away.
    pub fn opt_count(v: Option<f64>) -> Self {
        match v {
            None => Value::Blank,
            #[allow(clippy::cast_possible_truncation)]
            Some(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => Value::Int(n as i64),
            Some(n) => Value::Num(n),
        }
    }

    /// Text for the HTML page and email body.
    pub fn display(&self) -> String {
        match self {
            Value::Text(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            Value::Num(n) => fixed(*n, 2),
            Value::Money(m) => money(*m),
            Value::Pct(p) => format!("{}%", fixed(p * 100.0, 1)),
            Value::Date(d) => d.to_string(),
            Value::Blank => String::new(),
        }
    }
}

/// `1234567.891` → `1,234,567.89`
pub fn money(v: f64) -> String {
    let s = fixed(v, 2);
    let (sign, digits) = match s.strip_prefix('-') {
        Some(digits) => ("-", digits),
        None => ("", s.as_str()),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, "00"));
    let mut grouped = String::new();
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    format!("{sign}{grouped}.{frac}")
}

#[derive(Debug, Clone, Serialize)]
pub struct Table {
    /// label key of the sheet
    pub key: &'static str,
    /// label keys of the columns
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<Value>>,
}

impl Table {
    fn new(key: &'static str, columns: &[&'static str]) -> Self {
        Self {
            key,
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }
    pub fn column(&self, key: &str) -> Option<usize> {
        self.columns.iter().position(|c| *c == key)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub title: String,
    pub scope_name: String,
    pub national: bool,
    pub as_of: NaiveDate,
    pub period: String,
    /// (label key, value)
    pub headline: Vec<(&'static str, Value)>,
    /// (tier, label, count)
    pub tier_counts: Vec<(String, String, u64)>,
    /// the scope's reps with the highest KPI, best first (see `top_reps`):
    /// the ranking's chart
    pub top_reps: Vec<TopRep>,
    pub tiers: Table,
    pub changes: Table,
    /// see `Computed::tiers_compared`
    pub tiers_compared: bool,
    /// whether some of this report's customers held earlier tiers the
    /// current rules cannot place (see `Computed::tiers_not_compared`):
    /// their changes are missing from `changes`
    pub tiers_not_compared: bool,
    pub visits: Table,
    pub scorecard: Table,
    pub development: Table,
    pub areas: Table,
    /// national only (empty in a region's report): see `regions_table`
    pub regions: Table,
    pub quality: Table,
    pub rules: Vec<(String, String)>,
}

/// How many reps the ranking's chart shows.
pub const TOP_REPS: usize = 10;

/// One bar of the ranking's chart.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopRep {
    pub name: String,
    pub region: String,
    pub kpi: f64,
}

/// The `TOP_REPS` reps of `scope` with the highest KPI, best first; ties by
/// rep id, as `rank_within_region` breaks them, so a region's chart shows
/// its ranks 1, 2, 3…. Reps without a KPI have nothing to draw.
pub fn top_reps(scope: &Scope, c: &Computed) -> Vec<TopRep> {
    let mut reps: Vec<(&crate::metrics::scorecard::RepScore, f64)> = c
        .scorecard
        .iter()
        .filter(|s| scope.includes(&s.region))
        .filter_map(|s| s.kpi.map(|k| (s, k)))
        .collect();
    reps.sort_by(|(a, x), (b, y)| y.total_cmp(x).then_with(|| a.rep_id.cmp(&b.rep_id)));
    reps.into_iter()
        .take(TOP_REPS)
        .map(|(s, kpi)| TopRep {
            name: s.name.clone(),
            region: s.region.clone(),
            kpi,
        })
        .collect()
}

impl Report {
    /// Why the tier changes listed are not all there are, as a label key:
    /// no earlier snapshot, none of them compared, or some not compared.
    /// The page and the workbook both say it, under the changes or in
    /// place of them.
    pub fn changes_caveat(&self) -> Option<&'static str> {
        if !self.tiers_compared {
            Some("no_snapshot")
        } else if !self.tiers_not_compared {
            None
        } else if self.changes.rows.is_empty() {
            Some("changes_not_compared")
        } else {
            Some("changes_partly_compared")
        }
    }
}

/// The data-quality workbook's notes on files that loaded (see
/// `ingest::FileNote`): national only, like the rejected rows.
pub fn notes(notes: &[FileNote]) -> Table {
    let mut table = Table::new("notes", &["source", "file", "sheet", "note"]);
    for n in notes {
        table.rows.push(
            [&n.source, &n.file, &n.sheet, &n.note]
                .iter()
                .map(|s| Value::Text((*s).clone()))
                .collect(),
        );
    }
    table
}

pub fn build(
    scope: &Scope,
    c: &Computed,
    rules: &Rules,
    quality: &Quality<'_>,
    labels: Labels,
) -> Report {
    let (rejections, quality_notes, quality_from) =
        (quality.rejections, quality.notes, quality.from);
    let rejected_rows = crate::ingest::rejected_rows(rejections, quality_notes);
    let text = |s: &str| Value::Text(s.to_string());
    let mut tiers = Table::new(
        "tiers",
        &[
            "customer_id",
            "customer",
            "region",
            "rep_id",
            "avg_monthly_sales",
            "growth",
            "breadth",
            "loyalty",
            "prospect",
            "sales_score",
            "growth_score",
            "coverage_score",
            "loyalty_score",
            "prospect_score",
            "score",
            "tier",
            "lifecycle",
            "near_boundary",
        ],
    );
    let mut tier_counts: Vec<(String, String, u64)> = rules
        .tiering
        .tiers
        .iter()
        .map(|t| (t.name.clone(), labels.tier_label(&t.label).to_string(), 0))
        .collect();
    for t in c.tiers.iter().filter(|t| scope.includes(&t.region)) {
        if let Some(tc) = tier_counts.iter_mut().find(|x| x.0 == t.tier) {
            tc.2 += 1;
        }
        tiers.rows.push(vec![
            text(&t.customer_id),
            text(&t.name),
            text(&t.region),
            text(&t.rep_id),
            Value::Money(t.avg_monthly_sales),
            Value::Pct(t.growth),
            Value::Pct(t.breadth),
            Value::Pct(t.loyalty),
            Value::Num(t.prospect),
            Value::Num(t.sub.sales),
            Value::Num(t.sub.growth),
            Value::Num(t.sub.coverage),
            Value::Num(t.sub.loyalty),
            Value::Num(t.sub.prospect),
            Value::Num(t.score),
            text(&t.tier),
            text(labels.get(t.lifecycle.as_str())),
            if t.near_boundary {
                text(labels.get("yes"))
            } else {
                Value::Blank
            },
        ]);
    }

    let mut changes = Table::new(
        "changes",
        &[
            "customer_id",
            "customer",
            "region",
            "rep_id",
            "from_tier",
            "to_tier",
            "previous_score",
            "score",
            "delta",
            "driver",
        ],
    );
    let (mut upgrades, mut downgrades) = (0i64, 0i64);
    for ch in c.changes.iter().filter(|x| scope.includes(&x.region)) {
        if ch.upgrade {
            upgrades += 1;
        } else {
            downgrades += 1;
        }
        changes.rows.push(vec![
            text(&ch.customer_id),
            text(&ch.name),
            text(&ch.region),
            text(&ch.rep_id),
            text(&ch.from_tier),
            text(&ch.to_tier),
            Value::Num(ch.previous_score),
            Value::Num(ch.score),
            Value::Num(ch.delta),
            text(driver_label(&ch.driver, labels)),
        ]);
    }

    let mut visits = Table::new(
        "visits",
        &[
            "customer_id",
            "customer",
            "region",
            "rep_id",
            "tier",
            "target",
            "actual",
            "gap",
        ],
    );
    for v in c
        .visits
        .customers
        .iter()
        .filter(|v| scope.includes(&v.region) && v.target > 0)
    {
        visits.rows.push(vec![
            text(&v.customer_id),
            text(&v.name),
            text(&v.region),
            text(&v.rep_id),
            text(&v.tier),
            Value::Int(i64::from(v.target)),
            Value::Int(i64::from(v.actual)),
            Value::Int(i64::from(v.gap)),
        ]);
    }

    let mut scorecard = Table::new(
        "scorecard",
        &[
            "rank",
            "rep_id",
            "rep",
            "region",
            "sales",
            "sales_target",
            "expected_sales",
            "sales_achievement",
            "active_customers",
            "new_customers",
            "new_customer_target",
            "visit_attainment",
            "visit_coverage",
            "visit_pace",
            "avg_satisfaction",
            "kpi",
        ],
    );
    for s in c.scorecard.iter().filter(|s| scope.includes(&s.region)) {
        scorecard.rows.push(vec![
            Value::Int(i64::from(s.rank)),
            text(&s.rep_id),
            text(&s.name),
            text(&s.region),
            Value::Money(s.sales),
            Value::opt_money(s.sales_target),
            Value::opt_money(s.expected_sales),
            Value::opt_pct(s.sales_achievement),
            Value::Int(i64::from(s.active_customers)),
            Value::Int(i64::from(s.new_customers)),
            Value::opt_count(s.new_customer_target),
            Value::opt_pct(s.visit_attainment),
            Value::opt_pct(s.visit_coverage),
            Value::opt_pct(s.visit_pace),
            Value::opt_num(s.avg_satisfaction),
            Value::opt_num(s.kpi),
        ]);
    }

    let mut development = Table::new(
        "development",
        &[
            "rep_id",
            "rep",
            "region",
            "new_customers",
            "new_customer_target",
            "achievement",
        ],
    );
    for d in c
        .development
        .by_rep
        .iter()
        .filter(|d| scope.includes(&d.region))
    {
        development.rows.push(vec![
            text(&d.rep_id),
            text(&d.name),
            text(&d.region),
            Value::Int(i64::from(d.new_customers)),
            Value::opt_count(d.new_customer_target),
            Value::opt_pct(d.achievement),
        ]);
    }
    let mut areas = Table::new(
        "development",
        &[
            "region",
            "new_customers",
            "new_customer_target",
            "achievement",
            "conversion",
            "retention",
            "churn",
        ],
    );
    let mut area_rows: Vec<(String, &crate::metrics::development::AreaDevelopment)> = c
        .development
        .by_region
        .iter()
        .filter(|(r, _)| scope.includes(r))
        .map(|(r, a)| (r.clone(), a))
        .collect();
    if *scope == Scope::National {
        area_rows.push((labels.get("company").to_string(), &c.development.company));
    }
    for (name, a) in area_rows {
        areas.rows.push(vec![
            Value::Text(name),
            Value::Int(i64::from(a.new_customers)),
            Value::opt_count(a.new_customer_target),
            Value::opt_pct(a.achievement),
            Value::opt_pct(a.conversion),
            Value::opt_pct(a.retention),
            Value::opt_pct(a.churn),
        ]);
    }

    let regions = if *scope == Scope::National {
        regions_table(c, labels)
    } else {
        Table::new("regions", &REGION_COLUMNS)
    };

    // Rejected rows can hold any region's data: only the national audience
    // sees them row by row; regions get the count.
    let mut quality = Table::new(
        "quality",
        &[
            "source", "file", "sheet", "row", "cell", "column", "value", "reason", "detail",
        ],
    );
    if *scope == Scope::National {
        for r in rejections {
            quality.rows.push(vec![
                text(&r.source),
                text(&r.file),
                text(&r.sheet),
                if r.row > 0 {
                    Value::Int(i64::try_from(r.row).unwrap_or(i64::MAX))
                } else {
                    Value::Blank
                },
                text(&r.cell),
                text(&r.column),
                text(&r.value),
                text(labels.reason(r.reason)),
                text(&r.detail),
            ]);
        }
        // the count behind the headline's rejected rows that no row above
        // shows (see `ingest::LISTED_REJECTIONS`)
        for n in quality_notes.iter().filter(|n| n.unlisted_rejections > 0) {
            let detail = labels
                .get("rows_unlisted")
                .replace("{count}", &n.unlisted_rejections.to_string())
                .replace("{listed}", &crate::ingest::LISTED_REJECTIONS.to_string());
            quality.rows.push(vec![
                text(&n.source),
                text(&n.file),
                text(&n.sheet),
                Value::Blank,
                text(""),
                text(""),
                text(""),
                text(""),
                text(&detail),
            ]);
        }
    }

    let scoped_visits = match scope {
        Scope::Region(r) => c.visits.by_region.get(r).copied().unwrap_or_default(),
        Scope::National => c.visits.company,
    };
    let sales: f64 = c
        .scorecard
        .iter()
        .filter(|s| scope.includes(&s.region))
        .map(|s| s.sales)
        .sum();
    let headline = vec![
        ("customers_scored", Value::Int(tiers.rows.len() as i64)),
        ("sales", Value::Money(sales)),
        (
            "visit_attainment",
            Value::opt_pct(scoped_visits.attainment()),
        ),
        ("visit_coverage", Value::opt_pct(scoped_visits.coverage())),
        ("visit_pace", Value::opt_pct(scoped_visits.pace(&c.period))),
        ("upgrades", Value::Int(upgrades)),
        ("downgrades", Value::Int(downgrades)),
        (
            "rejections",
            Value::Int(i64::try_from(rejected_rows).unwrap_or(i64::MAX)),
        ),
    ];

    let w = &rules.tiering.weights;
    let sw = &rules.scorecard;
    let mut rules_rows = vec![
        (
            labels.get("weights").to_string(),
            format!(
                "sales {} · growth {} · coverage {} · loyalty {} · prospect {}",
                w.sales, w.growth, w.coverage, w.loyalty, w.prospect
            ),
        ),
        (
            labels.get("thresholds").to_string(),
            rules
                .tiering
                .tiers
                .iter()
                .map(|t| format!("{} ≥ {}", t.name, t.min_score))
                .collect::<Vec<_>>()
                .join(" · "),
        ),
        (
            labels.get("monthly_visits").to_string(),
            rules
                .tiering
                .tiers
                .iter()
                .map(|t| format!("{} {}", t.name, t.monthly_visits))
                .collect::<Vec<_>>()
                .join(" · "),
        ),
        (
            format!("{} KPI", labels.get("weights")),
            format!(
                "sales {} · new_customers {} · visits {} · satisfaction {}",
                sw.sales, sw.new_customers, sw.visits, sw.satisfaction
            ),
        ),
    ];

    if let Some(run) = quality_from {
        rules_rows.push((
            labels.get("quality_from").to_string(),
            labels
                .get("quality_run")
                .replace("{run}", &run.run_id.to_string())
                .replace("{job}", &run.job)
                .replace("{as_of}", &run.as_of.to_string())
                .replace("{started}", &run.started),
        ));
    }

    let scope_name = match scope {
        Scope::Region(r) => r.clone(),
        Scope::National => labels.get("national").to_string(),
    };
    // a `previous_month` job's period ends before its as-of: its report is
    // the month's (销售月报 · 华东 · 2026-10), not the as-of day's
    let title = if c.period.end < c.as_of {
        format!(
            "{} · {scope_name} · {}",
            labels.get("report_title_month"),
            c.period.start.format("%Y-%m")
        )
    } else {
        format!(
            "{} · {scope_name} · {}",
            labels.get("report_title"),
            c.as_of
        )
    };
    Report {
        title,
        scope_name,
        national: *scope == Scope::National,
        as_of: c.as_of,
        period: format!("{} – {}", c.period.start, c.period.end),
        headline,
        tier_counts,
        top_reps: top_reps(scope, c),
        tiers,
        changes,
        tiers_compared: c.tiers_compared,
        tiers_not_compared: c.regions_not_compared.iter().any(|r| scope.includes(r)),
        visits,
        scorecard,
        development,
        areas,
        regions,
        quality,
        rules: rules_rows,
    }
}

/// A tier change's driver as the report names it. No sub-score moved
/// when the rules did (a tier's `min_score`, or the weights, which both
/// snapshots are weighed with): the change is then the rules'.
fn driver_label(driver: &str, labels: Labels) -> &'static str {
    if driver.is_empty() {
        labels.get("rules_changed")
    } else {
        labels.get(&format!("{driver}_score"))
    }
}

const REGION_COLUMNS: [&str; 8] = [
    "region",
    "customers_scored",
    "sales",
    "sales_target",
    "sales_achievement",
    "visit_attainment",
    "visit_coverage",
    "visit_pace",
];

/// The national report's region overview: one row per region and the
/// company row, so HQ can compare regions without opening each region's
/// report. Customers and visits count by customer region (as SPEC §5's
/// region visit figures do), sales and targets by rep region (as the
/// scorecard's); achievement is the region's sales over its target.
fn regions_table(c: &Computed, labels: Labels) -> Table {
    let mut by_region: BTreeMap<&str, AreaTotals> = BTreeMap::new();
    let mut company = AreaTotals::default();
    for t in &c.tiers {
        if !t.region.is_empty() {
            by_region.entry(&t.region).or_default().customers += 1;
        }
        company.customers += 1;
    }
    for s in &c.scorecard {
        if !s.region.is_empty() {
            by_region
                .entry(&s.region)
                .or_default()
                .add_rep(s.sales, s.sales_target);
        }
        company.add_rep(s.sales, s.sales_target);
    }
    let mut table = Table::new("regions", &REGION_COLUMNS);
    for (region, totals) in by_region {
        let visits = c.visits.by_region.get(region).copied().unwrap_or_default();
        table
            .rows
            .push(totals.row(region.to_string(), visits, &c.period));
    }
    table.rows.push(company.row(
        labels.get("company").to_string(),
        c.visits.company,
        &c.period,
    ));
    table
}

/// One area's row of the region overview, summed in one pass.
#[derive(Default)]
struct AreaTotals {
    customers: u64,
    sales: f64,
    /// none when no rep of the area has a target
    target: Option<f64>,
}

impl AreaTotals {
    fn add_rep(&mut self, sales: f64, target: Option<f64>) {
        self.sales += sales;
        if let Some(t) = target {
            *self.target.get_or_insert(0.0) += t;
        }
    }

    fn row(&self, name: String, visits: VisitTotals, period: &PeriodRange) -> Vec<Value> {
        vec![
            Value::Text(name),
            Value::Int(i64::try_from(self.customers).unwrap_or(i64::MAX)),
            Value::Money(self.sales),
            Value::opt_money(self.target),
            Value::opt_pct(
                self.target
                    .and_then(|t| crate::metrics::ratio(self.sales, t)),
            ),
            Value::opt_pct(visits.attainment()),
            Value::opt_pct(visits.coverage()),
            Value::opt_pct(visits.pace(period)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::{money, Value};

    #[test]
    fn money_groups_thousands_and_no_number_shows_a_negative_zero() {
        assert_eq!(money(1_234_567.891), "1,234,567.89");
        assert_eq!(money(-1_234.5), "-1,234.50");
        assert_eq!(money(999.999), "1,000.00");
        assert_eq!(money(0.0), "0.00");
        // float noise below the last digit: -5.6e-17
        let netted = -0.1 - 0.2 + 0.3;
        assert!(netted < 0.0);
        assert_eq!(money(netted), "0.00");
        assert_eq!(Value::Money(netted).display(), "0.00");
        assert_eq!(Value::Num(netted).display(), "0.00");
        assert_eq!(Value::Pct(netted).display(), "0.0%");
        assert_eq!(Value::Pct(-0.123).display(), "-12.3%");
        assert_eq!(Value::Money(-0.004).display(), "0.00");
    }

    #[test]
    fn a_count_read_as_a_number_shows_whole_and_a_fraction_keeps_its_decimals() {
        assert_eq!(Value::opt_count(Some(3.0)), Value::Int(3));
        assert_eq!(Value::opt_count(Some(3.0)).display(), "3");
        assert_eq!(Value::opt_count(Some(0.0)).display(), "0");
        assert_eq!(Value::opt_count(Some(2.5)).display(), "2.50");
        assert_eq!(Value::opt_count(None), Value::Blank);
    }
}
