//! `serve` as a real daemon: it catches up the nightly fire it missed, fires
//! a per-second job on schedule, says at start that its mail server cannot
//! be used, rereads its config on SIGHUP, and on SIGTERM stops cleanly.

use std::process::Stdio;
use std::time::{Duration, Instant};

use sqlx::Row;

use crate::cli::bin;
use crate::ingest::Lab;

/// The one source of the daemon tests: `in/sales.csv`.
const FLOW_SOURCE: &str = r#"[[sources]]
name = "flow"
dataset = "sales"
kind = "csv"
path = "in/sales.csv"
columns = { invoice_date = "日期", customer_id = "客户编码", product_id = "产品编码", amount = "金额" }"#;

/// Starts `serve` on the lab's config, logging at INFO to `serve.log`.
fn start_serve(
    lab: &Lab,
    settings: &salesbatch::config::Settings,
) -> (std::path::PathBuf, std::process::Child) {
    start_serve_logging_to(lab, settings, "serve.log")
}

/// Starts `serve` on the lab's config, logging at INFO to `log` in the lab.
fn start_serve_logging_to(
    lab: &Lab,
    settings: &salesbatch::config::Settings,
    log: &str,
) -> (std::path::PathBuf, std::process::Child) {
    let log = lab.path(log);
    let child = bin()
        .arg("--config")
        .arg(&settings.path)
        .arg("serve")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    (log, child)
}

#[test]
fn serve_catches_up_fires_on_schedule_and_stops_on_sigterm() {
    let lab = Lab::new();
    lab.write(
        "in/sales.csv",
        "日期,客户编码,产品编码,金额\n2026-10-01,C1,P1,10\n".as_bytes(),
    );
    // nothing listens there: the mail server cannot be used
    let smtp_port = crate::deliver::free_port();
    let settings = lab.settings(&format!(
        r#"
timezone = "Asia/Shanghai"
[smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
from = "销售报表 <reports@example.com>"
{FLOW_SOURCE}
[[jobs]]
name = "mail"
cron = "0 0 6 1 1 *"
steps = ["compute", "report", "deliver"]
[[jobs]]
name = "nightly"
cron = "0 30 2 * * *"
steps = ["ingest", "compute"]
catch_up = true
[[jobs]]
name = "tick"
cron = "*/2 * * * * *"
steps = ["compute"]
"#
    ));
    let (log, mut child) = start_serve(&lab, &settings);
    let missed = salesbatch::schedule::previous_fire(
        "0 30 2 * * *",
        chrono_tz::Asia::Shanghai,
        chrono::Utc::now(),
    )
    .unwrap();
    let expected_as_of = (missed
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .date_naive()
        - chrono::Days::new(1))
    .to_string();

    let rt = tokio::runtime::Runtime::new().unwrap();
    let finished = |job: &'static str| {
        rt.block_on(async {
            let pool = lab.warehouse().await;
            let rows = sqlx::query(
                "SELECT as_of FROM runs WHERE job = ? AND finished_at IS NOT NULL ORDER BY run_id",
            )
            .bind(job)
            .fetch_all(&pool)
            .await
            .unwrap_or_default();
            pool.close().await;
            rows.iter()
                .map(|r| r.get::<String, _>(0))
                .collect::<Vec<_>>()
        })
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let nightly = if lab.path("data/warehouse.db").exists() {
            finished("nightly")
        } else {
            vec![]
        };
        let ticks = if nightly.is_empty() {
            vec![]
        } else {
            finished("tick")
        };
        if !nightly.is_empty() && ticks.len() >= 2 {
            assert_eq!(nightly, vec![expected_as_of.clone()], "one catch-up run");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no catch-up or tick runs:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        assert!(child.try_wait().unwrap().is_none(), "serve exited early");
        std::thread::sleep(Duration::from_millis(250));
    }

    stops_on_sigterm(&mut child);
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("catching up a missed fire"), "{log}");
    assert!(
        log.contains(&format!(
            "the mail server cannot be used: cannot use `127.0.0.1:{smtp_port}`: "
        )),
        "{log}"
    );
    assert!(log.contains("stopped"), "{log}");
    // nothing was left holding a lock
    let locks: i64 = rt.block_on(async {
        let pool = lab.warehouse().await;
        sqlx::query("SELECT COUNT(*) FROM job_locks")
            .fetch_one(&pool)
            .await
            .unwrap()
            .get(0)
    });
    assert_eq!(locks, 0);
}

