//! `run`: one run of a job by hand, its summary on stdout and its rejected
//! rows on stderr; the exit code says how it went.

use std::collections::HashMap;
use std::io::IsTerminal;

use anyhow::bail;
use chrono::NaiveDate;

use super::summary::{counted, counts_line, emails_line};
use super::{open_store, say, yesterday, ExitCode};
use crate::config::Settings;
use crate::jobs::{self, RunOptions, RunStatus};
use crate::text::backticked;

/// A `run --as-of` after today in `timezone` (a mistyped year, most often)
/// would report days with no data yet as if they were over, and leave a
/// snapshot and an `out/` folder dated in the future; today itself may be
/// run, for a report of the day so far.
pub(super) fn future_as_of(settings: &Settings, as_of: Option<NaiveDate>) -> Option<String> {
    let today = settings.today();
    as_of.filter(|d| *d > today).map(|d| {
        format!(
            "error: `--as-of {d}` is after today ({today} in `{}`): a day not yet over has no \
             data to report; give a date up to {today}",
            settings.config.timezone
        )
    })
}

/// Rejected rows `run` prints per file; the rest are counted. A night
/// that rejects a whole 2-million-line export would otherwise write two
/// million lines to the terminal or to cron's mail.
const PRINTED_ROWS_PER_FILE: usize = 10;

/// Every file-level rejection, and each file's first rejected rows; then,
/// per file with more, how many were not printed and where they are
/// listed: the export holds every row a file lists, which is all of them
/// unless the ingest only counted those past `ingest::LISTED_REJECTIONS`.
fn print_rejections(
    rejections: &[crate::ingest::record::Rejection],
    notes: &[crate::ingest::FileNote],
    as_of: NaiveDate,
) {
    // rejected rows seen per (source, file), and the files in the order
    // they first appear
    let mut rows_seen: HashMap<(&str, &str), usize> = HashMap::new();
    let mut files: Vec<(&str, &str)> = Vec::new();
    for r in rejections {
        let key = (r.source.as_str(), r.file.as_str());
        let seen = rows_seen.entry(key).or_insert_with(|| {
            files.push(key);
            0
        });
        if r.row > 0 {
            *seen += 1;
        }
        if r.row == 0 || *seen <= PRINTED_ROWS_PER_FILE {
            say(tracing::Level::WARN, &format!("rejected: {r}"));
        }
    }
    for (source, file) in files {
        let unlisted: u64 = notes
            .iter()
            .filter(|n| n.source == source && n.file == file)
            .map(|n| n.unlisted_rejections)
            .sum();
        let unprinted =
            rows_seen[&(source, file)].saturating_sub(PRINTED_ROWS_PER_FILE) as u64 + unlisted;
        if unprinted > 0 {
            let listed = if unlisted > 0 {
                format!("lists the first {}", crate::ingest::LISTED_REJECTIONS)
            } else {
                "lists them all".to_string()
            };
            say(
                tracing::Level::WARN,
                &format!(
                    "rejected: `{source}`: {file}: {unprinted} more rejected rows not printed; \
                     `salesbatch export rejections --as-of {as_of}` {listed}"
                ),
            );
        }
    }
}

pub(super) async fn run_job_cmd(
    settings: &Settings,
    job: &str,
    as_of: Option<NaiveDate>,
    opts: RunOptions,
) -> anyhow::Result<ExitCode> {
    let Some(job_cfg) = settings.job(job) else {
        bail!(
            "unknown job `{job}`; the config defines {}",
            backticked(settings.config.jobs.iter().map(|j| &j.name))
        );
    };
    let as_of = as_of.unwrap_or_else(|| yesterday(settings.tz));
    let store = open_store(settings).await?;
    let mut opts = opts;
    opts.progress = std::io::stderr().is_terminal().then(|| {
        let pb = indicatif::ProgressBar::new_spinner();
        pb.enable_steady_tick(std::time::Duration::from_millis(120));
        pb
    });
    let outcome = jobs::run_locked(settings, store.as_ref(), job_cfg, as_of, &opts).await;
    if let Some(pb) = &opts.progress {
        pb.finish_and_clear();
    }
    let outcome = outcome?;
    print_rejections(&outcome.rejections, &outcome.notes, as_of);
    for (recipient, region) in &outcome.no_report {
        say(
            tracing::Level::WARN,
            &format!("no report: recipient {recipient}, region `{region}`: the region has no scored customer"),
        );
    }
    if let Some(unknown) = &outcome.unknown_regions {
        for region in &unknown.asked {
            say(
                tracing::Level::WARN,
                &format!(
                    "no report: `--region {region}`: no scored customer or rep has that region (regions: {})",
                    backticked(&unknown.known)
                ),
            );
        }
    }
    let c = &outcome.counts;
    outln!(
        "run {} `{job}` as of {as_of}: {}",
        outcome.run_id,
        counts_line(c)
    );
    if let Some((run_id, rejections)) = outcome.quality_from {
        outln!(
            "data quality: as ingested by run {run_id}, {} (this run ingested nothing)",
            counted(rejections, "rejection", "rejections")
        );
    }
    if let Some(dir) = &outcome.report_dir {
        outln!("reports: {}", dir.display());
    }
    if let Some(outbox) = &outcome.outbox {
        outln!(
            "emails: {} written to {} ({} already sent, {} failed)",
            c.emails_sent,
            outbox.display(),
            c.emails_skipped,
            c.emails_failed
        );
    } else if let Some(emails) = emails_line(c) {
        outln!("emails: {emails}");
    }
    if let Some((removed, before)) = outcome.reports_removed.filter(|(n, _)| *n > 0) {
        outln!(
            "old reports: {} dated before {before} removed (`keep_reports_days`)",
            counted(removed, "folder", "folders")
        );
    }
    if let Some((written, dir)) = &outcome.previewed {
        outln!(
            "emails: {} previewed in {} (a dry run sends none)",
            written,
            dir.display()
        );
    }
    Ok(match outcome.status {
        RunStatus::Success => ExitCode::Success,
        RunStatus::Degraded => ExitCode::Degraded,
        RunStatus::Failed => ExitCode::Failure,
    })
}
