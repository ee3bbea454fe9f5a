//! HTML tables saved under an `.xls` name: what many Chinese ERPs and web
//! reporting tools export as "Excel", and what Excel and LibreOffice open
//! as a sheet. calamine does not read them and no XML parser accepts their
//! tag soup (`<td nowrap>`, `<br>`, unquoted attributes), so this streams
//! the page through html5gum's WHATWG tokenizer, decoded from the charset
//! the page declares.
//!
//! A page's top-level tables are its sheets, in page order, named as
//! Excel's HTML export names them (`<x:Name>`) or LibreOffice's heads them,
//! else `Table1`, `Table2`…
//! A cell's value is its text, whitespace collapsed as a browser shows it
//! and `<br>` kept as a line break; where the exporter recorded the number
//! behind the text (Excel's `x:num`, LibreOffice's `sdval`) the number is
//! taken. `colspan`/`rowspan` place the following cells and are recorded
//! as merged cells, so a header in two rows reads as it does in a workbook.
//! The page is tokenized once (see `read`): a table is read when the
//! reader meets it, the other tables' header rows after its rows.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::rc::Rc;

use calamine::{Sheet, SheetType, SheetVisible};
use html5gum::emitters::callback::{Callback, CallbackEmitter, CallbackEvent};
use html5gum::{IoReader, Span, Tokenizer};

use super::coerce::{Cell, Epoch};
use super::excel::{
    header_cells, merges_read_through, pick_sheet, stream_collecting_merges, NextCell,
    ScannedHeaders, MAX_CELL_BYTES, MAX_COLS, MAX_ROWS,
};
use super::reader::{FileError, Visitor};
use super::record::{column_letters, MergedBlock};

/// The spans browsers honour (the HTML standard clamps larger values), so
/// a hostile `rowspan` cannot reserve a sheet's worth of cells.
const MAX_COLSPAN: u32 = 1_000;
const MAX_ROWSPAN: u32 = 65_534;
/// Bytes searched for the charset a page declares: the HTML standard has
/// browsers look in the first 1,024; exporters put it in `<head>`.
const CHARSET_BYTES: usize = 4_096;
/// Bytes looked at to tell UTF-8 from GB18030 in a page declaring no
/// charset: its head and style may be ASCII for some kilobytes.
const SNIFF_BYTES: u64 = 64 << 10;

/// Whether the first bytes of a file are an HTML page (or a bare table, as
/// some exporters write). The markers are ASCII, so a GBK page needs no
/// decoding here.
pub fn is_html(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    let text = text.trim_start_matches('\u{feff}').trim_start();
    text.contains("<html") || text.contains("<!doctype html") || text.starts_with("<table")
}

/// Whether a file starts as an HTML page or table does (`is_html` with
/// markup first), for a reader of text, where `<html` further on may be
/// a value.
pub fn starts_as_html(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(head);
    text.trim_start_matches('\u{feff}')
        .trim_start()
        .starts_with('<')
        && is_html(head)
}

/// Reads one table (`sheet`, else the first) of the page at `path`;
/// returns the name it is known by. The page is tokenized once, but where
/// `sheet` names no table of a page of one table (see `find_table`).
pub fn read(
    path: &Path,
    sheet: Option<&str>,
    header_row: Option<u32>,
    visitor: &mut dyn Visitor,
) -> Result<String, FileError> {
    let mut cells = TableCells::new(tokens(path)?);
    let name = match find_table(&mut cells, sheet)? {
        Found::Here(name) => name,
        Found::Only(name) => {
            cells = TableCells::open(path, 0)?;
            name
        }
    };
    visitor.sheet(&name);
    let merges = Rc::clone(&cells.merges);
    let read = stream_collecting_merges(
        &name,
        Epoch::declared(false),
        header_row,
        merges,
        visitor,
        || cells.next_cell(),
    );
    // the other tables are looked at after the rows, the page being read
    // once; only where their headers can matter: the read ended, was
    // stopped by the visitor, or found the header lacking (the note, or
    // the refusal, names tables headed like this one)
    let others_matter = matches!(
        read,
        Ok(()) | Err(FileError::Cancelled | FileError::MissingColumn { .. })
    );
    if sheet.is_none() && others_matter {
        let mut sheets = vec![worksheet(name.clone())];
        let mut headers = ScannedHeaders::default();
        // a page failing past the table read loses only the note
        let _ = other_headers(&mut cells, header_row, &mut sheets, &mut headers);
        headers.visit_others(&sheets, &name, visitor);
    }
    read.map(|()| name)
}

