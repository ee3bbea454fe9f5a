//! Ingest: reads every configured source into the warehouse, masters first.
//! Files of a source are parsed in parallel (bounded by the cores), each
//! streaming batches to a writer that loads files one at a time, in sorted
//! path order, each in its own transaction: a file is fully in or not at all.

mod check;
pub mod coerce;
pub mod csv;
pub mod excel;
mod files;
pub mod guard;
pub mod html;
pub mod listing;
pub mod merges;
mod pipeline;
pub mod reader;
pub mod record;
pub mod sql;
mod sql_source;
pub mod xml2003;

pub use self::check::{check_files, check_query, FileProblems};
pub use self::files::{source_files, SourceFiles, Unreadable};
pub use self::pipeline::read_file;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

use chrono::NaiveDate;
use indicatif::ProgressBar;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use self::files::{sha256_file, Stamp};
use self::pipeline::{
    merged_losses_message, parse_file, sheets_named, unread_sheets_message, ParseFile, Parsed,
};
use self::reader::FileError;
use self::record::{Masters, Reason, Rejection};
use self::sql_source::ingest_sql;
use crate::config::{Dataset, Settings, SourceConfig, SourceKind};
use crate::warehouse::{FileLoad, FileState, LoadOutcome, Replace, Store};

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
        FileError::MissingColumn {
            missing,
            near,
            grouped,
        } => {
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
                .chain(grouped.iter().map(|g| {
                    let under = g
                        .under
                        .iter()
                        .map(|h| format!("`{h}`"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    format!(
                        "`{}` is a group label, the merged cells {} above the header over {}: \
                         map the column that holds the value by its own header",
                        g.wanted,
                        g.block,
                        if under.is_empty() {
                            "several columns".to_string()
                        } else {
                            under
                        }
                    )
                }))
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
