//! Ingest against real files and real databases: every format, every reject
//! reason, hostile files, idempotent reloads, SQL sources on PostgreSQL and
//! MariaDB, files written by LibreOffice, and a kill in the middle of a file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rust_xlsxwriter::{ExcelDateTime, Format, Workbook};
use salesbatch::config::Settings;
use salesbatch::ingest::IngestSummary;
use sqlx::Row;

/// A scratch project: masters (reps R1, R2; customers C1–C3 and 1001) plus
/// whatever sources a test adds, with its own SQLite warehouse.
pub struct Lab {
    pub dir: tempfile::TempDir,
}

/// The warehouse a test ingests into.
pub enum Wh<'a> {
    /// the lab's own SQLite file
    Sqlite,
    /// a database of the test's own on the local PostgreSQL server
    Postgres(&'a str),
}

const MASTERS: &str = r#"
[[sources]]
name = "reps"
dataset = "reps"
kind = "csv"
path = "in/reps.csv"
columns = { rep_id = "rep", name = "name", region = "region" }
[[sources]]
name = "customers"
dataset = "customers"
kind = "csv"
path = "in/customers.csv"
columns = { customer_id = "id", name = "name", region = "region", rep_id = "rep" }
[[jobs]]
name = "load"
cron = "0 0 1 * * *"
steps = ["ingest"]
"#;

impl Lab {
    pub fn new() -> Self {
        let lab = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        lab.write(
            "in/reps.csv",
            "rep,name,region\nR1,张伟,华东\nR2,李娜,华北\n".as_bytes(),
        );
        lab.write(
            "in/customers.csv",
            "id,name,region,rep\nC1,甲医院,华东,R1\nC2,乙药店,华北,R2\nC3,丙诊所,华东,R1\n1001,丁医院,华东,R1\n"
                .as_bytes(),
        );
        lab
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, bytes: &[u8]) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }

    /// Writes `salesbatch.toml` (masters + `extra`) and loads it.
    pub fn settings(&self, extra: &str) -> Settings {
        let path = self.path("salesbatch.toml");
        std::fs::write(&path, format!("{extra}\n{MASTERS}")).unwrap();
        salesbatch::config::load(&path).unwrap_or_else(|e| panic!("{e}"))
    }

    pub async fn ingest(&self, settings: &Settings) -> IngestSummary {
        let store = salesbatch::warehouse::open(&settings.warehouse_url().unwrap())
            .await
            .unwrap();
        salesbatch::ingest::run(settings, store.as_ref())
            .await
            .unwrap()
    }

    /// The store of `wh`: the lab's SQLite file is the one `settings` name.
    pub async fn store(settings: &Settings, wh: &Wh<'_>) -> Box<dyn salesbatch::warehouse::Store> {
        let url = match wh {
            Wh::Sqlite => settings.warehouse_url().unwrap(),
            Wh::Postgres(url) => (*url).to_string(),
        };
        salesbatch::warehouse::open(&url).await.unwrap()
    }

    /// Ingests into `wh` instead of the warehouse `settings` name.
    pub async fn ingest_into(&self, settings: &Settings, wh: &Wh<'_>) -> IngestSummary {
        let store = Self::store(settings, wh).await;
        salesbatch::ingest::run(settings, store.as_ref())
            .await
            .unwrap()
    }

    /// [`Lab::sales`] of the warehouse `wh`.
    pub async fn sales_in(&self, wh: &Wh<'_>, source: &str) -> Vec<(String, String, String, f64)> {
        let Wh::Postgres(url) = wh else {
            return self.sales(source).await;
        };
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let rows = sqlx::query(
            "SELECT to_char(invoice_date, 'YYYY-MM-DD'), customer_id, product_id, amount FROM sales \
             WHERE source = $1 ORDER BY invoice_date, customer_id, product_id, amount",
        )
        .bind(source)
        .fetch_all(&pool)
        .await
        .unwrap();
        pool.close().await;
        rows.iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect()
    }

    /// (file, row) of every sales line of one source, sorted: where each
    /// line says it came from.
    pub async fn provenance_in(&self, wh: &Wh<'_>, source: &str) -> Vec<(String, i64)> {
        let sql = "SELECT file, row_no FROM sales WHERE source = $1";
        let mut rows: Vec<(String, i64)> = match wh {
            Wh::Sqlite => {
                let pool = self.warehouse().await;
                sqlx::query_as(sql).bind(source).fetch_all(&pool).await
            }
            Wh::Postgres(url) => {
                let pool = sqlx::PgPool::connect(url).await.unwrap();
                sqlx::query_as(sql).bind(source).fetch_all(&pool).await
            }
        }
        .unwrap();
        // in Rust: PostgreSQL's collation may not order by bytes
        rows.sort();
        rows
    }

    /// Makes every load look like one from before row ranges were recorded.
    pub async fn forget_row_ranges(&self, wh: &Wh<'_>) {
        self.exec_in(
            wh,
            "UPDATE ingested_files SET first_row_id = NULL, last_row_id = NULL",
        )
        .await;
    }

    /// Runs one statement on the warehouse `wh`.
    pub async fn exec_in(&self, wh: &Wh<'_>, sql: &'static str) {
        match wh {
            Wh::Sqlite => {
                let pool = self.warehouse().await;
                sqlx::query(sql).execute(&pool).await.unwrap();
                pool.close().await;
            }
            Wh::Postgres(url) => {
                let pool = sqlx::PgPool::connect(url).await.unwrap();
                sqlx::query(sql).execute(&pool).await.unwrap();
                pool.close().await;
            }
        }
    }

    /// The one text column `sql` selects from the warehouse `wh`, sorted
    /// in Rust (PostgreSQL's collation may not order by bytes).
    pub async fn texts_in(&self, wh: &Wh<'_>, sql: &'static str) -> Vec<String> {
        let mut texts: Vec<String> = match wh {
            Wh::Sqlite => {
                let pool = self.warehouse().await;
                sqlx::query_scalar(sql).fetch_all(&pool).await
            }
            Wh::Postgres(url) => {
                let pool = sqlx::PgPool::connect(url).await.unwrap();
                sqlx::query_scalar(sql).fetch_all(&pool).await
            }
        }
        .unwrap();
        texts.sort();
        texts
    }

    pub async fn warehouse(&self) -> sqlx::SqlitePool {
        sqlx::SqlitePool::connect(&format!(
            "sqlite://{}",
            self.path("data/warehouse.db").display()
        ))
        .await
        .unwrap()
    }

    /// (as_of, status) of every run, in the order they started.
    pub async fn runs(&self) -> Vec<(String, String)> {
        let pool = self.warehouse().await;
        let rows = sqlx::query("SELECT as_of, status FROM runs ORDER BY run_id")
            .fetch_all(&pool)
            .await
            .unwrap();
        pool.close().await;
        rows.iter().map(|r| (r.get(0), r.get(1))).collect()
    }

    /// (invoice_date, customer_id, product_id, amount) of one source, sorted.
    pub async fn sales(&self, source: &str) -> Vec<(String, String, String, f64)> {
        let pool = self.warehouse().await;
        let rows = sqlx::query(
            "SELECT invoice_date, customer_id, product_id, amount FROM sales WHERE source = ? \
             ORDER BY invoice_date, customer_id, product_id, amount",
        )
        .bind(source)
        .fetch_all(&pool)
        .await
        .unwrap();
        pool.close().await;
        rows.iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect()
    }

    pub async fn total(&self, source: &str) -> f64 {
        self.sales(source).await.iter().map(|r| r.3).sum()
    }
}

fn rejections(summary: &IngestSummary) -> Vec<String> {
    summary.rejections.iter().map(ToString::to_string).collect()
}

fn assert_has(lines: &[String], wanted: &str) {
    assert!(
        lines.iter().any(|l| l == wanted),
        "no rejection\n  {wanted}\namong\n  {}",
        lines.join("\n  ")
    );
}

fn row(d: &str, c: &str, p: &str, a: f64) -> (String, String, String, f64) {
    (d.into(), c.into(), p.into(), a)
}

/// A server or tool a test needs: on a laptop without it the test is skipped
/// with a notice, under `CI=true` its absence fails the test.
pub fn require(what: &str, available: bool) -> bool {
    if available {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{what} is required when CI=true"
    );
    eprintln!("SKIPPED: {what} is not available here");
    false
}

const FLOW_COLUMNS: &str = r#"columns = { invoice_date = "日期", customer_id = "客户编码", product_id = "产品编码", amount = "金额" }"#;

#[tokio::test]
async fn csv_in_utf8_bom_crlf_gbk_and_gb18030_loads_the_same_rows() {
    let lab = Lab::new();
    // quoted thousands separator, currency signs, three date spellings, a
    // padded id, a header with a full-width space around it
    let text = "日期,客户编码,产品编码,\u{3000}金额 \r\n\
                2026-10-03,C1,P1,\"1,234.50\"\r\n\
                2026/10/04, C2 ,P2,￥200\r\n\
                2026年10月05日,C3,\"P,3\",￥-50.25\r\n";
    let mut bom = vec![0xEF, 0xBB, 0xBF];
    bom.extend_from_slice(text.as_bytes());
    lab.write("in/utf8/a.csv", &bom);
    let (gbk, _, bad) = encoding_rs::GBK.encode(text);
    assert!(!bad);
    lab.write("in/gbk/a.csv", &gbk);
    let (gb18030, _, bad) = encoding_rs::GB18030.encode(text);
    assert!(!bad);
    lab.write("in/gb18030/a.csv", &gb18030);
    let mut extra = String::new();
    for (name, enc) in [("utf8", "utf-8"), ("gbk", "gbk"), ("gb18030", "gb18030")] {
        extra.push_str(&flow_csv_source(name, &format!("encoding = \"{enc}\"\n")));
    }
    let settings = lab.settings(&extra);
    let summary = lab.ingest(&settings).await;
    assert!(summary.rejections.is_empty(), "{:?}", rejections(&summary));
    let expected = vec![
        row("2026-10-03", "C1", "P1", 1234.5),
        row("2026-10-04", "C2", "P2", 200.0),
        row("2026-10-05", "C3", "P,3", -50.25),
    ];
    for source in ["utf8", "gbk", "gb18030"] {
        assert_eq!(lab.sales(source).await, expected, "{source}");
    }
}

/// A first line `sep=;` is Excel's: it names the separator and is no row.
/// It was read as the header, refusing the file as `missing column`; now
/// the file is read with that separator, in any encoding (UTF-16 included:
/// Excel's "Unicode Text"), and its rows keep the line numbers a text
/// editor shows. Tab-separated text without the line is refused as such,
/// not as every mapped column missing, unless its source sets
/// `delimiter = "tab"`: then it loads, UTF-16 or GBK.
#[tokio::test]
async fn a_first_line_naming_the_separator_is_followed_and_skipped() {
    let lab = Lab::new();
    lab.write(
        "in/comma/a.csv",
        "sep=,\r\n日期,客户编码,产品编码,金额\r\n2026-10-01,C1,P1,5\r\n".as_bytes(),
    );
    lab.write(
        "in/semi/a.csv",
        "\u{feff}SEP=;\n日期;客户编码;产品编码;金额\n\
         2026-10-02;C2;\"P;2\";\"1,234.5\"\n2026-10-03;C9;P1;7\n"
            .as_bytes(),
    );
    let tsv = "日期\t客户编码\t产品编码\t金额\r\n2026-10-04\tC3\t注射液\t8\r\n";
    lab.write(
        "in/tab/a.csv",
        &encoding_rs::GBK.encode(&format!("sep=\t\n{tsv}")).0,
    );
    // Excel's "Unicode Text": UTF-16LE with its BOM, tab-separated
    let utf16 = |text: &str| {
        let mut bytes = vec![0xFF, 0xFE];
        bytes.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
        bytes
    };
    lab.write("in/unicode/a.csv", &utf16(&format!("sep=\t\r\n{tsv}")));
    // without the line, tab-separated text is named for what it is
    lab.write("in/bare/a.csv", &utf16(tsv));
    lab.write("in/bare/b.csv", &encoding_rs::GBK.encode(tsv).0);
    let settings = lab.settings(
        &[
            "[ingest]\nmax_reject_ratio = 0.5\n".to_string(),
            flow_csv_source("comma", ""),
            flow_csv_source("semi", ""),
            flow_csv_source("tab", "encoding = \"gbk\"\n"),
            flow_csv_source("unicode", ""),
            flow_csv_source("bare", "encoding = \"gbk\"\n"),
            csv_sales_source_at(
                "tabbed",
                "in/bare/*.csv",
                "encoding = \"gbk\"\ndelimiter = \"tab\"\n",
                FLOW_COLUMNS,
            ),
        ]
        .concat(),
    );
    let summary = lab.ingest(&settings).await;
    let tab_separated = "cannot open file (the file is tab-separated text, not comma-separated \
                         (Excel's \"Unicode Text\" is such a file): set `delimiter = \"tab\"` on \
                         the source, save the file as \"CSV UTF-8\", or begin it with a line `sep=` \
                         followed by a tab)";
    assert_eq!(
        rejections(&summary),
        [
            "`semi`: in/semi/a.csv row 4 cell B4 column `客户编码` value `C9`: unknown customer id"
                .to_string(),
            format!("`bare`: in/bare/a.csv: {tab_separated}"),
            format!("`bare`: in/bare/b.csv: {tab_separated}"),
        ]
    );
    assert_eq!(
        lab.sales("unicode").await,
        [row("2026-10-04", "C3", "注射液", 8.0)]
    );
    assert_eq!(
        lab.sales("comma").await,
        [row("2026-10-01", "C1", "P1", 5.0)]
    );
    assert_eq!(
        lab.sales("semi").await,
        [row("2026-10-02", "C2", "P;2", 1234.5)]
    );
    assert_eq!(
        lab.sales("tab").await,
        [row("2026-10-04", "C3", "注射液", 8.0)]
    );
    // the UTF-16 file and the GBK one, each read with tabs
    assert_eq!(
        lab.sales("tabbed").await,
        [
            row("2026-10-04", "C3", "注射液", 8.0),
            row("2026-10-04", "C3", "注射液", 8.0)
        ]
    );
}

/// A CSV saved from a sheet whose date column was formatted as a number
/// holds serials; they read as the dates Excel shows (1900 system, the only
/// one a CSV can mean). Six digits are no serial: a month written wrongly.
#[tokio::test]
async fn serials_in_a_csv_date_column_read_as_dates() {
    let lab = Lab::new();
    lab.write(
        "in/x/a.csv",
        "日期,客户编码,产品编码,金额\n45658,C1,P1,5\n46330.75,C2,P2,6\n\
         202610,C3,P1,7\n2026-10-01,C3,P1,8\n"
            .as_bytes(),
    );
    let settings = lab.settings(&format!(
        "[ingest]\nmax_reject_ratio = 0.5\n{}",
        flow_csv_source("x", "")
    ));
    let summary = lab.ingest(&settings).await;
    assert_eq!(
        rejections(&summary),
        ["`x`: in/x/a.csv row 4 cell A4 column `日期` value `202610`: unparsable date"]
    );
    assert_eq!(
        lab.sales("x").await,
        [
            row("2025-01-01", "C1", "P1", 5.0),
            row("2026-10-01", "C3", "P1", 8.0),
            row("2026-11-04", "C2", "P2", 6.0),
        ]
    );
}

/// Exports meant for Excel write what it must not turn into a number as
/// `="00123"`, bare or quoted; Excel opens such a field as the text inside,
/// and so does the reader. A field that merely starts with `=` stays as is.
#[tokio::test]
async fn csv_fields_written_as_excel_text_formulas_read_as_their_text() {
    let lab = Lab::new();
    lab.write(
        "in/x/a.csv",
        "日期,客户编码,产品编码,金额\n\
         =\"2026-10-03\",=\"C1\",\"=\"\"P01\"\"\",=\"12.5\"\n\
         2026-10-04,C2,=P2,3\n"
            .as_bytes(),
    );
    let settings = lab.settings(&flow_csv_source("x", ""));
    let summary = lab.ingest(&settings).await;
    assert!(summary.rejections.is_empty(), "{:?}", rejections(&summary));
    assert_eq!(
        lab.sales("x").await,
        vec![
            row("2026-10-03", "C1", "P01", 12.5),
            row("2026-10-04", "C2", "=P2", 3.0),
        ]
    );
}

/// A CSV that is not UTF-8 where the source expects it (a GBK export without
/// `encoding = "gbk"`) is refused naming the first cell that is not, instead
/// of loading U+FFFD in place of its text; the columns after the mapped ones
/// are not read, so a GBK remark there does not matter. A GBK source's bytes
/// that GBK does not define refuse the file the same way, and a UTF-8 file
/// given to a GBK source is named as such.
#[tokio::test]
async fn csv_that_is_not_utf8_is_refused_naming_the_cell() {
    let lab = Lab::new();
    let gbk = |text: &str| encoding_rs::GBK.encode(text).0.into_owned();
    let header = "日期,客户编码,产品编码,金额,备注\r\n";
    lab.write(
        "in/flow/a_gbk.csv",
        &gbk(&format!("{header}2026-10-03,C1,P1,10,\r\n")),
    );
    // 甲 in GBK is BC D7; 药 (D2 A9) would happen to be valid UTF-8
    let mut mixed = header.as_bytes().to_vec();
    mixed.extend(gbk("2026-10-03,C1,P1,10,备注\r\n2026-10-04,C2,甲,20,\r\n"));
    lab.write("in/flow/b_mixed.csv", &mixed);
    let mut remark = b"\xEF\xBB\xBF".to_vec();
    remark.extend(header.as_bytes());
    remark.extend(gbk("2026-10-05,C3,P2,30,备注\r\n"));
    lab.write("in/flow/c_remark.csv", &remark);
    // Excel's "Unicode text" is UTF-16 with a BOM: still decoded
    let mut utf16 = vec![0xFF, 0xFE];
    for unit in format!("{header}2026-10-06,C1,P3,40\r\n").encode_utf16() {
        utf16.extend(unit.to_le_bytes());
    }
    lab.write("in/flow/d_utf16.csv", &utf16);
    // 甲 in UTF-8 (E7 94 B2) cut in two by a comma: each half is invalid
    let mut split = header.as_bytes().to_vec();
    split.extend(b"2026-10-07,C1,P\xE7,\x94\xB240,\r\n");
    lab.write("in/flow/e_split.csv", &split);
    // a GBK source's byte that GBK does not define (FF) after a good row: the
    // decoder would give U+FFFD
    let mut bad_gbk = gbk(&format!("{header}2026-10-08,C1,P1,50,\r\n"));
    bad_gbk.extend(b"2026-10-09,C2,P\xFF,60,\r\n");
    lab.write("in/gbk/f_bad.csv", &bad_gbk);
    // UTF-8 without a BOM where GBK is configured decodes as valid GBK,
    // garbled; a GBK file that really lacks a column is told apart
    lab.write(
        "in/gbk/g_utf8.csv",
        format!("{header}2026-10-10,C1,P1,70,\r\n").as_bytes(),
    );
    lab.write(
        "in/gbk/h_renamed.csv",
        &gbk("日期,客户编码,产品编码,销售额\r\n2026-10-11,C1,P1,80\r\n"),
    );
    let settings = lab.settings(&format!(
        "[[sources]]\nname = \"flow\"\ndataset = \"sales\"\nkind = \"csv\"\npath = \"in/flow/*.csv\"\n{FLOW_COLUMNS}\n\
         [[sources]]\nname = \"gbk\"\ndataset = \"sales\"\nkind = \"csv\"\npath = \"in/gbk/*.csv\"\nencoding = \"gbk\"\n{FLOW_COLUMNS}\n"
    ));
    let summary = lab.ingest(&settings).await;
    let hint = "if the file is a GBK export, set `encoding = \"gbk\"` on the source";
    assert_eq!(
        rejections(&summary),
        [
            format!(
                "`flow`: in/flow/a_gbk.csv: cannot open file \
                 (cell A1 is not UTF-8 text (bytes C8 D5 C6 DA); {hint})"
            ),
            format!(
                "`flow`: in/flow/b_mixed.csv: cannot open file \
                 (cell C3 is not UTF-8 text (bytes BC D7); {hint})"
            ),
            format!(
                "`flow`: in/flow/e_split.csv: cannot open file \
                 (cell C2 is not UTF-8 text (bytes E7); {hint})"
            ),
            "`gbk`: in/gbk/f_bad.csv: cannot open file (cell C3 holds bytes its \
             encoding does not define (decoded as U+FFFD); check the source's `encoding`)"
                .to_string(),
            "`gbk`: in/gbk/g_utf8.csv: cannot open file (the file is UTF-8 text, not gbk: \
             its headers do not match when read as gbk; remove `encoding = \"gbk\"` from \
             the source)"
                .to_string(),
            "`gbk`: in/gbk/h_renamed.csv column `金额`: missing column".to_string(),
        ]
    );
    assert!(lab.sales("gbk").await.is_empty());
    assert_eq!(
        lab.sales("flow").await,
        [
            row("2026-10-05", "C3", "P2", 30.0),
            row("2026-10-06", "C1", "P3", 40.0)
        ]
    );
}

/// A CSV row is named by the line it starts on, as an editor shows it,
/// whatever ends the lines (CRLF from Excel and WPS, LF, a lone CR from an
/// old Mac) and with a blank line and a quoted value of two lines above it.
/// (The `csv` crate's own count is one short after a CRLF or a blank line.)
#[tokio::test]
async fn csv_rows_are_named_by_the_line_they_start_on() {
    let lab = Lab::new();
    let lines = [
        "日期,客户编码,产品编码,金额",
        "2026-10-03,C1,P1,10",
        "",
        "2026-10-04,C9,P1,20",
        "2026-10-05,C1,\"P",
        "1\",x",
        "2026-10-06,C8,P1,30",
        "2026-10-07,C1,P1,40",
    ];
    let mut extra = String::new();
    for (name, end) in [("crlf", "\r\n"), ("lf", "\n"), ("cr", "\r")] {
        lab.write(
            &format!("in/{name}/a.csv"),
            format!("{}{end}", lines.join(end)).as_bytes(),
        );
        extra.push_str(&flow_csv_source(name, ""));
    }
    let settings = lab.settings(&format!("[ingest]\nmax_reject_ratio = 1.0\n{extra}"));
    let summary = lab.ingest(&settings).await;
    let got = rejections(&summary);
    for name in ["crlf", "lf", "cr"] {
        let file = format!("`{name}`: in/{name}/a.csv");
        for wanted in [
            format!("{file} row 4 cell B4 column `客户编码` value `C9`: unknown customer id"),
            format!("{file} row 5 cell D5 column `金额` value `x`: unparsable number"),
            format!("{file} row 7 cell B7 column `客户编码` value `C8`: unknown customer id"),
        ] {
            assert_has(&got, &wanted);
        }
        assert_eq!(
            lab.sales(name).await,
            [
                row("2026-10-03", "C1", "P1", 10.0),
                row("2026-10-07", "C1", "P1", 40.0)
            ],
            "{name}"
        );
    }
    assert_eq!(got.len(), 9, "{got:#?}");
}

/// A mapped header the file lacks is pointed at a header that differs from
/// it only in what a typist does not see: full-width brackets (`金额（元）`
/// for `金额(元)`), a line break typed inside the header cell, letter case
/// in an ERP query's column names. The file is still refused, since SPEC §4
/// matches headers after trimming alone, but the detail names the column;
/// before, it was a bare `missing column`. A header with no near miss gets
/// no detail.
#[tokio::test]
async fn a_missing_header_is_pointed_at_its_near_miss() {
    let lab = Lab::new();
    lab.write(
        "in/near/a.csv",
        "日期,\"客户\n编码\",产品编码,金额（元）,备注\n2026-10-01,C1,P1,5,x\n".as_bytes(),
    );
    let erp = format!("sqlite://{}?mode=rwc", lab.path("erp.db").display());
    std::env::set_var("SB_TEST_NEAR_ERP_URL", erp);
    let query = "SELECT '2026-10-01' AS doc_date, 'C1' AS Cust_Code, 'P1' AS sku, \
                 1.5 AS amount WHERE '2026-10-01' >= :since";
    let columns = r#"columns = { invoice_date = "日期", customer_id = "客户编码", product_id = "产品编码", amount = "金额(元)" }"#;
    let settings = lab.settings(&format!(
        "{}{}",
        csv_sales_source("near", "", columns),
        sql_sales_source("erp", "SB_TEST_NEAR_ERP_URL", query)
    ));
    let summary = lab.ingest(&settings).await;
    assert_eq!(
        rejections(&summary),
        [
            "`near`: in/near/a.csv column `客户编码, 金额(元)`: missing column (column B is \
             headed `客户\\n编码`, not `客户编码`: they differ only in full-width forms, letter \
             case or white space; column D is headed `金额（元）`, not `金额(元)`: they differ \
             only in full-width forms, letter case or white space)",
            "`erp`: sql:SB_TEST_NEAR_ERP_URL column `cust_code, net`: missing column (result \
             column 2 is named `Cust_Code`, not `cust_code`: they differ only in full-width \
             forms, letter case or white space)",
        ]
    );
}

