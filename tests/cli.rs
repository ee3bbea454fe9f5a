use std::path::PathBuf;
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

/// stdout then stderr of a finished command, for assertion messages.
pub fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The part of a report page under the `<h2>` `heading`, up to the next.
pub fn section<'a>(page: &'a str, heading: &str) -> &'a str {
    page.split(&format!("<h2>{heading}</h2>"))
        .nth(1)
        .and_then(|rest| rest.split("<h2>").next())
        .unwrap_or_else(|| panic!("no section `{heading}` in {page}"))
}

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_salesbatch"))
}

/// Writes the demo as of `as_of` in `dir/demo` and runs it once, as the
/// quick start does (exit 3: its inbox holds three dirty rows).
pub fn demo_in(dir: &std::path::Path, as_of: &str) -> PathBuf {
    let demo = dir.join("demo");
    let out = bin()
        .args(["demo", "--as-of", as_of, "--dir"])
        .arg(&demo)
        .env_remove("SALESBATCH_DEMO_ERP_URL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    demo
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
    // the national page shows the first 20 of the A and B customers' gaps
    // the workbook holds
    let mut national: calamine::Xlsx<_> =
        calamine::open_workbook(reports.join("national.xlsx")).unwrap();
    let gaps = calamine::Reader::worksheet_range(&mut national, "拜访缺口").unwrap();
    let with_gap = gaps
        .rows()
        .skip(1)
        .filter(|r| {
            matches!(
                calamine::DataType::as_string(&r[4]).as_deref(),
                Some("A" | "B")
            ) && calamine::DataType::as_f64(&r[7]) > Some(0.0)
        })
        .count();
    let page = std::fs::read_to_string(reports.join("national.html")).unwrap();
    let gaps = section(&page, "重点客户拜访缺口");
    // a header row and a row per customer (cut at 20: see
    // `report::a_cut_list_says_how_many_rows_it_has`)
    assert!(
        with_gap > 0,
        "the demo has A and B customers short of visits"
    );
    assert_eq!(gaps.matches("<tr>").count(), 1 + with_gap.min(20), "{gaps}");
    // the first run has no earlier snapshot to take tier changes from
    let no_snapshot = "<div class=\"more\">首次计算：尚无上期快照可比较</div>";
    assert!(east.contains(no_snapshot), "{east}");
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
    let db = demo.join("data/warehouse.db");
    // C00005: sales 85, growth −3.6 % → 70, breadth 1.0 → 85, loyalty 100,
    // prospect 0: 42.5 + 14 + 8.5 + 10 + 0 = 75.00, exactly B's threshold.
    // C00010: 85, growth −37.9 % → 20, 50, 11/12 months → 91.67, 68:
    // 42.5 + 4 + 5 + 9.1667 + 6.8 = 67.4667 → 67.47, C.
    for (customer, score, tier) in [("C00005", "75.00", "B"), ("C00010", "67.47", "C")] {
        let row: Vec<&str> = rows
            .iter()
            .find(|r| r.starts_with(customer))
            .unwrap()
            .split(',')
            .collect();
        let (by_hand, tier_by_hand) = hand_check(&db, customer);
        assert_eq!(
            (row[13], row[14]),
            (by_hand.as_str(), tier_by_hand),
            "{customer}"
        );
        assert_eq!((row[13], row[14]), (score, tier), "{customer}");
    }
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
        .env("SALESBATCH_DEMO_ERP_URL", &erp)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&again.stdout);
    // the skipped files' rejected rows are still missing: still degraded
    assert_eq!(
        again.status.code(),
        Some(3),
        "{stdout}{}",
        String::from_utf8_lossy(&again.stderr)
    );
    // the SQL source re-reads its lookback window and replaces it; files are skipped
    assert!(
        stdout.contains("1 file loaded, 21 skipped, 0 refused"),
        "{stdout}"
    );
    assert!(stdout.contains("(4 already sent, 0 failed)"), "{stdout}");
    assert_eq!(export(&["export", "tiers", "--as-of", "2026-11-20"]), tiers);
    assert_eq!(
        export(&["export", "rejections", "--as-of", "2026-11-20"]),
        rejections
    );

    // history: newest first, with status and counts, in the words of the
    // run's summary line
    let said = stdout
        .lines()
        .find_map(|l| l.strip_prefix("run 2 `nightly` as of 2026-11-20: "))
        .unwrap();
    assert!(
        said.starts_with("1 file loaded, 21 skipped, 0 refused, "),
        "{said}"
    );
    let history = export(&["history"]);
    let runs: Vec<&str> = history.lines().skip(1).collect();
    assert_eq!(runs.len(), 2, "{history}");
    // started in the configured time zone (Asia/Shanghai), as the stored
    // UTC start of the same run says
    let started = runs[0].split_whitespace().nth(3).unwrap();
    assert!(started.ends_with("+08:00"), "{history}");
    let started = chrono::DateTime::parse_from_rfc3339(started).unwrap();
    let newest = export(&["history", "--json"]);
    let newest: serde_json::Value = serde_json::from_str(newest.lines().next().unwrap()).unwrap();
    let stored = newest["started_at"].as_str().unwrap();
    assert!(stored.ends_with('Z'), "{stored}");
    assert_eq!(
        started,
        chrono::DateTime::parse_from_rfc3339(stored).unwrap()
    );
    assert!(
        runs[0]
            .trim_start()
            .starts_with("2  nightly      2026-11-20")
            && runs[0].contains("degraded")
            && runs[0].ends_with(&format!(
                "{said}, 4 reports, emails: 0 sent, 4 already sent, 0 failed"
            )),
        "{history}"
    );
    assert!(
        runs[1].trim_start().starts_with("1  nightly")
            && runs[1].contains("degraded")
            && runs[1].contains("22 files loaded, 0 skipped, 0 refused, ")
            && runs[1].contains(", 3 rejections, "),
        "{history}"
    );
    // and for scripts, one JSON object a run with the counts as numbers
    let json: Vec<serde_json::Value> = export(&["history", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(json.len(), 2);
    assert_eq!(json[0]["run_id"], 2);
    assert_eq!(json[0]["as_of"], "2026-11-20");
    assert_eq!(json[0]["status"], "degraded");
    assert_eq!(json[0]["counts"]["files_loaded"], 1);
    assert_eq!(json[0]["counts"]["files_skipped"], 21);
    assert_eq!(json[0]["counts"]["emails_skipped"], 4);
    assert_eq!(json[1]["counts"]["rejections"], 3);

    // --region limits the reports and so the emails to that region's manager
    let east_only = bin()
        .arg("--config")
        .arg(&config)
        .args([
            "run",
            "nightly",
            "--as-of",
            "2026-11-20",
            "--region",
            "华东",
            "--resend",
        ])
        .env("SALESBATCH_DEMO_ERP_URL", &erp)
        .output()
        .unwrap();
    let out = text(&east_only);
    assert!(out.contains("emails: 1 written to"), "{out}");
    let newest = std::fs::read_dir(demo.join("out/outbox"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .max_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap())
        .unwrap();
    let mail = std::fs::read_to_string(newest).unwrap();
    assert!(
        mail.contains("To: =?utf-8?b?5Y2O5Lic5aSn5Yy657uP55CG?= <east@example.com>"),
        "{mail}"
    );

    // the next day compares with the 20th: its changes section has rows or
    // says there are none, never that nothing could be compared
    let next_day = bin()
        .arg("--config")
        .arg(&config)
        .args(["run", "nightly", "--as-of", "2026-11-21", "--no-email"])
        .env("SALESBATCH_DEMO_ERP_URL", &erp)
        .output()
        .unwrap();
    assert_eq!(next_day.status.code(), Some(3), "{}", text(&next_day));
    let east = std::fs::read_to_string(demo.join("out/2026-11-21/nightly/华东.html")).unwrap();
    let changes = section(&east, "分级变动");
    assert!(
        !changes.contains("首次计算")
            && (changes.contains("与上期快照相比无等级变动") != changes.contains("<td>")),
        "{changes}"
    );

    // check opens every source: the SQL one fails without its URL
    let check = |erp: Option<&str>| {
        let mut c = bin();
        c.arg("--config").arg(&config).arg("check");
        match erp {
            Some(url) => c.env("SALESBATCH_DEMO_ERP_URL", url),
            None => c.env_remove("SALESBATCH_DEMO_ERP_URL"),
        };
        let o = c.output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).to_string(),
        )
    };
    let (code, out) = check(None);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("source `erp`: environment variable `SALESBATCH_DEMO_ERP_URL` is not set"),
        "{out}"
    );
    let (code, out) = check(Some(&erp));
    assert_eq!(code, Some(0), "{out}");
    for line in [
        "warehouse: ok",
        "templates: built-in",
        "source `erp`: sql via `SALESBATCH_DEMO_ERP_URL`: connected",
        "source `distributor-flow`: 15 files match `inbox/flow/*.xlsx`",
        "source `reps`: 1 file matches `inbox/reps/*.xlsx`",
    ] {
        assert!(out.lines().any(|l| l == line), "{line} not in\n{out}");
    }
    let (code, out) = check(Some("sqlite:///nonexistent/erp.db"));
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("source `erp`: cannot connect via `SALESBATCH_DEMO_ERP_URL`: "),
        "{out}"
    );
}

