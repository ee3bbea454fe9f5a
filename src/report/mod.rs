//! Reports: one workbook and one HTML page per region, plus the national
//! workbook for `*` recipients and the data-quality workbook. Every table is
//! built once (`tables.rs`) from the region's rows only, then written by the
//! xlsx and HTML writers, so both always show the same numbers. The scopes
//! are independent and are rendered on the available cores.

pub mod chart;
pub mod export;
pub mod html;
pub mod i18n;
pub mod retention;
mod sample;
pub mod tables;
pub mod xlsx;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::config::Settings;
use crate::ingest::record::Rejection;
use crate::ingest::FileNote;
use crate::metrics::{Computed, Rules};

pub use tables::{Scope, Table, Value};

/// Files written for one audience.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// a region name, `*` for the national report
    pub scope: Scope,
    pub title: String,
    pub xlsx: PathBuf,
    pub html: PathBuf,
    /// the page as the email body: charts as `cid:` images
    pub html_body: String,
    /// the email's plain-text part: the same sections as lines
    pub text_body: String,
    /// (Content-ID, PNG) of each inline chart `html_body` references
    pub charts: Vec<(String, Vec<u8>)>,
    /// the national bundle also carries the data-quality workbook
    pub quality_xlsx: Option<PathBuf>,
}

/// For `check`: loads the templates as a run does (a user's file in
/// `templates_dir` over the built-in one of its name) and renders each, for
/// a region and for the national scope of a made-up computation with a
/// row in every section, so a template that does not parse or names what
/// the reports do not give fails now, not at night. Returns the user's
/// files it checked.
pub fn check_templates(
    settings: &Settings,
    rules: &Rules,
    as_of: chrono::NaiveDate,
) -> anyhow::Result<Vec<PathBuf>> {
    let dir = settings.templates_dir();
    let custom = html::TEMPLATES
        .iter()
        .map(|(name, _)| dir.join(name))
        .filter(|p| p.is_file())
        .collect();
    let renderer = html::Renderer::new(&dir)?;
    let labels = i18n::Labels(settings.config.locale);
    let c = sample::computed(rules, as_of);
    let quality = Quality {
        rejections: &[],
        notes: &[],
        from: None,
    };
    for scope in [Scope::Region(sample::REGION.into()), Scope::National] {
        let report = tables::build(&scope, &c, rules, &quality, labels);
        renderer.render(&report, labels)?;
    }
    Ok(custom)
}

/// Regions present in the results (customers' and reps' regions), sorted.
pub fn regions_of(c: &Computed) -> BTreeSet<String> {
    c.tiers
        .iter()
        .map(|t| t.region.clone())
        .chain(c.scorecard.iter().map(|s| s.region.clone()))
        .filter(|r| !r.is_empty())
        .collect()
}

/// A file name from a region name: path separators and control characters
/// cannot escape the output folder.
pub fn file_stem(region: &str) -> String {
    let s: String = region
        .chars()
        .map(|c| {
            if c.is_control() || "/\\:*?\"<>|".contains(c) {
                '_'
            } else {
                c
            }
        })
        .collect();
    let s = s.trim_matches('.').trim().to_string();
    if s.is_empty() {
        "_".into()
    } else {
        s
    }
}

/// What the reports show of data quality: the rows an ingest rejected and
/// its notes on files that loaded. A run that ingested nothing (a job
/// without the ingest step, a dry run) shows those of the latest run that
/// did, which `from` names.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quality<'a> {
    pub rejections: &'a [Rejection],
    pub notes: &'a [FileNote],
    pub from: Option<&'a QualitySource>,
}

/// The run whose data quality a report shows, when not its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QualitySource {
    pub run_id: i64,
    pub job: String,
    pub as_of: chrono::NaiveDate,
    /// when that run started, as the report's readers tell time (the
    /// configured `timezone`), to the minute
    pub started: String,
}

/// What `render_all` wrote, and the regions of the results it chose from,
/// so that a caller can name a `--region` that matched none of them.
pub struct Rendered {
    pub bundles: Vec<Bundle>,
    pub regions: BTreeSet<String>,
}

pub fn render_all(
    settings: &Settings,
    rules: &Rules,
    c: &Computed,
    quality: &Quality<'_>,
    dir: &Path,
    only_regions: &[String],
) -> anyhow::Result<Rendered> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    let labels = i18n::Labels(settings.config.locale);
    let renderer = html::Renderer::new(&settings.templates_dir())?;
    let regions = regions_of(c);
    let mut scopes: Vec<Scope> = regions
        .iter()
        .filter(|r| only_regions.is_empty() || only_regions.contains(r))
        .cloned()
        .map(Scope::Region)
        .collect();
    if only_regions.is_empty() || only_regions.iter().any(|r| r == "*") {
        scopes.push(Scope::National);
    }
    let job = ScopeJob {
        c,
        rules,
        quality,
        labels,
        renderer: &renderer,
        dir,
    };
    let bundles = render_in_parallel(&scopes, |scope| job.render(scope))?;
    Ok(Rendered { bundles, regions })
}

