//! Loads one file into the SQLite warehouse with rusqlite on a blocking
//! thread: one IMMEDIATE transaction per file, prepared multi-row INSERTs of
//! [`ROWS_PER_INSERT`] rows stepped in-thread. sqlx would rebuild and re-bind a 1,000-row statement for each chunk
//! and move every value through its worker channel; stepping a cached
//! statement in-thread is several times cheaper (docs/PERFORMANCE.md).

use std::path::Path;

use chrono::Datelike;
use chrono::NaiveDate;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{params, Connection, Statement, ToSql, Transaction, TransactionBehavior};
use tokio::sync::mpsc;

use crate::config::Dataset;
use crate::ingest::record::{Located, Record};
use crate::warehouse::{now, ranged, recorded_range, Batch, FileLoad, LoadOutcome, Replace, Rows};

fn date(d: NaiveDate) -> String {
    d.to_string()
}

/// A date as `YYYY-MM-DD` text, written without `fmt` or an allocation: it is
/// bound once for every row loaded.
struct DateText([u8; 10]);

impl DateText {
    /// `None` for years outside 0..=9999, which need `date`'s longer form.
    fn new(d: NaiveDate) -> Option<Self> {
        let year = u32::try_from(d.year()).ok().filter(|y| *y <= 9999)?;
        let digit = |n: u32| b'0' + u8::try_from(n % 10).unwrap_or(0);
        let (m, day) = (d.month(), d.day());
        Some(Self([
            digit(year / 1000),
            digit(year / 100),
            digit(year / 10),
            digit(year),
            b'-',
            digit(m / 10),
            digit(m),
            b'-',
            digit(day / 10),
            digit(day),
        ]))
    }
}

/// Binds a date as text, on the stack for every year a sales file holds.
enum SqlDate {
    Short(DateText),
    Long(String),
}

impl SqlDate {
    fn new(d: NaiveDate) -> Self {
        DateText::new(d).map_or_else(|| Self::Long(date(d)), Self::Short)
    }
}

impl ToSql for SqlDate {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        let bytes = match self {
            Self::Short(t) => &t.0[..],
            Self::Long(s) => s.as_bytes(),
        };
        Ok(ToSqlOutput::Borrowed(ValueRef::Text(bytes)))
    }
}

fn opt_date(d: Option<NaiveDate>) -> Option<String> {
    d.map(date)
}

/// Rows per multi-row INSERT: the per-statement work (opening the table's
/// cursors, halting and resetting the VM) is shared by this many rows.
const ROWS_PER_INSERT: usize = 32;

/// How one dataset is inserted: verb, table, its own columns (provenance and
/// row number follow) and the upsert rule of its key.
fn insert_parts(
    dataset: Dataset,
) -> (
    &'static str,
    &'static str,
    &'static [&'static str],
    &'static str,
) {
    match dataset {
        // REPLACE, not an in-place update: the line moves to a new rowid
        // inside the range of the file that now holds it, where that file's
        // next reload will find it
        Dataset::Sales => (
            "INSERT OR REPLACE",
            "sales",
            &["invoice_date", "customer_id", "product_id", "amount", "quantity", "invoice_no", "line_no", "rep_id"],
            "",
        ),
        Dataset::Customers => (
            "INSERT",
            "customers",
            &["customer_id", "name", "region", "rep_id", "customer_type", "first_contact_date", "signed_date", "prospect_score", "coverage_score", "status"],
            " ON CONFLICT (customer_id) DO UPDATE SET name = excluded.name, region = excluded.region, rep_id = excluded.rep_id, \
             customer_type = excluded.customer_type, first_contact_date = excluded.first_contact_date, signed_date = excluded.signed_date, \
             prospect_score = excluded.prospect_score, coverage_score = excluded.coverage_score, status = excluded.status, \
             source = excluded.source, file = excluded.file, sheet = excluded.sheet, row_no = excluded.row_no",
        ),
        Dataset::Reps => (
            "INSERT",
            "reps",
            &["rep_id", "name", "region", "hire_date", "email"],
            " ON CONFLICT (rep_id) DO UPDATE SET name = excluded.name, region = excluded.region, hire_date = excluded.hire_date, \
             email = excluded.email, source = excluded.source, file = excluded.file, sheet = excluded.sheet, row_no = excluded.row_no",
        ),
        Dataset::Visits => (
            "INSERT",
            "visits",
            &["visit_date", "rep_id", "customer_id", "visit_type", "outcome"],
            "",
        ),
        Dataset::Targets => (
            "INSERT",
            "targets",
            &["rep_id", "month", "sales_target", "new_customer_target"],
            " ON CONFLICT (rep_id, month) DO UPDATE SET sales_target = excluded.sales_target, \
             new_customer_target = excluded.new_customer_target, source = excluded.source, file = excluded.file, \
             sheet = excluded.sheet, row_no = excluded.row_no",
        ),
        Dataset::Satisfaction => (
            "INSERT",
            "satisfaction",
            &["customer_id", "date", "score"],
            "",
        ),
    }
}