/// A file and an ERP query each list their first 1,000 rejected rows and
/// count the rest in a note, also when the reject ratio refuses them: the
/// summary's count of rejected rows stays exact while what it holds is
/// bounded.
#[tokio::test]
async fn rejected_rows_past_the_first_thousand_are_counted_not_listed() {
    let lab = Lab::new();
    let mut csv = String::from("日期,客户编码,产品编码,金额\n2026-10-01,C1,P1,5\n");
    for _ in 0..1200 {
        csv.push_str("2026/13/01,C1,P1,5\n");
    }
    lab.write("in/flow/a.csv", csv.as_bytes());
    let erp = format!("sqlite://{}?mode=rwc", lab.path("erp.db").display());
    std::env::set_var("SB_TEST_UNLISTED_ERP_URL", erp);
    let query = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1500) \
                 SELECT 'not a date' AS doc_date, 'C1' AS cust_code, 'P1' AS sku, 1.5 AS net \
                 FROM n WHERE '2026-10-01' >= :since";
    let settings = lab.settings(&format!(
        "{}{}",
        csv_sales_source("flow", "", FLOW_COLUMNS),
        sql_sales_source("erp", "SB_TEST_UNLISTED_ERP_URL", query)
    ));
    let summary = lab.ingest(&settings).await;
    assert_eq!(summary.files_refused, 2, "{:?}", summary.notes);
    for (source, file, rejected, rows, unlisted) in [
        ("flow", "in/flow/a.csv", 1200, 1201, 200),
        ("erp", "sql:SB_TEST_UNLISTED_ERP_URL", 1500, 1500, 500),
    ] {
        let of_file: Vec<_> = summary
            .rejections
            .iter()
            .filter(|r| r.source == source)
            .collect();
        assert_eq!(
            of_file.iter().filter(|r| r.row > 0).count(),
            1000,
            "{source}"
        );
        let refusal = of_file.iter().find(|r| r.row == 0).unwrap();
        assert_eq!(
            refusal.detail,
            format!("{rejected} of {rows} rows rejected; nothing from this file was loaded"),
            "{source}"
        );
        let notes: Vec<_> = summary
            .notes
            .iter()
            .filter(|n| n.source == source)
            .collect();
        assert_eq!(notes.len(), 1, "{source}: {notes:?}");
        assert_eq!(
            (notes[0].file.as_str(), notes[0].unlisted_rejections),
            (file, unlisted),
            "{source}"
        );
        assert!(notes[0].note.starts_with(&format!(
            "{unlisted} more rejected rows are counted, not listed"
        )));
    }
    // 1,200 and 1,500 rejected rows, and the two refusals
    assert_eq!(summary.rejected_rows(), 1200 + 1500 + 2);
    assert!(lab.sales("flow").await.is_empty());
}

/// A mapped header that heads two columns (`金额` with and without tax) is
/// refused rather than read from the first: which one the user meant cannot
/// be known. A repeated header the source does not map does not matter. An
/// ERP query's result columns are named the same way.
#[tokio::test]
async fn a_mapped_header_heading_two_columns_refuses_the_file() {
    let lab = Lab::new();
    std::fs::create_dir_all(lab.path("in/flow")).unwrap();
    for (file, headers) in [
        (
            "a_twice.xlsx",
            ["日期", "客户编码", "产品编码", "金额", "金额"],
        ),
        (
            "b_remarks.xlsx",
            ["日期", "客户编码", "产品编码", "金额", "日期 "],
        ),
        (
            "c_remarks.xlsx",
            ["日期", "客户编码", "备注", "产品编码", "金额"],
        ),
    ] {
        let mut wb = Workbook::new();
        let ws = wb.add_worksheet();
        for (c, h) in headers.iter().enumerate() {
            ws.write(0, c as u16, *h).unwrap();
        }
        let mut headers = headers.to_vec();
        if file.starts_with('c') {
            // the remark column after the mapped ones repeats its header
            ws.write(0, 5, "备注").unwrap();
            headers.push("备注");
        }
        for (c, h) in headers.iter().enumerate() {
            let value = match *h {
                "日期" => "2026-10-03",
                "客户编码" => "C1",
                "产品编码" => "P1",
                "金额" => "100",
                _ => "x",
            };
            ws.write(1, c as u16, value).unwrap();
        }
        wb.save(lab.path(&format!("in/flow/{file}"))).unwrap();
    }
    // an ERP query can name a column twice too: its columns have no letters
    let erp = format!("sqlite://{}?mode=rwc", lab.path("erp.db").display());
    std::env::set_var("SB_TEST_TWICE_ERP_URL", erp);
    let query = "SELECT '2026-10-01' AS doc_date, 'C1' AS cust_code, 'P1' AS sku, \
                 1.5 AS net, 1.0 AS net, 1.0 AS net WHERE '2026-10-01' >= :since";
    // and lack one, which is `missing column` as for a file
    let lacking = "SELECT '2026-10-01' AS doc_date, 'C1' AS cust_code, 'P1' AS sku \
                   WHERE '2026-10-01' >= :since";
    let settings = lab.settings(&format!(
        "{}{}{}",
        flow_xlsx_source("flow", ""),
        sql_sales_source("erp", "SB_TEST_TWICE_ERP_URL", query),
        sql_sales_source("erp-lacking", "SB_TEST_TWICE_ERP_URL", lacking)
    ));
    let summary = lab.ingest(&settings).await;
    assert_eq!(
        rejections(&summary),
        [
            "`flow`: in/flow/a_twice.xlsx [Sheet1] column `金额`: missing column \
             (ambiguous: it heads columns D and E; rename all but one)",
            "`flow`: in/flow/b_remarks.xlsx [Sheet1] column `日期`: missing column \
             (ambiguous: it heads columns A and E; rename all but one)",
            "`erp`: sql:SB_TEST_TWICE_ERP_URL column `net`: missing column \
             (ambiguous: it names result columns 4, 5 and 6; rename all but one)",
            "`erp-lacking`: sql:SB_TEST_TWICE_ERP_URL column `net`: missing column",
        ]
    );
    assert_eq!(summary.files_loaded, 3, "masters and c_remarks.xlsx");
    assert_eq!(
        lab.sales("flow").await,
        [row("2026-10-03", "C1", "P1", 100.0)]
    );
}

/// Writes a sales workbook as users' Excel files look: a title row above the
/// header, typed date cells, a numeric id, amounts as numbers and as text.
/// A file or sheet without a header row is refused, and the message says
/// which of the two it is: a CSV has no sheets.
#[tokio::test]
async fn a_file_or_sheet_without_a_header_row_is_refused_saying_which() {
    let lab = Lab::new();
    let good = "日期,客户编码,产品编码,金额\n2026-10-01,C1,P1,5\n";
    lab.write("in/blank/a_empty.csv", b"");
    lab.write(
        "in/blank/b_bom_and_blank_lines.csv",
        b"\xEF\xBB\xBF\r\n , ,\r\n",
    );
    lab.write("in/blank/c_good.csv", good.as_bytes());
    lab.write("in/deep/a.csv", good.as_bytes());
    std::fs::create_dir_all(lab.path("in/xb")).unwrap();
    let mut wb = Workbook::new();
    wb.add_worksheet().set_name("流向").unwrap();
    wb.save(lab.path("in/xb/empty.xlsx")).unwrap();
    std::fs::create_dir_all(lab.path("in/xd")).unwrap();
    flow_workbook(&lab.path("in/xd/short.xlsx"));
    let settings = lab.settings(
        &[
            flow_csv_source("blank", ""),
            flow_csv_source("deep", "header_row = 5\n"),
            flow_xlsx_source("xb", ""),
            flow_xlsx_source("xd", "sheet = \"流向\"\nheader_row = 9\n"),
        ]
        .concat(),
    );
    let summary = lab.ingest(&settings).await;
    let got = rejections(&summary);
    assert_eq!(
        got,
        vec![
            "`blank`: in/blank/a_empty.csv: cannot open file (the file is empty: no header row)",
            "`blank`: in/blank/b_bom_and_blank_lines.csv: cannot open file (the file is empty: no header row)",
            "`deep`: in/deep/a.csv: cannot open file (header row 5 is beyond the end of the file)",
            "`xb`: in/xb/empty.xlsx [流向]: cannot open file (the sheet is empty: no header row)",
            "`xd`: in/xd/short.xlsx [流向]: cannot open file (header row 9 is beyond the end of the sheet)",
        ]
    );
    assert_eq!(
        lab.sales("blank").await,
        vec![row("2026-10-01", "C1", "P1", 5.0)]
    );
}

#[tokio::test]
async fn a_header_below_the_row_read_as_header_is_pointed_at() {
    let lab = Lab::new();
    std::fs::create_dir_all(lab.path("in/title")).unwrap();
    // a title in row 1, the header in row 3
    flow_workbook(&lab.path("in/title/a.xlsx"));
    let csv = "十月流向\n\n单位：元,,,\n日期,客户编码,产品编码,金额\n2026-10-01,C1,P1,5\n";
    lab.write("in/off/a.csv", csv.as_bytes());
    // no row heads every mapped column: nothing to point at
    lab.write(
        "in/none/a.csv",
        "十月流向\n日期,客户编码,金额\n2026-10-01,C1,5\n".as_bytes(),
    );
    lab.write("in/fixed/a.csv", csv.as_bytes());
    let settings = lab.settings(
        &[
            flow_xlsx_source("title", ""),
            flow_csv_source("off", "header_row = 3\n"),
            flow_csv_source("none", ""),
            flow_csv_source("fixed", "header_row = 4\n"),
        ]
        .concat(),
    );
    let summary = lab.ingest(&settings).await;
    assert_eq!(
        rejections(&summary),
        vec![
            "`title`: in/title/a.xlsx [流向] column `日期, 客户编码, 产品编码, 金额`: missing column \
             (row 1, the first non-empty row, was read as the header; row 3 heads every mapped \
             column: set `header_row = 3` on the source)",
            "`off`: in/off/a.csv column `日期, 客户编码, 产品编码, 金额`: missing column \
             (row 3 is the source's `header_row`; row 4 heads every mapped column: set \
             `header_row = 4` on the source)",
            "`none`: in/none/a.csv column `日期, 客户编码, 产品编码, 金额`: missing column",
        ]
    );
    assert_eq!(
        lab.sales("fixed").await,
        vec![row("2026-10-01", "C1", "P1", 5.0)]
    );
    assert!(lab.sales("title").await.is_empty());
}

/// A header in two rows (多级表头): `日期` and `产品编码` merged down over
/// rows 2–3, `销售` over `数量` and `金额`, `客户` over `客户编码` and
/// `客户名称`, a title in row 1; the rows from row 4.
fn two_row_header_workbook(path: &Path) {
    two_row_header_sheets(path, &["流向"]);
}

/// `two_row_header_workbook` with one such sheet for each of `names`.
fn two_row_header_sheets(path: &Path, names: &[&str]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut wb = Workbook::new();
    for name in names {
        two_row_header_sheet(wb.add_worksheet().set_name(*name).unwrap());
    }
    wb.save(path).unwrap();
}

fn two_row_header_sheet(ws: &mut rust_xlsxwriter::Worksheet) {
    let plain = Format::new();
    ws.write(0, 0, "十月流向").unwrap();
    ws.merge_range(1, 0, 2, 0, "日期", &plain).unwrap();
    ws.merge_range(1, 1, 1, 2, "客户", &plain).unwrap();
    ws.merge_range(1, 3, 2, 3, "产品编码", &plain).unwrap();
    ws.merge_range(1, 4, 1, 5, "销售", &plain).unwrap();
    for (c, h) in [(1, "客户编码"), (2, "客户名称"), (4, "数量"), (5, "金额")] {
        ws.write(2, c, h).unwrap();
    }
    ws.write_row(3, 0, ["2026-10-01", "C1", "某医院", "P1"])
        .unwrap();
    ws.write_row(3, 4, [1.0, 5.0]).unwrap();
    ws.write_row(4, 0, ["2026-10-02", "C2", "某医院", "P2"])
        .unwrap();
    ws.write_row(4, 4, [1.0, 7.5]).unwrap();
}

/// A workbook of one sheet a month, each headed in two rows: the other
/// sheet is headed like the one read once its header is filled from its
/// merged cells, and is named in the note a source without `sheet` gives.
#[tokio::test]
async fn other_sheets_headed_in_two_rows_are_named_like_the_one_read() {
    let lab = Lab::new();
    two_row_header_sheets(&lab.path("in/m/flow.xlsx"), &["10月", "11月"]);
    // the same as Excel 2003 XML, whose first pass reads the header rows
    let sheet = |name: &str| {
        format!(
            r#"<Worksheet ss:Name="{name}"><Table><Row><Cell><Data ss:Type="String">十月流向</Data></Cell></Row><Row><Cell ss:MergeDown="1"><Data ss:Type="String">日期</Data></Cell><Cell ss:MergeAcross="1"><Data ss:Type="String">客户</Data></Cell><Cell ss:MergeDown="1"><Data ss:Type="String">产品编码</Data></Cell><Cell ss:MergeAcross="1"><Data ss:Type="String">销售</Data></Cell></Row><Row><Cell ss:Index="2"><Data ss:Type="String">客户编码</Data></Cell><Cell><Data ss:Type="String">客户名称</Data></Cell><Cell ss:Index="5"><Data ss:Type="String">数量</Data></Cell><Cell><Data ss:Type="String">金额</Data></Cell></Row><Row><Cell><Data ss:Type="String">2026-10-01</Data></Cell><Cell><Data ss:Type="String">C1</Data></Cell><Cell ss:Index="4"><Data ss:Type="String">P1</Data></Cell><Cell ss:Index="6"><Data ss:Type="Number">5</Data></Cell></Row></Table></Worksheet>"#
        )
    };
    lab.write(
        "in/x/flow.xls",
        format!(
            r#"<?xml version="1.0"?><Workbook xmlns="urn:schemas-microsoft-com:office:spreadsheet" xmlns:ss="urn:schemas-microsoft-com:office:spreadsheet">{}{}</Workbook>"#,
            sheet("10月"),
            sheet("11月")
        )
        .as_bytes(),
    );
    let settings = lab.settings(&format!(
        "{}{}",
        flow_xlsx_source("m", "header_row = 3\n"),
        flow_source("x", "in/x/*.xls").replace("sheet = \"流向\"\n", "")
    ));
    let summary = lab.ingest(&settings).await;
    assert!(summary.rejections.is_empty(), "{:?}", rejections(&summary));
    let notes: Vec<_> = summary
        .notes
        .iter()
        .map(|n| format!("{} [{}]: {}", n.file, n.sheet, n.note))
        .collect();
    let note = "sheet `11月` is headed like `10月` but not read: a source without `sheet` reads \
                the first sheet only; add a source with `sheet = \"11月\"` if its rows belong in \
                the warehouse";
    assert_eq!(
        notes,
        [
            format!("in/m/flow.xlsx [10月]: {note}"),
            format!("in/x/flow.xls [10月]: {note}")
        ]
    );
    assert_eq!(
        lab.sales("m").await,
        vec![
            row("2026-10-01", "C1", "P1", 5.0),
            row("2026-10-02", "C2", "P2", 7.5),
        ]
    );
    assert_eq!(
        lab.sales("x").await,
        vec![row("2026-10-01", "C1", "P1", 5.0)]
    );
}

#[tokio::test]
async fn a_header_in_two_rows_reads_the_labels_merged_down_into_it() {
    let lab = Lab::new();
    two_row_header_workbook(&lab.path("in/two/a.xlsx"));
    two_row_header_workbook(&lab.path("in/unset/a.xlsx"));
    // `客户` spans two columns: a group label, not a column's header
    two_row_header_workbook(&lab.path("in/group/a.xlsx"));
    let mut sources = vec![
        flow_xlsx_source("two", "header_row = 3\n"),
        flow_xlsx_source("unset", ""),
        format!(
            "[[sources]]\nname = \"group\"\ndataset = \"sales\"\nkind = \"excel\"\npath = \"in/group/*.xlsx\"\nheader_row = 3\n\
             columns = {{ invoice_date = \"日期\", customer_id = \"客户\", product_id = \"产品编码\", amount = \"金额\" }}\n"
        ),
    ];
    // what LibreOffice writes of the same sheet: xls (merges from calamine),
    // ods (from its content.xml) and its own xlsx
    let office = soffice();
    if let Some(soffice) = &office {
        let made = lab.path("made");
        std::fs::create_dir_all(&made).unwrap();
        two_row_header_workbook(&made.join("a.xlsx"));
        for (to, dir) in [
            ("xls", "in/lo-xls"),
            ("ods", "in/lo-ods"),
            ("xlsx:Calc MS Excel 2007 XML", "in/lo-xlsx"),
        ] {
            convert(soffice, &made.join("a.xlsx"), to, &lab.path(dir));
        }
        sources.push(flow_source("lo-xls", "in/lo-xls/*.xls"));
        sources.push(flow_source("lo-ods", "in/lo-ods/*.ods"));
        sources.push(flow_source("lo-xlsx", "in/lo-xlsx/*.xlsx"));
    } else {
        require("LibreOffice (soffice)", false);
    }
    let settings = lab.settings(&sources.concat());
    let summary = lab.ingest(&settings).await;
    assert_eq!(
        rejections(&summary),
        vec![
            "`unset`: in/unset/a.xlsx [流向] column `日期, 客户编码, 产品编码, 金额`: missing column \
             (row 1, the first non-empty row, was read as the header; row 3 heads every mapped \
             column: set `header_row = 3` on the source)",
            "`group`: in/group/a.xlsx [流向] column `客户`: missing column (`客户` is a group \
             label, the merged cells B2:C2 above the header over `客户编码`, `客户名称`: map the \
             column that holds the value by its own header)",
        ]
    );
    let loaded = vec![
        row("2026-10-01", "C1", "P1", 5.0),
        row("2026-10-02", "C2", "P2", 7.5),
    ];
    assert_eq!(lab.sales("two").await, loaded);
    if office.is_some() {
        assert_eq!(lab.sales("lo-xls").await, loaded);
        assert_eq!(lab.sales("lo-ods").await, loaded);
        assert_eq!(lab.sales("lo-xlsx").await, loaded);
    }
}

fn flow_workbook(path: &Path) {
    let mut wb = Workbook::new();
    flow_rows(wb.add_worksheet().set_name("流向").unwrap());
    wb.add_worksheet().set_name("说明").unwrap();
    wb.save(path).unwrap();
}

/// The flow workbook's rows (see `flow_expected`): a title, the header in
/// row 3, then three rows typed in three ways.
fn flow_rows(ws: &mut rust_xlsxwriter::Worksheet) {
    let date = Format::new().set_num_format("yyyy-mm-dd");
    ws.write(0, 0, "十月流向（经销商甲）").unwrap();
    for (c, h) in ["日期", "客户编码", "产品编码", "数量", "金额"]
        .iter()
        .enumerate()
    {
        ws.write(2, c as u16, *h).unwrap();
    }
    ws.write_datetime_with_format(3, 0, ExcelDateTime::from_ymd(2026, 10, 3).unwrap(), &date)
        .unwrap();
    ws.write(3, 1, 1001.0).unwrap();
    ws.write(3, 2, "P1").unwrap();
    ws.write(3, 3, 10).unwrap();
    ws.write(3, 4, 1500.5).unwrap();
    // a date typed as an unformatted serial number and an amount stored as text
    ws.write(4, 0, 46_330.0).unwrap();
    ws.write(4, 1, "C2").unwrap();
    ws.write(4, 2, "P2").unwrap();
    ws.write(4, 4, "¥1,000").unwrap();
    ws.write(5, 0, "2026年10月07日").unwrap();
    ws.write(5, 1, "C3").unwrap();
    ws.write(5, 2, "P1").unwrap();
    ws.write(5, 4, -20).unwrap();
}

fn flow_expected() -> Vec<(String, String, String, f64)> {
    vec![
        row("2026-10-03", "1001", "P1", 1500.5),
        // serial 46330 in the 1900 system: 45658 is 2025-01-01, + 365 + 307 days
        row("2026-11-04", "C2", "P2", 1000.0),
        row("2026-10-07", "C3", "P1", -20.0),
    ]
}

/// A CSV sales source `name` reading `in/<name>/*.csv` under the flow
/// headers; `extra` holds further keys, each ending in a newline.
fn flow_csv_source(name: &str, extra: &str) -> String {
    csv_sales_source(name, extra, FLOW_COLUMNS)
}

/// The flow headers and the rep's, `代表`.
const FLOW_REP_COLUMNS: &str = r#"columns = { invoice_date = "日期", customer_id = "客户编码", product_id = "产品编码", amount = "金额", rep_id = "代表" }"#;

/// A CSV sales source `name` reading `in/<name>/*.csv` with `columns` (a
/// `columns = { … }` line); `extra` holds further keys, each ending in a
/// newline.
fn csv_sales_source(name: &str, extra: &str, columns: &str) -> String {
    csv_sales_source_at(name, &format!("in/{name}/*.csv"), extra, columns)
}

/// `csv_sales_source` reading `path`.
pub fn csv_sales_source_at(name: &str, path: &str, extra: &str, columns: &str) -> String {
    format!(
        "[[sources]]\nname = \"{name}\"\ndataset = \"sales\"\nkind = \"csv\"\npath = \"{path}\"\n{extra}{columns}\n"
    )
}

/// The English headers of CSVs other test files write (date, customer,
/// product, amount).
pub const ENGLISH_COLUMNS: &str = r#"columns = { invoice_date = "date", customer_id = "customer", product_id = "product", amount = "amount" }"#;

fn flow_xlsx_source(name: &str, extra: &str) -> String {
    format!(
        "[[sources]]\nname = \"{name}\"\ndataset = \"sales\"\nkind = \"excel\"\npath = \"in/{name}/*.xlsx\"\n{extra}{FLOW_COLUMNS}\n"
    )
}

fn flow_source(name: &str, glob: &str) -> String {
    format!(
        "[[sources]]\nname = \"{name}\"\ndataset = \"sales\"\nkind = \"excel\"\npath = \"{glob}\"\nsheet = \"流向\"\nheader_row = 3\n{FLOW_COLUMNS}\n"
    )
}

#[tokio::test]
async fn xlsx_cells_of_every_type_are_coerced() {
    let lab = Lab::new();
    std::fs::create_dir_all(lab.path("in/xlsx")).unwrap();
    std::fs::create_dir_all(lab.path("in/xlsm")).unwrap();
    flow_workbook(&lab.path("in/xlsx/october.xlsx"));
    // the same package under the macro-enabled extension takes the same path
    std::fs::copy(
        lab.path("in/xlsx/october.xlsx"),
        lab.path("in/xlsm/october.xlsm"),
    )
    .unwrap();
    let settings = lab.settings(&format!(
        "{}{}",
        flow_source("flow", "in/xlsx/*.xlsx"),
        flow_source("xlsm", "in/xlsm/*.xlsm")
    ));
    let summary = lab.ingest(&settings).await;
    assert!(summary.rejections.is_empty(), "{:?}", rejections(&summary));
    let mut expected = flow_expected();
    expected.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(lab.sales("flow").await, expected);
    assert_eq!(lab.sales("xlsm").await, expected);
}

