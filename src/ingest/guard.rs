//! Pre-flight checks on spreadsheet containers, run before calamine sees a
//! file. They exist because some calamine code paths allocate from what a file
//! *declares* (xls `DIMENSIONS`, dense ranges, zip entry sizes) and an
//! allocation failure aborts the process instead of returning an error.
//! Each check reads only headers or record prefixes, never cell contents.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use chrono::NaiveDate;

use super::coerce::Epoch;
use super::reader::FileError;

/// A zip member may expand to at most this many times the whole file's size
/// once it is also large in absolute terms; real xlsx/ods files stay under 30×.
const MAX_ZIP_RATIO: u64 = 100;
/// Below this, any ratio is harmless: it is less than one batch of rows.
const ZIP_RATIO_FLOOR: u64 = 256 << 20;
/// Excel 97–2003 sheet limits (BIFF8); an xls declaring more is hostile.
const XLS_MAX_ROWS: u64 = 65_536;
const XLS_MAX_COLS: u64 = 256;

fn refuse(msg: String) -> FileError {
    FileError::CannotOpen(msg)
}

/// The workbook formats read (by calamine, but for Excel 2003 XML and HTML
/// tables), as a file's content shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// xlsx, xlsm and their templates: a zip with `xl/workbook.xml`;
    /// `recalculate` when it asks to be recalculated on opening (see
    /// `asks_recalculation`)
    Xlsx { recalculate: bool },
    /// a zip with `xl/workbook.bin`
    Xlsb,
    /// Excel 97–2003: an OLE compound file with a `Workbook` stream
    Xls,
    /// OpenDocument: a zip whose `mimetype` says spreadsheet
    Ods,
    /// an Excel 2003 XML spreadsheet (SpreadsheetML): XML text, read by
    /// `xml2003`, not calamine
    Xml2003,
    /// an HTML page (or a bare `<table>`), what many ERPs save as "Excel":
    /// read by `html`
    Html,
    /// tab-separated text, what ERPs save as "Excel" and Excel saves as
    /// "Unicode Text" (UTF-16) or "Text (Tab delimited)": read by `csv`
    /// with a tab, in `encoding`
    TabText { encoding: crate::config::Encoding },
}

const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
const EMPTY_ZIP_MAGIC: &[u8] = b"PK\x05\x06";
const OLE_MAGIC: &[u8] = &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
/// Enough of a file to tell HTML, XML and delimited text apart.
const SNIFF_BYTES: u64 = 4096;
/// Enough of a text file to tell UTF-8 from GB18030 by.
const TEXT_SNIFF_BYTES: u64 = 64 << 10;

/// What a file is, by its content, whatever its name says: Excel and
/// LibreOffice open an xlsx saved under an `.xls` name, so users expect it to
/// load, and an ERP's "Excel" export is often an HTML page (read as such)
/// or text named `.xls`, which deserves a message saying so rather than
/// calamine's.
/// A zip or OLE container also passes the checks below before calamine
/// sees it.
pub fn sniff(path: &Path) -> Result<Format, FileError> {
    let head = first_bytes(path, SNIFF_BYTES).map_err(|e| refuse(e.to_string()))?;
    match Container::of(&head) {
        Some(Container::Zip) => zip_container(path),
        Some(Container::Ole) => {
            if is_encrypted_ooxml(path) {
                return Err(refuse(
                    "the workbook is password-protected (encrypted); save it without a password"
                        .into(),
                ));
            }
            xls_dimensions(path)?;
            Ok(Format::Xls)
        }
        None => text_format(path, &head),
    }
}

/// What a file that is no container is, by the markers of its text.
fn text_format(path: &Path, head: &[u8]) -> Result<Format, FileError> {
    let markers = utf16_as_utf8(head);
    if super::xml2003::is_xml2003(&markers) {
        Ok(Format::Xml2003)
    } else if super::html::is_html(&markers) {
        Ok(Format::Html)
    } else if is_tab_text(head) {
        // told from more text than the markers need
        let start = first_bytes(path, TEXT_SNIFF_BYTES).map_err(|e| refuse(e.to_string()))?;
        Ok(Format::TabText {
            encoding: text_encoding(&start),
        })
    } else {
        Err(refuse(not_a_workbook(head)))
    }
}

/// The two containers every workbook format calamine reads comes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    /// xlsx, xlsm, xlsb, ods
    Zip,
    /// xls, and an encrypted xlsx
    Ole,
}

