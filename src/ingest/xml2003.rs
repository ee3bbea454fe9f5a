//! Excel 2003 XML spreadsheets (SpreadsheetML): what many .NET and Java
//! ERP and report tools export as "Excel", under an `.xls` name, and what
//! Excel and LibreOffice open (LibreOffice's filter `MS Excel 2003 XML`).
//! calamine does not read them, so this streams the XML with quick-xml:
//! a first pass lists the sheets (names, visibility, the 1904 date
//! system) so that the sheet is chosen as for any workbook, and a second
//! one hands the chosen sheet's cells to the same row assembly as the
//! other formats. A configured `sheet` found by its name is read on from
//! the first pass, with no second. Merged cells are marked on their first cell
//! (`ss:MergeAcross`, `ss:MergeDown`) and collected on the way.

use std::cell::RefCell;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::rc::Rc;

use calamine::{Sheet, SheetType, SheetVisible};
use chrono::NaiveDateTime;
use quick_xml::events::{BytesStart, Event};

use super::coerce::{Cell, Epoch};
use super::excel::{
    check_dimensions, header_cells, merges_read_through, pick_sheet, stream_collecting_merges,
    NextCell, ScannedHeaders, MAX_CELL_BYTES, MAX_COLS, MAX_ROWS,
};
use super::reader::{FileError, Visitor};
use super::record::{column_letters, MergedBlock};

/// Whether the first bytes of a file are those of an Excel 2003 XML
/// spreadsheet: its namespace on the `Workbook` element near the start,
/// in a file that is no HTML page (Excel's "Web Page" exports declare
/// Office namespaces too, and are read as HTML). The markers are ASCII,
/// so a GBK file needs no decoding here.
pub fn is_xml2003(head: &[u8]) -> bool {
    !super::html::is_html(head)
        && String::from_utf8_lossy(head)
            .to_ascii_lowercase()
            .contains("urn:schemas-microsoft-com:office:spreadsheet")
}

/// Reads one sheet (`sheet`, else the first visible worksheet) of the
/// spreadsheet at `path`; returns the sheet's name.
pub fn read(
    path: &Path,
    sheet: Option<&str>,
    header_row: Option<u32>,
    visitor: &mut dyn Visitor,
) -> Result<String, FileError> {
    let (book, found) = Book::scan(path, sheet.is_none().then_some(header_row), sheet)?;
    let (name, mut cells) = match found {
        Some(found) => found,
        None => {
            let name = pick_sheet(&book.sheets, sheet)?;
            let cells = SheetCells::open(path, &name)?;
            (name, cells)
        }
    };
    visitor.sheet(&name);
    if sheet.is_none() {
        book.headers.visit_others(&book.sheets, &name, visitor);
    }
    let merges = Rc::clone(&cells.merges);
    stream_collecting_merges(&name, book.epoch, header_row, merges, visitor, || {
        cells.next_cell()
    })?;
    Ok(name)
}

/// The merged cells of the sheet `sheet`, read anew.
pub fn merges(path: &Path, sheet: &str) -> Result<Vec<MergedBlock>, FileError> {
    let mut cells = SheetCells::open(path, sheet)?;
    let merges = Rc::clone(&cells.merges);
    merges_read_through(&merges, || cells.next_cell())
}

/// What the first pass learns of a spreadsheet.
struct Book {
    sheets: Vec<Sheet>,
    epoch: Epoch,
    /// each sheet's header row as `header_cells` finds it, when asked
    /// for (no `sheet` configured: the other sheets are looked at)
    headers: ScannedHeaders,
}

/// What the first pass needs of one XML event.
enum Seen {
    Table(String),
    /// its name, and whether it is empty (`<Worksheet …/>`)
    Worksheet(String, bool),
    Date1904,
    Visible,
    Visibility(Option<SheetVisible>),
    VisibleEnd,
    Eof,
    Other,
}

impl Seen {
    /// What an element's start (`empty`: with no content) tells the first
    /// pass, but a `Table`'s.
    fn element(e: &BytesStart<'_>, empty: bool) -> Self {
        match e.local_name().as_ref() {
            "Worksheet" => Seen::Worksheet(attribute(e, "Name").unwrap_or_default(), empty),
            "Date1904" => Seen::Date1904,
            "Visible" => Seen::Visible,
            _ => Seen::Other,
        }
    }
}