/// The merged cells (`colspan`, `rowspan`) of the table known as `sheet`.
pub fn merges(path: &Path, sheet: &str) -> Result<Vec<MergedBlock>, FileError> {
    let mut cells = TableCells::new(tokens(path)?);
    if let Found::Only(_) = find_table(&mut cells, Some(sheet))? {
        cells = TableCells::open(path, 0)?;
    }
    let merges = Rc::clone(&cells.merges);
    merges_read_through(&merges, || cells.next_cell())
}

/// Where `find_table` left the reader.
enum Found {
    /// in the table of this name
    Here(String),
    /// at the page's end: its only table, of this name, is to be read
    Only(String),
}

/// Moves `cells` into the table `sheet` names (as `pick_sheet` matches
/// names), else the first. A page of one table offers no choice: it is
/// read whatever `sheet` says, since a source set up for the sheet of its
/// workbooks must read the ERP's page of the same data, which names no
/// sheet or another; that is known only at the page's end, so that table
/// is read in a second pass.
fn find_table(cells: &mut TableCells, sheet: Option<&str>) -> Result<Found, FileError> {
    let mut passed = Vec::new();
    while cells.seek_table()? {
        let table = [worksheet(cells.table_name())];
        if sheet.is_none_or(|wanted| pick_sheet(&table, Some(wanted)).is_ok()) {
            let [table] = table;
            return Ok(Found::Here(table.name));
        }
        passed.extend(table);
        while cells.next_cell()?.is_some() {}
    }
    match passed.as_mut_slice() {
        [] => Err(FileError::CannotOpen(
            "the file is an HTML page without a table, not a workbook, as an ERP's \"Excel\" \
             export that failed (a login or error page) is: export the data again"
                .into(),
        )),
        [only] => Ok(Found::Only(std::mem::take(&mut only.name))),
        // none matched: `pick_sheet` lists them
        _ => Err(pick_sheet(&passed, sheet)
            .err()
            .unwrap_or_else(|| FileError::CannotOpen("no table matches `sheet`".into()))),
    }
}

/// Reads the header row of each table after the one the reader is in
/// (whose rest it skips), for `ScannedHeaders::visit_others`.
fn other_headers(
    cells: &mut TableCells,
    header_row: Option<u32>,
    sheets: &mut Vec<Sheet>,
    headers: &mut ScannedHeaders,
) -> Result<(), FileError> {
    while cells.next_cell()?.is_some() {}
    while cells.seek_table()? {
        let name = cells.table_name();
        let header = header_cells(header_row, || cells.next_cell());
        headers.insert(&name, header, cells.merges.take());
        sheets.push(worksheet(name));
        while cells.next_cell()?.is_some() {}
    }
    Ok(())
}

/// A table as the sheet it stands for.
fn worksheet(name: String) -> Sheet {
    Sheet {
        name,
        typ: SheetType::WorkSheet,
        visible: SheetVisible::Visible,
    }
}

type Tokens = Tokenizer<IoReader<Box<dyn Read>>, CallbackEmitter<Events, Tok>>;

/// The tags the reader acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    Table,
    Row,
    /// `td`, `th`
    Cell,
    Br,
    /// `p`, `div`, `li`: a line of a cell's text
    Block,
    H1,
    Em,
}

impl Tag {
    /// Tag names come lowercased from the tokenizer.
    fn of(name: &[u8]) -> Option<Self> {
        Some(match name {
            b"table" => Self::Table,
            b"tr" => Self::Row,
            b"td" | b"th" => Self::Cell,
            b"br" => Self::Br,
            b"p" | b"div" | b"li" => Self::Block,
            b"h1" => Self::H1,
            b"em" => Self::Em,
            _ => return None,
        })
    }
}

/// What the reader needs of the page's tokens: a table of 100,000 rows
/// is a million tags, so no other tag, attribute or string is copied.
#[derive(Debug)]
enum Tok {
    Start {
        tag: Tag,
        /// a cell's `rowspan`, `colspan`: 1 when absent
        spans: (u32, u32),
        /// a cell's `x:num` or `sdval`
        number: Option<f64>,
    },
    End(Tag),
    Text(Vec<u8>),
    /// a string of white space only (between tags, mostly)
    Space,
    /// a comment that may name Excel's sheets
    Comment(Vec<u8>),
}

/// The attributes of a cell the reader takes.
#[derive(Clone, Copy)]
enum Attribute {
    Rowspan,
    Colspan,
    Number,
}

