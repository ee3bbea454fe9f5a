//! The contract between a format reader and the row pipeline: a reader finds
//! the header, then hands over each row's cells in file order.

use std::collections::VecDeque;

use super::coerce::{Cell, Epoch};
use super::record::MergedBlock;
use crate::text::backticked;

/// Why a whole file was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FileError {
    #[error("{0}")]
    CannotOpen(String),
    #[error("missing column {}", backticked(.missing))]
    MissingColumn {
        missing: Vec<String>,
        /// headers the file has that differ from a missing one only in
        /// what a typist does not see (see `NearMiss`)
        near: Vec<NearMiss>,
        /// missing headers that are group labels above the header row
        grouped: Vec<GroupLabel>,
    },
    /// the row read as the header lacks mapped columns, but a row a little
    /// further down heads them all: a title above the table, or a
    /// `header_row` that is off
    #[error("missing column {}: row {taken} was read as the header, but row {found} heads every mapped column", backticked(.missing))]
    HeaderFurtherDown {
        missing: Vec<String>,
        /// the row read as the header
        taken: u64,
        /// the first later row that heads every mapped column
        found: u64,
        /// whether `taken` came from `header_row` (else: the first non-empty row)
        configured: bool,
    },
    /// a mapped header that heads more than one column: which one the user
    /// meant cannot be known (`金额` for both the amount with and without tax)
    #[error("column `{header}` is ambiguous: it heads {} columns", .columns.len())]
    AmbiguousColumn {
        header: String,
        /// 0-based
        columns: Vec<usize>,
    },
    /// a mapped cell holds a formula with no saved result (see
    /// `Mapping::calculated`)
    #[error("{}", uncalculated_message(.cell, .formula.as_deref(), *.placeholder))]
    Uncalculated {
        /// its address, `D2`
        cell: String,
        /// its header
        column: String,
        /// its text, when the cell carries it
        formula: Option<String>,
        /// the saved result is the placeholder 0 (see `Cell::Uncalculated`),
        /// not missing
        placeholder: bool,
    },
    /// the consumer stopped (the run is shutting down)
    #[error("ingest cancelled")]
    Cancelled,
}

/// A header the file has that differs from a mapped one it lacks only in
/// full-width forms, letter case or white space: `金额（元）` for `金额(元)`,
/// a line break typed inside a header cell, `Amount` for `amount`.
#[derive(Debug, Clone, PartialEq)]
pub struct NearMiss {
    /// the mapped header
    pub wanted: String,
    /// the column (0-based) whose header resembles it
    pub column: usize,
    /// that column's header
    pub found: String,
}

/// A mapped header the file lacks as a column's header but holds as a
/// group label: merged cells above the header row, over several columns
/// (`客户` over `客户编码` and `客户名称`).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupLabel {
    /// the mapped header
    pub wanted: String,
    /// the merged cells, as `B2:C2`
    pub block: String,
    /// the headers of the columns under it, in order, blank ones left out
    pub under: Vec<String>,
}

pub trait Visitor {
    /// Called once the sheet to read is chosen, before its rows, so that a
    /// refusal of the whole sheet (no header row) can name it.
    fn sheet(&mut self, _name: &str) {}
    /// Called once with the header row; returns the highest column index the
    /// rows need, so readers can drop the cells beyond it.
    fn header(&mut self, sheet: &str, epoch: Epoch, header: &[String]) -> Result<usize, FileError>;
    /// Called for each non-empty data row, `row` 1-based as a spreadsheet shows it.
    fn row(&mut self, row: u64, cells: &[Cell]) -> Result<(), FileError>;
    /// Called by the workbook reader when no sheet is configured, before
    /// the chosen sheet's rows (after them for an HTML page, read in one
    /// pass, but before the reader returns, even with the header refused
    /// for a missing column or the rows stopped by `FileError::Cancelled`),
    /// once for each other visible worksheet with
    /// the text of its header row (`header_row`, else its first non-empty
    /// row; empty for an empty sheet). Those sheets are not read. Returns
    /// whether the header heads every mapped column; when it does not, the
    /// reader may offer it again with blank cells filled from merged cells
    /// above (a header in two rows).
    fn other_sheet(&mut self, _name: &str, _header: &[String]) -> bool {
        false
    }
}