impl Book {
    /// The first pass. With `headers` (the source's `header_row`), each
    /// sheet's header row is read on the way, so that looking at the
    /// other sheets costs no pass of its own per sheet; the rest of each
    /// table is skipped.
    ///
    /// It stops at the start of the worksheet named `wanted` (as
    /// `pick_sheet` first matches it, trimmed) when the file has one: the
    /// cells read on from there are that sheet's, so the file is read
    /// once, not once to list its sheets and again to find the chosen one.
    /// The 1904 date system is declared in `ExcelWorkbook`, which the
    /// format puts before the worksheets. A name matched only ignoring
    /// case, or none, reads on to the end: `pick_sheet` decides on the
    /// whole list.
    fn scan(
        path: &Path,
        headers: Option<Option<u32>>,
        wanted: Option<&str>,
    ) -> Result<(Self, Option<(String, SheetCells)>), FileError> {
        let mut cells = SheetCells::new(reader(path)?, false);
        let mut book = Self {
            sheets: Vec::new(),
            epoch: Epoch::declared(false),
            headers: ScannedHeaders::default(),
        };
        // inside `<Visible>` of a sheet's options
        let mut in_visible = false;
        loop {
            cells.buf.clear();
            let seen = match cells
                .xml
                .read_event_into(&mut cells.buf)
                .map_err(|e| malformed(&cells.xml, &e))?
            {
                Event::Start(e) if e.local_name().as_ref() == "Table" => {
                    Seen::Table(e.name().as_ref().to_string())
                }
                Event::Start(e) => Seen::element(&e, false),
                // `<Worksheet ss:Name="…"/>`: a sheet without cells
                Event::Empty(e) => Seen::element(&e, true),
                Event::Text(t) if in_visible => Seen::Visibility(match t.trim() {
                    "SheetHidden" => Some(SheetVisible::Hidden),
                    "SheetVeryHidden" => Some(SheetVisible::VeryHidden),
                    _ => None,
                }),
                Event::End(e) if e.local_name().as_ref() == "Visible" => Seen::VisibleEnd,
                Event::Eof => Seen::Eof,
                _ => Seen::Other,
            };
            match seen {
                Seen::Table(table) => {
                    if let (Some(header_row), Some(sheet)) = (headers, book.sheets.last()) {
                        cells.restart();
                        let header = header_cells(header_row, || cells.next_cell());
                        book.headers
                            .insert(&sheet.name, header, cells.merges.take());
                    }
                    // the cells are the second pass's
                    if !cells.done {
                        cells.buf.clear();
                        cells
                            .xml
                            .read_to_end_into(quick_xml::name::QName(&table), &mut cells.buf)
                            .map_err(|e| malformed(&cells.xml, &e))?;
                    }
                }
                Seen::Worksheet(name, empty) => {
                    let chosen = wanted.is_some_and(|w| name.trim() == w.trim());
                    book.sheets.push(Sheet {
                        name: name.clone(),
                        typ: SheetType::WorkSheet,
                        visible: SheetVisible::Visible,
                    });
                    if chosen {
                        cells.restart();
                        cells.done = empty;
                        return Ok((book, Some((name, cells))));
                    }
                }
                Seen::Date1904 => book.epoch = Epoch::declared(true),
                Seen::Visible => in_visible = true,
                Seen::Visibility(Some(hidden)) => {
                    if let Some(sheet) = book.sheets.last_mut() {
                        sheet.visible = hidden;
                    }
                }
                Seen::VisibleEnd => in_visible = false,
                Seen::Eof => return Ok((book, None)),
                Seen::Visibility(None) | Seen::Other => {}
            }
        }
    }
}

type Xml = quick_xml::Reader<Box<dyn BufRead>>;

/// The file as UTF-8 XML: decoded from UTF-16 after its BOM (.NET
/// exporters writing `Encoding.Unicode`), else from the encoding its
/// declaration names (`GB2312`, `GBK`: some Chinese exporters write one).
fn reader(path: &Path) -> Result<Xml, FileError> {
    let head = super::guard::first_bytes(path, 512).map_err(|e| cannot_open(&e))?;
    let declared = match encoding_rs::Encoding::for_bom(&head) {
        Some((encoding, _)) if encoding != encoding_rs::UTF_8 => Some(encoding),
        _ => declared_encoding(&head),
    };
    let file = File::open(path).map_err(|e| cannot_open(&e))?;
    let text: Box<dyn BufRead> = match declared {
        Some(encoding) if encoding != encoding_rs::UTF_8 => Box::new(BufReader::new(
            encoding_rs_io::DecodeReaderBytesBuilder::new()
                .encoding(Some(encoding))
                .build(file),
        )),
        _ => Box::new(BufReader::new(file)),
    };
    let mut xml = quick_xml::Reader::from_reader(text);
    xml.config_mut().trim_text(false);
    Ok(xml)
}

