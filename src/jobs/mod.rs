//! The job: ingest → compute → report → deliver for one as-of date. The
//! scheduler and a manual `run` both call `run_job`; it never decides dates.

use std::path::PathBuf;

use anyhow::Context as _;
use chrono::NaiveDate;
use serde::Serialize;
use tracing::{error, info, info_span, warn, Instrument};

use crate::config::{JobConfig, Settings, Step};
use crate::ingest::record::Rejection;
use crate::ingest::{self, FileNote, IngestSummary};
use crate::metrics::{self, Computed, Rules};
use crate::warehouse::Store;
use crate::{deliver, report};

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub regions: Vec<String>,
    pub no_email: bool,
    pub resend: bool,
    pub dry_run: bool,
    /// a terminal progress bar; each step sets its message and length
    pub progress: Option<indicatif::ProgressBar>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Success,
    Degraded,
    Failed,
}

/// A run's counts, stored with the run as JSON (`history` reads them back:
/// a key a later version added reads as 0 in an older run's).
#[derive(Debug, Default, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct RunCounts {
    pub files_loaded: u64,
    pub files_skipped: u64,
    pub files_refused: u64,
    pub rows_loaded: u64,
    pub rejections: u64,
    pub customers_scored: u64,
    pub reports: u64,
    pub emails_sent: u64,
    pub emails_failed: u64,
    pub emails_skipped: u64,
    /// emails sent without their workbooks, which the mail server refused
    /// for their size (counted in `emails_sent` too)
    pub emails_without_workbooks: u64,
    /// recipients' regions that had no report to send
    pub emails_without_report: u64,
}

#[derive(Debug)]
pub struct RunOutcome {
    pub run_id: i64,
    pub status: RunStatus,
    pub counts: RunCounts,
    pub report_dir: Option<PathBuf>,
    pub outbox: Option<PathBuf>,
    /// a dry run's email preview: how many it wrote, and where
    pub previewed: Option<(u64, PathBuf)>,
    /// `keep_reports_days`: how many old report folders the run removed,
    /// and the date they were older than
    pub reports_removed: Option<(usize, NaiveDate)>,
    pub rejections: Vec<Rejection>,
    /// the ingest's notes, which count each file's rejected rows past those
    /// `rejections` lists
    pub notes: Vec<FileNote>,
    /// (recipient, region) pairs that had no report to send
    pub no_report: Vec<(String, String)>,
    /// `--region` values that no report was written for
    pub unknown_regions: Option<UnknownRegions>,
    /// for a run that ingested nothing and reported: the ingest run whose
    /// data quality its reports show, and how many rejected rows that is
    pub quality_from: Option<(i64, u64)>,
}

/// `--region` values that no customer or rep of the computation has, and
/// the regions it does have, for the message that names the typo.
#[derive(Debug)]
pub struct UnknownRegions {
    pub asked: Vec<String>,
    pub known: Vec<String>,
}

pub fn rules_of(settings: &Settings, job: &JobConfig) -> Rules {
    rules_for(settings, job.period)
}

/// The config's rules over `period`.
pub fn rules_for(settings: &Settings, period: crate::config::Period) -> Rules {
    let c = &settings.config;
    Rules {
        tiering: c.tiering.clone(),
        inactive_values: c.customers.inactive_values.clone(),
        visits: c.visits.clone(),
        scorecard: c.scorecard.weights.clone(),
        development: c.development.event,
        period,
    }
}

/// Runs one job for one date. Dry runs compute and render to a scratch
/// folder but store nothing and send nothing.
/// A running job refreshes its lock this often...
const LOCK_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(30);
/// ...so a lock not refreshed for this long belongs to a process that died
/// (on any machine sharing the warehouse); the heartbeat has its own task
/// (`LockHeartbeat`), so a long compute does not make a lock look stale.
pub const LOCK_STALE_AFTER: chrono::Duration = chrono::Duration::minutes(5);

