//! Canonical rows (SPEC §4) and the mapping from a file's header to them:
//! one typed record per dataset, or one rejection naming the cell and reason.

use std::fmt;
use std::sync::OnceLock;

use chrono::NaiveDate;
use compact_str::CompactString;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;

use super::coerce::{self, half_width, Cell, Epoch};
use super::reader::{FileError, NearMiss};
use crate::config::{Dataset, SourceConfig};
use crate::metrics::YearMonth;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sale {
    pub invoice_date: NaiveDate,
    pub customer_id: String,
    pub product_id: String,
    pub amount: f64,
    pub quantity: Option<f64>,
    pub invoice_no: Option<String>,
    pub line_no: Option<String>,
    pub rep_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CustomerRow {
    pub customer_id: String,
    pub name: String,
    pub region: String,
    pub rep_id: String,
    pub customer_type: Option<String>,
    pub first_contact_date: Option<NaiveDate>,
    pub signed_date: Option<NaiveDate>,
    pub prospect_score: Option<f64>,
    pub coverage_score: Option<f64>,
    pub status: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Visit {
    pub visit_date: NaiveDate,
    pub rep_id: String,
    pub customer_id: String,
    pub visit_type: Option<String>,
    pub outcome: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RepRow {
    pub rep_id: String,
    pub name: String,
    pub region: String,
    pub hire_date: Option<NaiveDate>,
    pub email: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetRow {
    pub rep_id: String,
    pub month: YearMonth,
    pub sales_target: Option<f64>,
    pub new_customer_target: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SurveyRow {
    pub customer_id: String,
    pub date: NaiveDate,
    pub score: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Record {
    Sale(Sale),
    Customer(CustomerRow),
    Visit(Visit),
    Rep(RepRow),
    Target(TargetRow),
    Survey(SurveyRow),
}

/// A record with the 1-based row (or line, or result position) it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Located {
    pub row: u64,
    pub record: Record,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Reason {
    MissingRequiredField,
    UnparsableDate,
    UnparsableNumber,
    UnknownCustomerId,
    UnknownRepId,
    RejectRatioExceeded,
    CannotOpenFile,
    MissingColumn,
}

impl Reason {
    /// Every reason, in SPEC §4's order, row reasons first.
    pub const ALL: [Reason; 8] = [
        Reason::MissingRequiredField,
        Reason::UnparsableDate,
        Reason::UnparsableNumber,
        Reason::UnknownCustomerId,
        Reason::UnknownRepId,
        Reason::RejectRatioExceeded,
        Reason::CannotOpenFile,
        Reason::MissingColumn,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MissingRequiredField => "missing required field",
            Reason::UnparsableDate => "unparsable date",
            Reason::UnparsableNumber => "unparsable number",
            Reason::UnknownCustomerId => "unknown customer id",
            Reason::UnknownRepId => "unknown rep id",
            Reason::RejectRatioExceeded => "reject ratio exceeded",
            Reason::CannotOpenFile => "cannot open file",
            Reason::MissingColumn => "missing column",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One data-quality row: which file, sheet, row and cell was refused, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejection {
    pub source: String,
    pub file: String,
    pub sheet: String,
    /// 0 when the whole file is refused
    pub row: u64,
    /// spreadsheet address such as `C17`, empty for file-level problems
    pub cell: String,
    /// the header text in the file (or the canonical field if unmapped)
    pub column: String,
    pub value: String,
    pub reason: Reason,
    /// extra detail: the parser's message for a file-level problem, or a
    /// hint at the cause of a row's (an id Excel wrote in scientific notation)
    pub detail: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.source, self.file)?;
        if !self.sheet.is_empty() {
            write!(f, " [{}]", self.sheet)?;
        }
        if self.row > 0 {
            write!(f, " row {}", self.row)?;
        }
        if !self.cell.is_empty() {
            write!(f, " cell {}", self.cell)?;
        }
        if !self.column.is_empty() {
            write!(f, " column `{}`", self.column)?;
        }
        if self.row > 0 || !self.value.is_empty() {
            write!(f, " value `{}`", self.value)?;
        }
        write!(f, ": {}", self.reason)?;
        if !self.detail.is_empty() {
            write!(f, " ({})", self.detail)?;
        }
        Ok(())
    }
}

/// `1.23457E+12`: how Excel writes a number of more than 11 digits to a
/// CSV (or shows it in a General cell), keeping 6 significant digits.
/// An `unparsable date` rejection, with the `date_format` that reads the
/// value when it is a common form of date.
fn unparsable_date(mut rejection: Box<Rejection>, cell: &Cell) -> Box<Rejection> {
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
fn totals_row(cells: &[Cell]) -> Option<String> {
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
const NOT_DATA_ADVICE: &str = "delete it from the file; until then it is rejected like any \
                               row without its values, and counts against `max_reject_ratio`";

/// For the detail of a rejected row that is the header row again: where
/// files were joined end to end (`cat a.csv b.csv`, a copy and paste of
/// several sheets) or an ERP export repeats its headers on every printed
/// page. Every mapped cell must hold its own header, so a row with one
/// such cell by chance is not called a header.
fn repeated_header(mapping: &Mapping, cells: &[Cell]) -> Option<String> {
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
fn unparsable_number(mut rejection: Box<Rejection>, cell: &Cell) -> Box<Rejection> {
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
fn accounting_hint(cell: &Cell) -> Option<String> {
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

fn unit_hint(cell: &Cell) -> Option<String> {
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

fn in_scientific_notation(id: &str) -> bool {
    let Some((mantissa, exponent)) = id.split_once(['E', 'e']) else {
        return false;
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(int)
        && (frac.is_empty() || digits(frac))
        && digits(exponent.strip_prefix('+').unwrap_or(exponent))
}

/// A block of merged cells: the 0-based (row, column) of its first and
/// last cell.
pub type MergedBlock = ((u32, u32), (u32, u32));

/// Gives a `missing required field` whose cell lies inside merged cells
/// (a date or customer typed once for a block of rows, then merged down:
/// common in hand-made Chinese sales sheets) a detail saying so. Excel
/// keeps a merged block's value in its first cell only, and every reader
/// (calamine, pandas, Power Query) sees the others as empty, so the rows
/// stay rejected as SPEC §4 says; filling the value down would be a rule
/// SPEC does not give. A rejection that already has a detail (a totals row)
/// keeps it.
pub fn explain_merged_cells(rejections: &mut [Rejection], merged: &[MergedBlock]) {
    // blocks never overlap, so those covering one column are ordered by
    // their first row and found by binary search; only the few columns
    // with such rejections are indexed, whatever the number of blocks
    let mut by_column: FxHashMap<u32, Vec<MergedBlock>> = FxHashMap::default();
    for rejection in rejections.iter_mut() {
        if rejection.reason != Reason::MissingRequiredField || !rejection.detail.is_empty() {
            continue;
        }
        let (Some(column), Ok(row)) = (column_index(&rejection.cell), u32::try_from(rejection.row))
        else {
            continue;
        };
        let row = row.saturating_sub(1);
        let blocks = by_column.entry(column).or_insert_with(|| {
            let mut blocks: Vec<_> = merged
                .iter()
                .filter(|(first, last)| (first.1..=last.1).contains(&column))
                .copied()
                .collect();
            blocks.sort_unstable();
            blocks
        });
        let after = blocks.partition_point(|(first, _)| first.0 <= row);
        let Some((first, last)) = after.checked_sub(1).map(|i| blocks[i]) else {
            continue;
        };
        if row <= last.0 && (row, column) != first {
            rejection.detail = format!(
                "cell {} lies in the merged cells {}, whose value only {} holds: {UNMERGE}",
                rejection.cell,
                block_range((first, last)),
                cell_address(first)
            );
        }
    }
}

/// What to do about a value that merged cells hold in their first cell only.
pub const UNMERGE: &str = "unmerge them and fill the value into every row";

/// `A3` for the 0-based (row, column).
fn cell_address((row, column): (u32, u32)) -> String {
    format!("{}{}", column_letters(column as usize), u64::from(row) + 1)
}

/// `A2:A4` for a merged block.
fn block_range((first, last): MergedBlock) -> String {
    format!("{}:{}", cell_address(first), cell_address(last))
}

/// An optional field that merged cells left empty in rows that loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergedLoss {
    pub field: &'static str,
    /// the column's header, as mapped
    pub header: String,
    /// data rows that loaded with the field empty because of the blocks
    pub rows: u64,
    /// the blocks, as `E2:E4`, in the order of their first row
    pub blocks: Vec<String>,
}

/// The 1-based rows of a sheet that reached the row check (loaded or
/// rejected), as runs of consecutive rows: the blank rows between runs,
/// and the rows past the last, were skipped. A sheet without blank rows is
/// one run. At most [`RowRuns::MAX`] runs are kept, so a hostile sheet of
/// alternate blank rows costs a bounded list; past it, the last run takes
/// in the rest, blanks included.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RowRuns {
    runs: Vec<(u64, u64)>,
}

impl RowRuns {
    pub const MAX: usize = 1 << 16;

    /// Records a data row; rows come in increasing order.
    pub fn push(&mut self, row: u64) {
        let full = self.runs.len() == Self::MAX;
        match self.runs.last_mut() {
            Some((_, last)) if *last + 1 == row || full => *last = row,
            _ => self.runs.push((row, row)),
        }
    }

    pub fn first(&self) -> Option<u64> {
        self.runs.first().map(|r| r.0)
    }

    /// Rows recorded in `from..=to`, given `prefix` (see [`Self::prefix`]):
    /// two searches, whatever the range.
    fn count_between(&self, prefix: &[u64], from: u64, to: u64) -> u64 {
        let lo = self.runs.partition_point(|r| r.1 < from);
        let hi = self.runs.partition_point(|r| r.0 <= to);
        if lo >= hi {
            return 0;
        }
        (prefix[hi] - prefix[lo])
            - from.saturating_sub(self.runs[lo].0)
            - self.runs[hi - 1].1.saturating_sub(to)
    }

    /// The number of rows in the runs before each run, and in all of them.
    fn prefix(&self) -> Vec<u64> {
        let mut prefix = Vec::with_capacity(self.runs.len() + 1);
        prefix.push(0);
        for (first, last) in &self.runs {
            prefix.push(prefix.last().copied().unwrap_or(0) + (last - first + 1));
        }
        prefix
    }
}

/// Rows in increasing order, as `push` takes them.
impl FromIterator<u64> for RowRuns {
    fn from_iter<I: IntoIterator<Item = u64>>(rows: I) -> Self {
        let mut runs = Self::default();
        for row in rows {
            runs.push(row);
        }
        runs
    }
}

/// The optional fields that merged cells emptied in rows that loaded: a
/// rep or invoice number typed once for a block of rows and merged down
/// loads, in every row but the first, as an empty optional cell does, which
/// SPEC §4 allows, so the load goes on; the caller only says so. A block
/// that begins above the first data row (a header merged over two rows) is
/// the header's; only the block's rows in `data_rows` count (not a blank
/// row, nor one past the data), less those in `rejected_rows` (every
/// rejected row, listed or not), which did not load. Counted per block,
/// never per cell, so a hostile file declaring huge merges costs a few
/// searches per block.
pub fn merged_optional_cells(
    mapping: &Mapping,
    merged: &[MergedBlock],
    data_rows: &RowRuns,
    rejected_rows: &RowRuns,
) -> Vec<MergedLoss> {
    let Some(first_data_row) = data_rows.first() else {
        return Vec::new();
    };
    let prefix = data_rows.prefix();
    let rejected_prefix = rejected_rows.prefix();
    let rejected_between =
        |from: u64, to: u64| rejected_rows.count_between(&rejected_prefix, from, to);
    let mut losses = Vec::new();
    for (field, required, column, header) in &mapping.fields {
        let Ok(column) = u32::try_from(*column) else {
            continue;
        };
        if *required {
            continue;
        }
        let mut blocks: Vec<MergedBlock> = merged
            .iter()
            .filter(|(first, last)| {
                (first.1..=last.1).contains(&column) && u64::from(first.0) + 1 >= first_data_row
            })
            .copied()
            .collect();
        blocks.sort_unstable();
        let mut loss = MergedLoss {
            field,
            header: header.clone(),
            rows: 0,
            blocks: Vec::new(),
        };
        for (first, last) in blocks {
            // 1-based rows that lack the value: in the column of the
            // block's first cell, the rows below it; in the columns to
            // its right, every row of the block
            let from = u64::from(first.0) + 1 + u64::from(column == first.1);
            let to = u64::from(last.0) + 1;
            if from > to {
                continue;
            }
            let lost = data_rows
                .count_between(&prefix, from, to)
                .saturating_sub(rejected_between(from, to));
            if lost > 0 {
                loss.rows += lost;
                loss.blocks.push(block_range((first, last)));
            }
        }
        if loss.rows > 0 {
            losses.push(loss);
        }
    }
    losses
}

/// The 0-based column of a spreadsheet address (`C17` → 2).
pub(super) fn column_index(address: &str) -> Option<u32> {
    let letters = address.bytes().take_while(u8::is_ascii_uppercase);
    letters.fold(None, |index: Option<u32>, b| {
        let next = index.map_or(0, |i| (i + 1).saturating_mul(26)) + u32::from(b - b'A');
        Some(next)
    })
}

/// Spreadsheet column letters for a 0-based index (0 → A, 26 → AA).
pub fn column_letters(mut col: usize) -> String {
    let mut out = Vec::new();
    loop {
        out.push(b'A' + u8::try_from(col % 26).unwrap_or(0));
        if col < 26 {
            break;
        }
        col = col / 26 - 1;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// Known ids of the masters, for the unknown-id checks.
#[derive(Debug, Default, Clone)]
pub struct Masters {
    customers: IdSet,
    reps: IdSet,
    /// customer and rep ids by their `id_key`, built at the first unknown
    /// id: only a load with such rejections pays for it
    loose: OnceLock<[FxHashMap<String, String>; 2]>,
}

/// Master ids, checked once per loaded row. Ids up to 24 bytes are held
/// inside the set's own slots: the hash is cheap, and a key behind a
/// pointer made each lookup miss the cache a second time to compare it
/// (docs/PERFORMANCE.md).
type IdSet = FxHashSet<CompactString>;

impl Masters {
    pub fn new(
        customers: impl IntoIterator<Item = impl Into<CompactString>>,
        reps: impl IntoIterator<Item = impl Into<CompactString>>,
    ) -> Self {
        Self {
            customers: customers.into_iter().map(Into::into).collect(),
            reps: reps.into_iter().map(Into::into).collect(),
            loose: OnceLock::new(),
        }
    }

    /// For the detail of an `unknown … id`: the master id that `id` differs
    /// from only in leading zeros, letter case, full-width forms or spaces,
    /// and what makes the two differ. The smallest such id when several do.
    fn near_id(&self, id: &str, reason: Reason) -> Option<String> {
        let [customers, reps] = self.loose.get_or_init(|| {
            let index = |ids: &IdSet| {
                let mut by_loose: FxHashMap<String, String> = FxHashMap::default();
                for id in ids {
                    by_loose
                        .entry(id_key(&loose(id)))
                        .and_modify(|held| {
                            if id.as_str() < held.as_str() {
                                *held = id.to_string();
                            }
                        })
                        .or_insert_with(|| id.to_string());
                }
                by_loose
            };
            [index(&self.customers), index(&self.reps)]
        });
        let index = match reason {
            Reason::UnknownRepId => reps,
            _ => customers,
        };
        let id = loose(id);
        let held = index.get(&id_key(&id))?;
        Some(if id == loose(held) {
            format!(
                "the masters hold `{held}`, which differs only in letter case, full-width \
                 characters or spaces"
            )
        } else if whole_decimal(&id).is_some() {
            format!(
                "the masters hold `{held}`: the file writes the id as a decimal number, as \
                 pandas writes an id column with empty cells; write ids as whole numbers or text"
            )
        } else {
            format!(
                "the masters hold `{held}`: an id Excel stores as a number loses its leading \
                 zeros; format the id column as text before saving the file"
            )
        })
    }
}

/// The key under which a `loose` id is looked up: an id of digits (or a
/// whole number written as a decimal) without its leading zeros.
fn id_key(loose: &str) -> String {
    let digits = whole_decimal(loose).unwrap_or(loose);
    if digits.bytes().all(|b| b.is_ascii_digit()) {
        let trimmed = digits.trim_start_matches('0');
        if !trimmed.is_empty() {
            return trimmed.to_string();
        }
    }
    loose.to_string()
}

/// The digits of `1001.0` or `1001.00`: how pandas writes a whole-number id
/// column that has an empty cell (as floats), and how a CSV then holds it.
fn whole_decimal(id: &str) -> Option<&str> {
    let (int, frac) = id.split_once('.')?;
    let digits = |p: &str, only: fn(&u8) -> bool| !p.is_empty() && p.bytes().all(|b| only(&b));
    (digits(int, u8::is_ascii_digit) && digits(frac, |b| *b == b'0')).then_some(int)
}

/// A header or id as a typist sees it: full-width forms (`（`, `Ａ`) as
/// their ASCII, no white space (a line break typed inside a header cell
/// included), ASCII letters lower-case. Only for pointing at a near miss:
/// SPEC §4 matches headers and ids after trimming alone.
fn loose(text: &str) -> String {
    text.chars()
        .map(half_width)
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Where each mapped field sits in the file.
#[derive(Debug, Clone)]
pub struct Mapping {
    pub dataset: Dataset,
    /// (field, required, column index, header text); in SPEC table order
    pub fields: Vec<(&'static str, bool, usize, String)>,
    /// how each field's cell is read, worked out once per file
    kinds: Vec<Kind>,
}

impl Mapping {
    /// Matches the mapped headers (trimmed, full-width spaces included)
    /// against a header row; `Err` lists the headers the file lacks.
    pub fn from_header(source: &SourceConfig, header: &[String]) -> Result<Self, FileError> {
        let cleaned: Vec<&str> = header.iter().map(|h| coerce::trim(h)).collect();
        let mut fields = Vec::new();
        let mut missing = Vec::new();
        let mut near = Vec::new();
        let mut ambiguous = None;
        for (field, required) in source.dataset.fields() {
            let Some(wanted) = source.columns.get(*field) else {
                continue;
            };
            let wanted = coerce::trim(wanted);
            let mut found = cleaned.iter().enumerate().filter(|(_, h)| **h == wanted);
            match (found.next(), found.next()) {
                (Some((i, _)), None) => fields.push((*field, *required, i, wanted.to_string())),
                (None, _) => {
                    let loose_wanted = loose(wanted);
                    if let Some((column, found)) = cleaned
                        .iter()
                        .enumerate()
                        .find(|(_, h)| !h.is_empty() && loose(h) == loose_wanted)
                    {
                        near.push(NearMiss {
                            wanted: wanted.to_string(),
                            column,
                            found: (*found).to_string(),
                        });
                    }
                    missing.push(wanted.to_string());
                }
                (Some((first, _)), Some((second, _))) => {
                    let mut columns = vec![first, second];
                    columns.extend(found.map(|(i, _)| i));
                    ambiguous.get_or_insert(FileError::AmbiguousColumn {
                        header: wanted.to_string(),
                        columns,
                    });
                }
            }
        }
        if !missing.is_empty() {
            return Err(FileError::MissingColumn { missing, near });
        }
        if let Some(e) = ambiguous {
            return Err(e);
        }
        let kinds = fields.iter().map(|f| kind_of(f.0)).collect();
        Ok(Self {
            dataset: source.dataset,
            fields,
            kinds,
        })
    }

    pub fn max_column(&self) -> usize {
        self.fields.iter().map(|f| f.2).max().unwrap_or(0)
    }

    /// Whether a mapped optional cell of `cells` is empty: only then may
    /// merged cells have emptied one (see `merged_optional_cells`).
    pub fn has_empty_optional(&self, cells: &[Cell]) -> bool {
        self.fields
            .iter()
            .any(|f| !f.1 && cells.get(f.2).is_none_or(Cell::is_blank))
    }

    /// Refuses the file when a mapped cell of its row (1-based) holds a
    /// formula with no saved result. A program that writes formulas
    /// without calculating them leaves every formula so: the values are
    /// unknown, not empty, and loading the rest of the row would store
    /// sales without their amount or rep without a word.
    pub fn calculated(&self, cells: &[Cell], row: u64) -> Result<(), FileError> {
        for f in &self.fields {
            if let Some(Cell::Uncalculated {
                formula,
                placeholder,
            }) = cells.get(f.2)
            {
                return Err(FileError::Uncalculated {
                    cell: format!("{}{row}", column_letters(f.2)),
                    column: f.3.clone(),
                    formula: formula.clone(),
                    placeholder: *placeholder,
                });
            }
        }
        Ok(())
    }
}

/// Per-file context for turning cells into records.
pub struct RowContext<'a> {
    pub source: &'a str,
    pub file: &'a str,
    pub sheet: &'a str,
    pub epoch: Epoch,
    pub date_format: Option<&'a str>,
    pub masters: &'a Masters,
    /// SQL results have no cell addresses
    pub addresses: bool,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Id,
    Text,
    Date,
    Number,
    Month,
}

fn kind_of(field: &str) -> Kind {
    match field {
        "customer_id" | "product_id" | "rep_id" | "invoice_no" | "line_no" => Kind::Id,
        "invoice_date" | "first_contact_date" | "signed_date" | "visit_date" | "hire_date"
        | "date" => Kind::Date,
        "amount"
        | "quantity"
        | "prospect_score"
        | "coverage_score"
        | "sales_target"
        | "new_customer_target"
        | "score" => Kind::Number,
        "month" => Kind::Month,
        _ => Kind::Text,
    }
}

/// One mapped field's value, in the order of `Mapping::fields`.
enum Slot {
    Absent,
    Text(String),
    Date(NaiveDate),
    Number(f64),
    Month(YearMonth),
}

/// The values of one row. A dataset maps at most 14 fields, so a linear
/// search by name beats hashing, and one allocation serves the row.
struct Values<'m> {
    fields: &'m [(&'static str, bool, usize, String)],
    slots: Vec<Slot>,
}

impl Values<'_> {
    fn slot(&mut self, name: &str) -> Option<&mut Slot> {
        let i = self.fields.iter().position(|f| f.0 == name)?;
        self.slots.get_mut(i)
    }

    fn text(&mut self, name: &str) -> Option<String> {
        match self.slot(name) {
            Some(slot @ Slot::Text(_)) => match std::mem::replace(slot, Slot::Absent) {
                Slot::Text(s) => Some(s),
                _ => None,
            },
            _ => None,
        }
    }

    fn date(&mut self, name: &str) -> Option<NaiveDate> {
        match self.slot(name) {
            Some(Slot::Date(d)) => Some(*d),
            _ => None,
        }
    }

    fn number(&mut self, name: &str) -> Option<f64> {
        match self.slot(name) {
            Some(Slot::Number(n)) => Some(*n),
            _ => None,
        }
    }

    fn month(&mut self) -> Option<YearMonth> {
        match self.slot("month") {
            Some(Slot::Month(m)) => Some(*m),
            _ => None,
        }
    }
}

/// Turns one row (cells indexed by column) into a record, or the rejection of
/// its first failing field in table order, then the id checks.
pub fn to_record(
    mapping: &Mapping,
    cells: &[Cell],
    row: u64,
    ctx: &RowContext<'_>,
) -> Result<Located, Box<Rejection>> {
    let empty = Cell::Empty;
    let mut v = Values {
        fields: &mapping.fields,
        slots: Vec::with_capacity(mapping.fields.len()),
    };
    // boxed: rejections are the rare path, records the hot one
    let reject = |field: &(&'static str, bool, usize, String), cell: &Cell, reason: Reason| {
        Box::new(Rejection {
            source: ctx.source.to_string(),
            file: ctx.file.to_string(),
            sheet: ctx.sheet.to_string(),
            row,
            cell: if ctx.addresses {
                format!("{}{row}", column_letters(field.2))
            } else {
                String::new()
            },
            column: field.3.clone(),
            value: cell.display(),
            reason,
            detail: match reason {
                Reason::UnknownCustomerId | Reason::UnknownRepId => String::new(),
                _ => totals_row(cells)
                    .or_else(|| repeated_header(mapping, cells))
                    .unwrap_or_default(),
            },
        })
    };
    for (f, kind) in mapping.fields.iter().zip(&mapping.kinds) {
        let cell = cells.get(f.2).unwrap_or(&empty);
        let slot = match kind {
            Kind::Id | Kind::Text => coerce::text(cell).map(Slot::Text),
            Kind::Date => match coerce::date(cell, ctx.epoch, ctx.date_format) {
                Ok(d) => d.map(Slot::Date),
                Err(coerce::Unparsable) => {
                    return Err(unparsable_date(
                        reject(f, cell, Reason::UnparsableDate),
                        cell,
                    ))
                }
            },
            Kind::Number => match coerce::number(cell) {
                Ok(n) => n.map(Slot::Number),
                Err(coerce::Unparsable) => {
                    return Err(unparsable_number(
                        reject(f, cell, Reason::UnparsableNumber),
                        cell,
                    ))
                }
            },
            Kind::Month => match coerce::month(cell, ctx.epoch, ctx.date_format) {
                Ok(m) => m.map(Slot::Month),
                Err(coerce::Unparsable) => {
                    return Err(unparsable_date(
                        reject(f, cell, Reason::UnparsableDate),
                        cell,
                    ))
                }
            },
        };
        if f.1 && slot.is_none() {
            return Err(reject(f, cell, Reason::MissingRequiredField));
        }
        v.slots.push(slot.unwrap_or(Slot::Absent));
    }
    for (f, slot) in mapping.fields.iter().zip(&v.slots) {
        let known = match f.0 {
            "customer_id" if mapping.dataset != Dataset::Customers => {
                Some((&ctx.masters.customers, Reason::UnknownCustomerId))
            }
            "rep_id" if mapping.dataset != Dataset::Reps => {
                Some((&ctx.masters.reps, Reason::UnknownRepId))
            }
            _ => None,
        };
        if let (Some((set, reason)), Slot::Text(id)) = (known, slot) {
            if !set.contains(id.as_str()) {
                let mut rejection = reject(f, cells.get(f.2).unwrap_or(&empty), reason);
                if in_scientific_notation(id) {
                    rejection.detail = "a long number Excel saved in scientific notation, its \
                        digits lost; format the id column as text before saving the file"
                        .into();
                } else if let Some(near) = ctx.masters.near_id(id, reason) {
                    rejection.detail = near;
                }
                return Err(rejection);
            }
        }
    }
    // required fields are present: the defaults below are never used
    let record = match mapping.dataset {
        Dataset::Sales => Record::Sale(Sale {
            invoice_date: v.date("invoice_date").unwrap_or_default(),
            customer_id: v.text("customer_id").unwrap_or_default(),
            product_id: v.text("product_id").unwrap_or_default(),
            amount: v.number("amount").unwrap_or_default(),
            quantity: v.number("quantity"),
            invoice_no: v.text("invoice_no"),
            line_no: v.text("line_no"),
            rep_id: v.text("rep_id"),
        }),
        Dataset::Customers => Record::Customer(CustomerRow {
            customer_id: v.text("customer_id").unwrap_or_default(),
            name: v.text("name").unwrap_or_default(),
            region: v.text("region").unwrap_or_default(),
            rep_id: v.text("rep_id").unwrap_or_default(),
            customer_type: v.text("customer_type"),
            first_contact_date: v.date("first_contact_date"),
            signed_date: v.date("signed_date"),
            prospect_score: v.number("prospect_score"),
            coverage_score: v.number("coverage_score"),
            status: v.text("status"),
        }),
        Dataset::Visits => Record::Visit(Visit {
            visit_date: v.date("visit_date").unwrap_or_default(),
            rep_id: v.text("rep_id").unwrap_or_default(),
            customer_id: v.text("customer_id").unwrap_or_default(),
            visit_type: v.text("visit_type"),
            outcome: v.text("outcome"),
        }),
        Dataset::Reps => Record::Rep(RepRow {
            rep_id: v.text("rep_id").unwrap_or_default(),
            name: v.text("name").unwrap_or_default(),
            region: v.text("region").unwrap_or_default(),
            hire_date: v.date("hire_date"),
            email: v.text("email"),
        }),
        Dataset::Targets => Record::Target(TargetRow {
            rep_id: v.text("rep_id").unwrap_or_default(),
            month: v.month().unwrap_or(YearMonth::new(1900, 1)),
            sales_target: v.number("sales_target"),
            new_customer_target: v.number("new_customer_target"),
        }),
        Dataset::Satisfaction => Record::Survey(SurveyRow {
            customer_id: v.text("customer_id").unwrap_or_default(),
            date: v.date("date").unwrap_or_default(),
            score: v.number("score").unwrap_or_default(),
        }),
    };
    Ok(Located { row, record })
}

#[cfg(test)]
mod tests {
    use super::{
        column_index, column_letters, merged_optional_cells, Mapping, Masters, MergedLoss, RowRuns,
    };
    use crate::config::Dataset;

    /// Ids are held inline up to 24 bytes and on the heap beyond: both are
    /// found, and neither a prefix nor a longer id is taken for them.
    #[test]
    fn master_ids_inline_or_not_are_found_exactly() {
        let long = "HOSP-310000-0001-OUTPATIENT-CLINIC"; // 34 bytes
        let chinese = "上海市第一人民医院门诊部"; // 36 bytes in UTF-8
        let m = Masters::new([long, chinese, "C1"], ["R1".to_string()]);
        for id in [long, chinese, "C1"] {
            assert!(m.customers.contains(id), "{id}");
        }
        for id in [
            &long[..24],
            &long[..33],
            "HOSP-310000-0001-OUTPATIENT-CLINICS",
            "C",
            "C10",
        ] {
            assert!(!m.customers.contains(id), "{id}");
        }
        assert!(m.reps.contains("R1") && !m.reps.contains("C1"));
    }

    /// Only the optional columns' blocks below the header count; a block
    /// spanning columns empties every row of the columns right of its
    /// first cell; rejected rows did not load, nor did blank rows or rows
    /// past the data; a block declaring a million rows is counted, not
    /// walked.
    #[test]
    fn merged_optional_cells_counts_the_rows_that_loaded_without_the_value() {
        let mapping = Mapping {
            dataset: Dataset::Sales,
            fields: vec![
                ("invoice_date", true, 0, "日期".into()),
                ("rep_id", false, 4, "代表".into()),
                ("quantity", false, 5, "数量".into()),
            ],
            kinds: Vec::new(),
        };
        // data in rows 3–12 and 15–20; rows 13 and 14 are blank
        let data: RowRuns = (3..=12).chain(15..=20).collect();
        let merged = [
            ((10, 4), (1_048_575, 4)),
            ((0, 4), (1, 4)),
            ((2, 4), (5, 4)),
            ((7, 3), (7, 5)),
            ((2, 0), (3, 0)),
            ((12, 4), (13, 4)),
        ];
        let loss = |field, header: &str, rows, blocks: &[&str]| MergedLoss {
            field,
            header: header.into(),
            rows,
            blocks: blocks.iter().map(ToString::to_string).collect(),
        };
        let rows = |rows: &[u64]| rows.iter().copied().collect::<RowRuns>();
        // E4:E6 less rejected row 5; row 8; rows 12 and 15–20 below E11
        // (E14, in the blank rows, loads nothing)
        assert_eq!(
            merged_optional_cells(&mapping, &merged, &data, &rows(&[5, 9])),
            [
                loss(
                    "rep_id",
                    "代表",
                    2 + 1 + 7,
                    &["E3:E6", "D8:F8", "E11:E1048576"]
                ),
                loss("quantity", "数量", 1, &["D8:F8"]),
            ]
        );
        assert_eq!(
            merged_optional_cells(&mapping, &merged, &data, &rows(&[8])).len(),
            1
        );
        assert!(
            merged_optional_cells(&mapping, &merged, &RowRuns::default(), &RowRuns::default())
                .is_empty()
        );
    }

    /// Runs of consecutive rows are counted over any range by two searches;
    /// past `MAX` runs the last one takes in the rest.
    #[test]
    fn row_runs_count_the_rows_in_a_range() {
        let mut runs = RowRuns::default();
        for row in [2, 3, 4, 7, 9, 10] {
            runs.push(row);
        }
        assert_eq!(runs.runs, [(2, 4), (7, 7), (9, 10)]);
        let prefix = runs.prefix();
        for (from, to, rows) in [
            (1, 100, 6),
            (3, 9, 4),
            (5, 6, 0),
            (4, 4, 1),
            (8, 8, 0),
            (10, 10, 1),
            (11, 1_048_576, 0),
            (1, 1, 0),
        ] {
            assert_eq!(runs.count_between(&prefix, from, to), rows, "{from}..={to}");
        }
        let mut hostile = RowRuns::default();
        for row in (1..=2 * RowRuns::MAX as u64 + 10).step_by(2) {
            hostile.push(row);
        }
        assert_eq!(hostile.runs.len(), RowRuns::MAX);
        let last = hostile.runs[RowRuns::MAX - 1];
        assert_eq!(
            last,
            (2 * RowRuns::MAX as u64 - 1, 2 * RowRuns::MAX as u64 + 9)
        );
    }

    /// Merged-cell details find a rejection's column from its address, so
    /// the two conversions must agree past `Z` and `ZZ`.
    #[test]
    fn column_letters_and_index_are_inverse() {
        for (index, letters) in [
            (0, "A"),
            (25, "Z"),
            (26, "AA"),
            (52, "BA"),
            (701, "ZZ"),
            (702, "AAA"),
            (16_383, "XFD"),
        ] {
            assert_eq!(column_letters(index as usize), letters);
            assert_eq!(
                column_index(&format!("{letters}17")),
                Some(index),
                "{letters}"
            );
        }
        assert_eq!(column_index("17"), None);
    }
}
