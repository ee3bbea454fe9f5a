//! Excel-family reader (xlsx, xlsm, xlsb, xls, ods) on calamine, chosen by
//! the file's content rather than its extension; Excel 2003 XML goes to
//! `xml2003` and HTML tables to `html`, which share the sheet choice and
//! row assembly below. xlsx/xlsb are streamed cell
//! by cell; a sheet declaring more than Excel's 1,048,576 ×
//! 16,384 cells is refused before anything is allocated for it; xls and the zip
//! containers first pass the checks in `guard`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::rc::Rc;

use calamine::{
    open_workbook, Data, DataRef, Ods, Reader, Sheet, SheetType, SheetVisible, Xls, Xlsb, Xlsx,
    XlsxCellReader, XlsxFormulaMetadata,
};

use super::coerce::{Cell, Epoch};
use super::guard::{self, Format};
use super::merges;
use super::reader::{
    fill_from_merges, header_text, keep_row_above, FileError, MergesOf, RowAssembler, RowsAbove,
    Visitor,
};
use super::record::MergedBlock;
use crate::config::Delimiter;

/// Excel's sheet limits (rows, columns).
pub(super) const MAX_ROWS: u32 = 1_048_576;
pub(super) const MAX_COLS: u32 = 16_384;
/// The most text a cell may hold, in UTF-8 bytes, for the readers of
/// text formats (Excel 2003 XML, HTML): Excel's 32,767 characters at 4
/// bytes each. A longer text is no cell a spreadsheet program wrote, and
/// holding it would let one file take any memory.
pub(super) const MAX_CELL_BYTES: usize = 32_767 * 4;

fn cannot_open(e: impl std::fmt::Display) -> FileError {
    FileError::CannotOpen(e.to_string())
}

/// The sheet to read: the one `wanted` names, else the first worksheet the
/// user sees in Excel, that is the first visible one: a hidden lookup sheet
/// or a chart sheet placed first is not "the first sheet" to them.
pub(super) fn pick_sheet(sheets: &[Sheet], wanted: Option<&str>) -> Result<String, FileError> {
    if let Some(w) = wanted {
        let trimmed = w.trim();
        // a workbook cannot hold two sheets whose names differ only in case
        // (Excel refuses the second, and formulas name sheets either way),
        // so `sales` names the sheet `Sales`
        let folded = trimmed.to_lowercase();
        return sheets
            .iter()
            .find(|s| s.name.trim() == trimmed)
            .or_else(|| {
                sheets
                    .iter()
                    .find(|s| s.name.trim().to_lowercase() == folded)
            })
            .map(|s| s.name.clone())
            .ok_or_else(|| {
                FileError::CannotOpen(format!(
                    "sheet `{w}` not found; the workbook has {}",
                    listed(sheets)
                ))
            });
    }
    let worksheets = || sheets.iter().filter(|s| s.typ == SheetType::WorkSheet);
    worksheets()
        .find(|s| s.visible == SheetVisible::Visible)
        .or_else(|| worksheets().next())
        .map(|s| s.name.clone())
        .ok_or_else(|| {
            FileError::CannotOpen(if sheets.is_empty() {
                "the workbook has no sheets".into()
            } else {
                format!("the workbook has no worksheet, only {}", listed(sheets))
            })
        })
}

/// The worksheets the user sees in Excel besides `chosen`, in tab order: a
/// workbook of one sheet a month looks, to its user, like all of its data.
pub(super) fn other_worksheets(sheets: &[Sheet], chosen: &str) -> Vec<String> {
    sheets
        .iter()
        .filter(|s| {
            s.typ == SheetType::WorkSheet && s.visible == SheetVisible::Visible && s.name != chosen
        })
        .map(|s| s.name.clone())
        .collect()
}

/// Hands `visitor` the header row of each of `others` (see
/// `Visitor::other_sheet`), as `header_of` reads it, and again with blank
/// cells filled from the sheet's merged cells (`merges_of`) when it does
/// not fit as it stands (a header in two rows, as the sheet read may
/// have). Only a note depends on them, so a sheet that fails to read, or
/// panics the parser, is skipped and the file's load goes on.
pub(super) fn visit_other_sheets(
    others: Vec<String>,
    visitor: &mut dyn Visitor,
    mut header_of: impl FnMut(&str) -> Result<HeaderRow, FileError>,
    mut merges_of: impl FnMut(&str) -> Vec<MergedBlock>,
) {
    for other in others {
        let Ok(Ok(found)) = catch_unwind(AssertUnwindSafe(|| header_of(&other))) else {
            continue;
        };
        let header = header_text(&found.cells);
        if visitor.other_sheet(&other, &header) || found.above.is_empty() {
            continue;
        }
        let merged = catch_unwind(AssertUnwindSafe(|| merges_of(&other))).unwrap_or_default();
        if let Some(filled) = fill_from_merges(&merged, found.row, &header, &found.above) {
            visitor.other_sheet(&other, &filled);
        }
    }
}

