//! Cell → canonical value coercion of SPEC §4: ids, text, dates (Excel cells,
//! serials in either epoch, ISO, `YYYY/MM/DD`, `YYYY年M月D日`, a custom
//! format), and numbers (numeric cells or decimal text with `¥`/`￥` and
//! thousands separators).

use chrono::{Duration, NaiveDate, NaiveDateTime};

/// One input value as a reader found it, before any interpretation.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Empty,
    Text(String),
    Number(f64),
    /// a cell formatted as a date (the epoch is already applied)
    DateTime(NaiveDateTime),
    Bool(bool),
    /// a spreadsheet error value such as `#N/A`
    Error(String),
    /// a formula cell whose saved result cannot be trusted, as programs
    /// that write formulas without calculating them leave it: none at all
    /// (openpyxl), or 0 in a workbook that asks to be recalculated when
    /// opened (`placeholder`: XlsxWriter, rust_xlsxwriter). Its value is
    /// unknown, not empty or 0. `formula` is the formula's text, when the
    /// cell carries it (a cell of a shared formula names only its group).
    Uncalculated {
        formula: Option<String>,
        placeholder: bool,
    },
}

impl Cell {
    pub fn is_blank(&self) -> bool {
        match self {
            Cell::Empty => true,
            Cell::Text(s) => trim(s).is_empty(),
            _ => false,
        }
    }

    /// The value as the user would read it in the file, for reject messages.
    /// A NUL shows as `␀`: invisible otherwise, and PostgreSQL cannot store it.
    pub fn display(&self) -> String {
        match self {
            Cell::Empty => String::new(),
            Cell::Text(s) if s.contains('\0') => s.replace('\0', "\u{2400}"),
            Cell::Text(s) => s.clone(),
            Cell::Number(n) => format_number(*n),
            Cell::DateTime(d) => d.format("%Y-%m-%d %H:%M:%S").to_string(),
            Cell::Bool(b) => b.to_string(),
            Cell::Error(e) => e.clone(),
            Cell::Uncalculated { formula, .. } => {
                format!("={}", formula.as_deref().unwrap_or("…"))
            }
        }
    }
}

/// Trims Unicode white space, including U+3000 and NBSP, and the NULs that
/// pad fixed-width ERP exports.
pub fn trim(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || c == '\0')
}

fn format_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        format!("{n:.0}")
    } else {
        format!("{n}")
    }
}

/// Ids are text; a whole-number cell becomes its integer text (1001.0 → "1001").
pub fn id(cell: &Cell) -> Option<String> {
    text(cell)
}

/// The text of a cell, `None` when blank. An error value (`#N/A` from a
/// failed lookup) holds no text: stored, it would become a product id, or
/// merge the lines of one invoice key.
pub fn text(cell: &Cell) -> Option<String> {
    let s = match cell {
        Cell::Empty | Cell::Error(_) | Cell::Uncalculated { .. } => return None,
        // a NUL inside a value is export garbage no viewer shows, and
        // PostgreSQL refuses to store it: both warehouses drop it
        Cell::Text(s) => match trim(s) {
            t if t.contains('\0') => t.replace('\0', ""),
            t => t.to_string(),
        },
        Cell::Number(n) => format_number(*n),
        Cell::DateTime(d) => {
            if d.time() == chrono::NaiveTime::MIN {
                d.date().format("%Y-%m-%d").to_string()
            } else {
                d.format("%Y-%m-%d %H:%M:%S").to_string()
            }
        }
        Cell::Bool(b) => b.to_string(),
    };
    (!s.is_empty()).then_some(s)
}

/// A value that is present but cannot be read as the type its field needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unparsable value")]
pub struct Unparsable;

/// How a numeric cell in a date column is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Epoch {
    #[default]
    E1900,
    E1904,
    /// OpenDocument's: serial 0 is the day the file's `table:null-date`
    /// names (LibreOffice's default is 1899-12-30), and a serial simply
    /// counts days from it, with no phantom 1900-02-29
    NullDate(NaiveDate),
}

