//! End to end on `tests/fixtures/mini`, whose every number is worked out by
//! hand in its `EXPECTED.md`: the exports must equal `expected/*.csv` byte
//! for byte, and the workbooks must show the same numbers.

use std::path::{Path, PathBuf};

use calamine::Data;

use crate::cli::{bin, section, text};
use crate::report::sheet;
use crate::warehouse::EXPORTS;

const AS_OF: &str = "2026-11-20";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mini")
}

/// The fixture's config and inbox in a folder of their own, as the run
/// writes its warehouse and reports beside the config.
pub fn copied() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture().join("salesbatch.toml"),
        dir.path().join("salesbatch.toml"),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("inbox")).unwrap();
    for entry in std::fs::read_dir(fixture().join("inbox")).unwrap() {
        let from = entry.unwrap().path();
        std::fs::copy(
            &from,
            dir.path().join("inbox").join(from.file_name().unwrap()),
        )
        .unwrap();
    }
    dir
}

fn salesbatch(dir: &Path, args: &[&str]) -> std::process::Output {
    bin()
        .arg("--config")
        .arg(dir.join("salesbatch.toml"))
        .args(args)
        .env_remove("SALESBATCH_CONFIG")
        .output()
        .unwrap()
}

/// Replaces `from`, which must be there, with `to` in the copied fixture's
/// `file`.
fn edit(dir: &Path, file: &str, from: &str, to: &str) {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "no `{from}` in {file}");
    std::fs::write(&path, text.replace(from, to)).unwrap();
}

/// The standard output of a command that must succeed.
fn succeeded(out: std::process::Output) -> Vec<u8> {
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    out.stdout
}

pub fn run_nightly(dir: &Path) -> String {
    let run = salesbatch(dir, &["run", "nightly", "--as-of", AS_OF]);
    let out = text(&run);
    // the one rejected row makes the run degraded
    assert_eq!(run.status.code(), Some(3), "{out}");
    out
}

fn assert_exports_as_expected(dir: &Path) {
    for export in EXPORTS {
        let got = salesbatch(dir, &["export", export, "--as-of", AS_OF]);
        assert_eq!(got.status.code(), Some(0), "{}", text(&got));
        let expected =
            std::fs::read_to_string(fixture().join("expected").join(format!("{export}.csv")))
                .unwrap();
        assert_eq!(
            String::from_utf8(got.stdout).unwrap(),
            expected,
            "`export {export}` differs from tests/fixtures/mini/expected/{export}.csv"
        );
    }
}

/// A number a report shows, or `None` for a blank cell.
type Shown = Option<f64>;

fn is_text(cell: &Data, text: &str) -> bool {
    matches!(cell, Data::String(s) if s == text)
}

/// The value beside `label`: the second cell of the first row whose first
/// cell is that text.
fn labelled(rows: &[Vec<Data>], label: &str) -> Data {
    rows.iter()
        .find(|r| r.first().is_some_and(|c| is_text(c, label)))
        .and_then(|r| r.get(1).cloned())
        .unwrap_or_else(|| panic!("no row `{label}` in {rows:?}"))
}

fn number(d: &Data) -> f64 {
    match d {
        Data::Float(f) => *f,
        Data::Int(i) => *i as f64,
        other => panic!("not a number: {other:?}"),
    }
}

fn assert_close(got: &Data, want: f64, what: &str) {
    let got = number(got);
    assert!((got - want).abs() < 1e-9, "{what}: {got} ≠ {want}");
}

/// The rows of a table of areas (regions, then the company) below the
/// header holding `marker`: each area's name (the `大区` column) and the
/// `width` numbers after it, a blank cell as NaN. The table ends at the
/// first row without a name.
fn area_rows(rows: &[Vec<Data>], marker: &str, width: usize) -> Vec<(String, Vec<f64>)> {
    let header = rows
        .iter()
        .position(|r| r.iter().any(|c| is_text(c, marker)))
        .unwrap_or_else(|| panic!("no header with `{marker}`"));
    let region_col = rows[header]
        .iter()
        .position(|c| is_text(c, "大区") || is_text(c, "Region"))
        .unwrap();
    rows[header + 1..]
        .iter()
        .take_while(|r| r.get(region_col).is_some_and(|c| *c != Data::Empty))
        .map(|r| {
            (
                r[region_col].to_string(),
                (region_col + 1..=region_col + width)
                    .map(|c| match r.get(c) {
                        None | Some(Data::Empty) => f64::NAN,
                        Some(d) => number(d),
                    })
                    .collect(),
            )
        })
        .collect()
}

/// The Summary's table of the reps with the highest KPI: its header's
/// 0-based row and, below it, (name, region, KPI) until the first blank
/// name.
fn top_reps(rows: &[Vec<Data>]) -> (usize, Vec<(String, String, f64)>) {
    let header = rows
        .iter()
        .position(|r| {
            r.len() >= 3
                && is_text(&r[0], "代表")
                && is_text(&r[1], "大区")
                && is_text(&r[2], "KPI")
        })
        .expect("a table of the reps with the highest KPI");
    let reps = rows[header + 1..]
        .iter()
        .take_while(|r| r.first().is_some_and(|c| *c != Data::Empty))
        .map(|r| (r[0].to_string(), r[1].to_string(), number(&r[2])))
        .collect();
    (header, reps)
}

/// The XML of the workbook's `n`th chart.
fn chart_xml(workbook: &Path, n: usize) -> String {
    zip_member(workbook, &format!("xl/charts/chart{n}.xml"))
}

/// The text of one file inside a workbook.
fn zip_member(workbook: &Path, name: &str) -> String {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(workbook).unwrap()).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut zip.by_name(name).unwrap(), &mut text).unwrap();
    text
}

/// Region and company rows of the Development sheet: (area, new customers,
/// target, achievement, conversion, retention, churn), below the header
/// holding `conversion`, that column's label in the report's language.
fn development_areas(rows: &[Vec<Data>], conversion: &str) -> Vec<(String, Vec<f64>)> {
    area_rows(rows, conversion, 6)
}

