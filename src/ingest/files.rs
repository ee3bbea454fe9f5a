//! The files of a file source: what its `path` pattern matches (leaving
//! out the companion files office suites keep beside a workbook), and each
//! file's content hash with the stamp that tells a file written to while it
//! was read.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::listing::{self, Found};
use crate::config::{Settings, SourceConfig};

/// What a file source's `path` matches.
#[derive(Debug, Default)]
pub struct SourceFiles {
    /// Matching files, sorted, with their names relative to the config's
    /// directory (`/`-separated): the names stored with their rows.
    pub files: Vec<(PathBuf, String)>,
    /// Paths the pattern reached but could not read: files in them may match,
    /// so the source is incomplete.
    pub unreadable: Vec<Unreadable>,
}

/// A directory the pattern had to search, or a matching entry, that could
/// not be read.
#[derive(Debug)]
pub struct Unreadable {
    /// Relative to the config's directory, as in [`SourceFiles::files`].
    pub path: String,
    pub directory: bool,
    pub error: String,
}

/// The files of a file source (none for a `sql` source).
pub fn source_files(settings: &Settings, source: &SourceConfig) -> SourceFiles {
    let Some(pattern) = &source.path else {
        return SourceFiles::default();
    };
    let full = settings.base_dir.join(pattern);
    let relative = |p: &Path| {
        let rel = p.strip_prefix(&settings.base_dir).unwrap_or(p);
        rel.components()
            .map(|c| listing::shown(c.as_os_str()).into_owned())
            .collect::<Vec<_>>()
            .join("/")
    };
    let mut found = SourceFiles::default();
    let mut files = Vec::new();
    for entry in listing::matching(&full) {
        match entry {
            Found::File(p) if is_companion_file(&p) => {}
            Found::File(p) => files.push(p),
            // `is_file()` would hide the error: an entry of a directory that
            // may be listed but not entered (mode r--), or a dangling link,
            // is a file of the source that cannot be read
            Found::Unreadable {
                path,
                directory,
                error,
            } => found.unreadable.push(Unreadable {
                path: relative(&path),
                directory,
                error: error.to_string(),
            }),
        }
    }
    files.sort();
    found.files = files
        .into_iter()
        .map(|p| {
            let name = relative(&p);
            (p, name)
        })
        .collect();
    found
}

/// Files named like a workbook that are none: `~$name.xlsx`, the owner file
/// Excel and WPS keep beside a workbook while it is open, and `._name.xlsx`,
/// the AppleDouble companion a Mac writes on a network share. Refusing them
/// would degrade every run made while a colleague has a file open. (Hidden
/// files in general still match `*`, as they do in glob.)
fn is_companion_file(path: &Path) -> bool {
    path.file_name().is_some_and(|n| {
        let n = n.to_string_lossy();
        n.starts_with("~$") || n.starts_with("._")
    })
}

/// What a file's metadata says of its content. A file whose stamp moved
/// between the hash and the end of its parse was being written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp {
    pub(super) len: u64,
    modified: Option<std::time::SystemTime>,
}

impl Stamp {
    pub(super) fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            len: meta.len(),
            modified: meta.modified().ok(),
        }
    }
}

/// The content hash of a file, and its stamp from before it was read.
pub(super) fn sha256_file(path: &Path) -> std::io::Result<(String, Stamp)> {
    let mut f = std::fs::File::open(path)?;
    let stamp = Stamp::of(&f.metadata()?);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok((hex::encode(hasher.finalize()), stamp))
}