impl Epoch {
    /// The date system a workbook declares (its `date1904` flag).
    pub fn declared(is_1904: bool) -> Self {
        if is_1904 {
            Self::E1904
        } else {
            Self::E1900
        }
    }
}

/// Converts a date serial to a date. Excel's 1900 system: serial 1 =
/// 1900-01-01 and Excel's phantom 1900-02-29 (serial 60) is skipped.
pub fn excel_serial(serial: f64, epoch: Epoch) -> Option<NaiveDate> {
    if !serial.is_finite() || !(1.0..=2_958_465.0).contains(&serial) {
        return None;
    }
    let days = serial.floor() as i64;
    let base = match epoch {
        Epoch::E1904 => NaiveDate::from_ymd_opt(1904, 1, 1)?,
        Epoch::NullDate(day0) => day0,
        Epoch::E1900 if days < 60 => NaiveDate::from_ymd_opt(1899, 12, 31)?,
        Epoch::E1900 if days == 60 => return None,
        Epoch::E1900 => NaiveDate::from_ymd_opt(1899, 12, 30)?,
    };
    base.checked_add_signed(Duration::days(days))
}

/// `Ok(None)` for a blank cell, `Err(Unparsable)` for a value that is not a date.
pub fn date(
    cell: &Cell,
    epoch: Epoch,
    extra_format: Option<&str>,
) -> Result<Option<NaiveDate>, Unparsable> {
    match cell {
        Cell::Empty => Ok(None),
        Cell::DateTime(d) => Ok(Some(d.date())),
        Cell::Number(n) => excel_serial(*n, epoch)
            .or_else(|| digits_in_format(*n, extra_format?))
            .map(Some)
            .ok_or(Unparsable),
        Cell::Text(s) => {
            let s = trim(s);
            if s.is_empty() {
                return Ok(None);
            }
            let parse =
                |s: &str| parse_date_text(s, extra_format).or_else(|| serial_text(s, epoch));
            parse(s)
                .or_else(|| parse(&half_width_text(s)?))
                .map(Some)
                .ok_or(Unparsable)
        }
        Cell::Bool(_) | Cell::Error(_) | Cell::Uncalculated { .. } => Err(Unparsable),
    }
}

/// A serial written as text: what a CSV holds where Excel showed a date
/// column formatted as a number (`45658`, `46330.75`), or a workbook cell
/// of such digits stored as text. Only five digits before an optional
/// fraction, the serials of 1927-05-18 to 2173-10-14: `2026` or `202610`
/// in a date column is a year or a month written wrongly, and read as a
/// serial it would load as a day in 1905 or 2454 without a word.
fn serial_text(s: &str, epoch: Epoch) -> Option<NaiveDate> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if int.len() != 5 || !digits(int) || !digits(frac) {
        return None;
    }
    excel_serial(s.parse().ok()?, epoch)
}

/// A whole number that is no serial, read as digits in the source's
/// `date_format`: ERP tables and exports often hold `20261003` as an
/// integer. No serial reaches 8 digits (9999-12-31 is 2,958,465), so a
/// number that is a serial is never read this way.
fn digits_in_format(n: f64, format: &str) -> Option<NaiveDate> {
    (n.fract() == 0.0 && (0.0..1e15).contains(&n))
        .then(|| NaiveDate::parse_from_str(&format!("{n:.0}"), format).ok())
        .flatten()
}

