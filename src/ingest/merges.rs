//! The merged cells of an xlsx sheet, read without parsing its cells, and
//! those of an ods sheet, which calamine does not read. An xlsx lists a
//! sheet's merges after its cells, and calamine finds them by parsing every
//! XML event of the sheet, which costs about as much as reading the cells
//! again (docs/PERFORMANCE.md). The merges only explain rows already read
//! (`ingest::explain_merged_cells`) or fill a header in two rows, so this
//! inflates the sheet's part and searches its bytes for the `mergeCells`
//! element, then parses only that element. Whatever it cannot follow (a
//! package laid out in a way it does not know, a malformed element)
//! returns `None`, and the caller asks calamine.

use std::io::{BufReader, Read, Seek};
use std::path::Path;

use quick_xml::events::attributes::Attribute;
use quick_xml::events::{BytesStart, Event};
use quick_xml::XmlVersion;

use super::excel::{MAX_COLS, MAX_ROWS};
use super::record::{column_index, MergedBlock};

/// `xl/workbook.xml` and its relationships are read up to this size: real
/// ones are a few KiB, whatever the sheets hold.
const MAX_PART: u64 = 16 << 20;
/// The sheet is inflated and searched this many bytes at a time.
const CHUNK: usize = 64 << 10;

/// The merged cells of the sheet named `sheet` of the xlsx at `path`, as
/// 0-based (first, last) (row, column) corners.
pub fn xlsx_merges(path: &Path, sheet: &str) -> Option<Vec<MergedBlock>> {
    let file = std::fs::File::open(path).ok()?;
    let mut zip = zip::ZipArchive::new(BufReader::new(file)).ok()?;
    let id = sheet_relationship(&mut zip, sheet)?;
    let part = sheet_part(&mut zip, &id)?;
    let member = zip.by_index(member_index(&zip, &part)?).ok()?;
    merges_in(member, CHUNK)
}

/// The member holding the part `name`. Part names are compared without
/// regard to ASCII case (ECMA-376 part 2, 6.2.2.3): a program may write
/// `xl/worksheets/Sheet1.xml` and point at `worksheets/sheet1.xml`.
fn member_index<R: Read + Seek>(zip: &zip::ZipArchive<R>, name: &str) -> Option<usize> {
    zip.index_for_name(name).or_else(|| {
        let found = zip
            .file_names()
            .flatten()
            .find(|member| member.eq_ignore_ascii_case(name))?
            .into_owned();
        zip.index_for_name(&found)
    })
}

fn read_part<R: Read + Seek>(zip: &mut zip::ZipArchive<R>, name: &str) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    let index = member_index(zip, name)?;
    zip.by_index(index)
        .ok()?
        .take(MAX_PART)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(bytes)
}

