use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use calamine::{open_workbook, Data, Reader, Xlsx};
use chrono::NaiveDate;
use salesbatch::config::{self, Period};
use salesbatch::ingest::record::{Reason, Rejection};
use salesbatch::ingest::FileNote;
use salesbatch::metrics::changes::TierChange;
use salesbatch::metrics::scorecard::RepScore;
use salesbatch::metrics::{development, visits, Computed, PeriodRange, Rules, VisitDay};
use salesbatch::report;

use crate::cli::section;
use crate::metrics::tier;

const FORMULA_NAME: &str = "=HYPERLINK(\"http://evil.example\",\"点我\")";
/// Both halves would mark `<body>` if the page ran them as markup.
const SCRIPT_NAME: &str = "<script>document.body.dataset.pwned='script'</script><img src=x onerror=\"document.body.dataset.pwned='img'\">";

fn rendered(dir: &Path) -> Vec<report::Bundle> {
    rendered_comparing(dir, false, &[])
}

/// The fixture's reports; `tiers_compared` says whether an earlier
/// snapshot existed (its tier changes are none either way), `days` are the
/// visits made (none: every A customer has a gap).
fn rendered_comparing(dir: &Path, tiers_compared: bool, days: &[VisitDay]) -> Vec<report::Bundle> {
    rendered_with(dir, tiers_compared, days, |_| {})
}

/// The fixture's reports after `edit` changed its results.
fn rendered_with(
    dir: &Path,
    tiers_compared: bool,
    days: &[VisitDay],
    edit: impl FnOnce(&mut Computed),
) -> Vec<report::Bundle> {
    let settings =
        config::load_str(&dir.join("salesbatch.toml"), "").expect("empty config is valid");
    let as_of = NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
    let period = PeriodRange::new(as_of, Period::Mtd);
    let c = &settings.config;
    let rules = Rules {
        tiering: c.tiering.clone(),
        inactive_values: c.customers.inactive_values.clone(),
        visits: c.visits.clone(),
        scorecard: c.scorecard.weights.clone(),
        development: c.development.event,
        period: Period::Mtd,
    };
    let mut east = tier("E1", "华东", "R1", "A");
    east.name = FORMULA_NAME.into();
    let mut north = tier("N1", "华北", "R2", "A");
    north.name = SCRIPT_NAME.into();
    // 华北 has two A customers and one B, so its B bar is half as long
    let tiers = vec![
        east,
        north,
        tier("N2", "华北", "R2", "A"),
        tier("N3", "华北", "R2", "B"),
    ];
    let visits = visits::compute(&tiers, days, &rules.tiering, &period, 1);
    let development = development::compute(
        &[],
        &[],
        &Default::default(),
        &Default::default(),
        &[],
        rules.development,
        &period,
        as_of,
    );
    let mut computed = Computed {
        as_of,
        period,
        tiers,
        changes: vec![],
        visits,
        development,
        scorecard: vec![],
        tiers_compared,
        tiers_not_compared: Default::default(),
        regions_not_compared: Default::default(),
    };
    edit(&mut computed);
    let rejection = Rejection {
        source: "flow".into(),
        file: "inbox/north.xlsx".into(),
        sheet: "Sheet1".into(),
        row: 7,
        cell: "B7".into(),
        column: "客户编码".into(),
        value: "NORTH-SECRET".into(),
        reason: Reason::UnknownCustomerId,
        detail: String::new(),
    };
    report::render_all(
        &settings,
        &rules,
        &computed,
        &report::Quality {
            rejections: &[rejection],
            notes: &[FileNote {
                source: "flow".into(),
                file: "inbox/north.xlsx".into(),
                sheet: "Sheet1".into(),
                note: "=HYPERLINK(\"http://x\") 2 rows load with no `rep_id`".into(),
                unlisted_rejections: 0,
            }],
            from: None,
        },
        &dir.join("out"),
        &[],
    )
    .expect("rendered")
    .bundles
}

pub fn sheet(path: &Path, name: &str) -> Vec<Vec<Data>> {
    let mut wb: Xlsx<_> = open_workbook(path).expect("workbook opens");
    let range = wb.worksheet_range(name).expect("sheet exists");
    range.rows().map(<[Data]>::to_vec).collect()
}