/// Text dates: ISO (a time part is ignored), `YYYY/MM/DD`, `YYYY年MM月DD日`
/// (1- or 2-digit month and day for all three), then the source's format.
pub fn parse_date_text(s: &str, extra_format: Option<&str>) -> Option<NaiveDate> {
    // what most exports hold, read without splitting or allocating
    if extra_format.is_none() {
        if let Some(d) = iso_date(s) {
            return Some(d);
        }
    }
    if let Some(fmt) = extra_format {
        if let Ok(d) = NaiveDate::parse_from_str(s, fmt) {
            return Some(d);
        }
        if let Ok(dt) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(dt.date());
        }
        // a time after the date is ignored, as after an ISO date
        if let Ok((d, rest)) = NaiveDate::parse_and_remainder(s, fmt) {
            if is_time_part(rest) {
                return Some(d);
            }
        }
    }
    let date_part = s.split(['T', ' ']).next().unwrap_or(s);
    let parts: Vec<&str> = if let Some(rest) = date_part.strip_suffix('日') {
        let (y, rest) = rest.split_once('年')?;
        let (m, d) = rest.split_once('月')?;
        vec![y, m, d]
    } else if date_part.contains('-') {
        date_part.split('-').collect()
    } else {
        date_part.split('/').collect()
    };
    let [y, m, d] = parts.as_slice() else {
        return None;
    };
    let ok = |p: &str, lo: usize, hi: usize| {
        (lo..=hi).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit())
    };
    if !(ok(y, 4, 4) && ok(m, 1, 2) && ok(d, 1, 2)) {
        return None;
    }
    NaiveDate::from_ymd_opt(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)
}

/// Day-first and month-first forms come in pairs: a value both read is
/// ambiguous, and the hint names both.
const HINT_FORMATS: [(&str, &str); 5] = [
    ("%Y.%m.%d", ""),
    ("%Y%m%d", ""),
    ("%d/%m/%Y", "%m/%d/%Y"),
    ("%d.%m.%Y", "%m.%d.%Y"),
    ("%d-%m-%Y", "%m-%d-%Y"),
];

/// For the detail of an `unparsable date`: the `date_format` that would read
/// `cell`, when it is a date in a common form SPEC §4 does not read on its
/// own (`2026.10.03`, `20261003`, `03/10/2026`). `None` for anything else:
/// `N/A`, or a date that does not exist.
pub fn date_format_hint(cell: &Cell) -> Option<String> {
    let text = match cell {
        Cell::Text(s) => half_width_text(trim(s)).unwrap_or_else(|| trim(s).to_string()),
        Cell::Number(n) if n.fract() == 0.0 && (0.0..1e15).contains(n) => format!("{n:.0}"),
        _ => return None,
    };
    // a time after the date does not change which format reads it
    let date_part = text.split([' ', 'T']).next().unwrap_or(&text);
    let reads = |f: &str| !f.is_empty() && NaiveDate::parse_from_str(date_part, f).is_ok();
    HINT_FORMATS
        .iter()
        .find_map(|(first, second)| match (reads(first), reads(second)) {
            (true, true) => Some(format!(
                "set `date_format` on the source to read this form: `{first}` if the day \
                 comes first, `{second}` if the month does"
            )),
            (true, false) => Some(format!(
                "set `date_format = \"{first}\"` on the source to read this form"
            )),
            (false, true) => Some(format!(
                "set `date_format = \"{second}\"` on the source to read this form"
            )),
            (false, false) => None,
        })
}

/// ` 08:30`, `T08:30:00.000Z`, ` 8:30:00 +08:00`: what may follow a date
/// whose time is ignored.
fn is_time_part(rest: &str) -> bool {
    rest.strip_prefix([' ', 'T']).is_some_and(|time| {
        time.trim_start().starts_with(|c: char| c.is_ascii_digit())
            && time
                .bytes()
                .all(|b| b.is_ascii_digit() || b" :.+-TZ".contains(&b))
    })
}

