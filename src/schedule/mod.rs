//! Scheduler daemon (`serve`): fires jobs on their cron schedules, in the
//! configured timezone, through the same `jobs::run_locked` a manual run
//! uses. Three gaps of tokio-cron-scheduler are closed here: a missed fire is
//! caught up on start (`catch_up`), jobs are re-created when the timezone's
//! UTC offset changes (the scheduler keeps the offset it saw at creation, so
//! a DST switch would shift every later fire by an hour), and shutdown waits
//! for running jobs instead of abandoning them. SIGHUP rereads the config
//! and re-creates the jobs from it, as `systemctl reload` expects. Each
//! fire is claimed in the warehouse first, so instances sharing it run a
//! fire once (the job lock alone only keeps runs from overlapping).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{NaiveDate, Offset, Timelike, Utc};
use tracing::{error, info, warn};

use crate::config::{JobConfig, Settings};
use crate::jobs::{self, RunOptions};

fn parser() -> croner::parser::CronParser {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .build()
}

/// Parses a 6-field cron expression with the same parser the scheduler uses.
pub fn parse_cron(expr: &str, tz: chrono_tz::Tz) -> Result<(), String> {
    let fields = expr.split_whitespace().count();
    if fields != 6 {
        return Err(format!(
            "`{expr}` has {fields} fields; expected 6 (sec min hour day month weekday)"
        ));
    }
    tokio_cron_scheduler::Job::new_async_tz(expr, tz, |_, _| Box::pin(async {}))
        .map(|_| ())
        .map_err(|_| format!("`{expr}` is not a valid cron expression"))
}

/// The as-of date a fire at `at` computes: the day before, in `tz`.
pub fn as_of_for(at: chrono::DateTime<Utc>, tz: chrono_tz::Tz) -> NaiveDate {
    let day = at.with_timezone(&tz).date_naive();
    day.pred_opt().unwrap_or(day)
}