/// Milliseconds since `started`, as a log field: a `u128` would be
/// logged as text, not as a number a log shipper can sum.
fn millis_since(started: std::time::Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Raised when another process holds the job's lock.
#[derive(Debug, thiserror::Error)]
#[error("job `{job}` is already running in another process (warehouse lock held); try again when it ends")]
pub struct JobLocked {
    pub job: String,
}

/// `run_job` under the job's warehouse lock, as the scheduler and a manual
/// run both call it: a job never runs twice at once, on one machine or on
/// several sharing a PostgreSQL warehouse. Dry runs write nothing and take
/// no lock.
pub async fn run_locked(
    settings: &Settings,
    store: &dyn Store,
    job: &JobConfig,
    as_of: NaiveDate,
    opts: &RunOptions,
) -> anyhow::Result<RunOutcome> {
    run_locked_with_heartbeat(settings, store, job, as_of, opts, LOCK_HEARTBEAT).await
}

/// Raised by `run_locked_if` when, the lock taken, the run was found no
/// longer needed.
#[derive(Debug, thiserror::Error)]
#[error("job `{job}` has nothing to run: another run did it first")]
pub struct NotNeeded {
    pub job: String,
}

/// `run_locked`, where `still_needed`, asked once the job's lock is taken,
/// decides whether the run goes ahead (`NotNeeded` when not): what it reads
/// of the job's runs cannot change under it then, as no other run of the
/// job can start or be going.
pub async fn run_locked_if(
    settings: &Settings,
    store: &dyn Store,
    job: &JobConfig,
    as_of: NaiveDate,
    still_needed: impl AsyncFnOnce() -> anyhow::Result<bool>,
) -> anyhow::Result<RunOutcome> {
    let opts = RunOptions::default();
    locked(
        settings,
        store,
        job,
        as_of,
        &opts,
        LOCK_HEARTBEAT,
        still_needed,
    )
    .await
}

/// `run_locked` with the heartbeat period given (tests use a short one).
pub async fn run_locked_with_heartbeat(
    settings: &Settings,
    store: &dyn Store,
    job: &JobConfig,
    as_of: NaiveDate,
    opts: &RunOptions,
    heartbeat_every: std::time::Duration,
) -> anyhow::Result<RunOutcome> {
    locked(
        settings,
        store,
        job,
        as_of,
        opts,
        heartbeat_every,
        async || Ok(true),
    )
    .await
}

async fn locked(
    settings: &Settings,
    store: &dyn Store,
    job: &JobConfig,
    as_of: NaiveDate,
    opts: &RunOptions,
    heartbeat_every: std::time::Duration,
    still_needed: impl AsyncFnOnce() -> anyhow::Result<bool>,
) -> anyhow::Result<RunOutcome> {
    if opts.dry_run {
        return run_job(settings, store, job, as_of, opts).await;
    }
    let holder = new_holder();
    if try_acquire(store, &job.name, &holder).await?.is_some() {
        return Err(JobLocked {
            job: job.name.clone(),
        }
        .into());
    }
    let needed = still_needed().await;
    if !matches!(needed, Ok(true)) {
        if let Err(e) = store.unlock(&job.name, &holder).await {
            tracing::warn!(job = %job.name, error = %e, "cannot release the job lock; it expires on its own");
        }
        needed?;
        return Err(NotNeeded {
            job: job.name.clone(),
        }
        .into());
    }
    // `None` but on a shared warehouse, the only one to judge locks by age
    let heartbeat = store
        .detached()
        .map(|owned| LockHeartbeat::start(owned, &job.name, &holder, heartbeat_every));
    match store.interrupt_runs(&job.name).await {
        Ok(0) => {}
        Ok(runs) => {
            tracing::warn!(
                job = %job.name,
                runs,
                "earlier runs of this job stopped before they finished (killed, or their machine stopped); `history` shows them as interrupted"
            );
        }
        // the run itself need not fail for a label on earlier ones
        Err(e) => {
            tracing::warn!(job = %job.name, error = %e, "cannot mark earlier unfinished runs as interrupted");
        }
    }
    // boxed to keep the nesting of futures shallow (see main.rs)
    let result = Box::pin(run_job(settings, store, job, as_of, opts)).await;
    // stopped before the lock goes: a refresh after the unlock finds no row
    drop(heartbeat);
    if let Err(e) = store.unlock(&job.name, &holder).await {
        tracing::warn!(job = %job.name, error = %e, "cannot release the job lock; it expires on its own");
    }
    result
}

/// Whether `run` may be going now: recorded as running, the latest of its
/// job among `runs` (newest first, as `Store::runs` gives them), and the
/// job's lock held by a process alive on this host, or by one on another
/// host sharing the warehouse (where only the lock's age could tell, once
/// a run takes it over). A run recorded as running otherwise died with
/// its process.
pub async fn run_is_going(
    store: &dyn Store,
    runs: &[crate::warehouse::RunRow],
    run: &crate::warehouse::RunRow,
) -> anyhow::Result<bool> {
    let latest_of_job = runs
        .iter()
        .find(|r| r.job == run.job)
        .is_some_and(|r| r.run_id == run.run_id);
    if run.status != "running" || !latest_of_job {
        return Ok(false);
    }
    let Some(holder) = store.lock_holder(&run.job).await? else {
        return Ok(false);
    };
    Ok(holder_alive_here(&holder).unwrap_or_else(|| store.is_shared()))
}

/// A holder for a lock taken now by this process.
fn new_holder() -> String {
    let pid = std::process::id();
    holder_id(
        pid,
        &process_start(pid).unwrap_or_default(),
        &uuid::Uuid::new_v4().simple().to_string(),
    )
}

/// Tries to take the warehouse lock `name` (a row of `job_locks`) for
/// `holder`: `None` once taken, else who holds it. A holder on this machine
/// is judged by its process: alive, it keeps the lock; gone, the lock is
/// freed now. A holder on another machine is judged by the age of its
/// heartbeat on a shared warehouse; an embedded one is never used by two
/// machines, so such a lock was left by an earlier container. A live
/// holder is found by a read, so polling it never waits on SQLite's write
/// lock (which a long load holds).
async fn try_acquire(
    store: &dyn Store,
    name: &str,
    holder: &str,
) -> anyhow::Result<Option<String>> {
    if let Some(old) = store.lock_holder(name).await? {
        match holder_alive_here(&old) {
            Some(true) => return Ok(Some(old)),
            Some(false) => {
                tracing::warn!(lock = name, holder = %old, "taking over the lock of a process that died");
                store.unlock(name, &old).await?;
            }
            None if !store.is_shared() => {
                tracing::warn!(lock = name, holder = %old, "taking over a lock left by another host");
                store.unlock(name, &old).await?;
            }
            None => {}
        }
    }
    let stale = if store.is_shared() {
        crate::warehouse::timestamp(chrono::Utc::now() - LOCK_STALE_AFTER)
    } else {
        // an embedded warehouse has no holders elsewhere: never stale by age
        String::new()
    };
    if store.try_lock(name, holder, &stale).await? {
        return Ok(None);
    }
    Ok(Some(store.lock_holder(name).await?.unwrap_or_default()))
}

/// The warehouse lock ingest steps take turns on: a `job_locks` row under
/// a name config validation keeps jobs from having.
pub const INGEST_TURN: &str = "(ingest)";
/// How often a run waiting for its turn to ingest looks again...
const INGEST_TURN_POLL: std::time::Duration = std::time::Duration::from_millis(500);
/// ...and how often it says it is still waiting.
const INGEST_WAIT_WARNING: std::time::Duration = std::time::Duration::from_secs(600);
/// How long a wait lasts before it is told as an ERROR: no ingest takes
/// an hour, so the other run is stuck (a read hung on a network share) and
/// keeps this one, and each later fire of its job, from going on.
const INGEST_WAIT_STUCK: std::time::Duration = std::time::Duration::from_secs(3600);

/// The level a still-waiting reminder is logged at after `waited`.
fn ingest_wait_level(waited: std::time::Duration) -> tracing::Level {
    if waited >= INGEST_WAIT_STUCK {
        tracing::Level::ERROR
    } else {
        tracing::Level::WARN
    }
}

/// A run's turn to ingest, held until `release`. Runs of different jobs
/// (a nightly and a monthly job fired together on the 1st, a manual run
/// beside the daemon, several instances) ingest one after another: the
/// later one then finds the files already loaded and skips them, instead
/// of parsing and loading each a second time, and on SQLite never waits
/// on the other's load transaction past `busy_timeout` (which failed the
/// run, `database is locked`).
struct IngestTurn {
    holder: String,
    heartbeat: Option<LockHeartbeat>,
}

impl IngestTurn {
    async fn wait(store: &dyn Store) -> anyhow::Result<Self> {
        let holder = new_holder();
        let started = std::time::Instant::now();
        let mut warned_at = started;
        let mut said = false;
        while let Some(other) = try_acquire(store, INGEST_TURN, &holder).await? {
            if !said {
                info!(holder = %other, "another run is ingesting; this run's ingest waits for it to finish");
                said = true;
            } else if warned_at.elapsed() >= INGEST_WAIT_WARNING {
                warned_at = std::time::Instant::now();
                let waited = started.elapsed();
                if ingest_wait_level(waited) == tracing::Level::ERROR {
                    error!(
                        holder = %other,
                        waited_s = waited.as_secs(),
                        "still waiting for another run's ingest after an hour: its process looks stuck; stop it (the holder is `pid@host:…`) and this run goes on"
                    );
                } else {
                    warn!(
                        holder = %other,
                        waited_s = waited.as_secs(),
                        "still waiting for another run's ingest to finish"
                    );
                }
            }
            tokio::time::sleep(INGEST_TURN_POLL).await;
        }
        if said {
            info!(
                waited_ms = millis_since(started),
                "the other run's ingest finished; this run's ingest starts"
            );
        }
        let heartbeat = store
            .detached()
            .map(|owned| LockHeartbeat::start(owned, INGEST_TURN, &holder, LOCK_HEARTBEAT));
        Ok(Self { holder, heartbeat })
    }

    async fn release(self, store: &dyn Store) {
        drop(self.heartbeat);
        if let Err(e) = store.unlock(INGEST_TURN, &self.holder).await {
            warn!(error = %e, "cannot release the ingest turn; it expires on its own");
        }
    }
}

/// Refreshes a job's lock every `every` on a task of its own until dropped.
/// Not beside the run in its task: compute and render hold their thread
/// for seconds (minutes well past the design point), and a heartbeat
/// polled by that task would pause with them, so that past
/// `LOCK_STALE_AFTER` another instance would take the lock and run the
/// job a second time. A refresh that waits on the database delays only
/// the next one, never the run.
pub struct LockHeartbeat(tokio::task::JoinHandle<()>);

impl LockHeartbeat {
    pub fn start(
        store: Box<dyn Store>,
        job: &str,
        holder: &str,
        every: std::time::Duration,
    ) -> Self {
        let (job, holder) = (job.to_string(), holder.to_string());
        Self(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = store.refresh_lock(&job, &holder).await {
                    tracing::warn!(job = %job, error = %e, "cannot refresh the job lock");
                }
            }
        }))
    }
}

