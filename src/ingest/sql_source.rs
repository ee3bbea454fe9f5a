//! A `sql` source's load: the query's rows (`:since` bound as a parameter)
//! through the same `Pipeline` as a file's, into one transaction that
//! replaces the source's rows from `:since` on.

use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::warn;

use super::pipeline::{Parsed, Pipeline};
use super::reader::FileError;
use super::record::{Mapping, Masters, Reason};
use super::{
    file_rejection, finish_file, sql, IngestSummary, BATCH_ROWS, CHANNEL_BATCHES, EPOCH_START,
};
use crate::config::{Dataset, Settings, SourceConfig};
use crate::warehouse::{Batch, FileLoad, Replace, Store};

/// A mapped result column of a type salesbatch cannot read refuses the
/// source: the type is the column's, so every row would fail alike, and an
/// id column would otherwise store the error text as the id.
pub(super) fn readable_mapped_columns(
    mapping: &Mapping,
    columns: &sql::Columns,
) -> Result<(), FileError> {
    for (_, _, index, header) in &mapping.fields {
        if let Some(Some(ty)) = columns.unreadable.get(*index) {
            return Err(FileError::CannotOpen(format!(
                "column `{header}` is of SQL type `{ty}`, which salesbatch does not read: \
                 cast it in the query to text, a number or a date"
            )));
        }
    }
    Ok(())
}

/// The file name a `sql` source's load is recorded under: `sql:` and the
/// variable holding its URL.
pub(super) fn sql_load_name(source: &SourceConfig) -> String {
    format!("sql:{}", source.url_env.as_deref().unwrap_or_default())
}

/// A `sql` source: one load, one transaction. Sales replace their rows dated
/// on or after `:since`; other datasets replace all rows of the source.
pub(super) async fn ingest_sql(
    settings: &Settings,
    store: &dyn Store,
    source: &SourceConfig,
    masters: Arc<Masters>,
    summary: &mut IngestSummary,
) -> anyhow::Result<()> {
    let _ = settings;
    let var = source.url_env.as_deref().unwrap_or_default();
    let name = sql_load_name(source);
    let Ok(url) = std::env::var(var) else {
        summary.files_refused += 1;
        summary.rejections.push(file_rejection(
            &source.name,
            &name,
            "",
            Reason::CannotOpenFile,
            String::new(),
            format!("environment variable `{var}` is not set"),
        ));
        warn!(source = %source.name, "sql source skipped: `{var}` is not set");
        return Ok(());
    };
    let (since, replace) = if source.dataset == Dataset::Sales {
        let latest = store.latest_invoice_date(&source.name).await?;
        let since = latest.map_or(EPOCH_START, |d| {
            d - chrono::Duration::days(i64::from(source.lookback_days()))
        });
        (since, Replace::SourceSince(since))
    } else {
        (EPOCH_START, Replace::Source)
    };
    // a source that was read from files before: this load takes over their
    // rows, which its window would not replace
    let retire = store
        .stored_files(&source.name)
        .await?
        .into_keys()
        .filter(|file| !file.starts_with("sql:"))
        .collect();
    let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
    let load = FileLoad {
        source: source.name.clone(),
        file: name.clone(),
        sheet: String::new(),
        dataset: source.dataset,
        sha256: String::new(),
        replace,
        retire,
        max_reject_ratio: settings.config.ingest.max_reject_ratio,
    };
    // the reader owns the pipeline, and with it every sender: when the read
    // fails they all drop, and the load sees its input end without `End`
    let mut p = Pipeline::new(source.clone(), name.clone(), masters, false, tx);
    let query = source.query.clone().unwrap_or_default();
    let reader = async move {
        let tx = p.tx.clone();
        let result = sql::fetch(&url, &query, since, &tx, |pos, columns, cells| {
            if p.mapping.is_none() {
                p.set_header(&columns.names)?;
                if let Some(mapping) = &p.mapping {
                    readable_mapped_columns(mapping, columns)?;
                }
            }
            p.accept(pos, &cells);
            Ok((p.batch.len() >= BATCH_ROWS).then(|| Batch::Rows(std::mem::take(&mut p.batch))))
        })
        .await;
        if result.is_ok() {
            let rows = std::mem::take(&mut p.batch);
            let end = Batch::End {
                data_rows: p.data_rows,
                rejected: p.rejected,
                unknown_ids: p.unknown_ids,
            };
            for batch in [Batch::Rows(rows), end] {
                if tx.send(batch).await.is_err() {
                    break;
                }
            }
        }
        let unlisted = p.unlisted();
        (result, p.rejections, unlisted)
    };
    // dropping a reader that ran out of time drops its senders: the load
    // then sees its input end without `End` and rolls back
    let limit = settings.config.ingest.sql_timeout_secs;
    let (read, outcome) = tokio::join!(
        tokio::time::timeout(std::time::Duration::from_secs(limit), reader),
        store.load_file(load, rx)
    );
    let (result, rejections, unlisted) = read.unwrap_or_else(|_| {
        let late = format!("the source took longer than {limit} s (`ingest.sql_timeout_secs`)");
        (Err(FileError::CannotOpen(late)), Vec::new(), 0)
    });
    let outcome = outcome?;
    let parsed = Parsed {
        sheet: String::new(),
        result,
        rejections,
        unlisted,
        alike_sheets: Vec::new(),
        merged_losses: Vec::new(),
    };
    finish_file(source, &name, parsed, outcome, summary);
    Ok(())
}