/// The header rows (and their merged cells) a reader's first pass read
/// of each sheet, for formats whose sheets are not read one by one
/// (Excel 2003 XML, HTML): looking at the other sheets then costs no pass
/// of its own per sheet.
#[derive(Default)]
pub(super) struct ScannedHeaders {
    headers: HashMap<String, (Result<HeaderRow, FileError>, Vec<MergedBlock>)>,
}

impl ScannedHeaders {
    pub fn insert(
        &mut self,
        sheet: &str,
        header: Result<HeaderRow, FileError>,
        merged: Vec<MergedBlock>,
    ) {
        self.headers.insert(sheet.to_string(), (header, merged));
    }

    /// What the first pass read of `sheet`'s header.
    #[cfg(test)]
    pub fn get(&self, sheet: &str) -> Option<&(Result<HeaderRow, FileError>, Vec<MergedBlock>)> {
        self.headers.get(sheet)
    }

    /// `visit_other_sheets` for the worksheets of `sheets` besides
    /// `chosen`; a sheet the first pass did not read has no header.
    pub fn visit_others(self, sheets: &[Sheet], chosen: &str, visitor: &mut dyn Visitor) {
        let (mut headers, mut merges): (HashMap<_, _>, HashMap<_, _>) = self
            .headers
            .into_iter()
            .map(|(sheet, (header, merged))| ((sheet.clone(), header), (sheet, merged)))
            .unzip();
        visit_other_sheets(
            other_worksheets(sheets, chosen),
            visitor,
            |other| {
                headers.remove(other).unwrap_or_else(|| {
                    Ok(HeaderRow {
                        cells: Vec::new(),
                        row: 0,
                        above: RowsAbove::new(),
                    })
                })
            },
            |other| merges.remove(other).unwrap_or_default(),
        );
    }
}

/// A sheet's header row as `header_cells` finds it.
pub(super) struct HeaderRow {
    pub cells: Vec<Cell>,
    /// 1-based
    pub row: u64,
    /// the last non-empty rows above it (see `keep_row_above`), for a
    /// header in two rows
    pub above: RowsAbove,
}

/// The cells of a sheet's header row as `RowAssembler` finds it without
/// searching further down: row `header_row`, else the first non-empty row.
/// Reads no further than that row.
pub(super) fn header_cells(
    header_row: Option<u32>,
    mut next: impl FnMut() -> NextCell,
) -> Result<HeaderRow, FileError> {
    let mut row: Vec<Cell> = Vec::new();
    let mut above = RowsAbove::new();
    // 0-based number of the row being gathered
    let mut current: Option<u32> = None;
    loop {
        let item = next()?;
        if item.as_ref().is_none_or(|((r, _), _)| current != Some(*r)) {
            // the row gathered so far is complete
            if let Some(done) = current {
                let number = u64::from(done) + 1;
                let blank = row.iter().all(Cell::is_blank);
                match header_row.map(u64::from) {
                    Some(h) if number == h => {
                        return Ok(HeaderRow {
                            cells: row,
                            row: h,
                            above,
                        })
                    }
                    Some(h) if number > h => break,
                    None if !blank => {
                        return Ok(HeaderRow {
                            cells: row,
                            row: number,
                            above,
                        })
                    }
                    _ if !blank => keep_row_above(&mut above, number, header_text(&row)),
                    _ => {}
                }
            }
            row.clear();
        }
        let Some(((r, c), value)) = item else {
            break;
        };
        current = Some(r);
        let c = c as usize;
        if c < MAX_COLS as usize {
            if row.len() <= c {
                row.resize(c + 1, Cell::Empty);
            }
            row[c] = value;
        }
    }
    // no such row: an empty header
    Ok(HeaderRow {
        cells: Vec::new(),
        row: header_row.map_or(0, u64::from),
        above,
    })
}

/// `` `A`, `B` ``: sheet names for a message.
fn listed(sheets: &[Sheet]) -> String {
    crate::text::backticked(sheets.iter().map(|s| &s.name))
}