/// A cell holding an error value (`#N/A`, what a failed VLOOKUP leaves) has
/// no text: a required id so is missing, an optional key absent. Stored as
/// text, `#N/A` became a product id, and the lines sharing an `#N/A`
/// invoice number were merged into one by the upsert.
#[tokio::test]
async fn an_error_value_in_an_id_or_text_column_is_no_value() {
    let lab = Lab::new();
    std::fs::create_dir_all(lab.path("in/x")).unwrap();
    let plain = lab.path("in/x/plain.xlsx.tmp");
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    ws.write_row(
        0,
        0,
        ["日期", "客户编码", "产品编码", "金额", "单号", "行号"],
    )
    .unwrap();
    // 999 marks the cells that become `#N/A` below
    for (r, (date, product, amount, invoice)) in [
        ("2026-10-01", "P1", 10.0, 999.0),
        ("2026-10-02", "P2", 20.0, 999.0),
        ("2026-10-03", "", 30.0, 7.0),
    ]
    .into_iter()
    .enumerate()
    {
        let r = r as u32 + 1;
        ws.write_row(r, 0, [date, "C1", product]).unwrap();
        if product.is_empty() {
            ws.write(r, 2, 999.0).unwrap();
        }
        ws.write(r, 3, amount).unwrap();
        ws.write(r, 4, invoice).unwrap();
        ws.write(r, 5, 1.0).unwrap();
    }
    wb.save(&plain).unwrap();
    rewrite_zip(&plain, &lab.path("in/x/a.xlsx"), |name, data| {
        if name != "xl/worksheets/sheet1.xml" {
            return data;
        }
        let xml = String::from_utf8(data).unwrap();
        let marked = xml.matches("><v>999</v>").count();
        assert_eq!(marked, 3, "{xml}");
        xml.replace("><v>999</v>", " t=\"e\"><v>#N/A</v>")
            .into_bytes()
    });
    std::fs::remove_file(plain).unwrap();
    let settings = lab.settings(
        r#"
[ingest]
max_reject_ratio = 0.5
[[sources]]
name = "x"
dataset = "sales"
kind = "excel"
path = "in/x/*.xlsx"
columns = { invoice_date = "日期", customer_id = "客户编码", product_id = "产品编码", amount = "金额", invoice_no = "单号", line_no = "行号" }
"#,
    );
    let summary = lab.ingest(&settings).await;
    assert_eq!(
        rejections(&summary),
        ["`x`: in/x/a.xlsx [Sheet1] row 4 cell C4 column `产品编码` value `#N/A`: missing required field"]
    );
    let stored = stored_sales(&lab, "x").await;
    let lines: Vec<(&str, &str, f64, Option<&str>)> = stored
        .iter()
        .map(|s| (s.0.as_str(), s.2.as_str(), s.3, s.5.as_deref()))
        .collect();
    assert_eq!(
        lines,
        [
            ("2026-10-01", "P1", 10.0, None),
            ("2026-10-02", "P2", 20.0, None)
        ]
    );
}

/// What a workbook holds as the results of its formulas.
#[derive(Clone, Copy, PartialEq)]
pub enum Saved {
    /// the calculated results; here in a workbook marked `fullCalcOnLoad`,
    /// as XlsxWriter writes the results a program gives it, and they load
    Results,
    /// none, as openpyxl writes a formula: `<f>D2*2</f><v />`
    Nothing,
    /// 0 for each, in a workbook marked `fullCalcOnLoad` (recalculate when
    /// opened), as XlsxWriter and rust_xlsxwriter write a formula
    Placeholders,
    /// 0 for each, with no such mark: results that are really 0, as
    /// Excel saves them
    Zeros,
}

/// A `流向` sales workbook whose `金额` is the formula `=D{row}*2`, with
/// `saved` as its results. Its unmapped column F holds `=TODAY()` with no
/// result whatever `saved` is.
pub fn formula_workbook(path: &Path, saved: Saved) {
    let tmp = path.with_extension("tmp.xlsx");
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet().set_name("流向").unwrap();
    ws.write_row(
        0,
        0,
        ["日期", "客户编码", "产品编码", "数量", "金额", "制表日"],
    )
    .unwrap();
    for (r, (date, customer, product, quantity)) in [
        ("2026-10-01", "C1", "P1", 3.0),
        ("2026-10-02", "C2", "P2", 4.0),
    ]
    .into_iter()
    .enumerate()
    {
        let r = r as u32 + 1;
        ws.write_row(r, 0, [date, customer, product]).unwrap();
        ws.write(r, 3, quantity).unwrap();
        let result = if saved == Saved::Results {
            quantity * 2.0
        } else {
            0.0
        };
        let formula =
            rust_xlsxwriter::Formula::new(format!("=D{}*2", r + 1)).set_result(result.to_string());
        ws.write_formula(r, 4, formula).unwrap();
        ws.write_formula(r, 5, "=TODAY()").unwrap();
    }
    wb.save(&tmp).unwrap();
    rewrite_zip(&tmp, path, |name, data| {
        let mut xml = String::from_utf8(data).unwrap();
        if name == "xl/workbook.xml" {
            // rust_xlsxwriter marks every workbook, as Excel's own saves
            // are not
            assert!(xml.contains(r#"<calcPr calcId="124519" fullCalcOnLoad="1"/>"#));
            if saved == Saved::Zeros {
                xml = xml.replace(r#" fullCalcOnLoad="1""#, "");
            }
        }
        if name == "xl/worksheets/sheet1.xml" {
            assert_eq!(xml.matches("<f>TODAY()</f><v>0</v>").count(), 2, "{xml}");
            xml = xml.replace("<f>TODAY()</f><v>0</v>", "<f>TODAY()</f><v />");
            if saved == Saved::Nothing {
                assert_eq!(xml.matches("</f><v>0</v>").count(), 2, "{xml}");
                xml = xml.replace("</f><v>0</v>", "</f><v />");
            }
        }
        xml.into_bytes()
    });
    std::fs::remove_file(tmp).unwrap();
}

/// A formula with no saved result (a workbook written by openpyxl, which
/// does not calculate) was read as an empty cell: a required amount became
/// `missing required field` with an empty value the user could not find in
/// Excel, which shows the calculated number, and an optional field was
/// silently left out. A formula whose saved result is XlsxWriter's
/// placeholder 0, in a workbook marked to be recalculated when opened,
/// loaded as an amount of 0 without a word. Both files are now refused
/// naming the cell and its formula; one with saved results loads them, a
/// saved 0 without the mark (Excel's own save) loads as 0, and an
/// uncalculated formula in a column no field maps does not matter.
#[tokio::test]
async fn a_formula_with_no_saved_result_refuses_its_file_naming_the_cell() {
    let lab = Lab::new();
    let kinds = [
        ("raw", Saved::Nothing),
        ("placeholders", Saved::Placeholders),
        ("saved", Saved::Results),
        ("zeros", Saved::Zeros),
    ];
    let mut sources = String::new();
    for (dir, saved) in kinds {
        std::fs::create_dir_all(lab.path(&format!("in/{dir}"))).unwrap();
        formula_workbook(&lab.path(&format!("in/{dir}/a.xlsx")), saved);
        sources += &flow_xlsx_source(dir, "");
    }
    let settings = lab.settings(&sources);
    let summary = lab.ingest(&settings).await;
    assert_eq!(
        rejections(&summary),
        [
            "`raw`: in/raw/a.xlsx [流向] column `金额`: cannot open file (cell E2 holds the \
          formula `=D2*2` but no saved result, as a file written by a program that does not \
          calculate formulas does; open the file in Excel or LibreOffice and save it)",
            "`placeholders`: in/placeholders/a.xlsx [流向] column `金额`: cannot open file \
          (cell E2 holds the formula `=D2*2` with the saved result 0 in a workbook marked to be \
          recalculated when opened: the placeholder a program that does not calculate formulas \
          (XlsxWriter, rust_xlsxwriter) stores; open the file in Excel and save it, or in \
          LibreOffice use Data ▸ Calculate ▸ Recalculate Hard, then save)"
        ]
    );
    assert!(lab.sales("raw").await.is_empty());
    assert!(lab.sales("placeholders").await.is_empty());
    assert_eq!(
        lab.sales("saved").await,
        [
            row("2026-10-01", "C1", "P1", 6.0),
            row("2026-10-02", "C2", "P2", 8.0)
        ]
    );
    assert_eq!(
        lab.sales("zeros").await,
        [
            row("2026-10-01", "C1", "P1", 0.0),
            row("2026-10-02", "C2", "P2", 0.0)
        ]
    );
}

/// Files that match the pattern but are no workbooks: the owner file Excel
/// keeps while a colleague has the workbook open, and the AppleDouble
/// companion a Mac writes on a share. Neither is read, so neither degrades
/// the run.
#[tokio::test]
async fn office_owner_files_and_mac_companions_are_not_sources() {
    let lab = Lab::new();
    lab.write("in/x/~$october.xlsx", b"\x08colleague\x00\x00");
    lab.write(
        "in/x/._october.xlsx",
        b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X",
    );
    flow_workbook(&lab.path("in/x/october.xlsx"));
    let settings = lab.settings(&flow_source("flow", "in/x/*.xlsx"));
    let summary = lab.ingest(&settings).await;
    assert!(summary.rejections.is_empty(), "{:?}", rejections(&summary));
    assert_eq!((summary.files_loaded, summary.files_refused), (3, 0));
    let mut expected = flow_expected();
    expected.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(lab.sales("flow").await, expected);
}

/// `flow_workbook` saved with the 1904 date system (Mac Excel's).
fn mac_flow_workbook(path: &Path) {
    let tmp = path.with_extension("1900.xlsx");
    flow_workbook(&tmp);
    rewrite_zip(&tmp, path, |name, data| {
        if name == "xl/workbook.xml" {
            let xml = String::from_utf8(data).unwrap();
            assert!(xml.contains("<workbookPr "));
            xml.replace("<workbookPr ", "<workbookPr date1904=\"1\" ")
                .into_bytes()
        } else {
            data
        }
    });
    std::fs::remove_file(tmp).unwrap();
}

/// What `flow_workbook` holds when read in the 1904 date system, sorted.
fn mac_flow_expected() -> Vec<(String, String, String, f64)> {
    vec![
        // text dates are not serials: unchanged
        row("2026-10-07", "C3", "P1", -20.0),
        // 2026-10-03 and 2026-11-04 + 1,462 days
        row("2030-10-04", "1001", "P1", 1500.5),
        row("2030-11-05", "C2", "P2", 1000.0),
    ]
}

/// The same workbook saved with the 1904 date system: every serial, typed or
/// bare, counts from 1904-01-01, 1,462 days later than in the 1900 system, as
/// Excel itself would show them.
#[tokio::test]
async fn xlsx_serials_follow_the_workbooks_1904_epoch() {
    let lab = Lab::new();
    std::fs::create_dir_all(lab.path("in/mac")).unwrap();
    mac_flow_workbook(&lab.path("in/mac/october.xlsx"));
    let settings = lab.settings(&flow_source("mac", "in/mac/*.xlsx"));
    let summary = lab.ingest(&settings).await;
    assert!(summary.rejections.is_empty(), "{:?}", rejections(&summary));
    assert_eq!(lab.sales("mac").await, mac_flow_expected());
}

/// `flow_workbook` as an Excel binary workbook (written by `tests/xlsb.rs`):
/// a date-styled serial, a bare serial, a text date, a numeric id, shared
/// and inline strings, an amount stored as text.
fn flow_xlsb(path: &Path, date1904: bool, declared_end: Option<(u32, u32)>, bad_string: bool) {
    use crate::xlsb::{Sheet, Value};
    let p2 = if bad_string { 99 } else { 0 };
    let header = ["日期", "客户编码", "产品编码", "数量", "金额"];
    let mut rows: Vec<Vec<Option<Value<'_>>>> = vec![
        vec![Some(Value::Inline("十月流向（经销商甲）"))],
        vec![],
        header.iter().map(|h| Some(Value::Shared(h))).collect(),
        vec![
            Some(Value::Date(46_298.0)),
            Some(Value::Number(1001.0)),
            Some(Value::Shared("P1")),
            Some(Value::Number(10.0)),
            Some(Value::Number(1500.5)),
        ],
        vec![
            Some(Value::Number(46_330.0)),
            Some(Value::Shared("C2")),
            Some(Value::Shared("P2")),
            None,
            Some(Value::Inline("¥1,000")),
        ],
        vec![
            Some(Value::Inline("2026年10月07日")),
            Some(Value::Shared("C3")),
            Some(Value::Shared("P1")),
            None,
            Some(Value::Number(-20.0)),
        ],
    ];
    if p2 > 0 {
        // a shared-string index far past the table: a corrupt file
        rows[4][2] = Some(Value::SharedIndex(p2));
    }
    crate::xlsb::write(
        path,
        &[
            Sheet {
                name: "说明",
                rows: vec![vec![Some(Value::Inline("见流向表"))]],
                declared_end: None,
            },
            Sheet {
                name: "流向",
                rows,
                declared_end,
            },
        ],
        date1904,
    );
}

#[tokio::test]
async fn xlsb_workbooks_load_like_the_xlsx_in_either_date_system() {
    let lab = Lab::new();
    std::fs::create_dir_all(lab.path("in/b")).unwrap();
    std::fs::create_dir_all(lab.path("in/mac")).unwrap();
    flow_xlsb(&lab.path("in/b/october.xlsb"), false, None, false);
    flow_xlsb(&lab.path("in/mac/october.xlsb"), true, None, false);
    let settings = lab.settings(&format!(
        "{}{}",
        flow_source("xlsb", "in/b/*.xlsb"),
        flow_source("mac", "in/mac/*.xlsb")
    ));
    let summary = lab.ingest(&settings).await;
    assert!(summary.rejections.is_empty(), "{:?}", rejections(&summary));
    let mut expected = flow_expected();
    expected.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(lab.sales("xlsb").await, expected);
    assert_eq!(lab.sales("mac").await, mac_flow_expected());
}

#[tokio::test]
async fn hostile_xlsb_files_are_refused_without_a_panic() {
    let lab = Lab::new();
    std::fs::create_dir_all(lab.path("in/b")).unwrap();
    flow_xlsb(&lab.path("in/b/a-good.xlsb"), false, None, false);
    flow_xlsb(
        &lab.path("in/b/b-absurd.xlsb"),
        false,
        Some((1_048_576, 4)),
        false,
    );
    flow_xlsb(&lab.path("in/b/c-bad-string.xlsb"), false, None, true);
    let mut truncated = std::fs::read(lab.path("in/b/a-good.xlsb")).unwrap();
    truncated.truncate(truncated.len() / 2);
    lab.write("in/b/d-truncated.xlsb", &truncated);
    let settings = lab.settings(&flow_source("flow", "in/b/*.xlsb"));
    let summary = lab.ingest(&settings).await;
    let got = rejections(&summary);
    assert_has(&got, "`flow`: in/b/b-absurd.xlsb [流向]: cannot open file (sheet declares absurd dimensions (1048577 rows × 5 columns, Excel allows 1048576 × 16384))");
    assert_has(&got, "`flow`: in/b/c-bad-string.xlsb [流向]: cannot open file (the spreadsheet parser failed on this file)");
    assert!(
        got.iter()
            .any(|l| l.starts_with("`flow`: in/b/d-truncated.xlsb: cannot open file (")),
        "{got:#?}"
    );
    assert_eq!(got.len(), 3, "{got:#?}");
    assert_eq!(summary.files_refused, 3);
    let mut expected = flow_expected();
    expected.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(lab.sales("flow").await, expected);
}

/// A one-sheet OpenDocument spreadsheet written by hand around `rows`
/// (`<table:table-row>` elements).
fn ods(path: &Path, rows: &str) {
    ods_with_settings(path, "", rows);
}

/// `ods` with `settings` (a `<table:calculation-settings>` element) before
/// the sheet, where ODF and LibreOffice put it.
fn ods_with_settings(path: &Path, settings: &str, rows: &str) {
    let content = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2"><office:body><office:spreadsheet>{settings}<table:table table:name="流向">{rows}</table:table></office:spreadsheet></office:body></office:document-content>"#
    );
    let manifest = r#"<?xml version="1.0" encoding="UTF-8"?><manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2"><manifest:file-entry manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/><manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/></manifest:manifest>"#;
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in [
        ("mimetype", "application/vnd.oasis.opendocument.spreadsheet"),
        ("META-INF/manifest.xml", manifest),
        ("content.xml", content.as_str()),
    ] {
        zip.start_file(name, stored).unwrap();
        zip.write_all(data.as_bytes()).unwrap();
    }
    zip.finish().unwrap();
}

/// The header row of the ods flow files: date, customer, product, amount.
fn ods_flow_header() -> String {
    let cells: String = ["日期", "客户编码", "产品编码", "金额"]
        .iter()
        .map(|h| ods_text(h))
        .collect();
    format!("<table:table-row>{cells}</table:table-row>")
}

fn ods_text(s: &str) -> String {
    format!(
        r#"<table:table-cell office:value-type="string"><text:p>{s}</text:p></table:table-cell>"#
    )
}

/// A number in an ods date column counts days from the file's
/// `table:null-date`: 1899-12-30 unless the file names another, such as the
/// 1904-01-01 LibreOffice writes for a workbook in Mac Excel's date system.
#[tokio::test]
async fn ods_serials_count_from_the_files_null_date() {
    let lab = Lab::new();
    std::fs::create_dir_all(lab.path("in/o")).unwrap();
    let rows = format!(
        r#"{}<table:table-row><table:table-cell office:value-type="float" office:value="46330"><text:p>46330</text:p></table:table-cell>{}{}<table:table-cell office:value-type="float" office:value="7"><text:p>7</text:p></table:table-cell></table:table-row>"#,
        ods_flow_header(),
        ods_text("C1"),
        ods_text("P1")
    );
    ods(&lab.path("in/o/a-default.ods"), &rows);
    ods_with_settings(
        &lab.path("in/o/b-mac.ods"),
        r#"<table:calculation-settings table:case-sensitive="false"><table:null-date table:date-value="1904-01-01"/></table:calculation-settings>"#,
        &rows,
    );
    ods_with_settings(
        &lab.path("in/o/c-starcalc.ods"),
        r#"<table:calculation-settings><table:null-date table:date-value="1900-01-01"/></table:calculation-settings>"#,
        &rows,
    );
    let settings = lab.settings(&format!(
        "[[sources]]\nname = \"ods\"\ndataset = \"sales\"\nkind = \"excel\"\npath = \"in/o/*.ods\"\n{FLOW_COLUMNS}\n"
    ));
    let summary = lab.ingest(&settings).await;
    assert!(summary.rejections.is_empty(), "{:?}", rejections(&summary));
    assert_eq!(
        lab.sales("ods").await,
        vec![
            // 1899-12-30 + 46,330 days, the date Excel's 1900 system gives
            row("2026-11-04", "C1", "P1", 7.0),
            // LibreOffice's "01/01/1900" option, two days after the default
            row("2026-11-06", "C1", "P1", 7.0),
            // 1904-01-01 + 46,330 days: 1,462 days after the default
            row("2030-11-05", "C1", "P1", 7.0),
        ]
    );
    // the source names no sheet: the rows keep the one read
    let sheets: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT sheet FROM sales WHERE source = 'ods'")
            .fetch_all(&lab.warehouse().await)
            .await
            .unwrap();
    assert_eq!(sheets, ["流向"]);
}

/// calamine expands an ods sheet densely (repeated rows and columns
/// included), so a tiny file can ask for gigabytes: such a file is refused
/// before calamine opens it, while the repeated empty rows every LibreOffice
/// sheet ends with cost nothing.
#[tokio::test]
async fn an_ods_expanding_past_the_cell_cap_is_refused_and_a_normal_one_loads() {
    let lab = Lab::new();
    std::fs::create_dir_all(lab.path("in/o")).unwrap();
    let header = ods_flow_header();
    let line = format!(
        r#"<table:table-row><table:table-cell office:value-type="date" office:date-value="2026-10-03"><text:p>2026-10-03</text:p></table:table-cell>{}{}<table:table-cell office:value-type="float" office:value="10.5"><text:p>10.5</text:p></table:table-cell></table:table-row>"#,
        ods_text("C1"),
        ods_text("P1")
    );
    let libreoffice_tail = r#"<table:table-row table:number-rows-repeated="1048574"><table:table-cell table:number-columns-repeated="1024"/></table:table-row>"#;
    ods(
        &lab.path("in/o/a-good.ods"),
        &format!("{header}{line}{libreoffice_tail}"),
    );
    let bomb = r#"<table:table-row table:number-rows-repeated="2000000"><table:table-cell table:number-columns-repeated="10" office:value-type="float" office:value="1"/></table:table-row>"#;
    ods(&lab.path("in/o/b-repeated.ods"), &format!("{header}{bomb}"));
    assert!(
        std::fs::metadata(lab.path("in/o/b-repeated.ods"))
            .unwrap()
            .len()
            < 4096
    );
    let settings = lab.settings(&format!(
        "[[sources]]\nname = \"ods\"\ndataset = \"sales\"\nkind = \"excel\"\npath = \"in/o/*.ods\"\n{FLOW_COLUMNS}\n"
    ));
    let summary = lab.ingest(&settings).await;
    assert_eq!(
        rejections(&summary),
        vec!["`ods`: in/o/b-repeated.ods: cannot open file (the sheets span over 6000000 cells once repeated rows and columns are expanded, more than salesbatch reads from an ods file; save it as xlsx or csv)".to_string()]
    );
    assert_eq!(
        lab.sales("ods").await,
        vec![row("2026-10-03", "C1", "P1", 10.5)]
    );
}

#[tokio::test]
async fn each_reject_reason_names_file_row_cell_column_and_value() {
    let lab = Lab::new();
    let mut good = String::from("日期,客户编码,产品编码,金额,代表\n");
    for d in 1..=20 {
        good.push_str(&format!("2026-10-{d:02},C1,P1,10,R1\n"));
    }
    // rows 22–26: one per row-level reason, in the table's field order
    good.push_str(",C1,P1,10,R1\n");
    good.push_str("2026-13-01,C1,P1,10,R1\n");
    good.push_str("2026-10-01,C1,P1,十元,R1\n");
    good.push_str("2026-10-01,C9,P1,10,R1\n");
    good.push_str("2026-10-01,C1,P1,10,R7\n");
    // a date in a form only `date_format` reads: the rejection says which
    good.push_str("2026.10.03,C1,P1,10,R1\n");
    lab.write("in/flow/good.csv", good.as_bytes());
    // 1 of 2 rows bad: over the ratio, nothing from this file loads
    lab.write(
        "in/flow/bad.csv",
        "日期,客户编码,产品编码,金额,代表\n2026-10-01,C1,P1,99,R1\n2026-10-02,C1,P1,NaN元,R1\n"
            .as_bytes(),
    );
    lab.write(
        "in/flow/layout.csv",
        "日期,客户,产品编码,金额\n2026-10-01,C1,P1,5\n".as_bytes(),
    );
    let settings = lab.settings(&format!(
        "[ingest]\nmax_reject_ratio = 0.25\n{}",
        csv_sales_source("flow", "", FLOW_REP_COLUMNS)
    ));
    let summary = lab.ingest(&settings).await;
    let got = rejections(&summary);
    let good = "`flow`: in/flow/good.csv";
    for wanted in [
        format!("{good} row 22 cell A22 column `日期` value ``: missing required field"),
        format!("{good} row 23 cell A23 column `日期` value `2026-13-01`: unparsable date"),
        format!("{good} row 24 cell D24 column `金额` value `十元`: unparsable number"),
        format!("{good} row 25 cell B25 column `客户编码` value `C9`: unknown customer id"),
        format!("{good} row 26 cell E26 column `代表` value `R7`: unknown rep id"),
        format!(
            "{good} row 27 cell A27 column `日期` value `2026.10.03`: unparsable date \
             (set `date_format = \"%Y.%m.%d\"` on the source to read this form)"
        ),
        "`flow`: in/flow/bad.csv row 3 cell D3 column `金额` value `NaN元`: unparsable number"
            .to_string(),
        "`flow`: in/flow/bad.csv: reject ratio exceeded (1 of 2 rows rejected; nothing from this file was loaded)".to_string(),
        "`flow`: in/flow/layout.csv column `客户编码, 代表`: missing column".to_string(),
    ] {
        assert_has(&got, &wanted);
    }
    assert_eq!(got.len(), 9, "{got:#?}");
    // only good.csv's 20 clean rows are in the warehouse
    assert_eq!(lab.sales("flow").await.len(), 20);
    assert!((lab.total("flow").await - 200.0).abs() < 1e-9);
    assert_eq!((summary.files_loaded, summary.files_refused), (3, 2));
}

/// An xlsx whose worksheet XML declares `A1:XFD1048577` and claims nothing else.
fn absurd_xlsx(path: &Path) {
    let tmp = path.with_extension("tmp.xlsx");
    flow_workbook(&tmp);
    rewrite_zip(&tmp, path, |name, data| {
        if name == "xl/worksheets/sheet1.xml" {
            let xml = String::from_utf8(data).unwrap();
            let start = xml.find("<dimension ref=\"").unwrap() + 16;
            let end = start + xml[start..].find('"').unwrap();
            format!("{}A1:XFD1048577{}", &xml[..start], &xml[end..]).into_bytes()
        } else {
            data
        }
    });
    std::fs::remove_file(tmp).unwrap();
}

fn rewrite_zip(from: &Path, to: &Path, mut edit: impl FnMut(&str, Vec<u8>) -> Vec<u8>) {
    rewrite_zip_renaming(from, to, |name, data| (name.to_string(), edit(name, data)));
}

/// `rewrite_zip` whose `edit` also names each member anew.
fn rewrite_zip_renaming(
    from: &Path,
    to: &Path,
    mut edit: impl FnMut(&str, Vec<u8>) -> (String, Vec<u8>),
) {
    let mut src = zip::ZipArchive::new(std::fs::File::open(from).unwrap()).unwrap();
    let mut out = zip::ZipWriter::new(std::fs::File::create(to).unwrap());
    for i in 0..src.len() {
        let mut f = src.by_index(i).unwrap();
        let name = f.name().unwrap().to_string();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut data).unwrap();
        let (name, data) = edit(&name, data);
        out.start_file(name.as_str(), zip::write::SimpleFileOptions::default())
            .unwrap();
        out.write_all(&data).unwrap();
    }
    out.finish().unwrap();
}