impl Container {
    /// The container a file's first bytes announce, if any.
    fn of(head: &[u8]) -> Option<Self> {
        if head.starts_with(ZIP_MAGIC) || head.starts_with(EMPTY_ZIP_MAGIC) {
            Some(Self::Zip)
        } else if head.starts_with(OLE_MAGIC) {
            Some(Self::Ole)
        } else {
            None
        }
    }
}

/// Up to `limit` bytes from the start of a file.
pub fn first_bytes(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::new();
    File::open(path)?.take(limit).read_to_end(&mut head)?;
    Ok(head)
}

/// The container a workbook file opens with, from its first bytes, for
/// readers of text formats to name a workbook given to them.
pub fn workbook_container(head: &[u8]) -> Option<&'static str> {
    Container::of(head).map(|container| match container {
        Container::Zip => "a zip container, as xlsx, xlsb and ods files are",
        Container::Ole => "an OLE compound file, as xls files are",
    })
}

/// UTF-16 text after its byte order mark as UTF-8, so that the ASCII
/// markers of HTML and XML are found in a page saved as Excel's "Unicode"
/// web page or a spreadsheet a .NET exporter wrote in UTF-16; any other
/// bytes as they are.
fn utf16_as_utf8(head: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    match encoding_rs::Encoding::for_bom(head) {
        Some((encoding, _)) if encoding != encoding_rs::UTF_8 => {
            let (text, _) = encoding.decode_with_bom_removal(head);
            std::borrow::Cow::Owned(text.into_owned().into_bytes())
        }
        _ => std::borrow::Cow::Borrowed(head),
    }
}

/// Whether the first bytes of a file are tab-separated text: UTF-16 after
/// its byte order mark (Excel's "Unicode Text"), or text without a NUL
/// byte holding a tab (not always on its first line: a title may come
/// first), as Excel opens a file named `.xls` that holds no workbook.
fn is_tab_text(head: &[u8]) -> bool {
    if head.starts_with(&[0xFF, 0xFE]) || head.starts_with(&[0xFE, 0xFF]) {
        return true;
    }
    !head.contains(&0) && head.contains(&b'\t')
}

/// The encoding of text that declares none (as a workbook's content does
/// not): a byte order mark says (UTF-8, UTF-16: the CSV reader's UTF-8
/// path decodes after either), else UTF-8 where the first 64 KiB read as
/// UTF-8 and GB18030 where they do not, which is what Excel on a Chinese
/// Windows writes text in.
pub fn text_encoding(head: &[u8]) -> crate::config::Encoding {
    use crate::config::Encoding;
    if encoding_rs::Encoding::for_bom(head).is_some() || reads_as_utf8(head) {
        Encoding::Utf8
    } else {
        Encoding::Gb18030
    }
}

/// Whether the start of a file is UTF-8, though perhaps cut mid-character
/// at the end of what was read: what tells UTF-8 from GB18030 in text
/// that declares neither.
pub fn reads_as_utf8(head: &[u8]) -> bool {
    match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    }
}

/// Names what a file that is neither a zip nor an OLE container holds, and
/// what to do with it.
fn not_a_workbook(head: &[u8]) -> String {
    if head.is_empty() {
        return "the file is empty: it holds 0 bytes, no workbook".into();
    }
    // tab-separated text, HTML and Excel 2003 XML are read (see `Format`);
    // the markers sought are ASCII, so GBK text needs no decoding here
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    let text = text.trim_start_matches('\u{feff}').trim_start();
    let first_line = text.lines().next().unwrap_or_default();
    if !head.contains(&0) && first_line.contains(',') {
        return "the file is comma-separated text, not a workbook: read it with a \
                `kind = \"csv\"` source"
            .into();
    }
    "not a workbook: the file is neither a zip container, as xlsx, xlsb and ods files are, nor \
     an OLE compound file, as xls files are"
        .into()
}