/// Takes the warehouse lock `name` (`true`) for this test process, alive
/// as a run's holder is, or gives it back.
fn hold_lock(lab: &Lab, rt: &tokio::runtime::Runtime, name: &str, hold: bool) {
    let holder = format!("{}:test", salesbatch::jobs::this_process());
    rt.block_on(async {
        let pool = lab.warehouse().await;
        let statement = if hold {
            "INSERT INTO job_locks (job, holder, acquired_at) VALUES (?, ?, '2026-01-01T00:00:00Z')"
        } else {
            "DELETE FROM job_locks WHERE job = ? AND holder = ?"
        };
        sqlx::query(statement)
            .bind(name)
            .bind(&holder)
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    });
}

/// A lab with `in/sales.csv` and a `nightly` job (Shanghai time, catch-up
/// on) firing on `cron`.
fn nightly_lab(cron: &str) -> (Lab, salesbatch::config::Settings) {
    let lab = Lab::new();
    lab.write(
        "in/sales.csv",
        "日期,客户编码,产品编码,金额\n2026-10-01,C1,P1,10\n".as_bytes(),
    );
    let settings = lab.settings(&format!(
        r#"
timezone = "Asia/Shanghai"
{FLOW_SOURCE}
[[jobs]]
name = "nightly"
cron = "{cron}"
steps = ["ingest", "compute"]
catch_up = true
"#
    ));
    (lab, settings)
}

/// A lab whose `nightly` job (catch-up on) ran the night before its
/// latest fire, and whose runs can be made to stop in the middle: this
/// test process holds the turn to ingest, as a live run would, and a run
/// that records its start then waits for it until killed.
struct NightLab {
    lab: Lab,
    settings: salesbatch::config::Settings,
    rt: tokio::runtime::Runtime,
    /// the night before the missed one, and the missed one
    earlier: String,
    as_of: String,
}

impl NightLab {
    fn new() -> Self {
        let cron = "0 30 2 * * *";
        let (lab, settings) = nightly_lab(cron);
        let tz = chrono_tz::Asia::Shanghai;
        let missed = salesbatch::schedule::previous_fire(cron, tz, chrono::Utc::now()).unwrap();
        let night = salesbatch::schedule::as_of_for(missed, tz);
        let this = Self {
            lab,
            settings,
            rt: tokio::runtime::Runtime::new().unwrap(),
            earlier: (night - chrono::Days::new(1)).to_string(),
            as_of: night.to_string(),
        };
        // creates the warehouse
        assert_eq!(this.run(&this.earlier).wait().unwrap().code(), Some(0));
        this
    }

    fn run(&self, as_of: &str) -> std::process::Child {
        bin()
            .arg("--config")
            .arg(&self.settings.path)
            .args(["run", "nightly", "--as-of", as_of])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// (as_of, status) of every run, in the order they started.
    fn runs(&self) -> Vec<(String, String)> {
        self.rt.block_on(self.lab.runs())
    }

    /// The status of each run as `history --json` shows it, newest first.
    fn history(&self) -> Vec<String> {
        let out = bin()
            .arg("--config")
            .arg(&self.settings.path)
            .args(["history", "--json"])
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let run: serde_json::Value = serde_json::from_str(l).unwrap();
                run["status"].as_str().unwrap().to_string()
            })
            .collect()
    }

    /// Takes the turn to ingest (`true`) for this process, or gives it back.
    fn hold_ingest_turn(&self, hold: bool) {
        hold_lock(&self.lab, &self.rt, "(ingest)", hold);
    }

    /// Waits until the missed night's run has started, with `process`
    /// (running it) alive.
    fn wait_run_started(&self, process: &mut std::process::Child) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.runs().len() < 2 {
            assert!(Instant::now() < deadline, "the run did not start");
            assert!(process.try_wait().unwrap().is_none(), "the run ended early");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills `process`, running the missed night, and checks its run is
    /// left recorded as running.
    fn kill_mid_run(&self, process: &mut std::process::Child) {
        process.kill().unwrap();
        process.wait().unwrap();
        assert_eq!(
            self.runs(),
            [
                (self.earlier.clone(), "success".to_string()),
                (self.as_of.clone(), "running".to_string())
            ]
        );
    }

    /// The runs once the killed one was run again.
    fn assert_run_again(&self) {
        assert_eq!(
            self.runs(),
            [
                (self.earlier.clone(), "success".to_string()),
                (self.as_of.clone(), "interrupted".to_string()),
                (self.as_of.clone(), "success".to_string())
            ]
        );
    }
}

