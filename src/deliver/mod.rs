//! Delivery: one email per recipient and region, each recorded in the ledger.
//! A region's manager gets only that region's bundle; `*` gets the national
//! report and the data-quality workbook. Without `[smtp]`, emails are written
//! with their envelope to `out/outbox/` (lettre's file transport). A message
//! that still fails after its attempts is spooled the same way to
//! `out/spool/`, so `deliveries retry` resends exactly what was built then;
//! beside one that carries workbooks, `out/spool/without-workbooks/` holds
//! the same email without them, for a server that refuses it for its size.

mod message;
mod smtp;
mod spool;

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use chrono::NaiveDate;
use lettre::message::Mailbox;
use lettre::{AsyncTransport, Message};
use tracing::{info, warn};

use crate::config::Settings;
use crate::report::i18n::Labels;
use crate::report::{Bundle, Scope};
use crate::warehouse::{now, DeliveryRow, Store};

pub use message::build_message;
use message::{build_message_without_workbooks, workbooks_note};
pub use smtp::check_smtp;
use smtp::{send_with_backoff, transport, Transport};
use spool::{spool, spool_dir, spool_without_workbooks, unspool, without_workbooks_path};

#[derive(Debug, Default)]
pub struct DeliverSummary {
    pub sent: u64,
    pub failed: u64,
    pub skipped: u64,
    /// emails the server refused for their size and that went out without
    /// their workbooks (counted in `sent` too)
    pub without_workbooks: u64,
    /// (recipient, region) pairs the run was meant to serve but rendered no
    /// report for: the region has no scored customer
    pub no_report: Vec<(String, String)>,
    pub outbox: Option<PathBuf>,
}

/// The ledger's error text for an email that went out without workbooks.
fn left_out_note(size: usize, refused: &str) -> String {
    format!("sent without its workbooks: with them the email ({size} bytes) was refused: {refused}")
}

/// What sending one bundle's email came to.
struct Sent {
    /// the message last tried: the one to spool if it failed
    msg: Message,
    /// the email without its workbooks, to spool beside `msg` when `msg`
    /// failed with them (its size is not known to be the reason yet)
    lighter: Option<Message>,
    made: i64,
    result: Result<(), String>,
    /// why the workbooks were left out, when they were
    left_out: Option<String>,
}

/// Sends a bundle's email. SPEC wants the workbook attached; a server that
/// refuses the email for its size gets it again without its workbooks, the
/// body opening with where they are, rather than nothing.
async fn send_bundle(
    t: &Transport,
    (from, to): (&Mailbox, &Mailbox),
    bundle: &Bundle,
    message_id: &str,
    labels: Labels,
    down: &mut Option<String>,
) -> anyhow::Result<Sent> {
    let msg = build_message(from, to, bundle, message_id)?;
    let raw = msg.formatted();
    let (made, result) = send_with_backoff(t, msg.envelope(), &raw, down).await;
    let lighter = || {
        let note = workbooks_note(bundle, raw.len(), labels);
        build_message_without_workbooks(from, to, bundle, message_id, &note)
    };
    let refused = match result {
        Err(f) if f.too_large => f.message,
        Ok(()) => {
            return Ok(Sent {
                msg,
                lighter: None,
                made,
                result: Ok(()),
                left_out: None,
            })
        }
        Err(f) => {
            return Ok(Sent {
                msg,
                lighter: Some(lighter()?),
                made,
                result: Err(f.message),
                left_out: None,
            })
        }
    };
    let msg = lighter()?;
    let (more, result) = send_with_backoff(t, msg.envelope(), &msg.formatted(), down).await;
    Ok(Sent {
        msg,
        lighter: None,
        made: made + more,
        result: result.map_err(|f| f.message),
        left_out: Some(left_out_note(raw.len(), &refused)),
    })
}