/// The first answer `answer` gives for an element named `name` (any
/// prefix) of a part's XML.
fn first_element<T>(
    bytes: &[u8],
    name: &str,
    mut answer: impl FnMut(&BytesStart<'_>) -> Option<T>,
) -> Option<T> {
    let mut xml = quick_xml::Reader::from_reader(bytes);
    let mut buf = Vec::new();
    loop {
        match xml.read_event_into(&mut buf).ok()? {
            Event::Empty(e) | Event::Start(e) if e.local_name().as_ref() == name => {
                if let Some(found) = answer(&e) {
                    return Some(found);
                }
            }
            Event::Eof => return None,
            _ => {}
        }
        buf.clear();
    }
}

/// An attribute's value with XML escapes resolved.
pub(super) fn value(attribute: &Attribute<'_>) -> Option<String> {
    attribute
        .normalized_value(XmlVersion::Implicit1_0)
        .ok()
        .map(std::borrow::Cow::into_owned)
}

/// The relationship id (`r:id`) of the sheet named `sheet` in
/// `xl/workbook.xml`.
fn sheet_relationship<R: Read + Seek>(zip: &mut zip::ZipArchive<R>, sheet: &str) -> Option<String> {
    let bytes = read_part(zip, "xl/workbook.xml")?;
    first_element(&bytes, "sheet", |e| {
        let (mut name, mut id) = (None, None);
        for attribute in e.attributes().flatten() {
            if attribute.key.as_ref() == "name" {
                name = value(&attribute);
            } else if attribute.key.local_name().as_ref() == "id"
                && attribute.key.prefix().is_some()
            {
                id = Some(attribute.value.into_owned());
            }
        }
        (name.as_deref() == Some(sheet)).then_some(id)
    })
    .flatten()
}

/// The zip member of the relationship `id` of `xl/workbook.xml`: its
/// target, relative to `xl/` or, starting with `/`, to the package.
fn sheet_part<R: Read + Seek>(zip: &mut zip::ZipArchive<R>, id: &str) -> Option<String> {
    let bytes = read_part(zip, "xl/_rels/workbook.xml.rels")?;
    let target = first_element(&bytes, "Relationship", |e| {
        let (mut this, mut target) = (false, None);
        for attribute in e.attributes().flatten() {
            match attribute.key.as_ref() {
                "Id" => this = attribute.value == id,
                "Target" => target = value(&attribute),
                _ => {}
            }
        }
        this.then_some(target)
    })??;
    match target.strip_prefix('/') {
        Some(absolute) => Some(absolute.to_string()),
        None if !target.starts_with("..") => Some(format!("xl/{target}")),
        None => None,
    }
}

/// Searches a sheet's XML for its `mergeCells` element (prefixed or not),
/// `chunk` bytes at a time, keeping no more than a chunk and a name's
/// length in memory, and parses that element alone. `None` when the
/// element is malformed.
fn merges_in(mut sheet: impl Read, chunk: usize) -> Option<Vec<MergedBlock>> {
    const NAME: &[u8] = b"mergeCells";
    /// How far before the name its `<` and prefix may lie.
    const BEFORE: usize = 64;
    let finder = memchr::memmem::Finder::new(NAME);
    let mut window: Vec<u8> = Vec::with_capacity(chunk + BEFORE + NAME.len());
    let mut from = 0;
    loop {
        let kept = window.len();
        window.resize(kept + chunk, 0);
        let read = sheet.read(&mut window[kept..]).ok()?;
        window.truncate(kept + read);
        while let Some(at) = finder.find(&window[from..]).map(|i| from + i) {
            if let Some(start) = element_start(&window, at, BEFORE) {
                let rest = std::io::Cursor::new(window.split_off(start)).chain(sheet);
                return parse_merge_cells(rest);
            }
            from = at + 1;
        }
        if read == 0 {
            return Some(Vec::new());
        }
        // keep what a name split across reads, and its `<prefix:`, need
        let keep = window.len().min(BEFORE + NAME.len());
        let dropped = window.len() - keep;
        window.drain(..dropped);
        from = from
            .saturating_sub(dropped)
            .max(keep.saturating_sub(NAME.len() - 1));
    }
}

/// The index of the `<` that opens an element whose local name begins at
/// `at` (`<mergeCells` or `<x:mergeCells`), if one does: not an end tag,
/// and not the same letters in text or an attribute.
fn element_start(window: &[u8], at: usize, before: usize) -> Option<usize> {
    let mut i = at;
    while i > 0 && at - i <= before {
        i -= 1;
        match window[i] {
            b'<' => return Some(i),
            b':' | b'_' | b'-' | b'.' => {}
            c if c.is_ascii_alphanumeric() => {}
            _ => return None,
        }
    }
    None
}

/// The `mergeCell` refs of a `mergeCells` element at the start of `xml`.
fn parse_merge_cells(xml: impl Read) -> Option<Vec<MergedBlock>> {
    let mut xml = quick_xml::Reader::from_reader(BufReader::new(xml));
    let mut buf = Vec::new();
    let mut merges = Vec::new();
    loop {
        match xml.read_event_into(&mut buf).ok()? {
            Event::Empty(e) | Event::Start(e) if e.local_name().as_ref() == "mergeCell" => {
                let reference = e.try_get_attribute("ref").ok()??;
                // a single cell "merged" with itself hides nothing
                if let Some(block) = block(&reference.value) {
                    merges.push(block);
                }
            }
            Event::Empty(e) if e.local_name().as_ref() == "mergeCells" => return Some(merges),
            Event::End(e) if e.local_name().as_ref() == "mergeCells" => return Some(merges),
            Event::Eof => return None,
            _ => {}
        }
        buf.clear();
    }
}

/// `A2:B4` as its corners; `None` for a single cell or a ref outside
/// Excel's limits.
fn block(reference: &str) -> Option<MergedBlock> {
    let (first, last) = reference.split_once(':')?;
    let (first, last) = (position(first)?, position(last)?);
    (first != last && first.0 <= last.0 && first.1 <= last.1).then_some((first, last))
}

/// `C17` (or `$C$17`, `c17`) as 0-based (row, column); `None` past
/// Excel's limits, which only a hostile file's merge reaches.
fn position(address: &str) -> Option<(u32, u32)> {
    let address = address.trim().replace('$', "").to_ascii_uppercase();
    let digits = address.find(|c: char| c.is_ascii_digit())?;
    let (letters, row) = address.split_at(digits);
    if letters.is_empty() || letters.len() > 3 || !letters.bytes().all(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let column = column_index(letters)?;
    let row: u32 = row.parse().ok()?;
    if !(1..=MAX_ROWS).contains(&row) || column >= MAX_COLS {
        return None;
    }
    Some((row - 1, column))
}

/// The merged cells of the sheet named `sheet` of the ods at `path`, which
/// calamine does not expose: an ods marks them on the first cell
/// (`table:number-rows-spanned`, `table:number-columns-spanned`), counting
/// rows and columns with their repeats. Blocks past Excel's limits are
/// dropped, as for an xlsx. The file has passed `guard::ods_content`,
/// which bounds what its repeats expand to.
pub fn ods_merges(path: &Path, sheet: &str) -> Option<Vec<MergedBlock>> {
    let file = std::fs::File::open(path).ok()?;
    let mut zip = zip::ZipArchive::new(BufReader::new(file)).ok()?;
    let content = zip.by_name("content.xml").ok()?;
    ods_merges_in(BufReader::new(content), sheet)
}

fn ods_merges_in(content: impl std::io::BufRead, sheet: &str) -> Option<Vec<MergedBlock>> {
    let mut xml = quick_xml::Reader::from_reader(content);
    let mut buf = Vec::new();
    let mut inside = false;
    let mut merges = Vec::new();
    // 0-based row and column of the next row and cell
    let (mut row, mut col) = (0_u64, 0_u64);
    let mut row_repeats = 1;
    loop {
        let event = xml.read_event_into(&mut buf).ok()?;
        let (e, empty) = match &event {
            Event::Start(e) => (e, false),
            Event::Empty(e) => (e, true),
            Event::End(e) if inside && e.name().as_ref() == "table:table" => return Some(merges),
            Event::End(e) if inside && e.name().as_ref() == "table:table-row" => {
                row = row.saturating_add(row_repeats);
                buf.clear();
                continue;
            }
            Event::Eof => return None,
            _ => {
                buf.clear();
                continue;
            }
        };
        match e.name().as_ref() {
            "table:table" if !empty => {
                inside = inside
                    || e.try_get_attribute("table:name")
                        .ok()
                        .flatten()
                        .and_then(|a| value(&a))
                        .is_some_and(|name| name == sheet);
            }
            "table:table-row" if inside => {
                col = 0;
                row_repeats = repeats(e, "table:number-rows-repeated");
                if empty {
                    row = row.saturating_add(row_repeats);
                }
            }
            "table:table-cell" if inside => {
                let rows = repeats(e, "table:number-rows-spanned");
                let cols = repeats(e, "table:number-columns-spanned");
                if rows > 1 || cols > 1 {
                    let last = (row.saturating_add(rows - 1), col.saturating_add(cols - 1));
                    if last.0 < u64::from(MAX_ROWS) && last.1 < u64::from(MAX_COLS) {
                        // both below Excel's limits, which fit a u32
                        #[allow(clippy::cast_possible_truncation)]
                        merges.push(((row as u32, col as u32), (last.0 as u32, last.1 as u32)));
                    }
                }
                col = col.saturating_add(repeats(e, "table:number-columns-repeated"));
            }
            "table:covered-table-cell" if inside => {
                col = col.saturating_add(repeats(e, "table:number-columns-repeated"));
            }
            _ => {}
        }
        buf.clear();
    }
}

/// A count attribute of an ods element: 1 when absent or unreadable, and
/// never more than Excel's rows, so that sums stay far from overflowing.
fn repeats(e: &BytesStart<'_>, name: &str) -> u64 {
    e.try_get_attribute(name)
        .ok()
        .flatten()
        .and_then(|a| a.value.trim().parse::<u64>().ok())
        .unwrap_or(1)
        .clamp(1, u64::from(MAX_ROWS))
}

#[cfg(test)]
mod tests {
    use super::{block, merges_in, ods_merges_in, xlsx_merges};

    const SHEET: &str = r#"<?xml version="1.0"?><worksheet xmlns="x"><sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>mergeCells</t></is></c><c r="B1" t="inlineStr"><is><t>x mergeCells="1"</t></is></c></row></sheetData><mergeCells count="3"><mergeCell ref="A2:A4"/><mergeCell ref="C5"/><mergeCell ref="B6:D6"></mergeCell></mergeCells><pageMargins left="0.7"/></worksheet>"#;

    /// An ods marks merged cells on their first cell; rows and columns
    /// count with their repeats, in row groups and header rows too, and
    /// only the named sheet's are given.
    #[test]
    fn ods_merges_count_repeated_rows_and_columns() {
        let content = r#"<office:document-content><office:body><office:spreadsheet>
            <table:table table:name="说明"><table:table-row><table:table-cell table:number-columns-spanned="3"/></table:table-row></table:table>
            <table:table table:name="流 &amp; 向">
              <table:table-header-rows><table:table-row table:number-rows-repeated="2"><table:table-cell/></table:table-row></table:table-header-rows>
              <table:table-row-group>
                <table:table-row>
                  <table:table-cell table:number-columns-repeated="2"/>
                  <table:table-cell table:number-rows-spanned="2" table:number-columns-spanned="1" office:value-type="string"><text:p>日期</text:p></table:table-cell>
                  <table:table-cell table:number-columns-spanned="2" table:number-rows-spanned="1"><text:p>销售</text:p></table:table-cell>
                  <table:covered-table-cell/>
                  <table:table-cell table:number-columns-spanned="1"/>
                </table:table-row>
              </table:table-row-group>
              <table:table-row/>
              <table:table-row><table:table-cell table:number-rows-spanned="9999999"/><table:table-cell table:number-rows-spanned="3"/></table:table-row>
            </table:table>
        </office:spreadsheet></office:body></office:document-content>"#;
        assert_eq!(
            ods_merges_in(content.as_bytes(), "流 & 向"),
            Some(vec![((2, 2), (3, 2)), ((2, 3), (2, 4)), ((4, 1), (6, 1))])
        );
        assert_eq!(
            ods_merges_in(content.as_bytes(), "说明"),
            Some(vec![((0, 0), (0, 2))])
        );
        assert_eq!(ods_merges_in(content.as_bytes(), "流向"), None);
    }

    /// The element is found whatever the read size (a name split across
    /// reads included), the same letters in text are passed over, and a
    /// single-cell merge is dropped.
    #[test]
    fn merges_are_found_across_reads_and_not_in_text() {
        for chunk in [1, 2, 7, 10, 11, 64, 1 << 16] {
            assert_eq!(
                merges_in(SHEET.as_bytes(), chunk),
                Some(vec![((1, 0), (3, 0)), ((5, 1), (5, 3))]),
                "{chunk}"
            );
        }
        let prefixed = r#"<x:worksheet xmlns:x="x"><x:sheetData/><x:mergeCells><x:mergeCell ref="$B$2:$B$3"/></x:mergeCells></x:worksheet>"#;
        assert_eq!(
            merges_in(prefixed.as_bytes(), 5),
            Some(vec![((1, 1), (2, 1))])
        );
        assert_eq!(
            merges_in(&b"<worksheet><sheetData/></worksheet>"[..], 4),
            Some(vec![])
        );
        assert_eq!(
            merges_in(&b"<worksheet><mergeCells><mergeCell ref"[..], 4),
            None
        );
    }

    /// The sheet is found by its name as Excel shows it (escaped in
    /// `workbook.xml`), through the workbook's relationships, whatever
    /// its place; a sheet the workbook lacks gives `None`.
    #[test]
    fn a_sheet_is_found_by_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.xlsx");
        let mut wb = rust_xlsxwriter::Workbook::new();
        let plain = rust_xlsxwriter::Format::new();
        let first = wb.add_worksheet().set_name("说明").unwrap();
        first.merge_range(0, 0, 0, 3, "流向", &plain).unwrap();
        let name = "流向 \"旧\" & <新>";
        let second = wb.add_worksheet().set_name(name).unwrap();
        second.merge_range(1, 4, 3, 4, "R1", &plain).unwrap();
        wb.add_worksheet().set_name("空").unwrap();
        wb.save(&path).unwrap();
        assert_eq!(xlsx_merges(&path, name), Some(vec![((1, 4), (3, 4))]));
        assert_eq!(xlsx_merges(&path, "说明"), Some(vec![((0, 0), (0, 3))]));
        assert_eq!(xlsx_merges(&path, "空"), Some(vec![]));
        assert_eq!(xlsx_merges(&path, "流向"), None);
    }

    /// Part names match whatever their case: members renamed in upper
    /// case, as some writers spell them, are still followed.
    #[test]
    fn part_names_match_in_any_case() {
        use std::io::{Read, Write};
        let dir = tempfile::tempdir().unwrap();
        let written = dir.path().join("m.xlsx");
        let mut wb = rust_xlsxwriter::Workbook::new();
        let ws = wb.add_worksheet().set_name("流向").unwrap();
        ws.merge_range(1, 4, 3, 4, "R1", &rust_xlsxwriter::Format::new())
            .unwrap();
        wb.save(&written).unwrap();
        let renamed = dir.path().join("upper.xlsx");
        let mut from = zip::ZipArchive::new(std::fs::File::open(&written).unwrap()).unwrap();
        let mut to = zip::ZipWriter::new(std::fs::File::create(&renamed).unwrap());
        let mut names = Vec::new();
        for i in 0..from.len() {
            let mut member = from.by_index(i).unwrap();
            let name = match member.name().unwrap().as_ref() {
                "xl/workbook.xml" => "XL/Workbook.xml".to_string(),
                "xl/worksheets/sheet1.xml" => "xl/Worksheets/Sheet1.XML".to_string(),
                other => other.to_string(),
            };
            let mut bytes = Vec::new();
            member.read_to_end(&mut bytes).unwrap();
            to.start_file(name.as_str(), zip::write::SimpleFileOptions::default())
                .unwrap();
            to.write_all(&bytes).unwrap();
            names.push(name);
        }
        to.finish().unwrap();
        assert!(
            names.contains(&"xl/Worksheets/Sheet1.XML".to_string()),
            "{names:?}"
        );
        assert_eq!(xlsx_merges(&renamed, "流向"), Some(vec![((1, 4), (3, 4))]));
    }

    #[test]
    fn refs_outside_excel_are_dropped() {
        assert_eq!(block("A1:XFD1048576"), Some(((0, 0), (1_048_575, 16_383))));
        assert_eq!(block("A1:XFE1"), None);
        assert_eq!(block("A0:A3"), None);
        assert_eq!(block("A1:A1048577"), None);
        assert_eq!(block("B3:A1"), None);
        assert_eq!(block("A1"), None);
    }
}
