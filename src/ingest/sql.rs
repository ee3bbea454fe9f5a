//! SQL source: runs the configured query against PostgreSQL, MySQL/MariaDB or
//! SQLite (URL from the environment) and streams its rows. `:since` is bound
//! as a real parameter; no value is ever spliced into the SQL text.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use futures_util::TryStreamExt;
use sqlx::{Column, Row};

use super::coerce::Cell;
use super::reader::FileError;
use crate::warehouse::quiet_slow_statements;

/// Rewrites each `:since` into the backend's placeholder and counts them.
pub fn bind_since(query: &str, placeholder: impl Fn(usize) -> String) -> (String, usize) {
    let mut out = String::with_capacity(query.len());
    let mut n = 0;
    let mut rest = query;
    while let Some(pos) = rest.find(":since") {
        let after = &rest[pos + 6..];
        if after
            .chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            out.push_str(&rest[..pos + 6]);
        } else {
            n += 1;
            out.push_str(&rest[..pos]);
            out.push_str(&placeholder(n));
        }
        rest = after;
    }
    out.push_str(rest);
    (out, n)
}

/// Decodes one value into a cell. `$first` reads what the common types
/// would misread (MySQL's `FLOAT`, which `f64` widens); `$extra` tries the
/// backend's own types
/// (decimals, unsigned and narrow integers, UUIDs) before the booleans:
/// MySQL's `bool` accepts every integer type and would read `INT UNSIGNED`
/// 7 as `true`. Keep the types in step with the backend's `readable`.
macro_rules! cell_at {
    ($row:expr, $i:expr, $first:expr, $extra:expr) => {{
        let row = $row;
        let i = $i;
        // numbers before dates: SQLite would read a REAL as a julian day
        if let Some(c) = $first(row, i) {
            c
        } else if let Ok(v) = row.try_get::<Option<String>, _>(i) {
            v.map_or(Cell::Empty, Cell::Text)
        } else if let Ok(v) = row.try_get::<Option<f64>, _>(i) {
            v.map_or(Cell::Empty, Cell::Number)
        } else if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
            v.map_or(Cell::Empty, |n| whole(i128::from(n)))
        } else if let Ok(v) = row.try_get::<Option<i32>, _>(i) {
            v.map_or(Cell::Empty, |n| Cell::Number(f64::from(n)))
        } else if let Some(c) = $extra(row, i) {
            c
        } else if let Ok(v) = row.try_get::<Option<NaiveDate>, _>(i) {
            v.map_or(Cell::Empty, |d| {
                Cell::DateTime(d.and_time(chrono::NaiveTime::MIN))
            })
        } else if let Ok(v) = row.try_get::<Option<NaiveDateTime>, _>(i) {
            v.map_or(Cell::Empty, Cell::DateTime)
        } else if let Ok(v) = row.try_get::<Option<DateTime<Utc>>, _>(i) {
            v.map_or(Cell::Empty, |d| Cell::DateTime(d.naive_utc()))
        } else if let Ok(v) = row.try_get::<Option<bool>, _>(i) {
            v.map_or(Cell::Empty, Cell::Bool)
        } else {
            Cell::Error(undecodable_date(row, i).unwrap_or_else(|| {
                format!("unsupported SQL type `{}`", row.columns()[i].type_info())
            }))
        }
    }};
}

/// A whole number as a cell: beyond 2^53 a float would lose digits of an
/// id (`BIGINT` invoice numbers), so such a number stays text.
fn whole(n: i128) -> Cell {
    const EXACT: i128 = 1 << 53;
    if (-EXACT..=EXACT).contains(&n) {
        #[allow(clippy::cast_precision_loss)] // exact within ±2^53
        Cell::Number(n as f64)
    } else {
        Cell::Text(n.to_string())
    }
}

/// A `REAL`/`FLOAT` as the decimal it was written as: `0.1f32` widened
/// directly would be 0.10000000149011612.
fn single(f: f32) -> Cell {
    f.to_string()
        .parse()
        .map_or(Cell::Number(f64::from(f)), Cell::Number)
}

/// Why the value of a date or timestamp column did not decode, when that is
/// what happened: a MySQL server outside strict mode stores zero-in-date
/// values such as `2026-10-00`, and "unsupported SQL type `DATE`" would
/// blame the column instead of the value.
fn undecodable_date<R: Row>(row: &R, i: usize) -> Option<String>
where
    usize: sqlx::ColumnIndex<R>,
    NaiveDate: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    NaiveDateTime: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    use sqlx::{Type, ValueRef};
    let ty = row.try_get_raw(i).ok()?.type_info().into_owned();
    let error = if <NaiveDate as Type<R::Database>>::compatible(&ty) {
        row.try_get::<Option<NaiveDate>, _>(i).err()
    } else if <NaiveDateTime as Type<R::Database>>::compatible(&ty) {
        row.try_get::<Option<NaiveDateTime>, _>(i).err()
    } else {
        None
    };
    match error? {
        sqlx::Error::ColumnDecode { source, .. } => Some(source.to_string()),
        other => Some(other.to_string()),
    }
}

