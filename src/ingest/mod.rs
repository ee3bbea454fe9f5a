//! Ingest: reads every configured source into the warehouse, masters first.
//! Files of a source are parsed in parallel (bounded by the cores), each
//! streaming batches to a writer that loads files one at a time, in sorted
//! path order, each in its own transaction: a file is fully in or not at all.

pub mod coerce;
pub mod csv;
pub mod excel;
pub mod guard;
pub mod listing;
pub mod merges;
pub mod reader;
pub mod record;
pub mod sql;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::NaiveDate;
use indicatif::ProgressBar;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use self::coerce::{Cell, Epoch};
use self::listing::Found;
use self::reader::{FileError, Visitor};
use self::record::{Located, Mapping, Masters, MergedLoss, Reason, Rejection, RowContext, RowRuns};
use crate::config::{Dataset, Settings, SourceConfig, SourceKind};
use crate::warehouse::{Batch, FileLoad, FileState, LoadOutcome, Replace, Store};

const BATCH_ROWS: usize = 2_000;
/// `:since` on a source's first load (SPEC §4).
const EPOCH_START: NaiveDate = NaiveDate::from_ymd_opt(1900, 1, 1).expect("valid date");
/// Batches a parser may run ahead of the writer: 128,000 rows, about 30 MB
/// of records. The writer takes files in path order, so the parsers of the
/// files after the current one need room to keep both cores busy while it
/// loads; the bound keeps memory independent of file size
/// (docs/PERFORMANCE.md: 4 batches left one core idle).
const CHANNEL_BATCHES: usize = 64;

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct IngestSummary {
    pub files_loaded: u64,
    pub files_skipped: u64,
    pub files_refused: u64,
    pub rows_loaded: u64,
    /// the rejected rows listed (each file's first `LISTED_REJECTIONS`)
    /// and the file-level rejections
    pub rejections: Vec<Rejection>,
    /// what a loaded file's rows may not say on their own (see `FileNote`),
    /// and the count of each file's rejected rows past those listed
    pub notes: Vec<FileNote>,
}

impl IngestSummary {
    /// Every rejection, listed or only counted (see `rejected_rows`).
    pub fn rejected_rows(&self) -> u64 {
        rejected_rows(&self.rejections, &self.notes)
    }
}

/// Rejected rows a file lists; the rest are counted in a `FileNote`. A
/// night whose bad date format rejects a whole 2-million-line export would
/// otherwise hold every row in memory, store it, and list it in workbooks
/// that no mail server accepts (docs/DECISIONS.md: "Rejected rows are
/// listed up to a bound").
pub const LISTED_REJECTIONS: usize = 1_000;

/// The rejections `rejections` lists plus those `notes` only count.
pub fn rejected_rows(rejections: &[Rejection], notes: &[FileNote]) -> u64 {
    rejections.len() as u64 + notes.iter().map(|n| n.unlisted_rejections).sum::<u64>()
}

/// Something an operator should know of a file, which is no rejection:
/// its other sheets headed like the one read, optional values that merged
/// cells left empty, or its rejected rows past the first
/// `LISTED_REJECTIONS`. The run logs each as a WARN, and the data-quality
/// workbook lists them beside the rejections.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FileNote {
    pub source: String,
    pub file: String,
    pub sheet: String,
    pub note: String,
    /// rejected rows of the file that are counted here and listed nowhere;
    /// 0 for the other notes
    pub unlisted_rejections: u64,
}

/// What a file source's `path` matches.
#[derive(Debug, Default)]
pub struct SourceFiles {
    /// Matching files, sorted, with their names relative to the config's
    /// directory (`/`-separated): the names stored with their rows.
    pub files: Vec<(PathBuf, String)>,
    /// Paths the pattern reached but could not read: files in them may match,
    /// so the source is incomplete.
    pub unreadable: Vec<Unreadable>,
}

/// A directory the pattern had to search, or a matching entry, that could
/// not be read.
#[derive(Debug)]
pub struct Unreadable {
    /// Relative to the config's directory, as in [`SourceFiles::files`].
    pub path: String,
    pub directory: bool,
    pub error: String,
}

/// The files of a file source (none for a `sql` source).
pub fn source_files(settings: &Settings, source: &SourceConfig) -> SourceFiles {
    let Some(pattern) = &source.path else {
        return SourceFiles::default();
    };
    let full = settings.base_dir.join(pattern);
    let relative = |p: &Path| {
        let rel = p.strip_prefix(&settings.base_dir).unwrap_or(p);
        rel.components()
            .map(|c| listing::shown(c.as_os_str()).into_owned())
            .collect::<Vec<_>>()
            .join("/")
    };
    let mut found = SourceFiles::default();
    let mut files = Vec::new();
    for entry in listing::matching(&full) {
        match entry {
            Found::File(p) if is_companion_file(&p) => {}
            Found::File(p) => files.push(p),
            // `is_file()` would hide the error: an entry of a directory that
            // may be listed but not entered (mode r--), or a dangling link,
            // is a file of the source that cannot be read
            Found::Unreadable {
                path,
                directory,
                error,
            } => found.unreadable.push(Unreadable {
                path: relative(&path),
                directory,
                error: error.to_string(),
            }),
        }
    }
    files.sort();
    found.files = files
        .into_iter()
        .map(|p| {
            let name = relative(&p);
            (p, name)
        })
        .collect();
    found
}

/// Files named like a workbook that are none: `~$name.xlsx`, the owner file
/// Excel and WPS keep beside a workbook while it is open, and `._name.xlsx`,
/// the AppleDouble companion a Mac writes on a network share. Refusing them
/// would degrade every run made while a colleague has a file open. (Hidden
/// files in general still match `*`, as they do in glob.)
fn is_companion_file(path: &Path) -> bool {
    path.file_name().is_some_and(|n| {
        let n = n.to_string_lossy();
        n.starts_with("~$") || n.starts_with("._")
    })
}