#[test]
fn regional_reports_hold_only_their_region_and_keep_text_as_text() {
    let dir = tempfile::tempdir().unwrap();
    let bundles = rendered(dir.path());
    let scopes: Vec<&str> = bundles.iter().map(|b| b.scope.name()).collect();
    assert_eq!(scopes, vec!["华东", "华北", "*"]);

    let east = dir.path().join("out/华东.xlsx");
    let tiers = sheet(&east, "客户分级");
    assert_eq!(tiers.len(), 2, "header + the one 华东 customer");
    assert_eq!(tiers[1][0], Data::String("E1".into()));
    assert_eq!(tiers[1][2], Data::String("华东".into()));
    // the formula-looking name is a string cell, and no formula was written
    assert_eq!(tiers[1][1], Data::String(FORMULA_NAME.into()));
    let mut wb: Xlsx<_> = open_workbook(&east).unwrap();
    let formulas = wb.worksheet_formula("客户分级").unwrap();
    assert!(
        formulas.used_cells().all(|(_, _, f)| f.is_empty()),
        "no formula cells"
    );
    // the regional data-quality sheet carries a count, never the rejected values
    let quality = sheet(&east, "数据质量");
    assert_eq!(quality[0][1], Data::Float(1.0));
    assert!(!quality
        .iter()
        .flatten()
        .any(|c| c.to_string().contains("NORTH-SECRET")));

    // the national data-quality workbook has the full row
    let dq = sheet(&dir.path().join("out/data-quality.xlsx"), "数据质量");
    assert_eq!(dq[1][6], Data::String("NORTH-SECRET".into()));
    assert_eq!(
        dq[1][7],
        Data::String("未知客户编码（unknown customer id）".into())
    );
    // then the notes on files that loaded, their text kept as text
    assert_eq!(
        sheet(&dir.path().join("out/data-quality.xlsx"), "文件提示"),
        [
            ["数据源", "文件", "工作表", "提示"],
            [
                "flow",
                "inbox/north.xlsx",
                "Sheet1",
                "=HYPERLINK(\"http://x\") 2 rows load with no `rep_id`"
            ]
        ]
        .map(|row| row.map(|s| Data::String(s.into())).to_vec())
    );

    // HTML is escaped; 华北's page shows its customer in the worst-gap table
    let north = std::fs::read_to_string(dir.path().join("out/华北.html")).unwrap();
    assert!(
        north.contains("&lt;script&gt;document.body.dataset.pwned="),
        "{north}"
    );
    assert!(!north.contains("<script") && !north.contains("<img"));
    assert!(
        !north.contains("E1"),
        "华北 page must not show 华东's customer"
    );
}

/// A section with no rows says why instead of showing a bare header: the
/// fixture has no tier changes and no scored reps, while 华东's A customer
/// has a visit gap, so that table has its row and no message, until its
/// visits meet the target. Whether the changes are none or could not be
/// computed depends on an earlier snapshot.
#[test]
fn a_value_below_the_last_digit_shows_as_zero_not_minus_zero() {
    let dir = tempfile::tempdir().unwrap();
    // a sale and its return netting to a fraction of a cent, and a
    // ratio's float noise
    let noise = -0.1 - 0.2 + 0.3;
    assert!(noise < 0.0);
    let bundles = rendered_with(dir.path(), false, &[], |c| {
        let e1 = &mut c.tiers[0];
        e1.avg_monthly_sales = -0.004;
        e1.growth = noise;
        e1.score = -0.001;
        c.scorecard.push(RepScore {
            sales: -0.004,
            sales_target: Some(1000.0),
            expected_sales: Some(500.0),
            sales_achievement: Some(noise),
            active_customers: 1,
            rank: 1,
            ..rep("R1", "华东", Some(-0.001))
        });
    });
    let east = bundles
        .iter()
        .find(|b| b.scope == report::Scope::Region("华东".into()))
        .expect("an east report");
    let page = std::fs::read_to_string(&east.html).unwrap();
    for text in [&page, &east.html_body] {
        assert!(!text.contains("-0.0"), "a negative zero is shown");
    }
    let tiers = sheet(&east.xlsx, "客户分级");
    let header = &tiers[0];
    let at = |name: &str| {
        header
            .iter()
            .position(|h| h == &Data::String(name.into()))
            .unwrap_or_else(|| panic!("column `{name}` in {header:?}"))
    };
    let e1 = tiers
        .iter()
        .find(|r| r[0] == Data::String("E1".into()))
        .expect("E1's row");
    for column in ["月均销售额", "增长率", "综合得分"] {
        match &e1[at(column)] {
            Data::Float(v) => assert!(
                v.to_bits() == 0.0f64.to_bits(),
                "`{column}` holds {v:e}, which `0.00` shows as `-0.00`"
            ),
            other => panic!("`{column}` holds {other:?}"),
        }
    }
}

/// The first column of a workbook's sheet, as text (empty where not text).
fn column_a(path: &Path, name: &str) -> Vec<String> {
    sheet(path, name)
        .iter()
        .map(|row| match row.first() {
            Some(Data::String(s)) => s.clone(),
            _ => String::new(),
        })
        .collect()
}

/// What a workbook's Summary says about its tier changes: the line under
/// its `分级变动` heading, if it has one.
fn caveat(workbook: &Path) -> Option<String> {
    let summary = column_a(workbook, "概览");
    let at = summary.iter().position(|c| c == "分级变动")?;
    summary.get(at + 1).cloned()
}

/// The line under a page section's table (or in place of an empty one).
fn message(page: &str, section: &str) -> Option<String> {
    let start = page.find(&format!("<h2>{section}</h2>")).expect(section);
    let rest = &page[start..];
    let end = rest[4..].find("<h2>").map_or(rest.len(), |i| i + 4);
    rest[..end]
        .split("<div class=\"more\">")
        .nth(1)
        .map(|m| m.split("</div>").next().unwrap_or_default().to_string())
}

