//! One file's parse: the source's reader (CSV or workbook) feeds a
//! `Pipeline`, which maps the header, turns each row into a record or a
//! rejection and sends records to the writer in bounded batches. A `sql`
//! source's rows go through the same `Pipeline` (see `sql_source`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::coerce::{Cell, Epoch};
use super::files::Stamp;
use super::reader::{FileError, Visitor};
use super::record::{
    self, Located, Mapping, Masters, MergedLoss, Reason, Rejection, RowContext, RowRuns,
};
use super::{and_list, csv, excel, toml_escaped, BATCH_ROWS, LISTED_REJECTIONS};
use crate::config::{SourceConfig, SourceKind};
use crate::warehouse::Batch;

/// Turns rows into records and sends them to the writer in batches.
pub(super) struct Pipeline {
    pub(super) source: SourceConfig,
    pub(super) file: String,
    pub(super) sheet: String,
    pub(super) epoch: Epoch,
    pub(super) masters: Arc<Masters>,
    pub(super) mapping: Option<Mapping>,
    pub(super) addresses: bool,
    pub(super) tx: mpsc::Sender<Batch>,
    /// told the sheet once it is chosen, so the writer stores it with the rows
    pub(super) chosen_sheet: Option<oneshot::Sender<String>>,
    pub(super) batch: Vec<Located>,
    pub(super) data_rows: u64,
    pub(super) rejected: u64,
    pub(super) unknown_ids: u64,
    pub(super) rejections: Vec<Rejection>,
    /// the other sheets headed like the one read (see `Visitor::other_sheet`)
    pub(super) alike_sheets: Vec<String>,
    /// the 1-based rows that reached the row check, for counting merged
    /// blocks' rows (see `record::merged_optional_cells`)
    pub(super) row_runs: RowRuns,
    /// the 1-based rows rejected, listed or not (see `LISTED_REJECTIONS`),
    /// which merged blocks' rows that loaded leave out; bounded as
    /// `row_runs` is, so past `RowRuns::MAX` separate runs of rejected rows
    /// the note undercounts rather than the memory growing
    pub(super) rejected_runs: RowRuns,
    /// whether a loaded row had a mapped optional cell empty
    pub(super) empty_optional: bool,
}

impl Pipeline {
    pub(super) fn new(
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
    pub(super) fn unlisted(&self) -> u64 {
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
    pub(super) fn accept(&mut self, row: u64, cells: &[Cell]) {
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

    pub(super) fn set_header(&mut self, header: &[String]) -> Result<usize, FileError> {
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

    fn other_sheet(&mut self, name: &str, header: &[String]) -> bool {
        let alike = heads_every_mapped_column(&self.source, header);
        if alike {
            self.alike_sheets.push(name.to_string());
        }
        alike
    }
}

/// Whether `header` heads every column the source maps: a sheet of the
/// same table (the next month's, say), which a source with no `sheet` set
/// does not read (SPEC §3: the first sheet).
pub(super) fn heads_every_mapped_column(source: &SourceConfig, header: &[String]) -> bool {
    !header.is_empty() && Mapping::from_header(source, header).is_ok()
}

/// What `check` and the run say of `alike` sheets, which a workbook holds
/// besides the `read` one, with the same headers.
pub(super) fn unread_sheets_message(read: &str, alike: &[String]) -> String {
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
pub(super) fn sheets_named(sheets: &[String]) -> String {
    let names: Vec<String> = sheets.iter().map(|s| format!("`{s}`")).collect();
    let plural = if names.len() == 1 { "" } else { "s" };
    format!("sheet{plural} {}", and_list(&names))
}

pub(super) struct Parsed {
    pub(super) sheet: String,
    pub(super) result: Result<(), FileError>,
    pub(super) rejections: Vec<Rejection>,
    /// rejected rows past those in `rejections`
    pub(super) unlisted: u64,
    /// see `Pipeline::alike_sheets`
    pub(super) alike_sheets: Vec<String>,
    /// what merged cells emptied in optional columns of rows that loaded
    pub(super) merged_losses: Vec<MergedLoss>,
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
pub(super) fn read_guarded(
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
pub(super) fn merged_losses_message(losses: &[MergedLoss]) -> String {
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
pub(super) struct ParseFile {
    pub(super) path: PathBuf,
    pub(super) name: String,
    /// as the file was when its hash was taken
    pub(super) stamp: Stamp,
    /// the file whose content this one repeats (see `sort_out_copies`)
    pub(super) copy_of: Option<String>,
}

/// Parses one file on a blocking thread, sending the sheet it reads to
/// `sheet` once its header is found, then batches and finally `End`.
pub(super) fn parse_file(
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
