//! Warehouse: where canonical rows, runs, snapshots and the delivery ledger
//! live. `Store` is the storage contract; each backend keeps all of its SQL in
//! one place (`sqlite/` for the embedded default, `postgres.rs` for the
//! warehouse several instances share). sqlx's `Any` driver is deliberately not
//! used: it carries no dates or decimals and emits placeholders PostgreSQL
//! rejects.

/// A query of `runs` that selects the columns each backend's `run_row`
/// reads, in its order, followed by `rest` (which uses that backend's
/// placeholders). Defined before the backends so both can use it.
macro_rules! select_runs {
    ($rest:literal) => {
        concat!(
            "SELECT run_id, job, as_of, started_at, finished_at, status, counts, rules, quality_run \
             FROM runs ",
            $rest
        )
    };
}

mod postgres;
mod sqlite;

use std::collections::{BTreeMap, HashMap, HashSet};

use async_trait::async_trait;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use crate::config::{Dataset, VisitsConfig};
use crate::ingest::record::{Located, Masters, Reason, Rejection};
use crate::ingest::FileNote;
use crate::metrics::changes::Previous;
use crate::metrics::tiers::TierResult;
use crate::metrics::{Inputs, PeriodRange, VisitDay};

pub type Result<T> = std::result::Result<T, WarehouseError>;

/// Tier names of a run's recorded rules (`runs.rules`, JSON of
/// `metrics::Rules`). Read by path rather than as `Rules`, so that rules
/// recorded by an older version, with fewer keys, still name their tiers;
/// empty when the record has none.
fn tier_names_of(rules_json: &str) -> Vec<String> {
    serde_json::from_str::<serde_json::Value>(rules_json)
        .ok()
        .and_then(|v| {
            v.pointer("/tiering/tiers")?
                .as_array()?
                .iter()
                .map(|t| t.get("name")?.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
        })
        .unwrap_or_default()
}

#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    #[error("warehouse `{url}`: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("warehouse migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("warehouse query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error("warehouse url `{0}` is not supported (use sqlite://… or postgres://…)")]
    Unsupported(String),
    #[error("SQLite warehouse `{path}`: {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
    #[error("warehouse url `{0}`: an in-memory SQLite warehouse is not supported (use a file)")]
    InMemory(String),
    #[error("a warehouse worker stopped: {0}")]
    Worker(String),
    #[error("stored snapshot is unreadable: {0}")]
    Snapshot(#[from] serde_json::Error),
}

/// What was stored for a file the last time it loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileState {
    pub sha256: String,
    pub unknown_ids: u64,
    pub rows_rejected: u64,
}

impl FileState {
    /// A `(file, sha256, unknown_ids, rows_rejected)` row of `ingested_files`.
    pub(crate) fn stored(
        (file, sha256, unknown_ids, rows_rejected): (String, String, i64, i64),
    ) -> (String, Self) {
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        let state = Self {
            sha256,
            unknown_ids: count(unknown_ids),
            rows_rejected: count(rows_rejected),
        };
        (file, state)
    }
}

/// Which stored rows a load replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replace {
    /// the rows that came from this file
    File,
    /// a SQL source: its rows dated on or after `since` (sales) …
    SourceSince(NaiveDate),
    /// … or all of its rows (other datasets)
    Source,
}

/// Datasets whose rows carry no `(source, file)` index: each load records
/// in `ingested_files` the lowest and highest row id it inserted, and a
/// changed file's old rows are found by an id range scan (both backends;
/// docs/DECISIONS.md).
fn ranged(dataset: Dataset) -> bool {
    matches!(
        dataset,
        Dataset::Sales | Dataset::Visits | Dataset::Satisfaction
    )
}

/// Where the stored rows of a source (or of one of its files) lie.
enum Rows {
    /// never loaded: nothing to delete
    None,
    /// every load recorded its range; the union lies within this one
    Within(i64, i64),
    /// loaded before ranges were recorded: only a full scan finds them
    Anywhere,
}

impl Rows {
    /// From `COUNT(*), COUNT(first_row_id), MIN(first_row_id),
    /// MAX(last_row_id)` over the matching `ingested_files` rows.
    fn from_loads(loads: i64, ranged: i64, first: Option<i64>, last: Option<i64>) -> Self {
        match (first, last) {
            _ if loads == 0 => Self::None,
            (Some(first), Some(last)) if ranged == loads => Self::Within(first, last),
            _ => Self::Anywhere,
        }
    }
}

