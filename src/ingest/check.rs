//! What `check` finds in a source without loading it: each file read as
//! far as its first data row, as a run reads it; a `sql` source's query
//! prepared, not run.

use std::collections::HashMap;
use std::path::PathBuf;

use super::coerce::{Cell, Epoch};
use super::files::sha256_file;
use super::pipeline::{heads_every_mapped_column, read_guarded, unread_sheets_message};
use super::reader::{FileError, Visitor};
use super::record::{Mapping, Rejection};
use super::sql_source::{readable_mapped_columns, sql_load_name};
use super::{is_master, refusal, refusal_naming_sheets, sql};
use crate::config::{Settings, SourceConfig};

/// What `check` finds in the files of a file source, in path order.
#[derive(Debug, Default)]
pub struct FileProblems {
    /// (file, earlier file with the same content): the repeats a run
    /// refuses as copies, those that hold a data row (see `sort_out_copies`);
    /// none for a master source, whose later row wins
    pub copies: Vec<(String, String)>,
    /// what a run would refuse in a file before its first data row: not a
    /// workbook, no such sheet, a missing or ambiguous column, over
    /// `max_file_mb`
    pub refused: Vec<Rejection>,
    /// (file, message): workbooks with further sheets headed like the one
    /// read, which a source without `sheet` does not read
    pub unread_sheets: Vec<(String, String)>,
}

/// For `check`: each file of a file source hashed and read as far as its
/// first data row, once, as the run reads it. Entries that could not even
/// be listed are left to the caller's unreadable list. `check` has no warehouse state to say which copy a run
/// keeps, so each repeat is named against the earlier file in path order.
pub fn check_files(
    settings: &Settings,
    source: &SourceConfig,
    files: &[(PathBuf, String)],
) -> FileProblems {
    struct FirstRow<'a> {
        source: &'a SourceConfig,
        sheet: String,
        mapping: Option<Mapping>,
        found: bool,
        alike_sheets: Vec<String>,
    }
    impl Visitor for FirstRow<'_> {
        fn sheet(&mut self, name: &str) {
            self.sheet = name.to_string();
        }
        fn header(&mut self, sheet: &str, _: Epoch, header: &[String]) -> Result<usize, FileError> {
            self.sheet = sheet.to_string();
            let mapping = Mapping::from_header(self.source, header)?;
            let max_column = mapping.max_column();
            self.mapping = Some(mapping);
            Ok(max_column)
        }
        fn row(&mut self, row: u64, cells: &[Cell]) -> Result<(), FileError> {
            if let Some(mapping) = &self.mapping {
                mapping.calculated(cells, row)?;
            }
            self.found = true;
            // stops the reader: one row is enough
            Err(FileError::Cancelled)
        }
        fn other_sheet(&mut self, name: &str, header: &[String]) -> bool {
            let alike = heads_every_mapped_column(self.source, header);
            if alike {
                self.alike_sheets.push(name.to_string());
            }
            alike
        }
    }
    let max_bytes = settings.config.ingest.max_file_mb.saturating_mul(1 << 20);
    let mut first: HashMap<String, &str> = HashMap::new();
    let mut problems = FileProblems::default();
    for (path, name) in files {
        let (sha, stamp) = match sha256_file(path) {
            Ok(hashed) => hashed,
            // listed but not readable (mode 000): refused as the run refuses it
            Err(e) => {
                let error = FileError::CannotOpen(e.to_string());
                problems.refused.push(refusal(source, name, "", error));
                continue;
            }
        };
        let mut visitor = FirstRow {
            source,
            sheet: String::new(),
            mapping: None,
            found: false,
            alike_sheets: Vec::new(),
        };
        match read_guarded(path, stamp.len, max_bytes, source, &mut visitor) {
            Ok(()) | Err(FileError::Cancelled) => {
                if !visitor.alike_sheets.is_empty() {
                    problems.unread_sheets.push((
                        name.clone(),
                        unread_sheets_message(&visitor.sheet, &visitor.alike_sheets),
                    ));
                }
            }
            Err(e) => problems.refused.push(refusal_naming_sheets(
                source,
                name,
                &visitor.sheet,
                e,
                &visitor.alike_sheets,
            )),
        }
        if is_master(source.dataset) {
            continue;
        }
        match first.get(&sha) {
            Some(earlier) if visitor.found => {
                problems.copies.push((name.clone(), (*earlier).to_string()));
            }
            Some(_) => {}
            None => {
                first.insert(sha, name);
            }
        }
    }
    problems
}

/// For `check`: a `sql` source's query prepared on its database, not run,
/// and the columns it would return matched against the source's mapping;
/// the rejection a run would give when the query does not prepare or a
/// mapped column is missing or named twice. `Err` is a connection that
/// failed.
pub async fn check_query(source: &SourceConfig, url: &str) -> Result<Option<Rejection>, String> {
    let query = source.query.as_deref().unwrap_or_default();
    let error = match sql::prepare(url, query).await? {
        sql::Prepared::Columns(columns) => match Mapping::from_header(source, &columns.names)
            .and_then(|mapping| readable_mapped_columns(&mapping, &columns))
        {
            Ok(()) => return Ok(None),
            Err(e) => e,
        },
        sql::Prepared::Refused(e) => FileError::CannotOpen(e),
    };
    Ok(Some(refusal(source, &sql_load_name(source), "", error)))
}
