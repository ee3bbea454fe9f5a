//! Excel writer (rust_xlsxwriter): typed numbers and dates, number formats,
//! frozen headers, autofilters, widths, conditional formats on gaps and
//! achievement, a native chart on the Summary sheet, and a page setup for
//! printing (A4, tables landscape and one page wide, header row on every
//! page, title and page number in the footer). Input text is always
//! written with `write_string`, so `=HYPERLINK(…)` stays text.

use std::path::Path;

use anyhow::Context as _;
use rust_xlsxwriter::{
    Chart, ChartType, ConditionalFormatCell, ConditionalFormatCellRule, DocProperties,
    ExcelDateTime, Format, FormatBorder, Workbook, Worksheet,
};

use super::i18n::Labels;
use super::tables::{Report, Table, Value};
use crate::text::zero_if_shown_as_zero;

struct Formats {
    header: Format,
    money: Format,
    num: Format,
    pct: Format,
    date: Format,
    bad: Format,
    warn: Format,
    /// each printed page's footer (see `print_setup`)
    footer: String,
}

impl Formats {
    fn new() -> Self {
        Self {
            header: Format::new()
                .set_bold()
                .set_background_color(0x00DDEBF7)
                .set_border_bottom(FormatBorder::Thin),
            money: Format::new().set_num_format("#,##0.00"),
            num: Format::new().set_num_format("0.00"),
            pct: Format::new().set_num_format("0.0%"),
            date: Format::new().set_num_format("yyyy-mm-dd"),
            bad: Format::new()
                .set_font_color(0x009C0006)
                .set_background_color(0x00FFC7CE),
            warn: Format::new()
                .set_font_color(0x009C5700)
                .set_background_color(0x00FFEB9C),
            footer: String::new(),
        }
    }

    /// With the footer of `report`'s printed pages: its title on the left,
    /// the page number on the right.
    fn for_report(report: &Report, labels: Labels) -> Self {
        Self {
            // `&` starts a code in Excel's header and footer language
            footer: format!(
                "&L{}&R{}",
                report.title.replace('&', "&&"),
                labels.get("page_of")
            ),
            ..Self::new()
        }
    }
}

/// Paper size 9 in Excel's list: A4, the paper of the first users' offices.
const A4: u8 = 9;

/// How a sheet prints: on A4, scaled to one page wide (a manager printing
/// the 16-column scorecard got it cut across pages), tables in landscape
/// with their header row repeated on every page, and the report's title
/// and the page number in the footer.
fn print_setup(ws: &mut Worksheet, table_header: Option<u32>, f: &Formats) -> anyhow::Result<()> {
    ws.set_paper_size(A4);
    ws.set_print_fit_to_pages(1, 0);
    if let Some(row) = table_header {
        ws.set_landscape();
        ws.set_repeat_rows(row, row).map_err(xl)?;
    }
    if !f.footer.is_empty() {
        ws.set_footer(&f.footer);
    }
    Ok(())
}

// by value: it is used as a `map_err` adapter
#[allow(clippy::needless_pass_by_value)]
fn xl(e: rust_xlsxwriter::XlsxError) -> anyhow::Error {
    anyhow::anyhow!("xlsx: {e}")
}

fn write_value(
    ws: &mut Worksheet,
    row: u32,
    col: u16,
    v: &Value,
    f: &Formats,
) -> anyhow::Result<()> {
    match v {
        Value::Text(s) => ws.write_string(row, col, s).map(|_| ()),
        Value::Int(i) => ws.write_number(row, col, *i as f64).map(|_| ()),
        Value::Num(n) => ws
            .write_number_with_format(row, col, zero_if_shown_as_zero(*n, 2), &f.num)
            .map(|_| ()),
        Value::Money(m) => ws
            .write_number_with_format(row, col, zero_if_shown_as_zero(*m, 2), &f.money)
            .map(|_| ()),
        Value::Pct(p) => ws
            .write_number_with_format(row, col, zero_if_shown_as_zero(*p, 3), &f.pct)
            .map(|_| ()),
        Value::Date(d) => ws.write_date_with_format(row, col, *d, &f.date).map(|_| ()),
        Value::Blank => Ok(()),
    }
    .map_err(xl)
}

