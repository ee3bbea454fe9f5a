//! Command line (SPEC §2): argument parsing and dispatch to the library.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use chrono::NaiveDate;
use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{self, Settings};
use crate::jobs::{self, RunOptions, RunStatus};
use crate::text::backticked;
use crate::{deliver, report, warehouse};

/// `println!` for a command's output, which does not panic when the
/// reader has gone (`salesbatch history | head`): the rest is dropped and
/// the command ends as it would have, exit code included.
macro_rules! outln {
    ($($arg:tt)*) => {
        written(std::io::Write::write_fmt(
            &mut std::io::stdout().lock(),
            format_args!("{}\n", format_args!($($arg)*)),
        ))
    };
}

/// What `outln!` does with a failed write: a closed pipe is the reader's
/// choice; anything else (a full disk under `> file`) is worth a warning.
fn written(result: std::io::Result<()>) {
    if let Err(e) = result {
        if !reader_gone(&e) {
            tracing::warn!(error = %e, "cannot write to standard output");
        }
    }
}

/// Whether a write failed because the reader of the pipe has gone.
fn reader_gone(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::BrokenPipe
}

#[derive(Debug, Parser)]
#[command(
    name = "salesbatch",
    version,
    about = "Nightly sales ETL and per-region reports"
)]
pub struct Cli {
    /// Config file (TOML).
    #[arg(
        long,
        global = true,
        env = "SALESBATCH_CONFIG",
        default_value = "config/salesbatch.toml"
    )]
    pub config: PathBuf,
    /// How log lines on stderr are written: `text` for a person or a log
    /// file, `json` (one object a line) for a log shipper.
    #[arg(
        long,
        global = true,
        env = "SALESBATCH_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// The form of log lines (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the config, open every source, print a summary.
    Check,
    /// Run a job once for one date.
    Run {
        /// The job's `name` in `[[jobs]]`.
        job: String,
        /// Date to compute (default: yesterday in the configured timezone;
        /// up to today).
        #[arg(long)]
        as_of: Option<NaiveDate>,
        /// Only these regions' reports (repeatable; `*` = national).
        #[arg(long = "region")]
        regions: Vec<String>,
        /// Write the reports but send no email (the ledger is untouched).
        #[arg(long)]
        no_email: bool,
        /// Send again the emails the ledger records as sent for this date.
        #[arg(long)]
        resend: bool,
        /// Read no file and store nothing: compute from the warehouse as it
        /// is, render to `out/dry-run/`, and write there the email each
        /// recipient would get instead of sending it.
        #[arg(long)]
        dry_run: bool,
    },
    /// Scheduler daemon: runs jobs on their cron schedules.
    Serve,
    /// Past runs.
    History {
        /// How many runs, newest first.
        #[arg(long, default_value_t = 20)]
        limit: i64,
        /// One JSON object a run, for scripts, instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// CSV of a computed table to stdout.
    Export {
        /// The table to write, its columns under their English canonical
        /// names.
        what: ExportKind,
        /// The as-of date to export (default: yesterday in the configured
        /// timezone).
        #[arg(long)]
        as_of: Option<NaiveDate>,
        /// Only these regions' rows (repeatable).
        #[arg(long = "region")]
        regions: Vec<String>,
        /// The job whose run to export, when several jobs (of different
        /// periods) computed the date.
        #[arg(long)]
        job: Option<String>,
    },
    /// The email ledger; `deliveries retry` resends failed emails.
    Deliveries {
        /// Only the emails that failed (what `deliveries retry` resends).
        #[arg(long)]
        failed: bool,
        #[command(subcommand)]
        action: Option<DeliveriesAction>,
    },
    /// Write a runnable demo and run the nightly job on it once.
    Demo {
        /// Folder to write the demo into (config, inbox files, ERP database).
        #[arg(long, default_value = "demo")]
        dir: PathBuf,
        /// How many customers the demo's masters and sales cover.
        #[arg(long, default_value_t = 60)]
        customers: u32,
        /// Seed of the demo's random data: the same seed writes the same files.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Date the demo data ends on and the run computes (default: yesterday).
        #[arg(long)]
        as_of: Option<NaiveDate>,
        /// Only write the demo files; do not run the nightly job.
        #[arg(long)]
        no_run: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportKind {
    Tiers,
    VisitGaps,
    Scorecard,
    Development,
    Rejections,
}

#[derive(Debug, Subcommand)]
pub enum DeliveriesAction {
    /// Resend every failed email, as it was built (from the spool).
    Retry,
}

/// SPEC §2 exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    Success = 0,
    Failure = 1,
    Usage = 2,
    Degraded = 3,
}

fn today(tz: chrono_tz::Tz) -> NaiveDate {
    chrono::Utc::now().with_timezone(&tz).date_naive()
}

fn yesterday(tz: chrono_tz::Tz) -> NaiveDate {
    let today = today(tz);
    today.pred_opt().unwrap_or(today)
}

/// A `run --as-of` after today in `timezone` (a mistyped year, most often)
/// would report days with no data yet as if they were over, and leave a
/// snapshot and an `out/` folder dated in the future; today itself may be
/// run, for a report of the day so far.
fn future_as_of(settings: &Settings, as_of: Option<NaiveDate>) -> Option<String> {
    let today = today(settings.tz);
    as_of.filter(|d| *d > today).map(|d| {
        format!(
            "error: `--as-of {d}` is after today ({today} in `{}`): a day not yet over has no \
             data to report; give a date up to {today}",
            settings.config.timezone
        )
    })
}

fn load(path: &std::path::Path) -> anyhow::Result<Settings> {
    Ok(config::load(path)?)
}

/// Whether stderr carries JSON log lines (`--log-format json`): set once by
/// `run`, read by `say`.
static JSON_STDERR: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A line for the person who ran the command (a rejected row, a note), on
/// stderr: as it is in text mode; with `--log-format json` as a log event
/// of `level` (target `salesbatch::cli`), so that every stderr line is one
/// JSON object a log shipper can read.
pub fn say(level: tracing::Level, line: &str) {
    if !JSON_STDERR.load(std::sync::atomic::Ordering::Relaxed) {
        eprintln!("{line}");
    } else if level == tracing::Level::ERROR {
        tracing::error!(target: "salesbatch::cli", "{line}");
    } else if level == tracing::Level::WARN {
        tracing::warn!(target: "salesbatch::cli", "{line}");
    } else {
        tracing::info!(target: "salesbatch::cli", "{line}");
    }
}

/// Runs one command. Config problems come back as `ConfigError` (exit 2).
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    JSON_STDERR.store(
        cli.log_format == LogFormat::Json,
        std::sync::atomic::Ordering::Relaxed,
    );
    match cli.command {
        Command::Demo {
            dir,
            customers,
            seed,
            as_of,
            no_run,
        } => {
            let as_of = as_of.unwrap_or_else(|| yesterday(chrono_tz::Asia::Shanghai));
            let config_path = crate::demo::write(&dir, customers, seed, as_of)?;
            outln!("demo written to {}", dir.display());
            if no_run {
                return Ok(ExitCode::Success);
            }
            let settings = load(&config_path)?;
            run_job_cmd(&settings, "nightly", Some(as_of), RunOptions::default()).await
        }
        Command::Check => check(&load(&cli.config)?).await,
        Command::Run {
            job,
            as_of,
            regions,
            no_email,
            resend,
            dry_run,
        } => {
            let settings = load(&cli.config)?;
            if let Some(message) = future_as_of(&settings, as_of) {
                say(tracing::Level::ERROR, &message);
                return Ok(ExitCode::Usage);
            }
            run_job_cmd(
                &settings,
                &job,
                as_of,
                RunOptions {
                    regions,
                    no_email,
                    resend,
                    dry_run,
                    progress: None,
                },
            )
            .await
        }
        Command::Serve => {
            let settings = load(&cli.config)?;
            crate::schedule::serve(settings).await?;
            Ok(ExitCode::Success)
        }
        Command::History { limit, json } => {
            let settings = load(&cli.config)?;
            let store = open_store(&settings).await?;
            if json {
                for r in store.runs(limit).await? {
                    outln!("{}", history_json(&r));
                }
                return Ok(ExitCode::Success);
            }
            outln!(
                "{:>6}  {} {:<10}  {:<25}  {:>8}  {:<9}  {:>7}  counts",
                "run",
                padded("job", 12),
                "as_of",
                "started",
                "secs",
                "status",
                "quality"
            );
            for r in store.runs(limit).await? {
                let started_at = warehouse::parse_timestamp(&r.started_at);
                // in `timezone`, as cron, as-of and the reports' "开始于" are:
                // a 02:30 run in Shanghai is not shown as 18:30 the day before
                let started = started_at.map_or_else(
                    || r.started_at.clone(),
                    |t| {
                        t.with_timezone(&settings.tz)
                            .format("%Y-%m-%dT%H:%M:%S%:z")
                            .to_string()
                    },
                );
                let secs = match (
                    started_at,
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
                    "{:>6}  {} {:<10}  {:<25}  {:>8}  {:<9}  {:>7}  {}",
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
        Command::Export {
            what,
            as_of,
            regions,
            job,
        } => {
            let settings = load(&cli.config)?;
            export(&settings, what, as_of, &regions, job.as_deref()).await
        }
        Command::Deliveries { failed, action } => {
            let settings = load(&cli.config)?;
            let store = open_store(&settings).await?;
            if action.is_some() {
                return retry_deliveries(&settings, store.as_ref()).await;
            }
            outln!(
                "{:<10} {} {} {} {:<7} {:>3}  {:<50}  error",
                "as_of",
                padded("job", 10),
                padded("recipient", 28),
                padded("region", 8),
                "status",
                "try",
                "message_id"
            );
            for d in store.deliveries(failed).await? {
                outln!(
                    "{:<10} {} {} {} {:<7} {:>3}  {:<50}  {}",
                    d.as_of,
                    padded(&d.job, 10),
                    padded(&d.recipient, 28),
                    padded(&d.region, 8),
                    d.status,
                    d.attempts,
                    d.message_id.unwrap_or_default(),
                    d.error.unwrap_or_default()
                );
            }
            Ok(ExitCode::Success)
        }
    }
}

/// `text` left-aligned in `columns` terminal columns: `{:<8}` counts
/// characters, so each Chinese character (two columns wide) pushed the
/// rest of a row of `华东` one column further right.
fn padded(text: &str, columns: usize) -> String {
    let width = unicode_width::UnicodeWidthStr::width(text);
    format!("{text}{}", " ".repeat(columns.saturating_sub(width)))
}

/// An error and its causes on one line, like `{:#}`, but without a cause
/// whose text an outer message already quotes: sqlx (and some of our own
/// errors) put their source's text in their message, so `{:#}` repeated a
/// database's message up to three times.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    let mut cause = Some(e);
    while let Some(err) = cause {
        let text = err.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        cause = err.source();
    }
    out
}

pub async fn open_store(settings: &Settings) -> anyhow::Result<Box<dyn warehouse::Store>> {
    let url = settings.warehouse_url().map_err(anyhow::Error::msg)?;
    Ok(warehouse::open(&url).await?)
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

async fn run_job_cmd(
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

/// Money columns whose mapped header names a unit of 万 or 千元: SPEC §4
/// reads amounts and targets as CNY, so such a column would load 10,000
/// or 1,000 times too small, every value parsing fine. A note, not a
/// problem: the header may mislead (`金额(元，含税万元以上)`), and `check`
/// cannot see the values' scale.
fn scaled_money_columns(source: &config::SourceConfig) -> Vec<String> {
    source
        .columns
        .iter()
        .filter(|(field, _)| matches!(field.as_str(), "amount" | "sales_target"))
        .filter_map(|(field, header)| {
            let unit = if header.contains('万') {
                "万 (×10,000)"
            } else if header.contains("千元") {
                "千元 (×1,000)"
            } else {
                return None;
            };
            Some(format!(
                "`{field}` is read from `{header}`, and amounts load as CNY (SPEC §4): a \
                 column in {unit} loads that many times too small; convert it to 元 first"
            ))
        })
        .collect()
}

/// What a run did, as its summary line and `history` say it.
fn counts_line(c: &crate::jobs::RunCounts) -> String {
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
fn history_counts(stored: &str) -> String {
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
fn emails_line(c: &crate::jobs::RunCounts) -> Option<String> {
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
fn counted(n: impl TryInto<u64> + Copy + std::fmt::Display, one: &str, many: &str) -> String {
    if n.try_into().is_ok_and(|n| n == 1) {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

async fn check(settings: &Settings) -> anyhow::Result<ExitCode> {
    let mut problems = 0;
    outln!(
        "config {}: ok ({}, {}, {})",
        settings.path.display(),
        counted(settings.config.sources.len(), "source", "sources"),
        counted(settings.config.jobs.len(), "job", "jobs"),
        counted(settings.config.recipients.len(), "recipient", "recipients"),
    );
    let store = match open_store(settings).await {
        Ok(s) => {
            outln!("warehouse: ok");
            Some(s)
        }
        Err(e) => {
            problems += 1;
            outln!("warehouse: {}", error_chain(e.as_ref()));
            None
        }
    };
    match crate::deliver::check_smtp(settings).await {
        Ok(None) => outln!(
            "smtp: none: emails are written to `{}`",
            settings.output_dir().join("outbox").display()
        ),
        Ok(Some(ok)) => outln!("smtp: ok: {ok}"),
        Err(e) => {
            problems += 1;
            outln!("smtp: {e}");
        }
    }
    // a job's period only changes the period line; any job will do
    let period = settings
        .config
        .jobs
        .first()
        .map_or(config::Period::Mtd, |job| job.period);
    let rules = crate::jobs::rules_for(settings, period);
    match crate::report::check_templates(settings, &rules, yesterday(settings.tz)) {
        Ok(custom) if custom.is_empty() => outln!("templates: built-in"),
        Ok(custom) => outln!(
            "templates: ok ({})",
            custom
                .iter()
                .map(|p| format!("`{}`", p.display()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Err(e) => {
            problems += 1;
            outln!("templates: {}", error_chain(e.as_ref()));
        }
    }
    for s in &settings.config.sources {
        for note in scaled_money_columns(s) {
            outln!("source `{}`: note: {note}", s.name);
        }
        match s.kind {
            config::SourceKind::Sql => {
                let var = s.url_env.as_deref().unwrap_or_default();
                match std::env::var(var) {
                    Ok(url) => match crate::ingest::check_query(s, &url).await {
                        Ok(refused) => {
                            outln!("source `{}`: sql via `{var}`: connected", s.name);
                            if let Some(refused) = refused {
                                problems += 1;
                                outln!("source {refused}");
                            }
                        }
                        Err(e) => {
                            problems += 1;
                            // the URL may hold a password: name the variable only
                            outln!("source `{}`: cannot connect via `{var}`: {e}", s.name);
                        }
                    },
                    Err(_) => {
                        problems += 1;
                        outln!(
                            "source `{}`: environment variable `{var}` is not set",
                            s.name
                        );
                    }
                }
            }
            _ => {
                let found = crate::ingest::source_files(settings, s);
                outln!(
                    "source `{}`: {} `{}`",
                    s.name,
                    counted(found.files.len(), "file matches", "files match"),
                    s.path.as_deref().unwrap_or("")
                );
                for u in &found.unreadable {
                    problems += 1;
                    let what = if u.directory { "directory" } else { "file" };
                    outln!(
                        "source `{}`: cannot read {what} `{}`: {}",
                        s.name,
                        u.path,
                        u.error
                    );
                }
                let checked = crate::ingest::check_files(settings, s, &found.files);
                for (copy, earlier) in checked.copies {
                    problems += 1;
                    outln!(
                        "source `{}`: `{copy}` has the same content as `{earlier}`; \
                         a run loads only one of them",
                        s.name
                    );
                }
                for refused in checked.refused {
                    problems += 1;
                    outln!("source {refused}");
                }
                // a note, as for money in 万: reading the first sheet only
                // may be what the user wants
                for (file, message) in checked.unread_sheets {
                    outln!("source `{}`: file `{file}`: note: {message}", s.name);
                }
            }
        }
    }
    if let Some(store) = store {
        let regions = store.regions().await?;
        if regions.is_empty() {
            // before the first run every region would be named as missing, a
            // false alarm on the day a config is written
            if !settings.config.recipients.is_empty() {
                outln!(
                    "recipients: regions not checked: the warehouse holds no customer or rep \
                     yet (the first run loads them)"
                );
            }
        } else {
            for r in &settings.config.recipients {
                for region in r.regions.iter().filter(|x| *x != "*") {
                    if !regions.contains(region) {
                        outln!("recipient {}: region `{region}` has no master row", r.email);
                    }
                }
            }
        }
    }
    Ok(if problems > 0 {
        ExitCode::Failure
    } else {
        ExitCode::Success
    })
}

async fn export(
    settings: &Settings,
    what: ExportKind,
    as_of: Option<NaiveDate>,
    regions: &[String],
    job: Option<&str>,
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
            report::export::rejections(out, &store.rejections(run_id).await?)
                .or_else(unless_reader_gone)?;
            return Ok(ExitCode::Success);
        }
        ExportKind::Tiers => {
            let run = computed_run(store.as_ref(), as_of, job).await?;
            report::export::tiers(out, &store.tiers_of(run.run_id).await?, &mut kept)
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
            report::export::document(out, kind, &doc, &mut kept).or_else(unless_reader_gone)?;
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

/// The tail of an email count line for emails sent without workbooks.
fn without_workbooks(count: u64) -> String {
    if count > 0 {
        format!("; {count} sent without workbooks (too large for the mail server)")
    } else {
        String::new()
    }
}

async fn retry_deliveries(
    settings: &Settings,
    store: &dyn warehouse::Store,
) -> anyhow::Result<ExitCode> {
    let spooled = deliver::retry_spooled(settings, store).await?;
    outln!(
        "{} resent, {} still failing{}",
        spooled.sent,
        spooled.failed,
        without_workbooks(spooled.without_workbooks)
    );
    // ops must raise the server's limit or hand the workbooks over
    let mut degraded = spooled.failed > 0 || spooled.without_workbooks > 0;
    let mut pairs: Vec<(String, NaiveDate)> = spooled
        .unspooled
        .iter()
        .map(|d| (d.job.clone(), d.as_of))
        .collect();
    pairs.sort();
    pairs.dedup();
    // without a spooled message the email is rebuilt from that date's run
    for (job, as_of) in pairs {
        let Some(job_cfg) = settings.job(&job) else {
            continue;
        };
        let mut cfg = job_cfg.clone();
        cfg.steps = vec![
            config::Step::Compute,
            config::Step::Report,
            config::Step::Deliver,
        ];
        let outcome =
            jobs::run_locked(settings, store, &cfg, as_of, &RunOptions::default()).await?;
        let c = &outcome.counts;
        degraded |= c.emails_failed > 0 || c.emails_without_workbooks > 0;
        outln!(
            "{job} {as_of}: rebuilt, {} resent, {} still failing{}",
            c.emails_sent,
            c.emails_failed,
            without_workbooks(c.emails_without_workbooks)
        );
    }
    Ok(if degraded {
        ExitCode::Degraded
    } else {
        ExitCode::Success
    })
}

#[cfg(test)]
mod tests {
    use super::{error_chain, history_counts};

    /// `--help` explains every command, argument and flag: ops read it on
    /// the server, where the README is not.
    #[test]
    fn every_command_and_flag_has_help() {
        fn bare(cmd: &clap::Command, path: &str, found: &mut Vec<String>) {
            if cmd.get_about().is_none() && path.contains(' ') {
                found.push(path.to_string());
            }
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if arg.get_help().is_none() && !matches!(id, "help" | "version") {
                    found.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands().filter(|c| c.get_name() != "help") {
                bare(sub, &format!("{path} {}", sub.get_name()), found);
            }
        }
        let mut found = Vec::new();
        bare(
            &<super::Cli as clap::CommandFactory>::command(),
            "salesbatch",
            &mut found,
        );
        assert!(found.is_empty(), "without help: {found:?}");
    }

    /// A run still going has stored `{}`: nothing is said yet. An older
    /// run's counts lack the keys added since: they read as 0. Text that is
    /// not counts is shown as stored.
    #[test]
    fn history_says_a_runs_counts_in_words() {
        assert_eq!(history_counts("{}"), "");
        assert_eq!(
            history_counts(
                r#"{"files_loaded":1,"files_skipped":2,"files_refused":0,"rows_loaded":1,"rejections":0,"customers_scored":3,"reports":1,"emails_sent":1,"emails_failed":1,"emails_skipped":0}"#
            ),
            "1 file loaded, 2 skipped, 0 refused, 1 row, 0 rejections, 3 customers scored, \
             1 report, emails: 1 sent, 0 already sent, 1 failed"
        );
        assert_eq!(
            history_counts(r#"{"files_loaded":0,"customers_scored":1}"#),
            "0 files loaded, 0 skipped, 0 refused, 0 rows, 0 rejections, 1 customer scored"
        );
        assert_eq!(history_counts("not json"), "not json");
    }

    /// How sqlx reports a database error: its message quotes the server's,
    /// which is also its source.
    #[derive(Debug, thiserror::Error)]
    #[error("error returned from database: {0}")]
    struct Database(#[source] Server);

    #[derive(Debug, thiserror::Error)]
    #[error("role \"bob\" does not exist")]
    struct Server;

    #[derive(Debug, thiserror::Error)]
    #[error("warehouse `postgres://bob:***@db/x`: {source}")]
    struct Connect {
        source: Database,
    }

    #[test]
    fn a_cause_already_quoted_is_not_repeated() {
        let e = anyhow::Error::new(Connect {
            source: Database(Server),
        });
        assert_eq!(
            format!("{e:#}"),
            "warehouse `postgres://bob:***@db/x`: error returned from database: role \"bob\" does not exist: \
             error returned from database: role \"bob\" does not exist: role \"bob\" does not exist"
        );
        assert_eq!(
            error_chain(e.as_ref()),
            "warehouse `postgres://bob:***@db/x`: error returned from database: role \"bob\" does not exist"
        );
        // a context that does not quote its cause keeps it
        let e = e.context("cannot open the warehouse");
        assert_eq!(
            error_chain(e.as_ref()),
            "cannot open the warehouse: warehouse `postgres://bob:***@db/x`: error returned from database: role \"bob\" does not exist"
        );
    }
}