/// What a file's metadata says of its content. A file whose stamp moved
/// between the hash and the end of its parse was being written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            len: meta.len(),
            modified: meta.modified().ok(),
        }
    }
}

/// The content hash of a file, and its stamp from before it was read.
fn sha256_file(path: &Path) -> std::io::Result<(String, Stamp)> {
    let mut f = std::fs::File::open(path)?;
    let stamp = Stamp::of(&f.metadata()?);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok((hex::encode(hasher.finalize()), stamp))
}

fn file_rejection(
    source: &str,
    file: &str,
    sheet: &str,
    reason: Reason,
    column: String,
    detail: String,
) -> Rejection {
    Rejection {
        source: source.to_string(),
        file: file.to_string(),
        sheet: sheet.to_string(),
        row: 0,
        cell: String::new(),
        column,
        value: String::new(),
        reason,
        detail,
    }
}

/// Turns rows into records and sends them to the writer in batches.
struct Pipeline {
    source: SourceConfig,
    file: String,
    sheet: String,
    epoch: Epoch,
    masters: Arc<Masters>,
    mapping: Option<Mapping>,
    addresses: bool,
    tx: mpsc::Sender<Batch>,
    /// told the sheet once it is chosen, so the writer stores it with the rows
    chosen_sheet: Option<oneshot::Sender<String>>,
    batch: Vec<Located>,
    data_rows: u64,
    rejected: u64,
    unknown_ids: u64,
    rejections: Vec<Rejection>,
    /// the other sheets headed like the one read (see `Visitor::other_sheet`)
    alike_sheets: Vec<String>,
    /// the 1-based rows that reached the row check, for counting merged
    /// blocks' rows (see `record::merged_optional_cells`)
    row_runs: RowRuns,
    /// the 1-based rows rejected, listed or not (see `LISTED_REJECTIONS`),
    /// which merged blocks' rows that loaded leave out; bounded as
    /// `row_runs` is, so past `RowRuns::MAX` separate runs of rejected rows
    /// the note undercounts rather than the memory growing
    rejected_runs: RowRuns,
    /// whether a loaded row had a mapped optional cell empty
    empty_optional: bool,
}

impl Pipeline {
    fn new(
        source: SourceConfig,
        file: String,
        masters: Arc<Masters>,
        addresses: bool,
        tx: mpsc::Sender<Batch>,
    ) -> Self {
        Self {
            source,
            file,
            sheet: String::new(),
            epoch: Epoch::E1900,
            masters,
            mapping: None,
            addresses,
            tx,
            chosen_sheet: None,
            batch: Vec::with_capacity(BATCH_ROWS),
            data_rows: 0,
            rejected: 0,
            unknown_ids: 0,
            rejections: Vec::new(),
            alike_sheets: Vec::new(),
            row_runs: RowRuns::default(),
            rejected_runs: RowRuns::default(),
            empty_optional: false,
        }
    }

    /// Rejected rows counted but not kept (see `LISTED_REJECTIONS`): one
    /// rejection per rejected row, so the rest of `rejected`.
    fn unlisted(&self) -> u64 {
        self.rejected - self.rejections.len() as u64
    }

    fn flush(&mut self) -> Result<(), FileError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let rows = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH_ROWS));
        self.tx
            .blocking_send(Batch::Rows(rows))
            .map_err(|_| FileError::Cancelled)
    }

    /// Classifies one data row: a record joins the batch, a reject is kept.
    fn accept(&mut self, row: u64, cells: &[Cell]) {
        let Some(mapping) = &self.mapping else { return };
        self.data_rows += 1;
        self.row_runs.push(row);
        let ctx = RowContext {
            source: &self.source.name,
            file: &self.file,
            sheet: &self.sheet,
            epoch: self.epoch,
            date_format: self.source.date_format.as_deref(),
            masters: &self.masters,
            addresses: self.addresses,
        };
        match record::to_record(mapping, cells, row, &ctx) {
            Ok(located) => {
                // once true, no later row needs the test; only a
                // workbook has merged cells to explain it
                if !self.empty_optional && self.source.kind == SourceKind::Excel {
                    self.empty_optional = mapping.has_empty_optional(cells);
                }
                self.batch.push(located);
            }
            Err(rejection) => {
                self.rejected += 1;
                self.rejected_runs.push(row);
                if matches!(
                    rejection.reason,
                    Reason::UnknownCustomerId | Reason::UnknownRepId
                ) {
                    self.unknown_ids += 1;
                }
                if self.rejections.len() < LISTED_REJECTIONS {
                    self.rejections.push(*rejection);
                }
            }
        }
    }

    fn set_header(&mut self, header: &[String]) -> Result<usize, FileError> {
        let mapping = Mapping::from_header(&self.source, header)?;
        let max = mapping.max_column();
        self.mapping = Some(mapping);
        Ok(max)
    }
}

impl Visitor for Pipeline {
    fn sheet(&mut self, name: &str) {
        self.sheet = name.to_string();
    }

    fn header(&mut self, sheet: &str, epoch: Epoch, header: &[String]) -> Result<usize, FileError> {
        self.sheet = sheet.to_string();
        self.epoch = epoch;
        if let Some(chosen) = self.chosen_sheet.take() {
            // the writer may have stopped waiting: the run is shutting down
            let _ = chosen.send(sheet.to_string());
        }
        self.set_header(header)
    }