fn width_for(key: &str) -> f64 {
    match key {
        // the Chinese reason carries SPEC's code beside it
        "customer" | "rep" | "file" | "detail" | "reason" => 28.0,
        "note" => 80.0,
        "source" | "region" | "value" | "column" => 16.0,
        _ => 13.0,
    }
}

fn write_table(
    wb: &mut Workbook,
    table: &Table,
    labels: Labels,
    f: &Formats,
) -> anyhow::Result<()> {
    // rows are written in order, so a table of any length streams through
    // a temporary file instead of being held until the workbook is saved
    let ws = wb.add_worksheet_with_constant_memory().map_err(xl)?;
    ws.set_name(labels.get(table.key)).map_err(xl)?;
    set_widths(ws, &[(table, 0)])?;
    fill_table(ws, table, labels, f, 0)?;
    Ok(())
}

/// The Development sheet: the rep rows as a filtered table, then, after a
/// blank row, the region and company rows (conversion, retention and churn are
/// defined per area only, SPEC §5), so the workbook holds what the HTML
/// report shows. The area rows start under the rep rows' region column, so
/// new customers, target and achievement line up.
fn write_development(
    wb: &mut Workbook,
    reps: &Table,
    areas: &Table,
    labels: Labels,
    f: &Formats,
) -> anyhow::Result<()> {
    let ws = wb.add_worksheet_with_constant_memory().map_err(xl)?;
    ws.set_name(labels.get(reps.key)).map_err(xl)?;
    let areas_col = u16::try_from(reps.column("region").unwrap_or(0))?;
    set_widths(ws, &[(reps, 0), (areas, areas_col)])?;
    let reps_end = fill_table(ws, reps, labels, f, 0)?;
    write_rows(ws, areas, labels, f, (reps_end + 2, areas_col))?;
    Ok(())
}

/// Sets each column to the widest width its tables' columns there want (a
/// constant-memory sheet takes its widths before its rows).
fn set_widths(ws: &mut Worksheet, tables: &[(&Table, u16)]) -> anyhow::Result<()> {
    let mut widths: Vec<f64> = Vec::new();
    for (table, first_col) in tables {
        for (c, key) in table.columns.iter().enumerate() {
            let col = usize::from(*first_col) + c;
            if widths.len() <= col {
                widths.resize(col + 1, 0.0);
            }
            widths[col] = widths[col].max(width_for(key));
        }
    }
    for (col, width) in widths.into_iter().enumerate() {
        if width > 0.0 {
            ws.set_column_width(u16::try_from(col)?, width)
                .map_err(xl)?;
        }
    }
    Ok(())
}

/// A table with its header frozen and filtered, from `first_row` on; the
/// caller has set the column widths. Returns the last row written.
fn fill_table(
    ws: &mut Worksheet,
    table: &Table,
    labels: Labels,
    f: &Formats,
    first_row: u32,
) -> anyhow::Result<u32> {
    let last_row = write_rows(ws, table, labels, f, (first_row, 0))?;
    let last_col = u16::try_from(table.columns.len().saturating_sub(1))?;
    print_setup(ws, Some(first_row), f)?;
    ws.set_freeze_panes(first_row + 1, 0).map_err(xl)?;
    ws.autofilter(first_row, 0, last_row.max(first_row + 1), last_col)
        .map_err(xl)?;
    Ok(last_row)
}

/// The last row of an Excel sheet (0-based): a sheet holds 1,048,576 rows.
const EXCEL_LAST_ROW: u32 = 1_048_575;

/// A table's header and rows with their top-left corner at `origin` (row,
/// column), and the conditional formats of its gap and achievement
/// columns; no filter, no frozen pane (a sheet has one of each). Returns
/// the last row written.
fn write_rows(
    ws: &mut Worksheet,
    table: &Table,
    labels: Labels,
    f: &Formats,
    origin: (u32, u16),
) -> anyhow::Result<u32> {
    write_rows_until(ws, table, labels, f, origin, EXCEL_LAST_ROW)
}