/// Refuses a zip container whose members declare an uncompressed size far
/// beyond the file's own (a zip bomb), or that holds no workbook; returns
/// which workbook it holds.
fn zip_container(path: &Path) -> Result<Format, FileError> {
    let file = File::open(path).map_err(|e| refuse(e.to_string()))?;
    let compressed = file.metadata().map_or(0, |m| m.len()).max(1);
    let mut zip = zip::ZipArchive::new(BufReader::new(file))
        .map_err(|e| refuse(format!("not a valid zip container: {e}")))?;
    let mut total: u64 = 0;
    let mut format = None;
    let mut package = false;
    for i in 0..zip.len() {
        let member = zip
            .by_index_raw(i)
            .map_err(|e| refuse(format!("not a valid zip container: {e}")))?;
        total = total.saturating_add(member.size());
        match member.name().as_deref() {
            Ok("xl/workbook.xml") => format = Some(Format::Xlsx { recalculate: false }),
            Ok("xl/workbook.bin") => format = Some(Format::Xlsb),
            Ok("_rels/.rels") => package = true,
            _ => {}
        }
    }
    if total > ZIP_RATIO_FLOOR && total / compressed > MAX_ZIP_RATIO {
        return Err(refuse(format!(
            "zip bomb suspected: {} KiB of file expands to {} MiB (more than {MAX_ZIP_RATIO}×)",
            compressed >> 10,
            total >> 20
        )));
    }
    match format {
        // the mark is read from the archive just checked, not opened again
        Some(Format::Xlsx { .. }) => Ok(Format::Xlsx {
            recalculate: asks_recalculation(&mut zip),
        }),
        Some(format) => Ok(format),
        None if is_ods(&mut zip) => Ok(Format::Ods),
        // an Open XML package whose workbook part has another name: calamine
        // follows `_rels/.rels` to it (or says what else the package holds)
        None if package => Ok(Format::Xlsx { recalculate: false }),
        None => Err(refuse(
            "a zip archive, not a workbook: it is neither an Open XML package nor an OpenDocument \
             spreadsheet; if it holds workbooks, unzip them into the inbox"
                .into(),
        )),
    }
}

/// Whether an xlsx asks to be recalculated when opened
/// (`<calcPr fullCalcOnLoad="1"/>` in `xl/workbook.xml`). Programs that
/// write formulas without calculating them set it, and store 0 as each
/// formula's result (XlsxWriter, rust_xlsxwriter; openpyxl stores none);
/// Excel drops it once it has calculated and saved the file. Any failure
/// reads as no: calamine reports a broken workbook on its own.
fn asks_recalculation<R: Read + std::io::Seek>(zip: &mut zip::ZipArchive<R>) -> bool {
    use quick_xml::events::Event;
    let Ok(workbook) = zip.by_name("xl/workbook.xml") else {
        return false;
    };
    let mut xml = quick_xml::Reader::from_reader(BufReader::new(workbook));
    let mut buf = Vec::new();
    loop {
        match xml.read_event_into(&mut buf) {
            Ok(Event::Empty(e) | Event::Start(e)) if e.local_name().as_ref() == "calcPr" => {
                return e
                    .try_get_attribute("fullCalcOnLoad")
                    .ok()
                    .flatten()
                    .is_some_and(|a| matches!(a.value.as_ref(), "1" | "true"));
            }
            Ok(Event::Eof) | Err(_) => return false,
            Ok(_) => {}
        }
        buf.clear();
    }
}

/// An OpenDocument package names its type in its `mimetype` member.
fn is_ods<R: Read + std::io::Seek>(zip: &mut zip::ZipArchive<R>) -> bool {
    let Ok(member) = zip.by_name("mimetype") else {
        return false;
    };
    let mut mimetype = String::new();
    member.take(128).read_to_string(&mut mimetype).is_ok()
        && mimetype
            .trim()
            .starts_with("application/vnd.oasis.opendocument.spreadsheet")
}

/// Excel saves a password-protected xlsx as an OLE compound file holding an
/// `EncryptedPackage` stream instead of a zip.
fn is_encrypted_ooxml(path: &Path) -> bool {
    cfb::open(path).is_ok_and(|cf| cf.is_stream("/EncryptedPackage"))
}

/// Cells calamine may hold for one xls workbook. It reads every sheet when
/// the workbook opens, each into a dense range over the bounding box of its
/// cells, at about 64 bytes a cell (values and formulas): one cell at A1 and
/// one at IV60001 cost 955 MB. This many keep it near 380 MB and still hold
/// a sheet of 65,536 rows × 91 columns.
pub const XLS_MAX_CELLS: u64 = 6_000_000;

/// The bounding box of one sheet's cells.
#[derive(Default)]
struct XlsBox {
    /// (first row, last row, first column, last column), once a cell is seen
    span: Option<(u64, u64, u64, u64)>,
}

impl XlsBox {
    fn add(&mut self, row: u64, first_col: u64, last_col: u64) {
        self.span = Some(match self.span {
            None => (row, row, first_col, last_col),
            Some((r0, r1, c0, c1)) => (
                r0.min(row),
                r1.max(row),
                c0.min(first_col),
                c1.max(last_col),
            ),
        });
    }

    fn cells(&self) -> u64 {
        self.span
            .map_or(0, |(r0, r1, c0, c1)| (r1 - r0 + 1) * (c1.max(c0) - c0 + 1))
    }
}

