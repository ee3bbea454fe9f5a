//! CSV reader: UTF-8 (BOM tolerated, checked rather than decoded), GBK or
//! GB18030 (transcoded while streaming); quoted fields and CRLF handled by
//! the `csv` crate, rows numbered by the line they start on.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use encoding_rs_io::{DecodeReaderBytes, DecodeReaderBytesBuilder};

use super::coerce::{Cell, Epoch};
use super::guard;
use super::reader::{FileError, RowAssembler, Visitor};
use super::record::column_letters;
use crate::config::{Delimiter, Encoding};

/// Reads a CSV file with the source's `delimiter` (a comma unless set),
/// or with the one a first line `sep=` names, which then wins.
pub fn read(
    path: &Path,
    encoding: Encoding,
    delimiter: Option<Delimiter>,
    header_row: Option<u32>,
    visitor: &mut dyn Visitor,
) -> Result<(), FileError> {
    // a file that cannot be read is refused by the reader below, with the
    // system's reason
    let head = guard::first_bytes(path, 512).unwrap_or_default();
    // decoded as text, a workbook fails on its first bytes with advice
    // about the encoding, which would send the user the wrong way
    if let Some(container) = guard::workbook_container(&head) {
        return Err(FileError::CannotOpen(format!(
            "the file is a workbook, not CSV text: it is {container}; read it with a \
             `kind = \"excel\"` source"
        )));
    }
    // and an HTML table, as ERPs export "Excel", as every column missing
    if super::html::starts_as_html(&head) {
        return Err(FileError::CannotOpen(
            "the file is an HTML page, not CSV text, as ERP \"Excel\" exports often are: read \
             it with a `kind = \"excel\"` source, which reads its tables"
                .into(),
        ));
    }
    let sep_line = excel_separator_line(&head);
    let separator = sep_line.unwrap_or(delimiter.unwrap_or_default().byte());
    match read_as(
        path,
        encoding,
        separator,
        sep_line.is_some(),
        header_row,
        visitor,
    ) {
        // most UTF-8 Chinese decodes as valid GBK: the garbled headers are
        // the only sign, and "missing column" would send the user hunting
        // for a renamed column
        Err(FileError::MissingColumn { .. })
            if encoding != Encoding::Utf8 && reads_as_utf8(path) =>
        {
            let name = match encoding {
                Encoding::Gb18030 => "gb18030",
                _ => "gbk",
            };
            Err(FileError::CannotOpen(format!(
                "the file is UTF-8 text, not {name}: its headers do not match when \
                 read as {name}; remove `encoding = \"{name}\"` from the source"
            )))
        }
        // Excel's "Unicode Text" (Unicode 文本), which users in China pick
        // to keep Chinese intact, is tab-separated UTF-16: read with commas
        // its header is one field, and every mapped column looks missing
        // (a source that sets `delimiter` said what it expects)
        Err(FileError::MissingColumn { .. })
            if sep_line.is_none() && delimiter.is_none() && tab_separated(path, encoding) =>
        {
            Err(FileError::CannotOpen(
                "the file is tab-separated text, not comma-separated (Excel's \"Unicode Text\" \
                 is such a file): set `delimiter = \"tab\"` on the source, save the file as \
                 \"CSV UTF-8\", or begin it with a line `sep=` followed by a tab"
                    .into(),
            ))
        }
        other => other,
    }
}

/// Whether the file's first non-empty line, decoded as the reader decodes
/// it, holds tabs and no comma.
fn tab_separated(path: &Path, encoding: Encoding) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    let mut start = Vec::with_capacity(1 << 16);
    if decoder(file, encoding)
        .take(1 << 16)
        .read_to_end(&mut start)
        .is_err()
    {
        return false;
    }
    let text = String::from_utf8_lossy(&start);
    text.lines()
        .find(|line| !line.trim().is_empty())
        .is_some_and(|line| line.contains('\t') && !line.contains(','))
}

