//! `salesbatch demo`: writes a runnable demo (config, inbox Excel/CSV files
//! with Chinese headers, a SQLite "ERP" with `sales_lines`) from a seed. The
//! data is realistic enough to exercise every report: three regions, skewed
//! sales over 14 months, returns, visits, targets, surveys, and a few dirty
//! rows that the run must reject by name.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use chrono::{Datelike, Duration, NaiveDate};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rust_xlsxwriter::{Format, Workbook};

use crate::metrics::YearMonth;

pub const REGIONS: [&str; 3] = ["华东", "华北", "华南"];
const PRODUCTS: usize = 8;
/// Months of sales history before the as-of month.
const HISTORY_MONTHS: i64 = 14;
pub const ERP_ENV: &str = "SALESBATCH_DEMO_ERP_URL";

struct Writer {
    wb: Workbook,
    row: u32,
    date: Format,
}

impl Writer {
    fn new(headers: &[&str]) -> anyhow::Result<Self> {
        let mut wb = Workbook::new();
        let ws = wb.add_worksheet_with_constant_memory()?;
        for (i, h) in headers.iter().enumerate() {
            ws.set_column_width(u16::try_from(i)?, 14)?;
            ws.write_string(0, u16::try_from(i)?, *h)?;
        }
        Ok(Self {
            wb,
            row: 1,
            date: Format::new().set_num_format("yyyy-mm-dd"),
        })
    }

    fn row(&mut self, cells: &[Cell]) -> anyhow::Result<()> {
        let ws = self.wb.worksheet_from_index(0)?;
        for (i, c) in cells.iter().enumerate() {
            let col = u16::try_from(i)?;
            match c {
                Cell::S(s) => {
                    ws.write_string(self.row, col, s)?;
                }
                Cell::N(n) => {
                    ws.write_number(self.row, col, *n)?;
                }
                Cell::D(d) => {
                    ws.write_date_with_format(self.row, col, *d, &self.date)?;
                }
                Cell::E => {}
            }
        }
        self.row += 1;
        Ok(())
    }

    fn save(mut self, path: &Path) -> anyhow::Result<()> {
        self.wb
            .save(path)
            .with_context(|| format!("cannot write `{}`", path.display()))?;
        Ok(())
    }
}

enum Cell {
    S(String),
    N(f64),
    D(NaiveDate),
    E,
}

fn s(x: impl Into<String>) -> Cell {
    Cell::S(x.into())
}

struct Customer {
    id: String,
    rep: String,
    weight: f64,
    first_month: i64,
}