    fn row(&mut self, row: u64, cells: &[Cell]) -> Result<(), FileError> {
        if let Some(mapping) = &self.mapping {
            mapping.calculated(cells, row)?;
        }
        self.accept(row, cells);
        if self.batch.len() >= BATCH_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    fn other_sheet(&mut self, name: &str, header: &[String]) {
        if heads_every_mapped_column(&self.source, header) {
            self.alike_sheets.push(name.to_string());
        }
    }
}

/// Whether `header` heads every column the source maps: a sheet of the
/// same table (the next month's, say), which a source with no `sheet` set
/// does not read (SPEC §3: the first sheet).
fn heads_every_mapped_column(source: &SourceConfig, header: &[String]) -> bool {
    !header.is_empty() && Mapping::from_header(source, header).is_ok()
}

/// What `check` and the run say of `alike` sheets, which a workbook holds
/// besides the `read` one, with the same headers.
fn unread_sheets_message(read: &str, alike: &[String]) -> String {
    let (are, example, whose) = match alike {
        [one] => ("is", toml_escaped(one), "if its rows belong"),
        _ => ("are", "…".to_string(), "for each of them whose rows belong"),
    };
    format!(
        "{} {are} headed like `{read}` but not read: a source without `sheet` reads the first \
         sheet only; add a source with `sheet = \"{example}\"` {whose} in the warehouse",
        sheets_named(alike)
    )
}

/// ``sheet `A` `` or ``sheets `A` and `B` ``.
fn sheets_named(sheets: &[String]) -> String {
    let names: Vec<String> = sheets.iter().map(|s| format!("`{s}`")).collect();
    let plural = if names.len() == 1 { "" } else { "s" };
    format!("sheet{plural} {}", and_list(&names))
}

struct Parsed {
    sheet: String,
    result: Result<(), FileError>,
    rejections: Vec<Rejection>,
    /// rejected rows past those in `rejections`
    unlisted: u64,
    /// see `Pipeline::alike_sheets`
    alike_sheets: Vec<String>,
    /// what merged cells emptied in optional columns of rows that loaded
    merged_losses: Vec<MergedLoss>,
}

/// Reads one file of a file source (`csv` or `excel`) into `visitor` with
/// the source's sheet, header row and encoding.
pub fn read_file(
    path: &Path,
    source: &SourceConfig,
    visitor: &mut dyn Visitor,
) -> Result<(), FileError> {
    match source.kind {
        SourceKind::Csv => csv::read(
            path,
            source.encoding.unwrap_or_default(),
            source.delimiter,
            source.header_row,
            visitor,
        ),
        _ => excel::read(path, source.sheet.as_deref(), source.header_row, visitor).map(|_| ()),
    }
}

/// `read_file` of a file of `size` bytes, refused when over `max_bytes`,
/// with a parser panic turned into a refusal: a parser bug on a hostile
/// file must not take the run (or `check`) down with it.
fn read_guarded(
    path: &Path,
    size: u64,
    max_bytes: u64,
    source: &SourceConfig,
    visitor: &mut dyn Visitor,
) -> Result<(), FileError> {
    if size > max_bytes {
        return Err(FileError::CannotOpen(format!(
            "file is {} MiB, over max_file_mb = {}",
            size >> 20,
            max_bytes >> 20
        )));
    }
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        read_file(path, source, visitor)
    }))
    .unwrap_or_else(|_| {
        Err(FileError::CannotOpen(
            "the spreadsheet parser failed on this file".into(),
        ))
    })
}

/// Reads the merged cells of an excel file's sheet when they explain
/// something: a `missing required field` (see
/// `record::explain_merged_cells`) or an empty optional cell of a row that
/// loaded (see `record::merged_optional_cells`). Clean files pay nothing;
/// an xlsx lists its merges after its cells, so this inflates the sheet
/// again (see `merges`). The merges only explain what was already decided: a workbook
/// whose merges cannot be read (or whose reading panics) keeps its
/// rejections and load as they are.
fn explain_merged_cells(path: &Path, p: &mut Pipeline) -> Vec<MergedLoss> {
    let required = p
        .rejections
        .iter()
        .any(|r| r.reason == Reason::MissingRequiredField);
    if !required && !p.empty_optional {
        return Vec::new();
    }
    let merged = std::panic::catch_unwind(|| excel::merged_cells(path, &p.sheet));
    let Ok(Ok(merged)) = merged else {
        return Vec::new();
    };
    if merged.is_empty() {
        return Vec::new();
    }
    if required {
        record::explain_merged_cells(&mut p.rejections, &merged);
    }
    match &p.mapping {
        Some(mapping) if p.empty_optional => {
            record::merged_optional_cells(mapping, &merged, &p.row_runs, &p.rejected_runs)
        }
        _ => Vec::new(),
    }
}

/// What the run says of `losses` (see `record::merged_optional_cells`).
fn merged_losses_message(losses: &[MergedLoss]) -> String {
    const SHOWN: usize = 5;
    let parts: Vec<String> = losses
        .iter()
        .map(|loss| {
            let mut blocks: Vec<String> = loss.blocks.iter().take(SHOWN).cloned().collect();
            if loss.blocks.len() > SHOWN {
                blocks.push(format!("{} more", loss.blocks.len() - SHOWN));
            }
            format!(
                "{} {} with no `{}`: column `{}` is merged in {}",
                loss.rows,
                if loss.rows == 1 {
                    "row loads"
                } else {
                    "rows load"
                },
                loss.field,
                loss.header,
                and_list(&blocks)
            )
        })
        .collect();
    format!(
        "{}; only the first cell of merged cells holds their value: {}",
        parts.join("; "),
        record::UNMERGE
    )
}

/// A file to parse, as listed and planned.
struct ParseFile {
    path: PathBuf,
    name: String,
    /// as the file was when its hash was taken
    stamp: Stamp,
    /// the file whose content this one repeats (see `sort_out_copies`)
    copy_of: Option<String>,
}