/// `write_rows` on a sheet whose last row is `last_allowed`. A table
/// longer than the sheet (a night that rejects most of a 2-million-line
/// ERP export) would fail the whole workbook, and with it every report
/// and email of the run: it is cut, and its last row says how many rows
/// the table has and where they all are.
fn write_rows_until(
    ws: &mut Worksheet,
    table: &Table,
    labels: Labels,
    f: &Formats,
    origin: (u32, u16),
    last_allowed: u32,
) -> anyhow::Result<u32> {
    let (first_row, first_col) = origin;
    let col_of = |c: usize| -> anyhow::Result<u16> { Ok(first_col + u16::try_from(c)?) };
    for (c, key) in table.columns.iter().enumerate() {
        ws.write_string_with_format(first_row, col_of(c)?, labels.get(key), &f.header)
            .map_err(xl)?;
    }
    let room = usize::try_from(last_allowed.saturating_sub(first_row))?;
    // one row goes to the note when the table does not fit
    let shown = if table.rows.len() > room {
        room.saturating_sub(1)
    } else {
        table.rows.len()
    };
    for (r, row) in table.rows.iter().take(shown).enumerate() {
        let rr = first_row + 1 + u32::try_from(r)?;
        for (c, v) in row.iter().enumerate() {
            write_value(ws, rr, col_of(c)?, v, f)?;
        }
    }
    let mut last_row = first_row + u32::try_from(shown)?;
    if shown < table.rows.len() {
        last_row += 1;
        let note = labels
            .get("rows_cut")
            .replace("{total}", &table.rows.len().to_string())
            .replace("{shown}", &shown.to_string());
        ws.write_string(last_row, first_col, &note).map_err(xl)?;
    }
    if shown > 0 {
        let data = (first_row + 1, first_row + u32::try_from(shown)?);
        if let Some(c) = table.column("gap") {
            let c = col_of(c)?;
            let cf = ConditionalFormatCell::new()
                .set_rule(ConditionalFormatCellRule::GreaterThan(0))
                .set_format(&f.bad);
            ws.add_conditional_format(data.0, c, data.1, c, &cf)
                .map_err(xl)?;
        }
        for key in [
            "sales_achievement",
            "achievement",
            "visit_attainment",
            "visit_pace",
        ] {
            if let Some(c) = table.column(key) {
                let c = col_of(c)?;
                let cf = ConditionalFormatCell::new()
                    .set_rule(ConditionalFormatCellRule::LessThan(0.8))
                    .set_format(&f.warn);
                ws.add_conditional_format(data.0, c, data.1, c, &cf)
                    .map_err(xl)?;
            }
        }
    }
    Ok(last_row)
}

fn new_workbook(report: &Report) -> Workbook {
    let mut wb = Workbook::new();
    // fixed creation time: the same inputs give the same file
    let created = ExcelDateTime::from_ymd(
        u16::try_from(chrono::Datelike::year(&report.as_of)).unwrap_or(2000),
        u8::try_from(chrono::Datelike::month(&report.as_of)).unwrap_or(1),
        u8::try_from(chrono::Datelike::day(&report.as_of)).unwrap_or(1),
    )
    .unwrap_or_else(|_| ExcelDateTime::from_serial_datetime(1.0).unwrap_or_default());
    let props = DocProperties::new()
        .set_title(&report.title)
        .set_author("salesbatch")
        .set_creation_datetime(&created);
    wb.set_properties(&props);
    wb
}

/// Rows a Summary chart covers at its default size (288 px, 20 px a row).
const CHART_ROWS: u32 = 15;

/// A chart of one series over a Summary table's rows `first..=last`: its
/// names in column A, its values in column C.
fn summary_chart(
    kind: ChartType,
    (sheet, first, last): (&str, u32, u32),
    series: &str,
    title: &str,
) -> Chart {
    let mut chart = Chart::new(kind);
    chart
        .add_series()
        .set_categories((sheet, first, 0, last, 0))
        .set_values((sheet, first, 2, last, 2))
        .set_name(series);
    chart.title().set_name(title);
    chart.legend().set_hidden();
    chart
}