#[test]
fn the_mini_fixture_reports_the_numbers_computed_by_hand() {
    let dir = copied();
    let out = run_nightly(dir.path());
    assert!(
        out.contains(
            "rejected: `sales`: inbox/sales.csv row 21 cell B21 column `客户编码` value `C99`: \
             unknown customer id"
        ),
        "{out}"
    );
    assert!(out.contains("6 customers scored"), "{out}");
    assert_exports_as_expected(dir.path());

    let reports = dir.path().join("out").join(AS_OF).join("nightly");
    // headline: (label, national, 华东, 华北); None = blank
    let headline: [(&str, Shown, Shown, Shown); 6] = [
        ("参与分级客户数", Some(6.0), Some(4.0), Some(2.0)),
        ("销售额", Some(2200.0), Some(1400.0), Some(800.0)),
        ("拜访达成率", Some(4.0 / 6.0), Some(4.0 / 6.0), None),
        ("拜访覆盖率", Some(2.0 / 3.0), Some(2.0 / 3.0), None),
        ("拜访进度", Some(1.0), Some(1.0), None),
        ("拒收行数（全国）", Some(1.0), Some(1.0), Some(1.0)),
    ];
    let summaries: Vec<Vec<Vec<Data>>> = ["national", "华东", "华北"]
        .iter()
        .map(|scope| sheet(&reports.join(format!("{scope}.xlsx")), "概览"))
        .collect();
    for (label, national, east, north) in headline {
        for (rows, want, scope) in [
            (&summaries[0], national, "national"),
            (&summaries[1], east, "华东"),
            (&summaries[2], north, "华北"),
        ] {
            let got = labelled(rows, label);
            match want {
                Some(want) => assert_close(&got, want, &format!("{scope} {label}")),
                None => assert_eq!(got, Data::Empty, "{scope} {label}"),
            }
        }
    }
    for (tier, count) in [("A", 0.0), ("B", 1.0), ("C", 1.0), ("D", 1.0), ("E", 3.0)] {
        let row = summaries[0]
            .iter()
            .find(|r| r.first().is_some_and(|c| is_text(c, tier)))
            .unwrap();
        assert_close(&row[2], count, &format!("tier {tier} count"));
    }

    // the ranking's chart (EXPECTED.md "Rep scorecard"): the scope's reps
    // by KPI, best first, beside a native bar chart of the same cells
    let want_top = [
        ("王五", "华北", 75.0),
        ("张三", "华东", 32.25),
        ("李四", "华东", 29.5),
    ];
    for (rows, scope, want) in [
        (&summaries[0], "national", &want_top[..]),
        (&summaries[1], "华东", &want_top[1..]),
        (&summaries[2], "华北", &want_top[..1]),
    ] {
        let (header, got) = top_reps(rows);
        assert_eq!(got.len(), want.len(), "{scope}: {got:?}");
        for ((name, region, kpi), (want_name, want_region, want_kpi)) in got.iter().zip(want) {
            assert_eq!(
                (name.as_str(), region.as_str()),
                (*want_name, *want_region),
                "{scope}"
            );
            assert!(
                (kpi - want_kpi).abs() < 1e-9,
                "{scope} {name}: {kpi} ≠ {want_kpi}"
            );
        }
        let bar = chart_xml(&reports.join(format!("{scope}.xlsx")), 2);
        // 1-based rows of the names and KPIs below the header
        let (first, last) = (header + 2, header + 1 + want.len());
        assert!(bar.contains(r#"<c:barDir val="bar"/>"#), "{scope}: {bar}");
        // a one-cell range is written as that cell
        let range = |col: char| match want.len() {
            1 => format!("${col}${first}<"),
            _ => format!("${col}${first}:${col}${last}<"),
        };
        assert!(bar.contains(&range('A')), "{scope}: {bar}");
        assert!(bar.contains(&range('C')), "{scope}: {bar}");
        assert!(
            bar.contains(r#"<c:orientation val="maxMin"/>"#),
            "{scope}: best on top"
        );
        assert!(
            bar.contains(r#"<c:max val="100"/><c:min val="0"/>"#),
            "{scope}: out of 100: {bar}"
        );
    }

    // the region overview, wider than columns A to C, starts below the
    // charts beside them (0-based rows, as the drawing anchors count)
    let drawing = zip_member(&reports.join("national.xlsx"), "xl/drawings/drawing1.xml");
    let chart_bottom = drawing
        .split("<xdr:to>")
        .skip(1)
        .map(|to| {
            let row = to.split("<xdr:row>").nth(1).unwrap();
            row[..row.find('<').unwrap()].parse::<usize>().unwrap()
        })
        .max()
        .expect("the Summary's charts");
    let overview = summaries[0]
        .iter()
        .position(|r| r.first().is_some_and(|c| is_text(c, "大区概览")))
        .unwrap();
    assert!(
        overview > chart_bottom,
        "overview row {overview}, charts to row {chart_bottom}"
    );

    // the national summary's region overview: (area, customers, sales,
    // sales target, achievement, visit attainment, coverage, pace)
    let overview = area_rows(&summaries[0], "销售目标", 7);
    let blank = f64::NAN;
    let want_overview = [
        (
            "华东",
            [
                4.0,
                1400.0,
                13000.0,
                1400.0 / 13000.0,
                4.0 / 6.0,
                2.0 / 3.0,
                1.0,
            ],
        ),
        ("华北", [2.0, 800.0, 1600.0, 0.5, blank, blank, blank]),
        (
            "公司合计",
            [
                6.0,
                2200.0,
                14600.0,
                2200.0 / 14600.0,
                4.0 / 6.0,
                2.0 / 3.0,
                1.0,
            ],
        ),
    ];
    assert_eq!(overview.len(), want_overview.len(), "{overview:?}");
    for ((area, got), (want_area, want)) in overview.iter().zip(&want_overview) {
        assert_eq!(area, want_area);
        for (g, w) in got.iter().zip(want) {
            assert!(
                (g.is_nan() && w.is_nan()) || (g - w).abs() < 1e-9,
                "{area}: {got:?} ≠ {want:?}"
            );
        }
    }
    // a region's report has no overview: its headline is its own row
    for (rows, scope) in summaries[1..].iter().zip(["华东", "华北"]) {
        assert!(
            !rows.iter().flatten().any(|c| is_text(c, "大区概览")),
            "{scope}"
        );
    }
    let page =
        |scope: &str| std::fs::read_to_string(reports.join(format!("{scope}.html"))).unwrap();
    assert!(page("national").contains("<h2>大区概览</h2>"));
    // the whole national page, every number above in its place
    insta::assert_snapshot!("mini_national_html", page("national"));
    assert!(!page("华东").contains("大区概览"));
    // the national email's plain-text part, as a mail reader gets it, says
    // the same numbers in lines
    let mail = national_email_text(&dir.path().join("out/outbox"));
    for lines in [
        "参与分级客户数: 6\n销售额: 2,200.00\n拜访达成率: 66.7%\n拜访覆盖率: 66.7%\n\
         拜访进度: 100.0%\n升级: 0\n降级: 0\n拒收行数（全国）: 1\n",
        "\n华北 | 2 | 800.00 | 1,600.00 | 50.0% | - | - | -\n\
         公司合计 | 6 | 2,200.00 | 14,600.00 | 15.1% | 66.7% | 66.7% | 100.0%\n",
        "\nA VIP客户: 0\nB 骨干客户: 1\nC 有效客户: 1\nD 休眠客户: 1\nE 潜在客户: 3\n",
        "\n1. 王五 (华北): 75.00\n2. 张三 (华东): 32.25\n3. 李四 (华东): 29.50\n",
    ] {
        assert!(mail.contains(lines), "{lines}\nnot in\n{mail}");
    }
    insta::assert_snapshot!("mini_national_text", mail);

    let national = development_areas(&sheet(&reports.join("national.xlsx"), "客户开发"), "转化率");
    let third = 1.0 / 3.0;
    let want = vec![
        ("华东".to_string(), vec![0.0, 3.0, 0.0, 0.5, 1.0, 0.0]),
        ("华北".to_string(), vec![1.0, 2.0, 0.5, 1.0, 0.0, 1.0]),
        (
            "公司合计".to_string(),
            vec![1.0, 5.0, 0.2, 2.0 * third, 2.0 * third, third],
        ),
    ];
    assert_eq!(national.len(), want.len(), "{national:?}");
    for ((area, got), (want_area, want)) in national.iter().zip(&want) {
        assert_eq!(area, want_area);
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-9, "{area}: {got:?} ≠ {want:?}");
        }
    }
    // a region's workbook holds its own area row only
    let north = development_areas(&sheet(&reports.join("华北.xlsx"), "客户开发"), "转化率");
    assert_eq!(north.len(), 1, "{north:?}");
    assert_eq!(north[0], want[1]);

    // the same date again: files skipped, the same numbers
    let again = run_nightly(dir.path());
    assert!(again.contains("0 files loaded, 6 skipped"), "{again}");
    assert_exports_as_expected(dir.path());
}

/// `keep_reports_days = 5`: after a run, the job's report folders dated
/// more than 5 days before today go, the dry runs' too, and a date folder
/// left empty with them. The boundary day stays, as do the run's own
/// as-of date (2026-11-20, older than that: a rerun of an old date keeps
/// what it wrote), another job's folder of an old date, a folder not named
/// by a date alone, and the outbox.
#[test]
fn old_reports_are_removed_after_a_run_as_keep_reports_days_says() {
    let dir = copied();
    let toml = dir.path().join("salesbatch.toml");
    let config = std::fs::read_to_string(&toml).unwrap().replace(
        "name = \"nightly\"\n",
        "name = \"nightly\"\nkeep_reports_days = 5\n",
    );
    std::fs::write(&toml, config).unwrap();
    let today = chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .date_naive();
    let day = |back: u64| (today - chrono::Days::new(back)).to_string();
    let out = dir.path().join("out");
    let folders = [
        format!("{}/nightly", day(6)),
        format!("{}/nightly", day(400)),
        format!("{}/monthly", day(400)),
        format!("{}/nightly", day(5)),
        format!("dry-run/{}/nightly", day(6)),
        format!("{}-old/nightly", day(400)),
    ];
    for folder in &folders {
        std::fs::create_dir_all(out.join(folder)).unwrap();
        std::fs::write(out.join(folder).join("national.html"), "<p>old</p>").unwrap();
    }
    let said = run_nightly(dir.path());
    assert!(
        said.contains(&format!(
            "old reports: 3 folders dated before {} removed (`keep_reports_days`)",
            day(5)
        )),
        "{said}"
    );
    let left = |folder: &str| out.join(folder).exists();
    assert!(!left(&day(6)), "an emptied date folder goes");
    assert!(
        !left(&folders[1]) && left(&folders[2]),
        "another job's stays"
    );
    assert!(left(&folders[3]), "the boundary day stays");
    assert!(!left(&folders[4]), "dry runs go too");
    assert!(left(&folders[5]), "not a report folder");
    assert!(left(&format!("{AS_OF}/nightly/national.html")));
    assert!(left("outbox"));
}

/// The plain-text part of the national email in `outbox`.
fn national_email_text(outbox: &Path) -> String {
    national_email(outbox, "销售日报 · 全国 · ").text
}

/// The one email in `outbox` whose subject starts with `title`.
fn national_email(outbox: &Path, title: &str) -> crate::deliver::Read {
    let mut mails: Vec<crate::deliver::Read> = std::fs::read_dir(outbox)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .map(|p| crate::deliver::body_and_workbooks(&std::fs::read_to_string(p).unwrap()))
        .filter(|m| m.subject.starts_with(title))
        .collect();
    assert_eq!(mails.len(), 1, "{title}");
    mails.remove(0)
}

/// The mini fixture's scorecard for October 2026, a `previous_month` run as
/// of 2026-11-20 (EXPECTED.md, "A `previous_month` job").
const OCTOBER_SCORECARD: &str =
    "rep_id,region,sales,sales_target,expected_sales,sales_achievement,active_customers,\
         new_customers,new_customer_target,visit_attainment,visit_coverage,visit_pace,\
         avg_satisfaction,kpi,rank\n\
         R2,华东,3000.00,,,,1,0,,1.0000,1.0000,1.0000,70.0000,90.0000,1\n\
         R1,华东,8700.00,99999.0000,99999.0000,0.0870,2,0,9.0000,0.0000,0.0000,0.0000,85.0000,\
         12.8500,2\n\
         R3,华北,900.00,,,,2,1,,,,,,,1\n";

/// A `previous_month` job run as of 2026-11-20 reports October 2026, every
/// number as EXPECTED.md works it out ("A `previous_month` job"); the tiers,
/// which the scoring window before as-of's month sets, are the mtd run's.
#[test]
fn a_previous_month_job_reports_the_month_before_as_computed_by_hand() {
    let dir = copied();
    edit(
        dir.path(),
        "salesbatch.toml",
        "period = \"mtd\"",
        "period = \"previous_month\"",
    );
    run_nightly(dir.path());
    let export = |what: &str| {
        let got = salesbatch(dir.path(), &["export", what, "--as-of", AS_OF]);
        String::from_utf8(succeeded(got)).unwrap()
    };
    assert_eq!(export("scorecard"), OCTOBER_SCORECARD);
    assert_eq!(
        export("visit-gaps"),
        "customer_id,region,rep_id,tier,target,actual,gap\n\
         C2,华东,R1,B,3,0,3\n\
         C1,华东,R1,C,2,0,2\n\
         C3,华东,R2,D,1,1,0\n\
         C4,华北,R3,E,0,0,0\n\
         C6,华东,R2,E,0,0,0\n\
         C7,华北,R3,E,0,0,0\n"
    );
    assert_eq!(
        export("development"),
        "rep_id,region,new_customers,new_customer_target,achievement\n\
         R1,华东,0,9.0000,0.0000\n\
         R2,华东,0,,\n\
         R3,华北,1,,\n"
    );
    assert_eq!(
        export("tiers"),
        std::fs::read_to_string(fixture().join("expected/tiers.csv")).unwrap()
    );
    // titled as the month's report, with the month as its period
    let page =
        std::fs::read_to_string(dir.path().join("out/2026-11-20/nightly/national.html")).unwrap();
    assert!(
        page.contains("<h1>销售月报 · 全国 · 2026-10</h1>"),
        "{page}"
    );
    assert!(page.contains("2026-10-01 – 2026-10-31"), "{page}");
    let mail = national_email(&dir.path().join("out/outbox"), "销售月报 · 全国 · 2026-10");
    assert_eq!(mail.subject, "销售月报 · 全国 · 2026-10");
    assert!(
        mail.text.starts_with("销售月报 · 全国 · 2026-10\n"),
        "{}",
        mail.text
    );
}

/// A nightly `mtd` job and a monthly `previous_month` one both computing
/// 2026-11-20: `export` will not pick one of their different numbers on
/// its own; `--job` names the run, and `rejections` follows the job's data
/// quality.
#[test]
fn export_names_the_job_when_two_computed_the_date() {
    let dir = copied();
    let config = dir.path().join("salesbatch.toml");
    let mut toml = std::fs::read_to_string(&config).unwrap();
    toml.push_str(
        "\n[[jobs]]\nname = \"monthly\"\ncron = \"0 0 3 1 * *\"\nperiod = \"previous_month\"\n\
         steps = [\"compute\", \"report\"]\n",
    );
    std::fs::write(&config, toml).unwrap();
    run_nightly(dir.path());
    let monthly = salesbatch(dir.path(), &["run", "monthly", "--as-of", AS_OF]);
    assert_eq!(monthly.status.code(), Some(0), "{}", text(&monthly));
    let export = |args: &[&str]| salesbatch(dir.path(), &[&["export"], args].concat());

    let either = export(&["scorecard", "--as-of", AS_OF]);
    assert_eq!(either.status.code(), Some(1), "{}", text(&either));
    assert_eq!(
        String::from_utf8_lossy(&either.stderr),
        "error: 2 jobs computed 2026-11-20 (`monthly`, `nightly`), each over its own period; \
         choose one with `--job`\n"
    );
    assert!(either.stdout.is_empty());

    let stdout = |o: std::process::Output| String::from_utf8(succeeded(o)).unwrap();
    let expected = |name: &str| {
        std::fs::read_to_string(fixture().join("expected").join(format!("{name}.csv"))).unwrap()
    };
    assert_eq!(
        stdout(export(&["scorecard", "--as-of", AS_OF, "--job", "nightly"])),
        expected("scorecard")
    );
    assert_eq!(
        stdout(export(&["scorecard", "--as-of", AS_OF, "--job", "monthly"])),
        OCTOBER_SCORECARD
    );
    // the monthly run ingested nothing: it shows the nightly run's quality
    for job in ["nightly", "monthly"] {
        assert_eq!(
            stdout(export(&["rejections", "--as-of", AS_OF, "--job", job])),
            expected("rejections")
        );
    }
    let unknown = export(&["tiers", "--as-of", AS_OF, "--job", "weekly"]);
    assert_eq!(unknown.status.code(), Some(1), "{}", text(&unknown));
    assert_eq!(
        String::from_utf8_lossy(&unknown.stderr),
        "error: no computed run of job `weekly` for 2026-11-20 (computed by `monthly`, \
         `nightly`); run `weekly` with `--as-of 2026-11-20` first\n"
    );
}

/// Gives C3 a prospect score of 20 in the customer master: its score goes
/// from 59.00 (D) to 61.00 (C), with the prospect sub-score as the driver.
fn raise_c3_prospect(dir: &Path) {
    let customers = dir.join("inbox/customers.csv");
    let before = std::fs::read_to_string(&customers).unwrap();
    let c3 = "C3,三号诊所,华东,R2,诊所,2026-06-01,,,90,";
    assert!(before.contains(c3));
    std::fs::write(
        &customers,
        before.replace(c3, "C3,三号诊所,华东,R2,诊所,2026-06-01,,20,90,"),
    )
    .unwrap();
}

/// Appends `[[tiering.tiers]]` (name, min_score) to the copied config,
/// replacing the default tiers A…E.
fn set_tiers(dir: &Path, tiers: &[(&str, u32)]) {
    let config = dir.join("salesbatch.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    for (name, min_score) in tiers {
        text.push_str(&format!(
            "\n[[tiering.tiers]]\nname = \"{name}\"\nlabel = \"{name}\"\nmin_score = {min_score}\nmonthly_visits = 1\n"
        ));
    }
    std::fs::write(config, text).unwrap();
}

/// The workbook's Summary counts `up` upgrades and `down` downgrades.
fn assert_moves(workbook: &Path, up: f64, down: f64, what: &str) {
    let summary = sheet(workbook, "概览");
    assert_close(&labelled(&summary, "升级"), up, &format!("{what} 升级"));
    assert_close(&labelled(&summary, "降级"), down, &format!("{what} 降级"));
}

/// The change rows of a workbook's Tier changes sheet, as (id, from, to).
fn change_rows(workbook: &Path) -> Vec<(String, String, String)> {
    sheet(workbook, "分级变动")[1..]
        .iter()
        .map(|r| (r[0].to_string(), r[4].to_string(), r[5].to_string()))
        .collect()
}

/// Day 2 renames the tiers A…E to T1…T5 (same thresholds) and raises C3
/// from 59.00 to 61.00: the only change is C3, from `D` (the fourth tier)
/// to `T3` (the third), an upgrade; the five other customers only changed
/// names.
/// Day 3 drops to four tiers T1…T4 (90, 75, 60, 0) and puts C3 back to
/// 59.00: the day-2 tiers T1…T3 are still named, so C3 goes from `T3` to
/// `T4`, a downgrade; T5 is not named and the number differs, so C4
/// (46.50), C6 (3.00) and C7 (1.00), all T5 on day 2 and T4 now, are not
/// compared. The run warns about those 3 customers; the 华东 page lists C3
/// and says under it that some were not compared (C6), the 华北 page lists
/// none and says why.
#[test]
fn renamed_tiers_are_no_change_and_reshaped_ones_are_not_compared() {
    let dir = copied();
    run_nightly(dir.path());
    raise_c3_prospect(dir.path());
    set_tiers(
        dir.path(),
        &[("T1", 90), ("T2", 75), ("T3", 60), ("T4", 50), ("T5", 0)],
    );
    let day2 = salesbatch(
        dir.path(),
        &["run", "nightly", "--as-of", "2026-11-21", "--no-email"],
    );
    assert_eq!(day2.status.code(), Some(3), "{}", text(&day2));
    let reports = dir.path().join("out/2026-11-21/nightly");
    let c3 = ("C3".to_string(), "D".to_string(), "T3".to_string());
    assert_eq!(change_rows(&reports.join("national.xlsx")), vec![c3]);
    assert_moves(&reports.join("national.xlsx"), 1.0, 0.0, "day 2");

    // back to the fixture's config, then four tiers
    std::fs::copy(
        fixture().join("salesbatch.toml"),
        dir.path().join("salesbatch.toml"),
    )
    .unwrap();
    set_tiers(dir.path(), &[("T1", 90), ("T2", 75), ("T3", 60), ("T4", 0)]);
    std::fs::copy(
        fixture().join("inbox/customers.csv"),
        dir.path().join("inbox/customers.csv"),
    )
    .unwrap();
    let day3 = salesbatch(
        dir.path(),
        &["run", "nightly", "--as-of", "2026-11-22", "--no-email"],
    );
    let out = text(&day3);
    assert_eq!(day3.status.code(), Some(3), "{out}");
    assert!(
        out.contains(
            "the earlier snapshot's tiers `T5` (3) are not tiers of the current `[[tiering.tiers]]`, \
             which also differ in number from the rules that snapshot recorded: 3 customers' tier \
             changes are not listed in this run"
        ),
        "{out}"
    );
    let reports = dir.path().join("out/2026-11-22/nightly");
    let c3 = ("C3".to_string(), "T3".to_string(), "T4".to_string());
    assert_eq!(change_rows(&reports.join("national.xlsx")), vec![c3]);
    assert_moves(&reports.join("national.xlsx"), 0.0, 1.0, "day 3");
    let changes = |region: &str| {
        let page = std::fs::read_to_string(reports.join(format!("{region}.html"))).unwrap();
        section(&page, "分级变动").to_string()
    };
    let east = changes("华东");
    assert!(
        east.contains(">C3</td>")
            && east.contains(
                "<div class=\"more\">部分客户的上期等级已不在当前分级规则中（等级的名称和个数都改了），\
                 未比较这些客户的等级变动</div>"
            ),
        "{east}"
    );
    let north = changes("华北");
    assert!(
        !north.contains("<td>")
            && north.contains(
                "<div class=\"more\">上期快照的等级已不在当前分级规则中（等级的名称和个数都改了），\
                 本期不比较等级变动</div>"
            ),
        "{north}"
    );
}

#[test]
fn the_next_day_lists_the_tier_change_computed_by_hand() {
    const NEXT_DAY: &str = "2026-11-21";
    let dir = copied();
    run_nightly(dir.path());
    raise_c3_prospect(dir.path());

    let next = salesbatch(
        dir.path(),
        &["run", "nightly", "--as-of", NEXT_DAY, "--no-email"],
    );
    let out = text(&next);
    assert_eq!(next.status.code(), Some(3), "{out}");
    assert!(out.contains(", 1 rejection, 6 customers scored"), "{out}");

    let tiers = salesbatch(dir.path(), &["export", "tiers", "--as-of", NEXT_DAY]);
    assert_eq!(tiers.status.code(), Some(0), "{}", text(&tiers));
    let expected = std::fs::read_to_string(fixture().join("expected/tiers.csv"))
        .unwrap()
        .replace(
            "C3,华东,R2,1500.00,1.0000,0.5000,0.5000,0,50,100,90.00,50.00,0,59.00,D,new",
            "C3,华东,R2,1500.00,1.0000,0.5000,0.5000,20,50,100,90.00,50.00,20,61.00,C,new",
        );
    assert_eq!(String::from_utf8(tiers.stdout).unwrap(), expected);

    let reports = dir.path().join("out").join(NEXT_DAY).join("nightly");
    let change = vec![
        Data::String("C3".into()),
        Data::String("三号诊所".into()),
        Data::String("华东".into()),
        Data::String("R2".into()),
        Data::String("D".into()),
        Data::String("C".into()),
        Data::Float(59.0),
        Data::Float(61.0),
        Data::Float(2.0),
        Data::String("潜力得分".into()),
    ];
    // (scope, its change rows, upgrades)
    for (scope, rows, upgrades) in [
        ("national", vec![change.clone()], 1.0),
        ("华东", vec![change.clone()], 1.0),
        ("华北", vec![], 0.0),
    ] {
        let workbook = reports.join(format!("{scope}.xlsx"));
        let sheet_rows = sheet(&workbook, "分级变动");
        assert!(is_text(&sheet_rows[0][4], "原等级"), "{:?}", sheet_rows[0]);
        assert_eq!(sheet_rows[1..], rows, "{scope}");
        assert_moves(&workbook, upgrades, 0.0, scope);
    }
    let east_page = std::fs::read_to_string(reports.join("华东.html")).unwrap();
    let changes = section(&east_page, "分级变动");
    for cell in [
        "C3",
        "三号诊所",
        "D",
        "C",
        "59.00",
        "61.00",
        "2.00",
        "潜力得分",
    ] {
        assert!(
            changes.contains(&format!(">{cell}</td>")),
            "{cell} not in {changes}"
        );
    }
}

/// Chinese, Japanese kana or full-width forms: what an English label must
/// not hold.
fn has_cjk(text: &str) -> bool {
    text.chars().any(|c| {
        matches!(c, '\u{3000}'..='\u{30ff}' | '\u{4e00}'..='\u{9fff}' | '\u{ff00}'..='\u{ffef}')
    })
}

/// The texts between `open` and the next `<` in a page: its headings,
/// header cells or card labels.
fn tagged<'a>(page: &'a str, open: &str) -> Vec<&'a str> {
    page.split(open)
        .skip(1)
        .map(|rest| rest.split('<').next().unwrap_or_default())
        .collect()
}