/// The range a load records: an empty load, or a dataset without ranges,
/// records the empty range `1..=0`.
fn recorded_range(range: Option<(i64, i64)>) -> (i64, i64) {
    range.unwrap_or((1, 0))
}

#[derive(Debug, Clone)]
pub struct FileLoad {
    pub source: String,
    pub file: String,
    pub sheet: String,
    pub dataset: Dataset,
    pub sha256: String,
    pub replace: Replace,
    /// earlier loads of the same source whose rows this load takes over:
    /// the names a renamed file had, or the loads of another kind (files of
    /// a source now read by SQL, or the reverse). Their rows and their
    /// `ingested_files` records go in this load's transaction.
    pub retire: Vec<String>,
    pub max_reject_ratio: f64,
}

impl FileLoad {
    /// More than `max_reject_ratio` of the file's non-empty data rows rejected.
    pub fn ratio_exceeded(&self, data_rows: u64, rejected: u64) -> bool {
        data_rows > 0 && rejected as f64 > self.max_reject_ratio * data_rows as f64
    }
}

/// What a parser sends to the writer of one file.
#[derive(Debug)]
pub enum Batch {
    Rows(Vec<Located>),
    /// the file was read to its end: `data_rows` non-empty rows, of which
    /// `rejected` were refused (`unknown_ids` of them for an unknown id)
    End {
        data_rows: u64,
        rejected: u64,
        unknown_ids: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadOutcome {
    Loaded {
        rows: u64,
    },
    /// too many rejects: rolled back, nothing from the file stored
    RatioExceeded {
        rejected: u64,
        data_rows: u64,
    },
    /// the parser stopped before the end: rolled back
    Aborted,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRow {
    pub run_id: i64,
    pub job: String,
    pub as_of: NaiveDate,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub status: String,
    pub counts: String,
    pub rules: String,
    /// the run whose data quality this run has: itself once its ingest
    /// saved it, the ingest run it showed when it ran none, `None` when
    /// there was none (or the run predates the record)
    pub quality_run: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryRow {
    pub job: String,
    pub as_of: NaiveDate,
    pub recipient: String,
    pub region: String,
    pub run_id: i64,
    pub status: String,
    pub attempts: i64,
    pub message_id: Option<String>,
    pub error: Option<String>,
    pub updated_at: String,
    /// id of the spooled message (`out/spool/<id>.eml` + `.json`) while failed
    pub spool: Option<String>,
}

#[async_trait]
pub trait Store: Send + Sync {
    /// Every load of `source` on record, by file name.
    async fn stored_files(&self, source: &str) -> Result<BTreeMap<String, FileState>>;
    /// Loads one file in one transaction, consuming batches until `End`.
    async fn load_file(&self, load: FileLoad, rx: mpsc::Receiver<Batch>) -> Result<LoadOutcome>;
    /// Latest invoice date stored from a source.
    async fn latest_invoice_date(&self, source: &str) -> Result<Option<NaiveDate>>;
    async fn masters(&self) -> Result<Masters>;
    /// Regions named by any customer or rep master row.
    async fn regions(&self) -> Result<std::collections::BTreeSet<String>>;

    async fn start_run(&self, job: &str, as_of: NaiveDate, rules: &str) -> Result<i64>;
    async fn finish_run(
        &self,
        run_id: i64,
        status: &str,
        counts: &str,
        error: Option<&str>,
    ) -> Result<()>;
    /// Marks the runs of `job` still recorded as running `interrupted`,
    /// returning how many. Called by a run that has just taken the job's
    /// lock: no other run of the job can be going then, so their processes
    /// stopped before they finished (killed, or their machine stopped),
    /// and a run left `running` would stand for the date forever (`serve`
    /// would not catch it up).
    async fn interrupt_runs(&self, job: &str) -> Result<u64>;
    async fn runs(&self, limit: i64) -> Result<Vec<RunRow>>;
    /// Each job's latest run for `as_of` that saved a snapshot, newest
    /// first: jobs of different periods (`mtd`, `previous_month`) may
    /// compute the same date.
    async fn snapshot_runs(&self, as_of: NaiveDate) -> Result<Vec<RunRow>>;
    /// Stores what the run's ingest found (its rejected rows and its notes
    /// on loaded files) and makes the run its own data-quality run, in one
    /// transaction.
    async fn save_quality(
        &self,
        run_id: i64,
        rejections: &[Rejection],
        notes: &[FileNote],
    ) -> Result<()>;
    async fn rejections(&self, run_id: i64) -> Result<Vec<Rejection>>;
    async fn notes(&self, run_id: i64) -> Result<Vec<FileNote>>;
    /// The latest run that saved its own data quality, among the runs
    /// before `before` (among all runs when `None`).
    async fn latest_quality_run(&self, before: Option<i64>) -> Result<Option<RunRow>>;
    /// Records that `run_id`, which ran no ingest, shows the data quality
    /// of `quality_run`.
    async fn link_quality(&self, run_id: i64, quality_run: i64) -> Result<()>;
    /// The data-quality run of the latest run for `as_of` that has one,
    /// among `job`'s runs when given.
    async fn quality_run_for(&self, as_of: NaiveDate, job: Option<&str>) -> Result<Option<i64>>;
    /// The notes on `source`'s files saved by the latest data-quality run:
    /// an unchanged file is not parsed again, but what its notes say holds.
    async fn source_notes(&self, source: &str) -> Result<Vec<FileNote>>;
    /// The row rejections recorded the last time a file was loaded: an
    /// unchanged file is skipped, but its rejected rows are still missing.
    async fn file_rejections(&self, source: &str, file: &str) -> Result<Vec<Rejection>>;

    async fn metric_inputs(
        &self,
        as_of: NaiveDate,
        period: &PeriodRange,
        window_months: u32,
        visits: &VisitsConfig,
    ) -> Result<Inputs>;
    async fn save_snapshot(
        &self,
        run_id: i64,
        as_of: NaiveDate,
        tiers: &[TierResult],
        docs: &[(&str, String)],
    ) -> Result<()>;
    /// Removes, in one transaction, the snapshots (tiers and documents) of
    /// the runs before `run_id` that no export or comparison reads any
    /// more: those of `run_id`'s own job and as-of date, which `run_id`
    /// supersedes, and, with `before`, those of every run dated before it.
    /// `run_id`'s own are kept whatever its date. Returns how many runs'
    /// snapshots went.
    async fn prune_snapshots(&self, run_id: i64, before: Option<NaiveDate>) -> Result<u64>;
    async fn tiers_of(&self, run_id: i64) -> Result<Vec<TierResult>>;
    /// The run of the latest tier snapshot dated before `as_of`.
    async fn previous_snapshot_run(&self, as_of: NaiveDate) -> Result<Option<RunRow>>;
    /// The latest tier snapshot dated before `as_of`, with the tier names
    /// of the rules its run recorded.
    async fn previous_tiers(&self, as_of: NaiveDate) -> Result<Option<Previous>> {
        let Some(run) = self.previous_snapshot_run(as_of).await? else {
            return Ok(None);
        };
        Ok(Some(Previous {
            tiers: self.tiers_of(run.run_id).await?,
            tier_names: tier_names_of(&run.rules),
        }))
    }
    async fn snapshot_doc(&self, run_id: i64, kind: &str) -> Result<Option<String>>;

    async fn delivery(
        &self,
        job: &str,
        as_of: NaiveDate,
        recipient: &str,
        region: &str,
    ) -> Result<Option<DeliveryRow>>;
    async fn record_delivery(&self, row: &DeliveryRow) -> Result<()>;
    async fn deliveries(&self, failed_only: bool) -> Result<Vec<DeliveryRow>>;

    /// Takes the job's lock so that a job never runs twice at once. A lock
    /// taken before `stale_before` (a UTC timestamp as `now()` writes it) is
    /// taken over: its holder died without releasing it.
    async fn try_lock(&self, job: &str, holder: &str, stale_before: &str) -> Result<bool>;
    async fn unlock(&self, job: &str, holder: &str) -> Result<()>;
    /// Marks the lock as still held (the heartbeat of a running job).
    async fn refresh_lock(&self, job: &str, holder: &str) -> Result<()>;
    /// Who holds the job's lock, if anyone.
    async fn lock_holder(&self, job: &str) -> Result<Option<String>>;
    /// Claims one scheduled fire of `job` (`fire`: its name, the local wall
    /// time and zone `schedule` gives it) for
    /// `holder`: `None` when this call claimed it, else who did first, so
    /// that instances sharing the warehouse run each fire once. A claim
    /// prunes the job's claims older than `KEEP_FIRE_CLAIMS_DAYS`.
    async fn claim_fire(&self, job: &str, fire: &str, holder: &str) -> Result<Option<String>>;
    /// Whether processes on other machines may use this warehouse (so a lock
    /// can only be judged dead by its age).
    fn is_shared(&self) -> bool {
        false
    }
    /// The same warehouse as an owned handle (sharing its connections),
    /// for a task that outlives this borrow: the lock heartbeat, which runs
    /// on its own task so that a run busy computing still vouches for its
    /// lock. `None` where locks are not judged by age (`is_shared`).
    fn detached(&self) -> Option<Box<dyn Store>> {
        None
    }
}

/// Opens the warehouse a URL names, creating and migrating it as needed.
pub async fn open(url: &str) -> Result<Box<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Box::new(SqliteStore::open(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Box::new(PgStore::open(url).await?))
    } else {
        Err(WarehouseError::Unsupported(redact(url)))
    }
}

/// A URL fit for messages and logs: any password is replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_string(),
    }
}

/// sqlx logs a statement that runs over a second at WARN. A nightly job's
/// long statements are its work, not a fault: an ERP pull streams for as
/// long as the loads take (sqlx's clock includes the time salesbatch spends
/// on the rows), a file's replacement deletes and inserts millions of rows.
/// A WARN every night for them would teach operators to ignore WARN, so
/// they are logged at DEBUG, beside every statement sqlx logs there.
pub(crate) fn quiet_slow_statements<O: sqlx::ConnectOptions>(options: O) -> O {
    options.log_slow_statements(log::LevelFilter::Debug, std::time::Duration::from_secs(1))
}

/// Tier snapshot rows per INSERT statement.
pub(crate) const SNAPSHOT_CHUNK: usize = 1_000;

/// Turns (customer, day, visit type, visits) groups into counted visits per
/// customer and day: blank types take `default_type`; only `counted_types`.
pub(crate) fn fold_visit_days(
    groups: Vec<(String, NaiveDate, Option<String>, u64)>,
    visits: &VisitsConfig,
) -> Vec<VisitDay> {
    let counted: HashSet<&str> = visits.counted_types.iter().map(|s| s.trim()).collect();
    let mut days: HashMap<(String, NaiveDate), u32> = HashMap::new();
    for (customer, date, kind, n) in groups {
        let kind = kind
            .as_deref()
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .unwrap_or(visits.default_type.trim());
        if counted.contains(kind) {
            *days.entry((customer, date)).or_default() += u32::try_from(n).unwrap_or(u32::MAX);
        }
    }
    days.into_iter()
        .map(|((customer_id, date), visits)| VisitDay {
            customer_id,
            date,
            visits,
        })
        .collect()
}

/// How the warehouse writes instants (UTC); as text they sort in time order.
pub const TIMESTAMP_FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";

pub fn timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format(TIMESTAMP_FORMAT).to_string()
}