/// Turns the tokenizer's events into `Tok`s.
struct Events {
    open: Option<Tag>,
    attribute: Option<Attribute>,
    spans: (u32, u32),
    number: Option<f64>,
}

impl Callback<Tok, ()> for Events {
    fn handle_event(&mut self, event: CallbackEvent<'_>, _span: Span<()>) -> Option<Tok> {
        match event {
            CallbackEvent::OpenStartTag { name } => {
                self.open = Tag::of(name);
                self.attribute = None;
                self.spans = (1, 1);
                self.number = None;
                None
            }
            CallbackEvent::AttributeName { name } => {
                self.attribute = match (self.open, name) {
                    (Some(Tag::Cell), b"rowspan") => Some(Attribute::Rowspan),
                    (Some(Tag::Cell), b"colspan") => Some(Attribute::Colspan),
                    (Some(Tag::Cell), b"x:num" | b"sdval") => Some(Attribute::Number),
                    _ => None,
                };
                None
            }
            CallbackEvent::AttributeValue { value } => {
                let text = || String::from_utf8_lossy(value).trim().to_string();
                let span = |most: u32| text().parse::<u32>().map_or(1, |n| n.clamp(1, most));
                match self.attribute.take() {
                    Some(Attribute::Rowspan) => self.spans.0 = span(MAX_ROWSPAN),
                    Some(Attribute::Colspan) => self.spans.1 = span(MAX_COLSPAN),
                    Some(Attribute::Number) if self.number.is_none() => {
                        self.number = text().parse::<f64>().ok().filter(|n| n.is_finite());
                    }
                    _ => {}
                }
                None
            }
            CallbackEvent::CloseStartTag { .. } => self.open.take().map(|tag| Tok::Start {
                tag,
                spans: self.spans,
                number: self.number,
            }),
            CallbackEvent::EndTag { name } => Tag::of(name).map(Tok::End),
            CallbackEvent::String { value } => Some(if value.iter().all(u8::is_ascii_whitespace) {
                Tok::Space
            } else {
                Tok::Text(value.to_vec())
            }),
            CallbackEvent::Comment { value } => {
                let names = memchr::memmem::find(value, b"<x:Name>").is_some();
                names.then(|| Tok::Comment(value.to_vec()))
            }
            CallbackEvent::Doctype { .. } | CallbackEvent::Error(_) => None,
        }
    }
}

/// The page's tokens, its text decoded from the charset it declares.
fn tokens(path: &Path) -> Result<Tokens, FileError> {
    let head = super::guard::first_bytes(path, SNIFF_BYTES).map_err(|e| cannot_open(&e))?;
    let encoding = page_encoding(&head);
    let file = File::open(path).map_err(|e| cannot_open(&e))?;
    let text: Box<dyn Read> = if encoding == encoding_rs::UTF_8 {
        Box::new(file)
    } else {
        Box::new(
            encoding_rs_io::DecodeReaderBytesBuilder::new()
                .encoding(Some(encoding))
                .build(file),
        )
    };
    let mut emitter = CallbackEmitter::new(Events {
        open: None,
        attribute: None,
        spans: (1, 1),
        number: None,
    });
    // the text of `<style>` and `<script>` is not markup
    emitter.naively_switch_states(true);
    Ok(Tokenizer::new_with_emitter(IoReader::new(text), emitter))
}

/// The page's encoding: its byte order mark, else the charset a `<meta>`
/// declares, else UTF-8 where its first bytes are UTF-8 and GB18030 where
/// they are not, which is what Excel on a Chinese Windows writes a page in
/// when nothing says otherwise.
fn page_encoding(head: &[u8]) -> &'static encoding_rs::Encoding {
    if let Some((encoding, _)) = encoding_rs::Encoding::for_bom(head) {
        return encoding;
    }
    if let Some(declared) = declared_charset(&head[..head.len().min(CHARSET_BYTES)]) {
        // a page cannot be UTF-16 once its ASCII markup was read as bytes
        return if declared == encoding_rs::UTF_16LE || declared == encoding_rs::UTF_16BE {
            encoding_rs::UTF_8
        } else {
            declared
        };
    }
    if super::guard::reads_as_utf8(head) {
        encoding_rs::UTF_8
    } else {
        encoding_rs::GB18030
    }
}

