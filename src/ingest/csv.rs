//! CSV reader: UTF-8 (BOM tolerated), GBK or GB18030, transcoded while
//! streaming; quoted fields and CRLF handled by the `csv` crate.

use std::fs::File;
use std::path::Path;

use encoding_rs_io::DecodeReaderBytesBuilder;

use super::coerce::{Cell, Epoch};
use super::reader::{FileError, RowAssembler, Visitor};
use crate::config::Encoding;

pub fn read(
    path: &Path,
    encoding: Encoding,
    header_row: Option<u32>,
    visitor: &mut dyn Visitor,
) -> Result<(), FileError> {
    let file = File::open(path).map_err(|e| FileError::CannotOpen(e.to_string()))?;
    let enc = match encoding {
        Encoding::Utf8 => encoding_rs::UTF_8,
        Encoding::Gbk => encoding_rs::GBK,
        Encoding::Gb18030 => encoding_rs::GB18030,
    };
    // a UTF-8 BOM wins over the configured encoding, as Excel's "CSV UTF-8" writes one
    let decoded = DecodeReaderBytesBuilder::new()
        .encoding(Some(enc))
        .bom_override(true)
        .build(file);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(decoded);
    let mut asm = RowAssembler::new(header_row);
    let mut record = csv::StringRecord::new();
    let mut cells: Vec<Cell> = Vec::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(FileError::CannotOpen(format!("malformed CSV: {e}"))),
        }
        let line = record.position().map_or(0, csv::Position::line);
        // every CSV field is text: the cells keep their strings from row to
        // row and are overwritten in place instead of allocated per field
        let fields = record.iter().take(asm.column_limit());
        let mut n = 0;
        for (i, field) in fields.enumerate() {
            match cells.get_mut(i) {
                Some(Cell::Text(s)) => {
                    s.clear();
                    s.push_str(field);
                }
                _ => cells.push(Cell::Text(field.to_string())),
            }
            n = i + 1;
        }
        asm.feed(visitor, "", Epoch::E1900, line, &cells[..n])?;
    }
    asm.finish()
}
