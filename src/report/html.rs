//! HTML report and email body (tera 2, autoescaped `.html` templates). The
//! page is self-contained: inline CSS, charts drawn as CSS bars, no external
//! assets. The email's plain-text part (`report.txt`) shows the same
//! sections from the same values. Users may override either template in
//! `templates_dir`.

use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;
use tera::{Context, Tera};

use super::i18n::Labels;
use super::tables::{Report, Table, Value};

const DEFAULT_TEMPLATE: &str = include_str!("../../report-templates/report.html");
const DEFAULT_TEXT_TEMPLATE: &str = include_str!("../../report-templates/report.txt");
/// The templates a user may override in `templates_dir`, with the
/// built-in text of each.
pub const TEMPLATES: [(&str, &str); 2] = [
    ("report.html", DEFAULT_TEMPLATE),
    ("report.txt", DEFAULT_TEXT_TEMPLATE),
];
/// Rows shown per table in the page; the workbook has them all.
const PAGE_ROWS: usize = 20;
/// The worst-gaps section lists this many of the highest tiers (A and B).
const GAP_TIERS: usize = 2;

pub struct Renderer {
    tera: Tera,
}

#[derive(Serialize)]
struct HtmlTable {
    title: &'static str,
    headers: Vec<&'static str>,
    numeric: Vec<bool>,
    rows: Vec<Vec<String>>,
    total: usize,
    /// shown under the header when there are no rows: a bare header
    /// reads as a failed run
    empty: &'static str,
    /// shown under a table cut to `PAGE_ROWS`, empty when nothing was cut
    more: String,
}

/// One row of the ranking's chart on the page: name, region, KPI as
/// shown, and the bar's length in percent of the longest (the PNG's scale).
#[derive(Serialize)]
struct TopRepBar {
    name: String,
    region: String,
    kpi: String,
    bar: u64,
}

fn top_rep_bars(top: &[super::tables::TopRep]) -> Vec<TopRepBar> {
    let longest = top
        .iter()
        .map(|r| super::chart::tenths(r.kpi))
        .max()
        .unwrap_or(0)
        .max(1);
    top.iter()
        .map(|r| TopRepBar {
            name: r.name.clone(),
            region: r.region.clone(),
            kpi: Value::Num(r.kpi).display(),
            bar: super::chart::tenths(r.kpi) * 100 / longest,
        })
        .collect()
}

fn html_table<'r>(
    t: &Table,
    labels: Labels,
    rows: impl Iterator<Item = &'r Vec<Value>>,
    empty: &str,
) -> HtmlTable {
    // only `PAGE_ROWS` are shown: the rest are counted, not copied (a
    // national visit-gap list holds most of 200,000 customers)
    let mut shown: Vec<&Vec<Value>> = Vec::with_capacity(PAGE_ROWS);
    let mut total = 0;
    for row in rows {
        if shown.len() < PAGE_ROWS {
            shown.push(row);
        }
        total += 1;
    }
    let numeric = (0..t.columns.len())
        .map(|i| {
            shown.iter().any(|r| {
                matches!(
                    r.get(i),
                    Some(Value::Int(_) | Value::Num(_) | Value::Money(_) | Value::Pct(_))
                )
            })
        })
        .collect();
    HtmlTable {
        title: labels.get(t.key),
        headers: t.columns.iter().map(|c| labels.get(c)).collect(),
        numeric,
        total,
        empty: labels.get(empty),
        more: if total > PAGE_ROWS {
            labels
                .get("rows_shown")
                .replace("{shown}", &PAGE_ROWS.to_string())
                .replace("{total}", &total.to_string())
        } else {
            String::new()
        },
        rows: shown
            .iter()
            .map(|r| r.iter().map(Value::display).collect())
            .collect(),
    }
}

impl Renderer {
    pub fn new(templates_dir: &Path) -> anyhow::Result<Self> {
        let mut tera = Tera::new();
        for (name, built_in) in TEMPLATES {
            tera.add_raw_template(name, built_in)
                .with_context(|| format!("built-in template `{name}`"))?;
            let custom = templates_dir.join(name);
            if custom.is_file() {
                let text = std::fs::read_to_string(&custom)
                    .with_context(|| format!("cannot read `{}`", custom.display()))?;
                tera.add_raw_template(name, &text)
                    .with_context(|| format!("template `{}`", custom.display()))?;
            }
        }
        Ok(Self { tera })
    }