/// The latest fire of `expr` at or before `now`, if it parses.
pub fn previous_fire(
    expr: &str,
    tz: chrono_tz::Tz,
    now: chrono::DateTime<Utc>,
) -> Option<chrono::DateTime<Utc>> {
    let cron = parser().parse(expr).ok()?;
    cron.find_previous_occurrence(&now.with_timezone(&tz), true)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The next fire of `expr` after `now` that falls on the 1st of a month
/// in `tz`, looking a year ahead: a `previous_month` job fired then
/// computes the day before, the last day of the month just ended, and so
/// reports the month before that one (`check` notes it).
pub fn next_fire_on_a_first(
    expr: &str,
    tz: chrono_tz::Tz,
    now: chrono::DateTime<Utc>,
) -> Option<chrono::DateTime<Utc>> {
    let cron = parser().parse(expr).ok()?;
    let this_month = crate::metrics::YearMonth::of(now.with_timezone(&tz).date_naive());
    (0..=12).find_map(|k| {
        let first = this_month.offset(k).first_day();
        let fire = if k == 0 {
            // today may be the 1st, with fires still to come
            cron.find_next_occurrence(&now.with_timezone(&tz), false)
        } else {
            let midnight = first
                .and_hms_opt(0, 0, 0)?
                .and_local_timezone(tz)
                .earliest()?;
            cron.find_next_occurrence(&midnight, true)
        }
        .ok()?;
        (fire.date_naive() == first).then(|| fire.with_timezone(&Utc))
    })
}

/// The next fire of `job` after `now`, as local time in `tz`, and the
/// period it computes: what an operator reads in `serve`'s log to see that
/// a `previous_month` job fired on the 1st reports the month before last.
fn next_fire_and_period(
    job: &JobConfig,
    tz: chrono_tz::Tz,
    now: chrono::DateTime<Utc>,
) -> Option<(String, crate::metrics::PeriodRange)> {
    let cron = parser().parse(&job.cron).ok()?;
    let fire = cron
        .find_next_occurrence(&now.with_timezone(&tz), false)
        .ok()?;
    let as_of = as_of_for(fire.with_timezone(&Utc), tz);
    Some((
        fire.format("%Y-%m-%dT%H:%M:%S").to_string(),
        crate::metrics::PeriodRange::new(as_of, job.period),
    ))
}

/// The fire of `expr` a tick at `now` stands for: the occurrence nearest
/// to it. A scheduler's tick comes a little after its instant, or on
/// another instance whose clock runs behind a little before it; either way
/// it names the same fire, which the instances claim (`Store::claim_fire`).
fn fire_of_tick(
    expr: &str,
    tz: chrono_tz::Tz,
    now: chrono::DateTime<Utc>,
) -> Option<chrono::DateTime<Utc>> {
    let cron = parser().parse(expr).ok()?;
    // cron instants are whole seconds; croner would keep the fraction. In
    // UTC: chrono refuses to change a local time the clocks pass twice
    let local = now.with_nanosecond(0)?.with_timezone(&tz);
    let before = cron.find_previous_occurrence(&local, true).ok();
    let after = cron.find_next_occurrence(&local, false).ok();
    let nearest = match (before, after) {
        (Some(b), Some(a)) if a - local < local - b => a,
        (Some(b), _) => b,
        (None, a) => a?,
    };
    Some(nearest.with_timezone(&Utc))
}

/// The name a fire at `at` is claimed under: its local wall time in `tz`
/// (`2026-12-01T02:30:00 Asia/Shanghai`). Not the instant: on the night
/// the clocks go back, a cron time inside the repeated hour comes twice,
/// an hour apart, and cron runs it once (the scheduler, re-created for the
/// new offset, ticks again at the second one).
fn fire_name(at: chrono::DateTime<Utc>, tz: chrono_tz::Tz) -> String {
    format!("{} {tz}", at.with_timezone(&tz).format("%Y-%m-%dT%H:%M:%S"))
}

/// Counts running jobs so shutdown can wait for them.
#[derive(Clone, Default)]
struct Running(Arc<AtomicUsize>);

struct RunningGuard(Arc<AtomicUsize>);

impl Running {
    fn enter(&self) -> RunningGuard {
        self.0.fetch_add(1, Ordering::SeqCst);
        RunningGuard(self.0.clone())
    }
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One fire: opens the warehouse, claims the fire (`claim`: its
/// `fire_name`, or that and ` catch-up`) and runs the job under its lock.
/// A fire another instance claimed first is left to it.
async fn fire(
    settings: Arc<Settings>,
    job: JobConfig,
    as_of: NaiveDate,
    claim: String,
    running: Running,
) {
    let _guard = running.enter();
    let store = match crate::cli::open_store(&settings).await {
        Ok(st) => st,
        Err(e) => {
            error!(job = %job.name, error = %crate::cli::error_chain(e.as_ref()), "cannot open the warehouse");
            return;
        }
    };
    match store
        .claim_fire(&job.name, &claim, &jobs::this_process())
        .await
    {
        Ok(None) => {}
        Ok(Some(holder)) if holder == jobs::this_process() => {
            info!(job = %job.name, fire = %claim, "this instance already took this fire; a second tick for it (the clocks went back, or a reload at its time) runs nothing");
            return;
        }
        Ok(Some(holder)) => {
            info!(job = %job.name, fire = %claim, %holder, "this fire was taken by another instance");
            return;
        }
        Err(e) => {
            error!(job = %job.name, error = %crate::cli::error_chain(&e), "cannot claim the fire in the warehouse");
            return;
        }
    }
    match jobs::run_locked(
        &settings,
        store.as_ref(),
        &job,
        as_of,
        &RunOptions::default(),
    )
    .await
    {
        Ok(_) => {}
        Err(e) if e.is::<jobs::JobLocked>() => {
            if job.catch_up {
                warn!(job = %job.name, "the previous run is still going; this fire is skipped until it ends (`catch_up` runs it then)");
            } else {
                warn!(job = %job.name, "the previous run is still going; this fire is skipped");
            }
        }
        Err(e) => {
            error!(job = %job.name, error = %crate::cli::error_chain(e.as_ref()), "job failed");
        }
    }
}

fn make_job(
    settings: &Arc<Settings>,
    job: &JobConfig,
    running: &Running,
) -> anyhow::Result<tokio_cron_scheduler::Job> {
    let (s, job, running) = (settings.clone(), job.clone(), running.clone());
    let cron = job.cron.clone();
    Ok(tokio_cron_scheduler::Job::new_async_tz(
        cron.as_str(),
        settings.tz,
        move |_, _| {
            let now = Utc::now();
            let at = fire_of_tick(&job.cron, s.tz, now).unwrap_or(now);
            let as_of = as_of_for(at, s.tz);
            let claim = fire_name(at, s.tz);
            Box::pin(fire(s.clone(), job.clone(), as_of, claim, running.clone()))
        },
    )?)
}

fn offset_now(tz: chrono_tz::Tz) -> i32 {
    Utc::now()
        .with_timezone(&tz)
        .offset()
        .fix()
        .local_minus_utc()
}

/// Runs, at start, each `catch_up` job whose latest fire has no finished
/// run for its as-of date in the warehouse (the daemon was down at that
/// time, or stopped in the middle of the run): one that failed or was
/// interrupted is run again.
async fn catch_up(settings: &Arc<Settings>, running: &Running) -> anyhow::Result<()> {
    let store = crate::cli::open_store(settings).await?;
    let runs = store.runs(RUNS_LOOKED_AT).await?;
    for job in settings.config.jobs.iter().filter(|j| j.catch_up) {
        let Some((at, as_of)) = latest_fire(job, settings.tz, Utc::now()) else {
            continue;
        };
        // a run still recorded as running either goes on elsewhere, or
        // its process died with it (the machine went down mid-run), and
        // only a catch-up makes that night's reports
        if of_date(&runs, &job.name, as_of).any(finished) {
            continue;
        }
        if let Some(latest) = of_date(&runs, &job.name, as_of).next() {
            if jobs::run_is_going(store.as_ref(), &runs, latest).await? {
                info!(job = %job.name, %as_of, "the missed fire's run is still going in another process; it is left to it");
                continue;
            }
        }
        info!(job = %job.name, missed = %at, %as_of, "catching up a missed fire");
        let claim = format!("{} catch-up", fire_name(at, settings.tz));
        tokio::spawn(fire(
            settings.clone(),
            job.clone(),
            as_of,
            claim,
            running.clone(),
        ));
    }
    Ok(())
}

/// Why the latest fire of a `catch_up` job is owed a run while `serve`
/// goes on (`owed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owed {
    /// its date's latest run died with its process: still recorded as
    /// running, or marked interrupted
    Died(i64),
    /// its date has no run: the fire found the job's lock held (a manual
    /// run of another date going at that time) and was skipped, or its
    /// instance died between claiming it and starting its run
    Skipped,
}

/// Whether `job`'s fire for `as_of` is owed a run (`runs` newest first,
/// as `Store::runs` gives them): none of the date's runs finished, and the
/// latest died or there is none. A run that failed is left to the
/// operator, as its error says why.
fn owed(runs: &[crate::warehouse::RunRow], job: &str, as_of: NaiveDate) -> Option<Owed> {
    let mut runs = of_date(runs, job, as_of);
    let Some(latest) = runs.next() else {
        return Some(Owed::Skipped);
    };
    let died = matches!(latest.status.as_str(), "running" | "interrupted");
    (died && !runs.any(finished)).then_some(Owed::Died(latest.run_id))
}

/// A `catch_up` job's latest fire at or before `now` and the date it
/// computes.
fn latest_fire(
    job: &JobConfig,
    tz: chrono_tz::Tz,
    now: chrono::DateTime<Utc>,
) -> Option<(chrono::DateTime<Utc>, NaiveDate)> {
    let at = previous_fire(&job.cron, tz, now)?;
    Some((at, as_of_for(at, tz)))
}

/// The runs of `job` for `as_of` among `runs`, in their order.
fn of_date<'r>(
    runs: &'r [crate::warehouse::RunRow],
    job: &'r str,
    as_of: NaiveDate,
) -> impl Iterator<Item = &'r crate::warehouse::RunRow> {
    runs.iter()
        .filter(move |r| r.job == job && r.as_of == as_of)
}

