//! Reports: one workbook and one HTML page per region, plus the national
//! workbook for `*` recipients and the data-quality workbook. Every table is
//! built once (`tables.rs`) from the region's rows only, then written by the
//! xlsx and HTML writers, so both always show the same numbers.

pub mod chart;
pub mod export;
pub mod html;
pub mod i18n;
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
    /// (Content-ID, PNG) of each inline chart `html_body` references
    pub charts: Vec<(String, Vec<u8>)>,
    /// the national bundle also carries the data-quality workbook
    pub quality_xlsx: Option<PathBuf>,
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
    let mut out = Vec::new();
    for scope in scopes {
        let report = tables::build(&scope, c, rules, quality, labels);
        let stem = match &scope {
            Scope::Region(r) => file_stem(r),
            Scope::National => "national".into(),
        };
        let xlsx = dir.join(format!("{stem}.xlsx"));
        xlsx::write(&report, &xlsx, labels)?;
        let page = renderer.render(&report, labels, false)?;
        let html = dir.join(format!("{stem}.html"));
        std::fs::write(&html, &page)
            .with_context(|| format!("cannot write `{}`", html.display()))?;
        let html_body = renderer.render(&report, labels, true)?;
        let counts: Vec<u64> = report.tier_counts.iter().map(|t| t.2).collect();
        let charts = vec![(
            chart::TIER_CHART_CID.to_string(),
            chart::horizontal_bars(&counts)?,
        )];
        let quality_xlsx = if scope == Scope::National {
            let path = dir.join("data-quality.xlsx");
            xlsx::write_quality(&report, &tables::notes(quality.notes), &path, labels)?;
            Some(path)
        } else {
            None
        };
        out.push(Bundle {
            title: report.title.clone(),
            scope,
            xlsx,
            html,
            html_body,
            charts,
            quality_xlsx,
        });
    }
    Ok(Rendered {
        bundles: out,
        regions,
    })
}
