//! `export`: CSV to stdout with the English canonical column names; for
//! scripts as it is, or made to open in Excel (`--excel`).

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::io::Write;

use crate::ingest::record::Rejection;
use crate::metrics::tiers::TierResult;
use crate::text::fixed;

/// The `--region` values of an export and the regions its rows hold, so a
/// region that matched no row can be named rather than give an empty file
/// without a word.
#[derive(Debug, Default)]
pub struct Regions<'a> {
    wanted: &'a [String],
    seen: BTreeSet<String>,
}

impl<'a> Regions<'a> {
    /// Keeps every row when `wanted` is empty.
    pub fn new(wanted: &'a [String]) -> Self {
        Self {
            wanted,
            seen: BTreeSet::new(),
        }
    }

    /// Whether a row of `region` is exported; notes the region as seen.
    pub fn keep(&mut self, region: &str) -> bool {
        if !self.seen.contains(region) {
            self.seen.insert(region.to_owned());
        }
        self.wanted.is_empty() || self.wanted.iter().any(|w| w == region)
    }

    /// The wanted regions that no row held.
    pub fn unmatched(&self) -> Vec<&str> {
        self.wanted
            .iter()
            .filter(|w| !self.seen.contains(w.as_str()))
            .map(String::as_str)
            .collect()
    }

    /// Every region the rows held.
    pub fn seen(&self) -> impl Iterator<Item = &str> {
        self.seen.iter().map(String::as_str)
    }
}

/// An export's CSV writer: as the data is, or, for Excel, with a UTF-8
/// byte-order mark first (Excel on Chinese Windows reads a CSV without one
/// as GBK and garbles every Chinese name) and each text that Excel would
/// run as a formula kept as text (see `for_excel`).
struct Csv<W: Write> {
    writer: csv::Writer<W>,
    excel: bool,
}

impl<W: Write> Csv<W> {
    fn new(mut out: W, excel: bool) -> anyhow::Result<Self> {
        if excel {
            out.write_all("\u{feff}".as_bytes())?;
        }
        Ok(Self {
            writer: csv::Writer::from_writer(out),
            excel,
        })
    }

    fn write_record<I, T>(&mut self, record: I) -> csv::Result<()>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        for field in record {
            let field = field.as_ref();
            let field = if self.excel {
                for_excel(field)
            } else {
                Cow::Borrowed(field)
            };
            self.writer.write_field(field.as_bytes())?;
        }
        // no field: ends the record
        self.writer.write_record(None::<&[u8]>)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.writer.flush()
    }
}

/// A field as Excel should show it: text starting with `=`, `+`, `-`, `@`
/// or a tab or carriage return is a formula to Excel (a rejected value
/// `=HYPERLINK(…)` from a hostile file would run when HQ opens the
/// rejections), so it gets Excel's text mark `'` in front, as OWASP's
/// advice on CSV injection has it; a number (`-300.00`) stays a number.
/// An id of digits that Excel would turn into a number and so change
/// (`00123` shown as 123, an 18-digit code rounded to 15 digits) is
/// written `="00123"`, which Excel shows as the text inside, as exports
/// meant for Excel write it (and as salesbatch's CSV reader reads it).
fn for_excel(field: &str) -> Cow<'_, str> {
    let formula = field.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let digits = !field.is_empty() && field.bytes().all(|b| b.is_ascii_digit());
    if formula && field.trim().parse::<f64>().is_err() {
        Cow::Owned(format!("'{field}"))
    } else if digits && ((field.len() > 1 && field.starts_with('0')) || field.len() > 15) {
        Cow::Owned(format!("=\"{field}\""))
    } else {
        Cow::Borrowed(field)
    }
}

pub fn tiers(
    out: impl Write,
    excel: bool,
    rows: &[TierResult],
    regions: &mut Regions<'_>,
) -> anyhow::Result<()> {
    let mut w = Csv::new(out, excel)?;
    w.write_record([
        "customer_id",
        "region",
        "rep_id",
        "avg_monthly_sales",
        "growth",
        "breadth",
        "loyalty",
        "prospect",
        "sales_score",
        "growth_score",
        "coverage_score",
        "loyalty_score",
        "prospect_score",
        "score",
        "tier",
        "lifecycle",
    ])?;
    for t in rows.iter().filter(|t| regions.keep(&t.region)) {
        w.write_record([
            t.customer_id.clone(),
            t.region.clone(),
            t.rep_id.clone(),
            fixed(t.avg_monthly_sales, 2),
            fixed(t.growth, 4),
            fixed(t.breadth, 4),
            fixed(t.loyalty, 4),
            t.prospect.to_string(),
            t.sub.sales.to_string(),
            t.sub.growth.to_string(),
            fixed(t.sub.coverage, 2),
            fixed(t.sub.loyalty, 2),
            t.sub.prospect.to_string(),
            fixed(t.score, 2),
            t.tier.clone(),
            t.lifecycle.as_str().to_string(),
        ])?;
    }
    w.flush()?;
    Ok(())
}