/// The encoding an XML declaration names, if encoding_rs knows it.
fn declared_encoding(head: &[u8]) -> Option<&'static encoding_rs::Encoding> {
    let text = String::from_utf8_lossy(head);
    let declaration = text.split_once("?>")?.0;
    let after = declaration.split_once("encoding=")?.1;
    let quote = after.chars().next()?;
    let label = after.get(1..)?.split(quote).next()?;
    encoding_rs::Encoding::for_label(label.trim().as_bytes())
}

fn cannot_open(e: &impl std::fmt::Display) -> FileError {
    FileError::CannotOpen(e.to_string())
}

/// Why the XML could not be read. Text that is not UTF-8 where the
/// declaration names no other encoding is most often a GBK export that
/// does not say so, which is the exporter's to fix.
fn malformed(xml: &Xml, e: &quick_xml::Error) -> FileError {
    let at = xml.buffer_position();
    FileError::CannotOpen(match e {
        quick_xml::Error::Encoding(_) => format!(
            "the text is not UTF-8, which the file's XML declaration says or, naming no \
             encoding, implies (at byte {at}): an export written in GBK must declare \
             `encoding=\"GBK\"`; open it in Excel or LibreOffice and save it as .xlsx"
        ),
        _ => format!("not a well-formed Excel 2003 XML spreadsheet: {e} (at byte {at})"),
    })
}

/// The value of the attribute whose local name is `name` (`ss:Index` and
/// `Index` alike), XML escapes resolved.
fn attribute(e: &BytesStart<'_>, name: &str) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref() == name)
        .and_then(|a| super::merges::value(&a))
}

/// A count attribute (`ss:Index`, 1-based, `ss:MergeAcross`); `None`
/// when absent, an error when not a number.
fn number(e: &BytesStart<'_>, name: &str) -> Result<Option<u32>, FileError> {
    attribute(e, name).map(|v| count(name, &v)).transpose()
}

fn count(name: &str, value: &str) -> Result<u32, FileError> {
    value.trim().parse::<u32>().map_err(|_| {
        FileError::CannotOpen(format!(
            "not a well-formed Excel 2003 XML spreadsheet: `{name}` is `{value}`, not a count"
        ))
    })
}

/// Refuses a table declaring more rows or columns than Excel allows.
fn check_table(e: &BytesStart<'_>) -> Result<(), FileError> {
    let rows = number(e, "ExpandedRowCount")?.unwrap_or(0);
    let cols = number(e, "ExpandedColumnCount")?.unwrap_or(0);
    check_dimensions((0, 0), (rows.saturating_sub(1), cols.saturating_sub(1)))
}

/// What a `Cell` says of its place and formula, read in one pass over its
/// attributes (a cell has a few; this runs once per cell).
#[derive(Default)]
struct CellAttributes {
    /// `ss:Index`, 1-based
    index: Option<u32>,
    across: u32,
    down: u32,
    formula: Option<String>,
}

impl CellAttributes {
    fn of(e: &BytesStart<'_>) -> Result<Self, FileError> {
        let mut out = Self::default();
        for a in e.attributes().with_checks(false).flatten() {
            let name = a.key.local_name();
            let name = name.as_ref();
            if !matches!(name, "Index" | "MergeAcross" | "MergeDown" | "Formula") {
                continue;
            }
            let value = a
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|e| cannot_open(&e))?;
            match name {
                "Index" => out.index = Some(count(name, &value)?),
                "MergeAcross" => out.across = count(name, &value)?,
                "MergeDown" => out.down = count(name, &value)?,
                _ => out.formula = Some(value.into_owned()),
            }
        }
        Ok(out)
    }
}

/// The cells of one sheet, in file order.
struct SheetCells {
    xml: Xml,
    buf: Vec<u8>,
    at: Cursor,
    /// the sheet's merged cells read so far
    merges: Rc<RefCell<Vec<MergedBlock>>>,
    done: bool,
}

/// Where the next cell goes: rows and cells carry an index only when they
/// skip some.
#[derive(Default)]
struct Cursor {
    /// 0-based row of the current `Row`
    row: Option<u32>,
    /// 0-based column of the next cell
    col: u32,
}

/// A cell being read: its position, formula, type and text so far.
struct Pending {
    at: (u32, u32),
    formula: Option<String>,
    kind: Option<String>,
    text: Option<String>,
}