/// Parameters of one row: the rowid (ranged datasets), the dataset's own
/// columns, the row number.
fn params_per_row(dataset: Dataset) -> usize {
    insert_parts(dataset).2.len() + 1 + usize::from(ranged(dataset))
}

/// The first parameter of a row's own values: `?1`–`?3` are its provenance.
const FIRST_ROW_PARAM: usize = 4;

/// The INSERT of `rows` rows. `?1`–`?3` are the provenance every row shares,
/// bound once per file; row `r`'s own parameters start at
/// `FIRST_ROW_PARAM + r * params_per_row`.
fn insert_sql(dataset: Dataset, rows: usize) -> String {
    use std::fmt::Write;
    let (verb, table, columns, conflict) = insert_parts(dataset);
    let id = if ranged(dataset) { "id, " } else { "" };
    let per_row = params_per_row(dataset);
    let mut sql = format!(
        "{verb} INTO {table} ({id}{}, source, file, sheet, row_no) VALUES ",
        columns.join(", ")
    );
    for r in 0..rows {
        let base = FIRST_ROW_PARAM + r * per_row;
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for p in base..base + per_row - 1 {
            let _ = write!(sql, "?{p}, ");
        }
        let _ = write!(sql, "?1, ?2, ?3, ?{})", base + per_row - 1);
    }
    sql.push_str(conflict);
    sql
}

