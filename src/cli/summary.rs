//! How a run's counts read, in its summary line and in `history`, and the
//! `history` command itself.

use super::{open_store, padded, ExitCode};
use crate::config::Settings;
use crate::warehouse;

/// What a run did, as its summary line and `history` say it.
pub(super) fn counts_line(c: &crate::jobs::RunCounts) -> String {
    format!(
        "{} loaded, {} skipped, {} refused, {}, {}, {} scored",
        counted(c.files_loaded, "file", "files"),
        c.files_skipped,
        c.files_refused,
        counted(c.rows_loaded, "row", "rows"),
        counted(c.rejections, "rejection", "rejections"),
        counted(c.customers_scored, "customer", "customers"),
    )
}

/// A run's stored counts for the `history` table: the summary line's
/// words, then its reports and emails where it had any. A run still going
/// (or one written by a version whose counts do not parse) shows them as
/// stored.
pub(super) fn history_counts(stored: &str) -> String {
    // a run still going has stored none yet: nothing to say, not "0 files"
    if stored.trim() == "{}" {
        return String::new();
    }
    let Ok(c) = serde_json::from_str::<crate::jobs::RunCounts>(stored) else {
        return stored.to_string();
    };
    let mut line = counts_line(&c);
    if c.reports > 0 {
        line.push_str(&format!(", {}", counted(c.reports, "report", "reports")));
    }
    if let Some(emails) = emails_line(&c) {
        line.push_str(&format!(", emails: {emails}"));
    }
    line
}

/// A run's emails as its summary and `history` say them, or `None` for a
/// run that sent none and tried none.
pub(super) fn emails_line(c: &crate::jobs::RunCounts) -> Option<String> {
    (c.emails_sent + c.emails_failed + c.emails_skipped > 0).then(|| {
        format!(
            "{} sent, {} already sent, {} failed{}",
            c.emails_sent,
            c.emails_skipped,
            c.emails_failed,
            without_workbooks(c.emails_without_workbooks)
        )
    })
}

/// One run as `history --json` writes it: the table's columns, the
/// counts as an object.
fn history_json(r: &warehouse::RunRow) -> serde_json::Value {
    serde_json::json!({
        "run_id": r.run_id,
        "job": r.job,
        "as_of": r.as_of,
        "started_at": r.started_at,
        "finished_at": r.finished_at,
        "status": r.status,
        "quality_run": r.quality_run,
        "counts": serde_json::from_str::<serde_json::Value>(&r.counts)
            .unwrap_or_else(|_| serde_json::Value::String(r.counts.clone())),
    })
}

/// `1 file`, `2 files`: the summary lines are read by people first.
pub(super) fn counted(
    n: impl TryInto<u64> + Copy + std::fmt::Display,
    one: &str,
    many: &str,
) -> String {
    if n.try_into().is_ok_and(|n| n == 1) {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

/// The tail of an email count line for emails sent without workbooks.
pub(super) fn without_workbooks(count: u64) -> String {
    if count > 0 {
        format!("; {count} sent without workbooks (too large for the mail server)")
    } else {
        String::new()
    }
}

/// `runs` (newest first) with those recorded as running whose process is
/// gone shown `interrupted`, as the job's next run will mark them
/// (`jobs::run_is_going`). Otherwise a run killed at night read as still
/// going until the job ran again, and the operator waited on it.
async fn dead_runs_interrupted(
    store: &dyn warehouse::Store,
    mut runs: Vec<warehouse::RunRow>,
) -> anyhow::Result<Vec<warehouse::RunRow>> {
    let mut dead = Vec::new();
    for r in runs.iter().filter(|r| r.status == "running") {
        if !crate::jobs::run_is_going(store, &runs, r).await? {
            dead.push(r.run_id);
        }
    }
    for r in runs.iter_mut().filter(|r| dead.contains(&r.run_id)) {
        r.status = "interrupted".into();
    }
    Ok(runs)
}

/// `history`: past runs, newest first, as a table or one JSON object a run.
pub(super) async fn history(
    settings: &Settings,
    limit: i64,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let store = open_store(settings).await?;
    let runs = dead_runs_interrupted(store.as_ref(), store.runs(limit).await?).await?;
    if json {
        for r in runs {
            outln!("{}", history_json(&r));
        }
        return Ok(ExitCode::Success);
    }
    outln!(
        "{:>6}  {} {:<10}  {:<25}  {:>8}  {:<11}  {:>7}  counts",
        "run",
        padded("job", 12),
        "as_of",
        "started",
        "secs",
        "status",
        "quality"
    );
    for r in runs {
        // in `timezone`, as cron, as-of and the reports' "开始于" are:
        // a 02:30 run in Shanghai is not shown as 18:30 the day before
        let started =
            warehouse::local_timestamp(&r.started_at, settings.tz, "%Y-%m-%dT%H:%M:%S%:z");
        let secs = match (
            warehouse::parse_timestamp(&r.started_at),
            r.finished_at
                .as_deref()
                .and_then(warehouse::parse_timestamp),
        ) {
            (Some(a), Some(b)) => (b - a).num_seconds().to_string(),
            _ => String::new(),
        };
        // which run's rejections and notes its reports showed
        let quality = r.quality_run.map_or(String::new(), |q| format!("#{q}"));
        outln!(
            "{:>6}  {} {:<10}  {:<25}  {:>8}  {:<11}  {:>7}  {}",
            r.run_id,
            padded(&r.job, 12),
            r.as_of,
            started,
            secs,
            r.status,
            quality,
            history_counts(&r.counts)
        );
    }
    Ok(ExitCode::Success)
}