/// A nightly run killed in the middle (the machine went down at night)
/// leaves its run recorded as running. `serve`, started again, catches
/// that night up instead of taking the dead run for done, and the dead
/// run is marked `interrupted`.
#[test]
fn serve_catches_up_a_night_whose_run_was_killed() {
    let night = NightLab::new();
    night.hold_ingest_turn(true);
    let mut killed = night.run(&night.as_of);
    night.wait_run_started(&mut killed);
    assert_eq!(night.history(), ["running", "success"]);
    night.kill_mid_run(&mut killed);
    // recorded as running, but its lock has no live holder
    assert_eq!(night.history(), ["interrupted", "success"]);
    night.hold_ingest_turn(false);

    let (log, mut child) = start_serve(&night.lab, &night.settings);
    wait_for_log(&log, "run finished", 1, &mut child);
    stops_on_sigterm(&mut child);
    night.assert_run_again();
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("catching up a missed fire"), "{log}");
    assert!(
        log.contains("earlier runs of this job stopped before they finished"),
        "{log}"
    );
    let history = bin()
        .arg("--config")
        .arg(&night.settings.path)
        .arg("history")
        .output()
        .unwrap();
    let history = String::from_utf8_lossy(&history.stdout);
    assert_eq!(history.matches("interrupted").count(), 1, "{history}");
}

/// Two instances: the one running the night's catch-up dies with its run
/// (its machine went down) while the other goes on. The other runs the
/// night again at its next minute's check, rather than leaving it without
/// reports until an instance starts again.
#[test]
fn an_instance_runs_again_a_night_whose_run_died_on_another() {
    let night = NightLab::new();
    night.hold_ingest_turn(true);
    let (_, mut first) = start_serve_logging_to(&night.lab, &night.settings, "serve-1.log");
    night.wait_run_started(&mut first);
    let (log, mut second) = start_serve(&night.lab, &night.settings);
    // its own catch-up leaves the night to the first
    wait_for_log(
        &log,
        "the missed fire's run is still going in another process; it is left to it",
        1,
        &mut second,
    );
    night.kill_mid_run(&mut first);
    night.hold_ingest_turn(false);
    wait_for_log_within(
        &log,
        "run finished",
        1,
        &mut second,
        Duration::from_secs(90),
    );
    stops_on_sigterm(&mut second);
    night.assert_run_again();
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        log.contains("a run of the latest fire stopped before it finished (its process died); running the date again"),
        "{log}"
    );
}

/// A fire that finds the job's lock held (an operator's manual run of
/// another date going at its time) is skipped; once the lock is free, the
/// instance runs it at its next minute's check instead of losing the
/// night until its next start.
#[test]
fn a_fire_skipped_for_a_held_lock_runs_once_the_lock_is_free() {
    use chrono::Timelike;
    let tz = chrono_tz::Asia::Shanghai;
    // a fire a few seconds after serve starts
    let fire = (chrono::Utc::now() + chrono::Duration::seconds(8)).with_timezone(&tz);
    let cron = format!("{} {} {} * * *", fire.second(), fire.minute(), fire.hour());
    let as_of = salesbatch::schedule::as_of_for(fire.with_timezone(&chrono::Utc), tz).to_string();
    let (lab, settings) = nightly_lab(&cron);
    // creates the warehouse
    let made = bin()
        .arg("--config")
        .arg(&settings.path)
        .args(["run", "nightly", "--as-of", "2026-11-01"])
        .output()
        .unwrap();
    assert_eq!(made.status.code(), Some(0));
    let rt = tokio::runtime::Runtime::new().unwrap();
    // this process holds the job's lock, as a manual run would
    hold_lock(&lab, &rt, "nightly", true);
    let (log, mut child) = start_serve(&lab, &settings);
    // the catch-up at start (of the fire the day before), then the fire
    let skipped = "the previous run is still going; this fire is skipped until it ends (`catch_up` runs it then)";
    wait_for_log(&log, skipped, 2, &mut child);
    hold_lock(&lab, &rt, "nightly", false);
    wait_for_log_within(&log, "run finished", 1, &mut child, Duration::from_secs(90));
    stops_on_sigterm(&mut child);
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("the latest fire has no run"), "{log}");
    let runs = rt.block_on(lab.runs());
    assert_eq!(
        runs,
        [
            ("2026-11-01".to_string(), "success".to_string()),
            (as_of, "success".to_string())
        ],
        "{log}"
    );
}

