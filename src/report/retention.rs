//! Report retention: a job with `keep_reports_days` has its older report
//! folders removed after each run, so a nightly job does not fill the disk
//! (at the design point a night's reports are some 50 MB). Only folders
//! laid out as the reports are (`<output_dir>/<YYYY-MM-DD>/<job>/`, and
//! the same under `dry-run/`) are touched; another job's folder, or
//! anything else a user keeps in the output folder, is not.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;

/// What a retention pass removed, and what it could not.
#[derive(Debug, Default)]
pub struct Pruned {
    /// how many `<date>/<job>` folders were removed
    pub removed: usize,
    /// folders that could not be removed, with why
    pub failed: Vec<(PathBuf, std::io::Error)>,
}

/// Removes `job`'s report folders dated before `before` from `output_dir`
/// and its `dry-run/` folder, except the one of `keep` (the as-of date a
/// run just wrote: a rerun of an old date keeps its reports). A date
/// folder left empty goes too.
pub fn prune(output_dir: &Path, job: &str, before: NaiveDate, keep: NaiveDate) -> Pruned {
    let mut pruned = Pruned::default();
    for root in [output_dir.to_path_buf(), output_dir.join("dry-run")] {
        let Ok(entries) = std::fs::read_dir(&root) else {
            continue;
        };
        let mut dated: Vec<(NaiveDate, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name();
                let date = report_date(name.to_str()?)?;
                Some((date, e.path()))
            })
            .filter(|(date, _)| *date < before && *date != keep)
            .collect();
        dated.sort();
        for (_, day) in dated {
            let folder = day.join(job);
            if !folder.is_dir() {
                continue;
            }
            match std::fs::remove_dir_all(&folder) {
                Ok(()) => {
                    pruned.removed += 1;
                    // only when no other job's reports are left in it
                    let _ = std::fs::remove_dir(&day);
                }
                Err(e) => pruned.failed.push((folder, e)),
            }
        }
    }
    pruned
}

/// The date of a report folder's name, written `YYYY-MM-DD` and nothing
/// else.
fn report_date(name: &str) -> Option<NaiveDate> {
    (name.len() == 10)
        .then(|| NaiveDate::parse_from_str(name, "%Y-%m-%d").ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::report_date;

    #[test]
    fn only_a_plain_date_names_a_report_folder() {
        assert_eq!(
            report_date("2026-11-20"),
            chrono::NaiveDate::from_ymd_opt(2026, 11, 20)
        );
        for name in [
            "2026-11-20-old",
            "2026-1-20",
            "outbox",
            "dry-run",
            "2026-02-30",
        ] {
            assert_eq!(report_date(name), None, "{name}");
        }
    }
}