/// A timestamp as [`timestamp`] writes it, back to UTC.
pub fn parse_timestamp(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::NaiveDateTime::parse_from_str(s, TIMESTAMP_FORMAT)
        .ok()
        .map(|t| t.and_utc())
}

/// A stored (UTC) timestamp as a person in `tz` reads it, in `format`;
/// the stored text as it is when it does not parse.
pub fn local_timestamp(stored: &str, tz: chrono_tz::Tz, format: &str) -> String {
    parse_timestamp(stored).map_or_else(
        || stored.to_string(),
        |t| t.with_timezone(&tz).format(format).to_string(),
    )
}

pub fn now() -> String {
    timestamp(chrono::Utc::now())
}

/// Days a fire's claim is kept (`Store::claim_fire`). A claim only has to
/// outlive the ticks of its own fire, seconds apart (an hour the night the
/// clocks go back); the rest is for an operator asking which instance took
/// a recent fire.
pub const KEEP_FIRE_CLAIMS_DAYS: i64 = 90;

/// The error an `interrupted` run is stored with (`Store::interrupt_runs`).
pub const RUN_INTERRUPTED: &str =
    "the run stopped before it finished: its process was killed or its machine stopped";

/// Claims made before this are pruned when a job claims its next fire.
pub fn fire_claims_cutoff() -> String {
    timestamp(chrono::Utc::now() - chrono::Duration::days(KEEP_FIRE_CLAIMS_DAYS))
}

/// The reason stored as text back to its variant.
pub(crate) fn reason_from(s: &str) -> Reason {
    Reason::ALL
        .into_iter()
        .find(|r| r.as_str() == s)
        .unwrap_or(Reason::CannotOpenFile)
}
