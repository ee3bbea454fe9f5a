//! The master ids rows are checked against, and the near misses an
//! unknown id is matched with.

use std::sync::OnceLock;

use compact_str::CompactString;
use rustc_hash::{FxHashMap, FxHashSet};

use super::{loose, Reason};

/// Known ids of the masters, for the unknown-id checks.
#[derive(Debug, Default, Clone)]
pub struct Masters {
    pub(super) customers: IdSet,
    pub(super) reps: IdSet,
    /// customer and rep ids by their `id_key`, built at the first unknown
    /// id: only a load with such rejections pays for it
    loose: OnceLock<[FxHashMap<String, String>; 2]>,
}

/// Master ids, checked once per loaded row. Ids up to 24 bytes are held
/// inside the set's own slots: the hash is cheap, and a key behind a
/// pointer made each lookup miss the cache a second time to compare it
/// (docs/PERFORMANCE.md).
pub(super) type IdSet = FxHashSet<CompactString>;

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
    pub(super) fn near_id(&self, id: &str, reason: Reason) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::Masters;

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
}
