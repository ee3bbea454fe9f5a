//! `deliveries`: the email ledger, and `deliveries retry`, which resends
//! the failed emails from the spool.

use super::summary::without_workbooks;
use super::{open_store, padded, ExitCode};
use chrono::NaiveDate;

use crate::config::{self, Settings};
use crate::jobs::RunOptions;
use crate::{deliver, jobs, warehouse};

/// The ledger as a table (only failed sends with `failed`), or, with
/// `retry`, the spooled failed emails sent again.
pub(super) async fn show(
    settings: &Settings,
    failed: bool,
    retry: bool,
) -> anyhow::Result<ExitCode> {
    let store = open_store(settings).await?;
    if retry {
        return retry_deliveries(settings, store.as_ref()).await;
    }
    outln!(
        "{:<10} {} {} {} {:<7} {:>3}  {:<50}  error",
        "as_of",
        padded("job", 10),
        padded("recipient", 28),
        padded("region", 8),
        "status",
        "try",
        "message_id"
    );
    for d in store.deliveries(failed).await? {
        outln!(
            "{:<10} {} {} {} {:<7} {:>3}  {:<50}  {}",
            d.as_of,
            padded(&d.job, 10),
            padded(&d.recipient, 28),
            padded(&d.region, 8),
            d.status,
            d.attempts,
            d.message_id.unwrap_or_default(),
            d.error.unwrap_or_default()
        );
    }
    Ok(ExitCode::Success)
}

async fn retry_deliveries(
    settings: &Settings,
    store: &dyn warehouse::Store,
) -> anyhow::Result<ExitCode> {
    let spooled = deliver::retry_spooled(settings, store).await?;
    outln!(
        "{} resent, {} still failing{}",
        spooled.sent,
        spooled.failed,
        without_workbooks(spooled.without_workbooks)
    );
    // ops must raise the server's limit or hand the workbooks over
    let mut degraded = spooled.failed > 0 || spooled.without_workbooks > 0;
    let mut pairs: Vec<(String, NaiveDate)> = spooled
        .unspooled
        .iter()
        .map(|d| (d.job.clone(), d.as_of))
        .collect();
    pairs.sort();
    pairs.dedup();
    // without a spooled message the email is rebuilt from that date's run
    for (job, as_of) in pairs {
        let Some(job_cfg) = settings.job(&job) else {
            continue;
        };
        let mut cfg = job_cfg.clone();
        cfg.steps = vec![
            config::Step::Compute,
            config::Step::Report,
            config::Step::Deliver,
        ];
        let outcome =
            jobs::run_locked(settings, store, &cfg, as_of, &RunOptions::default()).await?;
        let c = &outcome.counts;
        degraded |= c.emails_failed > 0 || c.emails_without_workbooks > 0;
        outln!(
            "{job} {as_of}: rebuilt, {} resent, {} still failing{}",
            c.emails_sent,
            c.emails_failed,
            without_workbooks(c.emails_without_workbooks)
        );
    }
    Ok(if degraded {
        ExitCode::Degraded
    } else {
        ExitCode::Success
    })
}