impl SheetCells {
    /// Positioned at the start of the sheet `name`.
    fn open(path: &Path, name: &str) -> Result<Self, FileError> {
        let mut xml = reader(path)?;
        let mut buf = Vec::new();
        let done = loop {
            match xml
                .read_event_into(&mut buf)
                .map_err(|e| malformed(&xml, &e))?
            {
                Event::Start(e)
                    if e.local_name().as_ref() == "Worksheet"
                        && attribute(&e, "Name").as_deref() == Some(name) =>
                {
                    break false;
                }
                // `<Worksheet ss:Name="…"/>`: a sheet without cells
                Event::Empty(e)
                    if e.local_name().as_ref() == "Worksheet"
                        && attribute(&e, "Name").as_deref() == Some(name) =>
                {
                    break true;
                }
                Event::Eof => {
                    return Err(FileError::CannotOpen(format!("sheet `{name}` not found")));
                }
                _ => {}
            }
            buf.clear();
        };
        let mut cells = Self::new(xml, done);
        cells.buf = buf;
        Ok(cells)
    }

    fn new(xml: Xml, done: bool) -> Self {
        Self {
            xml,
            buf: Vec::new(),
            at: Cursor::default(),
            merges: Rc::default(),
            done,
        }
    }

    /// Ready for the cells of another table, read from where the reader is.
    fn restart(&mut self) {
        self.at = Cursor::default();
        self.done = false;
        self.merges.take();
    }

    fn next_cell(&mut self) -> NextCell {
        let mut pending: Option<Pending> = None;
        // inside `<Data>`, and inside a cell's `<Comment>`, whose own
        // `<Data>` is the comment's text, not the cell's value
        let mut in_data = false;
        let mut in_comment = false;
        while !self.done {
            self.buf.clear();
            let event = self
                .xml
                .read_event_into(&mut self.buf)
                .map_err(|e| malformed(&self.xml, &e))?;
            match event {
                Event::Text(t) if in_data => {
                    if let Some(Pending {
                        text: Some(s), at, ..
                    }) = &mut pending
                    {
                        s.push_str(&t.xml_content(quick_xml::XmlVersion::Implicit1_0));
                        if s.len() > MAX_CELL_BYTES {
                            return Err(FileError::CannotOpen(format!(
                                "cell {}{} holds more text than a cell can (Excel allows 32,767 characters)",
                                column_letters(at.1 as usize),
                                at.0 + 1
                            )));
                        }
                    }
                }
                Event::GeneralRef(r) if in_data => {
                    let resolved = entity(&r).ok_or_else(|| {
                        FileError::CannotOpen(format!(
                            "not a well-formed Excel 2003 XML spreadsheet: unknown entity `&{};` (at byte {})",
                            &*r,
                            self.xml.buffer_position()
                        ))
                    })?;
                    if let Some(Pending { text: Some(s), .. }) = &mut pending {
                        s.push(resolved);
                    }
                }
                Event::CData(t) if in_data => {
                    if let Some(Pending { text: Some(s), .. }) = &mut pending {
                        s.push_str(&t);
                    }
                }
                Event::Start(e) => match e.local_name().as_ref() {
                    "Row" => self.at.start_row(&e)?,
                    "Cell" => pending = Some(self.at.start_cell(&e, &self.merges)?),
                    "Data" if !in_comment => {
                        if let Some(p) = &mut pending {
                            p.kind = attribute(&e, "Type");
                            p.text = Some(String::new());
                            in_data = true;
                        }
                    }
                    "Comment" => in_comment = true,
                    "Table" => check_table(&e)?,
                    _ => {}
                },
                Event::Empty(e) => match e.local_name().as_ref() {
                    "Row" => self.at.start_row(&e)?,
                    "Cell" => {
                        // a styled empty cell, or the first of empty merged
                        // cells; a formula without its result
                        let empty = self.at.start_cell(&e, &self.merges)?;
                        if let Some(formula) = empty.formula {
                            return Ok(Some((empty.at, uncalculated(&formula))));
                        }
                    }
                    "Table" => check_table(&e)?,
                    _ => {}
                },
                Event::End(e) => match e.local_name().as_ref() {
                    "Data" if !in_comment => in_data = false,
                    "Cell" => {
                        if let Some(p) = pending.take() {
                            if let Some(cell) = p.cell() {
                                return Ok(Some((p.at, cell)));
                            }
                        }
                    }
                    "Comment" => in_comment = false,
                    // what follows a table (its sheet's options) is not
                    // cells, and the first pass reads it
                    "Table" | "Worksheet" => self.done = true,
                    _ => {}
                },
                // a sheet's table or the sheet itself ends the cells: a
                // file ending first was cut short, and its rows so far
                // must not load as the whole file
                Event::Eof => {
                    return Err(FileError::CannotOpen(format!(
                        "not a well-formed Excel 2003 XML spreadsheet: the file ends inside a \
                         sheet's table (at byte {}): it was cut short, as by an interrupted \
                         download or copy",
                        self.xml.buffer_position()
                    )));
                }
                _ => {}
            }
        }
        Ok(None)
    }
}

