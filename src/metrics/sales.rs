//! The sales measures of SPEC §5 reduced to one row per customer while the
//! warehouse streams its lines (or its monthly sums) past: tiers and
//! development need only window and retention totals per customer, so memory
//! grows with customers, not with sales lines.
//!
//! Amounts are summed exactly, in integer millionths of the currency unit:
//! a sum then does not depend on the order the rows arrive in, so a rerun,
//! another backend or another scan plan gives the same last digit.

use std::collections::HashMap;

use rustc_hash::FxHashMap;

use chrono::NaiveDate;

use super::calendar::{window, YearMonth};
use super::MonthlySales;

const MICROS: f64 = 1_000_000.0;

/// An amount in millionths, rounded half away from zero; amounts beyond
/// ±9.2 × 10¹² saturate.
#[allow(clippy::cast_possible_truncation)]
pub fn to_micros(amount: f64) -> i64 {
    (amount * MICROS).round() as i64
}

#[allow(clippy::cast_precision_loss)]
pub fn from_micros(micros: i64) -> f64 {
    micros as f64 / MICROS
}

/// One customer's sales in the months before the as-of month M.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CustomerSales {
    /// net sales in the first and second half of the scoring window
    pub h1: f64,
    pub h2: f64,
    /// net sales over the whole window
    pub total: f64,
    /// sales lines dated in the window
    pub lines: u64,
    /// window months whose net sales (all products) are > 0
    pub positive_months: u32,
    /// products whose net sales to this customer over the window are > 0
    pub positive_products: u32,
    /// net sales in M−6 … M−4 and in M−3 … M−1 (retention, SPEC §5.3)
    pub retention_before: f64,
    pub retention_after: f64,
}

/// Per-customer sales of one as-of month and scoring window.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SalesSummary {
    pub month: Option<YearMonth>,
    pub window_months: u32,
    /// customers with at least one line in the window or the retention months
    pub customers: HashMap<String, CustomerSales>,
    /// products whose net sales over the window (all customers) are > 0
    pub sold_products: u32,
}

impl SalesSummary {
    /// The summary of monthly rows, as the warehouse would build it.
    pub fn from_monthly(rows: &[MonthlySales], as_of: NaiveDate, window_months: u32) -> Self {
        let mut b = SummaryBuilder::new(as_of, window_months);
        for r in rows {
            b.add(&r.customer_id, &r.product_id, r.month, r.amount, r.lines);
        }
        b.finish()
    }
}

#[derive(Default, Clone)]
struct Acc {
    /// a row fell in the window or the retention months
    touched: bool,
    h1: i64,
    h2: i64,
    lines: u64,
    before: i64,
    after: i64,
}

/// Folds sales rows (single lines or monthly sums) into a [`SalesSummary`].
/// Rows outside the window and the retention months are ignored.
pub struct SummaryBuilder {
    month: YearMonth,
    window_months: u32,
    first: i64,
    h2_start: i64,
    end: i64,
    // FxHash: these maps are probed once or twice per sales line, and
    // SipHash's DoS resistance buys nothing against our own warehouse's ids
    customers: FxHashMap<String, u32>,
    names: Vec<String>,
    products: FxHashMap<String, u32>,
    acc: Vec<Acc>,
    /// customer × window month, flattened with stride `window_months`
    by_month: Vec<i64>,
    by_product: FxHashMap<(u32, u32), i64>,
    product_totals: Vec<i64>,
}

impl SummaryBuilder {
    pub fn new(as_of: NaiveDate, window_months: u32) -> Self {
        let months = window(as_of, window_months);
        let first = months[0].index();
        let month = YearMonth::of(as_of);
        Self {
            month,
            window_months,
            first,
            h2_start: first + i64::from(window_months / 2),
            end: month.index(),
            customers: FxHashMap::default(),
            names: Vec::new(),
            products: FxHashMap::default(),
            acc: Vec::new(),
            by_month: Vec::new(),
            by_product: FxHashMap::default(),
            product_totals: Vec::new(),
        }
    }

    /// Earliest month a row can matter in: the window's first month or M−6.
    pub fn first_month(&self) -> YearMonth {
        YearMonth::from_index(self.first.min(self.end - 6))
    }

    /// The builder's small integer id for a customer id, so a caller that
    /// keeps its own per-customer state hashes each line's id only once.
    pub fn customer(&mut self, id: &str) -> u32 {
        if let Some(&i) = self.customers.get(id) {
            return i;
        }
        let i = u32::try_from(self.acc.len()).unwrap_or(u32::MAX);
        self.customers.insert(id.to_string(), i);
        self.names.push(id.to_string());
        self.acc.push(Acc::default());
        self.by_month
            .extend(std::iter::repeat_n(0, self.window_months as usize));
        i
    }