/// Whether a run finished, well or with rejections: its date is done.
fn finished(run: &crate::warehouse::RunRow) -> bool {
    matches!(run.status.as_str(), "success" | "degraded")
}

/// Runs, once, each `catch_up` job's latest fire that is `owed` a run while
/// this instance goes on: with several instances, the one whose run died
/// (its machine went down) may not come back soon, and a fire skipped
/// because a manual run held the job's lock at its time would otherwise
/// wait for the next start, so the night would stay without reports.
/// Looked at every minute; a fire with no run is left `SKIPPED_AFTER` to
/// start its own. The job's lock is taken first, so a run still going (here or
/// elsewhere) keeps it out, and the runs are read again under it, so that
/// two instances finding the same fire run the date once.
async fn recover(settings: Arc<Settings>, running: Running, outage: Arc<Mutex<Outage>>) {
    if !settings.config.jobs.iter().any(|j| j.catch_up) {
        return;
    }
    let _guard = running.enter();
    let read = async {
        let store = crate::cli::open_store(&settings).await?;
        let runs = store.runs(RUNS_LOOKED_AT).await?;
        anyhow::Ok((store, runs))
    };
    let (store, runs) = match read.await {
        Ok(read) => {
            if let Some(since) = lock(&outage).answered() {
                info!(%since, "the warehouse answers again");
            }
            read
        }
        Err(e) => {
            if let Some(since) = lock(&outage).failed(Utc::now()) {
                warn!(
                    %since,
                    error = %crate::cli::error_chain(e.as_ref()),
                    "cannot read the warehouse's runs to look for fires owed a run; said again each hour it lasts"
                );
            }
            return;
        }
    };
    let now = Utc::now();
    for job in settings.config.jobs.iter().filter(|j| j.catch_up) {
        let Some((at, as_of)) = latest_fire(job, settings.tz, now) else {
            continue;
        };
        let Some(why) = owed(&runs, &job.name, as_of) else {
            continue;
        };
        if why == Owed::Skipped && now - at < SKIPPED_AFTER {
            continue;
        }
        let still_owed = async || {
            let runs = store.runs(RUNS_LOOKED_AT).await?;
            let still = owed(&runs, &job.name, as_of) == Some(why);
            if still {
                match why {
                    Owed::Died(run_id) => {
                        info!(job = %job.name, run_id, %as_of, "a run of the latest fire stopped before it finished (its process died); running the date again");
                    }
                    Owed::Skipped => {
                        info!(job = %job.name, fire = %at, %as_of, "the latest fire has no run (skipped while the job's lock was held, or its instance died before running it); running it now");
                    }
                }
            }
            Ok(still)
        };
        match jobs::run_locked_if(&settings, store.as_ref(), job, as_of, still_owed).await {
            Ok(_) => {}
            // going on, or already run by another instance
            Err(e) if e.is::<jobs::JobLocked>() || e.is::<jobs::NotNeeded>() => {}
            Err(e) => {
                error!(job = %job.name, error = %crate::cli::error_chain(e.as_ref()), "job failed");
            }
        }
    }
}