impl Cursor {
    fn start_row(&mut self, e: &BytesStart<'_>) -> Result<(), FileError> {
        let next = self.row.map_or(0, |r| r.saturating_add(1));
        let row = match number(e, "Index")? {
            // rows come in order, as Excel requires: one placed above the
            // last would be read out of place
            Some(index) if index == 0 || index - 1 < next => {
                return Err(out_of_order("row", index, next));
            }
            Some(index) => index - 1,
            None => next,
        };
        if row >= MAX_ROWS {
            check_dimensions((0, 0), (row, 0))?;
        }
        self.row = Some(row);
        self.col = 0;
        Ok(())
    }

    /// Reads a `Cell`'s attributes, records its merged cells and moves the
    /// column past them.
    fn start_cell(
        &mut self,
        e: &BytesStart<'_>,
        merges: &RefCell<Vec<MergedBlock>>,
    ) -> Result<Pending, FileError> {
        let row = self.row.unwrap_or(0);
        let attributes = CellAttributes::of(e)?;
        let col = match attributes.index {
            Some(index) if index == 0 || index - 1 < self.col => {
                return Err(out_of_order("cell", index, self.col));
            }
            Some(index) => index - 1,
            None => self.col,
        };
        let (across, down) = (attributes.across, attributes.down);
        let last = (row.saturating_add(down), col.saturating_add(across));
        if last.0 >= MAX_ROWS || last.1 >= MAX_COLS {
            check_dimensions((0, 0), last)?;
        }
        if across > 0 || down > 0 {
            merges.borrow_mut().push(((row, col), last));
        }
        self.col = last.1.saturating_add(1);
        Ok(Pending {
            at: (row, col),
            formula: attributes.formula,
            kind: None,
            text: None,
        })
    }
}

impl Pending {
    /// The cell's value as its type says; a formula without a value is
    /// one with no saved result, as in an xlsx.
    fn cell(&self) -> Option<Cell> {
        let Some(text) = &self.text else {
            return self.formula.as_deref().map(uncalculated);
        };
        Some(match self.kind.as_deref() {
            Some("Number") => text
                .trim()
                .parse::<f64>()
                .map_or_else(|_| Cell::Text(text.clone()), Cell::Number),
            Some("DateTime") => {
                date_time(text).map_or_else(|| Cell::Text(text.clone()), Cell::DateTime)
            }
            Some("Boolean") => Cell::Bool(text.trim() == "1"),
            Some("Error") => Cell::Error(text.clone()),
            _ => Cell::Text(text.clone()),
        })
    }
}

/// A `Row` or `Cell` whose `ss:Index` (1-based) places it before the
/// next free place (0-based `next`).
fn out_of_order(what: &str, index: u32, next: u32) -> FileError {
    FileError::CannotOpen(format!(
        "not a well-formed Excel 2003 XML spreadsheet: a {what} has `ss:Index` {index}, before {} where the previous one ends",
        u64::from(next) + 1
    ))
}

/// The character an entity reference (`&lt;`, `&#10;`) stands for: XML's
/// five, or a character reference.
fn entity(r: &quick_xml::events::BytesRef<'_>) -> Option<char> {
    if let Ok(Some(c)) = r.resolve_char_ref() {
        return Some(c);
    }
    match &**r {
        "lt" => Some('<'),
        "gt" => Some('>'),
        "amp" => Some('&'),
        "apos" => Some('\''),
        "quot" => Some('"'),
        _ => None,
    }
}

fn uncalculated(formula: &str) -> Cell {
    Cell::Uncalculated {
        formula: Some(formula.trim_start_matches('=').to_string()),
        placeholder: false,
    }
}

/// `2026-10-01T00:00:00.000`, as SpreadsheetML writes a date cell.
fn date_time(text: &str) -> Option<NaiveDateTime> {
    let text = text.trim();
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S"))
        .ok()
}

/// A cell at its 0-based (row, column), for tests.
#[cfg(test)]
type Placed = ((u32, u32), Cell);

/// Reads everything left of a reader, for tests.
#[cfg(test)]
fn all_cells(path: &Path, sheet: &str) -> Vec<Placed> {
    read_on(&mut SheetCells::open(path, sheet).unwrap()).unwrap()
}

