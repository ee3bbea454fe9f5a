//! The contract between a format reader and the row pipeline: a reader finds
//! the header, then hands over each row's cells in file order.

use super::coerce::{Cell, Epoch};

/// Why a whole file was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FileError {
    #[error("{0}")]
    CannotOpen(String),
    #[error("missing column {}", .0.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", "))]
    MissingColumn(Vec<String>),
    /// a mapped header that heads more than one column: which one the user
    /// meant cannot be known (`金额` for both the amount with and without tax)
    #[error("column `{header}` is ambiguous: it heads {} columns", .columns.len())]
    AmbiguousColumn {
        header: String,
        /// 0-based
        columns: Vec<usize>,
    },
    /// the consumer stopped (the run is shutting down)
    #[error("ingest cancelled")]
    Cancelled,
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
}

/// Tracks header detection and blank-row skipping for a row-by-row reader.
pub struct RowAssembler {
    header_row: Option<u32>,
    max_col: Option<usize>,
}

impl RowAssembler {
    pub fn new(header_row: Option<u32>) -> Self {
        Self {
            header_row,
            max_col: None,
        }
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
        if self.max_col.is_none() {
            let is_header = match self.header_row {
                Some(h) => row == u64::from(h),
                None => !blank,
            };
            if is_header {
                let header: Vec<String> = cells
                    .iter()
                    .map(|c| super::coerce::text(c).unwrap_or_default())
                    .collect();
                self.max_col = Some(visitor.header(sheet, epoch, &header)?);
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
    pub fn finish(&self, what: &str) -> Result<(), FileError> {
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
}
