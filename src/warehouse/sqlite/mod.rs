//! The SQLite backend: every SQL statement the embedded warehouse runs. The
//! two hot paths, loading a file (`load`) and reading the metric inputs
//! (`inputs`), step statements in-thread with rusqlite; the rest goes through
//! sqlx, which also owns the migrations.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::NaiveDate;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite};
use tokio::sync::mpsc;

use super::{
    now, reason_from, Batch, DeliveryRow, FileLoad, FileState, LoadOutcome, Result, RunRow, Store,
    WarehouseError,
};
use crate::config::VisitsConfig;
use crate::ingest::record::{Masters, Rejection};
use crate::ingest::FileNote;
use crate::metrics::tiers::TierResult;
use crate::metrics::{Inputs, PeriodRange};

/// Rows per multi-row INSERT: 13 binds × 1,000 stays far below SQLite's 32,766.
const CHUNK: usize = 1_000;

/// How long a statement waits for another connection's write lock before
/// it fails (`database is locked`). Loads take turns (`jobs::IngestTurn`),
/// but a run's other writes (its run row, job lock, snapshot) still wait
/// on whatever file another run is loading, and one file's transaction
/// lasts as long as its parse: over half a minute for a 20-million-line
/// CSV export at the 557,000 rows/s docs/PERFORMANCE.md measured. sqlx's
/// 5 s, or the 30 s used before, failed a run beside such a load.
const BUSY_TIMEOUT: Duration = Duration::from_secs(300);

mod inputs;
mod load;

/// Waits for, and holds until dropped, the exclusive lock on
/// `<database>-open.lock` (the file stays: deleting a lock file races).
async fn open_lock(database: &std::path::Path) -> std::io::Result<std::fs::File> {
    let mut lock_path = database.as_os_str().to_owned();
    lock_path.push("-open.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)?;
    tokio::task::spawn_blocking(move || lock.lock().map(|()| lock))
        .await
        .map_err(std::io::Error::other)?
}

pub struct SqliteStore {
    pool: SqlitePool,
    /// the database file, for the in-thread readers of [`inputs`]
    path: std::path::PathBuf,
}

impl SqliteStore {
    pub async fn open(url: &str) -> Result<Self> {
        let connect = |source| WarehouseError::Connect {
            url: super::redact(url),
            source,
        };
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .map(|p| p.split('?').next().unwrap_or(p))
            .filter(|p| !p.is_empty() && !p.starts_with(":memory:"))
            .ok_or_else(|| WarehouseError::InMemory(super::redact(url)))?;
        if let Some(parent) = std::path::Path::new(path).parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent).map_err(|e| connect(sqlx::Error::Io(e)))?;
            }
        }
        let path = std::path::PathBuf::from(path);
        let options =
            super::quiet_slow_statements(SqliteConnectOptions::from_str(url).map_err(connect)?)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(BUSY_TIMEOUT)
                // index maintenance on millions of rows thrashes the default 2 MB cache
                .pragma("cache_size", "-65536")
                .pragma("temp_store", "memory")
                .foreign_keys(false);
        // Processes opening the warehouse together (two `serve` instances
        // started at once, a manual run beside a starting daemon) take
        // turns. sqlx locks PostgreSQL's migrations but not SQLite's: two
        // processes both applied migration 2 and one failed (`duplicate
        // column name`), and turning a new database to WAL, which takes it
        // whole, was refused to the other (`database is locked`,
        // busy_timeout or not).
        let turn = open_lock(&path)
            .await
            .map_err(|e| connect(sqlx::Error::Io(e)))?;
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(connect)?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        drop(turn);
        Ok(Self { pool, path })
    }

    /// Runs `work` on the database file with rusqlite, on a blocking thread.
    async fn in_thread<T: Send + 'static>(
        &self,
        work: impl FnOnce(&std::path::Path) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            work(&path).map_err(|source| WarehouseError::Sqlite {
                path: path.display().to_string(),
                source,
            })
        })
        .await
        .map_err(|e| WarehouseError::Worker(e.to_string()))?
    }
}

fn parse_date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap_or(NaiveDate::MIN)
}

#[async_trait]
impl Store for SqliteStore {
    async fn stored_files(&self, source: &str) -> Result<BTreeMap<String, FileState>> {
        let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT file, sha256, unknown_ids, rows_rejected FROM ingested_files WHERE source = ?",
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
        self.in_thread(move |path| load::load_file(path, &load, &mut rx))
            .await
    }

    async fn latest_invoice_date(&self, source: &str) -> Result<Option<NaiveDate>> {
        let d: Option<String> =
            // the window index holds only SQL sources' lines (migration 0004)
            sqlx::query_scalar(
                "SELECT MAX(invoice_date) FROM sales WHERE source = ? AND substr(file, 1, 4) = 'sql:'",
            )
                .bind(source)
                .fetch_one(&self.pool)
                .await?;
        Ok(d.as_deref().map(parse_date))
    }