pub(super) fn check_dimensions(start: (u32, u32), end: (u32, u32)) -> Result<(), FileError> {
    let rows = u64::from(end.0.saturating_sub(start.0)) + 1;
    let cols = u64::from(end.1.saturating_sub(start.1)) + 1;
    if end.0 >= MAX_ROWS
        || end.1 >= MAX_COLS
        || rows > u64::from(MAX_ROWS)
        || cols > u64::from(MAX_COLS)
    {
        return Err(FileError::CannotOpen(format!(
            "sheet declares absurd dimensions ({rows} rows × {cols} columns, Excel allows {MAX_ROWS} × {MAX_COLS})"
        )));
    }
    Ok(())
}

fn from_ref(v: DataRef<'_>) -> Cell {
    match v {
        DataRef::Int(i) => Cell::Number(i as f64),
        DataRef::Float(f) => Cell::Number(f),
        DataRef::String(s) => Cell::Text(s),
        DataRef::SharedString(s) => Cell::Text(s.to_string()),
        DataRef::Bool(b) => Cell::Bool(b),
        DataRef::DateTime(d) => d
            .as_datetime()
            .map_or(Cell::Number(d.as_f64()), Cell::DateTime),
        DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => Cell::Text(s),
        DataRef::Error(e) => Cell::Error(e.to_string()),
        DataRef::Empty => Cell::Empty,
    }
}

fn from_data(v: &Data) -> Cell {
    match v {
        Data::Int(i) => Cell::Number(*i as f64),
        Data::Float(f) => Cell::Number(*f),
        Data::String(s) => Cell::Text(s.clone()),
        Data::Bool(b) => Cell::Bool(*b),
        Data::DateTime(d) => d
            .as_datetime()
            .map_or(Cell::Number(d.as_f64()), Cell::DateTime),
        Data::DateTimeIso(s) | Data::DurationIso(s) => Cell::Text(s.clone()),
        Data::Error(e) => Cell::Error(e.to_string()),
        Data::Empty => Cell::Empty,
    }
}

/// Reads one sheet of a workbook; returns the sheet's name.
pub fn read(
    path: &Path,
    sheet: Option<&str>,
    header_row: Option<u32>,
    visitor: &mut dyn Visitor,
) -> Result<String, FileError> {
    // Xlsx and Xlsb have the same streaming cells reader, but as inherent
    // methods: no calamine trait lets one function take both
    macro_rules! stream_cells {
        ($wb:ident, |$cells:ident| $next:expr) => {{
            let epoch = Epoch::declared($wb.has_1904_epoch());
            let name = pick_sheet($wb.sheets_metadata(), sheet)?;
            visitor.sheet(&name);
            if sheet.is_none() {
                let others = other_worksheets($wb.sheets_metadata(), &name);
                visit_other_sheets(
                    others,
                    visitor,
                    |other| {
                        let mut $cells = $wb.worksheet_cells_reader(other).map_err(cannot_open)?;
                        header_cells(header_row, || $next)
                    },
                    |other| merged_cells(path, other).unwrap_or_default(),
                );
            }
            let mut $cells = $wb.worksheet_cells_reader(&name).map_err(cannot_open)?;
            let dims = $cells.dimensions();
            check_dimensions(dims.start, dims.end)?;
            let asm = RowAssembler::new(header_row).with_merges(merges_once(path, &name));
            stream(&name, epoch, asm, visitor, || $next)?;
            Ok(name)
        }};
    }
    // by content, not by name: see `guard::sniff`
    match guard::sniff(path)? {
        Format::Xlsx { recalculate } => {
            let mut wb: Xlsx<BufReader<File>> = open_workbook(path).map_err(cannot_open)?;
            stream_cells!(wb, |cells| next_xlsx_cell(&mut cells, recalculate))
        }
        Format::Xlsb => {
            // xlsb has no formula without its result: Excel, its only
            // writer, always saves one
            let mut wb: Xlsb<BufReader<File>> = open_workbook(path).map_err(cannot_open)?;
            stream_cells!(wb, |cells| cells.next_cell().map_err(cannot_open).map(
                |c| c.map(|c| (c.get_position(), from_ref(c.get_value().clone())))
            ))
        }
        Format::Xls => {
            let mut wb: Xls<BufReader<File>> = open_workbook(path).map_err(cannot_open)?;
            let epoch = Epoch::declared(wb.has_1904_epoch());
            read_range(path, &mut wb, sheet, epoch, header_row, visitor)
        }
        Format::Xml2003 => super::xml2003::read(path, sheet, header_row, visitor),
        Format::Html => super::html::read(path, sheet, header_row, visitor),
        // text has no sheets: one named in `sheet` is moot, as in a CSV
        Format::TabText { encoding } => {
            super::csv::read(path, encoding, Some(Delimiter::Tab), header_row, visitor)?;
            Ok(String::new())
        }
        Format::Ods => {
            // ods date cells are ISO text; a bare number in a date column
            // counts from the file's null date, which calamine does not expose
            let epoch = guard::ods_content(path)?;
            let mut wb: Ods<BufReader<File>> = open_workbook(path).map_err(cannot_open)?;
            read_range(path, &mut wb, sheet, epoch, header_row, visitor)
        }
    }
}