/// What `serve`'s minute check has said of a warehouse it cannot read:
/// an outage is told when it starts, each `OUTAGE_REMINDER` while it
/// lasts, and when it ends, not every minute (a night's outage was
/// hundreds of the same WARN, burying what else the log said).
#[derive(Debug, Default)]
struct Outage {
    since: Option<chrono::DateTime<Utc>>,
    told: Option<chrono::DateTime<Utc>>,
}

impl Outage {
    /// Notes a failure at `now`; the outage's start when it is to be told.
    fn failed(&mut self, now: chrono::DateTime<Utc>) -> Option<chrono::DateTime<Utc>> {
        let since = *self.since.get_or_insert(now);
        if self.told.is_some_and(|told| now - told < OUTAGE_REMINDER) {
            return None;
        }
        self.told = Some(now);
        Some(since)
    }

    /// Notes that the warehouse answered; the start of the outage this ends.
    fn answered(&mut self) -> Option<chrono::DateTime<Utc>> {
        self.told = None;
        self.since.take()
    }
}

/// How often an outage `serve` goes on through is told again.
const OUTAGE_REMINDER: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// The outage record, whichever minute's check panicked holding it.
fn lock(outage: &Mutex<Outage>) -> std::sync::MutexGuard<'_, Outage> {
    outage
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How long after a fire `recover` takes it for skipped when it has no
/// run: time for its own run to start (which takes milliseconds, or the
/// wait for a SQLite warehouse's opening lock).
const SKIPPED_AFTER: chrono::TimeDelta = chrono::TimeDelta::seconds(30);

