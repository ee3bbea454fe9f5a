//! `serve` as a real daemon: it catches up the nightly fire it missed, fires
//! a per-second job on schedule, says at start that its mail server cannot
//! be used, and on SIGTERM stops cleanly.

use std::process::Stdio;
use std::time::{Duration, Instant};

use sqlx::Row;

use crate::cli::bin;
use crate::ingest::Lab;

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
[[sources]]
name = "flow"
dataset = "sales"
kind = "csv"
path = "in/sales.csv"
columns = {{ invoice_date = "日期", customer_id = "客户编码", product_id = "产品编码", amount = "金额" }}
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
    let log = lab.path("serve.log");
    let mut child = bin()
        .arg("--config")
        .arg(&settings.path)
        .arg("serve")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
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

    let term = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(0));
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
