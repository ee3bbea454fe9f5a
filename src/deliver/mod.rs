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
use lettre::address::Envelope;
use lettre::message::Mailbox;
use lettre::AsyncTransport;
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

/// An email sent, or not, by `send_or_without_workbooks`.
struct Sending {
    made: i64,
    result: Result<(), String>,
    /// set when the server refused the email for its size and the one
    /// without its workbooks was tried instead: why (for the ledger), and
    /// that email
    without_workbooks: Option<(String, Vec<u8>)>,
}

/// Sends `full`. SPEC wants the workbook attached; a server that refuses the
/// email for its size (552) gets `lighter()`, the same email without its
/// workbooks whose body says where they are, rather than nothing. The
/// nightly delivery and `deliveries retry` both send through here.
async fn send_or_without_workbooks(
    t: &Transport,
    envelope: &Envelope,
    full: &[u8],
    lighter: impl FnOnce() -> anyhow::Result<Option<Vec<u8>>>,
    down: &mut Option<String>,
) -> anyhow::Result<Sending> {
    let (made, result) = send_with_backoff(t, envelope, full, down).await;
    let refused = match result {
        Err(f) if f.too_large => f.message,
        result => {
            return Ok(Sending {
                made,
                result: result.map_err(|f| f.message),
                without_workbooks: None,
            })
        }
    };
    // a message spooled before twins were kept, or one already without its
    // workbooks, has no lighter email: it stays refused
    let Some(lighter) = lighter()? else {
        return Ok(Sending {
            made,
            result: Err(refused),
            without_workbooks: None,
        });
    };
    let (more, result) = send_with_backoff(t, envelope, &lighter, down).await;
    Ok(Sending {
        made: made + more,
        result: result.map_err(|f| f.message),
        without_workbooks: Some((left_out_note(full.len(), &refused), lighter)),
    })
}

/// What sending one bundle's email came to.
struct Sent {
    envelope: Envelope,
    /// the email last tried: the one to spool if it failed
    last: Vec<u8>,
    /// the email without its workbooks, to spool beside `last` when `last`
    /// failed with them (its size is not known to be the reason yet)
    twin: Option<Vec<u8>>,
    made: i64,
    result: Result<(), String>,
    /// why the workbooks were left out, when they were
    left_out: Option<String>,
}

/// Builds a bundle's email and sends it, with the size fallback.
async fn send_bundle(
    t: &Transport,
    (from, to): (&Mailbox, &Mailbox),
    bundle: &Bundle,
    message_id: &str,
    labels: Labels,
    down: &mut Option<String>,
) -> anyhow::Result<Sent> {
    let msg = build_message(from, to, bundle, message_id)?;
    let envelope = msg.envelope().clone();
    let raw = msg.formatted();
    let lighter = || -> anyhow::Result<Vec<u8>> {
        let note = workbooks_note(bundle, raw.len(), labels);
        Ok(build_message_without_workbooks(from, to, bundle, message_id, &note)?.formatted())
    };
    let sending =
        send_or_without_workbooks(t, &envelope, &raw, || lighter().map(Some), down).await?;
    let twin = match (&sending.result, &sending.without_workbooks) {
        (Err(_), None) => Some(lighter()?),
        _ => None,
    };
    let (last, left_out) = match sending.without_workbooks {
        Some((why, lighter)) => (lighter, Some(why)),
        None => (raw, None),
    };
    Ok(Sent {
        envelope,
        last,
        twin,
        made: sending.made,
        result: sending.result,
        left_out,
    })
}

/// The report address emails are sent from.
fn sender(settings: &Settings) -> anyhow::Result<Mailbox> {
    settings
        .config
        .smtp
        .as_ref()
        .map_or("salesbatch <salesbatch@localhost>", |s| s.from.as_str())
        .parse()
        .context("smtp.from")
}

/// A recipient's email address and one of their regions.
type RecipientRegion = (String, String);

/// One email a run owes: a recipient, one of their regions (`*` for the
/// national report) and that region's bundle.
struct Owed<'b> {
    to: Mailbox,
    email: String,
    region: String,
    bundle: &'b Bundle,
}

