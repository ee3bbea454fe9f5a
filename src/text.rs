//! Wording shared by the messages of every stage: how a list of names
//! (columns, sheets, regions, jobs) is written for the operator.

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

#[cfg(test)]
mod tests {
    use super::backticked;

    #[test]
    fn names_are_backticked_and_an_empty_list_says_none() {
        assert_eq!(backticked(["华东", "华北"]), "`华东`, `华北`");
        assert_eq!(backticked(Vec::<String>::new()), "none");
    }
}
