//! The SQLite backend: every SQL statement the embedded warehouse runs.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::NaiveDate;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, Transaction};
use tokio::sync::mpsc;

use super::{
    fold_visit_days, now, reason_from, Batch, DeliveryRow, FileLoad, FileState, LoadOutcome,
    Replace, Result, RunRow, Store, WarehouseError,
};
use crate::config::{Dataset, VisitsConfig};
use crate::ingest::record::{Located, Masters, Record, Rejection};
use crate::metrics::calendar::{window, YearMonth};
use crate::metrics::tiers::TierResult;
use crate::metrics::{
    Customer, Inputs, MonthlySales, PeriodRange, PeriodSales, PurchaseSpan, Rep, Survey, Target,
};

/// Rows per multi-row INSERT: 13 binds × 1,000 stays far below SQLite's 32,766.
const CHUNK: usize = 1_000;

pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    pub async fn open(url: &str) -> Result<Self> {
        let connect = |source| WarehouseError::Connect {
            url: super::redact(url),
            source,
        };
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .filter(|p| !p.starts_with(":memory:"))
        {
            let path = path.split('?').next().unwrap_or(path);
            if let Some(parent) = std::path::Path::new(path).parent() {
                if !parent.as_os_str().is_empty() {
                    std::fs::create_dir_all(parent).map_err(|e| connect(sqlx::Error::Io(e)))?;
                }
            }
        }
        let options = SqliteConnectOptions::from_str(url)
            .map_err(connect)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            // index maintenance on millions of rows thrashes the default 2 MB cache
            .pragma("cache_size", "-65536")
            .pragma("temp_store", "memory")
            .foreign_keys(false);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(connect)?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        Ok(Self { pool })
    }
}

async fn delete_replaced(tx: &mut Transaction<'_, Sqlite>, load: &FileLoad) -> Result<()> {
    // table names come from the fixed dataset list, never from input
    let table = load.dataset.name();
    match &load.replace {
        Replace::File => {
            let sql = format!("DELETE FROM {table} WHERE source = ? AND file = ?");
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&load.source)
                .bind(&load.file)
                .execute(&mut **tx)
                .await?;
        }
        Replace::Source => {
            let sql = format!("DELETE FROM {table} WHERE source = ?");
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&load.source)
                .execute(&mut **tx)
                .await?;
        }
        Replace::SourceSince(since) => {
            sqlx::query("DELETE FROM sales WHERE source = ? AND invoice_date >= ?")
                .bind(&load.source)
                .bind(since)
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(())
}