/// The encoding a `<meta charset="…">` or `<meta http-equiv="Content-Type"
/// content="text/html; charset=…">` names, if encoding_rs knows it.
fn declared_charset(head: &[u8]) -> Option<&'static encoding_rs::Encoding> {
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    let at = text.find("charset=")? + "charset=".len();
    let label: String = text[at..]
        .trim_start_matches(['"', '\''])
        .chars()
        .take_while(|c| !matches!(c, '"' | '\'' | ';' | '>' | '/') && !c.is_whitespace())
        .collect();
    encoding_rs::Encoding::for_label(label.as_bytes())
}

fn cannot_open(e: &impl std::fmt::Display) -> FileError {
    FileError::CannotOpen(e.to_string())
}

/// The cells of the table being read, in page order.
struct TableCells {
    tokens: Tokens,
    /// how deep in tables the tokens are: 1 in a top-level table
    depth: u32,
    /// 0-based row of the current `<tr>`, `None` before the first
    row: Option<u32>,
    /// 0-based column of the next cell
    col: u32,
    /// per column, the first row (0-based) a `rowspan` from above no
    /// longer covers
    covered_until: Vec<u32>,
    pending: Option<Pending>,
    ready: VecDeque<((u32, u32), Cell)>,
    /// the table's merged cells read so far
    merges: Rc<RefCell<Vec<MergedBlock>>>,
    /// the sheet names Excel's export lists, as met so far
    excel_names: Vec<String>,
    /// how many top-level tables the reader has moved into
    tables_met: usize,
    /// the sheet name LibreOffice's export heads the current table with
    heading: Option<String>,
}

/// A cell being read: where it is, the number its exporter recorded, its
/// text so far (bytes: the tokenizer may cut a character between two
/// strings, and ASCII whitespace is never part of one).
struct Pending {
    at: (u32, u32),
    number: Option<f64>,
    text: Vec<u8>,
}

impl TableCells {
    fn new(tokens: Tokens) -> Self {
        Self {
            tokens,
            depth: 0,
            row: None,
            col: 0,
            covered_until: Vec::new(),
            pending: None,
            ready: VecDeque::new(),
            merges: Rc::default(),
            excel_names: Vec::new(),
            tables_met: 0,
            heading: None,
        }
    }

    /// Positioned in the `index`th (0-based) top-level table.
    fn open(path: &Path, index: usize) -> Result<Self, FileError> {
        let mut cells = Self::new(tokens(path)?);
        for _ in 0..index {
            if !cells.seek_table()? {
                break;
            }
            while cells.next_cell()?.is_some() {}
        }
        if !cells.seek_table()? {
            return Err(FileError::CannotOpen(format!(
                "table {} not found in the page",
                index + 1
            )));
        }
        Ok(cells)
    }

    /// The name of the table the reader last moved into: the one Excel's
    /// export gives it in `<head>`, else LibreOffice's heading, else
    /// `Table1`, `Table2`… by its place in the page.
    fn table_name(&self) -> String {
        let index = self.tables_met.saturating_sub(1);
        self.excel_names
            .get(index)
            .or(self.heading.as_ref())
            .cloned()
            .unwrap_or_else(|| format!("Table{}", index + 1))
    }

    fn token(&mut self) -> Result<Option<Tok>, FileError> {
        self.tokens
            .next()
            .transpose()
            .map_err(|e| FileError::CannotOpen(format!("the page could not be read: {e}")))
    }

    /// Moves into the next top-level table; `false` at the page's end.
    /// Reads on the way the sheet names Excel's export declares, and the
    /// one LibreOffice's heads the table with: `<h1>Sheet 1: <em>流向</em></h1>`.
    fn seek_table(&mut self) -> Result<bool, FileError> {
        let (mut in_h1, mut in_em) = (false, false);
        let mut heading: Option<Vec<u8>> = None;
        while let Some(token) = self.token()? {
            match token {
                Tok::Start { tag, .. } => match tag {
                    Tag::Table => {
                        self.depth = 1;
                        self.row = None;
                        self.col = 0;
                        self.covered_until.clear();
                        self.merges.take();
                        self.tables_met += 1;
                        self.heading = heading
                            .map(|h| String::from_utf8_lossy(&h).trim().to_string())
                            .filter(|h| !h.is_empty());
                        return Ok(true);
                    }
                    Tag::H1 => in_h1 = true,
                    Tag::Em if in_h1 => {
                        in_em = true;
                        heading = Some(Vec::new());
                    }
                    _ => {}
                },
                Tok::End(Tag::H1) => in_h1 = false,
                Tok::End(Tag::Em) => in_em = false,
                Tok::Text(text) if in_em => {
                    if let Some(h) = &mut heading {
                        if h.len() < MAX_CELL_BYTES {
                            h.extend_from_slice(&text);
                        }
                    }
                }
                Tok::Comment(text) => self.excel_names.extend(excel_names(&text)),
                _ => {}
            }
        }
        Ok(false)
    }