/// The file's text in UTF-8, as the source's `encoding` decodes it.
fn decoder(file: File, encoding: Encoding) -> DecodeReaderBytes<File, Vec<u8>> {
    let mut builder = DecodeReaderBytesBuilder::new();
    match encoding {
        // UTF-8 passes through undecoded, so that a byte that is not UTF-8 is
        // found and named below instead of silently becoming U+FFFD (a GBK
        // export read without `encoding = "gbk"`); a UTF-16 BOM still decodes
        Encoding::Utf8 => builder.utf8_passthru(true).strip_bom(true),
        // a UTF-8 BOM wins over the configured encoding, as Excel's "CSV UTF-8" writes one
        Encoding::Gbk => builder.encoding(Some(encoding_rs::GBK)).bom_override(true),
        Encoding::Gb18030 => builder
            .encoding(Some(encoding_rs::GB18030))
            .bom_override(true),
    };
    builder.build(file)
}

/// Whether the start of a file is UTF-8 text with characters beyond ASCII.
fn reads_as_utf8(path: &Path) -> bool {
    let start = guard::first_bytes(path, 1 << 16).unwrap_or_default();
    guard::reads_as_utf8(&start) && !start.is_ascii()
}

/// Reads the file with `separator`, skipping its first line when that is
/// the `sep=` line that named it.
fn read_as(
    path: &Path,
    encoding: Encoding,
    separator: u8,
    sep_line: bool,
    header_row: Option<u32>,
    visitor: &mut dyn Visitor,
) -> Result<(), FileError> {
    let file = File::open(path).map_err(|e| FileError::CannotOpen(e.to_string()))?;
    let decoded = encoding != Encoding::Utf8;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(separator)
        .from_reader(LineBreaks::new(decoder(file, encoding), separator));
    let mut asm = RowAssembler::new(header_row);
    let mut record = csv::ByteRecord::new();
    let mut cells: Vec<Cell> = Vec::new();
    // the last record, when the file ends inside a quoted field: (line,
    // column of its last field, lines of rows that field swallowed)
    let mut unclosed: Option<(u64, usize, usize)> = None;
    // how many values the header row has, once it is found
    let mut header_width: Option<usize> = None;
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(FileError::CannotOpen(format!("malformed CSV: {e}"))),
        }
        let line = record.position().map_or(0, |p| reader.get_mut().line_of(p));
        if reader.get_ref().ends_in_quotes() {
            let last = record.len().saturating_sub(1);
            unclosed = Some((
                line,
                last,
                swallowed_lines(record.get(last).unwrap_or_default()),
            ));
        }
        // the `sep=` line is Excel's instruction, not a row; it keeps its
        // line number, as a text editor shows the file
        if line == 1 && sep_line {
            continue;
        }
        // columns after the last mapped one are not read at all; the others
        // are checked as one run of bytes (one call per field costs more
        // than the whole check)
        let n = record.len().min(asm.column_limit());
        let end = n
            .checked_sub(1)
            .and_then(|last| record.range(last))
            .map_or(0, |r| r.end);
        let text =
            std::str::from_utf8(&record.as_slice()[..end]).map_err(|_| not_utf8(line, &record))?;
        // the GBK decoders put U+FFFD where bytes are not GBK (GBK cannot
        // encode U+FFFD itself): the file is not in its configured encoding
        if decoded && reader.get_ref().saw_ef && text.contains(char::REPLACEMENT_CHARACTER) {
            return Err(undecodable(line, &record));
        }
        // every CSV field is text: the cells keep their strings from row to
        // row and are overwritten in place instead of allocated per field
        for i in 0..n {
            // `None` only where a character spans two fields, invalid in each
            let field = record
                .range(i)
                .and_then(|r| text.get(r))
                .ok_or_else(|| not_utf8(line, &record))?;
            let field = excel_text_formula(field);
            match cells.get_mut(i) {
                Some(Cell::Text(s)) => {
                    s.clear();
                    s.push_str(field);
                }
                _ => cells.push(Cell::Text(field.to_string())),
            }
        }
        // a DOS end-of-file mark (Ctrl-Z, 0x1A) after the last line, as
        // FoxPro-era ERP exports write it: Windows programs reading text
        // stop at it, and as a row of its own it would be rejected (and in
        // a short file refuse it by ratio). Stripped from the end of the
        // last field read, so a row of nothing else is an empty row.
        if text.ends_with('\u{1a}') {
            if let Some(Cell::Text(last)) = n.checked_sub(1).and_then(|i| cells.get_mut(i)) {
                last.truncate(last.trim_end_matches('\u{1a}').len());
            }
        }
        if let Some(width) = header_width.filter(|w| record.len() > *w) {
            overflow(line, width, &record)?;
        }
        asm.feed(visitor, "", Epoch::E1900, line, &cells[..n])?;
        if header_width.is_none() && asm.has_header() {
            header_width = Some(record.len());
        }
    }
    if let Some((line, column, lost)) = unclosed.filter(|u| u.2 > 0) {
        return Err(FileError::CannotOpen(format!(
            "cell {}{line} opens a quoted value that is never closed: the {lost} line(s) after \
             it would be read as part of that one value, not as rows; close the quote (write \
             `\"\"` for a quote inside a value) or remove it",
            column_letters(column)
        )));
    }
    asm.finish("file")
}