impl Drop for LockHeartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs CPU-bound work (compute, render) on the job's thread, handing the
/// thread's other tasks (cron ticks, other jobs, heartbeats) to another
/// worker meanwhile where the runtime has several; a single-threaded
/// runtime (some tests) just runs it.
fn cpu_bound<T>(work: impl FnOnce() -> T) -> T {
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_thread {
        tokio::task::block_in_place(work)
    } else {
        work()
    }
}

/// This process as a claim of a scheduled fire names it: `pid@host`.
pub fn this_process() -> String {
    format!("{}@{}", std::process::id(), hostname())
}

/// The lock holder a run on this host writes: `pid@host:start:nonce`.
fn holder_id(pid: u32, start: &str, nonce: &str) -> String {
    format!("{pid}@{}:{start}:{nonce}", hostname())
}

/// For a `pid@host:start:uuid` holder on this host: whether its process
/// still runs; `None` for a holder on another host (or an unreadable one).
/// The kernel reuses PIDs, so a PID alone could keep a dead run's lock
/// forever once another process gets that number (after a reboot, say): the
/// process's boot and start time must match too. Holders written before the
/// start was recorded (`pid@host:uuid`) are judged by the PID alone.
fn holder_alive_here(holder: &str) -> Option<bool> {
    let (pid, rest) = holder.split_once('@')?;
    let parts: Vec<&str> = rest.split(':').collect();
    if parts.first().copied() != Some(hostname().as_str()) {
        return None;
    }
    let pid: u32 = pid.parse().ok()?;
    match parts.as_slice() {
        [_, start, _] if !start.is_empty() => Some(process_start(pid).as_deref() == Some(*start)),
        _ => Some(std::path::Path::new(&format!("/proc/{pid}")).exists()),
    }
}