/// A warehouse that does not answer when `serve` starts (its database
/// server starting with the machine) does not stop the daemon, which a
/// service manager would restart only a few times: it logs the error,
/// keeps its jobs scheduled, and once the warehouse answers runs the
/// night it could not catch up, at its next minute's check.
#[test]
fn serve_outlives_a_warehouse_that_is_not_up_at_its_start() {
    let cron = "0 30 2 * * *";
    let (lab, settings) = nightly_lab(cron);
    // a directory where the SQLite file goes: opening it fails
    std::fs::create_dir_all(lab.path("data/warehouse.db")).unwrap();
    let (log, mut child) = start_serve(&lab, &settings);
    wait_for_log(
        &log,
        "cannot look for missed fires in the warehouse; the jobs stay scheduled",
        1,
        &mut child,
    );
    std::fs::remove_dir(lab.path("data/warehouse.db")).unwrap();
    wait_for_log_within(&log, "run finished", 1, &mut child, Duration::from_secs(90));
    stops_on_sigterm(&mut child);
    // the outage the start told of is told to have ended
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.matches("the warehouse answers again").count(),
        1,
        "{text}"
    );
    let tz = chrono_tz::Asia::Shanghai;
    let missed = salesbatch::schedule::previous_fire(cron, tz, chrono::Utc::now()).unwrap();
    let as_of = salesbatch::schedule::as_of_for(missed, tz).to_string();
    let runs = tokio::runtime::Runtime::new().unwrap().block_on(lab.runs());
    assert_eq!(runs, [(as_of, "success".to_string())]);
}

/// Waits until `log` holds `needle` `times` times, with `child` alive.
fn wait_for_log(
    log: &std::path::Path,
    needle: &str,
    times: usize,
    child: &mut std::process::Child,
) {
    wait_for_log_within(log, needle, times, child, Duration::from_secs(30));
}