/// A CSV sales source `g` reading `in/g/*.csv` under Chinese headers.
const G_SOURCE: &str = r#"
[[sources]]
name = "g"
dataset = "sales"
kind = "csv"
path = "in/g/*.csv"
columns = { invoice_date = "日期", customer_id = "客户编码", product_id = "产品编码", amount = "金额" }"#;

/// Runs `check` on the lab's config with `env` set: its exit code and
/// output.
/// The quick start run on the 1st of a month (the default as-of right after a
/// month turns) shows one day's sales and visits, not a whole month's crowded
/// into that day: the demo's month-to-date is as far into the month as as-of.
#[test]
fn demo_on_the_first_of_a_month_holds_one_days_sales() {
    let dir = tempfile::tempdir().unwrap();
    let demo = demo_in(dir.path(), "2026-12-01");
    let scorecard = bin()
        .arg("--config")
        .arg(demo.join("salesbatch.toml"))
        .args(["export", "scorecard", "--as-of", "2026-12-01"])
        .output()
        .unwrap();
    assert!(scorecard.status.success(), "{}", text(&scorecard));
    let mut rows = csv::Reader::from_reader(scorecard.stdout.as_slice());
    let headers = rows.headers().unwrap().clone();
    let column = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (sales, target) = (column("sales"), column("sales_target"));
    let (mut total_sales, mut total_target, mut reps) = (0.0, 0.0, 0);
    for row in rows.records() {
        let row = row.unwrap();
        total_sales += row[sales].parse::<f64>().unwrap();
        total_target += row[target].parse::<f64>().unwrap();
        reps += 1;
    }
    assert_eq!(reps, 9);
    // targets are 105 % of a month's sales: one day of 31 is about 3 % of
    // them; a month crowded into the 1st made it about 80 %
    let share = total_sales / total_target;
    assert!(share > 0.0 && share < 0.15, "{share}");
}

/// `run --as-of` a day after today in `timezone` (a mistyped year) is a
/// usage error that runs nothing; today itself runs, for the day so far.
#[test]
fn a_run_as_of_a_day_not_yet_begun_is_refused() {
    let lab = crate::ingest::Lab::new();
    lab.settings("timezone = \"Asia/Shanghai\"");
    let today = (chrono::Utc::now() + chrono::Duration::hours(8)).date_naive();
    let run = |as_of: chrono::NaiveDate| {
        bin()
            .arg("--config")
            .arg(lab.path("salesbatch.toml"))
            .args(["run", "load", "--as-of", &as_of.to_string()])
            .output()
            .unwrap()
    };
    let later = today + chrono::Duration::days(2);
    let refused = run(later);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert_eq!(
        String::from_utf8_lossy(&refused.stderr),
        format!(
            "error: `--as-of {later}` is after today ({today} in `Asia/Shanghai`): a day not \
             yet over has no data to report; give a date up to {today}\n"
        )
    );
    assert!(refused.stdout.is_empty());
    assert!(!lab.path("data").exists(), "nothing ran");
    let ran = run(today);
    assert_eq!(ran.status.code(), Some(0), "{}", text(&ran));
    assert!(
        text(&ran).contains(&format!("run 1 `load` as of {today}: ")),
        "{}",
        text(&ran)
    );
    assert!(lab.path("data").exists());
}

fn check_lab(lab: &crate::ingest::Lab, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let check = bin()
        .arg("--config")
        .arg(lab.path("salesbatch.toml"))
        .arg("check")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (check.status.code(), text(&check))
}

/// `check_lab`, asserting it found a problem (exit 1); returns the output.
fn check_fails(lab: &crate::ingest::Lab, env: &[(&str, &str)]) -> String {
    let (code, out) = check_lab(lab, env);
    assert_eq!(code, Some(1), "{out}");
    out
}

/// `check` renders a user's templates as a run would, for a region and
/// the national scope of a made-up computation with a row in every
/// section: a good override is named; one that names what the reports do
/// not give, inside a section's rows, fails with the file and the name.
#[test]
fn check_renders_the_templates_in_templates_dir() {
    let lab = crate::ingest::Lab::new();
    lab.settings(&format!("templates_dir = \"tpl\"\n{G_SOURCE}"));
    lab.write(
        "tpl/report.txt",
        "{{ title }}\n{% for r in top_reps %}{{ r.name }} {{ r.kpi }}\n{% endfor %}\
         {% for row in worst_gaps.rows %}{{ row[0] }}\n{% endfor %}"
            .as_bytes(),
    );
    let (code, out) = check_lab(&lab, &[]);
    assert_eq!(code, Some(0), "{out}");
    let txt = lab.path("tpl/report.txt");
    assert!(
        out.lines()
            .any(|l| l == format!("templates: ok (`{}`)", txt.display())),
        "{out}"
    );
    // a typo in a field of the ranking's rows: only a row shows it
    lab.write(
        "tpl/report.txt",
        "{{ title }}\n{% for r in top_reps %}{{ r.nmae }}\n{% endfor %}".as_bytes(),
    );
    let out = check_fails(&lab, &[]);
    let line = out.lines().find(|l| l.starts_with("templates: ")).unwrap();
    assert!(
        line.starts_with("templates: rendering `report.txt`: ") && line.contains("nmae"),
        "{out}"
    );
}

/// `check` notes a money column whose header names 万 or 千元 (amounts load
/// as CNY, so such a column would load far too small) without counting it
/// as a problem: the exit code stays 0.
#[test]
fn check_notes_an_amount_column_headed_in_wan_yuan() {
    let lab = crate::ingest::Lab::new();
    lab.write(
        "in/g/a.csv",
        "日期,客户编码,产品编码,金额(万元)\n2026-10-01,C1,P1,1.2\n".as_bytes(),
    );
    lab.settings(&G_SOURCE.replace("amount = \"金额\"", "amount = \"金额(万元)\""));
    let (code, out) = check_lab(&lab, &[]);
    assert_eq!(code, Some(0), "{out}");
    let notes: Vec<&str> = out.lines().filter(|l| l.contains("note:")).collect();
    assert_eq!(
        notes,
        [
            "source `g`: note: `amount` is read from `金额(万元)`, and amounts load as CNY (SPEC \
          §4): a column in 万 (×10,000) loads that many times too small; convert it to 元 first"
        ],
        "{out}"
    );
}

/// `check` notes a `previous_month` job fired on the 1st: its as-of date
/// is the last day of the month just ended, so it reports the month before
/// that (SPEC §5). Not a problem (exit 0), and no note for such a job
/// fired later in the month or for an `mtd` job on the 1st.
#[test]
fn check_notes_a_previous_month_job_fired_on_the_first() {
    use chrono::{Datelike as _, Timelike as _};
    let lab = crate::ingest::Lab::new();
    lab.settings(
        "[[jobs]]\nname = \"monthly\"\ncron = \"0 30 2 1 * *\"\nperiod = \"previous_month\"\n\
         [[jobs]]\nname = \"monthly-5th\"\ncron = \"0 0 8 5 * *\"\nperiod = \"previous_month\"\n\
         [[jobs]]\nname = \"month-end\"\ncron = \"0 30 2 1 * *\"\nperiod = \"mtd\"\n",
    );
    let (code, out) = check_lab(&lab, &[]);
    assert_eq!(code, Some(0), "{out}");
    // the next 02:30 on a 1st in Shanghai (the default timezone)
    let now = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Shanghai);
    let today = now.date_naive();
    let fired = if today.day() == 1 && (now.hour(), now.minute()) < (2, 30) {
        today
    } else {
        today.with_day(1).unwrap() + chrono::Months::new(1)
    };
    let as_of = fired.pred_opt().unwrap();
    let reported = as_of.with_day(1).unwrap() - chrono::Months::new(1);
    let notes: Vec<&str> = out.lines().filter(|l| l.contains("note:")).collect();
    assert_eq!(
        notes,
        [format!(
            "job `monthly`: note: it fires on the 1st, and a `previous_month` run reports the \
             month before its as-of date's: the fire of {fired} computes as of {as_of} and \
             reports {}, not the month just ended; for that, fire it on the 2nd or later, or \
             use `period = \"mtd\"` on the 1st",
            reported.format("%Y-%m")
        )],
        "{out}"
    );
}