/// A valid xlsx whose sheet part inflates to 300 MiB of spaces.
fn zip_bomb_xlsx(path: &Path) {
    let tmp = path.with_extension("tmp.xlsx");
    flow_workbook(&tmp);
    rewrite_zip(&tmp, path, |name, data| {
        if name == "xl/worksheets/sheet2.xml" {
            let mut v = data;
            v.resize(300 << 20, b' ');
            v
        } else {
            data
        }
    });
    std::fs::remove_file(tmp).unwrap();
}

#[tokio::test]
async fn hostile_files_are_refused_and_the_good_ones_still_load() {
    let lab = Lab::new();
    std::fs::create_dir_all(lab.path("in/x")).unwrap();
    flow_workbook(&lab.path("in/x/a-good.xlsx"));
    absurd_xlsx(&lab.path("in/x/b-absurd.xlsx"));
    zip_bomb_xlsx(&lab.path("in/x/c-bomb.xlsx"));
    assert!(
        std::fs::metadata(lab.path("in/x/c-bomb.xlsx"))
            .unwrap()
            .len()
            < (2 << 20)
    );
    lab.write(
        "in/x/d-text.xlsx",
        "日期,客户编码\n2026-10-01,C1\n".as_bytes(),
    );
    let mut corrupt = std::fs::read(lab.path("in/x/a-good.xlsx")).unwrap();
    corrupt.truncate(corrupt.len() / 2);
    lab.write("in/x/e-truncated.xlsx", &corrupt);
    lab.write("in/x/f-huge.xlsx", &vec![b'x'; 3 << 20]);
    // what Excel writes for a password-protected workbook: an OLE compound
    // file with the encrypted package inside, not a zip
    {
        let mut cf = cfb::create(lab.path("in/x/h-encrypted.xlsx")).unwrap();
        cf.create_stream("/EncryptionInfo")
            .unwrap()
            .write_all(&[4, 0, 4, 0, 0x40, 0, 0, 0])
            .unwrap();
        cf.create_stream("/EncryptedPackage")
            .unwrap()
            .write_all(&[0u8; 4096])
            .unwrap();
        cf.flush().unwrap();
    }
    let mut other = Workbook::new();
    other.add_worksheet().set_name("Sheet1").unwrap();
    other.add_worksheet().set_name("汇总").unwrap();
    other.save(lab.path("in/x/g-nosheet.xlsx")).unwrap();
    // HTML "xls" exports: spans reaching past a sheet's 16,384 columns, and
    // a cell holding more than Excel's 32,767 characters
    lab.write(
        "in/x/i-wide.xlsx",
        format!(
            "<table><tr>{}</tr></table>",
            "<td colspan=1000>日期</td>".repeat(17)
        )
        .as_bytes(),
    );
    lab.write(
        "in/x/j-giant-cell.xlsx",
        format!(
            "<html><table><tr><td>{}</td></tr></table>",
            "流".repeat(50_000)
        )
        .as_bytes(),
    );
    let settings = lab.settings(&format!(
        "[ingest]\nmax_file_mb = 2\n{}",
        flow_source("flow", "in/x/*.xlsx")
    ));
    let summary = lab.ingest(&settings).await;
    let got = rejections(&summary);
    let open =
        |file: &str, detail: &str| format!("`flow`: in/x/{file}: cannot open file ({detail})");
    assert_has(&got, &open("b-absurd.xlsx [流向]", "sheet declares absurd dimensions (1048577 rows × 16384 columns, Excel allows 1048576 × 16384)"));
    assert!(
        got.iter()
            .any(|l| l
                .starts_with("`flow`: in/x/c-bomb.xlsx: cannot open file (zip bomb suspected:")),
        "{got:#?}"
    );
    assert_has(
        &got,
        &open(
            "d-text.xlsx",
            "the file is comma-separated text, not a workbook: read it with a `kind = \"csv\"` source",
        ),
    );
    assert!(
        got.iter()
            .any(|l| l.starts_with("`flow`: in/x/e-truncated.xlsx: cannot open file (")),
        "{got:#?}"
    );
    assert_has(
        &got,
        &open("f-huge.xlsx", "file is 3 MiB, over max_file_mb = 2"),
    );
    assert_has(
        &got,
        &open(
            "g-nosheet.xlsx",
            "sheet `流向` not found; the workbook has `Sheet1`, `汇总`",
        ),
    );
    assert_has(
        &got,
        &open(
            "h-encrypted.xlsx",
            "the workbook is password-protected (encrypted); save it without a password",
        ),
    );
    assert_has(
        &got,
        &open(
            "i-wide.xlsx",
            "the table reaches cell YCV1, beyond the 1048576 rows × 16384 columns a sheet can hold",
        ),
    );
    assert_has(
        &got,
        &open(
            "j-giant-cell.xlsx",
            "cell A1 holds more text than a cell can (Excel allows 32,767 characters)",
        ),
    );
    assert_eq!(got.len(), 9, "{got:#?}");
    let mut expected = flow_expected();
    expected.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(lab.sales("flow").await, expected);
}

/// A one-sheet workbook with the flow headers in row 1 and one sale of
/// `amount` to `customer`.
fn one_sale_workbook(path: &Path, customer: &str, amount: f64) {
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    for (c, h) in ["日期", "客户编码", "产品编码", "金额"].iter().enumerate() {
        ws.write(0, c as u16, *h).unwrap();
    }
    ws.write(1, 0, "2026-10-05").unwrap();
    ws.write(1, 1, customer).unwrap();
    ws.write(1, 2, "P1").unwrap();
    ws.write(1, 3, amount).unwrap();
    wb.save(path).unwrap();
}

/// Files unzipped from an archive made on Chinese Windows carry GBK names,
/// which are not UTF-8: they match the pattern like any other name (a
/// Chinese file or directory name in the pattern included) and are named
/// by their text.
#[tokio::test]
async fn files_with_gbk_names_are_found_and_named_as_text() {
    use std::os::unix::ffi::OsStrExt;
    let lab = Lab::new();
    std::fs::create_dir_all(lab.path("in/g")).unwrap();
    let gbk = |name: &str| {
        let (bytes, _, unmappable) = encoding_rs::GBK.encode(name);
        assert!(!unmappable && std::str::from_utf8(&bytes).is_err());
        lab.path("in/g").join(std::ffi::OsStr::from_bytes(&bytes))
    };
    // both names read `in/g/流向??.xlsx` if the GBK bytes were replaced
    one_sale_workbook(&gbk("流向甲.xlsx"), "C1", 10.0);
    one_sale_workbook(&gbk("流向乙.xlsx"), "C2", 10.0);
    one_sale_workbook(&lab.path("in/g/流向丙.xlsx"), "C3", 10.0);
    one_sale_workbook(&lab.path("in/g/other.xlsx"), "1001", 10.0);
    // a GBK directory: `*` stays in its directory, `**` enters it
    std::fs::create_dir(gbk("华东")).unwrap();
    one_sale_workbook(&gbk("华东").join("deep.xlsx"), "1001", 20.0);
    let source = |name: &str, glob: &str| {
        format!("[[sources]]\nname = \"{name}\"\ndataset = \"sales\"\nkind = \"excel\"\npath = \"{glob}\"\n{FLOW_COLUMNS}\n")
    };
    let settings = lab.settings(&format!(
        "{}{}{}{}",
        source("all", "in/g/*.xlsx"),
        source("flow", "in/g/流向*.xlsx"),
        source("deep", "in/**/*.xlsx"),
        source("east", "in/g/华东/*.xlsx")
    ));
    let summary = lab.ingest(&settings).await;
    assert!(summary.rejections.is_empty(), "{:?}", rejections(&summary));
    let files = |source: &'static str| {
        let lab = &lab;
        async move {
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT file, customer_id FROM sales WHERE source = ? ORDER BY customer_id, file",
            )
            .bind(source)
            .fetch_all(&lab.warehouse().await)
            .await
            .unwrap();
            rows
        }
    };
    let named = |rows: &[(&str, &str)]| -> Vec<(String, String)> {
        rows.iter()
            .map(|(f, c)| (f.to_string(), c.to_string()))
            .collect()
    };
    let flow = [
        ("in/g/流向甲.xlsx", "C1"),
        ("in/g/流向乙.xlsx", "C2"),
        ("in/g/流向丙.xlsx", "C3"),
    ];
    assert_eq!(files("flow").await, named(&flow));
    let mut all = vec![("in/g/other.xlsx", "1001")];
    all.extend(flow);
    assert_eq!(files("all").await, named(&all));
    all.insert(1, ("in/g/华东/deep.xlsx", "1001"));
    assert_eq!(files("deep").await, named(&all));
    // a directory named in the pattern, stored in GBK
    assert_eq!(
        files("east").await,
        named(&[("in/g/华东/deep.xlsx", "1001")])
    );
}

/// Without `sheet`, a source reads the first sheet the user sees in Excel's
/// tabs: a hidden sheet (a template's lookup table) or a chart sheet placed
/// before the data is passed over.
#[tokio::test]
async fn the_default_sheet_is_the_first_visible_worksheet() {
    let lab = Lab::new();
    std::fs::create_dir_all(lab.path("in/s")).unwrap();
    let data = |ws: &mut rust_xlsxwriter::Worksheet, customer: &str| {
        for (c, h) in ["日期", "客户编码", "产品编码", "金额"].iter().enumerate() {
            ws.write(0, c as u16, *h).unwrap();
        }
        ws.write(1, 0, "2026-10-05").unwrap();
        ws.write(1, 1, customer).unwrap();
        ws.write(1, 2, "P1").unwrap();
        ws.write(1, 3, 12.5).unwrap();
        ws.set_active(true);
    };
    let mut wb = Workbook::new();
    let lookup = wb.add_worksheet().set_name("参数").unwrap();
    lookup.write(0, 0, "品种").unwrap();
    lookup.set_hidden(true);
    data(wb.add_worksheet().set_name("流向").unwrap(), "C1");
    wb.save(lab.path("in/s/a-hidden-first.xlsx")).unwrap();
    let mut wb = Workbook::new();
    let mut chart = rust_xlsxwriter::Chart::new(rust_xlsxwriter::ChartType::Column);
    chart.add_series().set_values("'流向'!$D$2:$D$2");
    wb.add_chartsheet().insert_chart(0, 0, &chart).unwrap();
    data(wb.add_worksheet().set_name("流向").unwrap(), "C2");
    wb.save(lab.path("in/s/b-chart-first.xlsx")).unwrap();
    let settings = lab.settings(&flow_xlsx_source("s", ""));
    let summary = lab.ingest(&settings).await;
    assert!(summary.rejections.is_empty(), "{:?}", rejections(&summary));
    assert_eq!(
        lab.sales("s").await,
        vec![
            row("2026-10-05", "C1", "P1", 12.5),
            row("2026-10-05", "C2", "P1", 12.5),
        ]
    );
    let sheets: Vec<(String, String)> =
        sqlx::query_as("SELECT file, sheet FROM sales WHERE source = 's' ORDER BY file")
            .fetch_all(&lab.warehouse().await)
            .await
            .unwrap();
    assert_eq!(
        sheets,
        [
            ("in/s/a-hidden-first.xlsx", "流向"),
            ("in/s/b-chart-first.xlsx", "流向")
        ]
        .map(|(f, s)| (f.to_string(), s.to_string()))
    );
}

/// `sheet` names a sheet as Excel does: surrounding spaces and letter case
/// do not matter (a workbook cannot hold `Sales` and `SALES`). The rows keep
/// the sheet's own name.
#[tokio::test]
async fn a_sheet_is_named_regardless_of_case_and_surrounding_space() {
    let lab = Lab::new();
    let mut wb = Workbook::new();
    wb.add_worksheet().set_name("Notes").unwrap();
    let ws = wb.add_worksheet().set_name("Sales Flow ").unwrap();
    for (c, h) in ["日期", "客户编码", "产品编码", "金额"].iter().enumerate() {
        ws.write(0, c as u16, *h).unwrap();
    }
    ws.write_row(1, 0, ["2026-10-05", "C1", "P1"]).unwrap();
    ws.write(1, 3, 12.5).unwrap();
    std::fs::create_dir_all(lab.path("in/s")).unwrap();
    std::fs::create_dir_all(lab.path("in/n")).unwrap();
    wb.save(lab.path("in/s/a.xlsx")).unwrap();
    wb.save(lab.path("in/n/a.xlsx")).unwrap();
    let settings = lab.settings(
        &[
            flow_xlsx_source("s", "sheet = \"sales flow\"\n"),
            flow_xlsx_source("n", "sheet = \"sales\"\n"),
        ]
        .concat(),
    );
    let summary = lab.ingest(&settings).await;
    assert_eq!(
        rejections(&summary),
        ["`n`: in/n/a.xlsx: cannot open file (sheet `sales` not found; the workbook has `Notes`, `Sales Flow `)"]
    );
    assert_eq!(
        lab.sales("s").await,
        vec![row("2026-10-05", "C1", "P1", 12.5)]
    );
    let sheets: Vec<(String,)> = sqlx::query_as("SELECT sheet FROM sales WHERE source = 's'")
        .fetch_all(&lab.warehouse().await)
        .await
        .unwrap();
    assert_eq!(sheets, [("Sales Flow ".to_string(),)]);
}