/// Parses one file on a blocking thread, sending the sheet it reads to
/// `sheet` once its header is found, then batches and finally `End`.
fn parse_file(
    file: ParseFile,
    source: SourceConfig,
    masters: Arc<Masters>,
    max_bytes: u64,
    tx: mpsc::Sender<Batch>,
    sheet: oneshot::Sender<String>,
) -> Parsed {
    let ParseFile {
        path,
        name,
        stamp,
        copy_of,
    } = file;
    let path = path.as_path();
    let mut p = Pipeline::new(source, name, masters, true, tx);
    p.chosen_sheet = Some(sheet);
    let src = p.source.clone();
    let result = read_guarded(path, stamp.len, max_bytes, &src, &mut p);
    // a file still being copied into the inbox: what was read is not what
    // was hashed, and likely not all of it
    let result = result.and_then(|()| match std::fs::metadata(path) {
        Ok(meta) if Stamp::of(&meta) == stamp => Ok(()),
        _ => Err(FileError::CannotOpen(
            "the file changed while it was read (is it still being copied?); \
                 it loads once it stays unchanged"
                .into(),
        )),
    });
    let result = result.and_then(|()| match copy_of {
        Some(holder) if p.data_rows > 0 => Err(FileError::CannotOpen(format!(
            "the same content as `{holder}`, which this source already reads; \
             loading a copy would count its rows twice"
        ))),
        _ => Ok(()),
    });
    let result = result.and_then(|()| p.flush()).and_then(|()| {
        p.tx.blocking_send(Batch::End {
            data_rows: p.data_rows,
            rejected: p.rejected,
            unknown_ids: p.unknown_ids,
        })
        .map_err(|_| FileError::Cancelled)
    });
    let merged_losses = if result.is_ok() && src.kind == SourceKind::Excel {
        explain_merged_cells(path, &mut p)
    } else {
        Vec::new()
    };
    let unlisted = p.unlisted();
    Parsed {
        sheet: p.sheet,
        result,
        unlisted,
        rejections: p.rejections,
        alike_sheets: p.alike_sheets,
        merged_losses,
    }
}

/// Runs the ingest step over every source, datasets in SPEC load order.
pub async fn run(settings: &Settings, store: &dyn Store) -> anyhow::Result<IngestSummary> {
    run_with_progress(settings, store, None).await
}

fn show_progress(progress: Option<&ProgressBar>, s: &IngestSummary) {
    if let Some(pb) = progress {
        pb.set_position(s.files_loaded + s.files_skipped + s.files_refused);
    }
}

/// `run`, advancing `progress` by one per file (or SQL source) done.
pub async fn run_with_progress(
    settings: &Settings,
    store: &dyn Store,
    progress: Option<&ProgressBar>,
) -> anyhow::Result<IngestSummary> {
    // the inbox is listed once, so the progress bar's length is the files
    // this run loads even when files arrive while it runs
    let mut listings: HashMap<&str, SourceFiles> = settings
        .config
        .sources
        .iter()
        .filter(|s| s.kind != SourceKind::Sql)
        .map(|s| (s.name.as_str(), source_files(settings, s)))
        .collect();
    if let Some(pb) = progress {
        let sql = settings
            .config
            .sources
            .iter()
            .filter(|s| s.kind == SourceKind::Sql)
            .count();
        let files: usize = listings
            .values()
            .map(|f| f.files.len() + f.unreadable.len())
            .sum();
        pb.set_length((sql + files) as u64);
        pb.set_position(0);
    }
    let mut summary = IngestSummary::default();
    let mut masters = MasterIds {
        ids: Arc::new(store.masters().await?),
        changed: false,
    };
    for dataset in Dataset::LOAD_ORDER {
        let loaded_before_dataset = summary.files_loaded;
        for source in settings
            .config
            .sources
            .iter()
            .filter(|s| s.dataset == dataset)
        {
            let loaded_before = summary.files_loaded;
            match source.kind {
                SourceKind::Sql => {
                    // boxed: inlined, the nested SQL futures took the whole
                    // command's future past rustc's layout depth in release
                    Box::pin(ingest_sql(
                        settings,
                        store,
                        source,
                        masters.ids.clone(),
                        &mut summary,
                    ))
                    .await?;
                }
                _ => {
                    ingest_files(
                        settings,
                        store,
                        source,
                        listings.remove(source.name.as_str()).unwrap_or_default(),
                        &masters,
                        &mut summary,
                        progress,
                    )
                    .await?;
                }
            }
            show_progress(progress, &summary);
            if matches!(dataset, Dataset::Reps | Dataset::Customers)
                && summary.files_loaded > loaded_before
            {
                masters.changed = true;
            }
        }
        // only reps and customers change the ids later datasets are checked
        // against, and only when one of their files was loaded
        if matches!(dataset, Dataset::Reps | Dataset::Customers)
            && summary.files_loaded > loaded_before_dataset
        {
            masters.ids = Arc::new(store.masters().await?);
        }
    }
    info!(
        files_loaded = summary.files_loaded,
        files_skipped = summary.files_skipped,
        files_refused = summary.files_refused,
        rows_loaded = summary.rows_loaded,
        rejections = summary.rejected_rows(),
        "ingest finished"
    );
    Ok(summary)
}

/// The master ids rows are checked against, and whether a reps or customers
/// file loaded earlier in this run changed them.
struct MasterIds {
    ids: Arc<Masters>,
    changed: bool,
}