#[test]
fn the_english_locale_labels_every_sheet_heading_and_header() {
    let dir = copied();
    let config = dir.path().join("salesbatch.toml");
    let zh = std::fs::read_to_string(&config).unwrap();
    assert!(zh.contains("locale = \"zh-CN\"\n"));
    std::fs::write(
        &config,
        zh.replace("locale = \"zh-CN\"\n", "locale = \"en\"\n"),
    )
    .unwrap();
    run_nightly(dir.path());
    // the exports are locale-free (SPEC §2: English canonical names)
    assert_exports_as_expected(dir.path());

    let reports = dir.path().join("out").join(AS_OF).join("nightly");
    let national = reports.join("national.xlsx");
    let wb: calamine::Xlsx<_> = calamine::open_workbook(&national).unwrap();
    let sheets = calamine::Reader::sheet_names(&wb);
    assert_eq!(
        sheets,
        [
            "Summary",
            "Customer tiers",
            "Tier changes",
            "Visit gaps",
            "Rep scorecard",
            "Development",
            "Data quality"
        ]
    );
    drop(wb);
    for name in &sheets[1..] {
        let rows = sheet(&national, name);
        // the Development sheet's area table below is wider than its header
        let header: Vec<&Data> = rows[0]
            .iter()
            .rev()
            .skip_while(|c| **c == Data::Empty)
            .collect();
        assert!(header.len() > 3, "`{name}` header {:?}", rows[0]);
        for cell in &header {
            let label = cell.to_string();
            assert!(
                !label.is_empty() && !has_cjk(&label),
                "`{name}` header {header:?}"
            );
        }
    }
    let summary = sheet(&national, "Summary");
    for (label, want) in [
        ("Customers scored", 6.0),
        ("Sales", 2200.0),
        ("Upgrades", 0.0),
    ] {
        assert_close(&labelled(&summary, label), want, label);
    }
    let overview = area_rows(&summary, "Sales target", 7);
    assert_eq!(
        overview.last().map(|(area, _)| area.as_str()),
        Some("Company")
    );
    // SPEC's default tier labels, which the fixture keeps, in English
    for (tier, label) in [("A", "VIP"), ("B", "Key accounts"), ("E", "Prospects")] {
        let row = summary
            .iter()
            .find(|r| r.first().is_some_and(|c| is_text(c, tier)))
            .unwrap_or_else(|| panic!("no tier `{tier}` row"));
        assert!(is_text(&row[1], label), "tier {tier}: {row:?}");
    }
    assert_eq!(
        development_areas(&sheet(&national, "Development"), "Conversion")
            .iter()
            .map(|(area, _)| area.as_str())
            .collect::<Vec<_>>(),
        ["华东", "华北", "Company"]
    );
    let tiers = sheet(&national, "Customer tiers");
    let lifecycle = tiers[0]
        .iter()
        .position(|c| is_text(c, "Lifecycle"))
        .expect("a `Lifecycle` column");
    let mut stages: Vec<String> = tiers[1..]
        .iter()
        .map(|r| r[lifecycle].to_string())
        .collect();
    stages.sort();
    stages.dedup();
    assert_eq!(stages, ["dormant", "existing", "new", "potential"]);

    let page = std::fs::read_to_string(reports.join("national.html")).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"));
    assert!(page.contains("<title>Sales report · National · 2026-11-20</title>"));
    let labels: Vec<&str> = ["<h2>", "<th>", "<div class=\"k\">", "<div class=\"more\">"]
        .iter()
        .flat_map(|open| tagged(&page, open))
        .collect();
    assert!(labels.len() > 40, "{labels:?}");
    for label in labels {
        assert!(
            !label.trim().is_empty() && !has_cjk(label),
            "label `{label}`"
        );
    }
    let quality = sheet(&reports.join("data-quality.xlsx"), "Data quality");
    assert!(
        quality
            .iter()
            .any(|r| r.iter().any(|c| is_text(c, "unknown customer id"))),
        "{quality:?}"
    );
}