    /// Renders a scope's page, its email body (the page with the charts as
    /// `cid:` images the email resolves, where the page draws CSS bars) and
    /// the email's plain-text part, from one context: its tables walk every
    /// row of the scope (a national gap list holds most customers), so it
    /// is built once, not per output.
    pub fn render(&self, report: &Report, labels: Labels) -> anyhow::Result<Rendered> {
        let mut ctx = context(report, labels);
        let mut render = |name: &str, email: bool| {
            ctx.insert("email", &email);
            self.tera
                .render(name, &ctx)
                .with_context(|| format!("rendering `{name}`"))
        };
        Ok(Rendered {
            page: render("report.html", false)?,
            email_html: render("report.html", true)?,
            email_text: render("report.txt", true)?,
        })
    }
}

/// A scope's rendered templates.
pub struct Rendered {
    /// the saved, self-contained page
    pub page: String,
    /// the email's HTML body
    pub email_html: String,
    /// the email's plain-text part
    pub email_text: String,
}

/// What both templates are given, but for `email`: the page's sections,
/// each cut to `PAGE_ROWS`, as display text.
fn context(report: &Report, labels: Labels) -> Context {
    let mut ctx = Context::new();
    ctx.insert(
        "tier_chart",
        &format!("cid:{}", super::chart::TIER_CHART_CID),
    );
    ctx.insert("tier_chart_width", &super::chart::WIDTH);
    ctx.insert(
        "tier_chart_height",
        &super::chart::height(report.tier_counts.len()),
    );
    ctx.insert("title", &report.title);
    ctx.insert("scope", &report.scope_name);
    ctx.insert("as_of", &report.as_of.to_string());
    ctx.insert("period", &report.period);
    ctx.insert("l", &labels.all());
    let headline: Vec<(&str, String)> = report
        .headline
        .iter()
        .map(|(k, v)| (labels.get(k), v.display()))
        .collect();
    ctx.insert("headline", &headline);
    let max = report
        .tier_counts
        .iter()
        .map(|t| t.2)
        .max()
        .unwrap_or(0)
        .max(1);
    let bars: Vec<(String, String, u64, u64)> = report
        .tier_counts
        .iter()
        .map(|(t, l, n)| (t.clone(), l.clone(), *n, n * 100 / max))
        .collect();
    ctx.insert("tier_bars", &bars);
    ctx.insert(
        "top_reps_chart",
        &format!("cid:{}", super::chart::TOP_REPS_CHART_CID),
    );
    ctx.insert(
        "top_reps_chart_height",
        &super::chart::height(report.top_reps.len()),
    );
    ctx.insert("top_reps", &top_rep_bars(&report.top_reps));
    // SPEC §1: "the worst visit gaps on A/B customers", i.e. the two
    // highest tiers whatever the config names them; the rows come
    // sorted by tier, then gap. A C customer's gap is in the workbook.
    let top_tiers: Vec<&str> = report
        .tier_counts
        .iter()
        .take(GAP_TIERS)
        .map(|t| t.0.as_str())
        .collect();
    let (tier_col, gap_col) = (
        report.visits.column("tier").unwrap_or(0),
        report.visits.column("gap").unwrap_or(0),
    );
    let worst = html_table(
        &report.visits,
        labels,
        report.visits.rows.iter().filter(|r| {
            matches!(r.get(gap_col), Some(Value::Int(g)) if *g > 0)
                && matches!(r.get(tier_col), Some(Value::Text(t)) if top_tiers.contains(&t.as_str()))
        }),
        "no_gaps",
    );
    ctx.insert("worst_gaps", &worst);
    let caveat = report.changes_caveat();
    let mut changes = html_table(
        &report.changes,
        labels,
        report.changes.rows.iter(),
        caveat.unwrap_or("no_changes"),
    );
    // the changes listed are not all there are: say so under them too
    if let Some(caveat) = caveat.filter(|_| !changes.rows.is_empty()) {
        let caveat = labels.get(caveat);
        changes.more = if changes.more.is_empty() {
            caveat.to_string()
        } else {
            format!("{} {caveat}", changes.more)
        };
    }
    ctx.insert("changes", &changes);
    ctx.insert(
        "ranking",
        &html_table(
            &report.scorecard,
            labels,
            report.scorecard.rows.iter(),
            "no_reps",
        ),
    );
    ctx.insert(
        "areas",
        &html_table(&report.areas, labels, report.areas.rows.iter(), "no_rows"),
    );
    // a region's report has no overview: its headline is the region's row
    let regions = report.national.then(|| {
        html_table(
            &report.regions,
            labels,
            report.regions.rows.iter(),
            "no_rows",
        )
    });
    ctx.insert("regions", &regions);
    ctx.insert("rules", &report.rules);
    ctx
}