#[test]
fn an_empty_section_says_why() {
    let east_page = |tiers_compared: bool, days: &[VisitDay]| {
        let dir = tempfile::tempdir().unwrap();
        rendered_comparing(dir.path(), tiers_compared, days);
        std::fs::read_to_string(dir.path().join("out/华东.html")).unwrap()
    };
    let east = east_page(false, &[]);
    assert_eq!(
        message(&east, "分级变动").as_deref(),
        Some("首次计算：尚无上期快照可比较")
    );
    // the workbook's Summary says it too; its changes sheet is the header
    let dir = tempfile::tempdir().unwrap();
    rendered_comparing(dir.path(), false, &[]);
    let workbook = dir.path().join("out/华东.xlsx");
    assert_eq!(
        caveat(&workbook).as_deref(),
        Some("首次计算：尚无上期快照可比较")
    );
    assert_eq!(column_a(&workbook, "分级变动").len(), 1);
    let dir = tempfile::tempdir().unwrap();
    rendered_comparing(dir.path(), true, &[]);
    assert_eq!(caveat(&dir.path().join("out/华东.xlsx")), None);
    assert_eq!(message(&east, "代表排名").as_deref(), Some("无代表"));
    // 华东's one A customer has a gap of 4 visits: its table has a row
    assert_eq!(message(&east, "重点客户拜访缺口"), None);

    assert_eq!(
        message(&east_page(true, &[]), "分级变动").as_deref(),
        Some("与上期快照相比无等级变动")
    );
    // four visits on four days of November meet the A customer's target
    let visited: Vec<VisitDay> = (2..=5)
        .map(|day| VisitDay {
            customer_id: "E1".into(),
            date: NaiveDate::from_ymd_opt(2026, 11, day).unwrap(),
            visits: 1,
        })
        .collect();
    assert_eq!(
        message(&east_page(false, &visited[..3]), "重点客户拜访缺口"),
        None,
        "three visits leave a gap of one"
    );
    assert_eq!(
        message(&east_page(false, &visited), "重点客户拜访缺口").as_deref(),
        Some("无拜访缺口")
    );
}

/// Customers of 华北 alone held earlier tiers the current rules cannot
/// place; 华东 has one listed change. Only the pages that hold 华北 say
/// their changes are incomplete: 华东's list is whole.
#[test]
fn only_a_region_with_uncompared_customers_says_so() {
    const NOT_COMPARED: &str =
        "上期快照的等级已不在当前分级规则中（等级的名称和个数都改了），本期不比较等级变动";
    const PARTLY: &str =
        "部分客户的上期等级已不在当前分级规则中（等级的名称和个数都改了），未比较这些客户的等级变动";
    let dir = tempfile::tempdir().unwrap();
    rendered_with(dir.path(), true, &[], |c| {
        c.tiers_not_compared.insert("T5".into(), 2);
        c.regions_not_compared.insert("华北".into());
        c.changes.push(TierChange {
            customer_id: "E1".into(),
            name: "E1".into(),
            region: "华东".into(),
            rep_id: "R1".into(),
            from_tier: "B".into(),
            to_tier: "A".into(),
            upgrade: true,
            previous_score: 80.0,
            score: 91.0,
            delta: 11.0,
            driver: "sales".into(),
            driver_delta: 11.0,
        });
    });
    let page = |scope: &str| {
        std::fs::read_to_string(dir.path().join(format!("out/{scope}.html"))).unwrap()
    };
    let east = page("华东");
    assert!(east.contains(">E1</td>"), "{east}");
    assert_eq!(message(&east, "分级变动"), None);
    assert_eq!(
        message(&page("华北"), "分级变动").as_deref(),
        Some(NOT_COMPARED)
    );
    let national = page("national");
    assert!(national.contains(">E1</td>"), "{national}");
    assert_eq!(message(&national, "分级变动").as_deref(), Some(PARTLY));
    // the workbooks' Summary sheets say the same; the changes sheets hold
    // the changes alone
    let workbook = |scope: &str| dir.path().join(format!("out/{scope}.xlsx"));
    assert_eq!(caveat(&workbook("华东")), None);
    assert_eq!(caveat(&workbook("华北")).as_deref(), Some(NOT_COMPARED));
    assert_eq!(caveat(&workbook("national")).as_deref(), Some(PARTLY));
    assert_eq!(column_a(&workbook("华东"), "分级变动")[1..], ["E1"]);
    assert_eq!(column_a(&workbook("华北"), "分级变动").len(), 1);
    assert_eq!(column_a(&workbook("national"), "分级变动")[1..], ["E1"]);
}

/// Replaces what changes from run to run in a formatted email (date,
/// MIME boundaries) and folds base64 blocks, so the structure can be
/// snapshotted: headers, parts, encodings, attachment names.
fn redact_email(raw: &str) -> String {
    let mut boundaries: Vec<String> = Vec::new();
    for line in raw.lines() {
        if let Some(b) = line.split("boundary=\"").nth(1) {
            boundaries.push(b.trim_end_matches('"').to_string());
        }
    }
    let mut out: Vec<String> = Vec::new();
    for line in raw.lines() {
        let mut line = line.to_string();
        for (i, b) in boundaries.iter().enumerate() {
            line = line.replace(b.as_str(), &format!("BOUNDARY-{i}"));
        }
        if line.starts_with("Date: ") {
            line = "Date: [date]".into();
        }
        let in_base64 = out.last().map(String::as_str) == Some("[base64]");
        // a part's last line may be short: it continues a run of long ones
        let base64 = (line.len() >= 40 || (in_base64 && !line.is_empty()))
            && line
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'='));
        if base64 {
            if !in_base64 {
                out.push("[base64]".into());
            }
            continue;
        }
        out.push(line);
    }
    out.join("\n")
}