async fn ingest_files(
    settings: &Settings,
    store: &dyn Store,
    source: &SourceConfig,
    SourceFiles { files, unreadable }: SourceFiles,
    masters: &MasterIds,
    summary: &mut IngestSummary,
    progress: Option<&ProgressBar>,
) -> anyhow::Result<()> {
    for u in unreadable {
        let detail = if u.directory {
            format!("cannot read directory: {}", u.error)
        } else {
            u.error
        };
        refuse_unreadable(summary, source, &u.path, detail);
    }
    if files.is_empty() {
        // usually a moved inbox or an unmounted share: the source's rows stay
        // as last loaded, which the reports would not show
        warn!(
            source = %source.name,
            path = %source.path.as_deref().unwrap_or_default(),
            "no file matches the source's path; its rows stay as last loaded"
        );
    }
    let master = is_master(source.dataset);
    // decide what to load: unchanged files are skipped, unless an earlier load
    // refused rows for ids that the masters may now know
    let stored = store.stored_files(&source.name).await?;
    let mut todo = Vec::new();
    let mut carried = Vec::new();
    for (path, name) in files {
        let sha = tokio::task::spawn_blocking({
            let path = path.clone();
            move || sha256_file(&path)
        })
        .await?;
        let (sha, stamp) = match sha {
            Ok(hashed) => hashed,
            // e.g. a file its writer still holds with owner-only permissions:
            // its rows stay as last loaded, the other files go on
            Err(e) => {
                refuse_unreadable(summary, source, &name, e.to_string());
                continue;
            }
        };
        let state = stored.get(&name);
        let unchanged =
            state.is_some_and(|s| s.sha256 == sha && !(masters.changed && s.unknown_ids > 0));
        todo.push(Listed {
            path,
            name,
            sha,
            stamp,
            unchanged,
        });
        // a skipped file's rejected rows are still missing: report them again
        if unchanged && state.is_some_and(|s| s.rows_rejected > 0) {
            carried.push(todo.len() - 1);
        }
    }
    // masters: a later file overrides an earlier one, so once one file changes
    // every file after it is reloaded to keep "the later row wins"
    if master {
        if let Some(first) = todo.iter().position(|t| !t.unchanged) {
            for t in &mut todo[first..] {
                t.unchanged = false;
            }
        }
    }
    // Parse-ahead window: the writer loads files strictly in path order, and
    // only the next `window` files (the one being loaded included) may be
    // parsing: one per core beside the one being written. Spawning from this
    // loop, in order, is what guarantees the file the writer waits on is
    // always running: a parser blocked on its full channel can never hold a
    // slot that an earlier file needs.
    let window = std::thread::available_parallelism().map_or(2, std::num::NonZero::get) + 1;
    let max_bytes = settings.config.ingest.max_file_mb.saturating_mul(1 << 20);
    for i in carried {
        if todo[i].unchanged {
            let old = store.file_rejections(&source.name, &todo[i].name).await?;
            summary.rejections.extend(old);
        }
    }
    // nor are its notes, whose cause is still in the file
    if todo.iter().any(|t| t.unchanged) {
        let skipped: HashSet<&str> = todo
            .iter()
            .filter(|t| t.unchanged)
            .map(|t| t.name.as_str())
            .collect();
        let old = store.source_notes(&source.name).await?;
        summary.notes.extend(
            old.into_iter()
                .filter(|n| skipped.contains(n.file.as_str())),
        );
    }
    let (unchanged, changed): (Vec<_>, Vec<_>) = todo.into_iter().partition(|t| t.unchanged);
    summary.files_skipped += unchanged.len() as u64;
    let mut changed = if master {
        changed.into_iter().map(|t| (t, Plan::default())).collect()
    } else {
        sort_out_copies(source, &stored, &unchanged, changed)
    };
    // a source that was read by SQL before: the first file loaded takes over
    // those rows, which no file would otherwise replace
    if let Some((_, plan)) = changed.iter_mut().find(|(_, plan)| plan.copy_of.is_none()) {
        plan.retire.extend(
            stored
                .keys()
                .filter(|file| file.starts_with("sql:"))
                .cloned(),
        );
    }
    show_progress(progress, summary);
    let mut to_load = changed.into_iter();
    let mut running = VecDeque::new();
    loop {
        while running.len() < window {
            let Some((
                Listed {
                    path,
                    name,
                    sha,
                    stamp,
                    ..
                },
                Plan { retire, copy_of },
            )) = to_load.next()
            else {
                break;
            };
            let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
            let (sheet_tx, sheet_rx) = oneshot::channel();
            let (src, m) = (source.clone(), masters.ids.clone());
            let file = ParseFile {
                path,
                name: name.clone(),
                stamp,
                copy_of,
            };
            let handle = tokio::task::spawn_blocking(move || {
                parse_file(file, src, m, max_bytes, tx, sheet_tx)
            });
            running.push_back((name, sha, retire, rx, sheet_rx, handle));
        }
        let Some((name, sha, retire, rx, sheet_rx, handle)) = running.pop_front() else {
            break;
        };
        // without `sheet`, which sheet the rows come from is known once the
        // parser has chosen it; it says so before it sends any row, or
        // drops the sender on a file it refuses
        let sheet = sheet_rx
            .await
            .unwrap_or_else(|_| source.sheet.clone().unwrap_or_default());
        let load = FileLoad {
            source: source.name.clone(),
            file: name.clone(),
            sheet,
            dataset: source.dataset,
            sha256: sha,
            replace: Replace::File,
            retire,
            max_reject_ratio: settings.config.ingest.max_reject_ratio,
        };
        let outcome = store.load_file(load, rx).await?;
        let parsed = handle.await?;
        finish_file(source, &name, parsed, outcome, summary);
        show_progress(progress, summary);
    }
    Ok(())
}

/// Datasets whose rows are keyed by id: the later row wins, so a file
/// loaded twice changes nothing.
fn is_master(dataset: Dataset) -> bool {
    matches!(
        dataset,
        Dataset::Reps | Dataset::Customers | Dataset::Targets
    )
}

/// A file of a source as `ingest_files` lists it.
struct Listed {
    path: PathBuf,
    /// relative to the config's folder, `/`-separated
    name: String,
    sha: String,
    /// as the file was when its hash was taken
    stamp: Stamp,
    /// its content is what its last load stored, and needs no reload
    unchanged: bool,
}

/// How a changed file is loaded.
#[derive(Debug, Default)]
struct Plan {
    /// earlier loads whose rows this one takes over (`FileLoad::retire`)
    retire: Vec<String>,
    /// the file whose content this one repeats: refused if it holds rows
    copy_of: Option<String>,
}