/// The separator a first line `sep=;` names, from the file's first 32
/// bytes: Excel reads such a line as
/// the file's separator and skips it, and exports meant for Excel in
/// regions whose lists are `;`-separated write one. A file opening with it
/// is read with that separator (`,`, `;`, a tab, `|` …), the line itself not
/// as a row. The line is ASCII: one byte a character in UTF-8 and GBK, two
/// in UTF-16 (after its BOM).
fn excel_separator_line(raw: &[u8]) -> Option<u8> {
    let ascii = |units: std::slice::ChunksExact<'_, u8>, low: usize| -> Vec<u8> {
        units
            .map_while(|u| (u[1 - low] == 0).then_some(u[low]))
            .collect()
    };
    let head = if let Some(le) = raw.strip_prefix(&[0xFF, 0xFE]) {
        ascii(le.chunks_exact(2), 0)
    } else if let Some(be) = raw.strip_prefix(&[0xFE, 0xFF]) {
        ascii(be.chunks_exact(2), 1)
    } else {
        raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw).to_vec()
    };
    let rest = head
        .get(..4)
        .filter(|p| p.eq_ignore_ascii_case(b"sep="))
        .map(|_| &head[4..])?;
    match rest {
        [sep, b'\r' | b'\n', ..] | [sep]
            if sep.is_ascii() && !sep.is_ascii_alphanumeric() && *sep != b'"' =>
        {
            Some(*sep)
        }
        _ => None,
    }
}

/// `="00123"`: how exports meant for Excel keep leading zeros and long
/// digits as text in a CSV. Excel opens such a field as the text inside,
/// and so does this reader: `00123` is the id the masters hold.
fn excel_text_formula(field: &str) -> &str {
    field
        .strip_prefix("=\"")
        .and_then(|f| f.strip_suffix('"'))
        .filter(|inner| !inner.contains('"'))
        .unwrap_or(field)
}

/// Refuses the file when a row has values beyond its header's width: a
/// comma in a value written without quotes (`1,234.50` from an exporter
/// that formats numbers but quotes nothing) splits it, and every value
/// after it moves one column on, so a mapped amount would load as `1`
/// without a word. Where the comma sits cannot be known, so no row of the
/// file is trusted. Empty values beyond the header (a trailing separator
/// on each data row) are no sign of it.
fn overflow(line: u64, width: usize, record: &csv::ByteRecord) -> Result<(), FileError> {
    // a few values, each cut short: enough to find the row by
    let extra: Vec<String> = record
        .iter()
        .skip(width)
        .map(String::from_utf8_lossy)
        .filter(|v| !v.trim().is_empty())
        .take(3)
        .map(|v| v.chars().take(40).collect::<String>())
        .collect();
    if extra.is_empty() {
        return Ok(());
    }
    Err(FileError::CannotOpen(format!(
        "row {line} has {} values where the header has {width} (beyond it: {}): a value holds \
         the separator without quotes around it, as `1,234.50` written bare does, and the \
         values after it are shifted; put such values in quotes, or remove the commas",
        record.len(),
        crate::text::backticked(&extra)
    )))
}