/// A `DECIMAL`/`NUMERIC` as its exact digits: an amount or an id must not
/// pass through a float.
fn decimal(d: Option<rust_decimal::Decimal>) -> Cell {
    d.map_or(Cell::Empty, |d| Cell::Text(d.to_string()))
}

fn pg_extra(row: &sqlx::postgres::PgRow, i: usize) -> Option<Cell> {
    row.try_get::<Option<rust_decimal::Decimal>, _>(i)
        .map(decimal)
        .or_else(|_| {
            row.try_get::<Option<i16>, _>(i)
                .map(|v| v.map_or(Cell::Empty, |n| Cell::Number(f64::from(n))))
        })
        .or_else(|_| {
            row.try_get::<Option<f32>, _>(i)
                .map(|v| v.map_or(Cell::Empty, single))
        })
        .or_else(|_| {
            row.try_get::<Option<sqlx::types::Uuid>, _>(i)
                .map(|v| v.map_or(Cell::Empty, |u| Cell::Text(u.to_string())))
        })
        .ok()
}

fn mysql_extra(row: &sqlx::mysql::MySqlRow, i: usize) -> Option<Cell> {
    row.try_get::<Option<rust_decimal::Decimal>, _>(i)
        .map(decimal)
        .or_else(|_| {
            row.try_get::<Option<u64>, _>(i)
                .map(|v| v.map_or(Cell::Empty, |n| whole(i128::from(n))))
        })
        .ok()
}

fn mysql_first(row: &sqlx::mysql::MySqlRow, i: usize) -> Option<Cell> {
    use sqlx::{TypeInfo, ValueRef};
    let raw = row.try_get_raw(i).ok()?;
    if raw.is_null() || raw.type_info().name() != "FLOAT" {
        return None;
    }
    row.try_get::<f32, _>(i).ok().map(single)
}

fn nothing<R>(_: &R, _: usize) -> Option<Cell> {
    None
}

/// Whether `cell_at!` reads a PostgreSQL column of type `ty`.
fn pg_readable(ty: &sqlx::postgres::PgTypeInfo) -> bool {
    use sqlx::Type;
    type Db = sqlx::Postgres;
    readable_by_all::<Db>(ty)
        || <rust_decimal::Decimal as Type<Db>>::compatible(ty)
        || <i16 as Type<Db>>::compatible(ty)
        || <f32 as Type<Db>>::compatible(ty)
        || <sqlx::types::Uuid as Type<Db>>::compatible(ty)
}

/// Whether `cell_at!` reads a MySQL/MariaDB column of type `ty`.
fn mysql_readable(ty: &sqlx::mysql::MySqlTypeInfo) -> bool {
    use sqlx::Type;
    type Db = sqlx::MySql;
    readable_by_all::<Db>(ty)
        || <rust_decimal::Decimal as Type<Db>>::compatible(ty)
        || <u64 as Type<Db>>::compatible(ty)
}

/// SQLite types its values, not its columns: a column's declared type
/// (none at all for an expression) says nothing of what it holds.
fn sqlite_readable(_: &sqlx::sqlite::SqliteTypeInfo) -> bool {
    true
}

/// The types `cell_at!` tries on every backend.
fn readable_by_all<Db: sqlx::Database>(ty: &Db::TypeInfo) -> bool
where
    String: sqlx::Type<Db>,
    f64: sqlx::Type<Db>,
    i64: sqlx::Type<Db>,
    i32: sqlx::Type<Db>,
    NaiveDate: sqlx::Type<Db>,
    NaiveDateTime: sqlx::Type<Db>,
    DateTime<Utc>: sqlx::Type<Db>,
    bool: sqlx::Type<Db>,
{
    use sqlx::Type;
    <String as Type<Db>>::compatible(ty)
        || <f64 as Type<Db>>::compatible(ty)
        || <i64 as Type<Db>>::compatible(ty)
        || <i32 as Type<Db>>::compatible(ty)
        || <NaiveDate as Type<Db>>::compatible(ty)
        || <NaiveDateTime as Type<Db>>::compatible(ty)
        || <DateTime<Utc> as Type<Db>>::compatible(ty)
        || <bool as Type<Db>>::compatible(ty)
}

/// The columns a query returns.
#[derive(Debug, Default)]
pub struct Columns {
    pub names: Vec<String>,
    /// per column, its SQL type when salesbatch cannot read it (`MONEY`,
    /// `TIME`, a user-defined enum)
    pub unreadable: Vec<Option<String>>,
}

impl Columns {
    fn of<C: Column>(
        columns: &[C],
        readable: impl Fn(&<C::Database as sqlx::Database>::TypeInfo) -> bool,
    ) -> Self {
        Self {
            names: columns.iter().map(|c| c.name().to_string()).collect(),
            unreadable: columns
                .iter()
                .map(|c| (!readable(c.type_info())).then(|| c.type_info().to_string()))
                .collect(),
        }
    }
}