    /// The table's next cell; `None` past its end.
    fn next_cell(&mut self) -> NextCell {
        loop {
            if let Some(cell) = self.ready.pop_front() {
                return Ok(Some(cell));
            }
            if self.depth == 0 {
                return Ok(None);
            }
            let Some(token) = self.token()? else {
                // `</table>` may not be left out (HTML lets a row's and a
                // cell's end go, not a table's): a page ending inside its
                // table was cut short (an interrupted download or copy),
                // and its rows so far must not load as the whole file
                return Err(FileError::CannotOpen(format!(
                    "the page ends inside table `{}`, without its `</table>`: it was cut \
                     short, as by an interrupted download or copy",
                    self.table_name()
                )));
            };
            let top = self.depth == 1;
            match token {
                Tok::Start { tag, spans, number } => match tag {
                    Tag::Table => self.depth += 1,
                    Tag::Row if top => self.start_row()?,
                    Tag::Cell if top => self.start_cell(spans, number)?,
                    Tag::Br => self.push_break(true),
                    // a nested table's cells are lines of the cell holding it
                    Tag::Cell | Tag::Row | Tag::Block => self.push_break(false),
                    Tag::H1 | Tag::Em => {}
                },
                Tok::End(tag) => match tag {
                    Tag::Table => {
                        self.depth -= 1;
                        if self.depth == 0 {
                            self.close_cell()?;
                        }
                    }
                    Tag::Cell | Tag::Row if top => self.close_cell()?,
                    Tag::Block => self.push_break(false),
                    _ => {}
                },
                Tok::Text(text) => self.push_text(&text)?,
                Tok::Space => self.push_text(b" ")?,
                Tok::Comment(_) => {}
            }
        }
    }

    fn start_row(&mut self) -> Result<(), FileError> {
        self.close_cell()?;
        let row = self.row.map_or(0, |r| r.saturating_add(1));
        if row >= MAX_ROWS {
            return Err(too_big(row, 0));
        }
        self.row = Some(row);
        self.col = 0;
        Ok(())
    }

    /// Places a `<td>` after the cells of its row and those `rowspan`s
    /// from above cover, and records its spans as merged cells.
    fn start_cell(
        &mut self,
        (down, across): (u32, u32),
        number: Option<f64>,
    ) -> Result<(), FileError> {
        self.close_cell()?;
        if self.row.is_none() {
            // a `<td>` without a `<tr>`, which browsers show as a row
            self.start_row()?;
        }
        let row = self.row.unwrap_or_default();
        let covered = |cells: &Self, col: u32| {
            cells
                .covered_until
                .get(col as usize)
                .is_some_and(|&until| until > row)
        };
        while covered(self, self.col) {
            self.col += 1;
        }
        let col = self.col;
        let last = (row.saturating_add(down - 1), col.saturating_add(across - 1));
        if last.0 >= MAX_ROWS || last.1 >= MAX_COLS {
            return Err(too_big(last.0, last.1));
        }
        if down > 1 {
            if self.covered_until.len() <= last.1 as usize {
                self.covered_until.resize(last.1 as usize + 1, 0);
            }
            for until in &mut self.covered_until[col as usize..=last.1 as usize] {
                *until = last.0 + 1;
            }
        }
        if down > 1 || across > 1 {
            self.merges.borrow_mut().push(((row, col), last));
        }
        self.col = last.1 + 1;
        self.pending = Some(Pending {
            at: (row, col),
            number,
            text: Vec::new(),
        });
        Ok(())
    }

    /// Ends the open cell's line: always at a `<br>` (`hard`), else
    /// (a block such as `<p>` starts or ends) unless the line is empty.
    fn push_break(&mut self, hard: bool) {
        if let Some(cell) = &mut self.pending {
            if hard || cell.text.last().is_some_and(|&b| b != b'\n') {
                cell.text.push(b'\n');
            }
        }
    }

