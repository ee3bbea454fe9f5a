//! `export`: a computed run's tables, or a run's rejections, as CSV on
//! stdout.

use anyhow::{bail, Context as _};
use chrono::NaiveDate;

use super::{open_store, reader_gone, say, yesterday, ExitCode, ExportKind};
use crate::config::Settings;
use crate::text::backticked;
use crate::{report, warehouse};

pub(super) async fn export(
    settings: &Settings,
    what: ExportKind,
    as_of: Option<NaiveDate>,
    regions: &[String],
    job: Option<&str>,
    excel: bool,
) -> anyhow::Result<ExitCode> {
    let store = open_store(settings).await?;
    let as_of = as_of.unwrap_or_else(|| yesterday(settings.tz));
    let out = std::io::stdout().lock();
    let mut kept = report::export::Regions::new(regions);
    match what {
        ExportKind::Rejections => {
            // an ingest-only job computes nothing, yet its rejections are the
            // ones to export; a run without ingest exports those it reported
            let Some(run_id) = store.quality_run_for(as_of, job).await? else {
                let of_job = job.map_or(String::new(), |j| format!(" of job `{j}`"));
                bail!(
                    "no run{of_job} for {as_of} has data quality; run a job with `--as-of {as_of}` \
                     first"
                );
            };
            if !regions.is_empty() {
                say(
                    tracing::Level::INFO,
                    "note: `--region` does not apply to `export rejections`: a rejected row has \
                     no region; all are listed",
                );
            }
            report::export::rejections(out, excel, &store.rejections(run_id).await?)
                .or_else(unless_reader_gone)?;
            return Ok(ExitCode::Success);
        }
        ExportKind::Tiers => {
            let run = computed_run(store.as_ref(), as_of, job).await?;
            report::export::tiers(out, excel, &store.tiers_of(run.run_id).await?, &mut kept)
                .or_else(unless_reader_gone)?;
        }
        ExportKind::VisitGaps | ExportKind::Scorecard | ExportKind::Development => {
            let run = computed_run(store.as_ref(), as_of, job).await?;
            let kind = match what {
                ExportKind::VisitGaps => "visits",
                ExportKind::Scorecard => "scorecard",
                _ => "development",
            };
            let doc = store
                .snapshot_doc(run.run_id, kind)
                .await?
                .context("snapshot missing")?;
            report::export::document(out, excel, kind, &doc, &mut kept)
                .or_else(unless_reader_gone)?;
        }
    }
    // as `kubectl get -n typo` does: a note, and still success, since a
    // region may have no row of one kind (no scored customer) on a date
    for region in kept.unmatched() {
        say(
            tracing::Level::INFO,
            &format!(
                "note: no row of this export has region `{region}` (its regions: {})",
                backticked(kept.seen())
            ),
        );
    }
    Ok(ExitCode::Success)
}

/// An export whose reader stopped reading (`| head`) has done what was
/// asked: a closed pipe is no error, as for `outln!`.
fn unless_reader_gone(e: anyhow::Error) -> anyhow::Result<()> {
    // the csv crate's error holds the io error without naming it a source
    let closed = e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(reader_gone)
            || cause
                .downcast_ref::<csv::Error>()
                .is_some_and(|c| matches!(c.kind(), csv::ErrorKind::Io(io) if reader_gone(io)))
    });
    if closed {
        Ok(())
    } else {
        Err(e)
    }
}

/// The run to export for `as_of`: `job`'s latest, or the only job's. Two
/// jobs of different periods (a nightly `mtd` and a monthly
/// `previous_month` run on the 1st both compute the last day of the month)
/// hold different numbers for the same date: exporting whichever ran last
/// would hand a script the wrong month without a word.
async fn computed_run(
    store: &dyn warehouse::Store,
    as_of: NaiveDate,
    job: Option<&str>,
) -> anyhow::Result<warehouse::RunRow> {
    let mut runs = store.snapshot_runs(as_of).await?;
    if let Some(job) = job {
        let Some(at) = runs.iter().position(|r| r.job == job) else {
            let others = if runs.is_empty() {
                String::new()
            } else {
                format!(" (computed by {})", backticked(runs.iter().map(|r| &r.job)))
            };
            bail!(
                "no computed run of job `{job}` for {as_of}{others}; run `{job}` with \
                 `--as-of {as_of}` first"
            );
        };
        return Ok(runs.swap_remove(at));
    }
    match runs.len() {
        0 => bail!("no computed run for {as_of}; run a job with `--as-of {as_of}` first"),
        1 => Ok(runs.remove(0)),
        n => bail!(
            "{n} jobs computed {as_of} ({}), each over its own period; choose one with `--job`",
            backticked(runs.iter().map(|r| &r.job))
        ),
    }
}