/// A workbook is read by what it holds, not by its name, as Excel and
/// LibreOffice open it: an xlsx saved as `.xls`, an ods named `.xlsx`. A file
/// that holds no workbook is named for what it is (an ERP's "Excel" export
/// is often text, or a page without a table when the export failed), not
/// reported as a corrupt xls.
#[tokio::test]
async fn workbooks_are_read_by_content_and_other_files_named_for_what_they_are() {
    let lab = Lab::new();
    std::fs::create_dir_all(lab.path("in/x")).unwrap();
    std::fs::create_dir_all(lab.path("in/o")).unwrap();
    std::fs::create_dir_all(lab.path("in/csv")).unwrap();
    flow_workbook(&lab.path("in/x/a-xlsx.xls"));
    lab.write(
        "in/x/b-html.xls",
        // an export that failed: the ERP's login page under the export's
        // name. Excel's "Web Page" declares Office namespaces, the
        // spreadsheet's too: still HTML, not an Excel 2003 XML spreadsheet
        r#"<html xmlns:x="urn:schemas-microsoft-com:office:excel" xmlns:ss="urn:schemas-microsoft-com:office:spreadsheet"><body><form>会话已过期，请重新登录</form></body></html>"#.as_bytes(),
    );
    lab.write(
        "in/x/e-xml2003.xls",
        br#"<?xml version="1.0"?><?mso-application progid="Excel.Sheet"?><Workbook xmlns="urn:schemas-microsoft-com:office:spreadsheet"></Workbook>"#,
    );
    lab.write("in/x/f-empty.xls", b"");
    lab.write(
        "in/x/g-commas.xls",
        "日期,客户编码\n2026-10-01,C1\n".as_bytes(),
    );
    {
        let mut zip =
            zip::ZipWriter::new(std::fs::File::create(lab.path("in/x/h-zip.xls")).unwrap());
        zip.start_file("readme.txt", zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(b"flow files").unwrap();
        zip.finish().unwrap();
    }
    lab.write("in/x/i-binary.xls", b"\x7fELF\x02\x01\x01\x00\x00\x00");
    // an Open XML package whose workbook part is not `xl/workbook.xml`:
    // `_rels/.rels` leads to it
    flow_workbook(&lab.path("in/j.tmp"));
    rewrite_zip_renaming(
        &lab.path("in/j.tmp"),
        &lab.path("in/x/j-book-part.xls"),
        |name, data| {
            let renamed = name.replace("workbook.xml", "book.xml");
            let data = match name {
                "_rels/.rels" | "[Content_Types].xml" => String::from_utf8(data)
                    .unwrap()
                    .replace("workbook.xml", "book.xml")
                    .into_bytes(),
                _ => data,
            };
            (renamed, data)
        },
    );
    ods(
        &lab.path("in/o/book.xlsx"),
        &format!(
            r#"{}<table:table-row><table:table-cell office:value-type="date" office:date-value="2026-11-04"><text:p>2026-11-04</text:p></table:table-cell>{}{}<table:table-cell office:value-type="float" office:value="7"><text:p>7</text:p></table:table-cell></table:table-row>"#,
            ods_flow_header(),
            ods_text("C1"),
            ods_text("P1")
        ),
    );
    flow_workbook(&lab.path("in/csv/october.csv"));
    let settings = lab.settings(&format!(
        "{}[[sources]]\nname = \"ods\"\ndataset = \"sales\"\nkind = \"excel\"\npath = \"in/o/*.xlsx\"\n{FLOW_COLUMNS}\n{}",
        flow_source("flow", "in/x/*.xls"),
        flow_csv_source("csv", "")
    ));
    let summary = lab.ingest(&settings).await;
    let got = rejections(&summary);
    let open =
        |file: &str, detail: &str| format!("`flow`: in/x/{file}: cannot open file ({detail})");
    for (file, detail) in [
        // HTML tables (and tab-separated text) are read since session 29
        ("b-html.xls", "the file is an HTML page without a table, not a workbook, as an ERP's \"Excel\" export that failed (a login or error page) is: export the data again"),
        // read since session 28, and this one holds no sheet
        ("e-xml2003.xls", "sheet `流向` not found; the workbook has none"),
        ("f-empty.xls", "the file is empty: it holds 0 bytes, no workbook"),
        ("g-commas.xls", "the file is comma-separated text, not a workbook: read it with a `kind = \"csv\"` source"),
        ("h-zip.xls", "a zip archive, not a workbook: it is neither an Open XML package nor an OpenDocument spreadsheet; if it holds workbooks, unzip them into the inbox"),
        ("i-binary.xls", "not a workbook: the file is neither a zip container, as xlsx, xlsb and ods files are, nor an OLE compound file, as xls files are"),
    ] {
        assert_has(&got, &open(file, detail));
    }
    assert_has(
        &got,
        "`csv`: in/csv/october.csv: cannot open file (the file is a workbook, not CSV text: it is a zip container, as xlsx, xlsb and ods files are; read it with a `kind = \"excel\"` source)",
    );
    assert_eq!(got.len(), 7, "{got:#?}");
    // the xlsx named `.xls` and the package with its renamed part
    let mut expected = [flow_expected(), flow_expected()].concat();
    expected.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(lab.sales("flow").await, expected);
    assert_eq!(
        lab.sales("ods").await,
        vec![row("2026-11-04", "C1", "P1", 7.0)]
    );
    assert!(lab.sales("csv").await.is_empty());
}

/// Where LibreOffice is installed, `make` writes with it (`soffice`) a file
/// of the flow workbook's rows into `made` and returns its path; the file
/// becomes `in/<name>/october.xls`, read by a flow source `name` pushed
/// onto `sources`. Returns whether it did; without LibreOffice, `require`
/// says so (a failure when `CI=true`).
fn office_made_flow_source(
    lab: &Lab,
    sources: &mut Vec<String>,
    name: &str,
    make: impl FnOnce(&Path, &Path) -> PathBuf,
) -> bool {
    let Some(soffice) = soffice() else {
        return require("LibreOffice (soffice)", false);
    };
    let made = lab.path("made");
    std::fs::create_dir_all(&made).unwrap();
    let file = make(&soffice, &made);
    std::fs::create_dir_all(lab.path(&format!("in/{name}"))).unwrap();
    std::fs::rename(file, lab.path(&format!("in/{name}/october.xls"))).unwrap();
    sources.push(flow_source(name, &format!("in/{name}/*.xls")));
    true
}

/// `flow_expected` in the order `Lab::sales` gives rows.
fn flow_expected_sorted() -> Vec<(String, String, String, f64)> {
    let mut expected = flow_expected();
    expected.sort_by(|a, b| a.partial_cmp(b).unwrap());
    expected
}

/// An Excel 2003 XML spreadsheet, as .NET and Java ERPs export "Excel"
/// under an `.xls` name: the one LibreOffice writes of the flow workbook's
/// rows loads like the workbook (from a CSV: LibreOffice 7.4's
/// SpreadsheetML export fails on any xlsx it opens), and a hand-written
/// export declaring GB2312, with a
/// header in two rows (`ss:MergeDown`), a skipped row index, a comment and
/// an unknown customer, loads its good row and names the bad one's cell.
#[tokio::test]
async fn excel_2003_xml_spreadsheets_load_like_the_xlsx() {
    let lab = Lab::new();
    let export = r#"<?xml version="1.0" encoding="GB2312"?>
<?mso-application progid="Excel.Sheet"?>
<Workbook xmlns="urn:schemas-microsoft-com:office:spreadsheet" xmlns:ss="urn:schemas-microsoft-com:office:spreadsheet">
 <Worksheet ss:Name="流向">
  <Table>
   <Row><Cell><Data ss:Type="String">十月流向</Data></Cell></Row>
   <Row ss:Index="3"><Cell><Data ss:Type="String">单位：元</Data></Cell></Row>
   <Row><Cell ss:MergeDown="1"><Data ss:Type="String">日期</Data></Cell><Cell ss:MergeAcross="1"><Data ss:Type="String">客户</Data></Cell><Cell ss:MergeDown="1"><Data ss:Type="String">产品编码</Data></Cell><Cell><Data ss:Type="String">销售</Data></Cell></Row>
   <Row><Cell ss:Index="2"><Data ss:Type="String">客户编码</Data></Cell><Cell><Data ss:Type="String">客户名称</Data></Cell><Cell ss:Index="5"><Data ss:Type="String">金额</Data></Cell></Row>
   <Row><Cell><Data ss:Type="DateTime">2026-10-05T00:00:00.000</Data></Cell><Cell><Data ss:Type="Number">1001</Data></Cell><Cell><Data ss:Type="String">某医院</Data></Cell><Cell><Data ss:Type="String">P1</Data><Comment><ss:Data xmlns="http://www.w3.org/TR/REC-html40">备注</ss:Data></Comment></Cell><Cell><Data ss:Type="Number">88.5</Data></Cell></Row>
   <Row><Cell><Data ss:Type="String">2026/10/06</Data></Cell><Cell><Data ss:Type="String">X9</Data></Cell><Cell ss:Index="4"><Data ss:Type="String">P2</Data></Cell><Cell><Data ss:Type="Number">5</Data></Cell></Row>
  </Table>
 </Worksheet>
</Workbook>"#;
    let (gbk, _, unmappable) = encoding_rs::GBK.encode(export);
    assert!(!unmappable);
    lab.write("in/erp/export.xls", &gbk);
    lab.write("in/erp-unset/export.xls", &gbk);
    let mut sources = vec![format!(
        "[ingest]\nmax_reject_ratio = 0.5\n{}{}",
        flow_source("erp", "in/erp/*.xls").replace("header_row = 3", "header_row = 5"),
        // the header's merges are read as the rows come: those of row 4
        // after row 3 was tried as the header
        flow_source("erp-unset", "in/erp-unset/*.xls").replace("header_row = 3\n", "")
    )];
    let office = office_made_flow_source(&lab, &mut sources, "lo", |soffice, made| {
        // the flow workbook's rows; LibreOffice types the date and numbers
        lab.write(
            "made/流向.csv",
            "十月流向\n\n日期,客户编码,产品编码,数量,金额\n2026-10-03,1001,P1,10,1500.5\n\
             46330,C2,P2,,\"¥1,000\"\n2026年10月07日,C3,P1,,-20\n"
                .as_bytes(),
        );
        convert_with(
            soffice,
            &made.join("流向.csv"),
            &["--infilter=CSV:44,34,76,1"],
            "xml:MS Excel 2003 XML",
            made,
        );
        made.join("流向.xml")
    });
    let settings = lab.settings(&sources.concat());
    let summary = lab.ingest(&settings).await;
    assert_eq!(
        rejections(&summary),
        [
            "`erp`: in/erp/export.xls [流向] row 7 cell B7 column `客户编码` value `X9`: unknown customer id",
            "`erp-unset`: in/erp-unset/export.xls [流向] column `日期, 客户编码, 产品编码, 金额`: \
             missing column (row 1, the first non-empty row, was read as the header; row 5 heads \
             every mapped column: set `header_row = 5` on the source)"
        ]
    );
    assert_eq!(
        lab.sales("erp").await,
        vec![row("2026-10-05", "1001", "P1", 88.5)]
    );
    if office {
        assert_eq!(lab.sales("lo").await, flow_expected_sorted());
    }
}

/// An HTML page saved under an `.xls` name, as many ERPs and web reports
/// export "Excel": the one LibreOffice writes of a workbook holding a note
/// sheet and then the flow sheet (a table per sheet, each headed with its
/// sheet's name, so `sheet = "流向"` picks the second) loads like the flow
/// workbook, and a hand-written export in the style of Excel's "Web Page"
/// (GB2312, the sheet named in a comment, `x:num` numbers behind formatted
/// text, a header in two rows by `rowspan`/`colspan`, `&nbsp;` and `<br>`)
/// loads its good row and names the bad one's cell. A page saved as
/// Excel's "Unicode" (UTF-16 after its byte order mark) is HTML too, not
/// tab-separated text.
#[tokio::test]
async fn html_pages_named_xls_load_like_the_xlsx() {
    let lab = Lab::new();
    let export = r#"<html xmlns:o="urn:schemas-microsoft-com:office:office" xmlns:x="urn:schemas-microsoft-com:office:excel">
<head><meta http-equiv="Content-Type" content="text/html; charset=gb2312">
<style>td { mso-number-format: "\@"; } .xl1 { mso-number-format: "yyyy\/mm\/dd"; }</style>
<!--[if gte mso 9]><xml><x:ExcelWorkbook><x:ExcelWorksheets><x:ExcelWorksheet><x:Name>流向</x:Name></x:ExcelWorksheet></x:ExcelWorksheets></x:ExcelWorkbook></xml><![endif]-->
</head><body>
<table border=1>
<tr><td colspan=5>十月流向</td></tr>
<tr><td>单位：元</td></tr>
<tr><th rowspan=2>日期</th><th colspan=2>客户</th><th rowspan="2">产品编码</th><th>销售</th></tr>
<tr><th>客户编码</th><th>客户&nbsp;名称</th><th>金额</th></tr>
<tr><td class=xl1 x:num="46300">2026/10/5</td><td x:num>1001</td><td>某医院<br>住院部</td><td>&nbsp;P1 </td><td x:num="88.5">88.50</td></tr>
<tr><td>2026-10-06</td><td>X9</td><td></td><td>P2</td><td>5</td></tr>
</table></body></html>"#;
    let (gbk, _, unmappable) = encoding_rs::GBK.encode(export);
    assert!(!unmappable);
    lab.write("in/erp/export.xls", &gbk);
    // Excel's "Unicode" web page: UTF-16 after its byte order mark
    let unicode_page =
        "<html><head><meta http-equiv=Content-Type content=\"text/html; charset=unicode\"></head>\
        <body><table><tr><td>日期</td><td>客户编码</td><td>产品编码</td><td>金额</td></tr>\
        <tr><td>2026-10-07</td><td>C3</td><td>P1</td><td>-20</td></tr></table></body></html>";
    let utf16: Vec<u8> = [0xFF, 0xFE]
        .into_iter()
        .chain(unicode_page.encode_utf16().flat_map(u16::to_le_bytes))
        .collect();
    lab.write("in/unicode/export.xls", &utf16);
    let mut sources = vec![format!(
        "[ingest]\nmax_reject_ratio = 0.5\n{}{}",
        flow_source("erp", "in/erp/*.xls").replace("header_row = 3", "header_row = 4"),
        flow_source("unicode", "in/unicode/*.xls").replace("header_row = 3", "header_row = 1"),
    )];
    let office = office_made_flow_source(&lab, &mut sources, "lo", |soffice, made| {
        let mut wb = Workbook::new();
        let note = wb.add_worksheet().set_name("说明").unwrap();
        note.write(0, 0, "日期：开票日期").unwrap();
        note.write(1, 0, "金额：含税").unwrap();
        flow_rows(wb.add_worksheet().set_name("流向").unwrap());
        wb.save(made.join("流向.xlsx")).unwrap();
        convert(soffice, &made.join("流向.xlsx"), "html", made);
        let page = std::fs::read_to_string(made.join("流向.html")).unwrap();
        assert!(
            page.contains("<em>说明</em>") && page.contains("<em>流向</em>"),
            "{page}"
        );
        made.join("流向.html")
    });
    let settings = lab.settings(&sources.concat());
    let summary = lab.ingest(&settings).await;
    assert_eq!(
        rejections(&summary),
        ["`erp`: in/erp/export.xls [流向] row 6 cell B6 column `客户编码` value `X9`: unknown customer id"]
    );
    // serial 46300 is 2026-10-05 (46330 is 2026-11-04)
    assert_eq!(
        lab.sales("erp").await,
        vec![row("2026-10-05", "1001", "P1", 88.5)]
    );
    assert_eq!(
        lab.sales("unicode").await,
        vec![row("2026-10-07", "C3", "P1", -20.0)]
    );
    if office {
        assert_eq!(lab.sales("lo").await, flow_expected_sorted());
    }
}

/// Tab-separated text under an `.xls` name, as ERPs export "Excel" and as
/// Excel opens it: in GBK without a byte order mark (what Excel on a
/// Chinese Windows saves as "Text (Tab delimited)"), and in UTF-16 after
/// its mark as LibreOffice saves the flow workbook for "Unicode Text"
/// (Excel's 文本 (Unicode)), both load the flow workbook's rows from an
/// `excel` source whose `sheet` is moot for text.
#[tokio::test]
async fn tab_separated_text_named_xls_loads_as_excel_opens_it() {
    let lab = Lab::new();
    let text = "十月流向（经销商甲）\r\n\r\n日期\t客户编码\t产品编码\t数量\t金额\r\n\
                2026-10-03\t1001\tP1\t10\t1500.5\r\n46330\tC2\tP2\t\t\"￥1,000\"\r\n\
                2026年10月07日\tC3\tP1\t\t-20\r\n";
    // GBK has the full-width yen sign only
    let (gbk, _, unmappable) = encoding_rs::GBK.encode(text);
    assert!(!unmappable);
    lab.write("in/gbk/october.xls", &gbk);
    let mut sources = vec![flow_source("gbk", "in/gbk/*.xls")];
    let office = office_made_flow_source(&lab, &mut sources, "utf16", |soffice, made| {
        flow_workbook(&made.join("流向.xlsx"));
        // tab, double quotes, character set 65535: UTF-16
        convert(
            soffice,
            &made.join("流向.xlsx"),
            "txt:Text - txt - csv (StarCalc):9,34,65535",
            made,
        );
        let unicode = std::fs::read(made.join("流向.txt")).unwrap();
        assert!(unicode.starts_with(&[0xFF, 0xFE]), "{unicode:?}");
        made.join("流向.txt")
    });
    let settings = lab.settings(&sources.concat());
    let summary = lab.ingest(&settings).await;
    assert_eq!(rejections(&summary), Vec::<String>::new());
    assert_eq!(lab.sales("gbk").await, flow_expected_sorted());
    if office {
        assert_eq!(lab.sales("utf16").await, flow_expected_sorted());
    }
}

/// Two tests of `scenario`: `$sqlite` on the lab's SQLite warehouse,
/// `$postgres` on a PostgreSQL database of its own.
macro_rules! on_both_warehouses {
    ($scenario:ident, $sqlite:ident, $postgres:ident) => {
        #[tokio::test]
        async fn $sqlite() {
            $scenario(&Lab::new(), &Wh::Sqlite).await;
        }

        #[tokio::test]
        async fn $postgres() {
            crate::warehouse::PgDatabase::run(async |url| {
                $scenario(&Lab::new(), &Wh::Postgres(url)).await;
            })
            .await;
        }
    };
}
pub(crate) use on_both_warehouses;

/// Reloads of changed files on either warehouse: replaced rows, upserted
/// keyed lines, a line moving between files, and ranges missing from loads
/// made before migration 0004.
async fn changed_file_scenario(lab: &Lab, wh: &Wh<'_>) {
    let header = "单号,行号,日期,客户编码,产品编码,金额\n";
    lab.write(
        "in/f/a.csv",
        format!("{header}S1,1,2026-10-01,C1,P1,100\nS1,2,2026-10-01,C1,P2,50\nS2,1,2026-10-02,C2,P1,30\n")
            .as_bytes(),
    );
    lab.write(
        "in/f/b.csv",
        format!("{header}S9,1,2026-10-05,C3,P1,7\n").as_bytes(),
    );
    let settings = lab.settings(&csv_sales_source(
        "f",
        "",
        r#"columns = { invoice_no = "单号", line_no = "行号", invoice_date = "日期", customer_id = "客户编码", product_id = "产品编码", amount = "金额" }"#,
    ));
    let first = lab.ingest_into(&settings, wh).await;
    assert_eq!(first.files_loaded, 4);
    assert!((total(&lab.sales_in(wh, "f").await) - 187.0).abs() < 1e-9);
    // unchanged: skipped, totals equal
    let again = lab.ingest_into(&settings, wh).await;
    assert_eq!((again.files_loaded, again.files_skipped), (0, 4));
    assert!((total(&lab.sales_in(wh, "f").await) - 187.0).abs() < 1e-9);
    // a.csv re-exported: one line corrected, one dropped; b.csv re-sends S1/1
    lab.write(
        "in/f/a.csv",
        format!("{header}S1,1,2026-10-01,C1,P1,120\nS2,1,2026-10-02,C2,P1,30\n").as_bytes(),
    );
    lab.write(
        "in/f/b.csv",
        format!("{header}S9,1,2026-10-05,C3,P1,7\nS1,1,2026-10-01,C1,P1,120\n").as_bytes(),
    );
    let changed = lab.ingest_into(&settings, wh).await;
    assert_eq!((changed.files_loaded, changed.files_skipped), (2, 2));
    assert_eq!(
        lab.sales_in(wh, "f").await,
        vec![
            row("2026-10-01", "C1", "P1", 120.0),
            row("2026-10-02", "C2", "P1", 30.0),
            row("2026-10-05", "C3", "P1", 7.0),
        ]
    );
    // S1/1 now came from b.csv: b.csv re-exported without it takes it away
    // (a changed file replaces the rows that came from it, wherever they
    // were first stored)
    lab.write(
        "in/f/b.csv",
        format!("{header}S9,1,2026-10-05,C3,P1,7\nS9,2,2026-10-06,C3,P2,4\n").as_bytes(),
    );
    let moved = lab.ingest_into(&settings, wh).await;
    assert_eq!((moved.files_loaded, moved.files_skipped), (1, 3));
    assert_eq!(
        lab.sales_in(wh, "f").await,
        vec![
            row("2026-10-02", "C2", "P1", 30.0),
            row("2026-10-05", "C3", "P1", 7.0),
            row("2026-10-06", "C3", "P2", 4.0),
        ]
    );
    // a warehouse whose files were loaded before their row ranges were
    // recorded (migration 0004) still has a changed file's rows replaced
    lab.forget_row_ranges(wh).await;
    lab.write(
        "in/f/a.csv",
        format!("{header}S2,1,2026-10-02,C2,P1,31\n").as_bytes(),
    );
    let legacy = lab.ingest_into(&settings, wh).await;
    assert_eq!((legacy.files_loaded, legacy.files_skipped), (1, 3));
    assert_eq!(
        lab.sales_in(wh, "f").await,
        vec![
            row("2026-10-02", "C2", "P1", 31.0),
            row("2026-10-05", "C3", "P1", 7.0),
            row("2026-10-06", "C3", "P2", 4.0),
        ]
    );
    // the README's way to withdraw a file's rows: its header row alone
    lab.write("in/f/b.csv", header.as_bytes());
    let withdrawn = lab.ingest_into(&settings, wh).await;
    assert_eq!((withdrawn.files_loaded, withdrawn.files_refused), (1, 0));
    assert_eq!(
        lab.sales_in(wh, "f").await,
        vec![row("2026-10-02", "C2", "P1", 31.0)]
    );
}

fn total(rows: &[(String, String, String, f64)]) -> f64 {
    rows.iter().map(|r| r.3).sum()
}

on_both_warehouses!(
    changed_file_scenario,
    a_changed_file_replaces_its_rows_and_keyed_lines_upsert,
    a_changed_file_replaces_its_rows_and_keyed_lines_upsert_on_postgresql
);

/// A copied or renamed file of unkeyed sales lines must not count its
/// rows twice, on either warehouse.
async fn copies_and_renames_scenario(lab: &Lab, wh: &Wh<'_>) {
    let header = "日期,客户编码,产品编码,金额\n";
    let october = format!("{header}2026-10-01,C1,P1,100\n2026-10-02,C2,P1,30\n");
    let november = format!("{header}2026-11-03,C3,P1,7\n");
    let december = format!("{header}2026-12-04,C1,P2,5\n");
    lab.write("in/g/10月.csv", october.as_bytes());
    lab.write("in/g/11月.csv", november.as_bytes());
    let settings = lab.settings(&flow_csv_source("g", ""));
    let first = lab.ingest_into(&settings, wh).await;
    assert_eq!((first.files_loaded, first.files_refused), (4, 0));
    assert!((total(&lab.sales_in(wh, "g").await) - 137.0).abs() < 1e-9);
    // Windows names a copy `10月 - 副本.csv`, which sorts before the file it
    // copies: the copy is refused all the same, as the original is loaded;
    // of two new files with one content, the first in path order loads
    lab.write("in/g/10月 - 副本.csv", october.as_bytes());
    lab.write("in/g/12月.csv", december.as_bytes());
    lab.write("in/g/12月b.csv", december.as_bytes());
    // two header-only files from one template repeat no row: both load
    lab.write("in/g/empty_a.csv", header.as_bytes());
    lab.write("in/g/empty_b.csv", header.as_bytes());
    for _ in 0..2 {
        let copies = lab.ingest_into(&settings, wh).await;
        let got = rejections(&copies);
        assert_eq!(got.len(), 2, "{got:#?}");
        assert_has(
            &got,
            "`g`: in/g/10月 - 副本.csv: cannot open file (the same content as \
             `in/g/10月.csv`, which this source already reads; loading a copy \
             would count its rows twice)",
        );
        assert_has(
            &got,
            "`g`: in/g/12月b.csv: cannot open file (the same content as \
             `in/g/12月.csv`, which this source already reads; loading a copy \
             would count its rows twice)",
        );
        assert_eq!(copies.files_refused, 2);
        assert_eq!(
            lab.sales_in(wh, "g").await,
            vec![
                row("2026-10-01", "C1", "P1", 100.0),
                row("2026-10-02", "C2", "P1", 30.0),
                row("2026-11-03", "C3", "P1", 7.0),
                row("2026-12-04", "C1", "P2", 5.0),
            ]
        );
    }
    // the copies deleted and 11月.csv renamed: the renamed file's rows
    // replace those stored under the old name, once and for all
    for copy in ["in/g/10月 - 副本.csv", "in/g/12月b.csv"] {
        std::fs::remove_file(lab.path(copy)).unwrap();
    }
    std::fs::rename(lab.path("in/g/11月.csv"), lab.path("in/g/2026-11.csv")).unwrap();
    let renamed = lab.ingest_into(&settings, wh).await;
    assert!(renamed.rejections.is_empty(), "{:#?}", rejections(&renamed));
    assert_eq!((renamed.files_loaded, renamed.files_skipped), (1, 6));
    assert!((total(&lab.sales_in(wh, "g").await) - 142.0).abs() < 1e-9);
    assert_eq!(
        lab.provenance_in(wh, "g").await,
        vec![
            ("in/g/10月.csv".to_string(), 2),
            ("in/g/10月.csv".to_string(), 3),
            ("in/g/12月.csv".to_string(), 2),
            ("in/g/2026-11.csv".to_string(), 2),
        ]
    );
    // renamed back with a line added: a changed file, not a rename
    std::fs::remove_file(lab.path("in/g/2026-11.csv")).unwrap();
    lab.write(
        "in/g/11月.csv",
        format!("{november}2026-11-04,C3,P2,1\n").as_bytes(),
    );
    let back = lab.ingest_into(&settings, wh).await;
    assert_eq!((back.files_loaded, back.files_skipped), (1, 6));
    // the old name's rows stay as last loaded: only a rename carries them
    assert!((total(&lab.sales_in(wh, "g").await) - 150.0).abs() < 1e-9);
}

on_both_warehouses!(
    copies_and_renames_scenario,
    a_copied_file_is_refused_and_a_renamed_one_replaces_its_rows,
    a_copied_file_is_refused_and_a_renamed_one_replaces_its_rows_on_postgresql
);

/// A CSV still being copied into the inbox while the job reads it is
/// refused, not loaded in part; once the copy is done it loads whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_written_to_while_it_is_read_is_refused_then_loads_whole() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let lab = Lab::new();
    let line = "2026-10-01,C1,P1,1\n";
    let mut csv = String::from("日期,客户编码,产品编码,金额\n");
    csv.push_str(&line.repeat(100_000));
    lab.write("in/copying/a.csv", csv.as_bytes());
    let settings = lab.settings(&flow_csv_source("copying", ""));
    // the copy goes on: a line a millisecond until the ingest is over
    let done = Arc::new(AtomicBool::new(false));
    let copier = std::thread::spawn({
        let (path, done) = (lab.path("in/copying/a.csv"), done.clone());
        move || {
            let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
            let mut appended = 0u64;
            while !done.load(Ordering::Relaxed) {
                f.write_all(line.as_bytes()).unwrap();
                appended += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            appended
        }
    });
    let copying = lab.ingest(&settings).await;
    done.store(true, Ordering::Relaxed);
    let appended = copier.join().unwrap();
    assert_eq!(
        rejections(&copying),
        vec![
            "`copying`: in/copying/a.csv: cannot open file (the file changed while it \
             was read (is it still being copied?); it loads once it stays unchanged)"
        ]
    );
    assert!(lab.sales("copying").await.is_empty());
    let copied = lab.ingest(&settings).await;
    assert!(copied.rejections.is_empty(), "{:#?}", rejections(&copied));
    assert_eq!(copied.rows_loaded, 100_000 + appended);
}

/// An id Excel wrote in scientific notation (a long numeric code in a CSV
/// saved from Excel) is rejected as unknown with a hint at the cause; an
/// ordinary unknown id gets none.
#[tokio::test]
async fn an_id_in_scientific_notation_is_rejected_with_a_hint() {
    let lab = Lab::new();
    lab.write(
        "in/s/a.csv",
        "日期,客户编码,产品编码,金额\n2026-10-01,C1,P1,5\n2026-10-02,1.23457E+12,P1,6\n\
         2026-10-03,C9,P1,7\n2026-10-04,1e5,P1,8\n"
            .as_bytes(),
    );
    let settings = lab.settings(&format!(
        "[ingest]\nmax_reject_ratio = 0.9\n{}",
        flow_csv_source("s", "")
    ));
    let summary = lab.ingest(&settings).await;
    let hint = "a long number Excel saved in scientific notation, its digits lost; \
                format the id column as text before saving the file";
    assert_eq!(
        rejections(&summary),
        [
            format!(
                "`s`: in/s/a.csv row 3 cell B3 column `客户编码` value `1.23457E+12`: \
                 unknown customer id ({hint})"
            ),
            "`s`: in/s/a.csv row 4 cell B4 column `客户编码` value `C9`: unknown customer id"
                .to_string(),
            format!(
                "`s`: in/s/a.csv row 5 cell B5 column `客户编码` value `1e5`: \
                 unknown customer id ({hint})"
            ),
        ]
    );
    assert_eq!(lab.sales("s").await, [row("2026-10-01", "C1", "P1", 5.0)]);
}

/// An unknown id that a master id matches but for leading zeros (a numeric
/// Excel cell dropped them), a `.0` (pandas wrote the column as floats),
/// letter case, full-width forms or spaces is
/// rejected as SPEC §4 says, with the master id named in the detail; an
/// unknown id with no such neighbour gets none. Rep ids the same.
#[tokio::test]
async fn an_unknown_id_close_to_a_master_id_names_it() {
    let lab = Lab::new();
    lab.write(
        "in/n/a.csv",
        "日期,客户编码,产品编码,金额,代表\n2026-10-01,c1,P1,5,R1\n2026-10-02,Ｃ２,P1,5,R1\n\
         2026-10-03,01001,P1,5,R1\n2026-10-04,C9,P1,5,R1\n2026-10-05,C1,P1,5,r 2\n\
         2026-10-06,C3,P1,5,R2\n2026-10-07,1001.0,P1,5,R1\n"
            .as_bytes(),
    );
    let settings = lab.settings(&format!(
        "[ingest]\nmax_reject_ratio = 1.0\n{}",
        csv_sales_source("n", "", FLOW_REP_COLUMNS)
    ));
    let summary = lab.ingest(&settings).await;
    let case = "which differs only in letter case, full-width characters or spaces";
    let rejected = |row: u32, cell: &str, column: &str, value: &str, what: &str, detail: &str| {
        format!("`n`: in/n/a.csv row {row} cell {cell}{row} column `{column}` value `{value}`: unknown {what} id{detail}")
    };
    assert_eq!(
        rejections(&summary),
        [
            rejected(
                2,
                "B",
                "客户编码",
                "c1",
                "customer",
                &format!(" (the masters hold `C1`, {case})")
            ),
            rejected(
                3,
                "B",
                "客户编码",
                "Ｃ２",
                "customer",
                &format!(" (the masters hold `C2`, {case})")
            ),
            rejected(
                4,
                "B",
                "客户编码",
                "01001",
                "customer",
                " (the masters hold `1001`: an id Excel stores as a number loses its leading \
                 zeros; format the id column as text before saving the file)"
            ),
            rejected(5, "B", "客户编码", "C9", "customer", ""),
            rejected(
                6,
                "E",
                "代表",
                "r 2",
                "rep",
                &format!(" (the masters hold `R2`, {case})")
            ),
            rejected(
                8,
                "B",
                "客户编码",
                "1001.0",
                "customer",
                " (the masters hold `1001`: the file writes the id as a decimal number, as \
                 pandas writes an id column with empty cells; write ids as whole numbers or text)"
            ),
        ]
    );
    assert_eq!(lab.sales("n").await, [row("2026-10-06", "C3", "P1", 5.0)]);
}

/// A totals row at the foot of a short distributor file is a data row to
/// SPEC §4: rejected, and enough to refuse the file through the reject
/// ratio. The rejection now says what the row is and what to do, whether
/// the label sits in the failing column (an unparsable date) or in another
/// (a missing date). A cell that merely mentions a total (`合计金额`) gets
/// no such detail, nor does an unknown id.
#[tokio::test]
async fn a_totals_row_is_named_as_such_in_its_rejection() {
    let lab = Lab::new();
    let rows = "日期,客户编码,产品编码,金额,备注\n2026-10-01,C1,P1,5,\n2026-10-02,C2,P2,6,\n";
    lab.write("in/a/a.csv", format!("{rows}合计,,,11,\n").as_bytes());
    lab.write(
        "in/b/a.csv",
        format!("{rows},,Grand Total：,11,\n").as_bytes(),
    );
    lab.write(
        "in/c/a.csv",
        format!("{rows},C1,合计金额,1,\n2026-10-03,C9,合计,1,\n").as_bytes(),
    );
    let settings = lab.settings(
        &[
            flow_csv_source("a", ""),
            flow_csv_source("b", ""),
            flow_csv_source("c", ""),
        ]
        .concat(),
    );
    let summary = lab.ingest(&settings).await;
    let advice = "delete it from the file; until then it is rejected like any row without its \
                  values, and counts against `max_reject_ratio`";
    assert_eq!(
        rejections(&summary),
        [
            format!(
                "`a`: in/a/a.csv row 4 cell A4 column `日期` value `合计`: unparsable date \
                 (a totals row (`合计`): {advice})"
            ),
            "`a`: in/a/a.csv: reject ratio exceeded (1 of 3 rows rejected; nothing from this \
             file was loaded)"
                .to_string(),
            format!(
                "`b`: in/b/a.csv row 4 cell A4 column `日期` value ``: missing required field \
                 (a totals row (`Grand Total：`): {advice})"
            ),
            "`b`: in/b/a.csv: reject ratio exceeded (1 of 3 rows rejected; nothing from this \
             file was loaded)"
                .to_string(),
            "`c`: in/c/a.csv row 4 cell A4 column `日期` value ``: missing required field"
                .to_string(),
            "`c`: in/c/a.csv row 5 cell B5 column `客户编码` value `C9`: unknown customer id"
                .to_string(),
            "`c`: in/c/a.csv: reject ratio exceeded (2 of 4 rows rejected; nothing from this \
             file was loaded)"
                .to_string(),
        ]
    );
}

/// An amount typed with its unit (`1,234.50元`, `1.2万`, `12 盒`) is
/// `unparsable number` as SPEC §4 says, with a detail saying why and, for
/// `万`, that the value is ×10,000. Text that is no number gets no detail.
#[tokio::test]
async fn a_number_followed_by_a_unit_is_named_as_such() {
    let lab = Lab::new();
    lab.write(
        "in/u/a.csv",
        "日期,客户编码,产品编码,金额\n2026-10-01,C1,P1,\"1,234.50元\"\n2026-10-02,C1,P1,1.2万\n\
         2026-10-03,C1,P1,12 盒\n2026-10-04,C1,P1,N/A\n2026-10-05,C1,P1,5\n"
            .as_bytes(),
    );
    let settings = lab.settings(&format!(
        "[ingest]\nmax_reject_ratio = 1.0\n{}",
        flow_csv_source("u", "")
    ));
    let summary = lab.ingest(&settings).await;
    let line = |row: u32, value: &str, detail: &str| {
        format!(
            "`u`: in/u/a.csv row {row} cell D{row} column `金额` value `{value}`: unparsable number{detail}"
        )
    };
    let unit = |u: &str, scale: &str| {
        format!(
            " (a number followed by `{u}`: the column must hold the number alone; remove the \
             unit from its cells{scale})"
        )
    };
    assert_eq!(
        rejections(&summary),
        [
            line(2, "1,234.50元", &unit("元", "")),
            line(
                3,
                "1.2万",
                &unit("万", " (`万` is ×10,000: multiply before removing it)")
            ),
            line(4, "12 盒", &unit("盒", "")),
            line(5, "N/A", ""),
        ]
    );
    assert_eq!(lab.sales("u").await, [row("2026-10-05", "C1", "P1", 5.0)]);
}

/// A return written as accounting formats and SAP write it (`(1,234.50)`,
/// `¥(20.00)`, full-width brackets, `1,234.50-`) stays `unparsable
/// number` as SPEC §4 says, with a detail giving the form that loads; so
/// does the lone dash such a format shows for 0 (` ¥-   ` in Excel's CSV).
/// Brackets around something that is no number, or around a number that
/// already has its minus, get no such detail.
#[tokio::test]
async fn a_negative_number_in_accounting_form_is_named_as_such() {
    let lab = Lab::new();
    lab.write(
        "in/n/a.csv",
        "日期,客户编码,产品编码,金额\n2026-10-01,C1,P1,\"(1,234.50)\"\n2026-10-02,C1,P1,￥(20.00)\n\
         2026-10-03,C1,P1,（３０）\n2026-10-04,C1,P1,\"1,234.50-\"\n2026-10-05,C1,P1,(abc)\n\
         2026-10-06,C1,P1,(-5)\n2026-10-07,C1,P1,-5\n2026-10-08,C1,P1, ¥-   \n\
         2026-10-09,C1,P1,—\n"
            .as_bytes(),
    );
    let settings = lab.settings(&format!(
        "[ingest]\nmax_reject_ratio = 1.0\n{}",
        flow_csv_source("n", "")
    ));
    let summary = lab.ingest(&settings).await;
    let line = |row: u32, value: &str, written: &str| {
        let detail = if written.is_empty() {
            String::new()
        } else {
            format!(
                " (a negative number in accounting form: only a minus sign in front is read; \
                 write it as `{written}` (format the column as a plain number before exporting))"
            )
        };
        format!(
            "`n`: in/n/a.csv row {row} cell D{row} column `金额` value `{value}`: unparsable number{detail}"
        )
    };
    let dash = |row: u32, value: &str| {
        format!(
            "{} (a lone dash, which an accounting format shows for 0: write 0 (format the \
             column as a plain number before exporting))",
            line(row, value, "")
        )
    };
    assert_eq!(
        rejections(&summary),
        [
            line(2, "(1,234.50)", "-1,234.50"),
            line(3, "￥(20.00)", "-20.00"),
            line(4, "（３０）", "-30"),
            line(5, "1,234.50-", "-1,234.50"),
            line(6, "(abc)", ""),
            line(7, "(-5)", ""),
            dash(9, " ¥-   "),
            dash(10, "—"),
        ]
    );
    assert_eq!(lab.sales("n").await, [row("2026-10-07", "C1", "P1", -5.0)]);
}

/// A quote typed at the start of a value (`"好` in a remark) opens a quoted
/// field that nothing closes: the `csv` crate would read every row after
/// it as part of that value and end the file without a word, loading the
/// rows before it only. The file is refused, naming the cell; a remark
/// that is quoted over two lines, as Excel writes it, loads.
#[tokio::test]
async fn a_quote_never_closed_refuses_its_file_instead_of_swallowing_rows() {
    let lab = Lab::new();
    let header = "日期,客户编码,产品编码,金额,备注\r\n";
    lab.write(
        "in/q/a.csv",
        format!(
            "{header}2026-10-01,C1,P1,5,ok\r\n2026-10-02,C1,P1,6,\"好\r\n2026-10-03,C2,P2,7,ok\r\n\
             2026-10-04,C3,P1,8,ok\r\n"
        )
        .as_bytes(),
    );
    lab.write(
        "in/m/a.csv",
        format!(
            "{header}2026-10-01,C1,P1,5,\"送货地址：\r\n上海\"\r\n2026-10-02,C2,P2,6,\"5\"\"屏\"\r\n"
        )
        .as_bytes(),
    );
    let settings = lab.settings(&[flow_csv_source("q", ""), flow_csv_source("m", "")].concat());
    let summary = lab.ingest(&settings).await;
    assert_eq!(
        rejections(&summary),
        ["`q`: in/q/a.csv: cannot open file (cell E3 opens a quoted value that is never closed: \
          the 2 line(s) after it would be read as part of that one value, not as rows; close \
          the quote (write `\"\"` for a quote inside a value) or remove it)"]
    );
    assert!(lab.sales("q").await.is_empty());
    assert_eq!(
        lab.sales("m").await,
        [
            row("2026-10-01", "C1", "P1", 5.0),
            row("2026-10-02", "C2", "P2", 6.0)
        ]
    );
}

/// An amount written `1,234.50` without quotes splits into two values and
/// shifts the row: the amount would load as 1. A row with values beyond
/// its header refuses the file, naming them. A trailing separator on each
/// data row (empty values beyond the header) and a wider title row above
/// the header are no such sign: that file loads.
#[tokio::test]
async fn a_row_wider_than_its_header_refuses_the_file() {
    let lab = Lab::new();
    lab.write(
        "in/w/a.csv",
        "日期,客户编码,产品编码,金额\n2026-10-01,C1,P1,5\n2026-10-02,C1,P1,1,234.50\n".as_bytes(),
    );
    lab.write(
        "in/t/a.csv",
        "十月流向,经销商甲,,,,\n日期,客户编码,产品编码,金额\n2026-10-01,C1,P1,5,\n2026-10-02,C2,P2,6,,\n"
            .as_bytes(),
    );
    // a remark split at every comma: the message names three values, each
    // cut at 40 characters
    let long = "很".repeat(50);
    lab.write(
        "in/v/a.csv",
        format!("日期,客户编码,产品编码,金额\n2026-10-01,C1,P1,5,{long},b,c,d\n").as_bytes(),
    );
    let settings = lab.settings(
        &[
            flow_csv_source("w", ""),
            flow_csv_source("t", "header_row = 2\n"),
            flow_csv_source("v", ""),
        ]
        .concat(),
    );
    let summary = lab.ingest(&settings).await;
    let shifted = ": a value holds the separator without quotes around it, as `1,234.50` written \
                   bare does, and the values after it are shifted; put such values in quotes, or \
                   remove the commas)";
    assert_eq!(
        rejections(&summary),
        [
            format!(
                "`w`: in/w/a.csv: cannot open file (row 3 has 5 values where the header has 4 \
                 (beyond it: `234.50`){shifted}"
            ),
            format!(
                "`v`: in/v/a.csv: cannot open file (row 2 has 8 values where the header has 4 \
                 (beyond it: `{}`, `b`, `c`){shifted}",
                "很".repeat(40)
            ),
        ]
    );
    assert!(lab.sales("w").await.is_empty());
    assert_eq!(
        lab.sales("t").await,
        [
            row("2026-10-01", "C1", "P1", 5.0),
            row("2026-10-02", "C2", "P2", 6.0)
        ]
    );
}

/// A DOS end-of-file mark (Ctrl-Z) after the last line, or glued to the
/// last value, is not data: the file loads whole under the default reject
/// ratio, which one rejected row of three would exceed.
#[tokio::test]
async fn a_dos_end_of_file_mark_is_not_a_row() {
    let lab = Lab::new();
    let rows = "日期,客户编码,产品编码,金额\r\n2026-10-01,C1,P1,5\r\n2026-10-02,C2,P2,6";
    lab.write("in/z/a.csv", format!("{rows}\r\n\u{1a}").as_bytes());
    lab.write("in/y/a.csv", format!("{rows}\u{1a}").as_bytes());
    let settings = lab.settings(&[flow_csv_source("z", ""), flow_csv_source("y", "")].concat());
    let summary = lab.ingest(&settings).await;
    assert!(summary.rejections.is_empty(), "{:?}", rejections(&summary));
    for source in ["z", "y"] {
        assert_eq!(
            lab.sales(source).await,
            [
                row("2026-10-01", "C1", "P1", 5.0),
                row("2026-10-02", "C2", "P2", 6.0)
            ],
            "{source}"
        );
    }
}

/// An amount whose cell has a date format (a column that held dates, then
/// got amounts pasted in) shows in Excel, and reads, as a date: it is
/// `unparsable number`, with a detail naming the format as the cause.
#[tokio::test]
async fn an_amount_formatted_as_a_date_is_named_as_such() {
    let lab = Lab::new();
    let path = lab.path("in/d/october.xlsx");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    for (c, h) in ["日期", "客户编码", "产品编码", "金额"].iter().enumerate() {
        ws.write(0, c as u16, *h).unwrap();
    }
    let as_date = Format::new().set_num_format("yyyy\"年\"m\"月\"d\"日\"");
    for (r, amount) in [(1, 1234.5), (2, 20.0)] {
        ws.write(r, 0, "2026-10-01").unwrap();
        ws.write(r, 1, "C1").unwrap();
        ws.write(r, 2, "P1").unwrap();
        if r == 1 {
            ws.write_number_with_format(r, 3, amount, &as_date).unwrap();
        } else {
            ws.write(r, 3, amount).unwrap();
        }
    }
    wb.save(&path).unwrap();
    let settings = lab.settings(&format!(
        "[ingest]\nmax_reject_ratio = 1.0\n{}",
        flow_xlsx_source("d", "")
    ));
    let summary = lab.ingest(&settings).await;
    assert_eq!(
        rejections(&summary),
        ["`d`: in/d/october.xlsx [Sheet1] row 2 cell D2 column `金额` value `1903-05-18 12:00:00`: \
          unparsable number (the cell's format shows its number as a date or time: give the \
          column a number format and save the file)"]
    );
    assert_eq!(lab.sales("d").await, [row("2026-10-01", "C1", "P1", 20.0)]);
}

/// Files joined end to end (`cat a.csv b.csv`) or an export that repeats
/// its headers on every page hold the header row again among the data.
/// SPEC §4 has no rule to skip it, so it is rejected (its first field,
/// the date, is unparsable); the detail says it is the header. A row where
/// only some cells hold their header text is not called one.
#[tokio::test]
async fn a_repeated_header_row_is_named_as_such() {
    let lab = Lab::new();
    let header = "日期,客户编码,产品编码,金额\n";
    lab.write(
        "in/h/a.csv",
        format!("{header}2026-10-01,C1,P1,5\n{header}2026-10-02,C2,P2,6\n日期,C1,P1,7\n")
            .as_bytes(),
    );
    let settings = lab.settings(&format!(
        "[ingest]\nmax_reject_ratio = 1.0\n{}",
        flow_csv_source("h", "")
    ));
    let summary = lab.ingest(&settings).await;
    assert_eq!(
        rejections(&summary),
        [
            "`h`: in/h/a.csv row 3 cell A3 column `日期` value `日期`: unparsable date (the \
             header row again: delete it from the file; until then it is rejected like any row \
             without its values, and counts against `max_reject_ratio`)",
            "`h`: in/h/a.csv row 5 cell A5 column `日期` value `日期`: unparsable date",
        ]
    );
    assert_eq!(
        lab.sales("h").await,
        [
            row("2026-10-01", "C1", "P1", 5.0),
            row("2026-10-02", "C2", "P2", 6.0)
        ]
    );
}

/// A sheet with a date typed once for a block of rows and merged down
/// (A2:A4), a customer merged over two rows (B5:B6), a cell simply left
/// empty (A7) and a totals label merged across (A8:C8).
fn merged_cells_workbook(path: &Path) {
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet().set_name("流向").unwrap();
    let plain = Format::new();
    for (c, h) in ["日期", "客户编码", "产品编码", "金额"].iter().enumerate() {
        ws.write(0, c as u16, *h).unwrap();
    }
    ws.merge_range(1, 0, 3, 0, "2026-10-01", &plain).unwrap();
    ws.merge_range(4, 1, 5, 1, "C1", &plain).unwrap();
    ws.merge_range(7, 0, 7, 2, "合计", &plain).unwrap();
    ws.write(4, 0, "2026-10-02").unwrap();
    ws.write(5, 0, "2026-10-03").unwrap();
    for r in [1, 2, 3, 6] {
        ws.write(r, 1, "C1").unwrap();
    }
    for (r, amount) in [5, 6, 7, 8, 9, 10, 11].iter().enumerate() {
        let r = r as u32 + 1;
        if r < 7 {
            ws.write(r, 2, "P1").unwrap();
        }
        ws.write(r, 3, f64::from(*amount)).unwrap();
    }
    ws.write(7, 3, 56.0).unwrap();
    wb.save(path).unwrap();
}

/// A row whose required cell is empty because it lies inside merged cells
/// is rejected as SPEC §4 says (Excel keeps the value in the block's first
/// cell only), with a detail naming the block and the cell that holds the
/// value; a cell merely left empty keeps the bare reason, and a merged
/// totals row keeps its own detail. Read from the xlsx and, where
/// LibreOffice is installed, from the same sheet saved as xls and ods.
#[tokio::test]
async fn a_required_cell_inside_merged_cells_is_named_as_such() {
    let lab = Lab::new();
    let xlsx = lab.path("in/m/october.xlsx");
    std::fs::create_dir_all(xlsx.parent().unwrap()).unwrap();
    merged_cells_workbook(&xlsx);
    let mut sources = vec![("m", "xlsx")];
    if let Some(soffice) = soffice() {
        std::fs::create_dir_all(lab.path("in/m-xls")).unwrap();
        convert(&soffice, &xlsx, "xls", &lab.path("in/m-xls"));
        sources.push(("m-xls", "xls"));
        std::fs::create_dir_all(lab.path("in/m-ods")).unwrap();
        convert(&soffice, &xlsx, "ods", &lab.path("in/m-ods"));
        sources.push(("m-ods", "ods"));
    } else {
        require("LibreOffice (soffice)", false);
    }
    for (name, ext) in sources {
        let settings = lab.settings(&format!(
            "[ingest]\nmax_reject_ratio = 1.0\n[[sources]]\nname = \"{name}\"\ndataset = \"sales\"\n\
             kind = \"excel\"\npath = \"in/{name}/*.{ext}\"\n{FLOW_COLUMNS}\n"
        ));
        let summary = lab.ingest(&settings).await;
        let file = format!("`{name}`: in/{name}/october.{ext} [流向]");
        let merged = |cell: &str, block: &str, first: &str| {
            format!(
                " (cell {cell} lies in the merged cells {block}, whose value only {first} holds: \
                 unmerge them and fill the value into every row)"
            )
        };
        assert_eq!(
            rejections(&summary),
            [
                format!(
                    "{file} row 3 cell A3 column `日期` value ``: missing required field{}",
                    merged("A3", "A2:A4", "A2")
                ),
                format!(
                    "{file} row 4 cell A4 column `日期` value ``: missing required field{}",
                    merged("A4", "A2:A4", "A2")
                ),
                format!(
                    "{file} row 6 cell B6 column `客户编码` value ``: missing required field{}",
                    merged("B6", "B5:B6", "B5")
                ),
                format!("{file} row 7 cell A7 column `日期` value ``: missing required field"),
                format!(
                    "{file} row 8 cell A8 column `日期` value `合计`: unparsable date (a totals \
                     row (`合计`): delete it from the file; until then it is rejected like any \
                     row without its values, and counts against `max_reject_ratio`)"
                ),
            ],
            "{name}"
        );
        assert_eq!(
            lab.sales(name).await,
            [
                row("2026-10-01", "C1", "P1", 5.0),
                row("2026-10-02", "C1", "P1", 8.0)
            ],
            "{name}"
        );
    }
}

/// What the run logs of a file that loaded, it also hands the reports
/// as a note (the data-quality workbook's `文件提示` sheet): here, a rep
/// merged down; the same rows typed in full give none.
#[tokio::test]
async fn a_merged_optional_column_becomes_a_note_on_its_file() {
    let lab = Lab::new();
    crate::cli::merged_rep_workbook(&lab.path("in/m/flow.xlsx"), true);
    crate::cli::merged_rep_workbook(&lab.path("in/t/flow.xlsx"), false);
    let settings = lab.settings(&format!(
        "[ingest]\nmax_reject_ratio = 0.5\n{}{}",
        crate::cli::merged_rep_source("m", "in/m/*.xlsx"),
        crate::cli::merged_rep_source("t", "in/t/*.xlsx")
    ));
    let summary = lab.ingest(&settings).await;
    assert_eq!(summary.files_loaded, 4, "{summary:?}");
    assert_eq!(
        summary.notes,
        [salesbatch::ingest::FileNote {
            source: "m".into(),
            file: "in/m/flow.xlsx".into(),
            sheet: "流向".into(),
            note: crate::cli::MERGED_REP_NOTE.into(),
            unlisted_rejections: 0,
        }]
    );
}

/// Rows loaded without a merged-down rep are counted less every rejected
/// row, not only those listed: 2,400 data rows (sheet rows 2–2401) under
/// one rep merged in E2:E2401, the last 1,200 with an unparsable date, of
/// which the first 1,000 are listed. The block's rows below E2 are 2,399;
/// 1,200 of them did not load, so 1,199 loaded without a rep (counting only
/// the listed rejections gave 1,399).
#[tokio::test]
async fn merged_rows_that_loaded_leave_out_unlisted_rejected_rows() {
    let lab = Lab::new();
    let path = lab.path("in/m/flow.xlsx");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut wb = rust_xlsxwriter::Workbook::new();
    let ws = wb.add_worksheet().set_name("流向").unwrap();
    ws.write_row(
        0,
        0,
        ["日期", "客户编码", "产品编码", "金额", "代表", "数量"],
    )
    .unwrap();
    for r in 1..=2400u32 {
        let date = if r <= 1200 {
            "2026-10-01"
        } else {
            "十月三日"
        };
        ws.write_row(r, 0, [date, "C1", "P1", "5"]).unwrap();
    }
    ws.merge_range(1, 4, 2400, 4, "R1", &rust_xlsxwriter::Format::new())
        .unwrap();
    wb.save(&path).unwrap();
    let settings = lab.settings(&format!(
        "[ingest]\nmax_reject_ratio = 0.6\n{}",
        crate::cli::merged_rep_source("m", "in/m/*.xlsx")
    ));
    let summary = lab.ingest(&settings).await;
    assert_eq!(
        (summary.files_loaded, summary.rejected_rows()),
        (3, 1200),
        "{:?}",
        summary.notes
    );
    let notes: Vec<&str> = summary.notes.iter().map(|n| n.note.as_str()).collect();
    assert!(
        notes.contains(
            &"1199 rows load with no `rep_id`: column `代表` is merged in E2:E2401; only the \
              first cell of merged cells holds their value: unmerge them and fill the value \
              into every row"
        ),
        "{notes:#?}"
    );
}

/// The progress bar ends full: its length is the files the run listed
/// (refused copies and unreadable entries included), each counted once.
#[tokio::test]
async fn the_progress_bar_counts_every_listed_file_once() {
    let lab = Lab::new();
    let good = "日期,客户编码,产品编码,金额\n2026-10-01,C1,P1,5\n";
    lab.write("in/p/a.csv", good.as_bytes());
    lab.write("in/p/b.csv", good.as_bytes());
    lab.write("in/p/c.csv", b"");
    let settings = lab.settings(&flow_csv_source("p", ""));
    let store = Lab::store(&settings, &Wh::Sqlite).await;
    let pb = indicatif::ProgressBar::hidden();
    let summary = salesbatch::ingest::run_with_progress(&settings, store.as_ref(), Some(&pb))
        .await
        .unwrap();
    assert_eq!(
        (summary.files_loaded, summary.files_refused),
        (3, 2),
        "{:#?}",
        rejections(&summary)
    );
    assert_eq!((pb.position(), pb.length()), (5, Some(5)));
}

/// NULs from a broken or fixed-width export: padding is trimmed like white
/// space, a NUL inside a value is dropped, and a rejected value shows it as
/// `␀`. PostgreSQL cannot store a NUL at all: before, one failed the whole
/// ingest there.
async fn nul_scenario(lab: &Lab, wh: &Wh<'_>) {
    lab.write(
        "in/customers.csv",
        "id,name,region,rep\nC1,甲医院,华东,R1\nC4\0\0,戊\0医院,华东,R1\n".as_bytes(),
    );
    lab.write(
        "in/nul.csv",
        "日期,客户编码,产品编码,金额\0\n\
         2026-10-01,C4\0\0,P\0X,10\n\
         2026-10-02,C1,P1,2\0\n\
         2026-10-03,C\0Z,P1,5\n"
            .as_bytes(),
    );
    let settings = lab.settings(
        r#"
[ingest]
max_reject_ratio = 0.5
[[sources]]
name = "flow"
dataset = "sales"
kind = "csv"
path = "in/nul.csv"
columns = { invoice_date = "日期", customer_id = "客户编码", product_id = "产品编码", amount = "金额" }
"#,
    );
    let summary = lab.ingest_into(&settings, wh).await;
    assert_eq!((summary.files_loaded, summary.files_refused), (3, 0));
    assert_eq!(
        lab.sales_in(wh, "flow").await,
        vec![
            row("2026-10-01", "C4", "PX", 10.0),
            row("2026-10-02", "C1", "P1", 2.0),
        ]
    );
    let expected = "`flow`: in/nul.csv row 4 cell B4 column `客户编码` value `C\u{2400}Z`: unknown customer id";
    assert_eq!(rejections(&summary), [expected]);
    let store = Lab::store(&settings, wh).await;
    store
        .save_quality(1, &summary.rejections, &[])
        .await
        .unwrap();
    let stored = store.rejections(1).await.unwrap();
    assert_eq!(
        stored.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [expected]
    );
    let sql = "SELECT customer_id, name FROM customers ORDER BY customer_id";
    let names: Vec<(String, String)> = match wh {
        Wh::Sqlite => {
            let pool = lab.warehouse().await;
            sqlx::query_as(sql).fetch_all(&pool).await.unwrap()
        }
        Wh::Postgres(url) => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            sqlx::query_as(sql).fetch_all(&pool).await.unwrap()
        }
    };
    let c = |id: &str, name: &str| (id.to_string(), name.to_string());
    assert_eq!(names, [c("C1", "甲医院"), c("C4", "戊医院")]);
}