/// `check` names the files of a fact source that a run would refuse as
/// copies; a master file repeated is no problem (the later row wins), nor
/// is a repeated file without data rows.
#[test]
fn check_names_files_with_the_same_content() {
    let lab = crate::ingest::Lab::new();
    let october = "日期,客户编码,产品编码,金额\n2026-10-01,C1,P1,5\n";
    lab.write("in/g/10月.csv", october.as_bytes());
    lab.write("in/g/10月 - 副本.csv", october.as_bytes());
    lab.write(
        "in/g/11月.csv",
        "日期,客户编码,产品编码,金额\n2026-11-01,C1,P1,6\n".as_bytes(),
    );
    // header-only files from one template: no copy a run refuses
    lab.write(
        "in/g/empty_a.csv",
        "日期,客户编码,产品编码,金额\n".as_bytes(),
    );
    lab.write(
        "in/g/empty_b.csv",
        "日期,客户编码,产品编码,金额\n".as_bytes(),
    );
    let reps = "rep,name,region\nR3,王芳,华南\n";
    lab.write("in/more_reps/a.csv", reps.as_bytes());
    lab.write("in/more_reps/b.csv", reps.as_bytes());
    lab.settings(&format!(
        r#"{G_SOURCE}
[[sources]]
name = "more-reps"
dataset = "reps"
kind = "csv"
path = "in/more_reps/*.csv"
columns = {{ rep_id = "rep", name = "name", region = "region" }}
"#
    ));
    let out = check_fails(&lab, &[]);
    let copies: Vec<&str> = out.lines().filter(|l| l.contains("same content")).collect();
    assert_eq!(
        copies,
        [
            "source `g`: `in/g/10月.csv` has the same content as `in/g/10月 - 副本.csv`; \
          a run loads only one of them"
        ],
        "{out}"
    );
}

/// `check` opens each file of a file source as far as its header (and its
/// first data row) and names what a run would refuse there, in the run's
/// words: a missing or ambiguous column, a workbook given to a CSV source, a
/// sheet the workbook lacks, a file that is no workbook (a page without a
/// table), a formula with no
/// saved result. A good file is not mentioned.
#[test]
fn check_opens_each_file_to_its_header() {
    let lab = crate::ingest::Lab::new();
    lab.write(
        "in/g/a.csv",
        "日期,客户编码,产品编码,金额\n2026-10-01,C1,P1,5\n".as_bytes(),
    );
    lab.write(
        "in/g/b.csv",
        "日期,客户编码,产品编码,数量\n2026-10-01,C1,P1,5\n".as_bytes(),
    );
    lab.write(
        "in/g/c.csv",
        "日期,客户编码,产品编码,金额,金额\n2026-10-01,C1,P1,5,6\n".as_bytes(),
    );
    let mut wb = rust_xlsxwriter::Workbook::new();
    wb.add_worksheet().write(0, 0, "日期").unwrap();
    wb.save(lab.path("in/g/d.csv")).unwrap();
    lab.write(
        "in/g/e.csv",
        "十月流向\n日期,客户编码,产品编码,金额\n2026-10-01,C1,P1,5\n".as_bytes(),
    );
    // an ERP's "Excel" export, an HTML table, given to the CSV source
    lab.write(
        "in/g/f.csv",
        "<html><head><meta charset=\"gb2312\"></head><body><table><tr><td>日期</td></tr></table>"
            .as_bytes(),
    );
    std::fs::create_dir_all(lab.path("in/x")).unwrap();
    wb.save(lab.path("in/x/e.xlsx")).unwrap();
    lab.write(
        "in/x/f.xlsx",
        "<html><body><p>无权限导出</p></body></html>".as_bytes(),
    );
    crate::ingest::formula_workbook(&lab.path("in/x/g.xlsx"), crate::ingest::Saved::Nothing);
    lab.settings(&format!(
        "{G_SOURCE}\n{}",
        flow_excel_source("x", "in/x/*.xlsx", "sheet = \"流向\"\n")
    ));
    let out = check_fails(&lab, &[]);
    let refused: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("source `") && l.contains(": in/"))
        .collect();
    assert_eq!(
        refused,
        [
            "source `g`: in/g/b.csv column `金额`: missing column",
            "source `g`: in/g/c.csv column `金额`: missing column \
             (ambiguous: it heads columns D and E; rename all but one)",
            "source `g`: in/g/d.csv: cannot open file (the file is a workbook, not CSV text: \
             it is a zip container, as xlsx, xlsb and ods files are; read it with a \
             `kind = \"excel\"` source)",
            "source `g`: in/g/e.csv column `日期, 客户编码, 产品编码, 金额`: missing column \
             (row 1, the first non-empty row, was read as the header; row 2 heads every \
             mapped column: set `header_row = 2` on the source)",
            "source `g`: in/g/f.csv: cannot open file (the file is an HTML page, not CSV text, \
             as ERP \"Excel\" exports often are: read it with a `kind = \"excel\"` source, \
             which reads its tables)",
            "source `x`: in/x/e.xlsx: cannot open file (sheet `流向` not found; \
             the workbook has `Sheet1`)",
            "source `x`: in/x/f.xlsx: cannot open file (the file is an HTML page without a \
             table, not a workbook, as an ERP's \"Excel\" export that failed (a login or error \
             page) is: export the data again)",
            "source `x`: in/x/g.xlsx [流向] column `金额`: cannot open file (cell E2 holds the \
             formula `=D2*2` but no saved result, as a file written by a program that does \
             not calculate formulas does; open the file in Excel or LibreOffice and save it)",
        ],
        "{out}"
    );
}

/// `check` prepares each SQL source's query on its database, without
/// running it, and names what a run would refuse: a query that does not
/// prepare, a mapped column it does not return. A good query is not
/// mentioned.
#[test]
fn check_prepares_each_sql_query_and_matches_its_columns() {
    use crate::ingest::sql_sales_source;
    let lab = crate::ingest::Lab::new();
    let erp = lab.path("erp.db");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", erp.display()))
            .await
            .unwrap();
        sqlx::query("CREATE TABLE sales_lines (doc_date TEXT, cust_code TEXT, sku TEXT, net REAL)")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    });
    let env = "SB_TEST_CHECK_ERP_URL";
    let window = "FROM sales_lines WHERE doc_date >= :since";
    lab.settings(&format!(
        "{}{}{}",
        sql_sales_source(
            "ok",
            env,
            &format!("SELECT doc_date, cust_code, sku, net {window}")
        ),
        sql_sales_source(
            "renamed",
            env,
            &format!("SELECT doc_date, cust_code, sku, net AS amount {window}")
        ),
        sql_sales_source(
            "typo",
            env,
            "SELECT doc_date, cust_code, sku, net FROM sales_line WHERE doc_date >= :since"
        ),
    ));
    let out = check_fails(&lab, &[(env, &format!("sqlite://{}", erp.display()))]);
    let refused: Vec<&str> = out.lines().filter(|l| l.contains(": sql:")).collect();
    assert_eq!(
        refused,
        [
            format!("source `renamed`: sql:{env} column `net`: missing column"),
            format!(
                "source `typo`: sql:{env}: cannot open file (error returned from database: \
                 (code: 1) no such table: sales_line)"
            ),
        ],
        "{out}"
    );
    assert!(
        out.contains("source `ok`: sql via `SB_TEST_CHECK_ERP_URL`: connected\n"),
        "{out}"
    );
}