/// Writes a scope's workbook: Summary, tiers, changes, gaps, scorecard,
/// development, data quality.
pub fn write(report: &Report, path: &Path, labels: Labels) -> anyhow::Result<()> {
    let f = Formats::for_report(report, labels);
    let mut wb = new_workbook(report);
    {
        let ws = wb.add_worksheet();
        ws.set_name(labels.get("summary")).map_err(xl)?;
        print_setup(ws, None, &f)?;
        ws.set_column_width(0, 24).map_err(xl)?;
        ws.set_column_width(1, 18).map_err(xl)?;
        ws.set_column_width(2, 14).map_err(xl)?;
        ws.write_string_with_format(
            0,
            0,
            &report.title,
            &Format::new().set_bold().set_font_size(14),
        )
        .map_err(xl)?;
        ws.write_string(1, 0, labels.get("as_of")).map_err(xl)?;
        ws.write_date_with_format(1, 1, report.as_of, &f.date)
            .map_err(xl)?;
        ws.write_string(2, 0, labels.get("period")).map_err(xl)?;
        ws.write_string(2, 1, &report.period).map_err(xl)?;
        let mut row = 4u32;
        for (key, v) in &report.headline {
            ws.write_string(row, 0, labels.get(key)).map_err(xl)?;
            write_value(ws, row, 1, v, &f)?;
            row += 1;
        }
        row += 1;
        let tier_header = row;
        ws.write_string_with_format(row, 0, labels.get("tier"), &f.header)
            .map_err(xl)?;
        ws.write_string_with_format(row, 1, labels.get("tier_distribution"), &f.header)
            .map_err(xl)?;
        ws.write_string_with_format(row, 2, labels.get("count"), &f.header)
            .map_err(xl)?;
        for (tier, label, count) in &report.tier_counts {
            row += 1;
            ws.write_string(row, 0, tier).map_err(xl)?;
            ws.write_string(row, 1, label).map_err(xl)?;
            ws.write_number(row, 2, *count as f64).map_err(xl)?;
        }
        let sheet = labels.get("summary");
        let chart = summary_chart(
            ChartType::Column,
            (sheet, tier_header + 1, row),
            labels.get("count"),
            labels.get("tier_distribution"),
        );
        ws.insert_chart(4, 4, &chart).map_err(xl)?;
        // a chart is 288 px tall by default: 15 rows of 20 px
        let mut below_charts = 4 + CHART_ROWS;
        if !report.top_reps.is_empty() {
            row += 2;
            let top_header = row;
            for (col, key) in ["rep", "region", "kpi"].into_iter().enumerate() {
                let col = u16::try_from(col)?;
                ws.write_string_with_format(row, col, labels.get(key), &f.header)
                    .map_err(xl)?;
            }
            for r in &report.top_reps {
                row += 1;
                ws.write_string(row, 0, &r.name).map_err(xl)?;
                ws.write_string(row, 1, &r.region).map_err(xl)?;
                ws.write_number_with_format(row, 2, r.kpi, &f.num)
                    .map_err(xl)?;
            }
            let mut chart = summary_chart(
                ChartType::Bar,
                (sheet, top_header + 1, row),
                labels.get("kpi"),
                labels.get("top_reps"),
            );
            // a bar chart draws its first category at the bottom: reversed,
            // the best rep is on top, as in the table
            chart.y_axis().set_reverse();
            // a KPI is out of 100: a scale to 120 would make the best rep
            // look short of the mark
            if report
                .top_reps
                .iter()
                .all(|r| (0.0..=100.0).contains(&r.kpi))
            {
                chart.x_axis().set_min(0.0).set_max(100.0);
            }
            // beside its table, below the tier chart
            let at = top_header.max(below_charts + 1);
            ws.insert_chart(at, 4, &chart).map_err(xl)?;
            below_charts = at + CHART_ROWS;
        }
        // on the Summary, not under the changes: a line under a sheet's
        // table is data to a pivot table or a formula over its columns
        if let Some(caveat) = report.changes_caveat() {
            row += 2;
            ws.write_string_with_format(row, 0, labels.get("changes"), &f.header)
                .map_err(xl)?;
            row += 1;
            ws.write_string(row, 0, labels.get(caveat)).map_err(xl)?;
        }
        row += 2;
        ws.write_string_with_format(row, 0, labels.get("rules"), &f.header)
            .map_err(xl)?;
        for (k, v) in &report.rules {
            row += 1;
            ws.write_string(row, 0, k).map_err(xl)?;
            ws.write_string(row, 1, v).map_err(xl)?;
        }
        if report.national {
            // below the rules, clear of the charts beside them: the
            // overview is wider than columns A to C
            row = (row + 2).max(below_charts + 1);
            ws.write_string_with_format(row, 0, labels.get("regions"), &f.header)
                .map_err(xl)?;
            for col in 3..u16::try_from(report.regions.columns.len())? {
                ws.set_column_width(col, 13).map_err(xl)?;
            }
            write_rows(ws, &report.regions, labels, &f, (row + 1, 0))?;
        }
    }
    for table in [
        &report.tiers,
        &report.changes,
        &report.visits,
        &report.scorecard,
    ] {
        write_table(&mut wb, table, labels, &f)?;
    }
    write_development(&mut wb, &report.development, &report.areas, labels, &f)?;
    let ws = wb.add_worksheet_with_constant_memory().map_err(xl)?;
    ws.set_name(labels.get("quality")).map_err(xl)?;
    if report.national {
        set_widths(ws, &[(&report.quality, 0)])?;
        fill_table(ws, &report.quality, labels, &f, 0)?;
    } else {
        print_setup(ws, None, &f)?;
        ws.set_column_width(0, 20).map_err(xl)?;
        let count = report
            .headline
            .iter()
            .find(|(k, _)| *k == "rejections")
            .map(|(_, v)| v.clone());
        ws.write_string_with_format(0, 0, labels.get("rejections"), &f.header)
            .map_err(xl)?;
        if let Some(v) = count {
            write_value(ws, 0, 1, &v, &f)?;
        }
        ws.write_string(1, 0, labels.get("quality_note"))
            .map_err(xl)?;
    }
    wb.save(path)
        .map_err(xl)
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok(())
}

