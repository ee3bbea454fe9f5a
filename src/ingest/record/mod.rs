//! Canonical rows (SPEC §4) and the mapping from a file's header to them:
//! one typed record per dataset, or one rejection naming the cell and reason.

use std::fmt;

use chrono::NaiveDate;
use serde::Serialize;

mod hints;
mod masters;
mod merged;

use self::hints::{
    in_scientific_notation, repeated_header, totals_row, unparsable_date, unparsable_number,
};
pub use self::masters::Masters;
pub use self::merged::{
    block_range, explain_merged_cells, merged_optional_cells, MergedBlock, MergedLoss, RowRuns,
    UNMERGE,
};

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
            return Err(FileError::MissingColumn {
                missing,
                near,
                grouped: Vec::new(),
            });
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
    use super::{column_index, column_letters};

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