pub fn rejections(out: impl Write, excel: bool, rows: &[Rejection]) -> anyhow::Result<()> {
    let mut w = Csv::new(out, excel)?;
    w.write_record([
        "source", "file", "sheet", "row", "cell", "column", "value", "reason", "detail",
    ])?;
    for r in rows {
        w.write_record([
            r.source.as_str(),
            &r.file,
            &r.sheet,
            &if r.row > 0 {
                r.row.to_string()
            } else {
                String::new()
            },
            &r.cell,
            &r.column,
            &r.value,
            r.reason.as_str(),
            &r.detail,
        ])?;
    }
    w.flush()?;
    Ok(())
}

/// Flattens a stored snapshot document (visits, scorecard, development).
pub fn document(
    out: impl Write,
    excel: bool,
    kind: &str,
    json: &str,
    regions: &mut Regions<'_>,
) -> anyhow::Result<()> {
    use crate::metrics::{
        development::DevelopmentReport, scorecard::RepScore, visits::VisitReport,
    };
    let f = |v: Option<f64>| v.map(|x| fixed(x, 4)).unwrap_or_default();
    let mut w = Csv::new(out, excel)?;
    match kind {
        "visits" => {
            let v: VisitReport = serde_json::from_str(json)?;
            w.write_record([
                "customer_id",
                "region",
                "rep_id",
                "tier",
                "target",
                "actual",
                "gap",
            ])?;
            for c in v.customers.iter().filter(|c| regions.keep(&c.region)) {
                w.write_record([
                    &c.customer_id,
                    &c.region,
                    &c.rep_id,
                    &c.tier,
                    &c.target.to_string(),
                    &c.actual.to_string(),
                    &c.gap.to_string(),
                ])?;
            }
        }
        "scorecard" => {
            let v: Vec<RepScore> = serde_json::from_str(json)?;
            w.write_record([
                "rep_id",
                "region",
                "sales",
                "sales_target",
                "expected_sales",
                "sales_achievement",
                "active_customers",
                "new_customers",
                "new_customer_target",
                "visit_attainment",
                "visit_coverage",
                "visit_pace",
                "avg_satisfaction",
                "kpi",
                "rank",
            ])?;
            for s in v.iter().filter(|s| regions.keep(&s.region)) {
                w.write_record([
                    s.rep_id.clone(),
                    s.region.clone(),
                    fixed(s.sales, 2),
                    f(s.sales_target),
                    f(s.expected_sales),
                    f(s.sales_achievement),
                    s.active_customers.to_string(),
                    s.new_customers.to_string(),
                    f(s.new_customer_target),
                    f(s.visit_attainment),
                    f(s.visit_coverage),
                    f(s.visit_pace),
                    f(s.avg_satisfaction),
                    f(s.kpi),
                    s.rank.to_string(),
                ])?;
            }
        }
        _ => {
            let v: DevelopmentReport = serde_json::from_str(json)?;
            w.write_record([
                "rep_id",
                "region",
                "new_customers",
                "new_customer_target",
                "achievement",
            ])?;
            for d in v.by_rep.iter().filter(|d| regions.keep(&d.region)) {
                w.write_record([
                    d.rep_id.clone(),
                    d.region.clone(),
                    d.new_customers.to_string(),
                    f(d.new_customer_target),
                    f(d.achievement),
                ])?;
            }
        }
    }
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::for_excel;

    #[test]
    fn text_excel_would_run_or_change_is_marked_and_numbers_are_not() {
        for (field, shown) in [
            ("=1+1", "'=1+1"),
            ("+86 138 0000", "'+86 138 0000"),
            ("-cmd", "'-cmd"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("-300.00", "-300.00"),
            ("+5", "+5"),
            ("-0.0500", "-0.0500"),
            ("华东", "华东"),
            ("a=b", "a=b"),
            ("", ""),
            // ids Excel would change as numbers
            ("00123", "=\"00123\""),
            ("440301199001011234", "=\"440301199001011234\""),
            ("0", "0"),
            ("123456789012345", "123456789012345"),
            ("0.50", "0.50"),
        ] {
            assert_eq!(for_excel(field), shown, "{field:?}");
        }
    }
}