on_both_warehouses!(
    nul_scenario,
    nul_bytes_in_a_file_load_on_sqlite,
    nul_bytes_in_a_file_load_on_postgresql
);

// ---------------------------------------------------------------- SQL sources

/// The ERP table and its rows, in SQL both PostgreSQL and MariaDB accept.
const ERP_SETUP: [&str; 2] = [
    "CREATE TABLE sales_lines (doc_no varchar(20), line_no integer, doc_date date, \
     cust_code varchar(20), sku varchar(20), net numeric(14,2))",
    "INSERT INTO sales_lines VALUES ('D1', 1, '2025-06-30', 'C1', 'P1', 1000.50), \
     ('D2', 1, '2026-10-01', 'C1', 'P1', 200.00), ('D2', 2, '2026-10-01', 'C2', 'P2', -35.25), \
     ('D3', 1, '2026-10-20', 'C3', 'P1', 80.00), ('D4', 1, '2026-10-21', 'X9', 'P1', 5.00)",
];

fn erp_source(name: &str, env: &str) -> String {
    format!(
        r#"
[ingest]
max_reject_ratio = 0.5
[[sources]]
name = "{name}"
dataset = "sales"
kind = "sql"
url_env = "{env}"
lookback_days = 35
query = "SELECT doc_no, line_no, doc_date, cust_code, sku, net FROM sales_lines WHERE doc_date >= :since ORDER BY doc_no, line_no"
columns = {{ invoice_no = "doc_no", line_no = "line_no", invoice_date = "doc_date", customer_id = "cust_code", product_id = "sku", amount = "net" }}
"#
    )
}