/// Appends `n` sales lines to the copied fixture whose dates are all
/// invalid (`2026/13/01` to `2026/13/28`, cycling): rows 22 on, each
/// rejected as `unparsable date`.
fn append_bad_dates(dir: &Path, n: usize) {
    let sales = dir.join("inbox/sales.csv");
    let mut text_of_sales = std::fs::read_to_string(&sales).unwrap();
    for i in 0..n {
        text_of_sales.push_str(&format!("2026/13/{:02},C1,P1,1,100,\n", i % 28 + 1));
    }
    std::fs::write(&sales, text_of_sales).unwrap();
}

/// The `rejected: ` lines a run printed on stderr.
fn rejected_lines(run: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&run.stderr)
        .lines()
        .filter(|l| l.starts_with("rejected: "))
        .map(String::from)
        .collect()
}

/// The lines `export rejections` prints for the fixture's date, its
/// header included.
fn exported_rejections(dir: &Path) -> usize {
    let export = salesbatch(dir, &["export", "rejections", "--as-of", AS_OF]);
    String::from_utf8_lossy(&export.stdout).lines().count()
}

#[test]
fn run_prints_a_files_first_rejected_rows_and_counts_the_rest() {
    let dir = copied();
    // 30 more bad rows after C99's (row 21): 31 of 50 rows rejected, so the
    // file is also refused by `max_reject_ratio`
    append_bad_dates(dir.path(), 30);

    let run = salesbatch(
        dir.path(),
        &["run", "nightly", "--as-of", AS_OF, "--no-email"],
    );
    let out = text(&run);
    assert_eq!(run.status.code(), Some(3), "{out}");
    let rejected = rejected_lines(&run);
    // the file's ten first rows (C99's, then nine dates), the refusal, and
    // the count of the rest
    assert_eq!(rejected.len(), 12, "{out}");
    assert!(rejected[0].contains("row 21 cell B21 column `客户编码` value `C99`"));
    assert!(
        rejected[9].contains("row 30 cell A30 column `日期` value `2026/13/09`: unparsable date")
    );
    assert!(
        rejected[10].contains("reject ratio exceeded"),
        "{}",
        rejected[10]
    );
    assert_eq!(
        rejected[11],
        "rejected: `sales`: inbox/sales.csv: 21 more rejected rows not printed; \
         `salesbatch export rejections --as-of 2026-11-20` lists them all"
    );
    // the run's count and the export still hold every one
    assert!(out.contains(", 32 rejections,"), "{out}");
    assert_eq!(exported_rejections(dir.path()), 1 + 32);
}

