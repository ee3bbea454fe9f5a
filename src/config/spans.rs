//! Maps a key path (`tiering.weights.sales`, `sources[2].columns`) back to the
//! line of the TOML file it came from, so every config problem names a line.

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

impl Seg {
    pub fn key(k: &str) -> Self {
        Seg::Key(k.to_string())
    }
}

/// Renders a path the way users write it: `sources[1].columns.amount`.
pub fn display_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

pub struct SpanIndex<'a> {
    text: &'a str,
    root: Option<Spanned<DeTable<'a>>>,
}

impl<'a> SpanIndex<'a> {
    pub fn new(text: &'a str) -> Self {
        Self {
            text,
            root: DeTable::parse(text).ok(),
        }
    }

    /// 1-based line of the deepest part of `path` present in the file: the key
    /// itself when it is written, else its nearest written parent.
    pub fn line(&self, path: &[Seg]) -> Option<usize> {
        let root = self.root.as_ref()?;
        let mut best = None;
        let mut table: Option<&DeTable<'_>> = Some(root.get_ref());
        let mut array: Option<&[Spanned<DeValue<'_>>]> = None;
        for seg in path {
            let value = match seg {
                Seg::Key(k) => {
                    let t = table?;
                    let (key, value) = t.iter().find(|(key, _)| key.get_ref() == k)?;
                    best = Some(key.span().start);
                    value
                }
                Seg::Index(i) => {
                    let value = array?.get(*i)?;
                    best = Some(value.span().start);
                    value
                }
            };
            table = None;
            array = None;
            match value.get_ref() {
                DeValue::Table(t) => table = Some(t),
                DeValue::Array(a) => array = Some(a.as_ref()),
                _ => {}
            }
        }
        best.map(|offset| line_of_offset(self.text, offset))
    }
}

pub fn line_of_offset(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

impl SpanIndex<'_> {
    /// The key path whose key or value contains `offset` (deepest match), so a
    /// serde error that only carries a span can still name its key.
    pub fn path_at(&self, offset: usize) -> Vec<Seg> {
        let mut path = Vec::new();
        if let Some(root) = &self.root {
            walk_table(root.get_ref(), offset, &mut path);
        }
        path
    }

    /// Byte range (start of key line .. end of value) of the entry at `path`.
    pub fn entry_range(&self, path: &[Seg]) -> Option<(usize, usize)> {
        let root = self.root.as_ref()?;
        let (Seg::Key(last), parent) = path.split_last()? else {
            return None;
        };
        let mut table = root.get_ref();
        let mut array: Option<&[Spanned<DeValue<'_>>]> = None;
        for seg in parent {
            let value = match seg {
                Seg::Key(k) => table.iter().find(|(key, _)| key.get_ref() == k)?.1,
                Seg::Index(i) => array?.get(*i)?,
            };
            array = None;
            match value.get_ref() {
                DeValue::Table(t) => table = t,
                DeValue::Array(a) => array = Some(a.as_ref()),
                _ => return None,
            }
        }
        let (key, value) = table.iter().find(|(key, _)| key.get_ref() == last)?;
        Some((key.span().start, value.span().end.max(key.span().end)))
    }
}

fn walk_table(table: &DeTable<'_>, offset: usize, path: &mut Vec<Seg>) -> bool {
    for (key, value) in table {
        let in_key = key.span().contains(&offset);
        let in_value = value.span().contains(&offset);
        if in_key || in_value {
            path.push(Seg::Key(key.get_ref().to_string()));
            if in_value {
                walk_value(value.get_ref(), offset, path);
            }
            return true;
        }
    }
    // headers of sub-tables are not inside their parent's value span
    for (key, value) in table {
        let mut sub = vec![Seg::Key(key.get_ref().to_string())];
        if walk_value(value.get_ref(), offset, &mut sub) {
            path.extend(sub);
            return true;
        }
    }
    false
}

fn walk_value(value: &DeValue<'_>, offset: usize, path: &mut Vec<Seg>) -> bool {
    match value {
        DeValue::Table(t) => walk_table(t, offset, path),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let mut sub = vec![Seg::Index(i)];
                let inside = item.span().contains(&offset);
                if walk_value(item.get_ref(), offset, &mut sub) || inside {
                    path.extend(sub);
                    return true;
                }
            }
            false
        }
        _ => false,
    }
}