    fn product(&mut self, id: &str) -> u32 {
        if let Some(&i) = self.products.get(id) {
            return i;
        }
        let i = u32::try_from(self.product_totals.len()).unwrap_or(u32::MAX);
        self.products.insert(id.to_string(), i);
        self.product_totals.push(0);
        i
    }

    /// The customer id behind [`Self::customer`]'s integer.
    pub fn customer_name(&self, customer: u32) -> &str {
        &self.names[customer as usize]
    }

    /// Adds `lines` sales lines of one customer and product in `month`
    /// whose net amount is `amount`.
    pub fn add(
        &mut self,
        customer: &str,
        product: &str,
        month: YearMonth,
        amount: f64,
        lines: u64,
    ) {
        let c = self.customer(customer);
        self.add_for(c, product, month, amount, lines);
    }

    /// [`Self::add`] for a customer already turned into its integer id.
    pub fn add_for(&mut self, c: u32, product: &str, month: YearMonth, amount: f64, lines: u64) {
        let m = month.index();
        let in_window = m >= self.first && m < self.end;
        let before = m >= self.end - 6 && m <= self.end - 4;
        let after = m >= self.end - 3 && m < self.end;
        if !(in_window || before || after) {
            return;
        }
        let micros = to_micros(amount);
        let acc = &mut self.acc[c as usize];
        acc.touched = true;
        if before {
            acc.before += micros;
        }
        if after {
            acc.after += micros;
        }
        if in_window {
            if m < self.h2_start {
                acc.h1 += micros;
            } else {
                acc.h2 += micros;
            }
            acc.lines += lines;
            let offset = usize::try_from(m - self.first).unwrap_or(0);
            self.by_month[c as usize * self.window_months as usize + offset] += micros;
            let p = self.product(product);
            *self.by_product.entry((c, p)).or_default() += micros;
            self.product_totals[p as usize] += micros;
        }
    }

    /// Takes in a builder fed with other customers (a shard of a parallel
    /// scan). Exact sums make the result independent of how rows were split.
    pub fn merge_disjoint(&mut self, other: SummaryBuilder) {
        let offset = u32::try_from(self.acc.len()).unwrap_or(u32::MAX);
        debug_assert!(other.names.iter().all(|n| !self.customers.contains_key(n)));
        let mut product_ids = vec![0u32; other.product_totals.len()];
        for (name, &i) in &other.products {
            let mine = self.product(name);
            product_ids[i as usize] = mine;
            self.product_totals[mine as usize] += other.product_totals[i as usize];
        }
        for (name, i) in other.names.into_iter().zip(0u32..) {
            self.customers.insert(name.clone(), offset + i);
            self.names.push(name);
        }
        self.acc.extend(other.acc);
        self.by_month.extend(other.by_month);
        self.by_product.extend(
            other
                .by_product
                .into_iter()
                .map(|((c, p), v)| ((offset + c, product_ids[p as usize]), v)),
        );
    }

    pub fn finish(self) -> SalesSummary {
        let w = self.window_months as usize;
        let mut positive_products = vec![0u32; self.acc.len()];
        for (&(c, _), &v) in &self.by_product {
            if v > 0 {
                positive_products[c as usize] += 1;
            }
        }
        let sold = self.product_totals.iter().filter(|&&v| v > 0).count();
        let customers = self
            .names
            .into_iter()
            .zip(0u32..)
            .filter(|(_, i)| self.acc[*i as usize].touched)
            .map(|(name, i)| {
                let a = &self.acc[i as usize];
                let months = &self.by_month[i as usize * w..(i as usize + 1) * w];
                let positive_months = months.iter().filter(|&&v| v > 0).count();
                (
                    name,
                    CustomerSales {
                        h1: from_micros(a.h1),
                        h2: from_micros(a.h2),
                        total: from_micros(a.h1 + a.h2),
                        lines: a.lines,
                        positive_months: u32::try_from(positive_months).unwrap_or(u32::MAX),
                        positive_products: positive_products[i as usize],
                        retention_before: from_micros(a.before),
                        retention_after: from_micros(a.after),
                    },
                )
            })
            .collect();
        SalesSummary {
            month: Some(self.month),
            window_months: self.window_months,
            customers,
            sold_products: u32::try_from(sold).unwrap_or(u32::MAX),
        }
    }
}