#[test]
fn report_page_and_email_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let bundles = rendered(dir.path());
    let east = bundles.iter().find(|b| b.scope.name() == "华东").unwrap();
    insta::assert_snapshot!("east_html", std::fs::read_to_string(&east.html).unwrap());

    let from: lettre::message::Mailbox = "销售报表 <reports@example.com>".parse().unwrap();
    let to: lettre::message::Mailbox = "华东大区经理 <east@example.com>".parse().unwrap();
    let msg = salesbatch::deliver::build_message(&from, &to, east, "<1.fixed@salesbatch>").unwrap();
    let raw = String::from_utf8(msg.formatted()).unwrap();
    insta::assert_snapshot!("east_email", redact_email(&raw));
    // the plain-text alternative is base64 in the email (Chinese): here
    // as rendered
    insta::assert_snapshot!("east_text", &east.text_body);
}

/// `templates_dir` may override the page's template and the email's text
/// one, each on its own: a file there replaces the built-in one of its
/// name, and the other stays built in. A template that does not parse is
/// named.
#[test]
fn a_template_in_templates_dir_replaces_the_built_in_one() {
    let dir = tempfile::tempdir().unwrap();
    let templates = dir.path().join("report-templates");
    std::fs::create_dir(&templates).unwrap();
    std::fs::write(
        templates.join("report.txt"),
        "{{ title }}: {{ headline[0][0] }} {{ headline[0][1] }}\n",
    )
    .unwrap();
    let bundles = rendered(dir.path());
    let east = bundles.iter().find(|b| b.scope.name() == "华东").unwrap();
    assert_eq!(
        east.text_body,
        "销售日报 · 华东 · 2026-11-20: 参与分级客户数 1\n"
    );
    assert!(east.html_body.contains("<h2>重点客户拜访缺口</h2>"));

    std::fs::write(templates.join("report.html"), "<p>{{ title }</p>").unwrap();
    let settings = config::load_str(&dir.path().join("salesbatch.toml"), "").unwrap();
    let error = report::html::Renderer::new(&settings.templates_dir())
        .err()
        .unwrap();
    let path = templates.join("report.html");
    assert_eq!(error.to_string(), format!("template `{}`", path.display()));
}