fn stored_rows(tx: &Transaction<'_>, source: &str, file: Option<&str>) -> rusqlite::Result<Rows> {
    let (loads, ranged, first, last): (i64, i64, Option<i64>, Option<i64>) = tx.query_row(
        "SELECT COUNT(*), COUNT(first_row_id), MIN(first_row_id), MAX(last_row_id) FROM ingested_files \
         WHERE source = ?1 AND (?2 IS NULL OR file = ?2)",
        params![source, file],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    Ok(Rows::from_loads(loads, ranged, first, last))
}

fn delete_replaced(tx: &Transaction<'_>, load: &FileLoad) -> rusqlite::Result<()> {
    match &load.replace {
        Replace::SourceSince(since) => {
            tx.execute(
                "DELETE FROM sales WHERE source = ? AND invoice_date >= ? AND substr(file, 1, 4) = 'sql:'",
                params![load.source, date(*since)],
            )?;
        }
        Replace::File => delete_rows(tx, load, Some(&load.file))?,
        Replace::Source => delete_rows(tx, load, None)?,
    }
    for old in &load.retire {
        delete_rows(tx, load, Some(old))?;
        tx.execute(
            "DELETE FROM ingested_files WHERE source = ? AND file = ?",
            params![load.source, old],
        )?;
    }
    Ok(())
}

/// Deletes the rows `load`'s source stored from `file`, or from anywhere.
fn delete_rows(tx: &Transaction<'_>, load: &FileLoad, file: Option<&str>) -> rusqlite::Result<()> {
    // table names come from the fixed dataset list, never from input
    let table = load.dataset.name();
    // a SQL load's range covers only its own window, not the rows before it
    let rows = if ranged(load.dataset) && !file.is_some_and(|f| f.starts_with("sql:")) {
        stored_rows(tx, &load.source, file)?
    } else {
        Rows::Anywhere
    };
    // both forms keep ?2 so that they take the same parameters
    let by_file = if file.is_some() {
        "file = ?2"
    } else {
        "?2 IS NULL"
    };
    match rows {
        Rows::None => 0,
        Rows::Within(first, last) => tx.execute(
            &format!(
                "DELETE FROM {table} WHERE id BETWEEN ?3 AND ?4 AND source = ?1 AND {by_file}"
            ),
            params![load.source, file, first, last],
        )?,
        Rows::Anywhere => tx.execute(
            &format!("DELETE FROM {table} WHERE source = ?1 AND {by_file}"),
            params![load.source, file],
        )?,
    };
    Ok(())
}

/// Binds a file's provenance (`source, file, sheet`), shared by every row of
/// every execution: SQLite keeps a statement's bindings until they change.
fn bind_provenance(stmt: &mut Statement<'_>, load: &FileLoad) -> rusqlite::Result<()> {
    stmt.raw_bind_parameter(1, &load.source)?;
    stmt.raw_bind_parameter(2, &load.file)?;
    stmt.raw_bind_parameter(3, &load.sheet)?;
    Ok(())
}

/// Binds row `r` of a multi-row INSERT: its rowid (if any), values and row number.
fn bind(
    stmt: &mut Statement<'_>,
    base: usize,
    id: Option<i64>,
    values: &[&dyn ToSql],
    row: u64,
) -> rusqlite::Result<()> {
    let mut p = base;
    if let Some(id) = id {
        stmt.raw_bind_parameter(p, id)?;
        p += 1;
    }
    for value in values {
        stmt.raw_bind_parameter(p, value)?;
        p += 1;
    }
    stmt.raw_bind_parameter(p, i64::try_from(row).unwrap_or(i64::MAX))
}

/// Binds one record as the row whose parameters start at `base`.
fn bind_record(
    stmt: &mut Statement<'_>,
    base: usize,
    id: Option<i64>,
    located: &Located,
) -> rusqlite::Result<()> {
    let row = located.row;
    match &located.record {
        Record::Sale(s) => bind(
            stmt,
            base,
            id,
            params![
                SqlDate::new(s.invoice_date),
                s.customer_id,
                s.product_id,
                s.amount,
                s.quantity,
                s.invoice_no,
                s.line_no,
                s.rep_id,
            ],
            row,
        ),
        Record::Customer(c) => bind(
            stmt,
            base,
            id,
            params![
                c.customer_id,
                c.name,
                c.region,
                c.rep_id,
                c.customer_type,
                opt_date(c.first_contact_date),
                opt_date(c.signed_date),
                c.prospect_score,
                c.coverage_score,
                c.status,
            ],
            row,
        ),
        Record::Rep(r) => bind(
            stmt,
            base,
            id,
            params![r.rep_id, r.name, r.region, opt_date(r.hire_date), r.email],
            row,
        ),
        Record::Visit(v) => bind(
            stmt,
            base,
            id,
            params![
                SqlDate::new(v.visit_date),
                v.rep_id,
                v.customer_id,
                v.visit_type,
                v.outcome,
            ],
            row,
        ),
        Record::Target(t) => bind(
            stmt,
            base,
            id,
            params![
                t.rep_id,
                t.month.to_string(),
                t.sales_target,
                t.new_customer_target,
            ],
            row,
        ),
        Record::Survey(s) => bind(
            stmt,
            base,
            id,
            params![s.customer_id, date(s.date), s.score],
            row,
        ),
    }
}

/// Inserts a file's rows through a multi-row statement and a one-row one for
/// the remainder of each batch. Ranged datasets get explicit rowids above
/// every existing one, so the file's rows are exactly `first..=last`.
struct Inserter<'c> {
    /// parameters of one row, [`params_per_row`] of the dataset
    per_row: usize,
    many: Statement<'c>,
    one: Statement<'c>,
    /// the next rowid, for ranged datasets
    next_id: Option<i64>,
}

impl<'c> Inserter<'c> {
    fn new(tx: &'c Transaction<'_>, load: &FileLoad) -> rusqlite::Result<Self> {
        let dataset = load.dataset;
        let mut many = tx.prepare(&insert_sql(dataset, ROWS_PER_INSERT))?;
        let mut one = tx.prepare(&insert_sql(dataset, 1))?;
        bind_provenance(&mut many, load)?;
        bind_provenance(&mut one, load)?;
        let next_id = if ranged(dataset) {
            // table names come from the fixed dataset list, never from input
            let max: i64 = tx.query_row(
                &format!("SELECT COALESCE(MAX(id), 0) FROM {}", dataset.name()),
                [],
                |r| r.get(0),
            )?;
            Some(max + 1)
        } else {
            None
        };
        Ok(Self {
            per_row: params_per_row(dataset),
            many,
            one,
            next_id,
        })
    }

    fn take_id(&mut self) -> Option<i64> {
        let id = self.next_id?;
        self.next_id = Some(id + 1);
        Some(id)
    }