/// Exactly `YYYY-MM-DD` or `YYYY/MM/DD`; `None` sends anything else down
/// the general path, which reads these two the same way.
fn iso_date(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b[7] || !matches!(b[4], b'-' | b'/') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| {
        b[r].iter().try_fold(0u32, |n, c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    let year = i32::try_from(num(0..4)?).ok()?;
    NaiveDate::from_ymd_opt(year, num(5..7)?, num(8..10)?)
}

/// `Ok(None)` for blank, `Err(Unparsable)` for text that is not a decimal number.
pub fn number(cell: &Cell) -> Result<Option<f64>, Unparsable> {
    match cell {
        Cell::Empty => Ok(None),
        Cell::Number(n) if n.is_finite() => Ok(Some(*n)),
        Cell::Text(s) => {
            let s = trim(s);
            if s.is_empty() {
                return Ok(None);
            }
            parse_number_text(s)
                .or_else(|| parse_number_text(&half_width_text(s)?))
                .map(Some)
                .ok_or(Unparsable)
        }
        _ => Err(Unparsable),
    }
}

/// A full-width form (`１`, `，`, `－`, `Ａ`: what a Chinese input method
/// types in full-width mode) as its ASCII character; any other character
/// as it is.
pub fn half_width(c: char) -> char {
    match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(u32::from(c) - 0xFEE0).unwrap_or(c),
        c => c,
    }
}

/// The text with its full-width forms as ASCII, `None` when it has none:
/// `１，２３４．５` is the number `1,234.5` and `２０２６－１０－０３` the
/// date. Tried only after the text as it is fails, so the common case pays
/// nothing.
fn half_width_text(s: &str) -> Option<String> {
    s.chars()
        .any(|c| half_width(c) != c)
        .then(|| s.chars().map(half_width).collect())
}

pub fn parse_number_text(s: &str) -> Option<f64> {
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, trim(rest)),
        None => (false, s),
    };
    let s = s.strip_prefix(['¥', '￥']).map_or(s, trim);
    let (negative, s) = match (negative, s.strip_prefix('-')) {
        (false, Some(rest)) => (true, rest),
        (n, _) => (n, s),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    // thousands separators only between groups of three digits
    let mut groups = int.split(',');
    let head = groups.next().unwrap_or_default();
    let mut grouped = false;
    for group in groups {
        grouped = true;
        if group.len() != 3 {
            return None;
        }
    }
    if (grouped && (head.is_empty() || head.len() > 3))
        || !int.bytes().all(|b| b.is_ascii_digit() || b == b',')
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    // digits only from here on, which `f64`'s parser reads exactly; written
    // to the stack rather than a new string, as this runs for most amounts
    let int_digits = int.len() - int.bytes().filter(|b| *b == b',').count();
    let mut buf = [b'0'; 64];
    if int_digits.max(1) + 1 + frac.len().max(1) > buf.len() {
        return parse_long(int, frac, negative);
    }
    // an empty part stays the `0` the buffer is filled with
    let mut len = 0;
    for b in int.bytes().filter(|b| *b != b',') {
        buf[len] = b;
        len += 1;
    }
    len = len.max(1);
    buf[len] = b'.';
    len += 1;
    for b in frac.bytes() {
        buf[len] = b;
        len += 1;
    }
    if frac.is_empty() {
        len += 1;
    }
    let v: f64 = std::str::from_utf8(&buf[..len]).ok()?.parse().ok()?;
    Some(if negative { -v } else { v })
}

/// `parse_number_text` for numbers too long for its stack buffer.
fn parse_long(int: &str, frac: &str, negative: bool) -> Option<f64> {
    let digits = int.replace(',', "");
    let v: f64 = format!(
        "{}.{}",
        if digits.is_empty() { "0" } else { &digits },
        if frac.is_empty() { "0" } else { frac }
    )
    .parse()
    .ok()?;
    Some(if negative { -v } else { v })
}

/// A target month: `YYYY-MM` text (also `YYYY/MM`, `YYYY年MM月`) or any date in it.
pub fn month(
    cell: &Cell,
    epoch: Epoch,
    extra_format: Option<&str>,
) -> Result<Option<crate::metrics::YearMonth>, Unparsable> {
    use crate::metrics::YearMonth;
    if let Cell::Text(s) = cell {
        let folded = half_width_text(trim(s));
        let t = folded.as_deref().unwrap_or_else(|| trim(s));
        let t2 = t.trim_end_matches('月').replace(['/', '年'], "-");
        if let Some(ym) = YearMonth::parse(&t2).filter(|_| t2.len() <= 7 && t2.len() >= 6) {
            return Ok(Some(ym));
        }
    }
    date(cell, epoch, extra_format).map(|d| d.map(YearMonth::of))
}