/// The same on PostgreSQL, whose prepared `$1` takes its type from the
/// query: a good query passes, a missing column is named.
#[tokio::test]
async fn check_prepares_sql_queries_on_postgresql() {
    use crate::ingest::sql_sales_source;
    crate::warehouse::PgDatabase::run(async |url| {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query(
            "CREATE TABLE sales_lines (doc_date date, cust_code text, sku text, net numeric)",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
        let lab = crate::ingest::Lab::new();
        let env = "SB_TEST_CHECK_PG_ERP_URL";
        let window = "FROM sales_lines WHERE doc_date >= :since";
        lab.settings(&format!(
            "{}{}",
            sql_sales_source(
                "ok",
                env,
                &format!("SELECT doc_date, cust_code, sku, net {window}")
            ),
            sql_sales_source(
                "short",
                env,
                &format!("SELECT doc_date, cust_code, sku {window}")
            ),
        ));
        let out = check_fails(&lab, &[(env, url)]);
        let refused: Vec<&str> = out.lines().filter(|l| l.contains(": sql:")).collect();
        assert_eq!(
            refused,
            [format!(
                "source `short`: sql:{env} column `net`: missing column"
            )],
            "{out}"
        );
    })
    .await;
}

/// An ERP query that runs over a second (sqlx's "slow statement" mark) is
/// a nightly pull doing its work: the run logs no WARN for it, which would
/// come every night and teach operators to ignore WARN.
#[tokio::test]
async fn a_long_erp_query_is_not_a_warning() {
    use crate::ingest::sql_sales_source;
    crate::warehouse::PgDatabase::run(async |url| {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        for sql in [
            "CREATE TABLE sales_lines (doc_date date, cust_code text, sku text, net numeric)",
            "INSERT INTO sales_lines VALUES ('2026-11-02', 'C1', 'P1', 12.50)",
        ] {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        pool.close().await;
        let lab = crate::ingest::Lab::new();
        let env = "SB_TEST_SLOW_PG_ERP_URL";
        lab.settings(&sql_sales_source(
            "erp",
            env,
            "SELECT doc_date, cust_code, sku, net FROM sales_lines CROSS JOIN pg_sleep(1.2) \
             WHERE doc_date >= :since",
        ));
        let run = bin()
            .arg("--config")
            .arg(lab.path("salesbatch.toml"))
            .args(["run", "load", "--as-of", "2026-11-20"])
            .env(env, url)
            .output()
            .unwrap();
        let out = text(&run);
        assert_eq!(run.status.code(), Some(0), "{out}");
        // the masters and the ERP line: 2 reps + 4 customers + 1 line
        assert!(
            out.contains("3 files loaded, 0 skipped, 0 refused, 7 rows, 0 rejections"),
            "{out}"
        );
        assert!(!out.contains("WARN"), "{out}");
    })
    .await;
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
            // a product per file: identical files would be refused as copies
            writeln!(out, "2026-10-{:02},C1,P{f}-{},1.00", 1 + r % 28, r % 5).unwrap();
        }
    }
    lab.settings(&crate::ingest::csv_sales_source_at(
        "sales",
        "in/sales/*.csv",
        "",
        crate::ingest::ENGLISH_COLUMNS,
    ));
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

/// SPEC §5 tiering for one demo customer, worked step by step from the
/// warehouse rows with plain SQL and arithmetic, independently of `metrics`.
/// As-of 2026-11-20 → W = 2025-11-01 … 2026-10-31, H1 = its first 6 months.
fn hand_check(db: &std::path::Path, customer: &str) -> (String, &'static str) {
    use sqlx::Row;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        // per scored customer: window total, H1, H2, months with net > 0
        let rows = sqlx::query(
            "WITH m AS (SELECT customer_id, substr(invoice_date, 1, 7) AS month, SUM(amount) AS net \
               FROM sales WHERE invoice_date BETWEEN '2025-11-01' AND '2026-10-31' \
               GROUP BY customer_id, month) \
             SELECT c.customer_id, c.prospect_score, c.coverage_score, \
               COALESCE(SUM(m.net), 0.0), COALESCE(SUM(CASE WHEN m.month < '2026-05' THEN m.net END), 0.0), \
               COALESCE(SUM(CASE WHEN m.month >= '2026-05' THEN m.net END), 0.0), \
               COUNT(CASE WHEN m.net > 0 THEN 1 END), COUNT(m.month) \
             FROM customers c LEFT JOIN m ON m.customer_id = c.customer_id \
             WHERE lower(trim(COALESCE(c.status, ''))) NOT IN ('inactive', '停用', '无效', '注销') \
             GROUP BY c.customer_id",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        // products with net > 0 per customer, and across all customers
        let products = |sql: &'static str| {
            let pool = pool.clone();
            async move {
                sqlx::query(sql)
                    .fetch_all(&pool)
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
                    .collect::<std::collections::HashMap<_, _>>()
            }
        };
        let per_customer = products(
            "SELECT customer_id, COUNT(*) FROM (SELECT customer_id, product_id FROM sales \
             WHERE invoice_date BETWEEN '2025-11-01' AND '2026-10-31' \
             GROUP BY customer_id, product_id HAVING SUM(amount) > 0) GROUP BY customer_id",
        )
        .await;
        let all_products = products(
            "SELECT 'all', COUNT(*) FROM (SELECT product_id FROM sales \
             WHERE invoice_date BETWEEN '2025-11-01' AND '2026-10-31' \
             GROUP BY product_id HAVING SUM(amount) > 0)",
        )
        .await["all"] as f64;
        pool.close().await;

        struct C {
            id: String,
            avg: f64,
            breadth: f64,
            coverage_master: Option<f64>,
            prospect: Option<f64>,
            h1: f64,
            h2: f64,
            loyalty: f64,
            has_lines: bool,
        }
        let cs: Vec<C> = rows
            .iter()
            .map(|r| {
                let id: String = r.get(0);
                C {
                    breadth: per_customer.get(&id).copied().unwrap_or(0) as f64 / all_products,
                    id,
                    prospect: r.get(1),
                    coverage_master: r.get(2),
                    avg: r.get::<f64, _>(3) / 12.0,
                    h1: r.get(4),
                    h2: r.get(5),
                    loyalty: r.get::<i64, _>(6) as f64 / 12.0,
                    has_lines: r.get::<i64, _>(7) > 0,
                }
            })
            .collect();
        let me = cs.iter().find(|c| c.id == customer).unwrap();
        // share = (n − average ascending rank + 1) ÷ n among positive values
        let share = |value: f64, all: Vec<f64>| {
            let n = all.len() as f64;
            let below = all.iter().filter(|v| **v < value).count() as f64;
            let ties = all.iter().filter(|v| **v == value).count() as f64;
            let rank = below + (ties + 1.0) / 2.0;
            (n - rank + 1.0) / n
        };
        let rank_points = |share: f64| match share {
            s if s <= 0.10 => 100.0,
            s if s <= 0.30 => 85.0,
            s if s <= 0.60 => 70.0,
            _ => 50.0,
        };
        let sales_score = if me.avg > 0.0 {
            rank_points(share(me.avg, cs.iter().map(|c| c.avg).filter(|v| *v > 0.0).collect()))
        } else {
            0.0
        };
        let growth = if me.h1 > 0.0 {
            (me.h2 - me.h1) / me.h1
        } else if me.h2 > 0.0 {
            1.0
        } else {
            0.0
        };
        let growth_score = match growth {
            _ if !me.has_lines => 0.0,
            g if g >= 0.20 => 100.0,
            g if g >= 0.05 => 85.0,
            g if g >= -0.05 => 70.0,
            g if g >= -0.20 => 50.0,
            _ => 20.0,
        };
        let coverage_score = match me.coverage_master {
            Some(v) => v.clamp(0.0, 100.0),
            None if me.breadth > 0.0 => rank_points(share(
                me.breadth,
                cs.iter().map(|c| c.breadth).filter(|v| *v > 0.0).collect(),
            )),
            None => 0.0,
        };
        let prospect_score = me.prospect.unwrap_or(0.0).clamp(0.0, 100.0);
        let score = 0.5 * sales_score
            + 0.2 * growth_score
            + 0.1 * coverage_score
            + 0.1 * 100.0 * me.loyalty
            + 0.1 * prospect_score;
        let rounded = (score * 100.0).round() / 100.0;
        let tier = match rounded {
            s if s >= 90.0 => "A",
            s if s >= 75.0 => "B",
            s if s >= 60.0 => "C",
            s if s >= 50.0 => "D",
            _ => "E",
        };
        (format!("{rounded:.2}"), tier)
    })
}