#[allow(clippy::too_many_arguments)]
pub async fn deliver_all(
    settings: &Settings,
    store: &dyn Store,
    job: &str,
    as_of: NaiveDate,
    run_id: i64,
    bundles: &[Bundle],
    only_regions: &[String],
    resend: bool,
) -> anyhow::Result<DeliverSummary> {
    let t = transport(settings)?;
    let labels = Labels(settings.config.locale);
    let mut summary = DeliverSummary::default();
    let mut down = None;
    if let Transport::Outbox(_, dir) = &t {
        summary.outbox = Some(dir.clone());
    }
    let from: Mailbox = settings
        .config
        .smtp
        .as_ref()
        .map_or("salesbatch <salesbatch@localhost>", |s| s.from.as_str())
        .parse()
        .context("smtp.from")?;
    for r in &settings.config.recipients {
        let to = Mailbox::new(
            (!r.name.is_empty()).then(|| r.name.clone()),
            r.email.parse().context("recipient email")?,
        );
        for region in &r.regions {
            let scope = if region == "*" {
                Scope::National
            } else {
                Scope::Region(region.clone())
            };
            if !only_regions.is_empty() && !only_regions.contains(region) {
                continue;
            }
            let Some(bundle) = bundles.iter().find(|b| b.scope == scope) else {
                // a renamed or misspelt region in the masters or the config:
                // its manager would otherwise just stop getting reports
                warn!(recipient = %r.email, region = %region, "no report for this recipient: the region has no scored customer");
                summary.no_report.push((r.email.clone(), region.clone()));
                continue;
            };
            let previous = store.delivery(job, as_of, &r.email, region).await?;
            if !resend && previous.as_ref().is_some_and(|d| d.status == "sent") {
                summary.skipped += 1;
                continue;
            }
            let message_id = format!("<{run_id}.{}@salesbatch>", uuid::Uuid::new_v4());
            let Sent {
                msg,
                lighter,
                made,
                result,
                left_out,
            } = send_bundle(&t, (&from, &to), bundle, &message_id, labels, &mut down).await?;
            let attempts = previous.as_ref().map_or(0, |d| d.attempts) + made;
            let (status, error, spooled) = match (result, left_out) {
                (Ok(()), Some(why)) => {
                    summary.sent += 1;
                    summary.without_workbooks += 1;
                    let dir = bundle.xlsx.parent().unwrap_or(Path::new(""));
                    warn!(recipient = %r.email, region = %region, reason = %why, dir = %dir.display(), "email sent without its workbooks: the mail server refused its size; raise the server's limit or hand the workbooks over");
                    ("sent", Some(why), None)
                }
                (Ok(()), None) => {
                    summary.sent += 1;
                    ("sent", None, None)
                }
                (Err(e), _) => {
                    summary.failed += 1;
                    let id = spool(settings)?
                        .send(msg)
                        .await
                        .context("cannot spool the undelivered email")?;
                    if let Some(lighter) = &lighter {
                        spool_without_workbooks(&spool_dir(settings), &id, lighter)?;
                    }
                    warn!(recipient = %r.email, region = %region, error = %e, "email not delivered; `salesbatch deliveries retry` resends it");
                    ("failed", Some(e), Some(id))
                }
            };
            store
                .record_delivery(&DeliveryRow {
                    job: job.to_string(),
                    as_of,
                    recipient: r.email.clone(),
                    region: region.clone(),
                    run_id,
                    status: status.to_string(),
                    attempts,
                    message_id: Some(message_id),
                    error,
                    updated_at: now(),
                    spool: spooled.clone(),
                })
                .await?;
            // an earlier failure's spooled message is superseded by this send
            if let Some(old) = previous.and_then(|d| d.spool) {
                if spooled.as_ref() != Some(&old) {
                    unspool(&spool_dir(settings), &old);
                }
            }
        }
    }
    info!(
        sent = summary.sent,
        failed = summary.failed,
        skipped = summary.skipped,
        without_workbooks = summary.without_workbooks,
        "delivery finished"
    );
    Ok(summary)
}

/// What `deliveries retry` did with the spooled emails.
#[derive(Debug, Default)]
pub struct RetrySummary {
    pub sent: u64,
    pub failed: u64,
    /// spooled emails the server refused for their size and that went out
    /// without their workbooks (counted in `sent` too)
    pub without_workbooks: u64,
    /// failed deliveries with no spooled message (recorded before spooling
    /// existed, or the spool was removed): their job run must be redone
    pub unspooled: Vec<DeliveryRow>,
}

/// Resends every failed email from the spool, byte for byte as first built;
/// one the server refuses for its size goes out as spooled without its
/// workbooks, as `deliver_all` would have sent it.
pub async fn retry_spooled(settings: &Settings, store: &dyn Store) -> anyhow::Result<RetrySummary> {
    let t = transport(settings)?;
    let spool = spool(settings)?;
    let dir = spool_dir(settings);
    let mut summary = RetrySummary::default();
    let mut down = None;
    for mut d in store.deliveries(true).await? {
        let Some(id) = d.spool.clone() else {
            summary.unspooled.push(d);
            continue;
        };
        let (envelope, raw) = match spool.read(&id).await {
            Ok(m) => m,
            Err(e) => {
                warn!(recipient = %d.recipient, region = %d.region, error = %e, "spooled email unreadable; rerunning its job");
                summary.unspooled.push(d);
                continue;
            }
        };
        let (mut made, mut result) = send_with_backoff(&t, &envelope, &raw, &mut down).await;
        let mut left_out = None;
        let refused = match &result {
            Err(f) if f.too_large => Some(f.message.clone()),
            _ => None,
        };
        // a message spooled before this version, or refused without its
        // workbooks already, has no lighter twin: it stays failed
        let lighter =
            refused.and_then(|r| Some((r, std::fs::read(without_workbooks_path(&dir, &id)).ok()?)));
        if let Some((refused, lighter)) = lighter {
            let (more, again) = send_with_backoff(&t, &envelope, &lighter, &mut down).await;
            made += more;
            result = again;
            left_out = Some(left_out_note(raw.len(), &refused));
        }
        let result = result.map_err(|f| f.message);
        d.attempts += made;
        d.updated_at = now();
        match result {
            Ok(()) => {
                summary.sent += 1;
                d.status = "sent".into();
                if let Some(why) = &left_out {
                    summary.without_workbooks += 1;
                    warn!(recipient = %d.recipient, region = %d.region, reason = %why, "email sent without its workbooks: the mail server refused its size; raise the server's limit or hand the workbooks over");
                }
                d.error = left_out;
                d.spool = None;
                store.record_delivery(&d).await?;
                unspool(&dir, &id);
            }
            Err(e) => {
                summary.failed += 1;
                warn!(recipient = %d.recipient, region = %d.region, error = %e, "email still not delivered");
                d.error = Some(e);
                store.record_delivery(&d).await?;
            }
        }
    }
    info!(
        sent = summary.sent,
        failed = summary.failed,
        without_workbooks = summary.without_workbooks,
        rerun = summary.unspooled.len(),
        "retry finished"
    );
    Ok(summary)
}