    /// Adds text to the open cell, whitespace collapsed as a browser
    /// shows it.
    fn push_text(&mut self, text: &[u8]) -> Result<(), FileError> {
        let Some(cell) = &mut self.pending else {
            return Ok(());
        };
        for &b in text {
            if b.is_ascii_whitespace() {
                if cell.text.last().is_some_and(|&l| l != b' ' && l != b'\n') {
                    cell.text.push(b' ');
                }
            } else {
                cell.text.push(b);
            }
        }
        if cell.text.len() > MAX_CELL_BYTES {
            return Err(FileError::CannotOpen(format!(
                "cell {} holds more text than a cell can (Excel allows 32,767 characters)",
                address(cell.at)
            )));
        }
        Ok(())
    }

    fn close_cell(&mut self) -> Result<(), FileError> {
        let Some(cell) = self.pending.take() else {
            return Ok(());
        };
        // invalid bytes either stay (read as UTF-8) or were replaced by
        // U+FFFD (decoded): both are text the page's encoding cannot be
        let decoded = std::str::from_utf8(&cell.text).ok();
        let Some(text) = decoded.filter(|t| !t.contains('\u{fffd}')) else {
            return Err(FileError::CannotOpen(format!(
                "cell {} holds text that is not in the page's encoding (it shows `{}`): \
                 the page must declare its charset, as `<meta charset=\"GBK\">`; open it in \
                 Excel or LibreOffice and save it as .xlsx",
                address(cell.at),
                String::from_utf8_lossy(&cell.text)
            )));
        };
        let text = text
            .split('\n')
            .map(|line| line.trim_matches([' ', '\u{a0}']))
            .collect::<Vec<_>>()
            .join("\n");
        let text = text.trim_matches('\n');
        let value = match cell.number {
            Some(n) => Cell::Number(n),
            None if text.is_empty() => Cell::Empty,
            None => Cell::Text(text.to_string()),
        };
        if value != Cell::Empty {
            self.ready.push_back((cell.at, value));
        }
        Ok(())
    }
}

/// `B7` for 0-based (row, column).
fn address((row, col): (u32, u32)) -> String {
    format!("{}{}", column_letters(col as usize), u64::from(row) + 1)
}

fn too_big(row: u32, col: u32) -> FileError {
    FileError::CannotOpen(format!(
        "the table reaches cell {}, beyond the {MAX_ROWS} rows × {MAX_COLS} columns a sheet \
         can hold",
        address((row, col))
    ))
}

/// The sheet names in a comment of Excel's HTML export:
/// `<x:ExcelWorksheet><x:Name>流向</x:Name>…`.
fn excel_names(comment: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(comment);
    let mut names = Vec::new();
    let mut rest = text.as_ref();
    while let Some(start) = rest.find("<x:Name>") {
        rest = &rest[start + "<x:Name>".len()..];
        let Some(end) = rest.find("</x:Name>") else {
            break;
        };
        names.push(rest[..end].trim().to_string());
        rest = &rest[end..];
    }
    names
}

#[cfg(test)]
mod tests {
    use super::{find_table, page_encoding, tokens, Cell, Found, TableCells};

    /// Everything left of a table, for tests.
    fn all_cells(path: &std::path::Path, index: usize) -> Vec<((u32, u32), Cell)> {
        let mut cells = TableCells::open(path, index).unwrap();
        let mut out = Vec::new();
        while let Some(cell) = cells.next_cell().unwrap() {
            out.push(cell);
        }
        out
    }

    fn page(html: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("page.xls");
        std::fs::write(&path, html).unwrap();
        (dir, path)
    }

    fn text(s: &str) -> Cell {
        Cell::Text(s.into())
    }

    /// Spans place the cells after them, in their row and the rows below,
    /// and are recorded as merges; text is collapsed as a browser shows
    /// it; the exporter's number wins over its formatted text; a nested
    /// table is text of its cell; style text is no cell.
    #[test]
    fn spans_place_cells_and_text_reads_as_a_browser_shows_it() {
        let (_dir, path) = page(
            r#"<html><head><style>td { content: "<td>x</td>" }</style></head><body>
<table border=1>
 <tr><th rowspan=2>日期</th><th colspan="2">销售</th><td rowspan=3>备注</td></tr>
 <tr><td>数量</td><td>金额</td></tr>
 <tr><td x:num="46330">2026/11/4</td><td sdval="7" sdnum="1033;">7.00</td><td>  ¥1,234.50&nbsp;</td></tr>
 <tr><td>a &amp; b<br>  second   line </td><td><table><tr><td>in</td><td>ner</td></tr></table></td><td><br></td><td>=SUM(A1)</td>
</table></body></html>"#,
        );
        assert_eq!(
            all_cells(&path, 0),
            [
                ((0, 0), text("日期")),
                ((0, 1), text("销售")),
                ((0, 3), text("备注")),
                ((1, 1), text("数量")),
                ((1, 2), text("金额")),
                ((2, 0), Cell::Number(46330.0)),
                ((2, 1), Cell::Number(7.0)),
                ((2, 2), text("¥1,234.50")),
                ((3, 0), text("a & b\nsecond line")),
                ((3, 1), text("in\nner")),
                ((3, 3), text("=SUM(A1)")),
            ]
        );
        let mut cells = TableCells::open(&path, 0).unwrap();
        while cells.next_cell().unwrap().is_some() {}
        assert_eq!(
            *cells.merges.borrow(),
            [((0, 0), (1, 0)), ((0, 1), (0, 2)), ((0, 3), (2, 3))]
        );
    }