/// A file lists its first 1,000 rejected rows; the rest are counted in a
/// note on the file. The run's count, the headline and the count carried
/// for the file once it is skipped as unchanged stay exact.
#[test]
fn a_file_lists_its_first_thousand_rejected_rows_and_counts_the_rest() {
    let dir = copied();
    let config = dir.path().join("salesbatch.toml");
    let text_of_config = std::fs::read_to_string(&config)
        .unwrap()
        .replace("max_reject_ratio = 0.1", "max_reject_ratio = 1.0");
    std::fs::write(&config, text_of_config).unwrap();
    // 1,200 bad dates after C99's row 21: 1,201 rejected rows, of which
    // the file lists 1,000 (C99's and 999 dates) and counts 201
    append_bad_dates(dir.path(), 1200);

    for pass in ["loaded", "skipped as unchanged"] {
        let run = salesbatch(
            dir.path(),
            &["run", "nightly", "--as-of", AS_OF, "--no-email"],
        );
        let out = text(&run);
        assert_eq!(run.status.code(), Some(3), "{pass}: {out}");
        assert!(out.contains(", 1201 rejections,"), "{pass}: {out}");
        let rejected = rejected_lines(&run);
        assert_eq!(rejected.len(), 11, "{pass}: {out}");
        assert_eq!(
            rejected[10],
            "rejected: `sales`: inbox/sales.csv: 1191 more rejected rows not printed; \
             `salesbatch export rejections --as-of 2026-11-20` lists the first 1000",
            "{pass}"
        );

        let reports = dir.path().join("out").join(AS_OF).join("nightly");
        for scope in ["national", "华东", "华北"] {
            let summary = sheet(&reports.join(format!("{scope}.xlsx")), "概览");
            assert_close(
                &labelled(&summary, "拒收行数（全国）"),
                1201.0,
                &format!("{pass}: {scope}"),
            );
        }
        let quality = sheet(&reports.join("data-quality.xlsx"), "数据质量");
        let listed_dates = quality
            .iter()
            .filter(|r| r.iter().any(|c| c.to_string().starts_with("2026/13/")))
            .count();
        assert_eq!(listed_dates, 999, "{pass}");
        // and says, in the report's language, what it does not list
        for workbook in ["national.xlsx", "data-quality.xlsx"] {
            let quality = sheet(&reports.join(workbook), "数据质量");
            let said: Vec<&Data> = quality
                .iter()
                .flatten()
                .filter(|c| c.to_string().contains("未逐行列出"))
                .collect();
            assert_eq!(
                said,
                [&Data::String(
                    "该文件另有 201 行被拒收，只计数、未逐行列出：每个文件只列出前 1000 行".into()
                )],
                "{pass}: {workbook}"
            );
        }
        let notes = sheet(&reports.join("data-quality.xlsx"), "文件提示");
        assert!(
            notes.iter().any(|r| r.iter().any(|c| c
                .to_string()
                .starts_with("201 more rejected rows are counted, not listed"))),
            "{pass}: {notes:?}"
        );
        assert_eq!(exported_rejections(dir.path()), 1 + 1000, "{pass}");
        if pass == "loaded" {
            assert!(out.contains("6 files loaded"), "{out}");
        } else {
            assert!(out.contains("0 files loaded, 6 skipped"), "{out}");
        }
    }
}