/// The lines after the first of a field's text that hold anything but
/// white space: in a field that runs to the end of the file because its
/// quote is never closed, the rows it swallowed.
fn swallowed_lines(field: &[u8]) -> usize {
    field
        .split(|b| matches!(b, b'\r' | b'\n'))
        .skip(1)
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .count()
}

/// Numbers CSV rows by the line they start on, as a text editor shows it,
/// notes whether U+FFFD may have been decoded, and follows quoting as the
/// `csv` crate does, which, at the end of a file inside a quoted field,
/// closes the field without a word: a stray quote (`"好` typed in a
/// remark) would silently turn every row after it into one value.
/// The `csv` crate counts only `\n` (a file from an old Mac, ending lines in
/// a lone CR, is one line to it), and it starts a record's position before
/// consuming what ends the previous one: after a CRLF (rust-csv#395) or a
/// blank line (rust-csv#208) its line is one short. This reader notes every
/// line break it passes on, so that the breaks before a record can be
/// counted.
struct LineBreaks<R> {
    inner: R,
    /// bytes passed on so far
    offset: u64,
    /// each `\r` and `\n` not yet behind a record's start, with whether it
    /// ends a line: a CR does, an LF does unless it completes a CRLF
    breaks: VecDeque<(u64, bool)>,
    /// lines ended before the breaks still held
    lines_ended: u64,
    /// whether a byte EF, the first of U+FFFD's, has passed: rows need only
    /// be searched for U+FFFD from then on. One search per read costs less
    /// than one per row; EF also starts full-width punctuation (`，` is
    /// EF BC 8C), so a file with any has every row searched after it.
    saw_ef: bool,
    separator: u8,
    /// whether the bytes passed on so far end inside a quoted field
    in_quotes: bool,
    /// where the last quoted field closed, if a quote may still follow
    /// at once and make it an escaped `""` instead
    closed_at: Option<u64>,
    /// the last byte passed on, for a quote or a line break at the start
    /// of a read (a CRLF split across reads)
    last_byte: Option<u8>,
    /// whether the inner reader has reported the end of the file
    eof: bool,
}

impl<R: Read> LineBreaks<R> {
    fn new(inner: R, separator: u8) -> Self {
        Self {
            inner,
            offset: 0,
            breaks: VecDeque::new(),
            lines_ended: 0,
            saw_ef: false,
            separator,
            in_quotes: false,
            closed_at: None,
            last_byte: None,
            eof: false,
        }
    }

    /// Whether the whole file has been read and ends inside a quoted field.
    fn ends_in_quotes(&self) -> bool {
        self.eof && self.in_quotes
    }

    /// Follows the quotes of `read`, which starts at `self.offset`, as
    /// `csv_core` reads them: a quote opens a field only at its start, a
    /// quote inside one closes it unless another follows at once (`""`),
    /// and any other quote is text. Only quotes are visited, so a file
    /// without them pays one `memchr` pass per read.
    fn follow_quotes(&mut self, read: &[u8]) {
        for i in memchr::memchr_iter(b'"', read) {
            let at = self.offset + i as u64;
            if self.in_quotes {
                self.in_quotes = false;
                self.closed_at = Some(at);
            } else if at.checked_sub(1).is_some_and(|p| self.closed_at == Some(p)) {
                self.in_quotes = true;
                self.closed_at = None;
            } else {
                let before = if i > 0 {
                    Some(read[i - 1])
                } else {
                    self.last_byte
                };
                self.in_quotes =
                    before.is_none_or(|b| b == self.separator || b == b'\r' || b == b'\n');
            }
        }
    }

    /// The line (1-based) of the record at `position`: its position may lie
    /// before the breaks that end the previous record, which are skipped.
    fn line_of(&mut self, position: &csv::Position) -> u64 {
        let mut start = position.byte();
        while let Some(&(offset, ends_line)) = self.breaks.front() {
            if offset > start {
                break;
            }
            if offset == start {
                start += 1;
            }
            self.lines_ended += u64::from(ends_line);
            self.breaks.pop_front();
        }
        self.lines_ended + 1
    }
}