/// Refuses an xls whose sheets declare (in `DIMENSIONS`) or use (in a cell
/// record) rows or columns beyond the format's 65,536 × 256, or whose
/// sheets' cells span more than [`XLS_MAX_CELLS`] in all: calamine reserves
/// memory for the declared rectangle and for the used one.
fn xls_dimensions(path: &Path) -> Result<(), FileError> {
    let mut cf = cfb::open(path).map_err(|e| refuse(format!("not an xls workbook: {e}")))?;
    let stream = if cf.is_stream("/Workbook") {
        "/Workbook"
    } else if cf.is_stream("/Book") {
        "/Book"
    } else {
        return Err(refuse(
            "not an xls workbook: no `Workbook` stream (encrypted or another document type)".into(),
        ));
    };
    let mut data = BufReader::new(
        cf.open_stream(stream)
            .map_err(|e| refuse(format!("cannot read the `Workbook` stream: {e}")))?,
    );
    let mut header = [0u8; 4];
    let mut body = Vec::new();
    let mut total: u64 = 0;
    let mut sheet = XlsBox::default();
    let too_many = |cells: u64| {
        (cells > XLS_MAX_CELLS).then(|| refuse(format!(
            "the sheets' cells span over {XLS_MAX_CELLS} cells, more than salesbatch reads from an xls file; save it as xlsx or csv"
        )))
    };
    loop {
        match data.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(refuse(e.to_string())),
        }
        let typ = u16::from_le_bytes([header[0], header[1]]);
        let len = usize::from(u16::from_le_bytes([header[2], header[3]]));
        body.resize(len, 0);
        if data.read_exact(&mut body).is_err() {
            // a truncated tail is calamine's to report
            break;
        }
        let u16_at = |i: usize| u64::from(u16::from_le_bytes([body[i], body[i + 1]]));
        let (rows, cols) = match typ {
            // BOF and EOF delimit each sheet's substream
            0x0809 | 0x000A => {
                total = total.saturating_add(sheet.cells());
                sheet = XlsBox::default();
                if let Some(e) = too_many(total) {
                    return Err(e);
                }
                continue;
            }
            // DIMENSIONS (BIFF8): first row, last row + 1, first col, last col + 1
            0x0200 if len >= 14 => (
                u64::from(u32::from_le_bytes([body[4], body[5], body[6], body[7]])),
                u16_at(10),
            ),
            // MULRK, MULBLANK: row, first column, …, last column
            0x00BD | 0x00BE if len >= 6 => {
                let (row, first, last) = (u16_at(0), u16_at(2), u16_at(len - 2));
                sheet.add(row, first, last);
                (row + 1, last.max(first) + 1)
            }
            // the other cell records start with row (u16) and column (u16)
            0x0006 | 0x00D6 | 0x00FD | 0x0201 | 0x0203 | 0x0204 | 0x0205 | 0x027E if len >= 4 => {
                let (row, col) = (u16_at(0), u16_at(2));
                sheet.add(row, col, col);
                (row + 1, col + 1)
            }
            _ => continue,
        };
        if rows > XLS_MAX_ROWS || cols > XLS_MAX_COLS {
            return Err(refuse(format!(
                "sheet declares absurd dimensions ({rows} rows × {cols} columns, an xls sheet holds at most {XLS_MAX_ROWS} × {XLS_MAX_COLS})"
            )));
        }
        if let Some(e) = too_many(total.saturating_add(sheet.cells())) {
            return Err(e);
        }
    }
    too_many(total.saturating_add(sheet.cells())).map_or(Ok(()), Err)
}

/// calamine reads an ods workbook densely: every sheet's bounding box of
/// cells, with repeated rows and columns expanded, held twice (values and
/// formulas) at about 56 bytes a cell. This many cells keep that near
/// 340 MB, and still hold a sheet of Excel's 1,048,576 rows × 5 columns.
pub const ODS_MAX_CELLS: u64 = 6_000_000;
const ODS_MAX_ROWS: u64 = 1_048_576;
const ODS_MAX_COLS: u64 = 16_384;

/// The bounding box of one ods table as calamine would expand it.
#[derive(Default)]
struct OdsTable {
    /// rows so far, repeats included
    rows: u64,
    first_content_row: Option<u64>,
    last_content_row_end: u64,
    width: u64,
    /// the current row: its repeat count, columns so far, end of its content
    row_repeats: u64,
    col: u64,
    row_width: u64,
}