/// The merged cells of `sheet`: for xlsx and xls, the formats whose
/// merges calamine reads, and ods, whose `merges` reads; none for xlsb.
/// They explain rows already read, or fill a header in two rows: an xlsx
/// lists its merges after its cells, so this inflates the sheet a second
/// time (see `merges`). The xlsx fast path comes first: the
/// file has just passed `guard::sniff` for its read, and the fast path
/// holds a bounded window of the sheet whatever the file declares; only
/// where it gives up (not an xlsx, or a package it cannot follow) is the
/// file sniffed again before calamine opens it.
pub fn merged_cells(path: &Path, sheet: &str) -> Result<Vec<MergedBlock>, FileError> {
    if let Some(merged) = merges::xlsx_merges(path, sheet) {
        return Ok(merged);
    }
    let merged = match guard::sniff(path)? {
        Format::Xlsx { .. } => {
            let mut wb: Xlsx<BufReader<File>> = open_workbook(path).map_err(cannot_open)?;
            wb.merge_cells_by_sheet_name(sheet).map_err(cannot_open)?
        }
        Format::Xls => {
            let wb: Xls<BufReader<File>> = open_workbook(path).map_err(cannot_open)?;
            wb.merge_cells_by_sheet_name(sheet).map_err(cannot_open)?
        }
        Format::Ods => return Ok(merges::ods_merges(path, sheet).unwrap_or_default()),
        Format::Xml2003 => return super::xml2003::merges(path, sheet),
        Format::Html => return super::html::merges(path, sheet),
        Format::Xlsb | Format::TabText { .. } => Vec::new(),
    };
    Ok(merged.into_iter().map(|d| (d.start, d.end)).collect())
}

/// The merged cells of `sheet` for `RowAssembler::with_merges`: read from
/// the file the first time they are asked for, which reads the whole
/// sheet's merges (see `merged_cells`), then given again.
fn merges_once<'a>(path: &'a Path, sheet: &'a str) -> MergesOf<'a> {
    let mut read: Option<Vec<MergedBlock>> = None;
    Box::new(move || {
        read.get_or_insert_with(|| merged_cells(path, sheet).unwrap_or_default())
            .clone()
    })
}

/// The next cell of an xlsx sheet. A formula cell with no saved result is
/// told apart from an empty cell, which calamine's plain `next_cell` does
/// not do. The formula metadata reader leaves shared formulas unexpanded:
/// no allocation per formula cell of a shared group, and none sized by a
/// hostile file's `si` index. With `placeholders` (the workbook asks to be
/// recalculated when opened), a formula's saved 0 is no result either.
fn next_xlsx_cell(cells: &mut XlsxCellReader<'_, BufReader<File>>, placeholders: bool) -> NextCell {
    let Some(record) = cells
        .next_cell_with_formula_metadata()
        .map_err(cannot_open)?
    else {
        return Ok(None);
    };
    let text = |formula| match formula {
        XlsxFormulaMetadata::Normal { formula } | XlsxFormulaMetadata::Shared { formula, .. } => {
            Some(formula)
        }
        _ => None,
    };
    let cell = match (record.value, record.formula) {
        (DataRef::Empty, Some(formula)) => Cell::Uncalculated {
            formula: text(formula),
            placeholder: false,
        },
        (DataRef::Float(0.0) | DataRef::Int(0), Some(formula)) if placeholders => {
            Cell::Uncalculated {
                formula: text(formula),
                placeholder: true,
            }
        }
        (value, _) => from_ref(value),
    };
    Ok(Some((record.pos, cell)))
}