impl<R: Read> Read for LineBreaks<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let read = &buf[..n];
        if n == 0 && !buf.is_empty() {
            self.eof = true;
        }
        self.follow_quotes(read);
        for i in memchr::memchr2_iter(b'\r', b'\n', read) {
            let before = if i == 0 {
                self.last_byte
            } else {
                Some(read[i - 1])
            };
            let ends_line = read[i] == b'\r' || before != Some(b'\r');
            self.breaks.push_back((self.offset + i as u64, ends_line));
        }
        if let Some(&last) = read.last() {
            self.last_byte = Some(last);
        }
        self.saw_ef = self.saw_ef || memchr::memchr(0xEF, read).is_some();
        self.offset += n as u64;
        Ok(n)
    }
}

/// Refuses the whole file, naming its first value that is not UTF-8: once
/// one value is in another encoding, any other may be wrong without showing
/// it.
fn not_utf8(line: u64, record: &csv::ByteRecord) -> FileError {
    let (column, rest) = record
        .iter()
        .enumerate()
        .find_map(|(i, field)| {
            std::str::from_utf8(field)
                .err()
                .map(|e| (i, &field[e.valid_up_to()..]))
        })
        .unwrap_or((0, &[]));
    let bytes: Vec<String> = rest.iter().take(4).map(|b| format!("{b:02X}")).collect();
    FileError::CannotOpen(format!(
        "cell {}{line} is not UTF-8 text (bytes {}); if the file is a GBK export, \
         set `encoding = \"gbk\"` on the source",
        column_letters(column),
        bytes.join(" ")
    ))
}

/// Refuses the whole file, naming its first value that could not be decoded.
fn undecodable(line: u64, record: &csv::ByteRecord) -> FileError {
    let column = record
        .iter()
        .position(|f| memchr::memmem::find(f, "\u{FFFD}".as_bytes()).is_some())
        .unwrap_or(0);
    FileError::CannotOpen(format!(
        "cell {}{line} holds bytes its encoding does not define (decoded as U+FFFD); \
         check the source's `encoding`",
        column_letters(column)
    ))
}

#[cfg(test)]
mod tests {
    use super::LineBreaks;
    use std::io::Read;

    /// Hands out one byte per read, so that every CRLF is split across reads.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let Some((first, rest)) = self.0.split_first() else {
                return Ok(0);
            };
            buf[0] = *first;
            self.0 = rest;
            Ok(1)
        }
    }

    /// Each record's first field and the line it starts on.
    fn record_lines(input: &[u8]) -> Vec<(String, u64)> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(LineBreaks::new(Trickle(input), b','));
        let mut record = csv::StringRecord::new();
        let mut lines = Vec::new();
        while reader.read_record(&mut record).unwrap() {
            let line = reader.get_mut().line_of(record.position().unwrap());
            lines.push((record[0].to_string(), line));
        }
        lines
    }

    #[test]
    fn a_crlf_split_across_reads_ends_one_line() {
        let lines = record_lines(b"a\r\n\r\n\"b\r\nb\"\r\rc\nd\r\n");
        let lines: Vec<(&str, u64)> = lines.iter().map(|(s, l)| (s.as_str(), *l)).collect();
        assert_eq!(lines, [("a", 1), ("b\r\nb", 3), ("c", 6), ("d", 7)]);
    }

    /// Quotes followed one byte per read, so that every quote meets the
    /// read boundary: whether the file ends inside a quoted field.
    #[test]
    fn quotes_are_followed_as_csv_reads_them() {
        let ends_in_quotes = |input: &[u8]| {
            let mut breaks = LineBreaks::new(Trickle(input), b',');
            std::io::copy(&mut breaks, &mut std::io::sink()).unwrap();
            breaks.ends_in_quotes()
        };
        assert!(ends_in_quotes(b"a,\"b\nc,d\n"));
        assert!(ends_in_quotes(b"\"a\"\"\n"));
        assert!(!ends_in_quotes(b"a,\"b\"\"\nc\"\n"));
        assert!(!ends_in_quotes(b"a,5\"x,\"y\"\n"));
        assert!(!ends_in_quotes(b"\"\"\n\"a\"\"\"\n"));
        assert!(!ends_in_quotes(b"a, \"b\n"));
    }
}
