//! SQL source: runs the configured query against PostgreSQL, MySQL/MariaDB or
//! SQLite (URL from the environment) and streams its rows. `:since` is bound
//! as a real parameter; no value is ever spliced into the SQL text.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use futures_util::TryStreamExt;
use sqlx::{Column, Row};

use super::coerce::Cell;
use super::reader::FileError;

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

macro_rules! cell_at {
    ($row:expr, $i:expr, $decimal:expr) => {{
        let row = $row;
        let i = $i;
        // numbers before dates: SQLite would read a REAL as a julian day
        if let Ok(v) = row.try_get::<Option<String>, _>(i) {
            v.map_or(Cell::Empty, Cell::Text)
        } else if let Ok(v) = row.try_get::<Option<f64>, _>(i) {
            v.map_or(Cell::Empty, Cell::Number)
        } else if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
            v.map_or(Cell::Empty, |n| Cell::Number(n as f64))
        } else if let Ok(v) = row.try_get::<Option<i32>, _>(i) {
            v.map_or(Cell::Empty, |n| Cell::Number(f64::from(n)))
        } else if let Some(c) = $decimal(row, i) {
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

fn pg_decimal(row: &sqlx::postgres::PgRow, i: usize) -> Option<Cell> {
    row.try_get::<Option<rust_decimal::Decimal>, _>(i)
        .ok()
        .map(|v| v.map_or(Cell::Empty, |d| Cell::Text(d.to_string())))
}

fn mysql_decimal(row: &sqlx::mysql::MySqlRow, i: usize) -> Option<Cell> {
    row.try_get::<Option<rust_decimal::Decimal>, _>(i)
        .ok()
        .map(|v| v.map_or(Cell::Empty, |d| Cell::Text(d.to_string())))
}

fn no_decimal(_: &sqlx::sqlite::SqliteRow, _: usize) -> Option<Cell> {
    None
}

/// Runs `query` and calls `on_row(position, column names, cells)` per result
/// row (positions 1-based); whatever batch it returns is sent to `tx` before
/// the next row is fetched, so memory holds one batch at a time.
pub async fn fetch<B>(
    url: &str,
    query: &str,
    since: NaiveDate,
    tx: &tokio::sync::mpsc::Sender<B>,
    mut on_row: impl FnMut(u64, &[String], Vec<Cell>) -> Result<Option<B>, FileError>,
) -> Result<(), FileError> {
    let err = |e: sqlx::Error| FileError::CannotOpen(e.to_string());
    macro_rules! run {
        ($pool:ty, $ph:expr, $decimal:expr) => {{
            let pool = <$pool>::connect(url).await.map_err(err)?;
            let (sql, n) = bind_since(query, $ph);
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for _ in 0..n {
                q = q.bind(since);
            }
            let mut rows = q.fetch(&pool);
            let mut names: Vec<String> = Vec::new();
            let mut pos = 0u64;
            while let Some(row) = rows.try_next().await.map_err(err)? {
                if names.is_empty() {
                    names = row.columns().iter().map(|c| c.name().to_string()).collect();
                }
                pos += 1;
                let cells = (0..row.len())
                    .map(|i| cell_at!(&row, i, $decimal))
                    .collect();
                if let Some(batch) = on_row(pos, &names, cells)? {
                    tx.send(batch).await.map_err(|_| FileError::Cancelled)?;
                }
            }
            drop(rows);
            pool.close().await;
            Ok(())
        }};
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        run!(sqlx::PgPool, |n| format!("${n}"), pg_decimal)
    } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
        run!(sqlx::MySqlPool, |_| "?".to_string(), mysql_decimal)
    } else if url.starts_with("sqlite:") {
        run!(sqlx::SqlitePool, |_| "?".to_string(), no_decimal)
    } else {
        Err(FileError::CannotOpen(format!(
            "unsupported URL scheme in `{}`",
            url.split("://").next().unwrap_or("")
        )))
    }
}

/// The names of the columns `query` returns, from preparing it on the
/// source database without running it: what `check` matches the source's
/// mapping against, with no load on a production ERP.
pub async fn result_columns(url: &str, query: &str) -> Result<Vec<String>, String> {
    use sqlx::{Executor, SqlSafeStr, Statement};
    let err = |e: sqlx::Error| e.to_string();
    macro_rules! prepare {
        ($connect:expr, $ph:expr) => {{
            let pool = $connect.await.map_err(err)?;
            let (sql, _) = bind_since(query, $ph);
            let prepared = (&pool)
                .prepare(sqlx::AssertSqlSafe(sql).into_sql_str())
                .await
                .map(|statement| {
                    statement
                        .columns()
                        .iter()
                        .map(|c| c.name().to_string())
                        .collect()
                })
                .map_err(err);
            pool.close().await;
            prepared
        }};
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        prepare!(sqlx::PgPool::connect(url), |n| format!("${n}"))
    } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
        prepare!(sqlx::MySqlPool::connect(url), |_| "?".to_string())
    } else if url.starts_with("sqlite:") {
        let options = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(url)
            .map_err(err)?
            .read_only(true);
        prepare!(sqlx::SqlitePool::connect_with(options), |_| "?".to_string())
    } else {
        Err(format!(
            "unsupported URL scheme in `{}`",
            url.split("://").next().unwrap_or("")
        ))
    }
}

/// Connects to a source database and closes again: what `check` calls to
/// prove a SQL source is reachable without running its query.
pub async fn ping(url: &str) -> Result<(), String> {
    let err = |e: sqlx::Error| e.to_string();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        sqlx::PgPool::connect(url).await.map_err(err)?.close().await;
    } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
        sqlx::MySqlPool::connect(url)
            .await
            .map_err(err)?
            .close()
            .await;
    } else if url.starts_with("sqlite:") {
        let options = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(url)
            .map_err(err)?
            .read_only(true);
        sqlx::SqlitePool::connect_with(options)
            .await
            .map_err(err)?
            .close()
            .await;
    } else {
        return Err(format!(
            "unsupported URL scheme in `{}`",
            url.split("://").next().unwrap_or("")
        ));
    }
    Ok(())
}
