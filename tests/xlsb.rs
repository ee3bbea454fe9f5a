//! A minimal Excel binary workbook (`.xlsb`, MS-XLSB) writer for fixtures.
//! No Debian office suite saves xlsb, so the tests write the BIFF12 records
//! themselves: a workbook part naming the sheets, shared strings, a style
//! table with one date format, and worksheets of numbers, shared strings and
//! inline strings.

use std::io::Write;
use std::path::Path;

/// A cell value as the xlsb record that stores it.
pub enum Value<'a> {
    Number(f64),
    /// a number in the date style (`yyyy-mm-dd`, built-in format 14)
    Date(f64),
    /// shared string (BrtCellIsst)
    Shared(&'a str),
    /// inline string (BrtCellSt)
    Inline(&'a str),
    /// a BrtCellIsst pointing at any index, valid or not
    SharedIndex(u32),
}

pub struct Sheet<'a> {
    pub name: &'a str,
    pub rows: Vec<Vec<Option<Value<'a>>>>,
    /// overrides the declared dimension (last row, last column), 0-based
    pub declared_end: Option<(u32, u32)>,
}

fn record(out: &mut Vec<u8>, typ: u16, body: &[u8]) {
    if typ < 0x80 {
        out.push(u8::try_from(typ).unwrap());
    } else {
        out.push(u8::try_from(typ & 0x7F).unwrap() | 0x80);
        out.push(u8::try_from(typ >> 7).unwrap());
    }
    let mut len = body.len();
    loop {
        let byte = u8::try_from(len & 0x7F).unwrap();
        len >>= 7;
        if len == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(body);
}

fn wide(s: &str) -> Vec<u8> {
    let units: Vec<u16> = s.encode_utf16().collect();
    let mut v = u32::try_from(units.len()).unwrap().to_le_bytes().to_vec();
    for u in units {
        v.extend_from_slice(&u.to_le_bytes());
    }
    v
}

fn u32s(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Cell header: column, then the 24-bit style index and a flags byte.
fn cell(col: u32, style: u32) -> Vec<u8> {
    let mut v = col.to_le_bytes().to_vec();
    v.extend_from_slice(&style.to_le_bytes()[..3]);
    v.push(0);
    v
}

/// Writes `sheets` to `path`; `date1904` sets the workbook's date system.
pub fn write(path: &Path, sheets: &[Sheet<'_>], date1904: bool) {
    let mut strings: Vec<&str> = Vec::new();
    let mut parts: Vec<(String, Vec<u8>)> = Vec::new();
    for (i, sheet) in sheets.iter().enumerate() {
        let mut ws = Vec::new();
        record(&mut ws, 0x0081, &[]); // BrtBeginSheet
        let last_row = u32::try_from(sheet.rows.len().max(1) - 1).unwrap();
        let last_col =
            u32::try_from(sheet.rows.iter().map(Vec::len).max().unwrap_or(1).max(1) - 1).unwrap();
        let (end_row, end_col) = sheet.declared_end.unwrap_or((last_row, last_col));
        record(&mut ws, 0x0094, &u32s(&[0, end_row, 0, end_col])); // BrtWsDim
        record(&mut ws, 0x0091, &[]); // BrtBeginSheetData
        for (r, row) in sheet.rows.iter().enumerate() {
            let mut hdr = u32s(&[u32::try_from(r).unwrap(), 0]);
            hdr.extend_from_slice(&[0; 9]);
            record(&mut ws, 0x0000, &hdr); // BrtRowHdr
            for (c, value) in row.iter().enumerate() {
                let col = u32::try_from(c).unwrap();
                match value {
                    None => {}
                    Some(Value::Number(n)) => {
                        let mut b = cell(col, 0);
                        b.extend_from_slice(&n.to_le_bytes());
                        record(&mut ws, 0x0005, &b); // BrtCellReal
                    }
                    Some(Value::Date(n)) => {
                        let mut b = cell(col, 1);
                        b.extend_from_slice(&n.to_le_bytes());
                        record(&mut ws, 0x0005, &b);
                    }
                    Some(Value::Shared(s)) => {
                        let index = strings.iter().position(|x| x == s).unwrap_or_else(|| {
                            strings.push(s);
                            strings.len() - 1
                        });
                        let mut b = cell(col, 0);
                        b.extend_from_slice(&u32::try_from(index).unwrap().to_le_bytes());
                        record(&mut ws, 0x0007, &b); // BrtCellIsst
                    }
                    Some(Value::SharedIndex(index)) => {
                        let mut b = cell(col, 0);
                        b.extend_from_slice(&index.to_le_bytes());
                        record(&mut ws, 0x0007, &b);
                    }
                    Some(Value::Inline(s)) => {
                        let mut b = cell(col, 0);
                        b.extend_from_slice(&wide(s));
                        record(&mut ws, 0x0006, &b); // BrtCellSt
                    }
                }
            }
        }
        record(&mut ws, 0x0092, &[]); // BrtEndSheetData
        record(&mut ws, 0x0082, &[]); // BrtEndSheet
        parts.push((format!("xl/worksheets/sheet{}.bin", i + 1), ws));
    }

    let mut wb = Vec::new();
    record(&mut wb, 0x0083, &[]); // BrtBeginBook
    record(&mut wb, 0x0099, &u32s(&[u32::from(date1904), 0])); // BrtWbProp
    record(&mut wb, 0x008F, &[]); // BrtBeginBundleShs
    let mut rels = String::from(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">"#,
    );
    for (i, sheet) in sheets.iter().enumerate() {
        let id = format!("rId{}", i + 1);
        let mut b = u32s(&[0, u32::try_from(i + 1).unwrap()]);
        b.extend(wide(&id));
        b.extend(wide(sheet.name));
        record(&mut wb, 0x009C, &b); // BrtBundleSh
        rels.push_str(&format!(
            r#"<Relationship Id="{id}" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet{}.bin"/>"#,
            i + 1
        ));
    }
    rels.push_str("</Relationships>");
    record(&mut wb, 0x0090, &[]); // BrtEndBundleShs
    record(&mut wb, 0x009D, &[0; 26]); // BrtCalcProp
    record(&mut wb, 0x0084, &[]); // BrtEndBook

    let mut sst = Vec::new();
    let n = u32::try_from(strings.len()).unwrap();
    record(&mut sst, 0x009F, &u32s(&[n, n])); // BrtBeginSst
    for s in &strings {
        let mut b = vec![0u8]; // RichStr flags: plain
        b.extend(wide(s));
        record(&mut sst, 0x0013, &b); // BrtSSTItem
    }
    record(&mut sst, 0x00A0, &[]); // BrtEndSst

    // two cell formats: 0 general, 1 the built-in date format 14
    let mut styles = Vec::new();
    record(&mut styles, 0x0267, &u32s(&[0])); // BrtBeginFmts
    record(&mut styles, 0x0269, &u32s(&[2])); // BrtBeginCellXFs
    for fmt in [0u16, 14] {
        let mut b = 0u16.to_le_bytes().to_vec();
        b.extend_from_slice(&fmt.to_le_bytes());
        b.extend_from_slice(&[0; 12]);
        record(&mut styles, 0x002F, &b); // BrtXF
    }
    record(&mut styles, 0x026A, &[]); // BrtEndCellXFs

    let sheet_types: String = (1..=sheets.len())
        .map(|i| format!(r#"<Override PartName="/xl/worksheets/sheet{i}.bin" ContentType="application/vnd.ms-excel.worksheet"/>"#))
        .collect();
    let content_types = format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="bin" ContentType="application/vnd.ms-excel.sheet.binary.macroEnabled.main"/>{sheet_types}<Override PartName="/xl/styles.bin" ContentType="application/vnd.ms-excel.styles"/><Override PartName="/xl/sharedStrings.bin" ContentType="application/vnd.ms-excel.sharedStrings"/></Types>"#
    );
    let root_rels = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.bin"/></Relationships>"#;

    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = zip::write::SimpleFileOptions::default();
    let mut add = |name: &str, data: &[u8]| {
        zip.start_file(name, opts).unwrap();
        zip.write_all(data).unwrap();
    };
    add("[Content_Types].xml", content_types.as_bytes());
    add("_rels/.rels", root_rels.as_bytes());
    add("xl/workbook.bin", &wb);
    add("xl/_rels/workbook.bin.rels", rels.as_bytes());
    add("xl/styles.bin", &styles);
    add("xl/sharedStrings.bin", &sst);
    for (name, data) in &parts {
        add(name, data);
    }
    zip.finish().unwrap();
}