/// An ERP database a test writes its tables into, PostgreSQL or MariaDB
/// by the scheme of its URL.
enum Erp {
    Pg(sqlx::PgPool),
    My(sqlx::MySqlPool),
}

impl Erp {
    async fn connect(url: &str) -> Self {
        if url.starts_with("postgres://") {
            Self::Pg(sqlx::PgPool::connect(url).await.unwrap())
        } else {
            Self::My(sqlx::MySqlPool::connect(url).await.unwrap())
        }
    }

    async fn exec(&self, sql: &'static str) {
        match self {
            Self::Pg(pool) => sqlx::query(sql).execute(pool).await.map(drop),
            Self::My(pool) => sqlx::query(sql).execute(pool).await.map(drop),
        }
        .unwrap();
    }

    async fn close(self) {
        match self {
            Self::Pg(pool) => pool.close().await,
            Self::My(pool) => pool.close().await,
        }
    }
}

/// Runs the same scenario on any ERP backend: first load from 1900-01-01,
/// an edit inside the lookback window, a deletion before it, a rerun.
async fn erp_scenario(env: &str, url: &str) {
    let erp = Erp::connect(url).await;
    for sql in ERP_SETUP {
        erp.exec(sql).await;
    }
    let lab = Lab::new();
    // each test has its own variable, set before any read of it
    std::env::set_var(env, url);
    let settings = lab.settings(&erp_source("erp", env));
    let first = lab.ingest(&settings).await;
    assert_eq!(
        rejections(&first),
        vec![format!(
            "`erp`: sql:{env} row 5 column `cust_code` value `X9`: unknown customer id"
        )]
    );
    assert_eq!(
        lab.sales("erp").await,
        vec![
            row("2025-06-30", "C1", "P1", 1000.5),
            row("2026-10-01", "C1", "P1", 200.0),
            row("2026-10-01", "C2", "P2", -35.25),
            row("2026-10-20", "C3", "P1", 80.0),
        ]
    );
    // :since = 2026-10-20 − 35 days = 2026-09-15: D2/2 corrected, D3 deleted
    // (both inside the window), D1 deleted in the ERP but older: kept
    erp.exec("UPDATE sales_lines SET net = -40.00 WHERE doc_no = 'D2' AND line_no = 2")
        .await;
    erp.exec("DELETE FROM sales_lines WHERE doc_no IN ('D1', 'D3', 'D4')")
        .await;
    erp.close().await;
    let second = lab.ingest(&settings).await;
    assert!(second.rejections.is_empty());
    let expected = vec![
        row("2025-06-30", "C1", "P1", 1000.5),
        row("2026-10-01", "C1", "P1", 200.0),
        row("2026-10-01", "C2", "P2", -40.0),
    ];
    assert_eq!(lab.sales("erp").await, expected);
    lab.ingest(&settings).await;
    assert_eq!(lab.sales("erp").await, expected, "a rerun changed a total");
}

/// A `sql` sales source whose `query` returns doc_date, cust_code, sku, net.
pub fn sql_sales_source(name: &str, env: &str, query: &str) -> String {
    format!(
        r#"
[[sources]]
name = "{name}"
dataset = "sales"
kind = "sql"
url_env = "{env}"
query = "{query}"
columns = {{ invoice_date = "doc_date", customer_id = "cust_code", product_id = "sku", amount = "net" }}
"#
    )
}

/// A source switched from files to an ERP query, and back: the new kind's
/// first load takes over the old kind's rows instead of adding its own
/// beside them (the query's window would never replace file lines, and a
/// file would be skipped as unchanged after SQL had replaced its rows).
async fn switched_kind_scenario(lab: &Lab, wh: &Wh<'_>) {
    let header = "doc_date,cust_code,sku,net\n";
    lab.write(
        "in/erp/export.csv",
        format!("{header}2026-10-01,C1,P1,100\n2026-10-02,C2,P1,30\n").as_bytes(),
    );
    let erp = lab.path("erp.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", erp.display()))
        .await
        .unwrap();
    for sql in [
        "CREATE TABLE sales_lines (doc_date TEXT, cust_code TEXT, sku TEXT, net REAL)",
        "INSERT INTO sales_lines VALUES ('2026-10-01', 'C1', 'P1', 100), ('2026-10-02', 'C2', 'P1', 30)",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    pool.close().await;
    // each lab its own variable: both warehouses' scenarios may run at once
    let lab_name = lab.dir.path().file_name().unwrap().to_string_lossy();
    let env: String = format!("SB_TEST_SWITCH_{lab_name}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    std::env::set_var(&env, format!("sqlite://{}", erp.display()));
    let as_files = r#"
[[sources]]
name = "erp"
dataset = "sales"
kind = "csv"
path = "in/erp/*.csv"
columns = { invoice_date = "doc_date", customer_id = "cust_code", product_id = "sku", amount = "net" }
"#
    .to_string();
    let as_sql = sql_sales_source(
        "erp",
        &env,
        "SELECT doc_date, cust_code, sku, net FROM sales_lines WHERE doc_date >= :since",
    );
    let expected = vec![
        row("2026-10-01", "C1", "P1", 100.0),
        row("2026-10-02", "C2", "P1", 30.0),
    ];
    // a file's rows are numbered with its header, a query's from 1
    let sql = format!("sql:{env}");
    let file = "in/erp/export.csv";
    for (config, from, rows) in [
        (&as_files, file, [2, 3]),
        (&as_sql, sql.as_str(), [1, 2]),
        (&as_files, file, [2, 3]),
    ] {
        let summary = lab.ingest_into(&lab.settings(config), wh).await;
        assert!(summary.rejections.is_empty(), "{:#?}", rejections(&summary));
        assert_eq!(lab.sales_in(wh, "erp").await, expected, "{from}");
        let provenance: Vec<(String, i64)> = rows.iter().map(|r| (from.to_string(), *r)).collect();
        assert_eq!(lab.provenance_in(wh, "erp").await, provenance);
    }
}

on_both_warehouses!(
    switched_kind_scenario,
    a_source_switched_between_files_and_sql_keeps_one_copy_of_its_rows,
    a_source_switched_between_files_and_sql_keeps_one_copy_of_its_rows_on_postgresql
);

/// An ERP that cannot be reached and a query the ERP refuses are each
/// reported as their source's problem: the load waiting for their rows is
/// told they will never come, and the other sources still load. (The loader
/// used to wait for ever: the row pipeline kept a sender open.)
#[tokio::test]
async fn a_failing_sql_source_is_refused_and_the_run_goes_on() {
    let lab = Lab::new();
    std::fs::create_dir_all(lab.path("in/xlsx")).unwrap();
    flow_workbook(&lab.path("in/xlsx/october.xlsx"));
    // each test has its own variables, set before any read of them
    let missing = format!("sqlite://{}", lab.path("no/such/erp.db").display());
    let empty = format!("sqlite://{}?mode=rwc", lab.path("empty-erp.db").display());
    std::env::set_var("SB_TEST_UNREACHABLE_ERP_URL", missing);
    std::env::set_var("SB_TEST_EMPTY_ERP_URL", empty);
    let query = "SELECT doc_date, cust_code, sku, net FROM sales_lines WHERE doc_date >= :since";
    let settings = lab.settings(&format!(
        "{}{}{}",
        sql_sales_source("unreachable", "SB_TEST_UNREACHABLE_ERP_URL", query),
        sql_sales_source("no-table", "SB_TEST_EMPTY_ERP_URL", query),
        flow_source("flow", "in/xlsx/*.xlsx"),
    ));
    let summary = tokio::time::timeout(Duration::from_secs(60), lab.ingest(&settings))
        .await
        .expect("the ingest finishes");
    let lines = rejections(&summary);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with(
            "`unreachable`: sql:SB_TEST_UNREACHABLE_ERP_URL: cannot open file (error returned from database: "
        ) && lines[0].contains("unable to open database file"),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("`no-table`: sql:SB_TEST_EMPTY_ERP_URL: cannot open file (")
            && lines[1].contains("no such table: sales_lines"),
        "{lines:?}"
    );
    assert_eq!(summary.files_refused, 2);
    let mut expected = flow_expected();
    expected.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(lab.sales("flow").await, expected);
    assert!(lab.sales("unreachable").await.is_empty());
}

/// An ERP query that does not finish (here PostgreSQL sleeping) is cut off
/// after `ingest.sql_timeout_secs`: the source is refused, nothing of it is
/// kept, and the run goes on instead of holding the job for ever.
#[tokio::test]
async fn a_sql_source_slower_than_its_timeout_is_refused() {
    if sqlx::PgPool::connect("postgres://postgres@127.0.0.1:5432/postgres")
        .await
        .is_err()
    {
        require("PostgreSQL on 127.0.0.1:5432", false);
        return;
    }
    let lab = Lab::new();
    std::fs::create_dir_all(lab.path("in/xlsx")).unwrap();
    flow_workbook(&lab.path("in/xlsx/october.xlsx"));
    std::env::set_var(
        "SB_TEST_SLOW_ERP_URL",
        "postgres://postgres@127.0.0.1:5432/postgres",
    );
    let settings = lab.settings(&format!(
        "[ingest]\nsql_timeout_secs = 1\n{}{}",
        sql_sales_source(
            "slow",
            "SB_TEST_SLOW_ERP_URL",
            "SELECT DATE '2026-10-01' AS doc_date, 'C1' AS cust_code, 'P1' AS sku, 1.5 AS net \
             FROM pg_sleep(20) WHERE DATE '2026-10-01' >= :since",
        ),
        flow_source("flow", "in/xlsx/*.xlsx")
    ));
    let summary = tokio::time::timeout(Duration::from_secs(15), lab.ingest(&settings))
        .await
        .expect("the ingest gives up on the slow source");
    assert_eq!(
        rejections(&summary),
        vec!["`slow`: sql:SB_TEST_SLOW_ERP_URL: cannot open file (the source took longer than 1 s (`ingest.sql_timeout_secs`))".to_string()]
    );
    assert!(lab.sales("slow").await.is_empty());
    let mut expected = flow_expected();
    expected.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(lab.sales("flow").await, expected);
}

fn test_db_name(kind: &str) -> String {
    format!("sb_{kind}_{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn sql_source_on_postgresql_binds_since_and_replaces_the_window() {
    crate::warehouse::PgDatabase::run(async |url| erp_scenario("SB_TEST_PG_ERP_URL", url).await)
        .await;
}

/// A sales line as stored, every field.
type StoredSale = (
    String,
    String,
    String,
    f64,
    Option<f64>,
    Option<String>,
    Option<String>,
    Option<String>,
);

async fn stored_sales(lab: &Lab, source: &str) -> Vec<StoredSale> {
    sqlx::query_as(
        "SELECT invoice_date, customer_id, product_id, amount, quantity, invoice_no, line_no, rep_id \
         FROM sales WHERE source = ? ORDER BY row_no",
    )
    .bind(source)
    .fetch_all(&lab.warehouse().await)
    .await
    .unwrap()
}

/// Loads `erp` (every sales field mapped) and `erp-other` (`product_id`
/// mapped to `other`) from `url`'s `erp_lines`, and checks a run's refusal
/// of `erp-other` against what `check` says of its query.
async fn typed_columns_scenario(
    env: &str,
    url: &str,
    other: &str,
) -> (Vec<StoredSale>, Vec<StoredSale>, Vec<String>) {
    let lab = Lab::new();
    // each test has its own variable, set before any read of it
    std::env::set_var(env, url);
    let all = "SELECT * FROM erp_lines WHERE doc_date >= :since";
    let settings = lab.settings(&format!(
        r#"
[[sources]]
name = "erp"
dataset = "sales"
kind = "sql"
url_env = "{env}"
query = "{all}"
columns = {{ invoice_date = "doc_date", customer_id = "cust_code", product_id = "sku", amount = "net", quantity = "qty", invoice_no = "inv", line_no = "line", rep_id = "rep" }}
[[sources]]
name = "erp-other"
dataset = "sales"
kind = "sql"
url_env = "{env}"
query = "{all}"
columns = {{ invoice_date = "doc_date", customer_id = "cust_code", product_id = "{other}", amount = "net" }}
"#
    ));
    let summary = lab.ingest(&settings).await;
    let source = |name: &str| {
        settings
            .config
            .sources
            .iter()
            .find(|s| s.name == name)
            .unwrap()
            .clone()
    };
    let checked = salesbatch::ingest::check_query(&source("erp-other"), url)
        .await
        .unwrap();
    let run = rejections(&summary);
    assert_eq!(
        checked.map(|r| vec![r.to_string()]).unwrap_or_default(),
        run
    );
    assert!(salesbatch::ingest::check_query(&source("erp"), url)
        .await
        .unwrap()
        .is_none());
    (
        stored_sales(&lab, "erp").await,
        stored_sales(&lab, "erp-other").await,
        run,
    )
}

/// PostgreSQL columns are read by their type: `smallint`, `real` (as the
/// decimal written, not its float widening), `uuid`, a `bigint` beyond
/// 2^53 (as its exact digits), `char(n)` (trimmed). A mapped column of a
/// type salesbatch does not read (`money`) refuses the source, in a run
/// and in `check`; unmapped, it does not matter (`SELECT *`).
#[tokio::test]
async fn sql_columns_are_read_by_type_on_postgresql() {
    crate::warehouse::PgDatabase::run(async |url| {
        let erp = sqlx::PgPool::connect(url).await.unwrap();
        for sql in [
            "CREATE TABLE erp_lines (doc_date date, cust_code char(6), sku int2, net real, qty real, \
             inv bigint, line int2, rep varchar(4), batch uuid, fee money)",
            "INSERT INTO erp_lines VALUES ('2026-10-01', 'C1', 7, 0.1, 2.5, 1234567890123456789, 1, 'R1', \
             'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 5), ('2026-10-02', 'C2', -3, -12.25, NULL, 9007199254740992, 2, NULL, \
             'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12', NULL)",
        ] {
            sqlx::query(sql).execute(&erp).await.unwrap();
        }
        erp.close().await;
        let (stored, _, run) = typed_columns_scenario("SB_TEST_PG_TYPES_URL", url, "fee").await;
        let s = |v: &str| Some(v.to_string());
        assert_eq!(
            stored,
            [
                ("2026-10-01".into(), "C1".into(), "7".into(), 0.1, Some(2.5), s("1234567890123456789"), s("1"), s("R1")),
                ("2026-10-02".into(), "C2".into(), "-3".into(), -12.25, None, s("9007199254740992"), s("2"), None),
            ]
        );
        assert_eq!(
            run,
            ["`erp-other`: sql:SB_TEST_PG_TYPES_URL: cannot open file (column `fee` is of SQL type \
              `MONEY`, which salesbatch does not read: cast it in the query to text, a number or a date)"]
        );
        let (_, uuids, run) = typed_columns_scenario("SB_TEST_PG_UUID_URL", url, "batch").await;
        assert!(run.is_empty(), "{run:?}");
        let products: Vec<&str> = uuids.iter().map(|s| s.2.as_str()).collect();
        assert_eq!(
            products,
            [
                "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
                "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12"
            ]
        );
    })
    .await;
}

/// MariaDB columns are read by their type: unsigned integers (an `INT
/// UNSIGNED` 7 was read as `true`, MySQL's `bool` accepting any integer),
/// a `BIGINT UNSIGNED` beyond 2^53 as its exact digits, `FLOAT` as the
/// decimal written, `TINYINT`, `YEAR`. A mapped `TIME` column refuses the
/// source, in a run and in `check`.
#[tokio::test]
async fn sql_columns_are_read_by_type_on_mariadb() {
    on_mariadb("mytypes", async |url| {
        let erp = sqlx::MySqlPool::connect(url).await.unwrap();
        for sql in [
            "CREATE TABLE erp_lines (doc_date DATE, cust_code VARCHAR(10), sku INT UNSIGNED, net FLOAT, \
             qty TINYINT, inv BIGINT UNSIGNED, line SMALLINT UNSIGNED, rep CHAR(4), y YEAR, t TIME)",
            "INSERT INTO erp_lines VALUES ('2026-10-01', 'C1', 7, 0.1, 3, 18446744073709551615, 1, 'R1', 2026, '08:00'), \
             ('2026-10-02', 'C2', 4000000000, -12.25, -2, 900001, 2, NULL, 1999, NULL)",
        ] {
            sqlx::query(sql).execute(&erp).await.unwrap();
        }
        erp.close().await;
        let (stored, _, run) = typed_columns_scenario("SB_TEST_MY_TYPES_URL", url, "t").await;
        let s = |v: &str| Some(v.to_string());
        assert_eq!(
            stored,
            [
                ("2026-10-01".into(), "C1".into(), "7".into(), 0.1, Some(3.0), s("18446744073709551615"), s("1"), s("R1")),
                ("2026-10-02".into(), "C2".into(), "4000000000".into(), -12.25, Some(-2.0), s("900001"), s("2"), None),
            ]
        );
        assert_eq!(
            run,
            ["`erp-other`: sql:SB_TEST_MY_TYPES_URL: cannot open file (column `t` is of SQL type \
              `TIME`, which salesbatch does not read: cast it in the query to text, a number or a date)"]
        );
        let (_, years, run) = typed_columns_scenario("SB_TEST_MY_YEAR_URL", url, "y").await;
        assert!(run.is_empty(), "{run:?}");
        let products: Vec<&str> = years.iter().map(|s| s.2.as_str()).collect();
        assert_eq!(products, ["2026", "1999"]);
    })
    .await;
}

#[tokio::test]
async fn sql_source_on_mariadb_binds_since_and_replaces_the_window() {
    on_mariadb("my", async |url| {
        erp_scenario("SB_TEST_MY_ERP_URL", url).await;
    })
    .await;
}

/// Runs `scenario` on a MariaDB database of its own (named after `prefix`),
/// dropped afterwards. Without a server the test is skipped, or fails under
/// `CI=true`.
async fn on_mariadb(prefix: &str, scenario: impl AsyncFnOnce(&str)) {
    let Ok(server) = sqlx::MySqlPool::connect("mysql://root@127.0.0.1:3306/mysql").await else {
        require("MariaDB on 127.0.0.1:3306", false);
        return;
    };
    let db = test_db_name(prefix);
    let create = format!("CREATE DATABASE {db} CHARACTER SET utf8mb4");
    sqlx::query(sqlx::AssertSqlSafe(create))
        .execute(&server)
        .await
        .unwrap();
    scenario(&format!("mysql://root@127.0.0.1:3306/{db}")).await;
    let drop = format!("DROP DATABASE {db}");
    sqlx::query(sqlx::AssertSqlSafe(drop))
        .execute(&server)
        .await
        .unwrap();
}

/// A MySQL server outside strict mode stores zero dates (`0000-00-00`, which
/// the driver reads as no date) and zero-in-date values (`2026-10-00`): the
/// first is a missing date, the second an unparsable one that says why, not
/// an "unsupported SQL type `DATE`".
#[tokio::test]
async fn mysql_zero_dates_are_missing_or_unparsable_not_an_unsupported_type() {
    on_mariadb("myzero", async |url| {
        {
            use sqlx::Connection;
            // one connection: the lax sql_mode is the session's
            let mut erp = sqlx::MySqlConnection::connect(url).await.unwrap();
            for sql in [
                "SET SESSION sql_mode = ''",
                "CREATE TABLE sales_lines (doc_date DATE, cust_code VARCHAR(10), sku VARCHAR(10), net DECIMAL(10, 2))",
                "INSERT INTO sales_lines VALUES ('0000-00-00', 'C1', 'P1', 5), ('2026-10-00', 'C1', 'P1', 6), ('2026-10-03', 'C1', 'P1', 7)",
            ] {
                sqlx::query(sql).execute(&mut erp).await.unwrap();
            }
            erp.close().await.unwrap();
        }
        let lab = Lab::new();
        let env = "SB_TEST_MY_ZERO_URL";
        // each test has its own variable, set before any read of it
        std::env::set_var(env, url);
        let settings = lab.settings(&format!(
            "[ingest]\nmax_reject_ratio = 0.9\n{}",
            sql_sales_source("erp", env, "SELECT doc_date, cust_code, sku, net FROM sales_lines WHERE doc_date >= :since OR doc_date = '0000-00-00' ORDER BY net")
        ));
        let summary = lab.ingest(&settings).await;
        assert_eq!(
            rejections(&summary),
            [
                format!("`erp`: sql:{env} row 1 column `doc_date` value ``: missing required field"),
                format!(
                    "`erp`: sql:{env} row 2 column `doc_date` value `server returned invalid date: 2026/10/0`: unparsable date"
                ),
            ]
        );
        assert_eq!(
            lab.sales("erp").await,
            vec![row("2026-10-03", "C1", "P1", 7.0)]
        );
    })
    .await;
}

// ------------------------------------------------------------- LibreOffice

/// The first of `candidates` (a tool's usual install paths) that exists.
pub fn installed(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

pub fn soffice() -> Option<PathBuf> {
    installed(&[
        "/usr/bin/soffice",
        "/usr/bin/libreoffice",
        "/usr/lib/libreoffice/program/soffice",
    ])
}

/// Converts `input` with headless LibreOffice (its own profile, so tests can
/// run side by side) into `outdir`.
pub fn convert(soffice: &Path, input: &Path, to: &str, outdir: &Path) {
    convert_with(soffice, input, &[], to, outdir);
}

/// `convert` with options for reading `input` (`--infilter=…`).
pub fn convert_with(soffice: &Path, input: &Path, options: &[&str], to: &str, outdir: &Path) {
    let profile = tempfile::tempdir().unwrap();
    let status = Command::new(soffice)
        .arg(format!(
            "-env:UserInstallation=file://{}",
            profile.path().display()
        ))
        .args(options)
        .args(["--headless", "--norestore", "--convert-to", to, "--outdir"])
        .arg(outdir)
        .arg(input)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "soffice --convert-to {to} failed");
}

#[tokio::test]
async fn files_saved_by_libreoffice_load_like_the_original() {
    let Some(soffice) = soffice() else {
        require("LibreOffice (soffice)", false);
        return;
    };
    let lab = Lab::new();
    let src = lab.path("made/october.xlsx");
    std::fs::create_dir_all(src.parent().unwrap()).unwrap();
    flow_workbook(&src);
    for (to, dir) in [
        ("xls", "in/xls"),
        ("ods", "in/ods"),
        ("xlsx:Calc MS Excel 2007 XML", "in/lo-xlsx"),
    ] {
        std::fs::create_dir_all(lab.path(dir)).unwrap();
        convert(&soffice, &src, to, &lab.path(dir));
    }
    let settings = lab.settings(&format!(
        "{}{}{}",
        flow_source("xls", "in/xls/*.xls"),
        flow_source("ods", "in/ods/*.ods"),
        flow_source("lo-xlsx", "in/lo-xlsx/*.xlsx"),
    ));
    let summary = lab.ingest(&settings).await;
    assert!(summary.rejections.is_empty(), "{:?}", rejections(&summary));
    let mut expected = flow_expected();
    expected.sort_by(|a, b| a.partial_cmp(b).unwrap());
    for source in ["xls", "ods", "lo-xlsx"] {
        assert_eq!(lab.sales(source).await, expected, "{source}");
    }

    // the same xls with its DIMENSIONS record claiming 5,000,000 rows: calamine
    // would reserve memory for it and abort; it is refused instead
    let xls = std::fs::read(lab.path("in/xls/october.xls")).unwrap();
    lab.write(
        "in/hostile/october.xls",
        &patch_xls_dimensions(&xls, 5_000_000),
    );
    let settings = lab.settings(&flow_source("hostile", "in/hostile/*.xls"));
    let summary = lab.ingest(&settings).await;
    assert_eq!(
        rejections(&summary),
        vec!["`hostile`: in/hostile/october.xls: cannot open file (sheet declares absurd dimensions (5000000 rows × 5 columns, an xls sheet holds at most 65536 × 256))".to_string()]
    );

    // the same xls in the 1904 date system (its DATEMODE record set): the
    // typed date and the bare serial both count from 1904-01-01
    lab.write(
        "in/mac/october.xls",
        &patch_xls(&xls, |typ, body| {
            let edit = typ == 0x0022 && body.len() == 2;
            if edit {
                body.copy_from_slice(&1u16.to_le_bytes());
            }
            edit
        }),
    );
    let settings = lab.settings(&flow_source("mac", "in/mac/*.xls"));
    let summary = lab.ingest(&settings).await;
    assert!(summary.rejections.is_empty(), "{:?}", rejections(&summary));
    assert_eq!(lab.sales("mac").await, mac_flow_expected());

    // the 1904 xlsx of `xlsx_serials_follow_the_workbooks_1904_epoch` saved
    // as ods: LibreOffice keeps the dates by writing null date 1904-01-01,
    // and the bare serial, still 46330, must count from it too
    let mac_xlsx = lab.path("made/mac/october.xlsx");
    std::fs::create_dir_all(mac_xlsx.parent().unwrap()).unwrap();
    mac_flow_workbook(&mac_xlsx);
    std::fs::create_dir_all(lab.path("in/mac-ods")).unwrap();
    convert(&soffice, &mac_xlsx, "ods", &lab.path("in/mac-ods"));
    let settings = lab.settings(&flow_source("mac-ods", "in/mac-ods/*.ods"));
    let summary = lab.ingest(&settings).await;
    assert!(summary.rejections.is_empty(), "{:?}", rejections(&summary));
    assert_eq!(lab.sales("mac-ods").await, mac_flow_expected());

    // within the format's limits, but its cells span A1:IV60001 (15 M
    // cells): calamine would hold them densely, near 1 GB for a 10 kB file
    lab.write(
        "in/wide/october.xls",
        &patch_xls_numbers_to(&xls, 60_000, 255),
    );
    let settings = lab.settings(&flow_source("wide", "in/wide/*.xls"));
    let summary = lab.ingest(&settings).await;
    assert_eq!(
        rejections(&summary),
        vec!["`wide`: in/wide/october.xls: cannot open file (the sheets' cells span over 6000000 cells, more than salesbatch reads from an xls file; save it as xlsx or csv)".to_string()]
    );
}

/// Rewrites the records of an xls workbook's `Workbook` stream that `edit`
/// changes (it gets each record's type and body and says whether it edited).
fn patch_xls(xls: &[u8], mut edit: impl FnMut(u16, &mut [u8]) -> bool) -> Vec<u8> {
    let mut cf = cfb::CompoundFile::open(std::io::Cursor::new(xls.to_vec())).unwrap();
    let mut stream = Vec::new();
    std::io::Read::read_to_end(&mut cf.open_stream("/Workbook").unwrap(), &mut stream).unwrap();
    let mut i = 0;
    let mut patched = 0;
    while i + 4 <= stream.len() {
        let typ = u16::from_le_bytes([stream[i], stream[i + 1]]);
        let len = usize::from(u16::from_le_bytes([stream[i + 2], stream[i + 3]]));
        if edit(typ, &mut stream[i + 4..i + 4 + len]) {
            patched += 1;
        }
        i += 4 + len;
    }
    assert!(patched > 0, "no record was patched");
    cf.create_stream("/Workbook")
        .unwrap()
        .write_all(&stream)
        .unwrap();
    cf.flush().unwrap();
    cf.into_inner().into_inner()
}

/// Rewrites the last-row field of every BIFF8 `DIMENSIONS` record.
fn patch_xls_dimensions(xls: &[u8], rows: u32) -> Vec<u8> {
    patch_xls(xls, |typ, body| {
        let edit = typ == 0x0200 && body.len() >= 14 && body[4..8] != [0, 0, 0, 0];
        if edit {
            body[4..8].copy_from_slice(&rows.to_le_bytes());
        }
        edit
    })
}

/// Moves every numeric cell (`NUMBER`, `RK`) of the workbook to `row`, `col`
/// (zero-based), within the format's limits.
fn patch_xls_numbers_to(xls: &[u8], row: u16, col: u16) -> Vec<u8> {
    patch_xls(xls, |typ, body| {
        let edit = matches!(typ, 0x0203 | 0x027E) && body.len() >= 4;
        if edit {
            body[0..2].copy_from_slice(&row.to_le_bytes());
            body[2..4].copy_from_slice(&col.to_le_bytes());
        }
        edit
    })
}

// ----------------------------------------------------------------- crash

/// Kills `salesbatch run` while it is inside one big file's transaction and
/// checks that nothing of that file remains; the rerun then loads it whole.
#[test]
fn a_kill_in_the_middle_of_a_file_leaves_nothing_of_it() {
    let lab = Lab::new();
    const ROWS: usize = 400_000;
    let mut out = std::io::BufWriter::new(std::fs::File::create(lab.path("in/big.csv")).unwrap());
    writeln!(out, "日期,客户编码,产品编码,金额").unwrap();
    // long product ids: the file's transaction (~100 MB of pages) outgrows
    // the loader's 64 MiB page cache, so SQLite spills pages into the WAL
    // while rows are still being written. A transaction that fits the cache
    // reaches the WAL only at its commit, and a kill on seeing the WAL grow
    // could land after that commit on a busy machine.
    for r in 0..ROWS {
        writeln!(
            out,
            "2026-10-{:02},C{},P{:0>200},1.00",
            1 + r % 28,
            1 + r % 3,
            r % 50
        )
        .unwrap();
    }
    drop(out);
    let settings = lab.settings(&format!(
        "[[sources]]\nname = \"big\"\ndataset = \"sales\"\nkind = \"csv\"\npath = \"in/big.csv\"\n{FLOW_COLUMNS}\n"
    ));
    let config = settings.path.clone();
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_salesbatch"))
            .arg("--config")
            .arg(&config)
            .args(["run", "load", "--as-of", "2026-11-20"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut child = run();
    // the WAL grows past 4 MiB only once the big file's transaction spills
    let wal = lab.path("data/warehouse.db-wal");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut mid_file = false;
    while Instant::now() < deadline {
        if std::fs::metadata(&wal).map_or(0, |m| m.len()) > 4 << 20 {
            mid_file = true;
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        mid_file,
        "the run ended before the kill: make the file bigger"
    );
    child.kill().unwrap();
    child.wait().unwrap();

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pool = lab.warehouse().await;
        let count = |sql: &'static str| {
            let pool = pool.clone();
            async move {
                sqlx::query(sql)
                    .fetch_one(&pool)
                    .await
                    .unwrap()
                    .get::<i64, _>(0)
            }
        };
        assert_eq!(count("SELECT COUNT(*) FROM sales").await, 0);
        assert_eq!(
            count("SELECT COUNT(*) FROM ingested_files WHERE source = 'big'").await,
            0
        );
        // the masters before it were committed and stay
        assert_eq!(count("SELECT COUNT(*) FROM customers").await, 4);
        pool.close().await;
    });
    let statuses = || -> Vec<String> {
        let runs = rt.block_on(lab.runs());
        runs.into_iter().map(|(_, status)| status).collect()
    };
    assert_eq!(statuses(), ["running"]);
    let status = run().wait().unwrap();
    assert_eq!(status.code(), Some(0));
    rt.block_on(async {
        let pool = lab.warehouse().await;
        let n: i64 = sqlx::query("SELECT COUNT(*) FROM sales")
            .fetch_one(&pool)
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, ROWS as i64);
        pool.close().await;
    });
    // the killed run no longer reads as one still going
    assert_eq!(statuses(), ["interrupted", "success"]);
}

