//! Command line (SPEC §2): argument parsing and dispatch to the library;
//! each command's work and output is in its own module (`check`, `run`,
//! `export`, `deliveries`, `summary` for `history` and the run's counts).

use std::path::PathBuf;

use chrono::NaiveDate;
use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{self, Settings};
use crate::jobs::RunOptions;
use crate::warehouse;

/// `println!` for a command's output, which does not panic when the
/// reader has gone (`salesbatch history | head`): the rest is dropped and
/// the command ends as it would have, exit code included.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::written(std::io::Write::write_fmt(
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

mod check;
mod deliveries;
mod export;
mod run;
mod summary;

use self::check::check;
use self::export::export;
use self::run::{future_as_of, run_job_cmd};

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
        /// For opening in Excel: a UTF-8 byte-order mark first, so Chinese
        /// text is not garbled, and text Excel would run as a formula
        /// (`=`, `+`, `-`, `@`) kept as text with a leading `'`.
        #[arg(long)]
        excel: bool,
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

fn yesterday(tz: chrono_tz::Tz) -> NaiveDate {
    let today = config::today_in(tz);
    today.pred_opt().unwrap_or(today)
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
            summary::history(&settings, limit, json).await
        }
        Command::Export {
            what,
            as_of,
            regions,
            job,
            excel,
        } => {
            let settings = load(&cli.config)?;
            export(&settings, what, as_of, &regions, job.as_deref(), excel).await
        }
        Command::Deliveries { failed, action } => {
            let settings = load(&cli.config)?;
            deliveries::show(&settings, failed, action.is_some()).await
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

#[cfg(test)]
mod tests {
    use super::error_chain;
    use super::summary::history_counts;

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
