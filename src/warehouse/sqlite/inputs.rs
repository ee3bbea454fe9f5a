//! The metric inputs of one as-of date, read from the SQLite warehouse with
//! rusqlite on a blocking thread. The sales scan steps through every line up
//! to the as-of date; sqlx's SQLite driver would hand each row across a
//! channel to the async task (about 5 µs a row, most of a 20 M-line run),
//! while a statement stepped in-thread costs a fraction of a microsecond.
//! Everything here only reads: writes stay with sqlx and its migrations.

use std::collections::HashMap;
use std::path::Path;

use chrono::NaiveDate;
use compact_str::CompactString;
use rusqlite::{params, Connection, OpenFlags};
use rustc_hash::FxHashMap;

use crate::config::VisitsConfig;
use crate::ingest::record::Masters;
use crate::metrics::sales::{from_micros, to_micros};
use crate::metrics::{
    Customer, Inputs, PeriodRange, PeriodSales, PurchaseSpan, Rep, SummaryBuilder, Survey, Target,
    YearMonth,
};
use crate::warehouse::fold_visit_days;

fn parse_date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap_or(NaiveDate::MIN)
}

/// `YYYY-MM` of an ISO date without going through chrono: this runs per line.
fn month_of(date: &str) -> Option<YearMonth> {
    let b = date.as_bytes();
    if b.len() < 7 || b[4] != b'-' {
        return None;
    }
    let digits = |s: &[u8]| {
        s.iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    let year = i32::try_from(digits(&b[..4])?).ok()?;
    Some(YearMonth::new(year, digits(&b[5..7])?))
}

/// Small integer ids for the strings of one scan.
#[derive(Default)]
struct Interner {
    ids: FxHashMap<String, u32>,
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
}

/// A read-only connection that waits out a writer's lock.
fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(super::BUSY_TIMEOUT)?;
    Ok(conn)
}

/// Every rep and customer id, for ingest's unknown-id checks: 200,000 rows
/// through sqlx's worker channel took a second.
pub(super) fn masters(path: &Path) -> rusqlite::Result<Masters> {
    let conn = open_reader(path)?;
    conn.execute_batch("BEGIN")?;
    // read in place: an id short enough to be held inline is never
    // allocated
    let ids = |sql: &str| -> rusqlite::Result<Vec<CompactString>> {
        let mut stmt = conn.prepare(sql)?;
        let rows = stmt.query_map([], |r| {
            Ok(CompactString::from(r.get_ref(0)?.as_str().map_err(
                |e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        0,
                        rusqlite::types::Type::Text,
                        e.into(),
                    )
                },
            )?))
        })?;
        rows.collect()
    };
    let reps = ids("SELECT rep_id FROM reps")?;
    Ok(Masters::new(
        ids("SELECT customer_id FROM customers")?,
        reps,
    ))
}

/// Attempts at [`consistent_snapshots`] before giving up: each costs a few
/// connections opened, and only a load committing in the microseconds
/// between two of them makes one fail.
const SNAPSHOT_ATTEMPTS: u32 = 100;

/// `count` read-only connections, each inside a read transaction, all seeing
/// the same commit. SQLite has no way to share one snapshot between
/// connections (`sqlite3_snapshot_open` is not in rusqlite), so each reads
/// the generation every load bumps (migration 0005) and all start again when
/// they differ. `between` runs after the first connection's snapshot is
/// taken; tests commit a load there.
fn consistent_snapshots(
    path: &Path,
    count: usize,
    mut between: impl FnMut(),
) -> rusqlite::Result<Vec<Connection>> {
    for attempt in 1..=SNAPSHOT_ATTEMPTS {
        let mut conns = Vec::with_capacity(count);
        let mut generations = Vec::with_capacity(count);
        for i in 0..count.max(1) {
            let conn = open_reader(path)?;
            conn.execute_batch("BEGIN")?;
            // the first read, not BEGIN, fixes a WAL reader's snapshot
            generations.push(
                conn.query_row("SELECT n FROM warehouse_generation", [], |r| {
                    r.get::<_, i64>(0)
                })?,
            );
            conns.push(conn);
            if i == 0 {
                between();
            }
        }
        if generations.windows(2).all(|w| w[0] == w[1]) {
            return Ok(conns);
        }
        tracing::debug!(
            attempt,
            "a load committed while the metric read began; starting again"
        );
    }
    Err(rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
        Some(format!(
            "loads kept committing while the metric read took its snapshot ({SNAPSHOT_ATTEMPTS} attempts)"
        )),
    ))
}

