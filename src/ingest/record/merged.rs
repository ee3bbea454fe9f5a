//! Merged cells: a required value that merged cells hold in their first
//! row only (its rejections explained), and an optional one that rows
//! loaded without (`MergedLoss`), with the runs of rows the check saw.

use rustc_hash::FxHashMap;

use super::{column_index, column_letters, Mapping, Reason, Rejection};

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
pub fn block_range((first, last): MergedBlock) -> String {
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

#[cfg(test)]
mod tests {
    use super::{merged_optional_cells, Mapping, MergedLoss, RowRuns};
    use crate::config::Dataset;

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
}
