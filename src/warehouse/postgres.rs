//! The PostgreSQL backend: every SQL statement the shared warehouse runs.
//! Rows are written with `INSERT … SELECT FROM UNNEST($1::date[], …)`: one
//! statement and one array bind per column for up to 16,384 rows, so a
//! statement of any size stays within PostgreSQL's 65,535 binds. As in
//! SQLite, a file's sales lines, visits and survey answers are found through
//! the id range its load recorded, not a `(source, file)` index. Upserting
//! statements must not touch a key twice, so each statement keeps only the
//! last row per key first (the later row wins, as in the SQLite backend).

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr as _;
use std::time::Duration;

use async_trait::async_trait;
use chrono::NaiveDate;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row, Transaction};
use tokio::sync::mpsc;

use super::{
    fold_visit_days, now, ranged, reason_from, recorded_range, Batch, DeliveryRow, FileLoad,
    FileState, LoadOutcome, Replace, Result, Rows, RunRow, Store, WarehouseError,
};
use crate::config::{Dataset, VisitsConfig};
use crate::ingest::record::{
    CustomerRow, Located, Masters, Record, Rejection, RepRow, Sale, SurveyRow, TargetRow, Visit,
};
use crate::ingest::FileNote;
use crate::metrics::calendar::YearMonth;
use crate::metrics::tiers::TierResult;
use crate::metrics::{
    Customer, Inputs, PeriodRange, PeriodSales, PurchaseSpan, Rep, SummaryBuilder, Survey, Target,
};

/// Rows per INSERT statement. sqlx 0.9 leaves Nagle's algorithm on, so
/// every statement whose message ends in a part-filled TCP segment can wait
/// out the server's delayed ACK (up to 40 ms): fewer, larger statements
/// (about 2 MB of arrays each) pay that wait less often
/// (docs/PERFORMANCE.md).
const ROWS_PER_STATEMENT: usize = 16_384;

/// Cloning shares the pool: `detached` hands the lock heartbeat a clone.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    pub async fn open(url: &str) -> Result<Self> {
        let connect = |source| WarehouseError::Connect {
            url: super::redact(url),
            source,
        };
        let options =
            super::quiet_slow_statements(PgConnectOptions::from_str(url).map_err(connect)?);
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .map_err(connect)?;
        // sqlx takes an advisory lock: instances starting together migrate once
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }
}

async fn stored_rows(
    tx: &mut Transaction<'_, Postgres>,
    source: &str,
    file: Option<&str>,
) -> Result<Rows> {
    let (loads, ranged, first, last): (i64, i64, Option<i64>, Option<i64>) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(first_row_id), MIN(first_row_id), MAX(last_row_id) FROM ingested_files \
         WHERE source = $1 AND ($2::text IS NULL OR file = $2)",
    )
    .bind(source)
    .bind(file)
    .fetch_one(&mut **tx)
    .await?;
    Ok(Rows::from_loads(loads, ranged, first, last))
}