// ---------------------------------------------------------------- coercion

mod coercion {
    use chrono::NaiveDate;
    use proptest::prelude::*;
    use salesbatch::ingest::coerce::{
        date, date_format_hint, excel_serial, month, number, parse_date_text, parse_number_text,
        Cell, Epoch, Unparsable,
    };
    use salesbatch::metrics::YearMonth;

    /// The first format a `date_format_hint` names.
    fn first_hinted(hint: &str) -> &str {
        let from = hint.find('%').unwrap();
        let len = hint[from..].find(['`', '"']).unwrap();
        &hint[from..from + len]
    }

    /// `1234567` → `1,234,567`
    fn grouped(digits: &str) -> String {
        let head = digits.len() % 3;
        let mut out = digits[..head].to_string();
        for (i, chunk) in digits.as_bytes()[head..].chunks(3).enumerate() {
            if i > 0 || head > 0 {
                out.push(',');
            }
            out.push_str(std::str::from_utf8(chunk).unwrap());
        }
        out
    }

    proptest! {
        /// Plain decimals take a fast path; it must read every form of the
        /// same number as the same value.
        #[test]
        fn every_written_form_of_a_number_reads_the_same(
            int in "[1-9][0-9]{0,11}",
            frac in proptest::option::of("[0-9]{1,6}"),
        ) {
            let plain = match &frac {
                Some(f) => format!("{int}.{f}"),
                None => int.clone(),
            };
            let expected: f64 = format!("{int}.{}", frac.as_deref().unwrap_or("0")).parse().unwrap();
            let tail = frac.as_deref().map(|f| format!(".{f}")).unwrap_or_default();
            let with_commas = format!("{}{tail}", grouped(&int));
            prop_assert_eq!(parse_number_text(&plain), Some(expected));
            prop_assert_eq!(parse_number_text(&with_commas), Some(expected));
            prop_assert_eq!(parse_number_text(&format!("¥{with_commas}")), Some(expected));
            prop_assert_eq!(parse_number_text(&format!("-{plain}")), Some(-expected));
            prop_assert_eq!(parse_number_text(&format!("{plain}e3")), None);
        }

        /// A date in a form only `date_format` reads is rejected with the
        /// format to set; the format named first reads it as written
        /// (day first where day and month could be either).
        #[test]
        fn the_hinted_date_format_reads_the_date(days in 0i64..80_000) {
            let d = NaiveDate::from_ymd_opt(1900, 1, 1).unwrap() + chrono::Duration::days(days);
            for form in ["%Y.%m.%d", "%Y%m%d", "%d/%m/%Y", "%d.%m.%Y", "%d-%m-%Y", "%Y.%-m.%-d 08:30"] {
                let text = d.format(form).to_string();
                prop_assert_eq!(parse_date_text(&text, None), None, "{}", text);
                let hint = date_format_hint(&Cell::Text(text.clone())).unwrap();
                prop_assert_eq!(parse_date_text(&text, Some(first_hinted(&hint))), Some(d), "{} {}", text, hint);
            }
        }

        #[test]
        fn every_written_form_of_a_date_reads_the_same(days in 0i64..80_000) {
            let d = NaiveDate::from_ymd_opt(1900, 1, 1).unwrap() + chrono::Duration::days(days);
            for form in ["%Y-%m-%d", "%Y/%m/%d", "%Y年%m月%d日", "%Y-%-m-%-d", "%Y-%m-%dT08:30:00"] {
                let text = d.format(form).to_string();
                prop_assert_eq!(parse_date_text(&text, None), Some(d), "{}", text);
            }
        }
    }

    /// Excel's 1900 system skips its phantom 1900-02-29 (serial 60); an
    /// ods null date is a plain day 0, so serial 60 is 1900-02-28 there.
    #[test]
    fn serials_count_from_the_epoch_or_the_null_date() {
        let ymd = |y, m, d| NaiveDate::from_ymd_opt(y, m, d);
        let lo_default = Epoch::NullDate(ymd(1899, 12, 30).unwrap());
        assert_eq!(excel_serial(59.0, Epoch::E1900), ymd(1900, 2, 28));
        assert_eq!(excel_serial(60.0, Epoch::E1900), None);
        assert_eq!(excel_serial(61.0, Epoch::E1900), ymd(1900, 3, 1));
        assert_eq!(excel_serial(59.0, lo_default), ymd(1900, 2, 27));
        assert_eq!(excel_serial(60.0, lo_default), ymd(1900, 2, 28));
        assert_eq!(excel_serial(61.0, lo_default), ymd(1900, 3, 1));
        assert_eq!(excel_serial(46_330.9, lo_default), ymd(2026, 11, 4));
        assert_eq!(excel_serial(1_462.0, Epoch::E1904), ymd(1908, 1, 2));
        assert_eq!(
            excel_serial(1_462.0, Epoch::NullDate(ymd(1904, 1, 1).unwrap())),
            ymd(1908, 1, 2)
        );
        assert_eq!(excel_serial(0.5, lo_default), None);
    }

    /// An ERP's `20261003` held as a number is no serial: the source's
    /// `date_format` reads its digits; without one it stays unparsable, and
    /// a number that is a serial stays a serial.
    #[test]
    fn a_whole_number_beyond_the_serials_reads_in_the_date_format() {
        let ymd = |y, m, d| NaiveDate::from_ymd_opt(y, m, d);
        let number = |n: f64, format| date(&Cell::Number(n), Epoch::E1900, format);
        assert_eq!(number(20_261_003.0, Some("%Y%m%d")), Ok(ymd(2026, 10, 3)));
        assert_eq!(number(20_261_003.0, None), Err(Unparsable));
        assert_eq!(number(20_261_032.0, Some("%Y%m%d")), Err(Unparsable));
        assert_eq!(number(20_261_003.5, Some("%Y%m%d")), Err(Unparsable));
        assert_eq!(number(46_330.0, Some("%Y%m%d")), Ok(ymd(2026, 11, 4)));
    }

    /// A Chinese input method in full-width mode types `１，２３４．５`: the
    /// number 1,234.5 to anyone reading it, and to the reader; dates and
    /// months the same. A unit after the number stays unparsable.
    #[test]
    fn full_width_digits_and_punctuation_read_as_their_ascii() {
        let text = |s: &str| Cell::Text(s.into());
        assert_eq!(number(&text("１，２３４．５")), Ok(Some(1234.5)));
        assert_eq!(number(&text(" －５ ")), Ok(Some(-5.0)));
        assert_eq!(number(&text("￥１２")), Ok(Some(12.0)));
        assert_eq!(number(&text("１２元")), Err(Unparsable));
        let ymd = |y, m, d| NaiveDate::from_ymd_opt(y, m, d);
        let day = |s: &str| date(&text(s), Epoch::E1900, None);
        assert_eq!(day("２０２６－１０－０３"), Ok(ymd(2026, 10, 3)));
        assert_eq!(day("２０２６年１０月３日"), Ok(ymd(2026, 10, 3)));
        assert_eq!(day("２０２６／１０／０３"), Ok(ymd(2026, 10, 3)));
        assert_eq!(day("４５６５８"), Ok(ymd(2025, 1, 1)));
        assert_eq!(day("２０２６－０２－３０"), Err(Unparsable));
        // the form the `date_format` hint names is read from full-width text too
        let dotted = text("２０２６．１０．０３");
        assert_eq!(
            date_format_hint(&dotted),
            Some("set `date_format = \"%Y.%m.%d\"` on the source to read this form".into())
        );
        assert_eq!(
            date(&dotted, Epoch::E1900, Some("%Y.%m.%d")),
            Ok(ymd(2026, 10, 3))
        );
        assert_eq!(
            month(&text("２０２６－１０"), Epoch::E1900, None),
            Ok(Some(YearMonth::new(2026, 10)))
        );
        assert_eq!(
            month(&text("２０２６年１０月"), Epoch::E1900, None),
            Ok(Some(YearMonth::new(2026, 10)))
        );
    }

    /// Digits that can only be a serial are one, in text as in a number
    /// cell: five before an optional fraction. A year or a month written
    /// in a date column stays unparsable rather than a day in 1905 or 2454.
    #[test]
    fn a_serial_written_as_text_is_read_as_a_serial() {
        let ymd = |y, m, d| NaiveDate::from_ymd_opt(y, m, d);
        let text = |s: &str, epoch| date(&Cell::Text(s.into()), epoch, None);
        assert_eq!(text("45658", Epoch::E1900), Ok(ymd(2025, 1, 1)));
        assert_eq!(text(" 46330.75 ", Epoch::E1900), Ok(ymd(2026, 11, 4)));
        // 2025-01-01 + 1,462 days
        assert_eq!(text("45658", Epoch::E1904), Ok(ymd(2029, 1, 2)));
        for bad in [
            "2026",
            "202610",
            "20261003",
            "-45658",
            "45,658",
            "45658.5.1",
            "4565x",
        ] {
            assert_eq!(text(bad, Epoch::E1900), Err(Unparsable), "{bad}");
        }
    }

    #[test]
    fn an_unparsable_date_in_a_common_form_names_the_format_that_reads_it() {
        let hint = |c: Cell| date_format_hint(&c);
        let text = |s: &str| hint(Cell::Text(s.into()));
        let set = |f: &str| {
            Some(format!(
                "set `date_format = \"{f}\"` on the source to read this form"
            ))
        };
        assert_eq!(text(" 2026.10.03 "), set("%Y.%m.%d"));
        assert_eq!(hint(Cell::Number(20_261_003.0)), set("%Y%m%d"));
        assert_eq!(text("13/10/2026"), set("%d/%m/%Y"));
        assert_eq!(text("10/13/2026"), set("%m/%d/%Y"));
        assert_eq!(
            text("03-10-2026"),
            Some(
                "set `date_format` on the source to read this form: `%d-%m-%Y` if the day \
                 comes first, `%m-%d-%Y` if the month does"
                    .into()
            )
        );
        for none in ["N/A", "待定", "2026.02.30", "13/13/2026", "2026-10", ""] {
            assert_eq!(text(none), None, "{none}");
        }
        assert_eq!(hint(Cell::Number(20_261_003.5)), None);
        assert_eq!(hint(Cell::Bool(true)), None);
        // the hinted format reads the date with a time after it, as ISO does
        let oct3 = NaiveDate::from_ymd_opt(2026, 10, 3);
        for with_time in [
            "2026.10.03 08:30",
            "2026.10.03T08:30:00.000Z",
            "2026.10.03 8:30:00 +08:00",
        ] {
            assert_eq!(
                parse_date_text(with_time, Some("%Y.%m.%d")),
                oct3,
                "{with_time}"
            );
        }
        for not_a_time in [
            "2026.10.03x",
            "2026.10.03 上午",
            "2026.10.03 ",
            "2026.10.03.04",
        ] {
            assert_eq!(
                parse_date_text(not_a_time, Some("%Y.%m.%d")),
                None,
                "{not_a_time}"
            );
        }
    }

    #[test]
    fn impossible_dates_and_odd_numbers_are_unparsable() {
        for bad in [
            "2026-02-29",
            "2026-13-01",
            "2026-00-10",
            "2026-1a-01",
            "20261001",
            "2026-10-01x",
        ] {
            assert_eq!(parse_date_text(bad, None), None, "{bad}");
        }
        assert_eq!(
            parse_date_text("2024-02-29", None),
            NaiveDate::from_ymd_opt(2024, 2, 29)
        );
        for bad in [
            "1,23", "12,3456", "1.2.3", "NaN", "inf", "0x10", ".", "1 000",
        ] {
            assert_eq!(parse_number_text(bad), None, "{bad}");
        }
        assert_eq!(parse_number_text(".5"), Some(0.5));
        let long = format!("{}.{}", "9".repeat(70), "5".repeat(10));
        assert_eq!(parse_number_text(&long), long.parse().ok());
        assert_eq!(parse_number_text("-1,234.50"), Some(-1234.5));
        assert_eq!(parse_number_text("￥ 12,345"), Some(12345.0));
        assert_eq!(parse_number_text("7."), Some(7.0));
    }
}

/// A sales CSV of 20,000 lines of customer C1, enough that two loads of
/// it started together overlap.
fn twenty_thousand_lines() -> String {
    let mut csv = String::from("date,customer,product,amount\n");
    for i in 0..20_000 {
        csv.push_str(&format!("2026-10-{:02},C1,P{},1\n", i % 28 + 1, i % 7));
    }
    csv
}

/// Two runs ingesting the same changed file at once (a nightly and a
/// monthly job both fired at 02:30 on the 1st, or a manual run beside the
/// daemon) leave one copy of its rows, on either warehouse.
async fn concurrent_loads_scenario(lab: &Lab, wh: &Wh<'_>) {
    let csv = twenty_thousand_lines();
    let settings = lab.settings(&csv_sales_source("c", "", ENGLISH_COLUMNS));
    for round in 0..3 {
        // a changed file each round: every run loads it
        lab.write(
            "in/c/flow.csv",
            format!("{csv}2026-10-01,C2,P0,{round}\n").as_bytes(),
        );
        let (a, b) = tokio::join!(
            lab.ingest_into(&settings, wh),
            lab.ingest_into(&settings, wh)
        );
        assert!(a.files_loaded + b.files_loaded >= 1, "round {round}");
        assert_eq!(lab.sales_in(wh, "c").await.len(), 20_001, "round {round}");
    }
}

on_both_warehouses!(
    concurrent_loads_scenario,
    concurrent_loads_of_a_file_leave_one_copy,
    concurrent_loads_of_a_file_leave_one_copy_on_postgresql
);

/// Runs of two jobs that both ingest, started together (a nightly and a
/// monthly job fired at 02:30 on the 1st), take turns to ingest: the
/// second finds the first's files loaded and skips them, so a changed file
/// is parsed and loaded once, not by both; the turn is released after.
async fn jobs_ingesting_together_scenario(lab: &Lab, wh: &Wh<'_>) {
    let csv = twenty_thousand_lines();
    let settings = lab.settings(&format!(
        "{}[[jobs]]\nname = \"monthly-load\"\ncron = \"0 30 2 1 * *\"\nsteps = [\"ingest\"]\n",
        csv_sales_source("c", "", ENGLISH_COLUMNS)
    ));
    let job = |name: &str| {
        settings
            .config
            .jobs
            .iter()
            .find(|j| j.name == name)
            .unwrap()
            .clone()
    };
    let (nightly, monthly) = (job("load"), job("monthly-load"));
    let (a_store, b_store) = (
        Lab::store(&settings, wh).await,
        Lab::store(&settings, wh).await,
    );
    let as_of = chrono::NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
    let opts = salesbatch::jobs::RunOptions::default();
    for round in 0..3 {
        lab.write(
            "in/c/flow.csv",
            format!("{csv}2026-10-01,C2,P0,{round}\n").as_bytes(),
        );
        let (a, b) = tokio::join!(
            salesbatch::jobs::run_locked(&settings, a_store.as_ref(), &nightly, as_of, &opts),
            salesbatch::jobs::run_locked(&settings, b_store.as_ref(), &monthly, as_of, &opts)
        );
        let (a, b) = (a.unwrap().counts, b.unwrap().counts);
        // reps, customers and the sales file the first time; then only the
        // sales file changes
        let changed = if round == 0 { 3 } else { 1 };
        assert_eq!(a.files_loaded + b.files_loaded, changed, "round {round}");
        assert_eq!(
            a.files_skipped + b.files_skipped,
            2 * 3 - changed,
            "round {round}"
        );
        assert_eq!(lab.sales_in(wh, "c").await.len(), 20_001, "round {round}");
        assert!(
            lab.texts_in(wh, "SELECT job FROM job_locks")
                .await
                .is_empty(),
            "round {round}"
        );
    }
}

on_both_warehouses!(
    jobs_ingesting_together_scenario,
    jobs_ingesting_together_take_turns,
    jobs_ingesting_together_take_turns_on_postgresql
);
