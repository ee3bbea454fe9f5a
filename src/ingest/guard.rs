//! Pre-flight checks on spreadsheet containers, run before calamine sees a
//! file. They exist because some calamine code paths allocate from what a file
//! *declares* (xls `DIMENSIONS`, dense ranges, zip entry sizes) and an
//! allocation failure aborts the process instead of returning an error.
//! Each check reads only headers or record prefixes, never cell contents.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

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

/// Refuses a zip container (xlsx, xlsm, ods) whose members declare an
/// uncompressed size far beyond the file's own: a zip bomb.
pub fn zip_container(path: &Path) -> Result<(), FileError> {
    let file = File::open(path).map_err(|e| refuse(e.to_string()))?;
    let compressed = file.metadata().map_or(0, |m| m.len()).max(1);
    let mut zip = zip::ZipArchive::new(BufReader::new(file)).map_err(|e| {
        if is_encrypted_ooxml(path) {
            refuse(
                "the workbook is password-protected (encrypted); save it without a password".into(),
            )
        } else {
            refuse(format!("not a valid zip container: {e}"))
        }
    })?;
    let mut total: u64 = 0;
    for i in 0..zip.len() {
        let member = zip
            .by_index_raw(i)
            .map_err(|e| refuse(format!("not a valid zip container: {e}")))?;
        total = total.saturating_add(member.size());
    }
    if total > ZIP_RATIO_FLOOR && total / compressed > MAX_ZIP_RATIO {
        return Err(refuse(format!(
            "zip bomb suspected: {} KiB of file expands to {} MiB (more than {MAX_ZIP_RATIO}×)",
            compressed >> 10,
            total >> 20
        )));
    }
    Ok(())
}

/// Excel saves a password-protected xlsx as an OLE compound file holding an
/// `EncryptedPackage` stream instead of a zip.
fn is_encrypted_ooxml(path: &Path) -> bool {
    cfb::open(path).is_ok_and(|cf| cf.is_stream("/EncryptedPackage"))
}

/// Refuses an xls whose sheets declare (in `DIMENSIONS`) or use (in a cell
/// record) rows or columns beyond the format's 65,536 × 256: calamine reserves
/// memory for the declared rectangle and for the used one.
pub fn xls_dimensions(path: &Path) -> Result<(), FileError> {
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
    loop {
        match data.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(refuse(e.to_string())),
        }
        let typ = u16::from_le_bytes([header[0], header[1]]);
        let len = usize::from(u16::from_le_bytes([header[2], header[3]]));
        body.resize(len, 0);
        if data.read_exact(&mut body).is_err() {
            // a truncated tail is calamine's to report
            return Ok(());
        }
        let (rows, cols) = match typ {
            // DIMENSIONS (BIFF8): first row, last row + 1, first col, last col + 1
            0x0200 if len >= 14 => (
                u64::from(u32::from_le_bytes([body[4], body[5], body[6], body[7]])),
                u64::from(u16::from_le_bytes([body[10], body[11]])),
            ),
            // cell records start with row (u16) and column (u16)
            0x0006 | 0x00BD | 0x00D6 | 0x00FD | 0x0201 | 0x0203 | 0x0204 | 0x0205 | 0x027E
                if len >= 4 =>
            {
                (
                    u64::from(u16::from_le_bytes([body[0], body[1]])) + 1,
                    u64::from(u16::from_le_bytes([body[2], body[3]])) + 1,
                )
            }
            _ => continue,
        };
        if rows > XLS_MAX_ROWS || cols > XLS_MAX_COLS {
            return Err(refuse(format!(
                "sheet declares absurd dimensions ({rows} rows × {cols} columns, an xls sheet holds at most {XLS_MAX_ROWS} × {XLS_MAX_COLS})"
            )));
        }
    }
}