/// Runs `query` and calls `on_row(position, column names, cells)` per result
/// row (positions 1-based); whatever batch it returns is sent to `tx` before
/// the next row is fetched, so memory holds one batch at a time.
pub async fn fetch<B>(
    url: &str,
    query: &str,
    since: NaiveDate,
    tx: &tokio::sync::mpsc::Sender<B>,
    mut on_row: impl FnMut(u64, &Columns, Vec<Cell>) -> Result<Option<B>, FileError>,
) -> Result<(), FileError> {
    let err = |e: sqlx::Error| FileError::CannotOpen(e.to_string());
    macro_rules! run {
        ($pool:ty, $ph:expr, $first:expr, $extra:expr, $readable:expr) => {{
            let options = source_options(url).map_err(err)?;
            let pool = <$pool>::connect_with(options).await.map_err(err)?;
            let (sql, n) = bind_since(query, $ph);
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for _ in 0..n {
                q = q.bind(since);
            }
            let mut rows = q.fetch(&pool);
            let mut columns = Columns::default();
            let mut pos = 0u64;
            while let Some(row) = rows.try_next().await.map_err(err)? {
                if pos == 0 {
                    columns = Columns::of(row.columns(), $readable);
                }
                pos += 1;
                let cells = (0..row.len())
                    .map(|i| cell_at!(&row, i, $first, $extra))
                    .collect();
                if let Some(batch) = on_row(pos, &columns, cells)? {
                    tx.send(batch).await.map_err(|_| FileError::Cancelled)?;
                }
            }
            drop(rows);
            pool.close().await;
            Ok(())
        }};
    }
    match Backend::of(url) {
        Some(Backend::Postgres) => run!(
            sqlx::PgPool,
            |n| format!("${n}"),
            nothing,
            pg_extra,
            pg_readable
        ),
        Some(Backend::MySql) => {
            run!(
                sqlx::MySqlPool,
                |_| "?".to_string(),
                mysql_first,
                mysql_extra,
                mysql_readable
            )
        }
        Some(Backend::Sqlite) => {
            run!(
                sqlx::SqlitePool,
                |_| "?".to_string(),
                nothing,
                nothing,
                sqlite_readable
            )
        }
        None => Err(FileError::CannotOpen(unsupported_scheme(url))),
    }
}

/// What preparing a query on its source database found.
#[derive(Debug)]
pub enum Prepared {
    /// the columns the query returns
    Columns(Columns),
    /// the database's reason the query does not prepare
    Refused(String),
}

/// The connect options a source database's URL gives, as `fetch` and
/// `prepare` both connect: a pull's long statements are not WARNs (see
/// `quiet_slow_statements`).
fn source_options<O: sqlx::ConnectOptions>(url: &str) -> Result<O, sqlx::Error> {
    Ok(quiet_slow_statements(url.parse()?))
}

/// Connects to a source database and prepares `query` there without running
/// it: what `check` calls to prove a SQL source is reachable and to match
/// its mapping against the columns it returns, with no load on a production
/// ERP. `Err` is a connection that failed.
pub async fn prepare(url: &str, query: &str) -> Result<Prepared, String> {
    use sqlx::{Executor, SqlSafeStr, Statement};
    let err = |e: sqlx::Error| e.to_string();
    macro_rules! prepare {
        ($connect:expr, $ph:expr, $readable:expr) => {{
            let pool = $connect.await.map_err(err)?;
            let (sql, _) = bind_since(query, $ph);
            let prepared = match (&pool)
                .prepare(sqlx::AssertSqlSafe(sql).into_sql_str())
                .await
            {
                Ok(statement) => Prepared::Columns(Columns::of(statement.columns(), $readable)),
                Err(e) => Prepared::Refused(e.to_string()),
            };
            pool.close().await;
            Ok(prepared)
        }};
    }
    match Backend::of(url) {
        Some(Backend::Postgres) => {
            prepare!(
                sqlx::PgPool::connect_with(source_options(url).map_err(err)?),
                |n| format!("${n}"),
                pg_readable
            )
        }
        Some(Backend::MySql) => {
            prepare!(
                sqlx::MySqlPool::connect_with(source_options(url).map_err(err)?),
                |_| "?".to_string(),
                mysql_readable
            )
        }
        Some(Backend::Sqlite) => {
            let options = source_options::<sqlx::sqlite::SqliteConnectOptions>(url)
                .map_err(err)?
                .read_only(true);
            prepare!(
                sqlx::SqlitePool::connect_with(options),
                |_| "?".to_string(),
                sqlite_readable
            )
        }
        None => Err(unsupported_scheme(url)),
    }
}

/// The databases a `sql` source's `url_env` may name.
enum Backend {
    Postgres,
    MySql,
    Sqlite,
}

impl Backend {
    fn of(url: &str) -> Option<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            Some(Self::MySql)
        } else if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else {
            None
        }
    }
}

fn unsupported_scheme(url: &str) -> String {
    format!(
        "unsupported URL scheme in `{}`",
        url.split("://").next().unwrap_or("")
    )
}