#[test]
fn check_names_recipients_regions_missing_only_once_masters_are_loaded() {
    let dir = copied();
    let config = dir.path().join("salesbatch.toml");
    let mut text_of_config = std::fs::read_to_string(&config).unwrap();
    text_of_config.push_str(
        "\n[[recipients]]\nemail = \"west@example.com\"\nname = \"华西大区经理\"\nregions = [\"华西\"]\n",
    );
    std::fs::write(&config, text_of_config).unwrap();

    let before = salesbatch(dir.path(), &["check"]);
    let out = text(&before);
    assert_eq!(before.status.code(), Some(0), "{out}");
    assert!(
        out.contains(
            "recipients: regions not checked: the warehouse holds no customer or rep yet \
             (the first run loads them)"
        ),
        "{out}"
    );
    assert!(!out.contains("has no master row"), "{out}");

    run_nightly(dir.path());
    let after = salesbatch(dir.path(), &["check"]);
    let out = text(&after);
    assert_eq!(after.status.code(), Some(0), "{out}");
    let missing: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("master row") || l.contains("not checked"))
        .collect();
    assert_eq!(
        missing,
        ["recipient west@example.com: region `华西` has no master row"],
        "{out}"
    );
}

fn run_region(dir: &Path, region: &str) -> std::process::Output {
    salesbatch(
        dir,
        &[
            "run",
            "nightly",
            "--as-of",
            AS_OF,
            "--region",
            region,
            "--no-email",
        ],
    )
}