/// The email shows the tier distribution as an inline PNG: five bars, 华东's
/// one customer is tier A, so A's bar is full length and B's is empty track.
#[test]
fn email_body_carries_the_tier_chart_as_an_inline_image() {
    let dir = tempfile::tempdir().unwrap();
    let bundles = rendered(dir.path());
    let east = bundles.iter().find(|b| b.scope.name() == "华东").unwrap();
    assert!(east
        .html_body
        .contains(r#"<img src="cid:tier-chart" width="440" height="158""#));
    let page = std::fs::read_to_string(&east.html).unwrap();
    assert!(!page.contains("cid:"), "the saved page is self-contained");
    let (cid, png) = &east.charts[0];
    assert_eq!(cid, "tier-chart");
    let chart = Picture::of(png);
    // 5 bars of 22 px with 8 px gaps: 5·22 + 6·8 = 158
    assert_eq!((chart.width, chart.height), (440, 158));
    assert_eq!(chart.pixel(420, 8 + 11), BAR, "A: 1 of max 1, full length");
    assert_eq!(chart.pixel(420, 38 + 11), TRACK, "B: 0");
    assert_eq!(chart.pixel(3, 19), WHITE, "margin");
    let msg = salesbatch::deliver::build_message(
        &"r <r@example.com>".parse().unwrap(),
        &"e <e@example.com>".parse().unwrap(),
        east,
        "<2.fixed@salesbatch>",
    )
    .unwrap();
    let raw = String::from_utf8(msg.formatted()).unwrap();
    // text first, the HTML with its charts last: the one a reader prefers
    let alternative = raw.find("Content-Type: multipart/alternative;").unwrap();
    let text = raw.find("Content-Type: text/plain; charset=utf-8").unwrap();
    let related = raw.find("Content-Type: multipart/related;").unwrap();
    assert!(alternative < text && text < related, "{raw}");
    assert!(raw.contains("Content-ID: <tier-chart>"));
}

fn rep(id: &str, region: &str, kpi: Option<f64>) -> RepScore {
    RepScore {
        rep_id: id.into(),
        name: format!("代表{id}"),
        region: region.into(),
        sales: 0.0,
        sales_target: None,
        expected_sales: None,
        sales_achievement: None,
        active_customers: 0,
        new_customers: 0,
        new_customer_target: None,
        visit_attainment: None,
        visit_coverage: None,
        visit_pace: None,
        avg_satisfaction: None,
        kpi,
        rank: 0,
    }
}

/// An email chart's pixels.
struct Picture {
    width: u32,
    height: u32,
    rgb: Vec<u8>,
}

/// The colours of `report::chart`: a bar, the track beside it, the margin.
const BAR: (u8, u8, u8) = (0x3b, 0x82, 0xf6);
const TRACK: (u8, u8, u8) = (0xe5, 0xe7, 0xeb);
const WHITE: (u8, u8, u8) = (255, 255, 255);

impl Picture {
    fn of(png: &[u8]) -> Self {
        let mut reader = png::Decoder::new(std::io::Cursor::new(png))
            .read_info()
            .unwrap();
        let mut rgb = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut rgb).unwrap();
        Self {
            width: info.width,
            height: info.height,
            rgb,
        }
    }

    fn pixel(&self, x: u32, y: u32) -> (u8, u8, u8) {
        let i = ((y * self.width + x) * 3) as usize;
        (self.rgb[i], self.rgb[i + 1], self.rgb[i + 2])
    }
}

/// The ranking's chart: 华东's R1 (KPI 80) and R2 (40) — R3 has no KPI and
/// no bar; the national one adds 华北's R4 (40), after R2 by rep id. As
/// bars: 80 is the full 424 px track, 40 half of it, 212 px from x = 8.
#[test]
fn the_email_and_page_chart_the_reps_with_the_highest_kpi() {
    let dir = tempfile::tempdir().unwrap();
    let bundles = rendered_with(dir.path(), false, &[], |c| {
        c.scorecard = vec![
            rep("R1", "华东", Some(80.0)),
            rep("R2", "华东", Some(40.0)),
            rep("R3", "华东", None),
            rep("R4", "华北", Some(40.0)),
        ];
    });
    let scope = |name: &str| bundles.iter().find(|b| b.scope.name() == name).unwrap();
    let east = scope("华东");
    // 2 bars: 2·22 + 3·8 = 68 px
    assert!(east.html_body.contains(
        r#"<h2>综合得分最高的代表</h2>
<img src="cid:top-reps-chart" width="440" height="68""#
    ));
    assert!(
        east.html_body.contains(
            r#"<tr><td>代表R1</td><td class="n">80.00</td></tr>
<tr><td>代表R2</td><td class="n">40.00</td></tr>

</table>"#
        ),
        "{}",
        east.html_body
    );
    assert!(!east.html_body.contains("代表R3</td><td class=\"n\">"));
    assert_eq!(east.charts.len(), 2);
    let (cid, png) = &east.charts[1];
    assert_eq!(cid, "top-reps-chart");
    let chart = Picture::of(png);
    assert_eq!((chart.width, chart.height), (440, 68));
    assert_eq!(chart.pixel(430, 8 + 11), BAR, "R1: 80 of 80, full length");
    assert_eq!(chart.pixel(218, 38 + 11), BAR, "R2: 40 of 80, to x = 220");
    assert_eq!(chart.pixel(222, 38 + 11), TRACK, "R2: 40 of 80, to x = 220");
    let page = std::fs::read_to_string(&east.html).unwrap();
    assert!(page.contains(
        r#"<tr><td>代表R1</td><td class="n">80.00</td><td style="width:220px"><span class="bar" style="width: 100%"></span></td></tr>
<tr><td>代表R2</td><td class="n">40.00</td><td style="width:220px"><span class="bar" style="width: 50%"></span></td></tr>

</table>"#
    ));

    // national: each rep's region beside the name; ties by rep id
    let national = scope("*");
    assert!(national.html_body.contains(
        r#"<tr><td>代表R1</td><td>华东</td><td class="n">80.00</td></tr>
<tr><td>代表R2</td><td>华东</td><td class="n">40.00</td></tr>
<tr><td>代表R4</td><td>华北</td><td class="n">40.00</td></tr>

</table>"#
    ));
    assert_eq!(Picture::of(&national.charts[1].1).height, 3 * 22 + 4 * 8);
    let raw = String::from_utf8(
        salesbatch::deliver::build_message(
            &"r <r@example.com>".parse().unwrap(),
            &"e <e@example.com>".parse().unwrap(),
            national,
            "<3.fixed@salesbatch>",
        )
        .unwrap()
        .formatted(),
    )
    .unwrap();
    assert!(raw.contains("Content-ID: <top-reps-chart>"));

    // 华北's only rep with a KPI; none at all: no section, no picture
    assert!(scope("华北").html_body.contains("<td>代表R4</td>"));
    let none = rendered(tempfile::tempdir().unwrap().path());
    for b in &none {
        assert_eq!(b.charts.len(), 1, "{}", b.scope.name());
        assert!(!b.html_body.contains("综合得分最高的代表"));
    }
}

/// SPEC §1's "worst visit gaps on A/B customers": 华北's A customers N1,
/// N2 (target 4, no visit: gap 4) and B customer N3 (gap 3) are listed,
/// its C customer N4 (target 2, gap 2) only in the workbook's Visit gaps
/// sheet. In 华东 only a C customer has a gap: the section says there is
/// none.
#[test]
fn the_worst_gaps_are_the_a_and_b_customers_only() {
    let dir = tempfile::tempdir().unwrap();
    let bundles = rendered_with(dir.path(), false, &[], |c| {
        let mut e1 = c.visits.customers[0].clone();
        assert_eq!((e1.customer_id.as_str(), e1.gap), ("E1", 4));
        e1.actual = 4;
        e1.gap = 0;
        c.visits.customers[0] = e1;
        for (id, region) in [("N4", "华北"), ("E4", "华东")] {
            c.visits.customers.push(visits::CustomerVisits {
                customer_id: id.into(),
                name: format!("客户{id}"),
                region: region.into(),
                rep_id: "R2".into(),
                tier: "C".into(),
                target: 2,
                actual: 0,
                gap: 2,
            });
        }
    });
    let scope = |name: &str| bundles.iter().find(|b| b.scope.name() == name).unwrap();
    let north = scope("华北");
    for body in [
        &north.html_body,
        &std::fs::read_to_string(&north.html).unwrap(),
    ] {
        let gaps = section(body, "重点客户拜访缺口");
        let listed: Vec<&str> = ["N1", "N2", "N3", "N4"]
            .into_iter()
            .filter(|id| gaps.contains(&format!("<td>{id}</td>")))
            .collect();
        assert_eq!(listed, ["N1", "N2", "N3"], "{gaps}");
    }
    let sheet_ids: Vec<String> = sheet(&north.xlsx, "拜访缺口")
        .iter()
        .skip(1)
        .map(|r| r[0].to_string())
        .collect();
    assert_eq!(sheet_ids, ["N1", "N2", "N3", "N4"]);
    let east = section(&scope("华东").html_body, "重点客户拜访缺口");
    assert!(!east.contains("<td>E4</td>"), "{east}");
    assert!(
        east.contains(r#"<div class="more">无拜访缺口</div>"#),
        "{east}"
    );
}

/// The page and email list 20 rows of a longer table and say how many
/// there are: 华北's A customers N1, N2 and B customer N3 (no visits: gaps)
/// and 25 more A customers with a gap of 1 are 28 rows; a C customer's gap
/// is not one of them.
#[test]
fn a_cut_list_says_how_many_rows_it_has() {
    let dir = tempfile::tempdir().unwrap();
    let bundles = rendered_with(dir.path(), false, &[], |c| {
        for (i, tier) in (1..=26).map(|i| (i, if i == 26 { "C" } else { "A" })) {
            c.visits.customers.push(visits::CustomerVisits {
                customer_id: format!("X{i:02}"),
                name: format!("客户X{i:02}"),
                region: "华北".into(),
                rep_id: "R2".into(),
                tier: tier.into(),
                target: 4,
                actual: 3,
                gap: 1,
            });
        }
    });
    let north = bundles.iter().find(|b| b.scope.name() == "华北").unwrap();
    let page = std::fs::read_to_string(&north.html).unwrap();
    for body in [&north.html_body, &page] {
        let section = section(body, "重点客户拜访缺口");
        assert_eq!(section.matches("<tr>").count(), 1 + 20, "{section}");
        assert!(
            section.contains(
                r#"<div class="more">显示前 20 行，共 28 行；完整列表见 Excel 工作簿</div>"#
            ),
            "{section}"
        );
    }
}

/// The chart shows 10 reps: of 12, the two lowest KPIs are left out.
#[test]
fn the_ranking_chart_stops_at_ten_reps() {
    let dir = tempfile::tempdir().unwrap();
    let bundles = rendered_with(dir.path(), false, &[], |c| {
        c.scorecard = (1..=12)
            .map(|i| rep(&format!("R{i:02}"), "华北", Some(f64::from(i))))
            .collect();
    });
    let north = bundles.iter().find(|b| b.scope.name() == "华北").unwrap();
    assert_eq!(Picture::of(&north.charts[1].1).height, 10 * 22 + 11 * 8);
    // the ranking table below lists all 12: look at the chart's table only
    let chart = section(&north.html_body, "综合得分最高的代表");
    for i in 3..=12 {
        assert!(
            chart.contains(&format!("<td>代表R{i:02}</td>")),
            "R{i:02}: {chart}"
        );
    }
    for i in 1..=2 {
        assert!(
            !chart.contains(&format!("<td>代表R{i:02}</td>")),
            "R{i:02}: {chart}"
        );
    }
    let best = chart.find("代表R12").unwrap();
    assert!(best < chart.find("代表R11").unwrap(), "best first: {chart}");
}

/// The headline numbers of a regional and the national report, worked out by
/// hand. As of 2026-11-20, period MTD (20 of 30 days elapsed), default tiers
/// (monthly visits A 4, B 3, C 2, E 0), at most 1 counted visit a day:
///
/// | customer | region | tier (before) | target | counted visits |
/// |---|---|---|---:|---|
/// | E1 | 华东 | A (B: up) | 4 | Nov 3 (2 → 1), 5, 9, 12, 15 = 5, capped 4; Oct 31 not in P |
/// | E2 | 华东 | C (A: down) | 2 | none |
/// | E3 | 华东 | E | 0 | Nov 4 (no target: not in the totals) |
/// | N1 | 华北 | B (C: up) | 3 | Nov 2 = 1 |
///
/// 华东: target 4 + 2 = 6, capped 4 → attainment 4/6 = 66.7 %; coverage 1 of 2
/// = 50.0 %; pace 4 ÷ (6 × 20/30) = 100.0 %. National: 5/9 = 55.6 %, 2 of 3 =
/// 66.7 %, 5 ÷ (9 × 20/30) = 83.3 %.
/// Sales in P: E1 100.5 (no line rep → its rep R1, 华东), E2 20 by line rep
/// R2 (华东), N1 50 (R3, 华北): 华东 120.50, national 170.50.
#[test]
fn headline_numbers_by_hand() {
    use salesbatch::config::Locale;
    use salesbatch::metrics::{changes, scorecard, Customer, PeriodSales, Rep, VisitDay};
    use salesbatch::report::i18n::Labels;
    use salesbatch::report::tables::build;
    use salesbatch::report::{Scope, Value};

    let settings = config::load_str(Path::new("salesbatch.toml"), "").unwrap();
    let c = &settings.config;
    let rules = Rules {
        tiering: c.tiering.clone(),
        inactive_values: vec![],
        visits: c.visits.clone(),
        scorecard: c.scorecard.weights.clone(),
        development: c.development.event,
        period: Period::Mtd,
    };
    let as_of = NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
    let day = |m: u32, d: u32| NaiveDate::from_ymd_opt(2026, m, d).unwrap();
    let period = PeriodRange::new(as_of, Period::Mtd);
    let tiers = vec![
        tier("E1", "华东", "R1", "A"),
        tier("E2", "华东", "R1", "C"),
        tier("E3", "华东", "R2", "E"),
        tier("N1", "华北", "R3", "B"),
    ];
    let previous = vec![
        tier("E1", "华东", "R1", "B"),
        tier("E2", "华东", "R1", "A"),
        tier("E3", "华东", "R2", "E"),
        tier("N1", "华北", "R3", "C"),
    ];
    let visit = |id: &str, date: NaiveDate, visits: u32| VisitDay {
        customer_id: id.into(),
        date,
        visits,
    };
    let days = vec![
        visit("E1", day(10, 31), 1),
        visit("E1", day(11, 3), 2),
        visit("E1", day(11, 5), 1),
        visit("E1", day(11, 9), 1),
        visit("E1", day(11, 12), 1),
        visit("E1", day(11, 15), 1),
        visit("E3", day(11, 4), 1),
        visit("N1", day(11, 2), 1),
    ];
    let visits = visits::compute(&tiers, &days, &rules.tiering, &period, 1);
    let customer = |id: &str, region: &str, rep: &str| Customer {
        customer_id: id.into(),
        name: id.into(),
        region: region.into(),
        rep_id: rep.into(),
        ..Default::default()
    };
    let customers = vec![
        customer("E1", "华东", "R1"),
        customer("E2", "华东", "R1"),
        customer("E3", "华东", "R2"),
        customer("N1", "华北", "R3"),
    ];
    let rep = |id: &str, region: &str| Rep {
        rep_id: id.into(),
        name: id.into(),
        region: region.into(),
    };
    let reps = vec![rep("R1", "华东"), rep("R2", "华东"), rep("R3", "华北")];
    let sale = |id: &str, line_rep: Option<&str>, amount: f64| PeriodSales {
        customer_id: id.into(),
        line_rep_id: line_rep.map(Into::into),
        amount,
    };
    let period_sales = vec![
        sale("E1", None, 100.5),
        sale("E2", Some("R2"), 20.0),
        sale("N1", None, 50.0),
    ];
    let development = development::compute(
        &customers,
        &reps,
        &Default::default(),
        &Default::default(),
        &[],
        rules.development,
        &period,
        as_of,
    );
    let scorecard = scorecard::compute(
        &reps,
        &customers,
        &period_sales,
        &Default::default(),
        &[],
        &[],
        &visits,
        &development,
        &rules.scorecard,
        &period,
        as_of,
    );
    let computed = Computed {
        as_of,
        period,
        changes: changes::compute(
            &tiers,
            &changes::Previous {
                tiers: previous,
                tier_names: Vec::new(),
            },
            &rules.tiering,
        )
        .changes,
        tiers,
        visits,
        development,
        scorecard,
        tiers_compared: true,
        tiers_not_compared: Default::default(),
        regions_not_compared: Default::default(),
    };
    let rejection = Rejection {
        source: "flow".into(),
        file: "inbox/a.xlsx".into(),
        sheet: "Sheet1".into(),
        row: 3,
        cell: "B3".into(),
        column: "客户编码".into(),
        value: "X".into(),
        reason: Reason::UnknownCustomerId,
        detail: String::new(),
    };
    let rejections = vec![rejection.clone(), rejection];

    let headline = |scope: Scope| -> Vec<(&'static str, String)> {
        let quality = salesbatch::report::Quality {
            rejections: &rejections,
            ..Default::default()
        };
        build(&scope, &computed, &rules, &quality, Labels(Locale::ZhCn))
            .headline
            .into_iter()
            .map(|(k, v)| {
                assert!(!matches!(v, Value::Blank), "`{k}` is blank");
                (k, v.display())
            })
            .collect()
    };
    assert_eq!(
        headline(Scope::Region("华东".into())),
        vec![
            ("customers_scored", "3".to_string()),
            ("sales", "120.50".into()),
            ("visit_attainment", "66.7%".into()),
            ("visit_coverage", "50.0%".into()),
            ("visit_pace", "100.0%".into()),
            ("upgrades", "1".into()),
            ("downgrades", "1".into()),
            ("rejections", "2".into()),
        ]
    );
    assert_eq!(
        headline(Scope::National),
        vec![
            ("customers_scored", "4".to_string()),
            ("sales", "170.50".into()),
            ("visit_attainment", "55.6%".into()),
            ("visit_coverage", "66.7%".into()),
            ("visit_pace", "83.3%".into()),
            ("upgrades", "2".into()),
            ("downgrades", "1".into()),
            ("rejections", "2".into()),
        ]
    );
    // the fixture's tiers moved with no sub-score moving, as when a tier's
    // `min_score` is changed: the rules, not the data, are the driver
    let national = build(
        &Scope::National,
        &computed,
        &rules,
        &Default::default(),
        Labels(Locale::ZhCn),
    );
    let driver = national.changes.column("driver").unwrap();
    let drivers: Vec<String> = national
        .changes
        .rows
        .iter()
        .map(|r| r[driver].display())
        .collect();
    assert_eq!(drivers, ["计算规则变更"; 3]);
}

// ------------------------------------------------------------- browser

/// Headless Chromium, or `None` after `require` allowed the test to skip.
pub fn chromium() -> Option<PathBuf> {
    let found = crate::ingest::installed(&[
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]);
    if found.is_none() {
        crate::ingest::require("Chromium", false);
    }
    found
}

/// Appended to a copy of the page: records what the browser laid out on
/// `<body>`, where `--dump-dom` shows it.
const PROBE: &str = r"<script>
const bars = [...document.querySelectorAll('.bar')].map(b => b.getBoundingClientRect().width);
const cell = document.querySelector('.bar').parentElement;
const pad = getComputedStyle(cell);
const track = cell.clientWidth - parseFloat(pad.paddingLeft) - parseFloat(pad.paddingRight);
document.body.setAttribute('data-measured', JSON.stringify({
  bars, track, page: document.documentElement.scrollWidth, window: window.innerWidth,
}));
</script></body>";

/// The DOM of `page` after headless Chromium loaded it in a window `width`
/// CSS pixels wide and ran its scripts.
fn browser_dom(chromium: &Path, page: &Path, width: u32) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--disable-gpu",
            "--no-first-run",
            "--dump-dom",
        ])
        // CI runs as root, where Chromium's sandbox cannot start
        .arg("--no-sandbox")
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--window-size={width},900"))
        .arg(format!("file://{}", page.display()))
        .stdout(out.reopen().unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("chromium did not finish loading {}", page.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::read_to_string(out.path()).unwrap()
}

/// What a probe script recorded in `<body data-measured>` (JSON).
fn measured(dom: &str) -> serde_json::Value {
    let json = dom
        .split("data-measured=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no measurement in {dom}"))
        .replace("&quot;", "\"");
    serde_json::from_str(&json).unwrap()
}