pub(super) fn read(
    path: &Path,
    as_of: NaiveDate,
    period: &PeriodRange,
    window_months: u32,
    visits: &VisitsConfig,
) -> rusqlite::Result<Inputs> {
    let shards = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    // one read transaction per connection, all as of the same commit
    let mut conns = consistent_snapshots(path, shards + 1, || {})?;
    let conn = conns.remove(0);
    conn.pragma_update(None, "cache_size", -65_536)?;
    let end = period.end.min(as_of);

    let customers = conn
        .prepare(
            "SELECT customer_id, name, region, rep_id, customer_type, first_contact_date, signed_date, prospect_score, \
             coverage_score, status FROM customers ORDER BY customer_id",
        )?
        .query_map([], |r| {
            Ok(Customer {
                customer_id: r.get(0)?,
                name: r.get(1)?,
                region: r.get(2)?,
                rep_id: r.get(3)?,
                customer_type: r.get(4)?,
                first_contact_date: r.get::<_, Option<String>>(5)?.as_deref().map(parse_date),
                signed_date: r.get::<_, Option<String>>(6)?.as_deref().map(parse_date),
                prospect_score: r.get(7)?,
                coverage_score: r.get(8)?,
                status: r.get(9)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let reps = conn
        .prepare("SELECT rep_id, name, region FROM reps ORDER BY rep_id")?
        .query_map([], |r| {
            Ok(Rep {
                rep_id: r.get(0)?,
                name: r.get(1)?,
                region: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;

    let (sales, purchases, period_sales) =
        scan_sales(conns, as_of, period.start, end, window_months)?;

    let mut counted_days = Vec::new();
    let mut stmt = conn.prepare(
        "SELECT customer_id, visit_date, visit_type, COUNT(*) FROM visits WHERE visit_date >= ?1 AND visit_date <= ?2 \
         GROUP BY customer_id, visit_date, visit_type",
    )?;
    let mut rows = stmt.query(params![period.start.to_string(), end.to_string()])?;
    while let Some(r) = rows.next()? {
        counted_days.push((
            r.get::<_, String>(0)?,
            parse_date(r.get_ref(1)?.as_str()?),
            r.get::<_, Option<String>>(2)?,
            u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
        ));
    }
    drop(rows);
    drop(stmt);
    let visit_days = fold_visit_days(counted_days, visits);

    let months: Vec<String> = period.months().iter().map(ToString::to_string).collect();
    let targets = conn
        .prepare(
            "SELECT rep_id, month, sales_target, new_customer_target FROM targets WHERE month >= ?1 AND month <= ?2",
        )?
        .query_map(
            params![
                months.first().cloned().unwrap_or_default(),
                months.last().cloned().unwrap_or_default()
            ],
            |r| {
                Ok(YearMonth::parse(&r.get::<_, String>(1)?).map(|month| Target {
                    rep_id: r.get(0).unwrap_or_default(),
                    month,
                    sales_target: r.get(2).unwrap_or_default(),
                    new_customer_target: r.get(3).unwrap_or_default(),
                }))
            },
        )?
        .filter_map(Result::transpose)
        .collect::<rusqlite::Result<Vec<_>>>()?;

    let survey_from = end
        .checked_sub_months(chrono::Months::new(12))
        .unwrap_or(NaiveDate::MIN);
    let surveys = conn
        .prepare(
            "SELECT customer_id, date, score FROM satisfaction WHERE date > ?1 AND date <= ?2",
        )?
        .query_map(params![survey_from.to_string(), end.to_string()], |r| {
            Ok(Survey {
                customer_id: r.get(0)?,
                date: parse_date(r.get_ref(1)?.as_str()?),
                score: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    conn.execute_batch("COMMIT")?;

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

type SalesInputs = (
    crate::metrics::SalesSummary,
    HashMap<String, PurchaseSpan>,
    Vec<PeriodSales>,
);

/// Reads the sales inputs on every core: each thread steps through all lines
/// but only aggregates the customers of its shard. The work is bound by
/// memory latency (a random probe per line into maps of 200,000 customers),
/// not by SQLite, so shards scale while the extra stepping costs little.
/// Each shard reads through its own connection, one of `conns`, whose read
/// transactions [`consistent_snapshots`] opened.
fn scan_sales(
    conns: Vec<Connection>,
    as_of: NaiveDate,
    p_from: NaiveDate,
    p_to: NaiveDate,
    window_months: u32,
) -> rusqlite::Result<SalesInputs> {
    let shards = conns.len();
    let parts: Vec<rusqlite::Result<Shard>> = std::thread::scope(|scope| {
        let handles: Vec<_> = conns
            .into_iter()
            .enumerate()
            .map(|(shard, conn)| {
                scope.spawn(move || {
                    scan_shard(&conn, (shard, shards), as_of, p_from, p_to, window_months)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(rusqlite::Error::ToSqlConversionFailure(
                        "a sales scan thread panicked".into(),
                    ))
                })
            })
            .collect()
    });
    let mut parts = parts.into_iter();
    let (mut summary, mut purchases, mut period_sales) = match parts.next() {
        Some(first) => first?,
        None => (
            SummaryBuilder::new(as_of, window_months),
            HashMap::new(),
            Vec::new(),
        ),
    };
    for part in parts {
        let (s, p, ps) = part?;
        summary.merge_disjoint(s);
        purchases.extend(p);
        period_sales.extend(ps);
    }
    period_sales.sort_unstable_by(|a, b| {
        (a.customer_id.as_str(), a.line_rep_id.as_deref())
            .cmp(&(b.customer_id.as_str(), b.line_rep_id.as_deref()))
    });
    Ok((summary.finish(), purchases, period_sales))
}

type Shard = (
    SummaryBuilder,
    HashMap<String, PurchaseSpan>,
    Vec<PeriodSales>,
);

/// One pass over the sales lines dated up to `as_of`, for the customers whose
/// id hashes into `shard`: the per-customer window and retention sums, first
/// and last purchase, and the period's sales per customer × line rep in
/// [`p_from`, `p_to`]. SQLite would sort every line through a temporary
/// B-tree for each GROUP BY; hashing here in one pass is several times faster.
fn scan_shard(
    conn: &Connection,
    (shard, shards): (usize, usize),
    as_of: NaiveDate,
    p_from: NaiveDate,
    p_to: NaiveDate,
    window_months: u32,
) -> rusqlite::Result<Shard> {
    use std::hash::BuildHasher;
    let hasher = rustc_hash::FxBuildHasher;
    let mut summary = SummaryBuilder::new(as_of, window_months);
    let first_month = summary.first_month();
    let m = YearMonth::of(as_of);
    // ISO dates compare as text, so no line's date is parsed
    let (from, to) = (
        first_month.first_day().to_string(),
        m.first_day().to_string(),
    );
    let (p_from, p_to) = (p_from.to_string(), p_to.to_string());
    let mut reps = Interner::default();
    let mut spans: FxHashMap<u32, ([u8; 10], [u8; 10])> = FxHashMap::default();
    let mut period: FxHashMap<(u32, Option<u32>), i64> = FxHashMap::default();

    let mut stmt = conn.prepare(
        "SELECT customer_id, product_id, invoice_date, amount, rep_id FROM sales NOT INDEXED WHERE invoice_date <= ?1",
    )?;
    let mut rows = stmt.query(params![as_of.to_string()])?;
    while let Some(r) = rows.next()? {
        let customer_id = r.get_ref(0)?.as_str()?;
        if shards > 1
            && usize::try_from(hasher.hash_one(customer_id)).unwrap_or(0) % shards != shard
        {
            continue;
        }
        let date = r.get_ref(2)?.as_str()?;
        let amount: f64 = r.get(3)?;
        let customer = summary.customer(customer_id);
        if amount > 0.0 {
            if let Ok(key) = <[u8; 10]>::try_from(date.as_bytes()) {
                spans
                    .entry(customer)
                    .and_modify(|(first, last)| {
                        if key < *first {
                            *first = key;
                        }
                        if key > *last {
                            *last = key;
                        }
                    })
                    .or_insert((key, key));
            }
        }
        if date >= from.as_str() && date < to.as_str() {
            if let Some(month) = month_of(date) {
                summary.add_for(customer, r.get_ref(1)?.as_str()?, month, amount, 1);
            }
        }
        if date >= p_from.as_str() && date <= p_to.as_str() {
            let rep = r.get_ref(4)?.as_str_or_null()?.map(|s| reps.id(s));
            *period.entry((customer, rep)).or_default() += to_micros(amount);
        }
    }
    drop(rows);
    drop(stmt);

    let purchases = spans
        .into_iter()
        .map(|(c, (first, last))| {
            let date = |k: [u8; 10]| parse_date(std::str::from_utf8(&k).unwrap_or_default());
            (
                summary.customer_name(c).to_string(),
                PurchaseSpan {
                    first: date(first),
                    last: date(last),
                },
            )
        })
        .collect();
    let period_sales: Vec<PeriodSales> = period
        .into_iter()
        .map(|((c, rep), micros)| PeriodSales {
            customer_id: summary.customer_name(c).to_string(),
            line_rep_id: rep.map(|r| reps.names[r as usize].clone()),
            amount: from_micros(micros),
        })
        .collect();
    Ok((summary, purchases, period_sales))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A WAL database holding only the generation table, and a writer on it.
    fn warehouse(dir: &Path) -> (std::path::PathBuf, Connection) {
        let path = dir.join("w.db");
        let writer = Connection::open(&path).expect("opens");
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 CREATE TABLE warehouse_generation (only INTEGER PRIMARY KEY CHECK (only = 1), n INTEGER NOT NULL);
                 INSERT INTO warehouse_generation VALUES (1, 0);",
            )
            .expect("schema");
        (path, writer)
    }

    /// What every load does in its transaction.
    fn bump(writer: &Connection) {
        writer
            .execute("UPDATE warehouse_generation SET n = n + 1", [])
            .expect("bumps");
    }

    fn generation(conn: &Connection) -> i64 {
        conn.query_row("SELECT n FROM warehouse_generation", [], |r| r.get(0))
            .expect("reads")
    }

    #[test]
    fn a_load_between_two_connections_makes_the_read_start_again() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (path, writer) = warehouse(dir.path());
        let mut calls = 0;
        let conns = consistent_snapshots(&path, 3, || {
            calls += 1;
            if calls == 1 {
                bump(&writer);
            }
        })
        .expect("snapshots");
        assert_eq!(
            calls, 2,
            "the first attempt saw two commits and was dropped"
        );
        let seen: Vec<i64> = conns.iter().map(generation).collect();
        assert_eq!(seen, [1, 1, 1]);

        // the snapshots stay put while more loads commit
        bump(&writer);
        let seen: Vec<i64> = conns.iter().map(generation).collect();
        assert_eq!(seen, [1, 1, 1]);
    }

    #[test]
    fn a_warehouse_that_never_holds_still_is_an_error_not_a_torn_read() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (path, writer) = warehouse(dir.path());
        let mut calls = 0;
        let err = consistent_snapshots(&path, 2, || {
            calls += 1;
            bump(&writer);
        })
        .map(|_| ())
        .expect_err("never consistent");
        assert_eq!(calls, SNAPSHOT_ATTEMPTS);
        assert_eq!(
            err.to_string(),
            "loads kept committing while the metric read took its snapshot (100 attempts)"
        );
    }
}