async fn delete_replaced(tx: &mut Transaction<'_, Postgres>, load: &FileLoad) -> Result<()> {
    match &load.replace {
        Replace::SourceSince(since) => {
            // the condition of the partial index `sales_sql_window`
            sqlx::query(
                "DELETE FROM sales WHERE source = $1 AND invoice_date >= $2 AND starts_with(file, 'sql:')",
            )
            .bind(&load.source)
            .bind(since)
            .execute(&mut **tx)
            .await?;
        }
        Replace::File => delete_rows(tx, load, Some(&load.file)).await?,
        Replace::Source => delete_rows(tx, load, None).await?,
    }
    for old in &load.retire {
        delete_rows(tx, load, Some(old)).await?;
        sqlx::query("DELETE FROM ingested_files WHERE source = $1 AND file = $2")
            .bind(&load.source)
            .bind(old)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Deletes the rows `load`'s source stored from `file`, or from anywhere.
async fn delete_rows(
    tx: &mut Transaction<'_, Postgres>,
    load: &FileLoad,
    file: Option<&str>,
) -> Result<()> {
    // table names come from the fixed dataset list, never from input
    let table = load.dataset.name();
    // a SQL load's range covers only its own window, not the rows before it
    let rows = if ranged(load.dataset) && !file.is_some_and(|f| f.starts_with("sql:")) {
        stored_rows(tx, &load.source, file).await?
    } else {
        Rows::Anywhere
    };
    // both forms keep $2 so that they take the same parameters
    let by_file = if file.is_some() {
        "file = $2"
    } else {
        "$2::text IS NULL"
    };
    match rows {
        Rows::None => {}
        Rows::Within(first, last) => {
            let sql = format!(
                "DELETE FROM {table} WHERE id BETWEEN $3 AND $4 AND source = $1 AND {by_file}"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&load.source)
                .bind(file)
                .bind(first)
                .bind(last)
                .execute(&mut **tx)
                .await?;
        }
        Rows::Anywhere => {
            let sql = format!("DELETE FROM {table} WHERE source = $1 AND {by_file}");
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&load.source)
                .bind(file)
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(())
}

/// The rows of a batch to insert: for keyed datasets only the last row per key.
fn last_per_key(rows: &[Located]) -> Vec<&Located> {
    let key = |l: &Located| -> Option<(String, String)> {
        match &l.record {
            Record::Sale(s) => Some((s.invoice_no.clone()?, s.line_no.clone()?)),
            Record::Customer(c) => Some((c.customer_id.clone(), String::new())),
            Record::Rep(r) => Some((r.rep_id.clone(), String::new())),
            Record::Target(t) => Some((t.rep_id.clone(), t.month.to_string())),
            Record::Visit(_) | Record::Survey(_) => None,
        }
    };
    let mut last: HashMap<(String, String), usize> = HashMap::new();
    for (i, l) in rows.iter().enumerate() {
        if let Some(k) = key(l) {
            last.insert(k, i);
        }
    }
    rows.iter()
        .enumerate()
        .filter(|(i, l)| key(l).is_none_or(|k| last.get(&k) == Some(i)))
        .map(|(_, l)| l)
        .collect()
}

fn row_no(l: &Located) -> i64 {
    i64::try_from(l.row).unwrap_or(i64::MAX)
}

/// Inserts one batch; for ranged datasets returns the lowest and highest id
/// it wrote (`None` when every row was dropped as a repeated key).
async fn insert_rows(
    tx: &mut Transaction<'_, Postgres>,
    load: &FileLoad,
    rows: &[Located],
) -> Result<Option<(i64, i64)>> {
    let rows = last_per_key(rows);
    let rows_no: Vec<i64> = rows.iter().map(|l| row_no(l)).collect();
    macro_rules! column {
        ($variant:ident, $f:expr) => {
            rows.iter()
                .filter_map(|l| match &l.record {
                    Record::$variant(r) => Some($f(r)),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
    }
    let q = match load.dataset {
        Dataset::Sales => sqlx::query(
            "WITH ins AS (INSERT INTO sales (invoice_date, customer_id, product_id, amount, quantity, invoice_no, line_no, rep_id, row_no, source, file, sheet) \
             SELECT u.*, $10::text, $11::text, $12::text FROM UNNEST($1::date[], $2::text[], $3::text[], $4::float8[], $5::float8[], \
             $6::text[], $7::text[], $8::text[], $9::int8[]) AS u \
             ON CONFLICT (invoice_no, line_no) WHERE invoice_no IS NOT NULL AND line_no IS NOT NULL DO UPDATE SET \
             id = excluded.id, invoice_date = excluded.invoice_date, customer_id = excluded.customer_id, product_id = excluded.product_id, \
             amount = excluded.amount, quantity = excluded.quantity, rep_id = excluded.rep_id, source = excluded.source, \
             file = excluded.file, sheet = excluded.sheet, row_no = excluded.row_no \
             RETURNING id) SELECT MIN(id), MAX(id) FROM ins",
        )
        .bind(column!(Sale, |s: &Sale| s.invoice_date))
        .bind(column!(Sale, |s: &Sale| s.customer_id.clone()))
        .bind(column!(Sale, |s: &Sale| s.product_id.clone()))
        .bind(column!(Sale, |s: &Sale| s.amount))
        .bind(column!(Sale, |s: &Sale| s.quantity))
        .bind(column!(Sale, |s: &Sale| s.invoice_no.clone()))
        .bind(column!(Sale, |s: &Sale| s.line_no.clone()))
        .bind(column!(Sale, |s: &Sale| s.rep_id.clone())),
        Dataset::Customers => sqlx::query(
            "INSERT INTO customers (customer_id, name, region, rep_id, customer_type, first_contact_date, signed_date, \
             prospect_score, coverage_score, status, row_no, source, file, sheet) \
             SELECT u.*, $12::text, $13::text, $14::text FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
             $6::date[], $7::date[], $8::float8[], $9::float8[], $10::text[], $11::int8[]) AS u \
             ON CONFLICT (customer_id) DO UPDATE SET name = excluded.name, region = excluded.region, rep_id = excluded.rep_id, \
             customer_type = excluded.customer_type, first_contact_date = excluded.first_contact_date, signed_date = excluded.signed_date, \
             prospect_score = excluded.prospect_score, coverage_score = excluded.coverage_score, status = excluded.status, \
             source = excluded.source, file = excluded.file, sheet = excluded.sheet, row_no = excluded.row_no",
        )
        .bind(column!(Customer, |c: &CustomerRow| c.customer_id.clone()))
        .bind(column!(Customer, |c: &CustomerRow| c.name.clone()))
        .bind(column!(Customer, |c: &CustomerRow| c.region.clone()))
        .bind(column!(Customer, |c: &CustomerRow| c.rep_id.clone()))
        .bind(column!(Customer, |c: &CustomerRow| c.customer_type.clone()))
        .bind(column!(Customer, |c: &CustomerRow| c.first_contact_date))
        .bind(column!(Customer, |c: &CustomerRow| c.signed_date))
        .bind(column!(Customer, |c: &CustomerRow| c.prospect_score))
        .bind(column!(Customer, |c: &CustomerRow| c.coverage_score))
        .bind(column!(Customer, |c: &CustomerRow| c.status.clone())),
        Dataset::Reps => sqlx::query(
            "INSERT INTO reps (rep_id, name, region, hire_date, email, row_no, source, file, sheet) \
             SELECT u.*, $7::text, $8::text, $9::text FROM UNNEST($1::text[], $2::text[], $3::text[], $4::date[], $5::text[], $6::int8[]) AS u \
             ON CONFLICT (rep_id) DO UPDATE SET name = excluded.name, region = excluded.region, hire_date = excluded.hire_date, \
             email = excluded.email, source = excluded.source, file = excluded.file, sheet = excluded.sheet, row_no = excluded.row_no",
        )
        .bind(column!(Rep, |r: &RepRow| r.rep_id.clone()))
        .bind(column!(Rep, |r: &RepRow| r.name.clone()))
        .bind(column!(Rep, |r: &RepRow| r.region.clone()))
        .bind(column!(Rep, |r: &RepRow| r.hire_date))
        .bind(column!(Rep, |r: &RepRow| r.email.clone())),
        Dataset::Visits => sqlx::query(
            "WITH ins AS (INSERT INTO visits (visit_date, rep_id, customer_id, visit_type, outcome, row_no, source, file, sheet) \
             SELECT u.*, $7::text, $8::text, $9::text FROM UNNEST($1::date[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[]) AS u \
             RETURNING id) SELECT MIN(id), MAX(id) FROM ins",
        )
        .bind(column!(Visit, |v: &Visit| v.visit_date))
        .bind(column!(Visit, |v: &Visit| v.rep_id.clone()))
        .bind(column!(Visit, |v: &Visit| v.customer_id.clone()))
        .bind(column!(Visit, |v: &Visit| v.visit_type.clone()))
        .bind(column!(Visit, |v: &Visit| v.outcome.clone())),
        Dataset::Targets => sqlx::query(
            "INSERT INTO targets (rep_id, month, sales_target, new_customer_target, row_no, source, file, sheet) \
             SELECT u.*, $6::text, $7::text, $8::text FROM UNNEST($1::text[], $2::text[], $3::float8[], $4::float8[], $5::int8[]) AS u \
             ON CONFLICT (rep_id, month) DO UPDATE SET sales_target = excluded.sales_target, \
             new_customer_target = excluded.new_customer_target, source = excluded.source, file = excluded.file, \
             sheet = excluded.sheet, row_no = excluded.row_no",
        )
        .bind(column!(Target, |t: &TargetRow| t.rep_id.clone()))
        .bind(column!(Target, |t: &TargetRow| t.month.to_string()))
        .bind(column!(Target, |t: &TargetRow| t.sales_target))
        .bind(column!(Target, |t: &TargetRow| t.new_customer_target)),
        Dataset::Satisfaction => sqlx::query(
            "WITH ins AS (INSERT INTO satisfaction (customer_id, date, score, row_no, source, file, sheet) \
             SELECT u.*, $5::text, $6::text, $7::text FROM UNNEST($1::text[], $2::date[], $3::float8[], $4::int8[]) AS u \
             RETURNING id) SELECT MIN(id), MAX(id) FROM ins",
        )
        .bind(column!(Survey, |s: &SurveyRow| s.customer_id.clone()))
        .bind(column!(Survey, |s: &SurveyRow| s.date))
        .bind(column!(Survey, |s: &SurveyRow| s.score)),
    };
    let q = q
        .bind(rows_no)
        .bind(&load.source)
        .bind(&load.file)
        .bind(&load.sheet);
    if ranged(load.dataset) {
        let row = q.fetch_one(&mut **tx).await?;
        let first: Option<i64> = row.try_get(0)?;
        let last: Option<i64> = row.try_get(1)?;
        Ok(first.zip(last))
    } else {
        q.execute(&mut **tx).await?;
        Ok(None)
    }
}

/// Converts rows as they arrive, so a large aggregate is never held twice.
async fn map_rows<T>(
    query: sqlx::query::Query<'_, Postgres, <Postgres as sqlx::Database>::Arguments>,
    conn: &mut sqlx::PgConnection,
    mut convert: impl FnMut(&PgRow) -> Option<T>,
) -> Result<Vec<T>> {
    let mut rows = query.fetch(conn);
    let mut out = Vec::new();
    while let Some(row) = futures_util::TryStreamExt::try_next(&mut rows).await? {
        out.extend(convert(&row));
    }
    Ok(out)
}

/// A `SUM(round(amount * 1000000))`: whole micro-yuan, as SQLite's scan
/// adds them, so both warehouses sum exactly and in any order alike (a
/// `float8` sum of integers is exact below 2^53 micro-yuan, 9 billion CNY).
#[allow(clippy::cast_possible_truncation)]
fn from_micros_sum(micros: f64) -> f64 {
    crate::metrics::sales::from_micros(micros.round() as i64)
}

fn count(r: &PgRow, i: usize) -> u64 {
    u64::try_from(r.get::<i64, _>(i)).unwrap_or(0)
}

#[async_trait]
impl Store for PgStore {
    fn is_shared(&self) -> bool {
        true
    }

    fn detached(&self) -> Option<Box<dyn Store>> {
        Some(Box::new(self.clone()))
    }

    async fn stored_files(&self, source: &str) -> Result<BTreeMap<String, FileState>> {
        let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT file, sha256, unknown_ids, rows_rejected FROM ingested_files WHERE source = $1",
        )
        .bind(source)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(FileState::stored).collect())
    }

    async fn load_file(
        &self,
        load: FileLoad,
        mut rx: mpsc::Receiver<Batch>,
    ) -> Result<LoadOutcome> {
        let mut tx = self.pool.begin().await?;
        // Two runs loading the same source at once (a nightly and a monthly
        // job fired together, a manual run beside the daemon) each deleted
        // the rows they saw and inserted theirs: the one that waited on the
        // other's row locks did not see its new rows, and both copies
        // stayed. Loads of a source take turns until commit; the one that
        // waited then deletes what the first stored. Two-key form: its key
        // space is apart from sqlx's one-key migration lock.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('salesbatch.load'), hashtext($1))")
            .bind(&load.source)
            .execute(&mut *tx)
            .await?;
        delete_replaced(&mut tx, &load).await?;
        let mut loaded = 0u64;
        // ids come from a sequence other sessions share: this load's rows
        // lie between its lowest and highest id, among others' rows
        let mut range: Option<(i64, i64)> = None;
        let mut pending: Vec<Located> = Vec::new();
        while let Some(batch) = rx.recv().await {
            let end = match batch {
                Batch::Rows(rows) => {
                    loaded += rows.len() as u64;
                    if pending.is_empty() {
                        pending = rows;
                    } else {
                        pending.extend(rows);
                    }
                    None
                }
                Batch::End {
                    data_rows,
                    rejected,
                    unknown_ids,
                } => Some((data_rows, rejected, unknown_ids)),
            };
            if pending.len() >= ROWS_PER_STATEMENT || (end.is_some() && !pending.is_empty()) {
                if let Some((first, last)) = insert_rows(&mut tx, &load, &pending).await? {
                    range = Some(range.map_or((first, last), |(f, l)| (f.min(first), l.max(last))));
                }
                pending.clear();
            }
            let Some((data_rows, rejected, unknown_ids)) = end else {
                continue;
            };
            if load.ratio_exceeded(data_rows, rejected) {
                tx.rollback().await?;
                return Ok(LoadOutcome::RatioExceeded {
                    rejected,
                    data_rows,
                });
            }
            let (first_id, last_id) = recorded_range(range);
            sqlx::query(
                "INSERT INTO ingested_files (source, file, sha256, rows_loaded, rows_rejected, unknown_ids, loaded_at, first_row_id, last_row_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (source, file) DO UPDATE SET sha256 = excluded.sha256, \
                 rows_loaded = excluded.rows_loaded, rows_rejected = excluded.rows_rejected, \
                 unknown_ids = excluded.unknown_ids, loaded_at = excluded.loaded_at, \
                 first_row_id = excluded.first_row_id, last_row_id = excluded.last_row_id",
            )
            .bind(&load.source)
            .bind(&load.file)
            .bind(&load.sha256)
            .bind(i64::try_from(loaded).unwrap_or(i64::MAX))
            .bind(i64::try_from(rejected).unwrap_or(i64::MAX))
            .bind(i64::try_from(unknown_ids).unwrap_or(i64::MAX))
            .bind(now())
            .bind(first_id)
            .bind(last_id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(LoadOutcome::Loaded { rows: loaded });
        }
        tx.rollback().await?;
        Ok(LoadOutcome::Aborted)
    }

    async fn latest_invoice_date(&self, source: &str) -> Result<Option<NaiveDate>> {
        Ok(
            // the condition of the partial index `sales_sql_window`: only a
            // SQL source asks for its latest date
            sqlx::query_scalar(
                "SELECT MAX(invoice_date) FROM sales WHERE source = $1 AND starts_with(file, 'sql:')",
            )
                .bind(source)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn masters(&self) -> Result<Masters> {
        let reps: Vec<String> = sqlx::query_scalar("SELECT rep_id FROM reps")
            .fetch_all(&self.pool)
            .await?;
        let customers: Vec<String> = sqlx::query_scalar("SELECT customer_id FROM customers")
            .fetch_all(&self.pool)
            .await?;
        Ok(Masters::new(customers, reps))
    }

    async fn regions(&self) -> Result<std::collections::BTreeSet<String>> {
        let rows: Vec<String> =
            sqlx::query_scalar("SELECT region FROM customers UNION SELECT region FROM reps")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().collect())
    }

    async fn start_run(&self, job: &str, as_of: NaiveDate, rules: &str) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "INSERT INTO runs (job, as_of, started_at, status, rules) VALUES ($1, $2, $3, 'running', $4) RETURNING run_id",
        )
        .bind(job)
        .bind(as_of)
        .bind(now())
        .bind(rules)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn finish_run(
        &self,
        run_id: i64,
        status: &str,
        counts: &str,
        error: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE runs SET finished_at = $1, status = $2, counts = $3, error = $4 WHERE run_id = $5",
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

    async fn interrupt_runs(&self, job: &str) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE runs SET status = 'interrupted', error = $1 WHERE job = $2 AND status = 'running'",
        )
        .bind(super::RUN_INTERRUPTED)
        .bind(job)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn runs(&self, limit: i64) -> Result<Vec<RunRow>> {
        let rows = sqlx::query(select_runs!("ORDER BY run_id DESC LIMIT $1"))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(run_row).collect())
    }

    async fn snapshot_runs(&self, as_of: NaiveDate) -> Result<Vec<RunRow>> {
        let rows = sqlx::query(select_runs!(
            "WHERE run_id IN (SELECT MAX(run_id) FROM runs WHERE as_of = $1 \
             AND run_id IN (SELECT run_id FROM metric_snapshots) GROUP BY job) ORDER BY run_id DESC"
        ))
        .bind(as_of)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(run_row).collect())
    }

    async fn save_quality(
        &self,
        run_id: i64,
        rejections: &[Rejection],
        notes: &[FileNote],
    ) -> Result<()> {
        let col = |f: fn(&Rejection) -> String| rejections.iter().map(f).collect::<Vec<_>>();
        let note_col = |f: fn(&FileNote) -> String| notes.iter().map(f).collect::<Vec<_>>();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO rejections (run_id, source, file, sheet, row_no, cell, column_name, value, reason, detail) \
             SELECT $1, u.* FROM UNNEST($2::text[], $3::text[], $4::text[], $5::int8[], $6::text[], $7::text[], \
             $8::text[], $9::text[], $10::text[]) AS u",
        )
        .bind(run_id)
        .bind(col(|r| r.source.clone()))
        .bind(col(|r| r.file.clone()))
        .bind(col(|r| r.sheet.clone()))
        .bind(
            rejections
                .iter()
                .map(|r| i64::try_from(r.row).unwrap_or(i64::MAX))
                .collect::<Vec<_>>(),
        )
        .bind(col(|r| r.cell.clone()))
        .bind(col(|r| r.column.clone()))
        .bind(col(|r| r.value.clone()))
        .bind(col(|r| r.reason.as_str().to_string()))
        .bind(col(|r| r.detail.clone()))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO file_notes (run_id, source, file, sheet, note, unlisted_rejections) \
             SELECT $1, u.* FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::int8[]) AS u",
        )
        .bind(run_id)
        .bind(note_col(|n| n.source.clone()))
        .bind(note_col(|n| n.file.clone()))
        .bind(note_col(|n| n.sheet.clone()))
        .bind(note_col(|n| n.note.clone()))
        .bind(
            notes
                .iter()
                .map(|n| i64::try_from(n.unlisted_rejections).unwrap_or(i64::MAX))
                .collect::<Vec<_>>(),
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE runs SET quality_run = run_id WHERE run_id = $1")
            .bind(run_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn notes(&self, run_id: i64) -> Result<Vec<FileNote>> {
        let rows = sqlx::query(
            "SELECT source, file, sheet, note, unlisted_rejections FROM file_notes WHERE run_id = $1 \
             ORDER BY source, file, sheet, note",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(note_row).collect())
    }

    async fn latest_quality_run(&self, before: Option<i64>) -> Result<Option<RunRow>> {
        let row = sqlx::query(select_runs!(
            "WHERE quality_run = run_id AND run_id < $1 ORDER BY run_id DESC LIMIT 1"
        ))
        .bind(before.unwrap_or(i64::MAX))
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(run_row))
    }

    async fn link_quality(&self, run_id: i64, quality_run: i64) -> Result<()> {
        sqlx::query("UPDATE runs SET quality_run = $1 WHERE run_id = $2")
            .bind(quality_run)
            .bind(run_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn quality_run_for(&self, as_of: NaiveDate, job: Option<&str>) -> Result<Option<i64>> {
        let id = sqlx::query_scalar(
            "SELECT quality_run FROM runs WHERE as_of = $1 AND quality_run IS NOT NULL \
             AND ($2::text IS NULL OR job = $2) ORDER BY run_id DESC LIMIT 1",
        )
        .bind(as_of)
        .bind(job)
        .fetch_optional(&self.pool)
        .await?;
        Ok(id)
    }

    async fn source_notes(&self, source: &str) -> Result<Vec<FileNote>> {
        let rows = sqlx::query(
            "SELECT source, file, sheet, note, unlisted_rejections FROM file_notes WHERE source = $1 AND run_id = \
             (SELECT MAX(run_id) FROM runs WHERE quality_run = run_id) ORDER BY file, sheet, note",
        )
        .bind(source)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(note_row).collect())
    }

    async fn rejections(&self, run_id: i64) -> Result<Vec<Rejection>> {
        let rows = sqlx::query(
            "SELECT source, file, sheet, row_no, cell, column_name, value, reason, detail FROM rejections \
             WHERE run_id = $1 ORDER BY source, file, sheet, row_no",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(rejection_row).collect())
    }

    async fn file_rejections(&self, source: &str, file: &str) -> Result<Vec<Rejection>> {
        let rows = sqlx::query(
            "SELECT source, file, sheet, row_no, cell, column_name, value, reason, detail FROM rejections \
             WHERE source = $1 AND file = $2 AND row_no > 0 AND run_id = \
             (SELECT MAX(run_id) FROM rejections WHERE source = $3 AND file = $4 AND row_no > 0) ORDER BY row_no",
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
        // Every table as of one commit: another instance may be loading files
        // into the shared warehouse while this one computes.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        // The window's customer × product × month aggregate (2.4 M groups at
        // the design point) spills to disk at the default 4 MB and takes a
        // third longer; with this it is one in-memory hash of ~400 MB, for
        // this transaction only (docs/PERFORMANCE.md).
        sqlx::query("SET LOCAL work_mem = '256MB'")
            .execute(&mut *tx)
            .await?;
        let customers = map_rows(
            sqlx::query(
                "SELECT customer_id, name, region, rep_id, customer_type, first_contact_date, signed_date, prospect_score, \
                 coverage_score, status FROM customers ORDER BY customer_id",
            ),
            &mut tx,
            |r| {
                Some(Customer {
                    customer_id: r.get(0),
                    name: r.get(1),
                    region: r.get(2),
                    rep_id: r.get(3),
                    customer_type: r.get(4),
                    first_contact_date: r.get(5),
                    signed_date: r.get(6),
                    prospect_score: r.get(7),
                    coverage_score: r.get(8),
                    status: r.get(9),
                })
            },
        )
        .await?;
        let reps = map_rows(
            sqlx::query("SELECT rep_id, name, region FROM reps ORDER BY rep_id"),
            &mut tx,
            |r| {
                Some(Rep {
                    rep_id: r.get(0),
                    name: r.get(1),
                    region: r.get(2),
                })
            },
        )
        .await?;

        // whole months before M: the scoring window and the retention months,
        // summed per customer as the monthly rows stream past
        let m = YearMonth::of(as_of);
        let mut sales = SummaryBuilder::new(as_of, window_months);
        let mut rows = sqlx::query(
            "SELECT customer_id, product_id, to_char(invoice_date, 'YYYY-MM') AS ym, SUM(round(amount * 1000000)), COUNT(*) FROM sales \
             WHERE invoice_date >= $1 AND invoice_date < $2 GROUP BY customer_id, product_id, ym",
        )
        .bind(sales.first_month().first_day())
        .bind(m.first_day())
        .fetch(&mut *tx);
        while let Some(r) = futures_util::TryStreamExt::try_next(&mut rows).await? {
            if let Some(month) = YearMonth::parse(&r.get::<String, _>(2)) {
                let amount = from_micros_sum(r.get(3));
                sales.add(r.get(0), r.get(1), month, amount, count(&r, 4));
            }
        }
        drop(rows);
        let sales = sales.finish();

        let purchases: HashMap<String, PurchaseSpan> = map_rows(
            sqlx::query(
                "SELECT customer_id, MIN(invoice_date), MAX(invoice_date) FROM sales WHERE amount > 0 AND invoice_date <= $1 \
                 GROUP BY customer_id",
            )
            .bind(as_of),
            &mut tx,
            |r| {
                Some((
                    r.get::<String, _>(0),
                    PurchaseSpan {
                        first: r.get(1),
                        last: r.get(2),
                    },
                ))
            },
        )
        .await?
        .into_iter()
        .collect();

        let end = period.end.min(as_of);
        let period_sales = map_rows(
            sqlx::query(
                "SELECT customer_id, rep_id, SUM(round(amount * 1000000)) FROM sales WHERE invoice_date >= $1 AND invoice_date <= $2 \
                 GROUP BY customer_id, rep_id ORDER BY customer_id COLLATE \"C\", rep_id COLLATE \"C\" NULLS FIRST",
            )
            .bind(period.start)
            .bind(end),
            &mut tx,
            |r| {
                Some(PeriodSales {
                    customer_id: r.get(0),
                    line_rep_id: r.get(1),
                    amount: from_micros_sum(r.get(2)),
                })
            },
        )
        .await?;

        let counted_days = map_rows(
            sqlx::query(
                "SELECT customer_id, visit_date, visit_type, COUNT(*) FROM visits WHERE visit_date >= $1 AND visit_date <= $2 \
                 GROUP BY customer_id, visit_date, visit_type",
            )
            .bind(period.start)
            .bind(end),
            &mut tx,
            |r| {
                Some((
                    r.get::<String, _>(0),
                    r.get::<NaiveDate, _>(1),
                    r.get::<Option<String>, _>(2),
                    count(r, 3),
                ))
            },
        )
        .await?;
        let visit_days = fold_visit_days(counted_days, visits);

        let months: Vec<String> = period.months().iter().map(ToString::to_string).collect();
        let targets = map_rows(
            sqlx::query(
                "SELECT rep_id, month, sales_target, new_customer_target FROM targets WHERE month >= $1 AND month <= $2",
            )
            .bind(months.first().cloned().unwrap_or_default())
            .bind(months.last().cloned().unwrap_or_default()),
            &mut tx,
            |r| {
                Some(Target {
                    rep_id: r.get(0),
                    month: YearMonth::parse(&r.get::<String, _>(1))?,
                    sales_target: r.get(2),
                    new_customer_target: r.get(3),
                })
            },
        )
        .await?;

        let survey_from = end
            .checked_sub_months(chrono::Months::new(12))
            .unwrap_or(NaiveDate::MIN);
        let surveys = map_rows(
            sqlx::query(
                "SELECT customer_id, date, score FROM satisfaction WHERE date > $1 AND date <= $2",
            )
            .bind(survey_from)
            .bind(end),
            &mut tx,
            |r| {
                Some(Survey {
                    customer_id: r.get(0),
                    date: r.get(1),
                    score: r.get(2),
                })
            },
        )
        .await?;
        tx.commit().await?;

        Ok(Inputs {
            customers,
            reps,
            sales,
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
            let ids: Vec<String> = chunk.iter().map(|t| t.customer_id.clone()).collect();
            let payloads = chunk
                .iter()
                .map(serde_json::to_string)
                .collect::<std::result::Result<Vec<_>, _>>()?;
            sqlx::query(
                "INSERT INTO tier_snapshots (run_id, as_of, customer_id, payload) \
                 SELECT $1, $2, u.* FROM UNNEST($3::text[], $4::text[]) AS u",
            )
            .bind(run_id)
            .bind(as_of)
            .bind(ids)
            .bind(payloads)
            .execute(&mut *tx)
            .await?;
        }
        for (kind, payload) in docs {
            sqlx::query("INSERT INTO metric_snapshots (run_id, kind, payload) VALUES ($1, $2, $3)")
                .bind(run_id)
                .bind(*kind)
                .bind(payload)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn prune_snapshots(&self, run_id: i64, before: Option<NaiveDate>) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let doomed: Vec<i64> = sqlx::query_scalar(
            "SELECT r.run_id FROM runs r, runs this WHERE this.run_id = $1 \
             AND r.run_id < this.run_id AND r.run_id IN (SELECT run_id FROM metric_snapshots) \
             AND ((r.job = this.job AND r.as_of = this.as_of) OR r.as_of < $2::date)",
        )
        .bind(run_id)
        .bind(before)
        .fetch_all(&mut *tx)
        .await?;
        for run in &doomed {
            for sql in [
                "DELETE FROM tier_snapshots WHERE run_id = $1",
                "DELETE FROM metric_snapshots WHERE run_id = $1",
            ] {
                sqlx::query(sql).bind(run).execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok(doomed.len() as u64)
    }

    async fn tiers_of(&self, run_id: i64) -> Result<Vec<TierResult>> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT payload FROM tier_snapshots WHERE run_id = $1 ORDER BY customer_id",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|p| serde_json::from_str(p).map_err(WarehouseError::from))
            .collect()
    }

    async fn previous_snapshot_run(&self, as_of: NaiveDate) -> Result<Option<RunRow>> {
        let row = sqlx::query(select_runs!(
            "WHERE run_id = (SELECT run_id FROM tier_snapshots WHERE as_of < $1 ORDER BY as_of DESC, run_id DESC LIMIT 1)"
        ))
        .bind(as_of)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(run_row))
    }

    async fn snapshot_doc(&self, run_id: i64, kind: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT payload FROM metric_snapshots WHERE run_id = $1 AND kind = $2",
        )
        .bind(run_id)
        .bind(kind)
        .fetch_optional(&self.pool)
        .await?)
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
             WHERE job = $1 AND as_of = $2 AND recipient = $3 AND region = $4",
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
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (job, as_of, recipient, region) DO UPDATE SET \
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
             WHERE (NOT $1 OR status = 'failed') ORDER BY as_of DESC, job, recipient, region",
        )
        .bind(failed_only)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(delivery_row).collect())
    }

    async fn try_lock(&self, job: &str, holder: &str, stale_before: &str) -> Result<bool> {
        // a lock older than `stale_before` belonged to a process that died
        let done = sqlx::query(
            "INSERT INTO job_locks (job, holder, acquired_at) VALUES ($1, $2, $3) \
             ON CONFLICT (job) DO UPDATE SET holder = excluded.holder, acquired_at = excluded.acquired_at \
             WHERE job_locks.acquired_at < $4",
        )
        .bind(job)
        .bind(holder)
        .bind(now())
        .bind(stale_before)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn claim_fire(&self, job: &str, fire: &str, holder: &str) -> Result<Option<String>> {
        let claimed = sqlx::query(
            "INSERT INTO job_fires (job, fire_at, holder, claimed_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (job, fire_at) DO NOTHING",
        )
        .bind(job)
        .bind(fire)
        .bind(holder)
        .bind(now())
        .execute(&self.pool)
        .await?;
        if claimed.rows_affected() == 1 {
            sqlx::query("DELETE FROM job_fires WHERE job = $1 AND claimed_at < $2")
                .bind(job)
                .bind(super::fire_claims_cutoff())
                .execute(&self.pool)
                .await?;
            return Ok(None);
        }
        Ok(Some(
            sqlx::query_scalar("SELECT holder FROM job_fires WHERE job = $1 AND fire_at = $2")
                .bind(job)
                .bind(fire)
                .fetch_one(&self.pool)
                .await?,
        ))
    }

    async fn unlock(&self, job: &str, holder: &str) -> Result<()> {
        sqlx::query("DELETE FROM job_locks WHERE job = $1 AND holder = $2")
            .bind(job)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn refresh_lock(&self, job: &str, holder: &str) -> Result<()> {
        sqlx::query("UPDATE job_locks SET acquired_at = $1 WHERE job = $2 AND holder = $3")
            .bind(now())
            .bind(job)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn lock_holder(&self, job: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT holder FROM job_locks WHERE job = $1")
                .bind(job)
                .fetch_optional(&self.pool)
                .await?,
        )
    }
}

fn run_row(r: &PgRow) -> RunRow {
    RunRow {
        run_id: r.get(0),
        job: r.get(1),
        as_of: r.get(2),
        started_at: r.get(3),
        finished_at: r.get(4),
        status: r.get(5),
        counts: r.get(6),
        rules: r.get(7),
        quality_run: r.get(8),
    }
}

fn delivery_row(r: &PgRow) -> DeliveryRow {
    DeliveryRow {
        job: r.get(0),
        as_of: r.get(1),
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

fn note_row(r: &PgRow) -> FileNote {
    FileNote {
        source: r.get(0),
        file: r.get(1),
        sheet: r.get(2),
        note: r.get(3),
        unlisted_rejections: u64::try_from(r.get::<i64, _>(4)).unwrap_or_default(),
    }
}

fn rejection_row(r: &PgRow) -> Rejection {
    Rejection {
        source: r.get(0),
        file: r.get(1),
        sheet: r.get(2),
        row: count(r, 3),
        cell: r.get(4),
        column: r.get(5),
        value: r.get(6),
        reason: reason_from(&r.get::<String, _>(7)),
        detail: r.get(8),
    }
}
