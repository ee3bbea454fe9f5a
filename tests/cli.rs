use std::process::Command;

/// Number of `.eml` files in a folder (lettre's file transport output).
pub fn emails_in(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "eml")
        })
        .count()
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_salesbatch"))
}

#[test]
fn invalid_config_exits_2_and_names_both_problems() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "colour = 1\n[scorecard.weights]\nsales = 0.5\nnew_customers = 0.2\nvisits = 0.1\nsatisfaction = 0.1\n").unwrap();
    let out = bin()
        .arg("--config")
        .arg(&path)
        .arg("check")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:1: `colour`: unknown field `colour`"),
        "{err}"
    );
    assert!(
        err.contains("bad.toml:2: `scorecard.weights`: weights sum to 0.9, they must sum to 1.0"),
        "{err}"
    );
}

/// The quick start: the demo runs the nightly job, exits 3 (degraded), names
/// each dirty row, writes reports and emails; a rerun loads nothing twice.
#[test]
fn demo_runs_end_to_end_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let out = bin()
        .args(["demo", "--as-of", "2026-11-20", "--dir"])
        .arg(&demo)
        .env_remove("SALESBATCH_DEMO_ERP_URL")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("row 36 cell E36 column `金额` value `N/A`: unparsable number"),
        "{stderr}"
    );
    assert!(
        stderr.contains("value `2026/02/30`: unparsable date"),
        "{stderr}"
    );
    assert!(
        stderr.contains("value `X99999`: unknown customer id"),
        "{stderr}"
    );
    let reports = demo.join("out/2026-11-20/nightly");
    for f in [
        "华东.xlsx",
        "华东.html",
        "national.xlsx",
        "data-quality.xlsx",
    ] {
        assert!(reports.join(f).is_file(), "{f} missing");
    }
    let emails = crate::cli::emails_in(&demo.join("out/outbox"));
    assert_eq!(emails, 4);
    // the regional page never shows another region's customers
    let east = std::fs::read_to_string(reports.join("华东.html")).unwrap();
    assert!(!east.contains("华南</td>") && !east.contains("华北</td>"));
    // every customer row of the 华东 workbook is a 华东 customer
    let mut wb: calamine::Xlsx<_> = calamine::open_workbook(reports.join("华东.xlsx")).unwrap();
    let tiers_sheet = calamine::Reader::worksheet_range(&mut wb, "客户分级").unwrap();
    let regions: Vec<String> = tiers_sheet
        .rows()
        .skip(1)
        .map(|r| r[2].to_string())
        .collect();
    assert!(
        !regions.is_empty() && regions.iter().all(|r| r == "华东"),
        "{regions:?}"
    );

    let config = demo.join("salesbatch.toml");
    let export = |args: &[&str]| {
        let o = bin()
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let tiers = export(&["export", "tiers", "--as-of", "2026-11-20"]);
    let rows: Vec<&str> = tiers.lines().collect();
    assert_eq!(rows[0], "customer_id,region,rep_id,avg_monthly_sales,growth,breadth,loyalty,prospect,sales_score,growth_score,coverage_score,loyalty_score,prospect_score,score,tier,lifecycle");
    // 60 customers, two of them 停用 (ids 23 and 46): 58 scored
    assert_eq!(rows.len() - 1, 58);
    let rejections = export(&["export", "rejections", "--as-of", "2026-11-20"]);
    assert_eq!(rejections.lines().count(), 4, "{rejections}");

    // rerun: every file is unchanged and skipped, emails are not resent, totals equal
    let erp = format!(
        "sqlite://{}",
        std::fs::canonicalize(demo.join("erp.db"))
            .unwrap()
            .display()
    );
    let again = bin()
        .arg("--config")
        .arg(&config)
        .args(["run", "nightly", "--as-of", "2026-11-20"])
        .env("SALESBATCH_DEMO_ERP_URL", erp)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert_eq!(
        again.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&again.stderr)
    );
    // the SQL source re-reads its lookback window and replaces it; files are skipped
    assert!(
        stdout.contains("1 files loaded, 21 skipped, 0 refused"),
        "{stdout}"
    );
    assert!(stdout.contains("(4 already sent, 0 failed)"), "{stdout}");
    assert_eq!(export(&["export", "tiers", "--as-of", "2026-11-20"]), tiers);
}

/// Many files, each larger than what its channel buffers, more files than
/// cores: parsers block on full channels. The writer must still get every
/// file, in order (an earlier design could deadlock here). Also checks that
/// every row loads exactly once.
#[test]
fn ingest_of_many_large_files_completes() {
    use std::io::Write as _;
    use std::time::{Duration, Instant};
    let lab = crate::ingest::Lab::new();
    let root = lab.dir.path();
    std::fs::create_dir_all(root.join("in/sales")).unwrap();
    const FILES: usize = 8;
    const ROWS: usize = 9_000;
    for f in 0..FILES {
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(root.join(format!("in/sales/s{f:02}.csv"))).unwrap(),
        );
        writeln!(out, "date,customer,product,amount").unwrap();
        for r in 0..ROWS {
            writeln!(out, "2026-10-{:02},C1,P{},1.00", 1 + r % 28, r % 5).unwrap();
        }
    }
    lab.settings(
        r#"
[[sources]]
name = "sales"
dataset = "sales"
kind = "csv"
path = "in/sales/*.csv"
columns = { invoice_date = "date", customer_id = "customer", product_id = "product", amount = "amount" }
"#,
    );
    let mut child = bin()
        .arg("--config")
        .arg(root.join("salesbatch.toml"))
        .args(["run", "load", "--as-of", "2026-11-20"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(240);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("ingest did not finish: parse-ahead deadlock");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    assert_eq!(status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "{} files loaded, 0 skipped, 0 refused, {} rows",
            FILES + 2,
            FILES * ROWS + 6
        )),
        "{stdout}"
    );
}