/// What tells a process apart from a later one with the same PID: the boot
/// it runs in and its start time in clock ticks since boot (Linux `/proc`;
/// `None` elsewhere or when the process is gone).
fn process_start(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the command name (field 2) may hold spaces and parentheses; fields
    // after its closing one start at field 3, and the start time is field 22
    let start = stat.rsplit_once(')')?.1.split_whitespace().nth(19)?;
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(format!("{}/{start}", boot.trim()))
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

pub async fn run_job(
    settings: &Settings,
    store: &dyn Store,
    job: &JobConfig,
    as_of: NaiveDate,
    opts: &RunOptions,
) -> anyhow::Result<RunOutcome> {
    let rules = rules_of(settings, job);
    let rules_json = serde_json::to_string(&rules)?;
    let run_id = if opts.dry_run {
        0
    } else {
        store.start_run(&job.name, as_of, &rules_json).await?
    };
    let span = info_span!("job", job = %job.name, run_id, %as_of);
    span.in_scope(|| info!(steps = ?job.steps, dry_run = opts.dry_run, "run started"));
    let result = steps(settings, store, job, as_of, opts, &rules, run_id)
        .instrument(span.clone())
        .await;
    // instrumented, never `span.enter()` across an await: the task may
    // resume on another thread, which would log this run's last line
    // outside its span and leave the span entered on the first thread
    finish(store, run_id, opts, result).instrument(span).await
}

/// Records how the run ended and says so.
async fn finish(
    store: &dyn Store,
    run_id: i64,
    opts: &RunOptions,
    result: anyhow::Result<RunOutcome>,
) -> anyhow::Result<RunOutcome> {
    match result {
        Ok(outcome) => {
            if !opts.dry_run {
                let status = match outcome.status {
                    RunStatus::Success => "success",
                    RunStatus::Degraded => "degraded",
                    RunStatus::Failed => "failed",
                };
                store
                    .finish_run(
                        run_id,
                        status,
                        &serde_json::to_string(&outcome.counts)?,
                        None,
                    )
                    .await?;
            }
            info!(status = ?outcome.status, "run finished");
            Ok(outcome)
        }
        Err(e) => {
            if !opts.dry_run {
                let _ = store
                    .finish_run(
                        run_id,
                        "failed",
                        "{}",
                        Some(&crate::cli::error_chain(e.as_ref())),
                    )
                    .await;
            }
            Err(e)
        }
    }
}

async fn steps(
    settings: &Settings,
    store: &dyn Store,
    job: &JobConfig,
    as_of: NaiveDate,
    opts: &RunOptions,
    rules: &Rules,
    run_id: i64,
) -> anyhow::Result<RunOutcome> {
    let mut counts = RunCounts::default();
    let mut summary = IngestSummary::default();
    let ingests = job.steps.contains(&Step::Ingest) && !opts.dry_run;
    if ingests {
        stage(opts, "ingest");
        let turn = IngestTurn::wait(store).await?;
        let ingested = async {
            let summary = ingest::run_with_progress(settings, store, opts.progress.as_ref())
                .await
                .context("ingest failed")?;
            store
                .save_quality(run_id, &summary.rejections, &summary.notes)
                .await?;
            anyhow::Ok(summary)
        }
        .await;
        turn.release(store).await;
        summary = ingested?;
        counts.files_loaded = summary.files_loaded;
        counts.files_skipped = summary.files_skipped;
        counts.files_refused = summary.files_refused;
        counts.rows_loaded = summary.rows_loaded;
        counts.rejections = summary.rejected_rows();
    }
    let borrowed = if ingests {
        None
    } else {
        borrowed_quality(settings, store, job, run_id, opts).await?
    };
    let mut computed: Option<Computed> = None;
    if job.steps.contains(&Step::Compute) {
        stage(opts, "compute");
        let period = metrics::PeriodRange::new(as_of, job.period);
        let started = std::time::Instant::now();
        let inputs = store
            .metric_inputs(as_of, &period, rules.tiering.window_months, &rules.visits)
            .await
            .context("reading metric inputs from the warehouse")?;
        let previous = store.previous_tiers(as_of).await?;
        info!(
            customers = inputs.customers.len(),
            customers_with_sales = inputs.sales.customers.len(),
            visit_days = inputs.visit_days.len(),
            previous = previous.as_ref().map_or(0, |p| p.tiers.len()),
            elapsed_ms = millis_since(started),
            "metric inputs read"
        );
        let started = std::time::Instant::now();
        let c = cpu_bound(|| metrics::compute_all(&inputs, rules, as_of, previous.as_ref()));
        drop(inputs);
        drop(previous);
        if !c.tiers_not_compared.is_empty() {
            let customers: u64 = c.tiers_not_compared.values().sum();
            warn!(
                customers,
                "{}",
                not_compared_message(&c.tiers_not_compared, customers)
            );
        }
        counts.customers_scored = c.tiers.len() as u64;
        info!(
            customers = c.tiers.len(),
            reps = c.scorecard.len(),
            changes = c.changes.len(),
            elapsed_ms = millis_since(started),
            "compute finished"
        );
        if !opts.dry_run {
            let docs = [
                ("visits", serde_json::to_string(&c.visits)?),
                ("development", serde_json::to_string(&c.development)?),
                ("scorecard", serde_json::to_string(&c.scorecard)?),
                ("changes", serde_json::to_string(&c.changes)?),
                ("period", serde_json::to_string(&c.period)?),
            ];
            let started = std::time::Instant::now();
            store.save_snapshot(run_id, as_of, &c.tiers, &docs).await?;
            info!(elapsed_ms = millis_since(started), "snapshot saved");
            prune_snapshots(settings, store, run_id).await;
        }
        computed = Some(c);
    }
    let mut report_dir = None;
    let mut bundles = Vec::new();
    let mut unknown_regions = None;
    if job.steps.contains(&Step::Report) {
        stage(opts, "reports");
        if let Some(c) = &computed {
            let dir = if opts.dry_run {
                settings
                    .output_dir()
                    .join("dry-run")
                    .join(as_of.to_string())
                    .join(&job.name)
            } else {
                settings
                    .output_dir()
                    .join(as_of.to_string())
                    .join(&job.name)
            };
            let quality = match &borrowed {
                Some(b) => report::Quality {
                    rejections: &b.rejections,
                    notes: &b.notes,
                    from: Some(&b.run),
                },
                None => report::Quality {
                    rejections: &summary.rejections,
                    notes: &summary.notes,
                    from: None,
                },
            };
            let rendered = cpu_bound(|| {
                report::render_all(settings, rules, c, &quality, &dir, &opts.regions)
            })?;
            bundles = rendered.bundles;
            counts.reports = bundles.len() as u64;
            // a misspelt `--region` would otherwise end a manual rerun with
            // nothing written and nothing said
            let asked: Vec<String> = opts
                .regions
                .iter()
                .filter(|r| *r != "*" && !rendered.regions.contains(*r))
                .cloned()
                .collect();
            if !asked.is_empty() {
                warn!(regions = ?asked, "no report for a `--region`: no scored customer or rep has it");
                unknown_regions = Some(UnknownRegions {
                    asked,
                    known: rendered.regions.into_iter().collect(),
                });
            }
            info!(reports = bundles.len(), dir = %dir.display(), "reports written");
            report_dir = Some(dir);
        }
    }
    let mut outbox = None;
    let mut no_report = Vec::new();
    let mut previewed = None;
    let emails = job.steps.contains(&Step::Deliver) && !opts.no_email && !bundles.is_empty();
    if emails && opts.dry_run {
        // ops see who would get what before any email leaves
        if let Some(reports) = &report_dir {
            let dir = reports.join("emails");
            let p = deliver::preview_all(settings, &bundles, &opts.regions, &dir)?;
            counts.emails_without_report = p.no_report.len() as u64;
            no_report = p.no_report;
            previewed = Some((p.written, dir));
        }
    } else if emails {
        stage(opts, "emails");
        let d = deliver::deliver_all(
            settings,
            store,
            &job.name,
            as_of,
            run_id,
            &bundles,
            &opts.regions,
            opts.resend,
        )
        .await?;
        counts.emails_sent = d.sent;
        counts.emails_failed = d.failed;
        counts.emails_skipped = d.skipped;
        counts.emails_without_workbooks = d.without_workbooks;
        counts.emails_without_report = d.no_report.len() as u64;
        no_report = d.no_report;
        outbox = d.outbox;
    }
    let reports_removed = match job.keep_reports_days {
        Some(days) if !opts.dry_run => Some(prune_reports(settings, job, as_of, days)),
        _ => None,
    };
    let status = if counts.rejections > 0
        || counts.emails_failed > 0
        || counts.emails_without_workbooks > 0
        || counts.emails_without_report > 0
        || unknown_regions.is_some()
    {
        RunStatus::Degraded
    } else {
        RunStatus::Success
    };
    Ok(RunOutcome {
        run_id,
        status,
        counts,
        report_dir,
        outbox,
        previewed,
        reports_removed,
        rejections: summary.rejections,
        notes: summary.notes,
        no_report,
        unknown_regions,
        quality_from: borrowed
            .map(|b| (b.run.run_id, ingest::rejected_rows(&b.rejections, &b.notes))),
    })
}

/// Removes the snapshots no export or tier comparison reads any more: the
/// earlier runs' of this job and date, and, with `keep_snapshots_days`,
/// those dated that many days before today (in the configured timezone).
/// At 200,000 customers a snapshot is about 100 MB, every night. Like the
/// reports' retention, housekeeping that fails is a warning, not a failed
/// run: the pruning rolls back and the next run tries again.
async fn prune_snapshots(settings: &Settings, store: &dyn Store, run_id: i64) {
    let before = settings
        .config
        .warehouse
        .keep_snapshots_days
        .map(|days| settings.today() - chrono::Days::new(u64::from(days)));
    let started = std::time::Instant::now();
    match store.prune_snapshots(run_id, before).await {
        Ok(0) => {}
        Ok(runs) => {
            info!(runs, before = ?before, elapsed_ms = millis_since(started), "old snapshots removed");
        }
        Err(e) => warn!(error = %e, "cannot remove old snapshots; the next run tries again"),
    }
}

/// Removes the job's report folders older than `days` before today (in
/// the configured timezone), keeping `as_of`'s; a folder that cannot be
/// removed is left, with a warning: housekeeping never fails a run.
fn prune_reports(
    settings: &Settings,
    job: &JobConfig,
    as_of: NaiveDate,
    days: u32,
) -> (usize, NaiveDate) {
    let before = settings.today() - chrono::Days::new(u64::from(days));
    let pruned = report::retention::prune(&settings.output_dir(), &job.name, before, as_of);
    for (folder, e) in &pruned.failed {
        warn!(folder = %folder.display(), error = %e, "cannot remove an old report folder");
    }
    info!(removed = pruned.removed, %before, "old reports removed");
    (pruned.removed, before)
}

/// The data quality of another run: what a run that ingests nothing shows.
struct Borrowed {
    run: report::QualitySource,
    rejections: Vec<Rejection>,
    notes: Vec<FileNote>,
}

/// A run without an ingest step (or a dry run) reports on the warehouse as
/// the latest run with one left it, so it shows that run's rejected rows and
/// notes and, unless a dry run, records which run they came from (for
/// `export rejections`). Its own status does not turn degraded: it rejected
/// nothing, and the run that did has said so.
async fn borrowed_quality(
    settings: &Settings,
    store: &dyn Store,
    job: &JobConfig,
    run_id: i64,
    opts: &RunOptions,
) -> anyhow::Result<Option<Borrowed>> {
    let before = (!opts.dry_run).then_some(run_id);
    let Some(run) = store.latest_quality_run(before).await? else {
        return Ok(None);
    };
    if !opts.dry_run {
        store.link_quality(run_id, run.run_id).await?;
    }
    if !job.steps.contains(&Step::Report) {
        return Ok(None);
    }
    let rejections = store.rejections(run.run_id).await?;
    let notes = store.notes(run.run_id).await?;
    info!(
        quality_run = run.run_id,
        rejections = ingest::rejected_rows(&rejections, &notes),
        notes = notes.len(),
        "data quality taken from the latest ingest"
    );
    let started = crate::warehouse::local_timestamp(&run.started_at, settings.tz, "%Y-%m-%d %H:%M");
    Ok(Some(Borrowed {
        run: report::QualitySource {
            run_id: run.run_id,
            job: run.job,
            as_of: run.as_of,
            started,
        },
        rejections,
        notes,
    }))
}

/// Names the running step on the progress bar; steps without a file count
/// show as a spinner.
fn stage(opts: &RunOptions, name: &str) {
    if let Some(pb) = &opts.progress {
        let style = if name == "ingest" {
            "{spinner} {msg} [{bar:30}] {pos}/{len} files, {elapsed}"
        } else {
            "{spinner} {msg}, {elapsed}"
        };
        if let Ok(style) = indicatif::ProgressStyle::with_template(style) {
            pb.set_style(style.progress_chars("=> "));
        }
        pb.set_message(name.to_string());
    }
}

/// The WARN for earlier tiers the current rules cannot place: ops changed the
/// tiers' names and their number at once, so this run lists no tier change
/// for those customers, and the next run compares like with like again.
fn not_compared_message(
    not_compared: &std::collections::BTreeMap<String, u64>,
    customers: u64,
) -> String {
    let tiers: Vec<String> = not_compared
        .iter()
        .map(|(tier, n)| format!("`{tier}` ({n})"))
        .collect();
    format!(
        "the earlier snapshot's tiers {} are not tiers of the current `[[tiering.tiers]]`, which also \
         differ in number from the rules that snapshot recorded: {customers} customers' tier changes \
         are not listed in this run",
        tiers.join(", "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_for_the_ingest_turn_is_an_error_after_an_hour() {
        let minutes = |m: u64| std::time::Duration::from_secs(m * 60);
        assert_eq!(ingest_wait_level(minutes(10)), tracing::Level::WARN);
        assert_eq!(ingest_wait_level(minutes(59)), tracing::Level::WARN);
        assert_eq!(ingest_wait_level(minutes(60)), tracing::Level::ERROR);
        assert_eq!(ingest_wait_level(minutes(600)), tracing::Level::ERROR);
    }

    fn holder(pid: u32, start: &str) -> String {
        holder_id(pid, start, "0123456789abcdef")
    }

    #[test]
    fn a_lock_is_alive_only_while_its_very_process_runs() {
        let me = std::process::id();
        let start = process_start(me).expect("/proc is readable here");
        assert_eq!(holder_alive_here(&holder(me, &start)), Some(true));
        // the same PID started at another time: a reused PID, the holder died
        let (boot, ticks) = start.rsplit_once('/').unwrap();
        let restarted = format!("{boot}/{}", ticks.parse::<u64>().unwrap() + 1);
        assert_eq!(holder_alive_here(&holder(me, &restarted)), Some(false));
        // the same PID and start in an earlier boot
        let other_boot = format!("00000000-0000-0000-0000-000000000000/{ticks}");
        assert_eq!(holder_alive_here(&holder(me, &other_boot)), Some(false));
        // a PID no process has (above the kernel's maximum)
        assert_eq!(holder_alive_here(&holder(4_194_305, &start)), Some(false));
        // written before start times were recorded: judged by the PID
        let legacy = format!("{me}@{}:0123456789abcdef", hostname());
        assert_eq!(holder_alive_here(&legacy), Some(true));
        // another host's holder is not judged here
        assert_eq!(
            holder_alive_here(&format!("{me}@elsewhere.example:{start}:0")),
            None
        );
    }
}