/// A warehouse that refuses the connection is named once, with the
/// database's own reason once (sqlx's chain used to print it three times),
/// and the password never appears.
#[test]
fn a_refused_warehouse_connection_is_reported_once() {
    if std::net::TcpStream::connect("127.0.0.1:5432").is_err() {
        crate::ingest::require("PostgreSQL on 127.0.0.1:5432", false);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("salesbatch.toml");
    std::fs::write(&config, "[warehouse]\nurl_env = \"SB_TEST_WAREHOUSE\"\n").unwrap();
    let url = "postgres://sb_no_such_role:hunter2@127.0.0.1:5432/postgres";
    let expected = "warehouse `postgres://sb_no_such_role:***@127.0.0.1:5432/postgres`: \
                    error returned from database: role \"sb_no_such_role\" does not exist";
    for (command, code) in [("check", 1), ("history", 1)] {
        let out = bin()
            .arg("--config")
            .arg(&config)
            .arg(command)
            .env("SB_TEST_WAREHOUSE", url)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(code), "{text}");
        let line = text
            .lines()
            .find(|l| l.contains("sb_no_such_role"))
            .unwrap_or_else(|| panic!("{text}"));
        let prefix = if command == "check" {
            "warehouse: "
        } else {
            "error: "
        };
        assert!(line.starts_with(&format!("{prefix}{expected}")), "{line}");
        assert_eq!(text.matches("does not exist").count(), 1, "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }
}

/// `salesbatch` as a process that permissions apply to: for root (as in CI)
/// without the capabilities that let it read any file, through util-linux's
/// `setpriv`.
fn bin_without_override() -> Command {
    let uid = Command::new("id").arg("-u").output().unwrap();
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return bin();
    }
    let mut cmd = Command::new("setpriv");
    cmd.args(["--bounding-set", "-dac_override,-dac_read_search", "--"])
        .arg(env!("CARGO_BIN_EXE_salesbatch"));
    cmd
}

/// A lab whose CSV sales source `flow` reads `path` under English headers
/// (date, customer, product, amount).
fn flow_lab(path: &str) -> crate::ingest::Lab {
    let lab = crate::ingest::Lab::new();
    lab.settings(&crate::ingest::csv_sales_source_at(
        "flow",
        path,
        "",
        crate::ingest::ENGLISH_COLUMNS,
    ));
    lab
}

/// A run's output, asserted degraded (exit 3), and its `rejected:` lines.
/// `salesbatch run load --as-of 2026-11-20` on the lab's config, by `cmd`
/// (`bin()`, or `bin_without_override()` where permissions matter).
fn run_load(lab: &crate::ingest::Lab, mut cmd: Command) -> std::process::Output {
    cmd.arg("--config")
        .arg(lab.path("salesbatch.toml"))
        .args(["run", "load", "--as-of", "2026-11-20"])
        .output()
        .unwrap()
}

fn degraded(run: &std::process::Output) -> (String, Vec<String>) {
    let out = text(run);
    assert_eq!(run.status.code(), Some(3), "{out}");
    let rejected = out
        .lines()
        .filter(|l| l.starts_with("rejected: "))
        .map(str::to_string)
        .collect();
    (out, rejected)
}

/// Under `**` a directory is searched for files and for subdirectories: one
/// that cannot be listed is still refused once, and the rest loads.
#[test]
fn a_directory_under_two_stars_that_cannot_be_listed_is_refused_once() {
    use std::os::unix::fs::PermissionsExt;
    let lab = flow_lab("in/d/**/*.csv");
    let csv = "date,customer,product,amount\n2026-11-02,C1,P1,100\n";
    lab.write("in/d/east/a.csv", csv.as_bytes());
    lab.write("in/d/north/c.csv", csv.as_bytes());
    let north = lab.path("in/d/north");
    std::fs::set_permissions(&north, std::fs::Permissions::from_mode(0o000)).unwrap();
    let run = run_load(&lab, bin_without_override());
    std::fs::set_permissions(&north, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (out, rejected) = degraded(&run);
    assert_eq!(
        rejected,
        ["rejected: `flow`: in/d/north: cannot open file \
          (cannot read directory: Permission denied (os error 13))"],
        "{out}"
    );
    assert!(
        out.contains(": 3 files loaded, 0 skipped, 1 refused,"),
        "{out}"
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert_eq!(
        rt.block_on(lab.sales("flow")),
        [(
            "2026-11-02".to_string(),
            "C1".to_string(),
            "P1".to_string(),
            100.0
        )]
    );
}

/// A file the job may not read (one its writer still holds owner-only), a
/// directory it may not list (a rep's share with the wrong owner), a file in a
/// directory it may list but not enter (mode r--) and a link to a share that
/// is not mounted are each refused by name, and the run ends degraded: the
/// other files load, and the rows the unreadable files loaded before stay.
#[test]
fn unreadable_files_and_directories_are_refused_by_name() {
    use std::os::unix::fs::PermissionsExt;
    let lab = flow_lab("in/flow/*/*.csv");
    let header = "date,customer,product,amount\n";
    for (file, line) in [
        ("east/a.csv", "2026-11-02,C1,P1,100"),
        ("east/b.csv", "2026-11-03,C3,P1,40"),
        ("north/c.csv", "2026-11-04,C2,P1,7"),
        ("west/d.csv", "2026-11-05,C2,P1,9"),
    ] {
        lab.write(
            &format!("in/flow/{file}"),
            format!("{header}{line}\n").as_bytes(),
        );
    }
    let first = run_load(&lab, bin());
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));

    lab.write(
        "in/flow/east/a.csv",
        format!("{header}2026-11-02,C1,P1,150\n").as_bytes(),
    );
    std::os::unix::fs::symlink("/mnt/unmounted/e.csv", lab.path("in/flow/east/e.csv")).unwrap();
    let locked = [
        ("in/flow/east/b.csv", 0o000),
        ("in/flow/north", 0o000),
        ("in/flow/west", 0o444),
    ];
    for (path, mode) in locked {
        std::fs::set_permissions(lab.path(path), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let second = run_load(&lab, bin_without_override());
    let check = bin_without_override()
        .arg("--config")
        .arg(lab.path("salesbatch.toml"))
        .arg("check")
        .output()
        .unwrap();
    for (path, mode) in [
        ("in/flow/east/b.csv", 0o644),
        ("in/flow/north", 0o755),
        ("in/flow/west", 0o755),
    ] {
        std::fs::set_permissions(lab.path(path), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let (out, rejected) = degraded(&second);
    assert_eq!(
        rejected,
        [
            "rejected: `flow`: in/flow/east/e.csv: cannot open file \
             (No such file or directory (os error 2))",
            "rejected: `flow`: in/flow/north: cannot open file \
             (cannot read directory: Permission denied (os error 13))",
            "rejected: `flow`: in/flow/west/d.csv: cannot open file \
             (Permission denied (os error 13))",
            "rejected: `flow`: in/flow/east/b.csv: cannot open file \
             (Permission denied (os error 13))",
        ],
        "{out}"
    );
    assert!(
        out.contains(": 1 file loaded, 2 skipped, 4 refused, 1 row, 4 rejections,"),
        "{out}"
    );
    assert_eq!(check.status.code(), Some(1), "{}", text(&check));
    assert!(
        String::from_utf8_lossy(&check.stdout).contains(
            "source `flow`: cannot read file `in/flow/east/e.csv`: \
             No such file or directory (os error 2)\n\
             source `flow`: cannot read directory `in/flow/north`: Permission denied (os error 13)\n\
             source `flow`: cannot read file `in/flow/west/d.csv`: Permission denied (os error 13)\n"
        ),
        "{}",
        text(&check)
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sales = rt.block_on(lab.sales("flow"));
    let amounts: Vec<(&str, f64)> = sales.iter().map(|r| (r.1.as_str(), r.3)).collect();
    assert_eq!(
        amounts,
        [("C1", 150.0), ("C3", 40.0), ("C2", 7.0), ("C2", 9.0)]
    );
}

/// A file source whose path matches nothing (a moved inbox, an unmounted
/// share) is named in the log: its rows stay as last loaded, and nothing in
/// the reports would show it.
#[test]
fn a_source_matching_no_file_is_named() {
    let lab = crate::ingest::Lab::new();
    lab.settings(&flow_excel_source("flow", "in/flow/*.xlsx", ""));
    let out = run_load(&lab, bin());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let log = String::from_utf8_lossy(&out.stderr);
    let warning = log
        .lines()
        .find(|l| l.contains("no file matches the source's path"))
        .unwrap_or_else(|| panic!("{log}"));
    // plain text: stderr is not a terminal here, as under cron or systemd
    assert!(
        warning.contains(" WARN job{job=load run_id=1 as_of=2026-11-20}: salesbatch::ingest: ")
            && warning.ends_with(" source=flow path=in/flow/*.xlsx"),
        "{warning}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a redirected log: {log}"
    );
}

/// `--log-format json` (or `SALESBATCH_LOG_FORMAT=json`) writes each log
/// line as one JSON object, the event's fields at the top level as their
/// own types and the run's span beside them, for a log shipper; stdout,
/// read by people and scripts, keeps its lines. An unknown format is a
/// usage error.
#[test]
fn logs_are_json_lines_when_asked() {
    let lab = crate::ingest::Lab::new();
    let job =
        "\n[[jobs]]\nname = \"score\"\ncron = \"0 0 2 * * *\"\nsteps = [\"ingest\", \"compute\"]\n";
    // a CSV whose one data row has an impossible date: refused, and named
    lab.write(
        "in/bad.csv",
        b"date,customer,product,amount\n2026-02-30,C1,P1,10\n",
    );
    let bad =
        crate::ingest::csv_sales_source_at("bad", "in/bad.csv", "", crate::ingest::ENGLISH_COLUMNS);
    lab.settings(&(flow_excel_source("flow", "in/flow/*.xlsx", "") + &bad + job));
    let score = |log_format: &[&str], env: &[(&str, &str)]| {
        bin()
            .arg("--config")
            .arg(lab.path("salesbatch.toml"))
            .args(log_format)
            .args(["run", "score", "--as-of", "2026-11-20"])
            .envs(env.iter().copied())
            .output()
            .unwrap()
    };
    // text by default; this run also loads the masters
    let text_run = score(&[], &[]);
    assert!(
        String::from_utf8_lossy(&text_run.stderr)
            .contains(" WARN job{job=score run_id=1 as_of=2026-11-20}: salesbatch::ingest: "),
        "{}",
        text(&text_run)
    );
    let runs = [
        score(&["--log-format", "json"], &[]),
        score(&[], &[("SALESBATCH_LOG_FORMAT", "json")]),
    ];
    for (run, run_id) in runs.iter().zip([2, 3]) {
        assert_eq!(run.status.code(), Some(3), "{}", text(run));
        let log = String::from_utf8_lossy(&run.stderr);
        let lines: Vec<serde_json::Value> = log
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        let line = |message: &str| {
            lines
                .iter()
                .find(|l| {
                    l["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with(message))
                })
                .unwrap_or_else(|| panic!("no `{message}` in {log}"))
        };
        let warning = line("no file matches the source's path");
        assert_eq!(warning["level"], "WARN");
        assert_eq!(warning["target"], "salesbatch::ingest");
        assert_eq!(warning["source"], "flow");
        assert_eq!(warning["path"], "in/flow/*.xlsx");
        assert_eq!(
            warning["span"],
            serde_json::json!({"name": "job", "job": "score", "run_id": run_id, "as_of": "2026-11-20"})
        );
        // the lines for the person at the terminal are events too
        let rejected: Vec<&serde_json::Value> = lines
            .iter()
            .filter(|l| {
                l["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("rejected: `bad`: in/bad.csv"))
            })
            .collect();
        assert_eq!(rejected.len(), 2, "{log}");
        assert!(
            rejected
                .iter()
                .all(|l| l["level"] == "WARN" && l["target"] == "salesbatch::cli"),
            "{log}"
        );
        let said = |what: &str| {
            rejected
                .iter()
                .any(|l| l["message"].as_str().unwrap().contains(what))
        };
        assert!(said("value `2026-02-30`: unparsable date"), "{log}");
        assert!(said("reject ratio exceeded"), "{log}");
        // counts are numbers, not text: the masters' two files are unchanged
        let ingest = line("ingest finished");
        assert_eq!(ingest["files_loaded"], 0, "{ingest}");
        assert_eq!(ingest["files_skipped"], 2, "{ingest}");
        // the lab's four customers, none with sales
        let inputs = line("metric inputs read");
        assert_eq!(inputs["customers"], 4, "{inputs}");
        assert_eq!(inputs["customers_with_sales"], 0, "{inputs}");
        assert!(inputs["elapsed_ms"].is_u64(), "{inputs}");
        assert_eq!(
            String::from_utf8_lossy(&run.stdout),
            format!(
                "run {run_id} `score` as of 2026-11-20: 0 files loaded, 2 skipped, 1 refused, \
                 0 rows, 2 rejections, 4 customers scored\n"
            )
        );
    }
    // a failing command's last word is an event as well
    let unknown = bin()
        .arg("--config")
        .arg(lab.path("salesbatch.toml"))
        .args(["--log-format", "json", "run", "nosuch"])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(1), "{}", text(&unknown));
    let error: serde_json::Value = serde_json::from_slice(&unknown.stderr).unwrap();
    assert_eq!(error["level"], "ERROR");
    assert_eq!(
        error["message"],
        "error: unknown job `nosuch`; the config defines `score`, `load`"
    );
    let wrong = score(&["--log-format", "xml"], &[]);
    assert_eq!(wrong.status.code(), Some(2), "{}", text(&wrong));
    assert!(
        text(&wrong).contains("invalid value 'xml' for '--log-format <LOG_FORMAT>'"),
        "{}",
        text(&wrong)
    );
    // a command line clap refuses is one ERROR event too, exit 2: asked
    // for by the environment, or by a flag after the unknown argument
    for (args, env) in [
        (
            &["run", "score", "--bogus", "--log-format", "json"][..],
            None,
        ),
        (&["run", "score", "--bogus"][..], Some("json")),
    ] {
        let mut cmd = bin();
        cmd.args(args);
        if let Some(format) = env {
            cmd.env("SALESBATCH_LOG_FORMAT", format);
        }
        let refused = cmd.output().unwrap();
        assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
        let error: serde_json::Value = serde_json::from_slice(&refused.stderr)
            .unwrap_or_else(|e| panic!("{e}: {}", text(&refused)));
        assert_eq!(error["level"], "ERROR", "{error}");
        let message = error["message"].as_str().unwrap();
        assert!(
            message.starts_with("error: unexpected argument '--bogus' found\n"),
            "{message}"
        );
        assert!(message.contains("Usage: salesbatch run"), "{message}");
    }
    // help is not an error: the usual text on stdout
    let help = bin()
        .args(["--log-format", "json", "--help"])
        .output()
        .unwrap();
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).starts_with("Nightly sales ETL"));
}

/// The headers `flow_excel_source` maps, in file order.
const FLOW_HEADER: [&str; 4] = ["日期", "客户编码", "产品编码", "金额"];

/// A `sales` excel source `name` reading `path` under `FLOW_HEADER`, with
/// `extra` lines (`header_row = 2\n`) before its columns.
fn flow_excel_source(name: &str, path: &str, extra: &str) -> String {
    format!(
        "[[sources]]\nname = \"{name}\"\ndataset = \"sales\"\nkind = \"excel\"\n\
         path = \"{path}\"\n{extra}columns = {{ invoice_date = \"日期\", customer_id = \
         \"客户编码\", product_id = \"产品编码\", amount = \"金额\" }}\n"
    )
}

/// A sheet for `sheets_workbook`: its name, whether it is hidden, and its
/// rows as (0-based row, texts from column A on).
type SheetRows<'a> = (&'a str, bool, &'a [(u32, &'a [&'a str])]);

/// Writes the xlsx `rel` of the lab holding `sheets` in tab order, every
/// value as text; returns its path.
fn sheets_workbook(lab: &crate::ingest::Lab, rel: &str, sheets: &[SheetRows]) -> PathBuf {
    let path = lab.path(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut wb = rust_xlsxwriter::Workbook::new();
    for (name, hidden, rows) in sheets {
        let ws = wb.add_worksheet().set_name(*name).unwrap();
        for (row, texts) in *rows {
            ws.write_row(*row, 0, texts.iter().copied()).unwrap();
        }
        ws.set_hidden(*hidden);
    }
    wb.save(&path).unwrap();
    path
}

/// `sheets_workbook` as an Excel 2003 XML spreadsheet, its texts as
/// strings.
fn sheets_xml2003(lab: &crate::ingest::Lab, rel: &str, sheets: &[SheetRows]) {
    let mut xml = String::from(
        r#"<?xml version="1.0"?><Workbook xmlns="urn:schemas-microsoft-com:office:spreadsheet" xmlns:ss="urn:schemas-microsoft-com:office:spreadsheet" xmlns:x="urn:schemas-microsoft-com:office:excel">"#,
    );
    for (name, hidden, rows) in sheets {
        xml += &format!(r#"<Worksheet ss:Name="{name}"><Table>"#);
        for (row, texts) in *rows {
            xml += &format!(r#"<Row ss:Index="{}">"#, row + 1);
            for text in *texts {
                xml += &format!(r#"<Cell><Data ss:Type="String">{text}</Data></Cell>"#);
            }
            xml += "</Row>";
        }
        xml += "</Table>";
        if *hidden {
            xml += "<x:WorksheetOptions><x:Visible>SheetHidden</x:Visible></x:WorksheetOptions>";
        }
        xml += "</Worksheet>";
    }
    xml += "</Workbook>";
    lab.write(rel, xml.as_bytes());
}

/// `sheets_workbook` as the HTML page LibreOffice's export makes of it:
/// each sheet a table headed with its name (a hidden sheet left out).
fn sheets_html(lab: &crate::ingest::Lab, rel: &str, sheets: &[SheetRows]) {
    let mut html = String::from("<!DOCTYPE html><html><body>");
    for (i, (name, hidden, rows)) in sheets.iter().enumerate() {
        if *hidden {
            continue;
        }
        html += &format!(
            "<a name=\"table{i}\"><h1>Sheet {}: <em>{name}</em></h1></a><table>",
            i + 1
        );
        let last = rows.iter().map(|(row, _)| *row).max().unwrap_or(0);
        for row in 0..=last {
            html += "<tr>";
            match rows.iter().find(|(r, _)| *r == row) {
                Some((_, texts)) => {
                    for text in *texts {
                        html += &format!("<td>{text}</td>");
                    }
                }
                None => html += "<td><br></td>",
            }
            html += "</tr>";
        }
        html += "</table>";
    }
    html += "</body></html>";
    lab.write(rel, html.as_bytes());
}

/// A workbook of one sheet a month: `1月` is read (SPEC §3: the first
/// sheet when `sheet` is unset), and the other visible sheets headed like
/// it are named, by `check` as a note (exit code 0) and by the run as a
/// WARN; a hidden copy and a sheet of notes are not. Read as xlsx, as
/// Excel 2003 XML (whose first pass reads every sheet's header row), as
/// an HTML page (whose other tables are read after the rows) and, where
/// LibreOffice is installed, saved as xls and ods.
#[test]
fn sheets_headed_like_the_one_read_are_named() {
    let lab = crate::ingest::Lab::new();
    let row = |amount| ["2026-10-01", "C1", "P1", amount];
    let sheets: &[SheetRows] = &[
        ("1月", false, &[(0, &FLOW_HEADER), (1, &row("5"))]),
        ("说明", false, &[(0, &["本表为流向，金额单位：元"])]),
        ("备份", true, &[(0, &FLOW_HEADER)]),
        ("2月", false, &[(0, &FLOW_HEADER), (1, &row("7"))]),
        ("3月", false, &[(2, &FLOW_HEADER), (3, &row("9"))]),
    ];
    let xlsx = sheets_workbook(&lab, "in/xlsx/flow.xlsx", sheets);
    sheets_xml2003(&lab, "in/xml/flow.xml", sheets);
    sheets_html(&lab, "in/html/flow.html", sheets);
    let mut formats = vec!["xlsx", "xml", "html"];
    if let Some(soffice) = crate::ingest::soffice() {
        for ext in ["xls", "ods"] {
            let dir = lab.path(&format!("in/{ext}"));
            std::fs::create_dir_all(&dir).unwrap();
            crate::ingest::convert(&soffice, &xlsx, ext, &dir);
            formats.push(ext);
        }
    } else {
        crate::ingest::require("LibreOffice (soffice)", false);
    }
    let sources: String = formats
        .iter()
        .map(|ext| flow_excel_source(ext, &format!("in/{ext}/*.{ext}"), ""))
        .collect();
    lab.settings(&sources);
    let message = "sheets `2月` and `3月` are headed like `1月` but not read: a source without \
                   `sheet` reads the first sheet only; add a source with `sheet = \"…\"` for each \
                   of them whose rows belong in the warehouse";
    let (code, out) = check_lab(&lab, &[]);
    assert_eq!(code, Some(0), "{out}");
    let notes: Vec<&str> = out.lines().filter(|l| l.contains("note:")).collect();
    let expected: Vec<String> = formats
        .iter()
        .map(|ext| format!("source `{ext}`: file `in/{ext}/flow.{ext}`: note: {message}"))
        .collect();
    assert_eq!(notes, expected, "{out}");

    let out = run_load(&lab, bin());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let log = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains(" WARN ")).collect();
    assert_eq!(warnings.len(), formats.len(), "{log}");
    for (warning, ext) in warnings.iter().zip(&formats) {
        assert!(
            warning.contains(&format!(
                " WARN job{{job=load run_id=1 as_of=2026-11-20}}: salesbatch::ingest: {message} \
                 source={ext} file=\"in/{ext}/flow.{ext}\""
            )),
            "{warning}"
        );
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    for ext in &formats {
        let sales = rt.block_on(lab.sales(ext));
        let amounts: Vec<f64> = sales.iter().map(|r| r.3).collect();
        assert_eq!(amounts, [5.0], "{ext}");
    }
}

/// With `header_row` set, the other sheets' header is read from that row
/// too (a sheet headed on its first row is then not alike), and a single
/// alike sheet is named with the `sheet` line to add, quoted for TOML.
#[test]
fn a_sheet_headed_like_the_one_read_is_named_with_the_line_to_add() {
    let lab = crate::ingest::Lab::new();
    let row = ["2026-10-01", "C1", "P1", "5"];
    let titled: &[(u32, &[&str])] = &[(0, &["十月流向"]), (1, &FLOW_HEADER), (2, &row)];
    sheets_workbook(
        &lab,
        "in/t/flow.xlsx",
        &[
            ("流向", false, titled),
            ("流向 \"旧\"", false, titled),
            ("草稿", false, &[(0, &FLOW_HEADER), (1, &row)]),
        ],
    );
    let source = flow_excel_source("t", "in/t/*.xlsx", "header_row = 2\n");
    lab.settings(&source);
    let (code, out) = check_lab(&lab, &[]);
    assert_eq!(code, Some(0), "{out}");
    let notes: Vec<&str> = out.lines().filter(|l| l.contains("note:")).collect();
    assert_eq!(
        notes,
        [
            "source `t`: file `in/t/flow.xlsx`: note: sheet `流向 \"旧\"` is headed like `流向` \
             but not read: a source without `sheet` reads the first sheet only; add a source \
             with `sheet = \"流向 \\\"旧\\\"\"` if its rows belong in the warehouse"
        ],
        "{out}"
    );
    // naming the first sheet says that is the one wanted: no note
    lab.settings(&source.replace("header_row = 2\n", "header_row = 2\nsheet = \"流向\"\n"));
    let (code, out) = check_lab(&lab, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("note:"), "{out}");
}

/// A flow sheet whose optional rep column (`代表`) was typed once per
/// block and merged down: E2:E4 holds R1 in E2 only, E6:E7 holds R2 in E6
/// only, and row 7 is rejected for its date. Row 5 leaves its quantity
/// empty without any merge. With `merged`, the same rows typed in full.
pub fn merged_rep_workbook(path: &std::path::Path, merged: bool) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut wb = rust_xlsxwriter::Workbook::new();
    let ws = wb.add_worksheet().set_name("流向").unwrap();
    let header = ["日期", "客户编码", "产品编码", "金额", "代表", "数量"];
    ws.write_row(0, 0, header).unwrap();
    let rows = [
        ("2026-10-01", "5", "R1", "1"),
        ("2026-10-01", "6", "R1", "1"),
        ("2026-10-01", "7", "R1", "1"),
        ("2026-10-02", "8", "R2", ""),
        ("2026-10-03", "9", "R2", "1"),
        ("十月三日", "10", "R2", "1"),
    ];
    for (i, (date, amount, rep, quantity)) in rows.iter().enumerate() {
        let r = i as u32 + 1;
        ws.write_row(r, 0, [*date, "C1", "P1", *amount]).unwrap();
        if !merged {
            ws.write(r, 4, *rep).unwrap();
        }
        if !quantity.is_empty() {
            ws.write(r, 5, *quantity).unwrap();
        }
    }
    if merged {
        let plain = rust_xlsxwriter::Format::new();
        ws.merge_range(1, 4, 3, 4, "R1", &plain).unwrap();
        ws.write(4, 4, "R2").unwrap();
        ws.merge_range(5, 4, 6, 4, "R2", &plain).unwrap();
    }
    wb.save(path).unwrap();
}

/// A `sales` excel source `name` reading `path`, laid out as
/// `merged_rep_workbook` writes, its rep and quantity mapped.
pub fn merged_rep_source(name: &str, path: &str) -> String {
    format!(
        "[[sources]]\nname = \"{name}\"\ndataset = \"sales\"\nkind = \"excel\"\n\
         path = \"{path}\"\ncolumns = {{ invoice_date = \"日期\", customer_id = \"客户编码\", \
         product_id = \"产品编码\", amount = \"金额\", rep_id = \"代表\", quantity = \"数量\" }}\n"
    )
}

/// What a run says of the merged `merged_rep_workbook`: row 7, in the
/// second block, is rejected, so only the first block's rows count.
pub const MERGED_REP_NOTE: &str = "2 rows load with no `rep_id`: column `代表` is merged in \
     E2:E4; only the first cell of merged cells holds their value: unmerge them and fill the \
     value into every row";

/// An optional column merged down loads empty in every row of a block but
/// the first, as SPEC §4 loads any empty optional cell; the run says so
/// in one WARN per file, counting the rows that loaded without the value
/// (a rejected row does not count) and naming the blocks. A sheet with
/// the same empty quantity and no merges gets no WARN. Read as xlsx and,
/// where LibreOffice is installed, saved by it as xls and as xlsx.
#[test]
fn merged_cells_in_an_optional_column_are_named_when_the_file_loads() {
    let lab = crate::ingest::Lab::new();
    let xlsx = lab.path("in/xlsx/flow.xlsx");
    merged_rep_workbook(&xlsx, true);
    merged_rep_workbook(&lab.path("in/typed/flow.xlsx"), false);
    let mut formats = vec!["xlsx"];
    if let Some(soffice) = crate::ingest::soffice() {
        for (dir, ext) in [("xls", "xls"), ("lo", "xlsx")] {
            let dir = lab.path(&format!("in/{dir}"));
            std::fs::create_dir_all(&dir).unwrap();
            crate::ingest::convert(&soffice, &xlsx, ext, &dir);
        }
        formats.extend(["xls", "lo"]);
    } else {
        crate::ingest::require("LibreOffice (soffice)", false);
    }
    // the merges are read from the xlsx part itself, not by calamine's
    // second parse of every cell, whichever program wrote the file
    for dir in formats.iter().filter(|f| **f != "xls") {
        let path = lab.path(&format!("in/{dir}/flow.xlsx"));
        assert_eq!(
            salesbatch::ingest::merges::xlsx_merges(&path, "流向"),
            Some(vec![((1, 4), (3, 4)), ((5, 4), (6, 4))]),
            "{dir}"
        );
    }
    let ext = |name: &str| if name == "xls" { "xls" } else { "xlsx" };
    let mut config = String::from("[ingest]\nmax_reject_ratio = 0.5\n");
    for name in formats.iter().chain(&["typed"]) {
        let path = format!("in/{name}/*.{}", ext(name));
        config.push_str(&merged_rep_source(name, &path));
    }
    lab.settings(&config);

    let (out, rejected) = degraded(&run_load(&lab, bin()));
    assert_eq!(rejected.len(), formats.len() + 1, "{out}");
    let warnings: Vec<&str> = out.lines().filter(|l| l.contains(" WARN ")).collect();
    assert_eq!(warnings.len(), formats.len(), "{out}");
    for (warning, name) in warnings.iter().zip(&formats) {
        assert!(
            warning.contains(&format!(
                " WARN job{{job=load run_id=1 as_of=2026-11-20}}: salesbatch::ingest: \
                 {MERGED_REP_NOTE} source={name} file=\"in/{name}/flow.{}\" sheet=流向",
                ext(name)
            )),
            "{warning}"
        );
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    for name in formats.iter().chain(&["typed"]) {
        let amounts: Vec<f64> = rt.block_on(lab.sales(name)).iter().map(|r| r.3).collect();
        assert_eq!(amounts, [5.0, 6.0, 7.0, 8.0, 9.0], "{name}");
    }
}

/// A workbook whose first sheet is a cover (`说明`) and whose data sheet
/// comes after it: a source without `sheet` reads the cover and refuses
/// the file for its missing columns, and the refusal names the sheet that
/// heads them all, in `check` and in the run; with two such sheets, both;
/// in an HTML page too, whose other tables are read after the cover.
#[test]
fn a_refusal_for_missing_columns_names_the_sheet_that_has_them() {
    let lab = crate::ingest::Lab::new();
    let cover = ("说明", false, &[(0, &["十月流向，金额单位：元"][..])][..]);
    let data: &[(u32, &[&str])] = &[(0, &FLOW_HEADER), (1, &["2026-10-01", "C1", "P1", "5"])];
    sheets_workbook(&lab, "in/c/a.xlsx", &[cover, ("流向", false, data)]);
    sheets_workbook(
        &lab,
        "in/c/b.xlsx",
        &[cover, ("1月", false, data), ("2月", false, data)],
    );
    sheets_html(&lab, "in/c/c.xlsx", &[cover, ("流向", false, data)]);
    lab.settings(&flow_excel_source("c", "in/c/*.xlsx", ""));
    let refused = |file: &str, hint: &str| {
        format!(
            "`c`: in/c/{file} [说明] column `日期, 客户编码, 产品编码, 金额`: missing column \
             ({hint})"
        )
    };
    let expected = [
        refused(
            "a.xlsx",
            "sheet `流向` heads every mapped column: set `sheet = \"流向\"` on the source",
        ),
        refused(
            "b.xlsx",
            "sheets `1月` and `2月` head every mapped column: set `sheet` on the source to the \
             one to read",
        ),
        refused(
            "c.xlsx",
            "sheet `流向` heads every mapped column: set `sheet = \"流向\"` on the source",
        ),
    ];
    let out = check_fails(&lab, &[]);
    let lines: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("source "))
        .filter(|l| l.contains("missing column") || l.contains("note:"))
        .collect();
    assert_eq!(lines, expected, "{out}");

    let (out, rejected) = degraded(&run_load(&lab, bin()));
    let rejected: Vec<&str> = rejected
        .iter()
        .filter_map(|l| l.strip_prefix("rejected: "))
        .collect();
    assert_eq!(rejected, expected, "{out}");
}

/// Ops who split the nightly job (ingest at 01:00, reports at 06:00) get
/// reports from a run that ingests nothing. Such a run shows the data
/// quality of the latest run that ingested, names that run in the rules,
/// and stays a success (it rejected nothing itself). Its notes on an
/// unchanged file are carried, as its rejected rows are, so a later ingest
/// that skips the file still reports them; `export rejections` finds them
/// for a date whose only run ingested and computed nothing.
#[test]
fn a_job_without_ingest_reports_the_data_quality_of_the_latest_ingest() {
    let lab = crate::ingest::Lab::new();
    merged_rep_workbook(&lab.path("in/m/flow.xlsx"), true);
    lab.settings(&format!(
        "[ingest]\nmax_reject_ratio = 0.5\n{}\n[[jobs]]\nname = \"report\"\n\
         cron = \"0 0 6 * * *\"\nsteps = [\"compute\", \"report\"]\n",
        merged_rep_source("m", "in/m/*.xlsx")
    ));
    let run = |job: &str| {
        bin()
            .arg("--config")
            .arg(lab.path("salesbatch.toml"))
            .args(["run", job, "--as-of", "2026-11-20"])
            .output()
            .unwrap()
    };
    let export = || {
        bin()
            .arg("--config")
            .arg(lab.path("salesbatch.toml"))
            .args(["export", "rejections", "--as-of", "2026-11-20"])
            .output()
            .unwrap()
    };
    let rejected = "m,in/m/flow.xlsx,流向,7,A7,日期,十月三日,unparsable date";
    let none = export();
    assert_eq!(none.status.code(), Some(1), "{}", text(&none));
    assert!(
        text(&none).contains(
            "no run for 2026-11-20 has data quality; run a job with `--as-of 2026-11-20` first"
        ),
        "{}",
        text(&none)
    );

    let (out, _) = degraded(&run("load"));
    let exported = export();
    assert_eq!(exported.status.code(), Some(0), "{}", text(&exported));
    let csv = String::from_utf8_lossy(&exported.stdout).to_string();
    assert_eq!(csv.lines().count(), 2, "{csv}\n{out}");
    assert!(csv.lines().nth(1).unwrap().starts_with(rejected), "{csv}");

    // the data-quality sheets of a report run: (rejected row, cell, value),
    // and the notes
    let quality = |dir: &str| {
        let path = lab.path(&format!("{dir}/2026-11-20/report/data-quality.xlsx"));
        let mut wb: calamine::Xlsx<_> = calamine::open_workbook(&path).unwrap();
        let mut rows = |name: &str| -> Vec<Vec<String>> {
            calamine::Reader::worksheet_range(&mut wb, name)
                .unwrap()
                .rows()
                .skip(1)
                .map(|r| r.iter().map(ToString::to_string).collect())
                .collect()
        };
        let rejections: Vec<(String, String, String)> = rows("数据质量")
            .into_iter()
            .map(|r| (r[3].clone(), r[4].clone(), r[6].clone()))
            .collect();
        let notes: Vec<String> = rows("文件提示").into_iter().map(|r| r[3].clone()).collect();
        (rejections, notes)
    };
    let expected = (
        vec![("7".to_string(), "A7".to_string(), "十月三日".to_string())],
        vec![MERGED_REP_NOTE.to_string()],
    );
    let history = || {
        let out = bin()
            .arg("--config")
            .arg(lab.path("salesbatch.toml"))
            .arg("history")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    // the run named, with its start as `history` shows it, in the
    // configured time zone (Asia/Shanghai by default)
    let from = |run_id: u32| {
        let history = history();
        let line = history
            .lines()
            .find(|l| l.split_whitespace().next() == Some(&run_id.to_string()))
            .unwrap_or_else(|| panic!("{history}"));
        let local = line.split_whitespace().nth(3).unwrap();
        assert!(local.ends_with("+08:00"), "{history}");
        let started = chrono::DateTime::parse_from_rfc3339(local)
            .unwrap()
            .naive_local();
        format!(
            "<tr><th>数据质量取自</th><td>运行 #{run_id}（作业 load，数据截至 2026-11-20，开始于 {}）</td></tr>",
            started.format("%Y-%m-%d %H:%M")
        )
    };
    let report = run("report");
    assert_eq!(report.status.code(), Some(0), "{}", text(&report));
    assert!(
        text(&report).contains(
            "run 2 `report` as of 2026-11-20: 0 files loaded, 0 skipped, 0 refused, 0 rows, \
             0 rejections, 4 customers scored\n\
             data quality: as ingested by run 1, 1 rejection (this run ingested nothing)\n"
        ),
        "{}",
        text(&report)
    );
    assert_eq!(quality("out"), expected);
    let page = std::fs::read_to_string(lab.path("out/2026-11-20/report/national.html")).unwrap();
    assert!(page.contains(&from(1)), "{page}");
    // every region's headline counts the borrowed rejection
    let east = std::fs::read_to_string(lab.path("out/2026-11-20/report/华东.html")).unwrap();
    assert!(east.contains(&from(1)), "{east}");
    assert!(
        east.contains("<div class=\"k\">拒收行数（全国）</div><div class=\"v\">1</div>"),
        "{east}"
    );

    // the file is unchanged: skipped, its rejected row and its note carried
    let (out, _) = degraded(&run("load"));
    assert!(out.contains("0 files loaded, 3 skipped"), "{out}");
    assert_eq!(run("report").status.code(), Some(0));
    assert_eq!(quality("out"), expected);
    let page = std::fs::read_to_string(lab.path("out/2026-11-20/report/national.html")).unwrap();
    assert!(page.contains(&from(3)), "{page}");
    // `history` tells whose data quality each run has: an ingest its own,
    // a report run the ingest's before it
    let history = history();
    let linked: Vec<(&str, &str, &str)> = history
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0], f[1], f[6])
        })
        .collect();
    assert_eq!(
        linked,
        [
            ("4", "report", "#3"),
            ("3", "load", "#3"),
            ("2", "report", "#1"),
            ("1", "load", "#1")
        ],
        "{history}"
    );
    let csv = String::from_utf8_lossy(&export().stdout).to_string();
    assert!(csv.lines().nth(1).unwrap().starts_with(rejected), "{csv}");
    // a dry run records nothing, so it takes the latest ingest of all
    let dry = bin()
        .arg("--config")
        .arg(lab.path("salesbatch.toml"))
        .args(["run", "report", "--as-of", "2026-11-20", "--dry-run"])
        .output()
        .unwrap();
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));
    assert_eq!(quality("out/dry-run"), expected);
}