    /// The names of a page's tables, in page order.
    fn table_names(path: &std::path::Path) -> Vec<String> {
        let mut cells = TableCells::new(tokens(path).unwrap());
        let mut names = Vec::new();
        while cells.seek_table().unwrap() {
            names.push(cells.table_name());
            while cells.next_cell().unwrap().is_some() {}
        }
        names
    }

    /// Where `find_table` stops for `sheet`: the table's name, and whether
    /// it is the page's only one, found at its end.
    fn found(path: &std::path::Path, sheet: Option<&str>) -> Result<(String, bool), String> {
        let mut cells = TableCells::new(tokens(path).unwrap());
        match find_table(&mut cells, sheet) {
            Ok(Found::Here(name)) => Ok((name, false)),
            Ok(Found::Only(name)) => Ok((name, true)),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Top-level tables are sheets, named by Excel's export or
    /// LibreOffice's headings, else by their place; `sheet` picks one by
    /// name, but for a page of one table; a page without a table is
    /// named as such.
    #[test]
    fn tables_are_sheets_named_as_office_suites_name_them() {
        let (_dir, path) = page(
            "<html><head><!--[if gte mso 9]><xml><x:ExcelWorkbook><x:ExcelWorksheets>\
             <x:ExcelWorksheet><x:Name>流向</x:Name></x:ExcelWorksheet>\
             <x:ExcelWorksheet><x:Name>说明</x:Name></x:ExcelWorksheet>\
             </x:ExcelWorksheets></x:ExcelWorkbook></xml><![endif]--></head>\
             <body><table><tr><td>a</td></tr></table><p>x</p><table><tr><td>b</td></tr></table></body></html>",
        );
        assert_eq!(table_names(&path), ["流向", "说明"]);
        assert_eq!(found(&path, Some("说明")), Ok(("说明".into(), false)));
        assert_eq!(found(&path, Some(" 流向 ")), Ok(("流向".into(), false)));
        assert_eq!(found(&path, None), Ok(("流向".into(), false)));
        assert_eq!(all_cells(&path, 1), [((0, 0), text("b"))]);

        // LibreOffice heads each sheet's table
        let (_dir, path) = page(
            "<body><h1>Overview</h1><a href=\"#table0\">流向</a><hr>\
             <A NAME=\"table0\"><h1>Sheet 1: <em>流向</em></h1></A><table><tr><td>a</td></tr></table>\
             <A NAME=\"table1\"><h1>Sheet 2: <em>说明</em></h1></A><table></table></body>",
        );
        assert_eq!(table_names(&path), ["流向", "说明"]);

        let (_dir, path) = page("<table><tr><td>a</td></tr></table><table></table><table></table>");
        assert_eq!(table_names(&path), ["Table1", "Table2", "Table3"]);
        let missing = found(&path, Some("流向")).unwrap_err();
        assert!(
            missing
                .contains("sheet `流向` not found; the workbook has `Table1`, `Table2`, `Table3`"),
            "{missing}"
        );

        let (_dir, path) = page("<table><tr><td>a</td></tr></table>");
        assert_eq!(found(&path, Some("流向")), Ok(("Table1".into(), true)));

        let (_dir, path) = page("<html><body><p>会话已过期，请重新登录</p></body></html>");
        let refused = found(&path, None).unwrap_err();
        assert!(
            refused.contains("an HTML page without a table"),
            "{refused}"
        );
    }

    /// The declared charset is followed; a page declaring none is UTF-8
    /// when it reads as UTF-8, else GB18030.
    #[test]
    fn the_page_encoding_is_declared_or_guessed_from_its_bytes() {
        let gbk = |s: &str| encoding_rs::GBK.encode(s).0.into_owned();
        let declared = [
            gbk(
                r#"<html><head><meta http-equiv="Content-Type" content="text/html; charset=gb2312"></head><body><table><tr><td>日期</td></tr></table>"#,
            ),
            gbk("<meta charset=GBK><table><tr><td>日期</td></tr></table>"),
            gbk("<html><table><tr><td>日期</td></tr></table>"),
        ];
        for bytes in declared {
            assert_ne!(page_encoding(&bytes), encoding_rs::UTF_8);
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("p.xls");
            std::fs::write(&path, &bytes).unwrap();
            assert_eq!(all_cells(&path, 0), [((0, 0), text("日期"))]);
        }
        assert_eq!(
            page_encoding("<html><td>日期</td>".as_bytes()),
            encoding_rs::UTF_8
        );
        // GBK bytes in a page that says UTF-8 are named with their cell
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.xls");
        let mut bytes = b"<meta charset=\"utf-8\"><table><tr><td>a</td><td>".to_vec();
        bytes.extend(gbk("日期"));
        bytes.extend(b"</td></tr></table>");
        std::fs::write(&path, &bytes).unwrap();
        let mut cells = TableCells::open(&path, 0).unwrap();
        assert_eq!(cells.next_cell().unwrap(), Some(((0, 0), text("a"))));
        let refused = cells.next_cell().unwrap_err().to_string();
        assert!(
            refused.contains("cell B1 holds text that is not in the page's encoding"),
            "{refused}"
        );
    }

    /// A page cut short inside its table (an interrupted copy) is refused,
    /// not read as the rows it has: HTML lets a cell's and a row's end
    /// go, not a table's.
    #[test]
    fn a_page_cut_short_inside_its_table_is_refused() {
        let (_dir, path) = page("<table><tr><td>a<tr><td>b</td></tr><tr><td>c</td></tr>\n");
        let mut cells = TableCells::open(&path, 0).unwrap();
        let mut read = Vec::new();
        let refused = loop {
            match cells.next_cell() {
                Err(e) => break e.to_string(),
                Ok(None) => panic!("the cut page read to its end without an error"),
                Ok(Some(cell)) => read.push(cell),
            }
        };
        assert_eq!(
            refused,
            "the page ends inside table `Table1`, without its `</table>`: \
             it was cut short, as by an interrupted download or copy"
        );
        assert_eq!(
            read,
            [
                ((0, 0), text("a")),
                ((1, 0), text("b")),
                ((2, 0), text("c"))
            ]
        );
        let (_dir, path) = page("<table><tr><td>a<tr><td>b</table>");
        assert_eq!(
            all_cells(&path, 0),
            [((0, 0), text("a")), ((1, 0), text("b"))]
        );
    }

    /// Spans beyond a sheet's size refuse the file; a huge `rowspan` is
    /// clamped as browsers clamp it.
    #[test]
    fn a_table_beyond_a_sheet_refuses_the_file() {
        let (_dir, path) =
            page(r#"<table><tr><td colspan=1000>a</td><td colspan=1000>b</td></tr></table>"#);
        let mut cells = TableCells::open(&path, 0).unwrap();
        let mut refused = None;
        for _ in 0..40 {
            match cells.next_cell() {
                Err(e) => {
                    refused = Some(e.to_string());
                    break;
                }
                Ok(None) => break,
                Ok(Some(_)) => {}
            }
        }
        assert!(refused.is_none(), "2,000 columns fit");
        let wide = format!(
            "<table><tr>{}</tr></table>",
            "<td colspan=1000>a</td>".repeat(17)
        );
        let (_dir, path) = page(&wide);
        let mut cells = TableCells::open(&path, 0).unwrap();
        let refused = loop {
            match cells.next_cell() {
                Err(e) => break e.to_string(),
                Ok(None) => panic!("17,000 columns must refuse"),
                Ok(Some(_)) => {}
            }
        };
        assert!(
            refused.contains("beyond the 1048576 rows × 16384 columns"),
            "{refused}"
        );
        let (_dir, path) = page("<table><tr><td rowspan=999999999>a</td></tr></table>");
        let mut cells = TableCells::open(&path, 0).unwrap();
        while cells.next_cell().unwrap().is_some() {}
        assert_eq!(*cells.merges.borrow(), [((0, 0), (65_533, 0))]);
    }
}