/// The next cell of a stream and its 0-based (row, column), or its end.
pub(super) type NextCell = Result<Option<((u32, u32), Cell)>, FileError>;

/// `stream` for a reader that collects the sheet's merged cells as it
/// reads (`merges`): a header is read with the merges of the rows read so
/// far, which are all it needs.
pub(super) fn stream_collecting_merges(
    sheet: &str,
    epoch: Epoch,
    header_row: Option<u32>,
    merges: Rc<RefCell<Vec<MergedBlock>>>,
    visitor: &mut dyn Visitor,
    next: impl FnMut() -> NextCell,
) -> Result<(), FileError> {
    let asm = RowAssembler::new(header_row).with_merges(Box::new(move || merges.borrow().clone()));
    stream(sheet, epoch, asm, visitor, next)
}

/// All the merged cells of a sheet whose reader collects them as it
/// reads (`merges`): the rest of the sheet is read through.
pub(super) fn merges_read_through(
    merges: &RefCell<Vec<MergedBlock>>,
    mut next: impl FnMut() -> NextCell,
) -> Result<Vec<MergedBlock>, FileError> {
    while next()?.is_some() {}
    Ok(merges.borrow().clone())
}

/// Groups a cell stream (row-major, as sheets store it) into rows.
pub(super) fn stream(
    sheet: &str,
    epoch: Epoch,
    mut asm: RowAssembler<'_>,
    visitor: &mut dyn Visitor,
    mut next: impl FnMut() -> NextCell,
) -> Result<(), FileError> {
    let mut row: Vec<Cell> = Vec::new();
    let mut current: Option<u32> = None;
    while let Some(((r, c), value)) = next()? {
        if current != Some(r) {
            if let Some(prev) = current {
                asm.feed(visitor, sheet, epoch, u64::from(prev) + 1, &row)?;
            }
            row.clear();
            current = Some(r);
        }
        let c = c as usize;
        if c < asm.column_limit() {
            if row.len() <= c {
                row.resize(c + 1, Cell::Empty);
            }
            row[c] = value;
        }
    }
    if let Some(prev) = current {
        asm.feed(visitor, sheet, epoch, u64::from(prev) + 1, &row)?;
    }
    asm.finish("sheet")
}

fn read_range<R>(
    path: &Path,
    wb: &mut R,
    sheet: Option<&str>,
    epoch: Epoch,
    header_row: Option<u32>,
    visitor: &mut dyn Visitor,
) -> Result<String, FileError>
where
    R: Reader<BufReader<File>>,
    R::Error: std::fmt::Display,
{
    let name = pick_sheet(wb.sheets_metadata(), sheet)?;
    visitor.sheet(&name);
    if sheet.is_none() {
        // xls and ods hold every sheet in memory once opened: reading
        // another one's header row costs a copy of that sheet, no parsing
        let others = other_worksheets(wb.sheets_metadata(), &name);
        visit_other_sheets(
            others,
            visitor,
            |other| {
                let range = wb.worksheet_range(other).map_err(cannot_open)?;
                let start_row = range.start().map_or(0, |s| s.0);
                let start_col = range.start().map_or(0, |s| s.1) as usize;
                let mut cells = range.cells().map(|(r, c, v)| {
                    let at = (start_row + r as u32, (start_col + c) as u32);
                    Ok(Some((at, from_data(v))))
                });
                header_cells(header_row, || cells.next().unwrap_or(Ok(None)))
            },
            |other| merged_cells(path, other).unwrap_or_default(),
        );
    }
    let range = wb.worksheet_range(&name).map_err(cannot_open)?;
    if let (Some(start), Some(end)) = (range.start(), range.end()) {
        check_dimensions(start, end)?;
    }
    let start_row = range.start().map_or(0, |s| s.0);
    let start_col = range.start().map_or(0, |s| s.1) as usize;
    let mut asm = RowAssembler::new(header_row).with_merges(merges_once(path, &name));
    let mut buf: Vec<Cell> = Vec::new();
    for (i, r) in range.rows().enumerate() {
        buf.clear();
        buf.resize(start_col, Cell::Empty);
        buf.extend(
            r.iter()
                .take(asm.column_limit().saturating_sub(start_col))
                .map(from_data),
        );
        asm.feed(
            visitor,
            &name,
            epoch,
            u64::from(start_row) + i as u64 + 1,
            &buf,
        )?;
    }
    asm.finish("sheet")?;
    // its merges closure borrows `name`
    drop(asm);
    Ok(name)
}
