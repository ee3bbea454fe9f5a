//! The spool: emails that failed all their attempts, kept with their
//! envelope (lettre's file transport) for `deliveries retry`, each with
//! its twin without workbooks when it carries any.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use lettre::{AsyncFileTransport, Tokio1Executor};

use crate::config::Settings;

/// lettre's file transport on the spool folder, created when first needed.
pub(super) fn spool(settings: &Settings) -> anyhow::Result<AsyncFileTransport<Tokio1Executor>> {
    let dir = spool_dir(settings);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    Ok(AsyncFileTransport::<Tokio1Executor>::with_envelope(dir))
}

pub(super) fn spool_dir(settings: &Settings) -> PathBuf {
    settings.output_dir().join("spool")
}

/// Where the spooled email `id` is kept without its workbooks: the spool
/// holds messages, not the bundles they were built from, so `deliveries
/// retry` could not leave the workbooks out of a message refused for its
/// size. Kept apart so that `spool/*.eml` stays one file per failed email.
pub(super) fn without_workbooks_path(spool_dir: &Path, id: &str) -> PathBuf {
    spool_dir
        .join("without-workbooks")
        .join(format!("{id}.eml"))
}

/// Spools `lighter`, the email `id` without its workbooks.
pub(super) fn spool_without_workbooks(
    spool_dir: &Path,
    id: &str,
    lighter: &[u8],
) -> anyhow::Result<()> {
    let path = without_workbooks_path(spool_dir, id);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create `{}`", dir.display()))?;
    }
    std::fs::write(&path, lighter).with_context(|| format!("cannot write `{}`", path.display()))
}

/// Removes the spooled email `id`: its message, its envelope and its
/// lighter twin. A file already gone is no error.
pub(super) fn unspool(spool_dir: &Path, id: &str) {
    for ext in ["eml", "json"] {
        let _ = std::fs::remove_file(spool_dir.join(format!("{id}.{ext}")));
    }
    let lighter = without_workbooks_path(spool_dir, id);
    let _ = std::fs::remove_file(&lighter);
    // only once empty: an empty spool says nothing is waiting
    if let Some(dir) = lighter.parent() {
        let _ = std::fs::remove_dir(dir);
    }
}