/// The cells left of `cells`, or the error that stops them, for tests.
#[cfg(test)]
fn read_on(cells: &mut SheetCells) -> Result<Vec<Placed>, FileError> {
    let mut out = Vec::new();
    while let Some(cell) = cells.next_cell()? {
        out.push(cell);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{all_cells, declared_encoding, merges, read_on, Book, Cell};
    use chrono::NaiveDate;

    const BOOK: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<?mso-application progid="Excel.Sheet"?>
<Workbook xmlns="urn:schemas-microsoft-com:office:spreadsheet" xmlns:ss="urn:schemas-microsoft-com:office:spreadsheet">
 <ExcelWorkbook xmlns="urn:schemas-microsoft-com:office:excel"><Date1904/></ExcelWorkbook>
 <Worksheet ss:Name="说明"><Table><Row><Cell><Data ss:Type="String">x</Data></Cell></Row></Table>
  <WorksheetOptions xmlns="urn:schemas-microsoft-com:office:excel"><Visible>SheetHidden</Visible></WorksheetOptions></Worksheet>
 <Worksheet ss:Name="流 &amp; 向"><Table ss:ExpandedColumnCount="5" ss:ExpandedRowCount="9">
  <Row><Cell ss:MergeDown="1"><Data ss:Type="String">日期</Data></Cell><Cell ss:MergeAcross="1"><Data ss:Type="String">销售</Data></Cell></Row>
  <Row><Cell ss:Index="2"><Data ss:Type="String">数量</Data></Cell><Cell><Data ss:Type="String">金额</Data></Cell></Row>
  <Row ss:Index="5"><Cell><Data ss:Type="DateTime">2026-10-01T00:00:00.000</Data></Cell><Cell ss:Index="3"><Data ss:Type="Number">1.5E3</Data><Comment ss:Author="x"><ss:Data xmlns="http://www.w3.org/TR/REC-html40"><B>note</B></ss:Data></Comment></Cell><Cell><Data ss:Type="String">a &lt;b&gt;<B>c</B></Data></Cell></Row>
  <Row/>
  <Row><Cell ss:Formula="=1+1"/><Cell><Data ss:Type="Boolean">1</Data></Cell><Cell ss:Formula="=A1"><Data ss:Type="Error">#N/A</Data></Cell></Row>
 </Table></Worksheet>
</Workbook>"#;

    fn book() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("book.xls");
        std::fs::write(&path, BOOK).unwrap();
        (dir, path)
    }

    /// Sheets with their visibility and the date system come from the
    /// first pass; cells from the second, at their indexed positions, with
    /// merged cells moving the column and recorded.
    #[test]
    fn cells_sheets_and_merges_are_read_at_their_positions() {
        let (_dir, path) = book();
        let scanned = Book::scan(&path, None, None).unwrap().0;
        let names: Vec<_> = scanned
            .sheets
            .iter()
            .map(|s| (s.name.as_str(), s.visible))
            .collect();
        assert_eq!(
            names,
            [
                ("说明", calamine::SheetVisible::Hidden),
                ("流 & 向", calamine::SheetVisible::Visible)
            ]
        );
        assert_eq!(scanned.epoch, super::Epoch::E1904);
        // read with the header rows: the same sheets, and each one's first
        // non-empty row; the visibility after the first table still seen
        let with_headers = Book::scan(&path, Some(None), None).unwrap().0;
        assert_eq!(with_headers.sheets, scanned.sheets);
        let header = |name: &str| match with_headers.headers.get(name) {
            Some((Ok(found), _)) => (found.row, found.cells.clone()),
            _ => panic!("{name}"),
        };
        assert_eq!(header("说明"), (1, vec![Cell::Text("x".into())]));
        assert_eq!(
            header("流 & 向"),
            (
                1,
                vec![Cell::Text("日期".into()), Cell::Text("销售".into())]
            )
        );
        // the merges of the rows read for the header
        assert_eq!(
            with_headers.headers.get("流 & 向").map(|(_, m)| m.len()),
            Some(2)
        );
        let date = NaiveDate::from_ymd_opt(2026, 10, 1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap();
        assert_eq!(
            all_cells(&path, "流 & 向"),
            [
                ((0, 0), Cell::Text("日期".into())),
                ((0, 1), Cell::Text("销售".into())),
                ((1, 1), Cell::Text("数量".into())),
                ((1, 2), Cell::Text("金额".into())),
                ((4, 0), Cell::DateTime(date)),
                ((4, 2), Cell::Number(1500.0)),
                ((4, 3), Cell::Text("a <b>c".into())),
                (
                    (6, 0),
                    Cell::Uncalculated {
                        formula: Some("1+1".into()),
                        placeholder: false
                    }
                ),
                ((6, 1), Cell::Bool(true)),
                ((6, 2), Cell::Error("#N/A".into())),
            ]
        );
        assert_eq!(
            merges(&path, "流 & 向").unwrap(),
            [((0, 0), (1, 0)), ((0, 1), (0, 2))]
        );
    }

    /// A configured sheet found by its name (trimmed) is read on from the
    /// first pass: the cells and merges a second pass finds, with the date
    /// system declared before it. An empty sheet so found has no cells; a
    /// name that matches only ignoring case reads the whole list, for
    /// `pick_sheet` to prefer an exact match further on.
    #[test]
    fn a_named_sheet_is_read_on_from_the_first_pass() {
        let (_dir, path) = book();
        let (scanned, found) = Book::scan(&path, None, Some(" 流 & 向 ")).unwrap();
        let Some((name, mut cells)) = found else {
            panic!("the sheet was not found")
        };
        assert_eq!(name, "流 & 向");
        assert_eq!(scanned.epoch, super::Epoch::E1904);
        let read = read_on(&mut cells).unwrap();
        assert_eq!(read, all_cells(&path, "流 & 向"));
        assert_eq!(read.len(), 10);
        assert_eq!(*cells.merges.borrow(), [((0, 0), (1, 0)), ((0, 1), (0, 2))]);

        let dir = tempfile::tempdir().unwrap();
        let cased = dir.path().join("cased.xls");
        std::fs::write(
            &cased,
            r#"<Workbook xmlns="urn:schemas-microsoft-com:office:spreadsheet" xmlns:ss="urn:schemas-microsoft-com:office:spreadsheet">
 <Worksheet ss:Name="Flow"/>
 <Worksheet ss:Name="flow"><Table><Row><Cell><Data ss:Type="String">x</Data></Cell></Row></Table></Worksheet>
</Workbook>"#,
        )
        .unwrap();
        let (_, found) = Book::scan(&cased, None, Some("Flow")).unwrap();
        let Some((name, mut cells)) = found else {
            panic!("the sheet was not found")
        };
        assert_eq!(name, "Flow");
        assert_eq!(cells.next_cell().unwrap(), None);
        let (_, found) = Book::scan(&cased, None, Some("flow")).unwrap();
        let Some((_, mut cells)) = found else {
            panic!("the sheet was not found")
        };
        assert_eq!(
            cells.next_cell().unwrap(),
            Some(((0, 0), Cell::Text("x".into())))
        );
        let (listed, found) = Book::scan(&cased, None, Some("FLOW")).unwrap();
        assert!(found.is_none());
        assert_eq!(listed.sheets.len(), 2);
    }

    /// A file cut short after a whole row (an interrupted copy) is
    /// refused, whether its sheet was read on from the first pass or
    /// found again by a second: its rows so far are not the file.
    #[test]
    fn a_file_cut_short_inside_the_table_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut.xls");
        let cut = BOOK.find("  <Row/>").unwrap();
        std::fs::write(&path, &BOOK[..cut]).unwrap();
        let (_, found) = Book::scan(&path, None, Some("流 & 向")).unwrap();
        let (_, mut cells) = found.unwrap();
        let first_pass = read_on(&mut cells).unwrap_err().to_string();
        assert!(
            first_pass.contains("the file ends inside a sheet's table (at byte"),
            "{first_pass}"
        );
        let mut cells = super::SheetCells::open(&path, "流 & 向").unwrap();
        let second_pass = read_on(&mut cells).unwrap_err().to_string();
        assert_eq!(second_pass, first_pass);
    }

    /// Rows or cells placed before the last, and a cell holding more text
    /// than Excel allows, refuse the file instead of being misplaced or
    /// held whole.
    #[test]
    fn misplaced_rows_and_cells_and_giant_text_refuse_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.xls");
        let sheet = |rows: &str| {
            format!(
                r#"<?xml version="1.0"?><Workbook xmlns="urn:schemas-microsoft-com:office:spreadsheet" xmlns:ss="urn:schemas-microsoft-com:office:spreadsheet"><Worksheet ss:Name="S"><Table>{rows}</Table></Worksheet></Workbook>"#
            )
        };
        let error = |rows: &str| {
            std::fs::write(&path, sheet(rows)).unwrap();
            let mut cells = super::SheetCells::open(&path, "S").unwrap();
            loop {
                match cells.next_cell() {
                    Ok(Some(_)) => {}
                    Ok(None) => return None,
                    Err(e) => return Some(e.to_string()),
                }
            }
        };
        assert_eq!(
            error(r#"<Row ss:Index="3"/><Row ss:Index="2"/>"#).as_deref(),
            Some("not a well-formed Excel 2003 XML spreadsheet: a row has `ss:Index` 2, before 4 where the previous one ends")
        );
        assert_eq!(
            error(r#"<Row><Cell ss:MergeAcross="2"/><Cell ss:Index="2"/></Row>"#).as_deref(),
            Some("not a well-formed Excel 2003 XML spreadsheet: a cell has `ss:Index` 2, before 4 where the previous one ends")
        );
        let giant = format!(
            r#"<Row><Cell ss:Index="2"><Data ss:Type="String">{}</Data></Cell></Row>"#,
            "表".repeat(43_690)
        );
        assert_eq!(
            error(&giant).as_deref(),
            Some("cell B1 holds more text than a cell can (Excel allows 32,767 characters)")
        );
        assert_eq!(
            error(r#"<Row ss:Index="2"><Cell ss:Index="3"/></Row><Row/>"#),
            None
        );
    }

    /// A UTF-8 byte order mark before the declaration, as Windows
    /// programs write one, and rich text (`<Font>` inside `<Data>`).
    #[test]
    fn a_byte_order_mark_and_rich_text_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bom.xls");
        let book = "\u{feff}<?xml version=\"1.0\"?><Workbook xmlns=\"urn:schemas-microsoft-com:office:spreadsheet\" xmlns:ss=\"urn:schemas-microsoft-com:office:spreadsheet\" xmlns:html=\"http://www.w3.org/TR/REC-html40\"><Worksheet ss:Name=\"S\"><Table><Row><Cell><ss:Data ss:Type=\"String\" xmlns=\"http://www.w3.org/TR/REC-html40\"><Font html:Color=\"#FF0000\">客户</Font>编码</ss:Data></Cell></Row></Table></Worksheet></Workbook>";
        std::fs::write(&path, book).unwrap();
        assert!(super::is_xml2003(book.as_bytes()));
        assert_eq!(Book::scan(&path, None, None).unwrap().0.sheets.len(), 1);
        assert_eq!(
            all_cells(&path, "S"),
            [((0, 0), Cell::Text("客户编码".into()))]
        );
    }

    /// A .NET exporter's UTF-16 (little-endian, after its BOM, declared
    /// `utf-16`) is taken for Excel 2003 XML and read as the UTF-8 book.
    #[test]
    fn utf16_after_its_byte_order_mark_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("utf16.xls");
        let text = BOOK.replacen("UTF-8", "utf-16", 1);
        let utf16: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain(text.encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        std::fs::write(&path, utf16).unwrap();
        assert_eq!(
            super::super::guard::sniff(&path).unwrap(),
            super::super::guard::Format::Xml2003
        );
        let (_dir, utf8) = book();
        assert_eq!(
            Book::scan(&path, Some(None), None).unwrap().0.sheets,
            Book::scan(&utf8, Some(None), None).unwrap().0.sheets
        );
        assert_eq!(all_cells(&path, "流 & 向"), all_cells(&utf8, "流 & 向"));
    }

    /// GBK text under a declaration naming no encoding (so UTF-8) is
    /// refused saying so, not as a bare decoding error.
    #[test]
    fn gbk_text_declared_as_utf8_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gbk.xls");
        let book = r#"<?xml version="1.0"?><Workbook xmlns="urn:schemas-microsoft-com:office:spreadsheet" xmlns:ss="urn:schemas-microsoft-com:office:spreadsheet"><Worksheet ss:Name="流向"></Worksheet></Workbook>"#;
        std::fs::write(&path, encoding_rs::GBK.encode(book).0).unwrap();
        let Err(error) = Book::scan(&path, None, None) else {
            panic!("read");
        };
        assert_eq!(
            error.to_string(),
            "the text is not UTF-8, which the file's XML declaration says or, naming no encoding, \
             implies (at byte 166): an export written in GBK must declare `encoding=\"GBK\"`; open \
             it in Excel or LibreOffice and save it as .xlsx"
        );
    }

    #[test]
    fn the_declared_encoding_is_followed() {
        assert_eq!(
            declared_encoding(br#"<?xml version="1.0" encoding='GB2312'?><Workbook>"#),
            Some(encoding_rs::GBK)
        );
        assert_eq!(
            declared_encoding(br#"<?xml version="1.0" encoding="utf-8"?>"#),
            Some(encoding_rs::UTF_8)
        );
        assert_eq!(
            declared_encoding(br#"<?xml version="1.0"?><Workbook>"#),
            None
        );
    }
}