/// The saved page as a manager's browser shows it (headless Chromium): a
/// name holding markup stays text and none of it runs, each tier bar is as
/// long as its count says, and in a narrow window only the tables scroll.
#[test]
fn the_report_page_renders_in_a_real_browser() {
    let Some(chromium) = chromium() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    rendered(dir.path());
    let page = std::fs::read_to_string(dir.path().join("out/华北.html")).unwrap();
    let probe = dir.path().join("probe.html");
    std::fs::write(&probe, page.replace("</body>", PROBE)).unwrap();
    for width in [1280, 500] {
        let dom = browser_dom(&chromium, &probe, width);
        assert!(dom.contains("data-measured="), "{dom}");
        assert!(!dom.contains("data-pwned"), "markup in a name ran: {dom}");
        assert!(
            dom.contains("&lt;img src=x onerror="),
            "the name shows as text"
        );
        let m = measured(&dom);
        let bars: Vec<f64> = m["bars"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_f64().unwrap())
            .collect();
        let track = m["track"].as_f64().unwrap();
        assert_eq!(track, 220.0, "the bar column is 220 px wide");
        // tiers A–E: 2, 1, 0, 0, 0 customers; the longest bar fills the track
        assert_eq!(bars, vec![220.0, 110.0, 0.0, 0.0, 0.0], "width {width}");
        let (page, window) = (m["page"].as_f64().unwrap(), m["window"].as_f64().unwrap());
        assert!(
            page <= window,
            "at {width} px the page is {page} px wide: it scrolls sideways"
        );
    }
}