/// Keeps a fact source's rows from counting twice when a file is copied or
/// renamed. A changed file with the same content as another file the source
/// holds (already loaded, or earlier in path order) is a copy: loading
/// `流向10月 - 副本.xlsx` beside `流向10月.xlsx` would double every line in
/// it, so it is refused once its parse finds a data row (two header-only
/// files from one template are no copies that matter). A file with the same
/// content as stored files its `path` no longer matches was renamed: its
/// load replaces their rows, which would otherwise stay under the old name
/// beside the new ones.
fn sort_out_copies(
    source: &SourceConfig,
    stored: &BTreeMap<String, FileState>,
    unchanged: &[Listed],
    changed: Vec<Listed>,
) -> Vec<(Listed, Plan)> {
    let listed: HashSet<String> = unchanged
        .iter()
        .chain(&changed)
        .map(|t| t.name.clone())
        .collect();
    let mut holders: HashMap<String, String> = HashMap::new();
    for t in unchanged {
        holders
            .entry(t.sha.clone())
            .or_insert_with(|| t.name.clone());
    }
    let mut to_load = Vec::with_capacity(changed.len());
    for t in changed {
        if let Some(holder) = holders.get(&t.sha) {
            let copy_of = Some(holder.clone());
            to_load.push((
                t,
                Plan {
                    retire: Vec::new(),
                    copy_of,
                },
            ));
            continue;
        }
        holders.insert(t.sha.clone(), t.name.clone());
        let renamed_from: Vec<String> = stored
            .iter()
            .filter(|(file, state)| state.sha256 == t.sha && !listed.contains(*file))
            .map(|(file, _)| file.clone())
            .collect();
        if !renamed_from.is_empty() {
            info!(
                source = %source.name,
                file = %t.name,
                renamed_from = %renamed_from.join(", "),
                "file renamed: its rows replace those stored under its old name"
            );
        }
        to_load.push((
            t,
            Plan {
                retire: renamed_from,
                copy_of: None,
            },
        ));
    }
    to_load
}

/// A file or directory of `source` that could not be read: refused, the rows
/// it loaded before kept.
fn refuse_unreadable(
    summary: &mut IngestSummary,
    source: &SourceConfig,
    name: &str,
    detail: String,
) {
    warn!(source = %source.name, file = name, detail = %detail, "file refused: cannot read");
    summary.files_refused += 1;
    summary.rejections.push(file_rejection(
        &source.name,
        name,
        source.sheet.as_deref().unwrap_or_default(),
        Reason::CannotOpenFile,
        String::new(),
        detail,
    ));
}

/// `D`, `D and E`, `D, E and F`.
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn finish_file(
    source: &SourceConfig,
    name: &str,
    parsed: Parsed,
    outcome: LoadOutcome,
    summary: &mut IngestSummary,
) {
    let note = |note: String, unlisted_rejections: u64| FileNote {
        source: source.name.clone(),
        file: name.to_string(),
        sheet: parsed.sheet.clone(),
        note,
        unlisted_rejections,
    };
    // kept for a file that loaded and for one the ratio refused, as their
    // rejected rows are; said only then, not for a file whose load failed
    let unlisted = || {
        (parsed.unlisted > 0).then(|| {
            let message = unlisted_message(parsed.unlisted);
            warn!(source = %source.name, file = name, unlisted = parsed.unlisted, "{message}");
            note(message, parsed.unlisted)
        })
    };
    match (parsed.result, outcome) {
        (Ok(()), LoadOutcome::Loaded { rows }) => {
            let mut note = |message: String| summary.notes.push(note(message, 0));
            if !parsed.alike_sheets.is_empty() {
                let message = unread_sheets_message(&parsed.sheet, &parsed.alike_sheets);
                // here, not in the parser's thread: the run's span is current
                warn!(source = %source.name, file = name, "{message}");
                note(message);
            }
            if !parsed.merged_losses.is_empty() {
                let message = merged_losses_message(&parsed.merged_losses);
                warn!(source = %source.name, file = name, sheet = %parsed.sheet, "{message}");
                note(message);
            }
            summary.files_loaded += 1;
            summary.rows_loaded += rows;
            summary.rejections.extend(parsed.rejections);
            summary.notes.extend(unlisted());
        }
        (
            Ok(()),
            LoadOutcome::RatioExceeded {
                rejected,
                data_rows,
            },
        ) => {
            summary.files_refused += 1;
            summary.rejections.extend(parsed.rejections);
            summary.notes.extend(unlisted());
            summary.rejections.push(file_rejection(
                &source.name,
                name,
                &parsed.sheet,
                Reason::RejectRatioExceeded,
                String::new(),
                format!(
                    "{rejected} of {data_rows} rows rejected; nothing from this file was loaded"
                ),
            ));
            warn!(source = %source.name, file = name, rejected, "file refused: reject ratio exceeded");
        }
        (result, _) => {
            summary.files_refused += 1;
            let error = result
                .err()
                .unwrap_or_else(|| FileError::CannotOpen("loading stopped before the end".into()));
            let rejection =
                refusal_naming_sheets(source, name, &parsed.sheet, error, &parsed.alike_sheets);
            warn!(source = %source.name, file = name, reason = %rejection.reason, detail = %rejection.detail, "file refused");
            summary.rejections.push(rejection);
        }
    }
}

/// What the run says of a file's rejected rows past `LISTED_REJECTIONS`.
fn unlisted_message(unlisted: u64) -> String {
    format!(
        "{unlisted} more rejected rows are counted, not listed: a file lists its first \
         {LISTED_REJECTIONS} rejected rows; mend the cause those show and load the file again"
    )
}

/// `refusal`, naming the other sheets that head every mapped column when
/// the one read lacks one: the data sheet behind a cover sheet (`说明`)
/// that a source without `sheet` reads first.
fn refusal_naming_sheets(
    source: &SourceConfig,
    name: &str,
    sheet: &str,
    error: FileError,
    alike: &[String],
) -> Rejection {
    let other_sheets_fit = matches!(error, FileError::MissingColumn { .. }) && !alike.is_empty();
    let mut rejection = refusal(source, name, sheet, error);
    if other_sheets_fit {
        let (head, advice) = match alike {
            [one] => (
                "heads",
                format!("set `sheet = \"{}\"` on the source", toml_escaped(one)),
            ),
            _ => (
                "head",
                "set `sheet` on the source to the one to read".to_string(),
            ),
        };
        let hint = format!(
            "{} {head} every mapped column: {advice}",
            sheets_named(alike)
        );
        rejection.detail = if rejection.detail.is_empty() {
            hint
        } else {
            format!("{}; {hint}", rejection.detail)
        };
    }
    rejection
}