#[test]
fn a_region_no_row_has_is_named_by_run_and_export() {
    let dir = copied();
    // without its one rejected row, only the region can make a run degraded
    let sales = dir.path().join("inbox/sales.csv");
    let clean: String = std::fs::read_to_string(&sales)
        .unwrap()
        .lines()
        .filter(|l| !l.contains("C99"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&sales, clean).unwrap();

    let north = run_region(dir.path(), "华北");
    assert_eq!(north.status.code(), Some(0), "{}", text(&north));

    let typo = run_region(dir.path(), "华中");
    let out = text(&typo);
    assert_eq!(typo.status.code(), Some(3), "{out}");
    assert!(
        out.contains(
            "no report: `--region 华中`: no scored customer or rep has that region \
             (regions: `华东`, `华北`)"
        ),
        "{out}"
    );
    let reports = dir.path().join("out").join(AS_OF).join("nightly");
    let mut written: Vec<String> = std::fs::read_dir(&reports)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    assert_eq!(written, ["华北.html", "华北.xlsx"]);

    let export = salesbatch(
        dir.path(),
        &[
            "export", "tiers", "--as-of", AS_OF, "--region", "华中", "--region", "华北",
        ],
    );
    assert_eq!(export.status.code(), Some(0), "{}", text(&export));
    let expected = std::fs::read_to_string(fixture().join("expected/tiers.csv")).unwrap();
    let north_rows: String = expected
        .lines()
        .enumerate()
        .filter(|(i, l)| *i == 0 || l.contains(",华北,"))
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    assert_eq!(String::from_utf8_lossy(&export.stdout), north_rows);
    assert_eq!(
        String::from_utf8_lossy(&export.stderr),
        "note: no row of this export has region `华中` (its regions: `华东`, `华北`)\n"
    );

    let rejections = salesbatch(
        dir.path(),
        &["export", "rejections", "--as-of", AS_OF, "--region", "华北"],
    );
    assert_eq!(rejections.status.code(), Some(0), "{}", text(&rejections));
    assert_eq!(
        String::from_utf8_lossy(&rejections.stderr),
        "note: `--region` does not apply to `export rejections`: a rejected row has no region; \
         all are listed\n"
    );
}

/// A region's workbook as LibreOffice prints it: every page A4; the
/// Summary and the data-quality note upright; each of the five tables in
/// landscape on one page, the 16-column scorecard included (scaled to one
/// page wide); each table's header row repeated on every page, and the
/// title and page number in the footer.
#[test]
fn a_workbook_prints_on_a4_each_table_one_page_wide() {
    let Some(soffice) = crate::ingest::soffice() else {
        crate::ingest::require("LibreOffice (soffice)", false);
        return;
    };
    let dir = copied();
    run_nightly(dir.path());
    let workbook = dir.path().join("out/2026-11-20/nightly/华东.xlsx");
    let pdf_dir = dir.path().join("pdf");
    crate::ingest::convert(&soffice, &workbook, "pdf", &pdf_dir);
    let Some(pages) = pdf_text_pages(&pdf_dir.join("华东.pdf")) else {
        return;
    };
    // A4 is 595.3 × 841.9 points
    let a4 = |(w, h): (f64, f64)| (w.min(h) - 595.3).abs() < 1.0 && (w.max(h) - 841.9).abs() < 1.0;
    let sizes: Vec<(f64, f64)> = pages.iter().map(|(w, h, _)| (*w, *h)).collect();
    assert!(sizes.iter().all(|p| a4(*p)), "{sizes:?}");
    let landscape = sizes.iter().filter(|(w, h)| w > h).count();
    assert_eq!((sizes.len(), landscape), (7, 5), "{sizes:?}");

    let book = zip_member(&workbook, "xl/workbook.xml");
    for sheet in ["客户分级", "分级变动", "拜访缺口", "业绩考核", "客户开发"] {
        assert!(
            book.contains(&format!("\">{sheet}!$1:$1</definedName>")),
            "no header row repeated on `{sheet}`: {book}"
        );
    }
    let scorecard = zip_member(&workbook, "xl/worksheets/sheet5.xml");
    assert!(
        scorecard.contains(
            "<oddFooter>&amp;L销售日报 · 华东 · 2026-11-20&amp;R第 &amp;P 页，共 &amp;N 页</oddFooter>"
        ),
        "{scorecard}"
    );
}

/// `export --excel` writes what Excel opens right: a UTF-8 byte-order mark
/// first (without one, Excel on Chinese Windows reads GBK and garbles
/// 华东), and a rejected value that Excel would run as a formula marked as
/// text with `'`; numbers, negative ones included, are untouched. Without
/// `--excel` the export is the data as it is.
#[test]
fn export_for_excel_has_a_bom_and_keeps_formulas_as_text() {
    let dir = copied();
    let formula = r#"=HYPERLINK("http://x.example/","C99")"#;
    let hostile = format!("2026-10-18,\"{}\",P1,5,5000,", formula.replace('"', "\"\""));
    edit(
        dir.path(),
        "inbox/sales.csv",
        "2026-10-18,C99,P1,5,5000,",
        &hostile,
    );
    run_nightly(dir.path());
    let export = |args: &[&str]| {
        succeeded(salesbatch(
            dir.path(),
            &[&["export"], args, &["--as-of", AS_OF]].concat(),
        ))
    };
    const BOM: &[u8] = b"\xef\xbb\xbf";
    let value = |csv: &[u8]| -> String {
        let mut rows = csv::Reader::from_reader(csv);
        let column = rows
            .headers()
            .unwrap()
            .iter()
            .position(|h| h == "value")
            .unwrap();
        let row = rows.records().next().unwrap().unwrap();
        row[column].to_string()
    };

    let for_excel = export(&["rejections", "--excel"]);
    let rest = for_excel
        .strip_prefix(BOM)
        .expect("a byte-order mark first");
    assert_eq!(value(rest), format!("'{formula}"));
    let as_is = export(&["rejections"]);
    assert!(!as_is.starts_with(BOM));
    assert_eq!(value(&as_is), formula);

    // tiers: Chinese regions and negative growth (-0.0500) as they are
    let expected = std::fs::read(fixture().join("expected/tiers.csv")).unwrap();
    assert_eq!(export(&["tiers", "--excel"]), [BOM, &expected].concat());
    assert_eq!(export(&["tiers"]), expected);
}

/// `[warehouse] keep_snapshots_days`: after a run, the snapshots of runs
/// dated before the cutoff are gone (their export says so; `history` keeps
/// the runs), and a rerun of a date leaves one snapshot for it.
#[test]
fn snapshots_older_than_keep_snapshots_days_go_after_a_run() {
    let dir = copied();
    let url = "url = \"sqlite://data/warehouse.db\"\n";
    edit(
        dir.path(),
        "salesbatch.toml",
        url,
        &format!("{url}keep_snapshots_days = 5\n"),
    );
    let today = (chrono::Utc::now() + chrono::Duration::hours(8)).date_naive();
    let (old, recent) = (
        (today - chrono::Days::new(10)).to_string(),
        (today - chrono::Days::new(1)).to_string(),
    );
    let run = |as_of: &str| {
        let run = salesbatch(
            dir.path(),
            &["run", "nightly", "--as-of", as_of, "--no-email"],
        );
        assert_eq!(run.status.code(), Some(3), "{}", text(&run));
    };
    let export = |as_of: &str| salesbatch(dir.path(), &["export", "tiers", "--as-of", as_of]);
    let runs_with_snapshots = || {
        let db = rusqlite::Connection::open(dir.path().join("data/warehouse.db")).unwrap();
        let runs_in = |table: &str| -> Vec<i64> {
            db.prepare(&format!(
                "SELECT DISTINCT run_id FROM {table} ORDER BY run_id"
            ))
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
        };
        let runs = runs_in("tier_snapshots");
        assert_eq!(runs, runs_in("metric_snapshots"));
        runs
    };

    run(&old);
    assert_eq!(export(&old).status.code(), Some(0));
    run(&recent);
    assert_eq!(runs_with_snapshots(), [2]);
    let gone = export(&old);
    assert_eq!(gone.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&gone.stderr),
        format!("error: no computed run for {old}; run a job with `--as-of {old}` first\n")
    );
    assert_eq!(export(&recent).status.code(), Some(0));
    run(&recent);
    assert_eq!(runs_with_snapshots(), [3]);

    // a pruning the warehouse refuses (here a trigger on the table deleted
    // last) rolls back whole, warns, and leaves the run as it was
    let refuse = |on: bool| {
        let db = rusqlite::Connection::open(dir.path().join("data/warehouse.db")).unwrap();
        db.execute_batch(if on {
            "CREATE TRIGGER keep BEFORE DELETE ON metric_snapshots \
             BEGIN SELECT RAISE(ABORT, 'snapshots are kept'); END"
        } else {
            "DROP TRIGGER keep"
        })
        .unwrap();
    };
    refuse(true);
    let refused = salesbatch(
        dir.path(),
        &["run", "nightly", "--as-of", &recent, "--no-email"],
    );
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.lines().any(|l| l.contains(" WARN ")
            && l.contains("cannot remove old snapshots; the next run tries again")
            && l.contains("snapshots are kept")),
        "{stderr}"
    );
    assert_eq!(runs_with_snapshots(), [3, 4]);
    assert_eq!(export(&recent).status.code(), Some(0));
    refuse(false);
    run(&recent);
    assert_eq!(runs_with_snapshots(), [5]);
    let history = salesbatch(dir.path(), &["history"]);
    assert_eq!(String::from_utf8_lossy(&history.stdout).lines().count(), 6);
}