fn uncalculated_message(cell: &str, formula: Option<&str>, placeholder: bool) -> String {
    let formula = formula.map_or_else(
        || "a formula".to_string(),
        |f| format!("the formula `={f}`"),
    );
    if placeholder {
        // LibreOffice keeps the saved results of an xlsx it opens (its
        // default for files from Excel), so only a forced recalculation helps
        format!(
            "cell {cell} holds {formula} with the saved result 0 in a workbook marked to be \
             recalculated when opened: the placeholder a program that does not calculate \
             formulas (XlsxWriter, rust_xlsxwriter) stores; open the file in Excel and save it, \
             or in LibreOffice use Data ▸ Calculate ▸ Recalculate Hard, then save"
        )
    } else {
        format!(
            "cell {cell} holds {formula} but no saved result, as a file written by a program \
             that does not calculate formulas does; open the file in Excel or LibreOffice and \
             save it"
        )
    }
}

/// How many non-empty rows below a header that lacks mapped columns are
/// tried as the header, to tell the user where the real one is. Title
/// blocks above a table take a few rows; this bounds the extra reading of
/// a file that is refused anyway.
const HEADER_SEARCH_ROWS: u32 = 30;

/// How many non-empty rows above the header are kept for the merged cells
/// of a header in two rows (`RowAssembler::with_merges`). A title block and
/// an upper header row take a few; a label merged down over more rows than
/// this is not seen.
const ROWS_KEPT_ABOVE: usize = 30;

/// The merged cells of the sheet being read, asked for only when its
/// header lacks mapped columns: all of them, or those of the rows read so
/// far (a reader that finds them on the way), so asked again for each row
/// tried as the header.
pub type MergesOf<'m> = Box<dyn FnMut() -> Vec<MergedBlock> + 'm>;

/// Tracks header detection and blank-row skipping for a row-by-row reader.
pub struct RowAssembler<'m> {
    header_row: Option<u32>,
    max_col: Option<usize>,
    /// the header read lacked mapped columns
    searching: Option<Searching>,
    /// where the sheet's merged cells come from: a workbook's, not a CSV's
    merges: Option<MergesOf<'m>>,
    /// the text of the last non-empty rows before the header, with their
    /// 1-based numbers (kept only where there are merged cells to ask for)
    above: RowsAbove,
}

/// The refusal of a header that lacked mapped columns, while the rows below
/// it are tried as the header.
struct Searching {
    missing: Vec<String>,
    near: Vec<NearMiss>,
    grouped: Vec<GroupLabel>,
    /// the row read as the header
    taken: u64,
    /// how many more rows may be tried
    left: u32,
}

impl<'m> RowAssembler<'m> {
    pub fn new(header_row: Option<u32>) -> Self {
        Self {
            header_row,
            max_col: None,
            searching: None,
            merges: None,
            above: VecDeque::new(),
        }
    }

    /// A header in two rows, as Chinese sales sheets often have: group
    /// labels (`销售`) over the columns they span, and the labels of the
    /// other columns (`日期`) merged down over both rows, so that the lower
    /// row, read as the header, is blank under them. Such a blank header
    /// cell takes the text of the merged cells it lies in, when they start
    /// in a row above and span its column alone. `merges` is asked only
    /// when a header lacks mapped columns.
    pub fn with_merges(mut self, merges: MergesOf<'m>) -> Self {
        self.merges = Some(merges);
        self
    }

    /// Whether the header has been read and matched.
    pub fn has_header(&self) -> bool {
        self.max_col.is_some()
    }