/// The text of a TOML basic string holding `s`, without its quotes.
fn toml_escaped(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The rejection of a whole file (or query result) for `error`.
fn refusal(source: &SourceConfig, name: &str, sheet: &str, error: FileError) -> Rejection {
    let (reason, column, detail) = match error {
        FileError::MissingColumn { missing, near } => {
            let detail = near
                .iter()
                .map(|n| {
                    format!(
                        "{} `{}`, not `{}`: they differ only in full-width forms, letter case or \
                         white space",
                        match source.kind {
                            SourceKind::Sql => format!("result column {} is named", n.column + 1),
                            _ => format!("column {} is headed", record::column_letters(n.column)),
                        },
                        n.found.escape_debug(),
                        n.wanted
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            (Reason::MissingColumn, missing.join(", "), detail)
        }
        FileError::HeaderFurtherDown {
            missing,
            taken,
            found,
            configured,
        } => {
            let taken = if configured {
                format!("row {taken} is the source's `header_row`")
            } else {
                format!("row {taken}, the first non-empty row, was read as the header")
            };
            let detail = format!(
                "{taken}; row {found} heads every mapped column: set `header_row = {found}` on the source"
            );
            (Reason::MissingColumn, missing.join(", "), detail)
        }
        // SPEC §4 has no reason of its own for it: the mapped column
        // is as good as missing, and the detail says why
        FileError::AmbiguousColumn { header, columns } => {
            let (what, columns): (_, Vec<String>) = match source.kind {
                SourceKind::Sql => (
                    "it names result columns",
                    columns.iter().map(|c| (c + 1).to_string()).collect(),
                ),
                _ => (
                    "it heads columns",
                    columns.into_iter().map(record::column_letters).collect(),
                ),
            };
            let detail = format!(
                "ambiguous: {what} {}; rename all but one",
                and_list(&columns)
            );
            (Reason::MissingColumn, header, detail)
        }
        ref e @ FileError::Uncalculated { ref column, .. } => {
            (Reason::CannotOpenFile, column.clone(), e.to_string())
        }
        e => (Reason::CannotOpenFile, String::new(), e.to_string()),
    };
    file_rejection(&source.name, name, sheet, reason, column, detail)
}

/// What `check` finds in the files of a file source, in path order.
#[derive(Debug, Default)]
pub struct FileProblems {
    /// (file, earlier file with the same content): the repeats a run
    /// refuses as copies, those that hold a data row (see `sort_out_copies`);
    /// none for a master source, whose later row wins
    pub copies: Vec<(String, String)>,
    /// what a run would refuse in a file before its first data row: not a
    /// workbook, no such sheet, a missing or ambiguous column, over
    /// `max_file_mb`
    pub refused: Vec<Rejection>,
    /// (file, message): workbooks with further sheets headed like the one
    /// read, which a source without `sheet` does not read
    pub unread_sheets: Vec<(String, String)>,
}

/// For `check`: each file of a file source hashed and read as far as its
/// first data row, once, as the run reads it. Entries that could not even
/// be listed are left to the caller's unreadable list. `check` has no warehouse state to say which copy a run
/// keeps, so each repeat is named against the earlier file in path order.
pub fn check_files(
    settings: &Settings,
    source: &SourceConfig,
    files: &[(PathBuf, String)],
) -> FileProblems {
    struct FirstRow<'a> {
        source: &'a SourceConfig,
        sheet: String,
        mapping: Option<Mapping>,
        found: bool,
        alike_sheets: Vec<String>,
    }
    impl Visitor for FirstRow<'_> {
        fn sheet(&mut self, name: &str) {
            self.sheet = name.to_string();
        }
        fn header(&mut self, sheet: &str, _: Epoch, header: &[String]) -> Result<usize, FileError> {
            self.sheet = sheet.to_string();
            let mapping = Mapping::from_header(self.source, header)?;
            let max_column = mapping.max_column();
            self.mapping = Some(mapping);
            Ok(max_column)
        }
        fn row(&mut self, row: u64, cells: &[Cell]) -> Result<(), FileError> {
            if let Some(mapping) = &self.mapping {
                mapping.calculated(cells, row)?;
            }
            self.found = true;
            // stops the reader: one row is enough
            Err(FileError::Cancelled)
        }
        fn other_sheet(&mut self, name: &str, header: &[String]) {
            if heads_every_mapped_column(self.source, header) {
                self.alike_sheets.push(name.to_string());
            }
        }
    }
    let max_bytes = settings.config.ingest.max_file_mb.saturating_mul(1 << 20);
    let mut first: HashMap<String, &str> = HashMap::new();
    let mut problems = FileProblems::default();
    for (path, name) in files {
        let (sha, stamp) = match sha256_file(path) {
            Ok(hashed) => hashed,
            // listed but not readable (mode 000): refused as the run refuses it
            Err(e) => {
                let error = FileError::CannotOpen(e.to_string());
                problems.refused.push(refusal(source, name, "", error));
                continue;
            }
        };
        let mut visitor = FirstRow {
            source,
            sheet: String::new(),
            mapping: None,
            found: false,
            alike_sheets: Vec::new(),
        };
        match read_guarded(path, stamp.len, max_bytes, source, &mut visitor) {
            Ok(()) | Err(FileError::Cancelled) => {
                if !visitor.alike_sheets.is_empty() {
                    problems.unread_sheets.push((
                        name.clone(),
                        unread_sheets_message(&visitor.sheet, &visitor.alike_sheets),
                    ));
                }
            }
            Err(e) => problems.refused.push(refusal_naming_sheets(
                source,
                name,
                &visitor.sheet,
                e,
                &visitor.alike_sheets,
            )),
        }
        if is_master(source.dataset) {
            continue;
        }
        match first.get(&sha) {
            Some(earlier) if visitor.found => {
                problems.copies.push((name.clone(), (*earlier).to_string()));
            }
            Some(_) => {}
            None => {
                first.insert(sha, name);
            }
        }
    }
    problems
}

/// For `check`: a `sql` source's query prepared on its database, not run,
/// and the columns it would return matched against the source's mapping;
/// the rejection a run would give when the query does not prepare or a
/// mapped column is missing or named twice. `Err` is a connection that
/// failed.
pub async fn check_query(source: &SourceConfig, url: &str) -> Result<Option<Rejection>, String> {
    let query = source.query.as_deref().unwrap_or_default();
    let error = match sql::prepare(url, query).await? {
        sql::Prepared::Columns(columns) => match Mapping::from_header(source, &columns.names)
            .and_then(|mapping| readable_mapped_columns(&mapping, &columns))
        {
            Ok(()) => return Ok(None),
            Err(e) => e,
        },
        sql::Prepared::Refused(e) => FileError::CannotOpen(e),
    };
    Ok(Some(refusal(source, &sql_load_name(source), "", error)))
}

/// A mapped result column of a type salesbatch cannot read refuses the
/// source: the type is the column's, so every row would fail alike, and an
/// id column would otherwise store the error text as the id.
fn readable_mapped_columns(mapping: &Mapping, columns: &sql::Columns) -> Result<(), FileError> {
    for (_, _, index, header) in &mapping.fields {
        if let Some(Some(ty)) = columns.unreadable.get(*index) {
            return Err(FileError::CannotOpen(format!(
                "column `{header}` is of SQL type `{ty}`, which salesbatch does not read: \
                 cast it in the query to text, a number or a date"
            )));
        }
    }
    Ok(())
}

/// The file name a `sql` source's load is recorded under: `sql:` and the
/// variable holding its URL.
fn sql_load_name(source: &SourceConfig) -> String {
    format!("sql:{}", source.url_env.as_deref().unwrap_or_default())
}

/// A `sql` source: one load, one transaction. Sales replace their rows dated
/// on or after `:since`; other datasets replace all rows of the source.
async fn ingest_sql(
    settings: &Settings,
    store: &dyn Store,
    source: &SourceConfig,
    masters: Arc<Masters>,
    summary: &mut IngestSummary,
) -> anyhow::Result<()> {
    let _ = settings;
    let var = source.url_env.as_deref().unwrap_or_default();
    let name = sql_load_name(source);
    let Ok(url) = std::env::var(var) else {
        summary.files_refused += 1;
        summary.rejections.push(file_rejection(
            &source.name,
            &name,
            "",
            Reason::CannotOpenFile,
            String::new(),
            format!("environment variable `{var}` is not set"),
        ));
        warn!(source = %source.name, "sql source skipped: `{var}` is not set");
        return Ok(());
    };
    let (since, replace) = if source.dataset == Dataset::Sales {
        let latest = store.latest_invoice_date(&source.name).await?;
        let since = latest.map_or(EPOCH_START, |d| {
            d - chrono::Duration::days(i64::from(source.lookback_days()))
        });
        (since, Replace::SourceSince(since))
    } else {
        (EPOCH_START, Replace::Source)
    };
    // a source that was read from files before: this load takes over their
    // rows, which its window would not replace
    let retire = store
        .stored_files(&source.name)
        .await?
        .into_keys()
        .filter(|file| !file.starts_with("sql:"))
        .collect();
    let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
    let load = FileLoad {
        source: source.name.clone(),
        file: name.clone(),
        sheet: String::new(),
        dataset: source.dataset,
        sha256: String::new(),
        replace,
        retire,
        max_reject_ratio: settings.config.ingest.max_reject_ratio,
    };
    // the reader owns the pipeline, and with it every sender: when the read
    // fails they all drop, and the load sees its input end without `End`
    let mut p = Pipeline::new(source.clone(), name.clone(), masters, false, tx);
    let query = source.query.clone().unwrap_or_default();
    let reader = async move {
        let tx = p.tx.clone();
        let result = sql::fetch(&url, &query, since, &tx, |pos, columns, cells| {
            if p.mapping.is_none() {
                p.set_header(&columns.names)?;
                if let Some(mapping) = &p.mapping {
                    readable_mapped_columns(mapping, columns)?;
                }
            }
            p.accept(pos, &cells);
            Ok((p.batch.len() >= BATCH_ROWS).then(|| Batch::Rows(std::mem::take(&mut p.batch))))
        })
        .await;
        if result.is_ok() {
            let rows = std::mem::take(&mut p.batch);
            let end = Batch::End {
                data_rows: p.data_rows,
                rejected: p.rejected,
                unknown_ids: p.unknown_ids,
            };
            for batch in [Batch::Rows(rows), end] {
                if tx.send(batch).await.is_err() {
                    break;
                }
            }
        }
        let unlisted = p.unlisted();
        (result, p.rejections, unlisted)
    };
    // dropping a reader that ran out of time drops its senders: the load
    // then sees its input end without `End` and rolls back
    let limit = settings.config.ingest.sql_timeout_secs;
    let (read, outcome) = tokio::join!(
        tokio::time::timeout(std::time::Duration::from_secs(limit), reader),
        store.load_file(load, rx)
    );
    let (result, rejections, unlisted) = read.unwrap_or_else(|_| {
        let late = format!("the source took longer than {limit} s (`ingest.sql_timeout_secs`)");
        (Err(FileError::CannotOpen(late)), Vec::new(), 0)
    });
    let outcome = outcome?;
    let parsed = Parsed {
        sheet: String::new(),
        result,
        rejections,
        unlisted,
        alike_sheets: Vec::new(),
        merged_losses: Vec::new(),
    };
    finish_file(source, &name, parsed, outcome, summary);
    Ok(())
}