/// Each page of a PDF as PyMuPDF reads it: (width, height, text).
fn pdf_text_pages(pdf: &Path) -> Option<Vec<(f64, f64, String)>> {
    let out = std::process::Command::new("python3")
        .args([
            "-W",
            "ignore",
            "-c",
            "import json, sys\n\
             import fitz\n\
             print(json.dumps([[p.rect.width, p.rect.height, p.get_text()] for p in fitz.open(sys.argv[1])]))",
        ])
        .arg(pdf)
        .output()
        .unwrap();
    if !out.status.success() {
        crate::ingest::require("PyMuPDF (python3 -m pip install pymupdf)", false);
        return None;
    }
    let pages: Vec<(f64, f64, String)> = serde_json::from_slice(&out.stdout).unwrap();
    Some(pages)
}

/// The national page printed from Chromium: landscape A4, and the
/// ranking's last columns on paper. Its scroll box (for phones) used to cut
/// them off: R1's satisfaction (85.00) and KPI (32.25) were missing.
#[test]
fn the_report_page_prints_its_wide_tables_whole() {
    let Some(chromium) = crate::report::chromium() else {
        return;
    };
    let dir = copied();
    run_nightly(dir.path());
    let page = dir.path().join("out/2026-11-20/nightly/national.html");
    let pdf = dir.path().join("national.pdf");
    let profile = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--disable-gpu",
            "--no-first-run",
            "--no-sandbox",
            "--no-pdf-header-footer",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--print-to-pdf={}", pdf.display()))
        .arg(format!("file://{}", page.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success() && pdf.exists());
    let Some(pages) = pdf_text_pages(&pdf) else {
        return;
    };
    for (w, h, _) in &pages {
        assert!(
            (w - 841.9).abs() < 1.0 && (h - 595.3).abs() < 1.0,
            "not landscape A4: {w} × {h}"
        );
    }
    // R1 张三's ranking row ends: visit pace, satisfaction, KPI
    // (EXPECTED.md: 1.2 → 120.0 %, 85, 32.25)
    let text: String = pages.iter().map(|(_, _, t)| t.as_str()).collect();
    assert!(text.contains("120.0%\n85.00\n32.25\n"), "{text}");
}