/// `wait_for_log` for at most `limit`.
fn wait_for_log_within(
    log: &std::path::Path,
    needle: &str,
    times: usize,
    child: &mut std::process::Child,
    limit: Duration,
) {
    let deadline = Instant::now() + limit;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.matches(needle).count() >= times {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no `{needle}` ({times}×) in:\n{text}"
        );
        assert!(child.try_wait().unwrap().is_none(), "serve exited:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn signal(child: &std::process::Child, name: &str) {
    let sent = std::process::Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// Sends SIGTERM and checks that serve exits 0 within 30 s.
fn stops_on_sigterm(child: &mut std::process::Child) {
    signal(child, "TERM");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(0));
}

/// SIGHUP rereads the config: an invalid one is logged with its problem
/// and changes nothing (the daemon goes on); a valid one replaces the
/// scheduled jobs, so a job given a per-second cron starts firing.
#[test]
fn serve_reloads_its_config_on_sighup() {
    let lab = Lab::new();
    let job = |cron: &str| {
        format!("[[jobs]]\nname = \"tick\"\ncron = \"{cron}\"\nsteps = [\"compute\"]\n")
    };
    // once a year: it does not fire while the test runs
    let settings = lab.settings(&job("0 0 6 1 1 *"));
    let (log, mut child) = start_serve(&lab, &settings);
    wait_for_log(&log, "cron=0 0 6 1 1 *", 1, &mut child);
    // the line names the next fire and the period it computes: an `mtd`
    // job on 1 January covers the December before
    let logged = std::fs::read_to_string(&log).unwrap();
    let scheduled = logged
        .lines()
        .find(|l| l.contains("job scheduled job=tick "))
        .unwrap();
    assert!(
        scheduled.contains("-01-01T06:00:00 next_period=")
            && scheduled.contains("-12-01..")
            && scheduled.ends_with("-12-31"),
        "{scheduled}"
    );

    let text = std::fs::read_to_string(&settings.path).unwrap();
    std::fs::write(&settings.path, text.replace("0 0 6 1 1 *", "every second")).unwrap();
    signal(&child, "HUP");
    wait_for_log(&log, "the config was not reloaded", 1, &mut child);
    let logged = std::fs::read_to_string(&log).unwrap();
    let refusal = logged
        .lines()
        .find(|l| l.contains("the config was not reloaded"))
        .unwrap();
    assert!(
        refusal.contains(" ERROR ") && refusal.contains("`jobs[0].cron`"),
        "{refusal}"
    );

    lab.settings(&job("* * * * * *"));
    signal(&child, "HUP");
    wait_for_log(&log, "config reloaded; rescheduling jobs", 1, &mut child);
    wait_for_log(&log, "cron=* * * * * *", 1, &mut child);
    // the reloaded job fires: its runs finish in the warehouse
    wait_for_log(&log, "run finished", 2, &mut child);

    stops_on_sigterm(&mut child);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        logged.matches("job scheduled job=tick ").count(),
        2,
        "scheduled at start and at the one reload that took:\n{logged}"
    );
    // every run's lines carry its span, its last line too (a span entered
    // across an await lost it when the run resumed on another thread)
    for line in logged.lines().filter(|l| l.contains("run finished")) {
        assert!(line.contains(" job{job=tick run_id="), "{line}");
    }
}

/// Two `serve` instances on one warehouse (SPEC §7: a job runs once, never
/// twice) run each fire of a per-second job once. The job lock alone let
/// the later instance run a fire again when the earlier's run had already
/// ended: here a compute on an empty warehouse ends in milliseconds.
#[test]
fn two_instances_run_each_fire_once() {
    let lab = Lab::new();
    let settings = lab
        .settings("[[jobs]]\nname = \"tick\"\ncron = \"*/2 * * * * *\"\nsteps = [\"compute\"]\n");
    let (first_log, mut first) = start_serve(&lab, &settings);
    let (second_log, mut second) = start_serve_logging_to(&lab, &settings, "serve-2.log");
    let taken = "this fire was taken by another instance";
    let deadline = Instant::now() + Duration::from_secs(60);
    let logs = || {
        [&first_log, &second_log]
            .map(|log| std::fs::read_to_string(log).unwrap_or_default())
            .join("\n")
    };
    // until three fires found the other instance's claim (whichever
    // instance ticks first takes them all, as a rule)
    while logs().matches(taken).count() < 3 {
        assert!(
            Instant::now() < deadline,
            "no fire left to the other:\n{}",
            logs()
        );
        for child in [&mut first, &mut second] {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("serve exited ({status}):\n{}", logs());
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    stops_on_sigterm(&mut first);
    stops_on_sigterm(&mut second);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let (runs, fires): (Vec<String>, i64) = rt.block_on(async {
        let pool = lab.warehouse().await;
        let runs = sqlx::query_scalar("SELECT started_at FROM runs WHERE job = 'tick'")
            .fetch_all(&pool)
            .await
            .unwrap();
        let fires = sqlx::query_scalar("SELECT COUNT(*) FROM job_fires WHERE job = 'tick'")
            .fetch_one(&pool)
            .await
            .unwrap();
        (runs, fires)
    });
    let logs = logs();
    // every run is a fire's; a fire whose lock was held runs nothing
    assert!(!runs.is_empty(), "{logs}");
    assert!(
        runs.len() as i64 <= fires,
        "{} runs for {fires} fires:\n{logs}",
        runs.len()
    );
    assert_eq!(
        fires as usize,
        runs.len() + logs.matches("the previous run is still going").count(),
        "{logs}"
    );
}
