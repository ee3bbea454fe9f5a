//! Wording shared by every stage's output: how a list of names (columns,
//! sheets, regions, jobs) is written in a message, and how a number is
//! written at a fixed precision in a report or an export.

use std::fmt::Display;

/// `` `a`, `b` ``: names in backticks, comma-separated; `none` when
/// there is none, so that a message never ends in an empty list.
pub fn backticked<I>(names: I) -> String
where
    I: IntoIterator,
    I::Item: Display,
{
    let list: Vec<String> = names.into_iter().map(|n| format!("`{n}`")).collect();
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}

/// `v` with `decimals` digits after the point, unsigned when it rounds to
/// zero: a negative below the last digit (a sale and its return that net
/// to a fraction of a cent, a ratio's float noise such as `-5.6e-17`)
/// would otherwise print `-0.00`, which reads as a loss.
pub fn fixed(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    match s.strip_prefix('-') {
        Some(unsigned) if unsigned.bytes().all(|b| matches!(b, b'0' | b'.')) => unsigned.into(),
        _ => s,
    }
}

/// `v`, or 0 when it shows as zero at `decimals` digits: what a workbook
/// cell holds, so that a cell formatted `0.00` never shows `-0.00`.
pub fn zero_if_shown_as_zero(v: f64, decimals: i32) -> f64 {
    if (v * 10f64.powi(decimals)).round() == 0.0 {
        0.0
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::{backticked, fixed, zero_if_shown_as_zero};

    #[test]
    fn a_value_that_rounds_to_zero_has_no_sign() {
        let noise = -0.1 - 0.2 + 0.3;
        assert!(
            noise < 0.0,
            "the fixture needs a negative noise, got {noise}"
        );
        assert_eq!(fixed(noise, 2), "0.00");
        assert_eq!(fixed(-0.0, 4), "0.0000");
        assert_eq!(fixed(-0.004, 2), "0.00");
        assert_eq!(fixed(-0.005_1, 2), "-0.01");
        assert_eq!(fixed(-12.5, 1), "-12.5");
        assert_eq!(fixed(2.6, 0), "3");
        assert_eq!(fixed(-0.4, 0), "0");
        assert_eq!(zero_if_shown_as_zero(noise, 2).to_bits(), 0.0f64.to_bits());
        assert_eq!(zero_if_shown_as_zero(-0.0, 3).to_bits(), 0.0f64.to_bits());
        assert_eq!(zero_if_shown_as_zero(-0.006, 2), -0.006);
        assert_eq!(zero_if_shown_as_zero(0.0004, 3), 0.0);
    }

    #[test]
    fn names_are_backticked_and_an_empty_list_says_none() {
        assert_eq!(backticked(["华东", "华北"]), "`华东`, `华北`");
        assert_eq!(backticked(Vec::<String>::new()), "none");
    }
}
