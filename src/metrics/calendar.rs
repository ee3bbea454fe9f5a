//! Calendar arithmetic of SPEC §5: period P, scoring window W, "last k months
//! up to D".

use chrono::{Datelike, Months, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::config::Period;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct YearMonth {
    pub year: i32,
    pub month: u32,
}

impl YearMonth {
    pub fn of(date: NaiveDate) -> Self {
        Self {
            year: date.year(),
            month: date.month(),
        }
    }

    pub fn new(year: i32, month: u32) -> Self {
        Self { year, month }
    }

    /// Months are counted as `year * 12 + month - 1` so they can be compared
    /// and stepped with plain integer arithmetic.
    pub fn index(self) -> i64 {
        i64::from(self.year) * 12 + i64::from(self.month) - 1
    }

    pub fn from_index(i: i64) -> Self {
        let year = i32::try_from(i.div_euclid(12)).unwrap_or(i32::MAX);
        let month = u32::try_from(i.rem_euclid(12)).unwrap_or(0) + 1;
        Self { year, month }
    }

    pub fn offset(self, months: i64) -> Self {
        Self::from_index(self.index() + months)
    }

    pub fn first_day(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).unwrap_or(NaiveDate::MIN)
    }

    pub fn last_day(self) -> NaiveDate {
        self.offset(1)
            .first_day()
            .pred_opt()
            .unwrap_or(NaiveDate::MIN)
    }

    pub fn days(self) -> u32 {
        self.last_day().day()
    }

    pub fn parse(text: &str) -> Option<Self> {
        let (y, m) = text.trim().split_once('-')?;
        let (year, month) = (y.parse().ok()?, m.parse().ok()?);
        (1..=12).contains(&month).then_some(Self { year, month })
    }
}

impl std::fmt::Display for YearMonth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// The job's period P with SPEC's `elapsed` and `days`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeriodRange {
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub elapsed: u32,
    pub days: u32,
}

impl PeriodRange {
    pub fn new(as_of: NaiveDate, period: Period) -> Self {
        let m = YearMonth::of(as_of);
        match period {
            Period::Mtd => Self {
                start: m.first_day(),
                end: as_of,
                elapsed: as_of.day(),
                days: m.days(),
            },
            Period::PreviousMonth => {
                let p = m.offset(-1);
                Self {
                    start: p.first_day(),
                    end: p.last_day(),
                    elapsed: p.days(),
                    days: p.days(),
                }
            }
        }
    }

    pub fn contains(&self, d: NaiveDate) -> bool {
        self.start <= d && d <= self.end
    }

    /// Calendar months P touches (1 for both `mtd` and `previous_month`).
    pub fn months(&self) -> Vec<YearMonth> {
        let (a, b) = (
            YearMonth::of(self.start).index(),
            YearMonth::of(self.end).index(),
        );
        (a..=b).map(YearMonth::from_index).collect()
    }

    /// `elapsed ÷ days`: the share of the period's month that has passed.
    pub fn pace_factor(&self) -> f64 {
        f64::from(self.elapsed) / f64::from(self.days)
    }
}

/// The scoring window W: `n` complete calendar months before the month of D.
pub fn window(as_of: NaiveDate, n: u32) -> Vec<YearMonth> {
    let m = YearMonth::of(as_of);
    (1..=i64::from(n)).rev().map(|k| m.offset(-k)).collect()
}

/// Start (exclusive) of "the last k months up to D" = (D − k months, D].
pub fn months_before(as_of: NaiveDate, k: u32) -> NaiveDate {
    as_of
        .checked_sub_months(Months::new(k))
        .unwrap_or(NaiveDate::MIN)
}

/// Whether `d` is within the last `k` months up to `as_of`.
pub fn within_last_months(d: NaiveDate, as_of: NaiveDate, k: u32) -> bool {
    d > months_before(as_of, k) && d <= as_of
}
