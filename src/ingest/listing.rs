//! Lists the files a source's `path` pattern matches, and names them.
//!
//! Written instead of calling `glob::glob`, which skips every name that is
//! not UTF-8 (its FIXME #9639): files unzipped from an archive made on
//! Chinese Windows, or copied from an old share, carry GBK names, and such
//! a file was left out without a word, its rows missing from every report.
//! The walk is glob's (sorted, depth first, `*` within one component, `**`
//! across any number), with each name matched as it is shown: UTF-8 when it
//! is, else decoded as GBK.

use std::borrow::Cow;
use std::ffi::{OsStr, OsString};
use std::path::{Component, Path, PathBuf};

use glob::{MatchOptions, Pattern};

/// What the walk found where the pattern led.
#[derive(Debug)]
pub enum Found {
    File(PathBuf),
    /// an entry the pattern names whose metadata cannot be read (a dangling
    /// link, a directory that may be listed but not entered), or a
    /// directory the pattern had to search that cannot be listed
    Unreadable {
        path: PathBuf,
        directory: bool,
        error: std::io::Error,
    },
}

/// glob's defaults: `*` matches a leading dot; case matters.
const OPTIONS: MatchOptions = MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

/// How deep `**` descends: a guard against a symbolic link that loops.
const MAX_RECURSION: usize = 64;

/// A file or directory name as text: itself when it is UTF-8, else decoded
/// as GBK, else with U+FFFD for the bytes neither encoding reads.
pub fn shown(name: &OsStr) -> Cow<'_, str> {
    if let Some(text) = name.to_str() {
        return Cow::Borrowed(text);
    }
    let bytes = name.as_encoded_bytes();
    match encoding_rs::GBK.decode_without_bom_handling_and_without_replacement(bytes) {
        Some(text) => Cow::Owned(text.into_owned()),
        None => String::from_utf8_lossy(bytes),
    }
}

/// Every file, and every unreadable entry or directory, `pattern` matches,
/// in glob's order.
pub fn matching(pattern: &Path) -> Vec<Found> {
    let parts: Vec<Component<'_>> = pattern.components().collect();
    let mut found = Vec::new();
    walk(PathBuf::new(), &parts, 0, &mut found);
    found
}

fn walk(at: PathBuf, rest: &[Component<'_>], depth: usize, found: &mut Vec<Found>) {
    let Some((first, after)) = rest.split_first() else {
        named(at, found);
        return;
    };
    let Component::Normal(part) = first else {
        // the root, `.` or `..`: taken as written
        walk(at.join(first), after, depth, found);
        return;
    };
    let text = part.to_string_lossy();
    if text == "**" {
        // no directory at all, then each subdirectory with `**` still ahead
        walk(at.clone(), after, depth, found);
        if depth < MAX_RECURSION {
            for (path, _) in children(&at, found) {
                if is_dir(&path) {
                    walk(path, rest, depth + 1, found);
                }
            }
        }
        return;
    }
    if Pattern::escape(&text) == text {
        let mut next = at.join(part);
        // a dangling link is named, and refused, like any file
        if std::fs::symlink_metadata(&next).is_err() {
            // the name written in the pattern may be stored in GBK
            let Some(stored) = entries(&at)
                .ok()
                .and_then(|e| e.into_iter().find(|(_, name)| shown(name) == text))
            else {
                return;
            };
            next = stored.0;
        }
        if after.is_empty() {
            named(next, found);
        } else if is_dir(&next) {
            walk(next, after, depth, found);
        }
        return;
    }
    // the pattern was checked when the config was validated
    let Ok(component) = Pattern::new(&text) else {
        return;
    };
    for (path, name) in children(&at, found) {
        if !component.matches_with(&shown(&name), OPTIONS) {
            continue;
        }
        if after.is_empty() {
            named(path, found);
        } else if is_dir(&path) {
            walk(path, after, depth, found);
        }
    }
}

/// An entry the whole pattern matched: a file, or unreadable; directories
/// are not sources.
fn named(path: PathBuf, found: &mut Vec<Found>) {
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_file() => found.push(Found::File(path)),
        Ok(_) => {}
        Err(error) => found.push(Found::Unreadable {
            path,
            directory: false,
            error,
        }),
    }
}

fn is_dir(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_dir())
}

/// A directory's entries sorted by name, or none, with the directory
/// reported, when it cannot be listed.
fn children(dir: &Path, found: &mut Vec<Found>) -> Vec<(PathBuf, OsString)> {
    match entries(dir) {
        Ok(entries) => entries,
        Err(error) => {
            // under `**` a directory is listed twice: for the components
            // after `**`, and for its subdirectories
            let reported = found.iter().any(
                |f| matches!(f, Found::Unreadable { path, directory: true, .. } if path == dir),
            );
            if !reported {
                found.push(Found::Unreadable {
                    path: dir.to_path_buf(),
                    directory: true,
                    error,
                });
            }
            Vec::new()
        }
    }
}

/// A directory's entries, as (path, name), sorted by name.
fn entries(dir: &Path) -> std::io::Result<Vec<(PathBuf, OsString)>> {
    let listed = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let mut entries = std::fs::read_dir(listed)?
        .map(|e| e.map(|e| (dir.join(e.file_name()), e.file_name())))
        .collect::<std::io::Result<Vec<_>>>()?;
    entries.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(entries)
}