/// How often `serve` looks for a changed UTC offset and for fires owed a run.
const CHECK_EVERY: Duration = Duration::from_secs(60);

/// How many of the latest runs catch-up and recovery look at for a fire's.
const RUNS_LOOKED_AT: i64 = 500;

/// SIGHUP, the service manager's "reload". Elsewhere than on Unix there is
/// none: the config is read at start only.
struct Hangup {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
}

impl Hangup {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            #[cfg(unix)]
            signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?,
        })
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        self.signal.recv().await;
        #[cfg(not(unix))]
        std::future::pending::<()>().await;
    }
}

/// Replaces every scheduled job by those of `settings`, so that a new
/// timezone offset (DST) or a reloaded config takes effect.
async fn schedule_all(
    sched: &tokio_cron_scheduler::JobScheduler,
    ids: &mut Vec<uuid::Uuid>,
    settings: &Arc<Settings>,
    running: &Running,
) -> anyhow::Result<()> {
    for id in ids.drain(..) {
        sched.remove(&id).await?;
    }
    for job in &settings.config.jobs {
        ids.push(sched.add(make_job(settings, job, running)?).await?);
        let (next_fire, next_period) = next_fire_and_period(job, settings.tz, Utc::now())
            .map_or_else(Default::default, |(fire, period)| {
                (fire, format!("{}..{}", period.start, period.end))
            });
        info!(job = %job.name, cron = %job.cron, tz = %settings.tz, %next_fire, %next_period, "job scheduled");
    }
    Ok(())
}

/// The config reread on SIGHUP, or `None` when it has problems: they are
/// logged, every one with its key, and the jobs keep the config they had.
fn reloaded(settings: &Settings) -> Option<Settings> {
    match crate::config::load(&settings.path) {
        Ok(new) => Some(new),
        Err(e) => {
            let problems: Vec<String> = e.problems.iter().map(ToString::to_string).collect();
            error!(
                problems = %problems.join("; "),
                "the config was not reloaded: the jobs keep the one read before; mend it and send SIGHUP again"
            );
            None
        }
    }
}

async fn stop_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await?;
    Ok(())
}

/// Tries the mail server in the background when a job delivers, as `check`
/// does: a wrong password or a closed port is then in the log when the
/// service starts, not found in the morning among spooled emails. Nothing
/// waits on it (a server that does not answer takes `timeout_secs`).
fn warn_if_mail_server_unusable(settings: &Arc<Settings>) {
    if !settings
        .config
        .jobs
        .iter()
        .any(|j| j.steps.contains(&crate::config::Step::Deliver))
    {
        return;
    }
    let settings = Arc::clone(settings);
    tokio::spawn(async move {
        match crate::deliver::check_smtp(&settings).await {
            Ok(Some(ok)) => info!("mail server: {ok}"),
            Ok(None) => {}
            Err(e) => warn!(
                "the mail server cannot be used: {e}; emails that fail are spooled for `salesbatch deliveries retry`"
            ),
        }
    });
}