/// Writes the demo under `dir` and returns the path of its config file.
pub fn write(dir: &Path, customers: u32, seed: u64, as_of: NaiveDate) -> anyhow::Result<PathBuf> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for sub in [
        "inbox/reps",
        "inbox/customers",
        "inbox/flow",
        "inbox/flow_csv",
        "inbox/visits",
        "inbox/targets",
        "inbox/satisfaction",
    ] {
        std::fs::create_dir_all(dir.join(sub))
            .with_context(|| format!("cannot create `{}`", dir.join(sub).display()))?;
    }
    let m = YearMonth::of(as_of);

    // reps: three per region
    let mut reps = Vec::new();
    let mut w = Writer::new(&["代表编码", "姓名", "大区", "入职日期", "邮箱"])?;
    let names = [
        "张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵敏", "黄强", "周杰",
    ];
    for (i, name) in names.iter().enumerate() {
        let id = format!("R{:03}", i + 1);
        let region = i / 3;
        w.row(&[
            s(&id),
            s(*name),
            s(REGIONS[region]),
            Cell::D(NaiveDate::from_ymd_opt(2020 + i as i32 % 5, 3, 1).unwrap_or_default()),
            s(format!("rep{}@example.com", i + 1)),
        ])?;
        reps.push((id, region));
    }
    w.save(&dir.join("inbox/reps/reps.xlsx"))?;

    // customers: skewed weights (a few big hospitals, many small pharmacies)
    let mut custs = Vec::new();
    let mut w = Writer::new(&[
        "客户编码",
        "客户名称",
        "大区",
        "负责代表",
        "客户类型",
        "首次接触日期",
        "签约日期",
        "潜力评分",
        "覆盖评分",
        "状态",
    ])?;
    for i in 0..customers {
        let rep = &reps[rng.random_range(0..reps.len())];
        let id = format!("C{:05}", i + 1);
        let hospital = rng.random_bool(0.3);
        let weight = if hospital {
            rng.random_range(20_000.0..200_000.0)
        } else {
            rng.random_range(1_000.0..20_000.0)
        };
        // some customers start buying recently, some never
        let first_month = match i % 10 {
            0 => -1,
            1 => rng.random_range(0..3),
            _ => HISTORY_MONTHS,
        };
        let contact =
            m.offset(-first_month.max(1) - 1).first_day() + Duration::days(rng.random_range(0..25));
        let name = if i == 3 {
            "=HYPERLINK(\"http://evil.example\",\"点我\")".to_string()
        } else {
            format!(
                "{}{}",
                if hospital {
                    "人民医院"
                } else {
                    "大药房"
                },
                i + 1
            )
        };
        let status = if i % 23 == 22 { s("停用") } else { Cell::E };
        w.row(&[
            s(&id),
            s(name),
            s(REGIONS[rep.1]),
            s(&rep.0),
            s(if hospital { "医院" } else { "药店" }),
            Cell::D(contact),
            if first_month >= 0 {
                Cell::D(contact + Duration::days(10))
            } else {
                Cell::E
            },
            if i % 4 == 0 {
                Cell::E
            } else {
                Cell::N(f64::from(rng.random_range(20..100u32)))
            },
            Cell::E,
            status,
        ])?;
        custs.push(Customer {
            id,
            rep: rep.0.clone(),
            weight,
            first_month,
        });
    }
    w.save(&dir.join("inbox/customers/customers.xlsx"))?;

    // sales: channel by customer (ERP, distributor xlsx per month, GBK CSV)
    let erp_path = dir.join("erp.db");
    let _ = std::fs::remove_file(&erp_path);
    let mut erp_rows: Vec<(String, u32, NaiveDate, String, String, f64, f64)> = Vec::new();
    let mut csv_out = Vec::new();
    csv_out.push(["销售日期", "终端编码", "品规编码", "数量", "销售金额"].join(","));
    for k in (0..=HISTORY_MONTHS).rev() {
        let month = m.offset(-k);
        let mut flow = Writer::new(&["日期", "客户编码", "产品编码", "数量", "金额"])?;
        for (ci, c) in custs.iter().enumerate() {
            if c.first_month < 0 || k > c.first_month {
                continue;
            }
            let lines = rng.random_range(1..4);
            for _ in 0..lines {
                let day = rng.random_range(1..=month.days());
                // the month's lines fall across all its days and only those
                // up to as-of exist yet: a run on the 1st shows one day's
                // sales, not a month's crowded into a day
                if k == 0 && day > as_of.day() {
                    continue;
                }
                let date = NaiveDate::from_ymd_opt(month.year, month.month, day).unwrap_or(as_of);
                let product = format!(
                    "P{:02}",
                    1 + (rng.random_range(0.0..1.0f64).powi(2) * PRODUCTS as f64) as usize
                );
                let qty = f64::from(rng.random_range(1..50u32));
                let trend =
                    1.0 + 0.02 * (HISTORY_MONTHS - k) as f64 * if ci % 2 == 0 { 1.0 } else { -0.5 };
                let mut amount =
                    (c.weight * trend / f64::from(lines) * rng.random_range(0.6..1.4) * 100.0)
                        .round()
                        / 100.0;
                if rng.random_bool(0.03) {
                    amount = -amount / 4.0; // a return
                }
                match ci % 3 {
                    0 => erp_rows.push((
                        format!("SO{}{:04}", month.index(), erp_rows.len()),
                        1,
                        date,
                        c.id.clone(),
                        product,
                        qty,
                        amount,
                    )),
                    1 => flow.row(&[
                        Cell::D(date),
                        s(&c.id),
                        s(product),
                        Cell::N(qty),
                        Cell::N(amount),
                    ])?,
                    _ => csv_out.push(format!(
                        "{},{},{},{},\"{}\"",
                        date.format("%Y/%m/%d"),
                        c.id,
                        product,
                        qty,
                        crate::report::tables::money(amount)
                    )),
                }
            }
        }
        // dirty rows a person must see named in the data-quality report,
        // one per file so that each file stays under the reject ratio
        match k {
            1 => flow.row(&[
                Cell::D(month.first_day()),
                s("C00002"),
                s("P01"),
                Cell::N(1.0),
                s("N/A"),
            ])?,
            2 => flow.row(&[
                s("2026/02/30"),
                s("C00002"),
                s("P01"),
                Cell::N(1.0),
                Cell::N(10.0),
            ])?,
            3 => flow.row(&[
                Cell::D(month.first_day()),
                s("X99999"),
                s("P01"),
                Cell::N(1.0),
                Cell::N(10.0),
            ])?,
            _ => {}
        }
        flow.save(&dir.join(format!(
            "inbox/flow/flow_{}{:02}.xlsx",
            month.year, month.month
        )))?;
    }
    let csv_text = csv_out.join("\r\n") + "\r\n";
    let (gbk, _, _) = encoding_rs::GBK.encode(&csv_text);
    std::fs::write(dir.join("inbox/flow_csv/distributor.csv"), gbk)?;
    write_erp(&erp_path, &erp_rows)?;

    // visits this month and last, targets, surveys
    let mut w = Writer::new(&["拜访日期", "代表编码", "客户编码", "拜访类型", "结果"])?;
    for k in [1, 0] {
        let month = m.offset(-k);
        for c in &custs {
            for _ in 0..rng.random_range(0..5) {
                let day = rng.random_range(1..=month.days());
                if k == 0 && day > as_of.day() {
                    continue;
                }
                let date = NaiveDate::from_ymd_opt(month.year, month.month, day).unwrap_or(as_of);
                let kind = if rng.random_bool(0.8) {
                    "face_to_face"
                } else {
                    "phone"
                };
                w.row(&[
                    Cell::D(date),
                    s(&c.rep),
                    s(&c.id),
                    if rng.random_bool(0.1) {
                        Cell::E
                    } else {
                        s(kind)
                    },
                    s("正常"),
                ])?;
            }
        }
    }
    w.save(&dir.join("inbox/visits/visits.xlsx"))?;
    let mut w = Writer::new(&["代表编码", "月份", "销售目标", "开发目标"])?;
    for (id, _) in &reps {
        for k in [1, 0] {
            let month = m.offset(-k);
            let base: f64 = custs
                .iter()
                .filter(|c| &c.rep == id)
                .map(|c| c.weight)
                .sum();
            w.row(&[
                s(id),
                s(month.to_string()),
                Cell::N((base * 1.05).round()),
                Cell::N(f64::from(rng.random_range(1..4u32))),
            ])?;
        }
    }
    w.save(&dir.join("inbox/targets/targets.xlsx"))?;
    let mut survey = String::from("\u{feff}客户编码,调查日期,满意度\n");
    for c in &custs {
        if !rng.random_bool(0.5) {
            continue;
        }
        let d = as_of - Duration::days(rng.random_range(1..300));
        survey.push_str(&format!("{},{},{}\n", c.id, d, rng.random_range(60..100)));
    }
    std::fs::write(dir.join("inbox/satisfaction/survey.csv"), survey)?;

    let config_path = dir.join("salesbatch.toml");
    std::fs::write(&config_path, DEMO_CONFIG)?;
    if std::env::var_os(ERP_ENV).is_none() {
        let abs = std::fs::canonicalize(&erp_path)?;
        // the demo is self-contained: its ERP URL is set for this process
        std::env::set_var(ERP_ENV, format!("sqlite://{}", abs.display()));
    }
    let _ = std::fs::remove_dir_all(dir.join("data"));
    let _ = std::fs::remove_dir_all(dir.join("out"));
    Ok(config_path)
}