async fn insert_rows(
    tx: &mut Transaction<'_, Sqlite>,
    load: &FileLoad,
    rows: &[Located],
) -> Result<()> {
    for chunk in rows.chunks(CHUNK) {
        let (head, tail) = match load.dataset {
            Dataset::Sales => (
                "INSERT INTO sales (invoice_date, customer_id, product_id, amount, quantity, invoice_no, line_no, rep_id, source, file, sheet, row_no) ",
                " ON CONFLICT (invoice_no, line_no) WHERE invoice_no IS NOT NULL AND line_no IS NOT NULL DO UPDATE SET \
                 invoice_date = excluded.invoice_date, customer_id = excluded.customer_id, product_id = excluded.product_id, \
                 amount = excluded.amount, quantity = excluded.quantity, rep_id = excluded.rep_id, source = excluded.source, \
                 file = excluded.file, sheet = excluded.sheet, row_no = excluded.row_no",
            ),
            Dataset::Customers => (
                "INSERT INTO customers (customer_id, name, region, rep_id, customer_type, first_contact_date, signed_date, prospect_score, coverage_score, status, source, file, sheet, row_no) ",
                " ON CONFLICT (customer_id) DO UPDATE SET name = excluded.name, region = excluded.region, rep_id = excluded.rep_id, \
                 customer_type = excluded.customer_type, first_contact_date = excluded.first_contact_date, signed_date = excluded.signed_date, \
                 prospect_score = excluded.prospect_score, coverage_score = excluded.coverage_score, status = excluded.status, \
                 source = excluded.source, file = excluded.file, sheet = excluded.sheet, row_no = excluded.row_no",
            ),
            Dataset::Reps => (
                "INSERT INTO reps (rep_id, name, region, hire_date, email, source, file, sheet, row_no) ",
                " ON CONFLICT (rep_id) DO UPDATE SET name = excluded.name, region = excluded.region, hire_date = excluded.hire_date, \
                 email = excluded.email, source = excluded.source, file = excluded.file, sheet = excluded.sheet, row_no = excluded.row_no",
            ),
            Dataset::Visits => (
                "INSERT INTO visits (visit_date, rep_id, customer_id, visit_type, outcome, source, file, sheet, row_no) ",
                "",
            ),
            Dataset::Targets => (
                "INSERT INTO targets (rep_id, month, sales_target, new_customer_target, source, file, sheet, row_no) ",
                " ON CONFLICT (rep_id, month) DO UPDATE SET sales_target = excluded.sales_target, \
                 new_customer_target = excluded.new_customer_target, source = excluded.source, file = excluded.file, \
                 sheet = excluded.sheet, row_no = excluded.row_no",
            ),
            Dataset::Satisfaction => {
                ("INSERT INTO satisfaction (customer_id, date, score, source, file, sheet, row_no) ", "")
            }
        };
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(head);
        qb.push_values(chunk, |mut b, located| {
            match &located.record {
                Record::Sale(s) => {
                    b.push_bind(s.invoice_date)
                        .push_bind(s.customer_id.as_str())
                        .push_bind(s.product_id.as_str())
                        .push_bind(s.amount)
                        .push_bind(s.quantity)
                        .push_bind(s.invoice_no.as_deref())
                        .push_bind(s.line_no.as_deref())
                        .push_bind(s.rep_id.as_deref());
                }
                Record::Customer(c) => {
                    b.push_bind(c.customer_id.as_str())
                        .push_bind(c.name.as_str())
                        .push_bind(c.region.as_str())
                        .push_bind(c.rep_id.as_str())
                        .push_bind(c.customer_type.as_deref())
                        .push_bind(c.first_contact_date)
                        .push_bind(c.signed_date)
                        .push_bind(c.prospect_score)
                        .push_bind(c.coverage_score)
                        .push_bind(c.status.as_deref());
                }
                Record::Rep(r) => {
                    b.push_bind(r.rep_id.as_str())
                        .push_bind(r.name.as_str())
                        .push_bind(r.region.as_str())
                        .push_bind(r.hire_date)
                        .push_bind(r.email.as_deref());
                }
                Record::Visit(v) => {
                    b.push_bind(v.visit_date)
                        .push_bind(v.rep_id.as_str())
                        .push_bind(v.customer_id.as_str())
                        .push_bind(v.visit_type.as_deref())
                        .push_bind(v.outcome.as_deref());
                }
                Record::Target(t) => {
                    b.push_bind(t.rep_id.as_str())
                        .push_bind(t.month.to_string())
                        .push_bind(t.sales_target)
                        .push_bind(t.new_customer_target);
                }
                Record::Survey(s) => {
                    b.push_bind(s.customer_id.as_str())
                        .push_bind(s.date)
                        .push_bind(s.score);
                }
            }
            b.push_bind(load.source.as_str())
                .push_bind(load.file.as_str())
                .push_bind(load.sheet.as_str())
                .push_bind(i64::try_from(located.row).unwrap_or(i64::MAX));
        });
        qb.push(tail);
        qb.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Converts rows as they arrive, so the raw rows of a large aggregate are
/// never all held at once next to their typed copies.
async fn map_rows<T>(
    query: sqlx::query::Query<'_, Sqlite, <Sqlite as sqlx::Database>::Arguments>,
    pool: &SqlitePool,
    mut convert: impl FnMut(&sqlx::sqlite::SqliteRow) -> Option<T>,
) -> Result<Vec<T>> {
    let mut rows = query.fetch(pool);
    let mut out = Vec::new();
    while let Some(row) = futures_util::TryStreamExt::try_next(&mut rows).await? {
        out.extend(convert(&row));
    }
    Ok(out)
}

fn parse_date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap_or(NaiveDate::MIN)
}

/// The three sales aggregates compute needs, from one pass over the table.
struct SalesAggregates {
    monthly_sales: Vec<MonthlySales>,
    purchases: HashMap<String, PurchaseSpan>,
    period_sales: Vec<PeriodSales>,
}

/// Small integer ids for the strings of one scan, so millions of rows share
/// one copy of each id.
#[derive(Default)]
struct Interner {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl Interner {
    fn id(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.ids.get(s) {
            return i;
        }
        let i = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.ids.insert(s.to_string(), i);
        self.names.push(s.to_string());
        i
    }
    fn name(&self, i: u32) -> &str {
        &self.names[i as usize]
    }
    /// Each id's position in the byte order of the names.
    fn ranks(&self) -> Vec<u32> {
        let mut order: Vec<u32> =
            (0..u32::try_from(self.names.len()).unwrap_or(u32::MAX)).collect();
        order.sort_unstable_by(|a, b| self.name(*a).cmp(self.name(*b)));
        let mut rank = vec![0; order.len()];
        for (r, id) in order.into_iter().enumerate() {
            rank[id as usize] = u32::try_from(r).unwrap_or(u32::MAX);
        }
        rank
    }
}

impl SqliteStore {
    /// Monthly sums per customer × product in [`from`, `to`), first and last
    /// purchase per customer up to `as_of`, and period sums per customer ×
    /// line rep in [`p_from`, `p_to`]. SQLite would sort every row through a
    /// temporary B-tree for each GROUP BY, reaching the rows through the date
    /// index one random read at a time; one sequential scan hashed here is
    /// several times faster (see docs/PERFORMANCE.md).
    async fn sales_aggregates(
        &self,
        as_of: NaiveDate,
        from: NaiveDate,
        to: NaiveDate,
        p_from: NaiveDate,
        p_to: NaiveDate,
    ) -> Result<SalesAggregates> {
        // ISO dates compare as text, so no row's date is parsed
        let (from, to) = (from.to_string(), to.to_string());
        let (p_from, p_to) = (p_from.to_string(), p_to.to_string());
        let mut customers = Interner::default();
        let mut products = Interner::default();
        let mut reps = Interner::default();
        let mut monthly: HashMap<(u32, u32, YearMonth), (f64, u64)> = HashMap::new();
        let mut spans: HashMap<u32, (String, String)> = HashMap::new();
        let mut period: HashMap<(u32, Option<u32>), f64> = HashMap::new();
        let mut rows = sqlx::query(
            "SELECT customer_id, product_id, invoice_date, amount, rep_id FROM sales NOT INDEXED \
             WHERE invoice_date <= ?",
        )
        .bind(as_of)
        .fetch(&self.pool);
        while let Some(r) = futures_util::TryStreamExt::try_next(&mut rows).await? {
            let date: &str = r.get(2);
            let amount: f64 = r.get(3);
            let customer = customers.id(r.get::<&str, _>(0));
            if amount > 0.0 {
                spans
                    .entry(customer)
                    .and_modify(|(first, last)| {
                        if date < first.as_str() {
                            date.clone_into(first);
                        }
                        if date > last.as_str() {
                            date.clone_into(last);
                        }
                    })
                    .or_insert_with(|| (date.to_string(), date.to_string()));
            }
            if date >= from.as_str() && date < to.as_str() {
                if let Some(month) = date.get(..7).and_then(YearMonth::parse) {
                    let product = products.id(r.get::<&str, _>(1));
                    let cell = monthly.entry((customer, product, month)).or_default();
                    cell.0 += amount;
                    cell.1 += 1;
                }
            }
            if date >= p_from.as_str() && date <= p_to.as_str() {
                let rep = r.get::<Option<&str>, _>(4).map(|s| reps.id(s));
                *period.entry((customer, rep)).or_default() += amount;
            }
        }
        drop(rows);
        // sorted as a GROUP BY … ORDER BY would return them: sums taken in a
        // fixed order give the same last bits on every run and both backends
        let (c_rank, p_rank, r_rank) = (customers.ranks(), products.ranks(), reps.ranks());
        let mut monthly: Vec<_> = monthly.into_iter().collect();
        monthly
            .sort_unstable_by_key(|((c, p, m), _)| (c_rank[*c as usize], p_rank[*p as usize], *m));
        let mut period: Vec<_> = period.into_iter().collect();
        period.sort_unstable_by_key(|((c, r), _)| {
            (c_rank[*c as usize], r.map(|r| r_rank[r as usize]))
        });
        Ok(SalesAggregates {
            monthly_sales: monthly
                .into_iter()
                .map(|((c, p, month), (amount, lines))| MonthlySales {
                    customer_id: customers.name(c).to_string(),
                    product_id: products.name(p).to_string(),
                    month,
                    amount,
                    lines,
                })
                .collect(),
            purchases: spans
                .into_iter()
                .map(|(c, (first, last))| {
                    (
                        customers.name(c).to_string(),
                        PurchaseSpan {
                            first: parse_date(&first),
                            last: parse_date(&last),
                        },
                    )
                })
                .collect(),
            period_sales: period
                .into_iter()
                .map(|((c, rep), amount)| PeriodSales {
                    customer_id: customers.name(c).to_string(),
                    line_rep_id: rep.map(|r| reps.name(r).to_string()),
                    amount,
                })
                .collect(),
        })
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn file_state(&self, source: &str, file: &str) -> Result<Option<FileState>> {
        let row = sqlx::query(
            "SELECT sha256, unknown_ids, rows_rejected FROM ingested_files WHERE source = ? AND file = ?",
        )
        .bind(source)
        .bind(file)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| FileState {
            sha256: r.get(0),
            unknown_ids: u64::try_from(r.get::<i64, _>(1)).unwrap_or(0),
            rows_rejected: u64::try_from(r.get::<i64, _>(2)).unwrap_or(0),
        }))
    }

    async fn load_file(
        &self,
        load: FileLoad,
        mut rx: mpsc::Receiver<Batch>,
    ) -> Result<LoadOutcome> {
        let mut tx = self.pool.begin().await?;
        delete_replaced(&mut tx, &load).await?;
        let mut loaded = 0u64;
        while let Some(batch) = rx.recv().await {
            match batch {
                Batch::Rows(rows) => {
                    insert_rows(&mut tx, &load, &rows).await?;
                    loaded += rows.len() as u64;
                }
                Batch::End {
                    data_rows,
                    rejected,
                    unknown_ids,
                } => {
                    if load.ratio_exceeded(data_rows, rejected) {
                        tx.rollback().await?;
                        return Ok(LoadOutcome::RatioExceeded {
                            rejected,
                            data_rows,
                        });
                    }
                    sqlx::query(
                        "INSERT INTO ingested_files (source, file, sha256, rows_loaded, rows_rejected, unknown_ids, loaded_at) \
                         VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (source, file) DO UPDATE SET sha256 = excluded.sha256, \
                         rows_loaded = excluded.rows_loaded, rows_rejected = excluded.rows_rejected, \
                         unknown_ids = excluded.unknown_ids, loaded_at = excluded.loaded_at",
                    )
                    .bind(&load.source)
                    .bind(&load.file)
                    .bind(&load.sha256)
                    .bind(i64::try_from(loaded).unwrap_or(i64::MAX))
                    .bind(i64::try_from(rejected).unwrap_or(i64::MAX))
                    .bind(i64::try_from(unknown_ids).unwrap_or(i64::MAX))
                    .bind(now())
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    return Ok(LoadOutcome::Loaded { rows: loaded });
                }
            }
        }
        tx.rollback().await?;
        Ok(LoadOutcome::Aborted)
    }

    async fn latest_invoice_date(&self, source: &str) -> Result<Option<NaiveDate>> {
        let d: Option<String> =
            sqlx::query_scalar("SELECT MAX(invoice_date) FROM sales WHERE source = ?")
                .bind(source)
                .fetch_one(&self.pool)
                .await?;
        Ok(d.as_deref().map(parse_date))
    }

    async fn masters(&self) -> Result<Masters> {
        let reps: Vec<String> = sqlx::query_scalar("SELECT rep_id FROM reps")
            .fetch_all(&self.pool)
            .await?;
        let customers: Vec<String> = sqlx::query_scalar("SELECT customer_id FROM customers")
            .fetch_all(&self.pool)
            .await?;
        Ok(Masters {
            customers: customers.into_iter().collect(),
            reps: reps.into_iter().collect(),
        })
    }

    async fn regions(&self) -> Result<std::collections::BTreeSet<String>> {
        let rows: Vec<String> =
            sqlx::query_scalar("SELECT region FROM customers UNION SELECT region FROM reps")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().collect())
    }

    async fn start_run(&self, job: &str, as_of: NaiveDate, rules: &str) -> Result<i64> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO runs (job, as_of, started_at, status, rules) VALUES (?, ?, ?, 'running', ?) RETURNING run_id",
        )
        .bind(job)
        .bind(as_of)
        .bind(now())
        .bind(rules)
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    async fn finish_run(
        &self,
        run_id: i64,
        status: &str,
        counts: &str,
        error: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE runs SET finished_at = ?, status = ?, counts = ?, error = ? WHERE run_id = ?",
        )
        .bind(now())
        .bind(status)
        .bind(counts)
        .bind(error)
        .bind(run_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn runs(&self, limit: i64) -> Result<Vec<RunRow>> {
        let rows = sqlx::query(
            "SELECT run_id, job, as_of, started_at, finished_at, status, counts, rules FROM runs ORDER BY run_id DESC LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(run_row).collect())
    }

    async fn snapshot_run(&self, as_of: NaiveDate) -> Result<Option<RunRow>> {
        let row = sqlx::query(
            "SELECT run_id, job, as_of, started_at, finished_at, status, counts, rules FROM runs \
             WHERE as_of = ? AND run_id IN (SELECT run_id FROM metric_snapshots) ORDER BY run_id DESC LIMIT 1",
        )
        .bind(as_of)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(run_row))
    }

    async fn save_rejections(&self, run_id: i64, rows: &[Rejection]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for chunk in rows.chunks(CHUNK) {
            let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO rejections (run_id, source, file, sheet, row_no, cell, column_name, value, reason, detail) ",
            );
            qb.push_values(chunk, |mut b, r| {
                b.push_bind(run_id)
                    .push_bind(r.source.clone())
                    .push_bind(r.file.clone())
                    .push_bind(r.sheet.clone())
                    .push_bind(i64::try_from(r.row).unwrap_or(i64::MAX))
                    .push_bind(r.cell.clone())
                    .push_bind(r.column.clone())
                    .push_bind(r.value.clone())
                    .push_bind(r.reason.as_str())
                    .push_bind(r.detail.clone());
            });
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn rejections(&self, run_id: i64) -> Result<Vec<Rejection>> {
        let rows = sqlx::query(
            "SELECT source, file, sheet, row_no, cell, column_name, value, reason, detail FROM rejections \
             WHERE run_id = ? ORDER BY source, file, sheet, row_no",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(rejection_row).collect())
    }

    async fn file_rejections(&self, source: &str, file: &str) -> Result<Vec<Rejection>> {
        let rows = sqlx::query(
            "SELECT source, file, sheet, row_no, cell, column_name, value, reason, detail FROM rejections \
             WHERE source = ? AND file = ? AND row_no > 0 AND run_id = \
             (SELECT MAX(run_id) FROM rejections WHERE source = ? AND file = ? AND row_no > 0) ORDER BY row_no",
        )
        .bind(source)
        .bind(file)
        .bind(source)
        .bind(file)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(rejection_row).collect())
    }

    async fn metric_inputs(
        &self,
        as_of: NaiveDate,
        period: &PeriodRange,
        window_months: u32,
        visits: &VisitsConfig,
    ) -> Result<Inputs> {
        let customers = map_rows(
        sqlx::query(
            "SELECT customer_id, name, region, rep_id, customer_type, first_contact_date, signed_date, prospect_score, \
             coverage_score, status FROM customers ORDER BY customer_id",
        ),
        &self.pool,
        |r| Some(Customer {
            customer_id: r.get(0),
            name: r.get(1),
            region: r.get(2),
            rep_id: r.get(3),
            customer_type: r.get(4),
            first_contact_date: r.get::<Option<String>, _>(5).as_deref().map(parse_date),
            signed_date: r.get::<Option<String>, _>(6).as_deref().map(parse_date),
            prospect_score: r.get(7),
            coverage_score: r.get(8),
            status: r.get(9),
        }),
    )
    .await?;
        let reps = sqlx::query("SELECT rep_id, name, region FROM reps ORDER BY rep_id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Rep {
                rep_id: r.get(0),
                name: r.get(1),
                region: r.get(2),
            })
            .collect();

        // whole months before M: the scoring window and the retention months
        let m = YearMonth::of(as_of);
        let first = window(as_of, window_months)[0]
            .min(m.offset(-6))
            .first_day();
        let end = period.end.min(as_of);
        let SalesAggregates {
            monthly_sales,
            purchases,
            period_sales,
        } = self
            .sales_aggregates(as_of, first, m.first_day(), period.start, end)
            .await?;

        let counted_days = map_rows(
            sqlx::query(
                "SELECT customer_id, visit_date, visit_type, COUNT(*) FROM visits WHERE visit_date >= ? AND visit_date <= ? \
                 GROUP BY customer_id, visit_date, visit_type",
            )
            .bind(period.start)
            .bind(end),
            &self.pool,
            |r| {
                Some((
                    r.get::<String, _>(0),
                    parse_date(&r.get::<String, _>(1)),
                    r.get::<Option<String>, _>(2),
                    u64::try_from(r.get::<i64, _>(3)).unwrap_or(0),
                ))
            },
        )
        .await?;
        let visit_days = fold_visit_days(counted_days, visits);

        let months: Vec<String> = period.months().iter().map(ToString::to_string).collect();
        let targets = sqlx::query("SELECT rep_id, month, sales_target, new_customer_target FROM targets WHERE month >= ? AND month <= ?")
            .bind(months.first().cloned().unwrap_or_default())
            .bind(months.last().cloned().unwrap_or_default())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .filter_map(|r| {
                Some(Target {
                    rep_id: r.get(0),
                    month: YearMonth::parse(&r.get::<String, _>(1))?,
                    sales_target: r.get(2),
                    new_customer_target: r.get(3),
                })
            })
            .collect();

        let survey_from = end
            .checked_sub_months(chrono::Months::new(12))
            .unwrap_or(NaiveDate::MIN);
        let surveys = map_rows(
            sqlx::query(
                "SELECT customer_id, date, score FROM satisfaction WHERE date > ? AND date <= ?",
            )
            .bind(survey_from)
            .bind(end),
            &self.pool,
            |r| {
                Some(Survey {
                    customer_id: r.get(0),
                    date: parse_date(&r.get::<String, _>(1)),
                    score: r.get(2),
                })
            },
        )
        .await?;

        Ok(Inputs {
            customers,
            reps,
            monthly_sales,
            purchases,
            period_sales,
            visit_days,
            targets,
            surveys,
        })
    }

    async fn save_snapshot(
        &self,
        run_id: i64,
        as_of: NaiveDate,
        tiers: &[TierResult],
        docs: &[(&str, String)],
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for chunk in tiers.chunks(super::SNAPSHOT_CHUNK) {
            let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO tier_snapshots (run_id, as_of, customer_id, payload) ",
            );
            let mut payloads = Vec::with_capacity(chunk.len());
            for t in chunk {
                payloads.push(serde_json::to_string(t)?);
            }
            qb.push_values(chunk.iter().zip(payloads), |mut b, (t, p)| {
                b.push_bind(run_id)
                    .push_bind(as_of)
                    .push_bind(t.customer_id.clone())
                    .push_bind(p);
            });
            qb.build().execute(&mut *tx).await?;
        }
        for (kind, payload) in docs {
            sqlx::query("INSERT INTO metric_snapshots (run_id, kind, payload) VALUES (?, ?, ?)")
                .bind(run_id)
                .bind(*kind)
                .bind(payload)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn tiers_of(&self, run_id: i64) -> Result<Vec<TierResult>> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT payload FROM tier_snapshots WHERE run_id = ? ORDER BY customer_id",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|p| serde_json::from_str(p).map_err(WarehouseError::from))
            .collect()
    }

    async fn previous_tiers(&self, as_of: NaiveDate) -> Result<Option<Vec<TierResult>>> {
        let run: Option<i64> = sqlx::query_scalar(
            "SELECT run_id FROM tier_snapshots WHERE as_of < ? ORDER BY as_of DESC, run_id DESC LIMIT 1",
        )
        .bind(as_of)
        .fetch_optional(&self.pool)
        .await?;
        match run {
            Some(id) => Ok(Some(self.tiers_of(id).await?)),
            None => Ok(None),
        }
    }

    async fn snapshot_doc(&self, run_id: i64, kind: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar(
                "SELECT payload FROM metric_snapshots WHERE run_id = ? AND kind = ?",
            )
            .bind(run_id)
            .bind(kind)
            .fetch_optional(&self.pool)
            .await?,
        )
    }

    async fn delivery(
        &self,
        job: &str,
        as_of: NaiveDate,
        recipient: &str,
        region: &str,
    ) -> Result<Option<DeliveryRow>> {
        let row = sqlx::query(
            "SELECT job, as_of, recipient, region, run_id, status, attempts, message_id, error, updated_at, spool FROM deliveries \
             WHERE job = ? AND as_of = ? AND recipient = ? AND region = ?",
        )
        .bind(job)
        .bind(as_of)
        .bind(recipient)
        .bind(region)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(delivery_row))
    }

    async fn record_delivery(&self, d: &DeliveryRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO deliveries (job, as_of, recipient, region, run_id, status, attempts, message_id, error, updated_at, spool) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job, as_of, recipient, region) DO UPDATE SET \
             run_id = excluded.run_id, status = excluded.status, attempts = excluded.attempts, \
             message_id = excluded.message_id, error = excluded.error, updated_at = excluded.updated_at, \
             spool = excluded.spool",
        )
        .bind(&d.job)
        .bind(d.as_of)
        .bind(&d.recipient)
        .bind(&d.region)
        .bind(d.run_id)
        .bind(&d.status)
        .bind(d.attempts)
        .bind(&d.message_id)
        .bind(&d.error)
        .bind(&d.updated_at)
        .bind(&d.spool)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn deliveries(&self, failed_only: bool) -> Result<Vec<DeliveryRow>> {
        let rows = sqlx::query(
            "SELECT job, as_of, recipient, region, run_id, status, attempts, message_id, error, updated_at, spool FROM deliveries \
             WHERE (? = 0 OR status = 'failed') ORDER BY as_of DESC, job, recipient, region",
        )
        .bind(i64::from(failed_only))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(delivery_row).collect())
    }

    async fn try_lock(&self, job: &str, holder: &str, stale_before: &str) -> Result<bool> {
        // a lock older than `stale_before` belonged to a process that died
        let done = sqlx::query(
            "INSERT INTO job_locks (job, holder, acquired_at) VALUES (?, ?, ?) \
             ON CONFLICT (job) DO UPDATE SET holder = excluded.holder, acquired_at = excluded.acquired_at \
             WHERE job_locks.acquired_at < ?",
        )
        .bind(job)
        .bind(holder)
        .bind(now())
        .bind(stale_before)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn unlock(&self, job: &str, holder: &str) -> Result<()> {
        sqlx::query("DELETE FROM job_locks WHERE job = ? AND holder = ?")
            .bind(job)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn refresh_lock(&self, job: &str, holder: &str) -> Result<()> {
        sqlx::query("UPDATE job_locks SET acquired_at = ? WHERE job = ? AND holder = ?")
            .bind(now())
            .bind(job)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn lock_holder(&self, job: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT holder FROM job_locks WHERE job = ?")
                .bind(job)
                .fetch_optional(&self.pool)
                .await?,
        )
    }
}

fn run_row(r: &sqlx::sqlite::SqliteRow) -> RunRow {
    RunRow {
        run_id: r.get(0),
        job: r.get(1),
        as_of: parse_date(&r.get::<String, _>(2)),
        started_at: r.get(3),
        finished_at: r.get(4),
        status: r.get(5),
        counts: r.get(6),
        rules: r.get(7),
    }
}

fn delivery_row(r: &sqlx::sqlite::SqliteRow) -> DeliveryRow {
    DeliveryRow {
        job: r.get(0),
        as_of: parse_date(&r.get::<String, _>(1)),
        recipient: r.get(2),
        region: r.get(3),
        run_id: r.get(4),
        status: r.get(5),
        attempts: r.get(6),
        message_id: r.get(7),
        error: r.get(8),
        updated_at: r.get(9),
        spool: r.get(10),
    }
}

fn rejection_row(r: &sqlx::sqlite::SqliteRow) -> Rejection {
    Rejection {
        source: r.get(0),
        file: r.get(1),
        sheet: r.get(2),
        row: u64::try_from(r.get::<i64, _>(3)).unwrap_or(0),
        cell: r.get(4),
        column: r.get(5),
        value: r.get(6),
        reason: reason_from(&r.get::<String, _>(7)),
        detail: r.get(8),
    }
}