/// The emails `bundles` make for the configured recipients, limited to
/// `only_regions` when given: each recipient gets the bundle of each of
/// their regions, never another's. Then the (recipient, region) pairs
/// whose region has no bundle.
fn owed_emails<'b>(
    settings: &Settings,
    bundles: &'b [Bundle],
    only_regions: &[String],
) -> anyhow::Result<(Vec<Owed<'b>>, Vec<RecipientRegion>)> {
    let (mut owed, mut no_report) = (Vec::new(), Vec::new());
    for r in &settings.config.recipients {
        let to = Mailbox::new(
            (!r.name.is_empty()).then(|| r.name.clone()),
            r.email.parse().context("recipient email")?,
        );
        for region in &r.regions {
            if !only_regions.is_empty() && !only_regions.contains(region) {
                continue;
            }
            let scope = if region == "*" {
                Scope::National
            } else {
                Scope::Region(region.clone())
            };
            let Some(bundle) = bundles.iter().find(|b| b.scope == scope) else {
                // a renamed or misspelt region in the masters or the config:
                // its manager would otherwise just stop getting reports
                warn!(recipient = %r.email, region = %region, "no report for this recipient: the region has no scored customer");
                no_report.push((r.email.clone(), region.clone()));
                continue;
            };
            owed.push(Owed {
                to: to.clone(),
                email: r.email.clone(),
                region: region.clone(),
                bundle,
            });
        }
    }
    Ok((owed, no_report))
}

/// What a dry run's email preview wrote.
#[derive(Debug, Default)]
pub struct Preview {
    pub written: u64,
    /// (recipient, region) pairs with no report to preview
    pub no_report: Vec<(String, String)>,
}

/// Writes, for a dry run, the email each recipient would get as
/// `<recipient>_<region>.eml` (`national` for `*`) in `dir`: built as a
/// real run builds it, sent to no one, recorded nowhere.
pub fn preview_all(
    settings: &Settings,
    bundles: &[Bundle],
    only_regions: &[String],
    dir: &Path,
) -> anyhow::Result<Preview> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    let from = sender(settings)?;
    let (owed, no_report) = owed_emails(settings, bundles, only_regions)?;
    let mut preview = Preview {
        written: 0,
        no_report,
    };
    for Owed {
        to, email, bundle, ..
    } in owed
    {
        let message_id = format!("<dry-run.{}@salesbatch>", uuid::Uuid::new_v4());
        let raw = build_message(&from, &to, bundle, &message_id)?.formatted();
        let path = dir.join(format!(
            "{}_{}.eml",
            crate::report::file_stem(&email),
            bundle.scope.file_stem()
        ));
        std::fs::write(&path, raw).with_context(|| format!("cannot write `{}`", path.display()))?;
        preview.written += 1;
    }
    info!(emails = preview.written, dir = %dir.display(), "dry run: emails previewed, none sent");
    Ok(preview)
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
    let from = sender(settings)?;
    let (owed, no_report) = owed_emails(settings, bundles, only_regions)?;
    summary.no_report = no_report;
    for Owed {
        to,
        email,
        region,
        bundle,
    } in owed
    {
        let previous = store.delivery(job, as_of, &email, &region).await?;
        if !resend && previous.as_ref().is_some_and(|d| d.status == "sent") {
            summary.skipped += 1;
            continue;
        }
        let message_id = format!("<{run_id}.{}@salesbatch>", uuid::Uuid::new_v4());
        let Sent {
            envelope,
            last,
            twin,
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
                warn!(recipient = %email, region = %region, reason = %why, dir = %dir.display(), "email sent without its workbooks: the mail server refused its size; raise the server's limit or hand the workbooks over");
                ("sent", Some(why), None)
            }
            (Ok(()), None) => {
                summary.sent += 1;
                ("sent", None, None)
            }
            (Err(e), _) => {
                summary.failed += 1;
                let id = spool(settings)?
                    .send_raw(&envelope, &last)
                    .await
                    .context("cannot spool the undelivered email")?;
                if let Some(twin) = &twin {
                    spool_without_workbooks(&spool_dir(settings), &id, twin)?;
                }
                warn!(recipient = %email, region = %region, error = %e, "email not delivered; `salesbatch deliveries retry` resends it");
                ("failed", Some(e), Some(id))
            }
        };
        store
            .record_delivery(&DeliveryRow {
                job: job.to_string(),
                as_of,
                recipient: email.clone(),
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
        let twin = || Ok(std::fs::read(without_workbooks_path(&dir, &id)).ok());
        let sending = send_or_without_workbooks(&t, &envelope, &raw, twin, &mut down).await?;
        let left_out = sending.without_workbooks.map(|(why, _)| why);
        d.attempts += sending.made;
        d.updated_at = now();
        match sending.result {
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
