//! The details of row rejections: what a rejected row or value most
//! likely is (a totals row, a repeated header, a date in a common form, a
//! negative amount in accounting form, a number with its unit, an id Excel
//! turned into scientific notation) and what to do about it.

use super::{loose, Mapping, Rejection};
use crate::ingest::coerce::{self, half_width, Cell};

/// An `unparsable date` rejection, with the `date_format` that reads the
/// value when it is a common form of date.
pub(super) fn unparsable_date(mut rejection: Box<Rejection>, cell: &Cell) -> Box<Rejection> {
    if let Some(hint) = coerce::date_format_hint(cell) {
        rejection.detail = hint;
    }
    rejection
}

/// For the detail of a row rejected for a missing or unparsable value: a
/// totals row at the foot of a distributor's sheet (`合计`, `总计`,
/// `Total` …) names itself in one of its cells. SPEC §4 counts it as a data
/// row, rejected like any other, so in a short file it alone can exceed
/// `max_reject_ratio`; the detail says what the row is and what to do.
pub(super) fn totals_row(cells: &[Cell]) -> Option<String> {
    const LABELS: [&str; 9] = [
        "合计",
        "总计",
        "小计",
        "共计",
        "总合计",
        "total",
        "totals",
        "subtotal",
        "grandtotal",
    ];
    cells.iter().find_map(|cell| {
        let Cell::Text(text) = cell else {
            return None;
        };
        let label = loose(text);
        let label = label.trim_end_matches([':', '：']);
        LABELS
            .contains(&label)
            .then(|| format!("a totals row (`{}`): {NOT_DATA_ADVICE}", coerce::trim(text)))
    })
}

/// What to do about a row that holds no data (a totals row, the header
/// again): SPEC §4 has no rule to skip it.
pub(super) const NOT_DATA_ADVICE: &str =
    "delete it from the file; until then it is rejected like any \
                               row without its values, and counts against `max_reject_ratio`";

/// For the detail of a rejected row that is the header row again: where
/// files were joined end to end (`cat a.csv b.csv`, a copy and paste of
/// several sheets) or an ERP export repeats its headers on every printed
/// page. Every mapped cell must hold its own header, so a row with one
/// such cell by chance is not called a header.
pub(super) fn repeated_header(mapping: &Mapping, cells: &[Cell]) -> Option<String> {
    mapping
        .fields
        .iter()
        .all(|(_, _, col, header)| {
            matches!(cells.get(*col), Some(Cell::Text(text))
                if coerce::trim(text) == coerce::trim(header))
        })
        .then(|| format!("the header row again: {NOT_DATA_ADVICE}"))
}

/// An `unparsable number` rejection, saying so when the value is a number
/// followed by a unit (`1,234.50元`, `1.2万`, `85%`): SPEC §4 reads the
/// number alone, and the unit cannot simply be dropped (`万` is ×10,000).
pub(super) fn unparsable_number(mut rejection: Box<Rejection>, cell: &Cell) -> Box<Rejection> {
    let hint = if matches!(cell, Cell::DateTime(_)) {
        // the workbook stores a number; only its format makes it a date,
        // which calamine honours, so the value shown is a day in 1903
        Some(
            "the cell's format shows its number as a date or time: give the column a number \
             format and save the file"
                .to_string(),
        )
    } else {
        accounting_hint(cell).or_else(|| unit_hint(cell))
    };
    if let Some(hint) = hint {
        rejection.detail = hint;
    }
    rejection
}

/// A negative amount as accounting formats and some ERPs write it:
/// `(1,234.50)`, `¥(1,234.50)`, or with the minus after it, `1,234.50-`
/// (SAP). SPEC §4 reads a minus in front only, and dropping the brackets
/// would load a return as a sale, so the row stays rejected and the
/// detail gives the form that loads. A lone dash is how an accounting
/// format shows 0, and what Excel then writes to a CSV.
pub(super) fn accounting_hint(cell: &Cell) -> Option<String> {
    let Cell::Text(text) = cell else {
        return None;
    };
    let folded: String = coerce::trim(text).chars().map(half_width).collect();
    let folded = coerce::trim(folded.trim_start_matches(['¥', '￥']));
    if matches!(folded, "-" | "–" | "—") {
        return Some(
            "a lone dash, which an accounting format shows for 0: write 0 (format the column \
             as a plain number before exporting)"
                .into(),
        );
    }
    let unsigned = |s: &str| {
        let s = coerce::trim(s);
        (!s.contains('-') && matches!(coerce::number(&Cell::Text(s.to_string())), Ok(Some(_))))
            .then(|| s.to_string())
    };
    let bracketed = |s: &str| unsigned(s.strip_prefix('(')?.strip_suffix(')')?);
    let number = bracketed(folded).or_else(|| unsigned(folded.strip_suffix('-')?))?;
    Some(format!(
        "a negative number in accounting form: only a minus sign in front is read; write it \
         as `-{number}` (format the column as a plain number before exporting)"
    ))
}

pub(super) fn unit_hint(cell: &Cell) -> Option<String> {
    let Cell::Text(text) = cell else {
        return None;
    };
    let text = coerce::trim(text);
    let split = text
        .char_indices()
        .rev()
        .find(|(_, c)| coerce::half_width(*c).is_ascii_digit())
        .map(|(i, c)| i + c.len_utf8())?;
    let (number, unit) = text.split_at(split);
    let unit = coerce::trim(unit);
    if unit.is_empty() || unit.chars().count() > 4 {
        return None;
    }
    coerce::number(&Cell::Text(number.to_string()))
        .ok()
        .flatten()?;
    let scale = if unit.contains('万') {
        " (`万` is ×10,000: multiply before removing it)"
    } else {
        ""
    };
    Some(format!(
        "a number followed by `{unit}`: the column must hold the number alone; remove the \
         unit from its cells{scale}"
    ))
}

/// `1.23457E+12`: how Excel writes a number of more than 11 digits to a
/// CSV (or shows it in a General cell), keeping 6 significant digits.
pub(super) fn in_scientific_notation(id: &str) -> bool {
    let Some((mantissa, exponent)) = id.split_once(['E', 'e']) else {
        return false;
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(int)
        && (frac.is_empty() || digits(frac))
        && digits(exponent.strip_prefix('+').unwrap_or(exponent))
}