    pub fn column_limit(&self) -> usize {
        self.max_col.map_or(16_384, |m| m + 1)
    }

    /// Feeds one physical row (1-based number). Rows before the header and
    /// blank rows are skipped.
    pub fn feed(
        &mut self,
        visitor: &mut dyn Visitor,
        sheet: &str,
        epoch: Epoch,
        row: u64,
        cells: &[Cell],
    ) -> Result<(), FileError> {
        let blank = cells.iter().all(Cell::is_blank);
        if self.searching.is_some() {
            if blank {
                return Ok(());
            }
            // the file is refused whatever this row holds; the visitor's
            // mapping is never used for a row
            let header = header_text(cells);
            let heads_all = self
                .match_header(visitor, sheet, epoch, row, &header)
                .is_ok();
            self.keep_above(row, header);
            let Some(searching) = &mut self.searching else {
                return Ok(());
            };
            if heads_all {
                return Err(FileError::HeaderFurtherDown {
                    missing: std::mem::take(&mut searching.missing),
                    taken: searching.taken,
                    found: row,
                    configured: self.header_row.is_some(),
                });
            }
            searching.left -= 1;
            if searching.left == 0 {
                return Err(self.give_up());
            }
            return Ok(());
        }
        if self.max_col.is_none() {
            let is_header = match self.header_row {
                Some(h) => row == u64::from(h),
                None => !blank,
            };
            if is_header {
                let header = header_text(cells);
                match self.match_header(visitor, sheet, epoch, row, &header) {
                    Ok(max_col) => self.max_col = Some(max_col),
                    Err(FileError::MissingColumn {
                        missing,
                        near,
                        grouped,
                    }) => {
                        self.searching = Some(Searching {
                            missing,
                            near,
                            grouped,
                            taken: row,
                            left: HEADER_SEARCH_ROWS,
                        });
                        self.keep_above(row, header);
                    }
                    Err(e) => return Err(e),
                }
            } else if !blank && self.merges.is_some() {
                self.keep_above(row, header_text(cells));
            }
            return Ok(());
        }
        if blank {
            return Ok(());
        }
        visitor.row(row, cells)
    }

    /// Checks that a header was found; `what` names what was read (`sheet`,
    /// or `file` for a CSV, which has no sheets).
    pub fn finish(&mut self, what: &str) -> Result<(), FileError> {
        if self.searching.is_some() {
            return Err(self.give_up());
        }
        match (self.max_col, self.header_row) {
            (Some(_), _) => Ok(()),
            (None, Some(h)) => Err(FileError::CannotOpen(format!(
                "header row {h} is beyond the end of the {what}"
            ))),
            (None, None) => Err(FileError::CannotOpen(format!(
                "the {what} is empty: no header row"
            ))),
        }
    }

    /// Offers `header` (row `row`) to the visitor; when it lacks mapped
    /// columns, again with its blank cells filled from merged cells above
    /// (`with_merges`), whose refusal, if any, then stands.
    fn match_header(
        &mut self,
        visitor: &mut dyn Visitor,
        sheet: &str,
        epoch: Epoch,
        row: u64,
        header: &[String],
    ) -> Result<usize, FileError> {
        let first = visitor.header(sheet, epoch, header);
        if !matches!(first, Err(FileError::MissingColumn { .. })) || self.above.is_empty() {
            return first;
        }
        let Some(merges) = self.merges.as_mut() else {
            return first;
        };
        let merged = merges();
        let filled = fill_from_merges(&merged, row, header, &self.above);
        let result = match &filled {
            Some(filled) => visitor.header(sheet, epoch, filled),
            None => first,
        };
        match result {
            Err(FileError::MissingColumn {
                missing,
                near,
                mut grouped,
            }) => {
                let header = filled.as_deref().unwrap_or(header);
                grouped.extend(self.group_labels(&merged, row, header, &missing));
                Err(FileError::MissingColumn {
                    missing,
                    near,
                    grouped,
                })
            }
            other => other,
        }
    }