    fn insert(&mut self, rows: &[Located]) -> rusqlite::Result<()> {
        let mut chunks = rows.chunks_exact(ROWS_PER_INSERT);
        for chunk in &mut chunks {
            for (r, located) in chunk.iter().enumerate() {
                let id = self.take_id();
                bind_record(
                    &mut self.many,
                    FIRST_ROW_PARAM + r * self.per_row,
                    id,
                    located,
                )?;
            }
            self.many.raw_execute()?;
        }
        for located in chunks.remainder() {
            let id = self.take_id();
            bind_record(&mut self.one, FIRST_ROW_PARAM, id, located)?;
            self.one.raw_execute()?;
        }
        Ok(())
    }
}

/// How the batches of one file ended.
enum End {
    Complete {
        data_rows: u64,
        rejected: u64,
        unknown_ids: u64,
    },
    /// the parser dropped its sender before `Batch::End`
    Aborted,
}

pub(super) fn load_file(
    path: &Path,
    load: &FileLoad,
    rx: &mut mpsc::Receiver<Batch>,
) -> rusqlite::Result<LoadOutcome> {
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(super::BUSY_TIMEOUT)?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "cache_size", -65_536)?;
    conn.pragma_update(None, "temp_store", "memory")?;
    // IMMEDIATE: take the write lock now rather than fail to upgrade later
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    delete_replaced(&tx, load)?;
    let mut loaded = 0u64;
    let (end, first_id) = {
        let mut inserter = Inserter::new(&tx, load)?;
        let first_id = inserter.next_id;
        let end = loop {
            match rx.blocking_recv() {
                Some(Batch::Rows(rows)) => {
                    inserter.insert(&rows)?;
                    loaded += rows.len() as u64;
                }
                Some(Batch::End {
                    data_rows,
                    rejected,
                    unknown_ids,
                }) => {
                    break End::Complete {
                        data_rows,
                        rejected,
                        unknown_ids,
                    }
                }
                None => break End::Aborted,
            }
        };
        (end, first_id)
    };
    let End::Complete {
        data_rows,
        rejected,
        unknown_ids,
    } = end
    else {
        tx.rollback()?;
        return Ok(LoadOutcome::Aborted);
    };
    if load.ratio_exceeded(data_rows, rejected) {
        tx.rollback()?;
        return Ok(LoadOutcome::RatioExceeded {
            rejected,
            data_rows,
        });
    }
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let (first_id, last_id) = recorded_range(
        first_id
            .filter(|_| loaded > 0)
            .map(|first| (first, first + count(loaded) - 1)),
    );
    tx.execute(
        "INSERT INTO ingested_files (source, file, sha256, rows_loaded, rows_rejected, unknown_ids, loaded_at, first_row_id, last_row_id) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (source, file) DO UPDATE SET sha256 = excluded.sha256, \
         rows_loaded = excluded.rows_loaded, rows_rejected = excluded.rows_rejected, \
         unknown_ids = excluded.unknown_ids, loaded_at = excluded.loaded_at, \
         first_row_id = excluded.first_row_id, last_row_id = excluded.last_row_id",
        params![
            load.source,
            load.file,
            load.sha256,
            count(loaded),
            count(rejected),
            count(unknown_ids),
            now(),
            first_id,
            last_id
        ],
    )?;
    // readers compare this across their connections (migration 0005)
    tx.execute("UPDATE warehouse_generation SET n = n + 1", [])?;
    tx.commit()?;
    Ok(LoadOutcome::Loaded { rows: loaded })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(d: NaiveDate) -> String {
        match SqlDate::new(d).to_sql().expect("binds") {
            ToSqlOutput::Borrowed(ValueRef::Text(b)) => {
                String::from_utf8(b.to_vec()).expect("utf-8")
            }
            other => panic!("not text: {other:?}"),
        }
    }

    #[test]
    fn dates_bind_as_the_text_chrono_writes() {
        for (y, m, d) in [
            (2026, 11, 20),
            (2024, 2, 29),
            (1900, 1, 1),
            (999, 12, 31),
            (0, 1, 1),
            (9999, 12, 31),
            (10_000, 1, 1),
            (-1, 6, 15),
        ] {
            let day = NaiveDate::from_ymd_opt(y, m, d).expect("valid date");
            assert_eq!(text(day), day.to_string(), "{y}-{m}-{d}");
        }
        assert_eq!(
            text(NaiveDate::from_ymd_opt(987, 3, 4).unwrap()),
            "0987-03-04"
        );
    }
}