impl OdsTable {
    fn start(&mut self, e: &quick_xml::events::BytesStart<'_>, empty: bool) {
        match e.name().as_ref() {
            "table:table-row" => {
                let repeats = attr_u64(e, "table:number-rows-repeated");
                self.row_repeats = repeats.min(ODS_MAX_ROWS - self.rows.min(ODS_MAX_ROWS));
                self.col = 0;
                self.row_width = 0;
                if empty {
                    self.end_row();
                }
            }
            "table:table-cell" | "table:covered-table-cell" => {
                let repeats = attr_u64(e, "table:number-columns-repeated");
                let has = |name: &str| e.try_get_attribute(name).ok().flatten().is_some();
                let filled = !empty || has("office:value-type") || has("table:formula");
                self.col = self.col.saturating_add(repeats).min(ODS_MAX_COLS);
                if filled {
                    self.row_width = self.col;
                }
            }
            _ => {}
        }
    }

    fn end_row(&mut self) {
        if self.row_width > 0 {
            self.first_content_row.get_or_insert(self.rows);
            self.last_content_row_end = self.rows + self.row_repeats;
            self.width = self.width.max(self.row_width);
        }
        self.rows = (self.rows + self.row_repeats).min(ODS_MAX_ROWS);
    }

    fn cells(&self) -> u64 {
        let height = self
            .last_content_row_end
            .saturating_sub(self.first_content_row.unwrap_or(0));
        height.saturating_mul(self.width)
    }
}

fn attr_u64(e: &quick_xml::events::BytesStart<'_>, name: &str) -> u64 {
    e.try_get_attribute(name)
        .ok()
        .flatten()
        .and_then(|a| a.value.trim().parse().ok())
        .unwrap_or(1)
}

/// Refuses an ods whose sheets would expand to more than [`ODS_MAX_CELLS`]
/// cells, by streaming `content.xml` before calamine loads it. A cell with
/// content (a value type, a formula, or child elements) extends its row; the
/// count errs on the high side.
///
/// The same pass returns the file's date system, which calamine does not
/// expose: a number in a date column counts days from the `table:null-date`
/// of its calculation settings (1899-12-30 when it declares none, as ODF
/// says). LibreOffice writes 1904-01-01 there for a workbook in Mac Excel's
/// 1904 system.
pub fn ods_content(path: &Path) -> Result<Epoch, FileError> {
    use quick_xml::events::Event;
    let file = File::open(path).map_err(|e| refuse(e.to_string()))?;
    let mut zip = zip::ZipArchive::new(BufReader::new(file))
        .map_err(|e| refuse(format!("not a valid zip container: {e}")))?;
    let content = zip
        .by_name("content.xml")
        .map_err(|e| refuse(format!("not an ods workbook: {e}")))?;
    let mut xml = quick_xml::Reader::from_reader(BufReader::new(content));
    let mut buf = Vec::new();
    let mut total: u64 = 0;
    let mut table = OdsTable::default();
    let mut null_date = ODS_DEFAULT_NULL_DATE;
    loop {
        match xml.read_event_into(&mut buf) {
            Ok(Event::Empty(e) | Event::Start(e)) if e.name().as_ref() == "table:null-date" => {
                null_date = e
                    .try_get_attribute("table:date-value")
                    .ok()
                    .flatten()
                    .and_then(|a| parse_date_value(&a.value))
                    .unwrap_or(ODS_DEFAULT_NULL_DATE);
            }
            Ok(Event::Start(e)) => table.start(&e, false),
            Ok(Event::Empty(e)) => table.start(&e, true),
            Ok(Event::End(e)) => match e.name().as_ref() {
                "table:table-row" => table.end_row(),
                "table:table" => {
                    total = total.saturating_add(table.cells());
                    table = OdsTable::default();
                }
                _ => {}
            },
            Ok(Event::Eof) => break,
            // malformed XML is calamine's to report
            Err(_) => return Ok(Epoch::NullDate(null_date)),
            Ok(_) => {}
        }
        buf.clear();
        if total.saturating_add(table.cells()) > ODS_MAX_CELLS {
            break;
        }
    }
    total = total.saturating_add(table.cells());
    if total > ODS_MAX_CELLS {
        return Err(refuse(format!(
            "the sheets span over {ODS_MAX_CELLS} cells once repeated rows and columns are expanded, more than salesbatch reads from an ods file; save it as xlsx or csv"
        )));
    }
    Ok(Epoch::NullDate(null_date))
}

/// ODF 1.2 §9.4.2: the null date when `table:null-date` is absent.
const ODS_DEFAULT_NULL_DATE: NaiveDate = match NaiveDate::from_ymd_opt(1899, 12, 30) {
    Some(d) => d,
    None => panic!("1899-12-30 is a date"),
};

/// An ODF `date` value: `YYYY-MM-DD`, possibly followed by a time.
fn parse_date_value(value: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(value.trim().get(..10)?, "%Y-%m-%d").ok()
}