fn write_erp(
    path: &Path,
    rows: &[(String, u32, NaiveDate, String, String, f64, f64)],
) -> anyhow::Result<()> {
    let url = format!("sqlite://{}", path.display());
    let rt = tokio::runtime::Handle::try_current();
    let work = async move {
        use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
        use std::str::FromStr;
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(SqliteConnectOptions::from_str(&url)?.create_if_missing(true))
            .await?;
        sqlx::query("CREATE TABLE sales_lines (doc_no TEXT, line_no INTEGER, doc_date DATE, cust_code TEXT, sku TEXT, qty REAL, net REAL)")
            .execute(&pool)
            .await?;
        let mut tx = pool.begin().await?;
        for chunk in rows.chunks(500) {
            let mut qb = sqlx::QueryBuilder::new(
                "INSERT INTO sales_lines (doc_no, line_no, doc_date, cust_code, sku, qty, net) ",
            );
            qb.push_values(chunk, |mut b, r| {
                b.push_bind(r.0.clone())
                    .push_bind(r.1)
                    .push_bind(r.2)
                    .push_bind(r.3.clone())
                    .push_bind(r.4.clone())
                    .push_bind(r.5)
                    .push_bind(r.6);
            });
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        pool.close().await;
        anyhow::Ok(())
    };
    match rt {
        Ok(h) => tokio::task::block_in_place(|| h.block_on(work)),
        Err(_) => tokio::runtime::Runtime::new()?.block_on(work),
    }
}

const DEMO_CONFIG: &str = include_str!("../config/demo.toml");