/// The data-quality workbook for HQ: every rejected row with its location,
/// then the notes on files that loaded (`tables::notes`).
pub fn write_quality(
    report: &Report,
    notes: &Table,
    path: &Path,
    labels: Labels,
) -> anyhow::Result<()> {
    let f = Formats::for_report(report, labels);
    let mut wb = new_workbook(report);
    write_table(&mut wb, &report.quality, labels, &f)?;
    write_table(&mut wb, notes, labels, &f)?;
    wb.save(path)
        .map_err(xl)
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use calamine::{open_workbook, Data, Reader, Xlsx};
    use rust_xlsxwriter::Workbook;

    use super::{write_rows_until, Formats};
    use crate::config::Locale;
    use crate::report::i18n::Labels;
    use crate::report::tables::{Table, Value};

    fn rows_written(rows: usize, last_allowed: u32) -> (u32, Vec<Vec<Data>>) {
        let table = Table {
            key: "quality",
            columns: vec!["row", "value"],
            rows: (1..=rows)
                .map(|i| {
                    vec![
                        Value::Int(i64::try_from(i).unwrap()),
                        Value::Text(format!("v{i}")),
                    ]
                })
                .collect(),
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut.xlsx");
        let mut wb = Workbook::new();
        let ws = wb.add_worksheet_with_constant_memory().unwrap();
        let last = write_rows_until(
            ws,
            &table,
            Labels(Locale::En),
            &Formats::new(),
            (2, 0),
            last_allowed,
        )
        .unwrap();
        wb.save(&path).unwrap();
        let mut read: Xlsx<_> = open_workbook(&path).unwrap();
        let range = read.worksheet_range_at(0).unwrap().unwrap();
        (last, range.rows().map(<[Data]>::to_vec).collect())
    }

    #[test]
    fn a_table_longer_than_the_sheet_is_cut_and_says_so() {
        // header on row 2 (0-based), the sheet ends on row 7: five rows left,
        // four of them data and the last the note
        let (last, rows) = rows_written(10, 7);
        assert_eq!(last, 7);
        let cells: Vec<String> = rows.iter().map(|r| r[0].to_string()).collect();
        assert_eq!(
            cells,
            [
                "Row",
                "1",
                "2",
                "3",
                "4",
                "This table has 10 rows, more than an Excel sheet holds; the first 4 are \
                 listed here, and `salesbatch export` gives them all"
            ]
        );
        // at Excel's own limit, where the table would have failed the
        // workbook: 1,048,576 rows are the header on row 2 and 1,048,573
        // after it, of which the last is the note
        let (last, rows) = rows_written(1_048_600, super::EXCEL_LAST_ROW);
        assert_eq!(last, 1_048_575);
        assert_eq!(rows.len(), 1_048_574);
        assert_eq!(rows[1_048_572][1], Data::String("v1048572".into()));
        assert!(rows[1_048_573][0]
            .to_string()
            .starts_with("This table has 1048600 rows"));
        // a table that fits is written whole, to the sheet's very last row
        let (last, rows) = rows_written(5, 7);
        assert_eq!(last, 7);
        assert_eq!(rows.len(), 6);
        assert_eq!(rows[5][1], Data::String("v5".into()));
    }
}
