//! Loads one file into the SQLite warehouse with rusqlite on a blocking
//! thread: one IMMEDIATE transaction per file, one prepared INSERT stepped per
//! row. sqlx would rebuild and re-bind a 1,000-row statement for each chunk
//! and move every value through its worker channel; stepping a cached
//! statement in-thread is several times cheaper (docs/PERFORMANCE.md).

use std::path::Path;
use std::time::Duration;

use chrono::NaiveDate;
use rusqlite::{params, Connection, Statement, Transaction, TransactionBehavior};
use tokio::sync::mpsc;

use crate::config::Dataset;
use crate::ingest::record::{Located, Record};
use crate::warehouse::{now, Batch, FileLoad, LoadOutcome, Replace};

fn date(d: NaiveDate) -> String {
    d.to_string()
}

fn opt_date(d: Option<NaiveDate>) -> Option<String> {
    d.map(date)
}

/// The INSERT of one dataset, with the upsert rule of its key.
fn insert_sql(dataset: Dataset) -> &'static str {
    match dataset {
        Dataset::Sales => {
            "INSERT INTO sales (invoice_date, customer_id, product_id, amount, quantity, invoice_no, line_no, rep_id, source, file, sheet, row_no) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (invoice_no, line_no) WHERE invoice_no IS NOT NULL AND line_no IS NOT NULL DO UPDATE SET \
             invoice_date = excluded.invoice_date, customer_id = excluded.customer_id, product_id = excluded.product_id, \
             amount = excluded.amount, quantity = excluded.quantity, rep_id = excluded.rep_id, source = excluded.source, \
             file = excluded.file, sheet = excluded.sheet, row_no = excluded.row_no"
        }
        Dataset::Customers => {
            "INSERT INTO customers (customer_id, name, region, rep_id, customer_type, first_contact_date, signed_date, prospect_score, coverage_score, status, source, file, sheet, row_no) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (customer_id) DO UPDATE SET name = excluded.name, region = excluded.region, rep_id = excluded.rep_id, \
             customer_type = excluded.customer_type, first_contact_date = excluded.first_contact_date, signed_date = excluded.signed_date, \
             prospect_score = excluded.prospect_score, coverage_score = excluded.coverage_score, status = excluded.status, \
             source = excluded.source, file = excluded.file, sheet = excluded.sheet, row_no = excluded.row_no"
        }
        Dataset::Reps => {
            "INSERT INTO reps (rep_id, name, region, hire_date, email, source, file, sheet, row_no) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (rep_id) DO UPDATE SET name = excluded.name, region = excluded.region, hire_date = excluded.hire_date, \
             email = excluded.email, source = excluded.source, file = excluded.file, sheet = excluded.sheet, row_no = excluded.row_no"
        }
        Dataset::Visits => {
            "INSERT INTO visits (visit_date, rep_id, customer_id, visit_type, outcome, source, file, sheet, row_no) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        }
        Dataset::Targets => {
            "INSERT INTO targets (rep_id, month, sales_target, new_customer_target, source, file, sheet, row_no) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (rep_id, month) DO UPDATE SET sales_target = excluded.sales_target, \
             new_customer_target = excluded.new_customer_target, source = excluded.source, file = excluded.file, \
             sheet = excluded.sheet, row_no = excluded.row_no"
        }
        Dataset::Satisfaction => {
            "INSERT INTO satisfaction (customer_id, date, score, source, file, sheet, row_no) VALUES (?, ?, ?, ?, ?, ?, ?)"
        }
    }
}

fn delete_replaced(tx: &Transaction<'_>, load: &FileLoad) -> rusqlite::Result<()> {
    // table names come from the fixed dataset list, never from input
    let table = load.dataset.name();
    match &load.replace {
        Replace::File => tx.execute(
            &format!("DELETE FROM {table} WHERE source = ? AND file = ?"),
            params![load.source, load.file],
        )?,
        Replace::Source => tx.execute(
            &format!("DELETE FROM {table} WHERE source = ?"),
            params![load.source],
        )?,
        Replace::SourceSince(since) => tx.execute(
            "DELETE FROM sales WHERE source = ? AND invoice_date >= ?",
            params![load.source, date(*since)],
        )?,
    };
    Ok(())
}

fn insert(stmt: &mut Statement<'_>, load: &FileLoad, located: &Located) -> rusqlite::Result<()> {
    let (source, file, sheet) = (&load.source, &load.file, &load.sheet);
    let row = i64::try_from(located.row).unwrap_or(i64::MAX);
    match &located.record {
        Record::Sale(s) => stmt.execute(params![
            date(s.invoice_date),
            s.customer_id,
            s.product_id,
            s.amount,
            s.quantity,
            s.invoice_no,
            s.line_no,
            s.rep_id,
            source,
            file,
            sheet,
            row
        ]),
        Record::Customer(c) => stmt.execute(params![
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
            source,
            file,
            sheet,
            row
        ]),
        Record::Rep(r) => stmt.execute(params![
            r.rep_id,
            r.name,
            r.region,
            opt_date(r.hire_date),
            r.email,
            source,
            file,
            sheet,
            row
        ]),
        Record::Visit(v) => stmt.execute(params![
            date(v.visit_date),
            v.rep_id,
            v.customer_id,
            v.visit_type,
            v.outcome,
            source,
            file,
            sheet,
            row
        ]),
        Record::Target(t) => stmt.execute(params![
            t.rep_id,
            t.month.to_string(),
            t.sales_target,
            t.new_customer_target,
            source,
            file,
            sheet,
            row
        ]),
        Record::Survey(s) => stmt.execute(params![
            s.customer_id,
            date(s.date),
            s.score,
            source,
            file,
            sheet,
            row
        ]),
    }?;
    Ok(())
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
    conn.busy_timeout(Duration::from_secs(30))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "cache_size", -65_536)?;
    conn.pragma_update(None, "temp_store", "memory")?;
    // IMMEDIATE: take the write lock now rather than fail to upgrade later
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    delete_replaced(&tx, load)?;
    let mut loaded = 0u64;
    let end = {
        let mut stmt = tx.prepare(insert_sql(load.dataset))?;
        loop {
            match rx.blocking_recv() {
                Some(Batch::Rows(rows)) => {
                    for located in &rows {
                        insert(&mut stmt, load, located)?;
                    }
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
        }
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
    tx.execute(
        "INSERT INTO ingested_files (source, file, sha256, rows_loaded, rows_rejected, unknown_ids, loaded_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (source, file) DO UPDATE SET sha256 = excluded.sha256, \
         rows_loaded = excluded.rows_loaded, rows_rejected = excluded.rows_rejected, \
         unknown_ids = excluded.unknown_ids, loaded_at = excluded.loaded_at",
        params![
            load.source,
            load.file,
            load.sha256,
            count(loaded),
            count(rejected),
            count(unknown_ids),
            now()
        ],
    )?;
    tx.commit()?;
    Ok(LoadOutcome::Loaded { rows: loaded })
}