/// Runs jobs on their cron schedules until Ctrl-C or SIGTERM, then waits for
/// the jobs still running. Each fire computes yesterday in the configured
/// timezone; a fire that finds the job's lock held is skipped. On SIGHUP
/// the config is read again: valid, its jobs replace the scheduled ones
/// (a run already going finishes under the config it started with);
/// invalid, it is logged and the jobs keep the config they had.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    // first: until tokio handles SIGHUP, it would end the process
    let mut hangup = Hangup::new()?;
    let mut settings = Arc::new(settings);
    let running = Running::default();
    let sched = tokio_cron_scheduler::JobScheduler::new().await?;
    let mut ids = Vec::new();
    schedule_all(&sched, &mut ids, &settings, &running).await?;
    sched.start().await?;
    warn_if_mail_server_unusable(&settings);
    // a warehouse not up yet (a database server starting with the
    // machine) must not stop the daemon: a service manager restarting it
    // gives up after a few tries, and no night would run
    let outage = Arc::new(Mutex::new(Outage::default()));
    if let Err(e) = catch_up(&settings, &running).await {
        // told here, as an ERROR: the minute check's first failure is not
        // told again
        lock(&outage).failed(Utc::now());
        error!(
            error = %crate::cli::error_chain(e.as_ref()),
            "cannot look for missed fires in the warehouse; the jobs stay scheduled, and `catch_up` jobs' latest fires run at a minute's check once it answers"
        );
    }

    let mut offset = offset_now(settings.tz);
    // not at once: `catch_up` has just started what is missing
    let mut check =
        tokio::time::interval_at(tokio::time::Instant::now() + CHECK_EVERY, CHECK_EVERY);
    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            r = &mut stop => { r?; break; }
            () = hangup.recv() => {
                if let Some(new) = reloaded(&settings) {
                    settings = Arc::new(new);
                    info!(path = %settings.path.display(), jobs = settings.config.jobs.len(), "config reloaded; rescheduling jobs");
                    schedule_all(&sched, &mut ids, &settings, &running).await?;
                    offset = offset_now(settings.tz);
                    warn_if_mail_server_unusable(&settings);
                }
            }
            _ = check.tick() => {
                tokio::spawn(recover(settings.clone(), running.clone(), outage.clone()));
                let now = offset_now(settings.tz);
                if now != offset {
                    info!(from = offset, to = now, "UTC offset changed (DST); rescheduling jobs");
                    schedule_all(&sched, &mut ids, &settings, &running).await?;
                    offset = now;
                }
            }
        }
    }
    info!("shutting down; no new fires");
    let mut sched = sched;
    sched.shutdown().await?;
    while running.count() > 0 {
        info!(
            running = running.count(),
            "waiting for running jobs to finish"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An RFC 3339 instant as UTC.
    fn utc(s: &str) -> chrono::DateTime<Utc> {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .with_timezone(&Utc)
    }

    /// Runs of `(run_id, job, status)` for 2026-11-30, newest first.
    fn runs_of(rows: &[(i64, &str, &str)]) -> Vec<crate::warehouse::RunRow> {
        rows.iter()
            .map(|&(run_id, job, status)| crate::warehouse::RunRow {
                run_id,
                job: job.into(),
                as_of: NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
                started_at: String::new(),
                finished_at: None,
                status: status.into(),
                counts: "{}".into(),
                rules: "{}".into(),
                quality_run: None,
            })
            .collect()
    }

    #[test]
    fn a_fire_is_owed_a_run_when_its_latest_died_or_it_has_none() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
        let owed_by = |rows: &[(i64, &str, &str)]| owed(&runs_of(rows), "nightly", day);
        assert_eq!(owed_by(&[(3, "nightly", "running")]), Some(Owed::Died(3)));
        assert_eq!(
            owed_by(&[(4, "monthly", "success"), (3, "nightly", "interrupted")]),
            Some(Owed::Died(3))
        );
        assert_eq!(
            owed_by(&[(3, "nightly", "running"), (2, "nightly", "failed")]),
            Some(Owed::Died(3))
        );
        assert_eq!(owed_by(&[]), Some(Owed::Skipped));
        assert_eq!(owed_by(&[(3, "monthly", "running")]), Some(Owed::Skipped));
        let other_day = NaiveDate::from_ymd_opt(2026, 11, 29).unwrap();
        assert_eq!(
            owed(&runs_of(&[(3, "nightly", "success")]), "nightly", other_day),
            Some(Owed::Skipped)
        );
        // a failed run is the operator's; a finished one makes the date done
        assert_eq!(
            owed_by(&[(3, "nightly", "failed"), (2, "nightly", "running")]),
            None
        );
        assert_eq!(
            owed_by(&[(3, "nightly", "running"), (2, "nightly", "degraded")]),
            None
        );
        assert_eq!(owed_by(&[(3, "nightly", "success")]), None);
    }

    #[test]
    fn the_missed_fire_is_the_latest_one_in_the_configured_timezone() {
        let tz = chrono_tz::Asia::Shanghai;
        // 2026-11-21 01:00 in Shanghai = 2026-11-20 17:00 UTC: the 02:30 fire
        // of the 20th (18:30 UTC on the 19th) is the latest one
        let now = utc("2026-11-20T17:00:00Z");
        let at = previous_fire("0 30 2 * * *", tz, now).unwrap();
        assert_eq!(at.to_rfc3339(), "2026-11-19T18:30:00+00:00");
        assert_eq!(
            as_of_for(at, tz),
            NaiveDate::from_ymd_opt(2026, 11, 19).unwrap()
        );
    }

    #[test]
    fn a_tick_a_little_early_or_late_stands_for_the_same_fire() {
        let tz = chrono_tz::Asia::Shanghai;
        // the 02:30 Shanghai fire of 2026-12-01 is 18:30 UTC on 2026-11-30
        for tick in [
            "2026-11-30T18:29:59.400Z",
            "2026-11-30T18:30:00Z",
            "2026-11-30T18:30:02.700Z",
        ] {
            let fire = fire_of_tick("0 30 2 * * *", tz, utc(tick)).unwrap();
            assert_eq!(fire, utc("2026-11-30T18:30:00Z"), "{tick}");
            assert_eq!(as_of_for(fire, tz).to_string(), "2026-11-30");
        }
        // a per-second job: each tick is its own fire
        let fire = fire_of_tick("* * * * * *", tz, utc("2026-11-30T18:30:04.200Z"));
        assert_eq!(fire, Some(utc("2026-11-30T18:30:04Z")));
    }

    #[test]
    fn the_repeated_hour_of_a_dst_fall_back_is_one_fire() {
        // Europe/Berlin goes back from 03:00 CEST to 02:00 CET on
        // 2026-10-25: 02:30 local is 00:30 UTC and again 01:30 UTC
        let tz = chrono_tz::Europe::Berlin;
        let first = fire_of_tick("0 30 2 * * *", tz, utc("2026-10-25T00:30:00.300Z")).unwrap();
        let second = fire_of_tick("0 30 2 * * *", tz, utc("2026-10-25T01:30:00.300Z")).unwrap();
        assert_eq!(fire_name(first, tz), "2026-10-25T02:30:00 Europe/Berlin");
        assert_eq!(fire_name(second, tz), fire_name(first, tz));
        assert_eq!(as_of_for(second, tz), as_of_for(first, tz));
        // the next day's fire is a fire of its own
        let next = fire_of_tick("0 30 2 * * *", tz, utc("2026-10-26T01:30:00Z")).unwrap();
        assert_eq!(fire_name(next, tz), "2026-10-26T02:30:00 Europe/Berlin");
    }

    #[test]
    fn the_next_fire_on_a_first_is_found_a_year_ahead() {
        let tz = chrono_tz::Asia::Shanghai;
        // 1 December, 10:00 in Shanghai: today's 02:30 is past
        let now = utc("2026-12-01T02:00:00Z");
        let next = |expr: &str| next_fire_on_a_first(expr, tz, now).map(|t| t.to_rfc3339());
        assert_eq!(
            next("0 30 2 1 * *").as_deref(),
            Some("2026-12-31T18:30:00+00:00")
        );
        // a daily job fires on the 1st too; an hourly one still today
        assert_eq!(
            next("0 30 2 * * *").as_deref(),
            Some("2026-12-31T18:30:00+00:00")
        );
        assert_eq!(
            next("0 0 * * * *").as_deref(),
            Some("2026-12-01T03:00:00+00:00")
        );
        // only in March: the 1st of March 2027
        assert_eq!(
            next("0 0 6 1 3 *").as_deref(),
            Some("2027-02-28T22:00:00+00:00")
        );
        assert_eq!(next("0 0 8 5 * *"), None);
        assert_eq!(
            next("0 0 8 * * 1-5").as_deref(),
            Some("2027-01-01T00:00:00+00:00")
        );
    }

    #[test]
    fn the_next_fire_names_the_period_it_computes() {
        use crate::config::Period;
        let now = utc("2026-12-01T02:00:00Z");
        let job = |cron: &str, period| JobConfig {
            name: "j".into(),
            cron: cron.into(),
            period,
            steps: Vec::new(),
            catch_up: false,
            keep_reports_days: None,
        };
        let next = |job: JobConfig| {
            let (fire, p) = next_fire_and_period(&job, chrono_tz::Asia::Shanghai, now).unwrap();
            format!("{fire} {}..{}", p.start, p.end)
        };
        assert_eq!(
            next(job("0 30 2 * * *", Period::Mtd)),
            "2026-12-02T02:30:00 2026-12-01..2026-12-01"
        );
        assert_eq!(
            next(job("0 30 2 1 * *", Period::PreviousMonth)),
            "2027-01-01T02:30:00 2026-11-01..2026-11-30"
        );
        assert_eq!(
            next(job("0 30 2 1 * *", Period::Mtd)),
            "2027-01-01T02:30:00 2026-12-01..2026-12-31"
        );
    }

    #[test]
    fn fires_keep_their_local_time_across_a_dst_switch() {
        // Europe/Berlin leaves summer time on 2026-10-25: 02:30 local is
        // 00:30 UTC before and 01:30 UTC after
        let tz = chrono_tz::Europe::Berlin;
        let before = utc("2026-10-24T12:00:00Z");
        let after = utc("2026-10-26T12:00:00Z");
        let a = previous_fire("0 30 2 * * *", tz, before).unwrap();
        let b = previous_fire("0 30 2 * * *", tz, after).unwrap();
        assert_eq!(a.to_rfc3339(), "2026-10-24T00:30:00+00:00");
        assert_eq!(b.to_rfc3339(), "2026-10-26T01:30:00+00:00");
    }

    #[test]
    fn an_outage_is_told_when_it_starts_each_hour_it_lasts_and_when_it_ends() {
        let mut outage = Outage::default();
        let start = utc("2026-11-30T18:00:00Z");
        assert_eq!(outage.failed(start), Some(start));
        let minutes = |m| start + chrono::TimeDelta::minutes(m);
        for m in 1..60 {
            assert_eq!(outage.failed(minutes(m)), None, "minute {m}");
        }
        assert_eq!(outage.failed(minutes(60)), Some(start));
        assert_eq!(outage.failed(minutes(61)), None);
        assert_eq!(outage.answered(), Some(start));
        assert_eq!(outage.answered(), None);
        // the next outage is its own, told at once
        assert_eq!(outage.failed(minutes(62)), Some(minutes(62)));
    }
}