/// What every scope's report is rendered from.
struct ScopeJob<'a> {
    c: &'a Computed,
    rules: &'a Rules,
    quality: &'a Quality<'a>,
    labels: i18n::Labels,
    renderer: &'a html::Renderer,
    dir: &'a Path,
}

impl ScopeJob<'_> {
    fn render(&self, scope: &Scope) -> anyhow::Result<Bundle> {
        let (dir, labels) = (self.dir, self.labels);
        let report = tables::build(scope, self.c, self.rules, self.quality, labels);
        let stem = scope.file_stem();
        let xlsx = dir.join(format!("{stem}.xlsx"));
        xlsx::write(&report, &xlsx, labels)?;
        let rendered = self.renderer.render(&report, labels)?;
        let html = dir.join(format!("{stem}.html"));
        std::fs::write(&html, &rendered.page)
            .with_context(|| format!("cannot write `{}`", html.display()))?;
        let counts: Vec<u64> = report.tier_counts.iter().map(|t| t.2).collect();
        let mut charts = vec![(
            chart::TIER_CHART_CID.to_string(),
            chart::horizontal_bars(&counts)?,
        )];
        if !report.top_reps.is_empty() {
            let kpis: Vec<u64> = report
                .top_reps
                .iter()
                .map(|r| chart::tenths(r.kpi))
                .collect();
            charts.push((
                chart::TOP_REPS_CHART_CID.to_string(),
                chart::horizontal_bars(&kpis)?,
            ));
        }
        let quality_xlsx = if *scope == Scope::National {
            let path = dir.join("data-quality.xlsx");
            xlsx::write_quality(&report, &tables::notes(self.quality.notes), &path, labels)?;
            Some(path)
        } else {
            None
        };
        Ok(Bundle {
            title: report.title.clone(),
            scope: scope.clone(),
            xlsx,
            html,
            html_body: rendered.email_html,
            text_body: rendered.email_text,
            charts,
            quality_xlsx,
        })
    }
}

/// The indexes of `scopes` in the order they are started: the national
/// report first, then the regions in their order.
fn start_order(scopes: &[Scope]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scopes.len()).collect();
    order.sort_by_key(|&i| scopes[i] != Scope::National);
    order
}

/// Renders the scopes on the available cores, each scope's files written by
/// one thread, and returns the bundles in the scopes' order. The national
/// report holds every region's rows, so it is started first: taken last it
/// would leave the other cores idle while it alone is written. The first
/// error (in scope order) is returned once every thread has stopped.
fn render_in_parallel(
    scopes: &[Scope],
    render: impl Fn(&Scope) -> anyhow::Result<Bundle> + Sync,
) -> anyhow::Result<Vec<Bundle>> {
    let order = start_order(scopes);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .clamp(1, scopes.len().max(1));
    // the job's span (job, run_id, as_of) stays on what the threads log
    let span = tracing::Span::current();
    let mut done: Vec<(usize, anyhow::Result<Bundle>)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let _entered = span.enter();
                    let mut mine = Vec::new();
                    loop {
                        let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&i) = order.get(k) else { break };
                        mine.push((i, render(&scopes[i])));
                    }
                    mine
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| match w.join() {
                Ok(mine) => mine,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    });
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, bundle)| bundle).collect()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Mutex;

    use super::{render_in_parallel, start_order, Bundle, Scope};

    fn bundle(scope: &Scope) -> Bundle {
        Bundle {
            scope: scope.clone(),
            title: scope.name().to_string(),
            xlsx: PathBuf::new(),
            html: PathBuf::new(),
            html_body: String::new(),
            text_body: String::new(),
            charts: Vec::new(),
            quality_xlsx: None,
        }
    }

    fn scopes() -> Vec<Scope> {
        let mut scopes: Vec<Scope> = ["华东", "华北", "华南", "西南"]
            .into_iter()
            .map(|r| Scope::Region(r.into()))
            .collect();
        scopes.push(Scope::National);
        scopes
    }

    #[test]
    fn bundles_keep_the_scopes_order_and_the_national_one_starts_first() {
        let scopes = scopes();
        assert_eq!(start_order(&scopes), vec![4, 0, 1, 2, 3]);
        let rendered = Mutex::new(0);
        let bundles = render_in_parallel(&scopes, |scope| {
            *rendered.lock().unwrap() += 1;
            Ok(bundle(scope))
        })
        .unwrap();
        let order: Vec<&Scope> = bundles.iter().map(|b| &b.scope).collect();
        assert_eq!(order, scopes.iter().collect::<Vec<_>>());
        assert_eq!(rendered.into_inner().unwrap(), scopes.len());
    }

    #[test]
    fn the_first_failing_scope_in_order_is_reported_after_all_ran() {
        let scopes = scopes();
        let ran = Mutex::new(0);
        let err = render_in_parallel(&scopes, |scope| {
            *ran.lock().unwrap() += 1;
            match scope.name() {
                // the national report fails first in time, 西南 first in order
                "*" | "西南" => anyhow::bail!("cannot write `{}.xlsx`", scope.name()),
                _ => Ok(bundle(scope)),
            }
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "cannot write `西南.xlsx`");
        assert_eq!(ran.into_inner().unwrap(), scopes.len());
    }
}