    async fn masters(&self) -> Result<Masters> {
        self.in_thread(inputs::masters).await
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

    async fn interrupt_runs(&self, job: &str) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE runs SET status = 'interrupted', error = ? WHERE job = ? AND status = 'running'",
        )
        .bind(super::RUN_INTERRUPTED)
        .bind(job)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn runs(&self, limit: i64) -> Result<Vec<RunRow>> {
        let rows = sqlx::query(select_runs!("ORDER BY run_id DESC LIMIT ?"))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(run_row).collect())
    }

    async fn snapshot_runs(&self, as_of: NaiveDate) -> Result<Vec<RunRow>> {
        let rows = sqlx::query(select_runs!(
            "WHERE run_id IN (SELECT MAX(run_id) FROM runs WHERE as_of = ? \
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
        let mut tx = self.pool.begin().await?;
        for chunk in rejections.chunks(CHUNK) {
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
        for chunk in notes.chunks(CHUNK) {
            let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO file_notes (run_id, source, file, sheet, note, unlisted_rejections) ",
            );
            qb.push_values(chunk, |mut b, n| {
                b.push_bind(run_id)
                    .push_bind(n.source.clone())
                    .push_bind(n.file.clone())
                    .push_bind(n.sheet.clone())
                    .push_bind(n.note.clone())
                    .push_bind(i64::try_from(n.unlisted_rejections).unwrap_or(i64::MAX));
            });
            qb.build().execute(&mut *tx).await?;
        }
        sqlx::query("UPDATE runs SET quality_run = run_id WHERE run_id = ?")
            .bind(run_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn notes(&self, run_id: i64) -> Result<Vec<FileNote>> {
        let rows = sqlx::query(
            "SELECT source, file, sheet, note, unlisted_rejections FROM file_notes WHERE run_id = ? \
             ORDER BY source, file, sheet, note",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(note_row).collect())
    }

    async fn latest_quality_run(&self, before: Option<i64>) -> Result<Option<RunRow>> {
        let row = sqlx::query(select_runs!(
            "WHERE quality_run = run_id AND run_id < ? ORDER BY run_id DESC LIMIT 1"
        ))
        .bind(before.unwrap_or(i64::MAX))
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(run_row))
    }

    async fn link_quality(&self, run_id: i64, quality_run: i64) -> Result<()> {
        sqlx::query("UPDATE runs SET quality_run = ? WHERE run_id = ?")
            .bind(quality_run)
            .bind(run_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn quality_run_for(&self, as_of: NaiveDate, job: Option<&str>) -> Result<Option<i64>> {
        let id = sqlx::query_scalar(
            "SELECT quality_run FROM runs WHERE as_of = ?1 AND quality_run IS NOT NULL \
             AND (?2 IS NULL OR job = ?2) ORDER BY run_id DESC LIMIT 1",
        )
        .bind(as_of)
        .bind(job)
        .fetch_optional(&self.pool)
        .await?;
        Ok(id)
    }

    async fn source_notes(&self, source: &str) -> Result<Vec<FileNote>> {
        let rows = sqlx::query(
            "SELECT source, file, sheet, note, unlisted_rejections FROM file_notes WHERE source = ? AND run_id = \
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
        let (period, visits) = (*period, visits.clone());
        self.in_thread(move |path| inputs::read(path, as_of, &period, window_months, &visits))
            .await
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

    async fn prune_snapshots(&self, run_id: i64, before: Option<NaiveDate>) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let doomed: Vec<i64> = sqlx::query_scalar(
            "SELECT r.run_id FROM runs r, runs this WHERE this.run_id = ?1 \
             AND r.run_id < this.run_id AND r.run_id IN (SELECT run_id FROM metric_snapshots) \
             AND ((r.job = this.job AND r.as_of = this.as_of) OR r.as_of < ?2)",
        )
        .bind(run_id)
        .bind(before)
        .fetch_all(&mut *tx)
        .await?;
        for run in &doomed {
            for sql in [
                "DELETE FROM tier_snapshots WHERE run_id = ?",
                "DELETE FROM metric_snapshots WHERE run_id = ?",
            ] {
                sqlx::query(sql).bind(run).execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok(doomed.len() as u64)
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

    async fn previous_snapshot_run(&self, as_of: NaiveDate) -> Result<Option<RunRow>> {
        let row = sqlx::query(select_runs!(
            "WHERE run_id = (SELECT run_id FROM tier_snapshots WHERE as_of < ? ORDER BY as_of DESC, run_id DESC LIMIT 1)"
        ))
        .bind(as_of)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(run_row))
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

    async fn claim_fire(&self, job: &str, fire: &str, holder: &str) -> Result<Option<String>> {
        let claimed = sqlx::query(
            "INSERT INTO job_fires (job, fire_at, holder, claimed_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (job, fire_at) DO NOTHING",
        )
        .bind(job)
        .bind(fire)
        .bind(holder)
        .bind(now())
        .execute(&self.pool)
        .await?;
        if claimed.rows_affected() == 1 {
            sqlx::query("DELETE FROM job_fires WHERE job = ? AND claimed_at < ?")
                .bind(job)
                .bind(super::fire_claims_cutoff())
                .execute(&self.pool)
                .await?;
            return Ok(None);
        }
        Ok(Some(
            sqlx::query_scalar("SELECT holder FROM job_fires WHERE job = ? AND fire_at = ?")
                .bind(job)
                .bind(fire)
                .fetch_one(&self.pool)
                .await?,
        ))
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
        quality_run: r.get(8),
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

fn note_row(r: &sqlx::sqlite::SqliteRow) -> FileNote {
    FileNote {
        source: r.get(0),
        file: r.get(1),
        sheet: r.get(2),
        note: r.get(3),
        unlisted_rejections: u64::try_from(r.get::<i64, _>(4)).unwrap_or_default(),
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