/// The email's tier chart is a 440 px image: on a screen narrower than that
/// it shrinks to fit, keeping its proportions, instead of widening the mail.
#[test]
fn the_email_chart_shrinks_to_a_narrow_screen() {
    let Some(chromium) = chromium() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let bundles = rendered(dir.path());
    let east = bundles.iter().find(|b| b.scope.name() == "华东").unwrap();
    // a body 300 px wide stands in for a phone: Chromium's window is at
    // least 500 px wide
    let probe = r"<script>
document.body.style.width = '300px';
const r = document.querySelector('img').getBoundingClientRect();
document.body.setAttribute('data-measured', JSON.stringify({ width: r.width, height: r.height }));
</script></body>";
    // the chart beside the page, as a mail client shows the inline part
    std::fs::write(dir.path().join("tier-chart.png"), &east.charts[0].1).unwrap();
    let body = east
        .html_body
        .replace("cid:tier-chart", "tier-chart.png")
        .replace("</body>", probe);
    let page = dir.path().join("email.html");
    std::fs::write(&page, body).unwrap();
    let dom = browser_dom(&chromium, &page, 800);
    let m = measured(&dom);
    let (width, height) = (m["width"].as_f64().unwrap(), m["height"].as_f64().unwrap());
    assert_eq!(width, 300.0, "{m}");
    // 158 × 300 / 440
    assert!((height - 107.727).abs() < 0.01, "{m}");
}