    /// The `missing` headers that are the text of merged cells starting
    /// in a kept row above `row` and spanning several columns.
    fn group_labels(
        &self,
        merged: &[MergedBlock],
        row: u64,
        header: &[String],
        missing: &[String],
    ) -> Vec<GroupLabel> {
        let mut found = Vec::new();
        for &((first_row, first_col), (last_row, last_col)) in merged {
            if first_col == last_col || u64::from(first_row) + 1 >= row {
                continue;
            }
            let Some(text) = kept_text(&self.above, u64::from(first_row) + 1, first_col as usize)
            else {
                continue;
            };
            let text = super::coerce::trim(text);
            if let Some(wanted) = missing.iter().find(|m| super::coerce::trim(m) == text) {
                found.push(GroupLabel {
                    wanted: wanted.clone(),
                    block: super::record::block_range((
                        (first_row, first_col),
                        (last_row, last_col),
                    )),
                    under: (first_col..=last_col)
                        .filter_map(|c| header.get(c as usize))
                        .map(|h| super::coerce::trim(h).to_string())
                        .filter(|h| !h.is_empty())
                        .collect(),
                });
            }
        }
        found
    }

    fn keep_above(&mut self, row: u64, header: Vec<String>) {
        if self.merges.is_some() {
            keep_row_above(&mut self.above, row, header);
        }
    }

    /// No row below heads every mapped column: the header's own refusal.
    fn give_up(&mut self) -> FileError {
        let (missing, near, grouped) = self
            .searching
            .take()
            .map(|s| (s.missing, s.near, s.grouped))
            .unwrap_or_default();
        FileError::MissingColumn {
            missing,
            near,
            grouped,
        }
    }
}

/// The rows kept above a header: 1-based number and cells' text.
pub type RowsAbove = VecDeque<(u64, Vec<String>)>;

/// Keeps row `row` above a header, dropping the oldest past
/// `ROWS_KEPT_ABOVE`.
pub fn keep_row_above(above: &mut RowsAbove, row: u64, text: Vec<String>) {
    if above.len() == ROWS_KEPT_ABOVE {
        above.pop_front();
    }
    above.push_back((row, text));
}

/// `header` (row `row`) with each blank cell that lies in merged cells
/// starting in a kept row above and spanning that column alone given
/// their text; `None` when no cell is filled.
pub fn fill_from_merges(
    merged: &[MergedBlock],
    row: u64,
    header: &[String],
    above: &RowsAbove,
) -> Option<Vec<String>> {
    let at = u32::try_from(row.checked_sub(1)?).ok()?;
    let mut filled = header.to_vec();
    let mut any = false;
    for &((first_row, first_col), (last_row, last_col)) in merged {
        if first_col != last_col || first_row >= at || last_row < at {
            continue;
        }
        let column = first_col as usize;
        if filled
            .get(column)
            .is_some_and(|h| !super::coerce::trim(h).is_empty())
        {
            continue;
        }
        let Some(text) = kept_text(above, u64::from(first_row) + 1, column) else {
            continue;
        };
        if filled.len() <= column {
            filled.resize(column + 1, String::new());
        }
        text.clone_into(&mut filled[column]);
        any = true;
    }
    any.then_some(filled)
}

/// The text of the cell in column `column` of the kept row `row`
/// (1-based), when not blank.
fn kept_text(above: &RowsAbove, row: u64, column: usize) -> Option<&str> {
    above
        .iter()
        .find(|(number, _)| *number == row)
        .and_then(|(_, cells)| cells.get(column))
        .map(String::as_str)
        .filter(|t| !super::coerce::trim(t).is_empty())
}

pub(super) fn header_text(cells: &[Cell]) -> Vec<String> {
    cells
        .iter()
        .map(|c| super::coerce::text(c).unwrap_or_default())
        .collect()
}
