//! Delivery: one email per recipient and region, each recorded in the ledger.
//! A region's manager gets only that region's bundle; `*` gets the national
//! report and the data-quality workbook. Without `[smtp]`, emails are written
//! with their envelope to `out/outbox/` (lettre's file transport). A message
//! that still fails after its attempts is spooled the same way to
//! `out/spool/`, so `deliveries retry` resends exactly what was built then;
//! beside one that carries workbooks, `out/spool/without-workbooks/` holds
//! the same email without them, for a server that refuses it for its size.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use chrono::NaiveDate;
use lettre::address::Envelope;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tracing::{info, warn};

use crate::config::{Security, Settings, SmtpConfig};
use crate::report::i18n::Labels;
use crate::report::{Bundle, Scope};
use crate::warehouse::{now, DeliveryRow, Store};

const ATTEMPTS: u32 = 3;

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

enum Transport {
    Outbox(AsyncFileTransport<Tokio1Executor>, PathBuf),
    Smtp(Box<AsyncSmtpTransport<Tokio1Executor>>, Duration),
}

fn smtp_transport(smtp: &SmtpConfig) -> anyhow::Result<AsyncSmtpTransport<Tokio1Executor>> {
    let mut builder = match smtp.security {
        Security::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host)?,
        Security::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)?,
        Security::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host),
    }
    .port(smtp.port)
    .timeout(Some(Duration::from_secs(smtp.timeout_secs)));
    if let (Some(u), Some(p)) = (&smtp.username_env, &smtp.password_env) {
        let user = std::env::var(u).with_context(|| {
            format!("environment variable `{u}` (smtp.username_env) is not set")
        })?;
        let pass = std::env::var(p).with_context(|| {
            format!("environment variable `{p}` (smtp.password_env) is not set")
        })?;
        builder = builder.credentials(Credentials::new(user, pass));
    }
    Ok(builder.build())
}

/// What `check` says of `[smtp]`: connects, negotiates TLS and logs in as
/// a send would, then asks for NOOP; nothing is sent. `Ok(None)` without
/// `[smtp]`; `Err` says why the server cannot be used (an unset credential
/// variable, a refused connection or login, no answer in `timeout_secs`).
pub async fn check_smtp(settings: &Settings) -> Result<Option<String>, String> {
    let Some(smtp) = &settings.config.smtp else {
        return Ok(None);
    };
    let server = format!("`{}:{}`", smtp.host, smtp.port);
    let transport = smtp_transport(smtp).map_err(|e| e.to_string())?;
    let limit = Duration::from_secs(smtp.timeout_secs);
    match tokio::time::timeout(limit, transport.test_connection()).await {
        Ok(Ok(true)) => {
            let security = match smtp.security {
                Security::Starttls => "STARTTLS",
                Security::Tls => "TLS",
                Security::None => "no TLS",
            };
            let login = match &smtp.username_env {
                Some(var) => format!(", logged in as the user in `{var}`"),
                None => String::new(),
            };
            Ok(Some(format!("{server} answered ({security}{login})")))
        }
        Ok(Ok(false)) => Err(format!("{server} connected but did not answer NOOP")),
        Ok(Err(e)) => Err(format!("cannot use {server}: {e}")),
        Err(_) => Err(format!(
            "{server} did not answer within {}s (`smtp.timeout_secs`)",
            smtp.timeout_secs
        )),
    }
}

fn transport(settings: &Settings) -> anyhow::Result<Transport> {
    match &settings.config.smtp {
        None => {
            let dir = settings.output_dir().join("outbox");
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create `{}`", dir.display()))?;
            Ok(Transport::Outbox(
                AsyncFileTransport::<Tokio1Executor>::with_envelope(&dir),
                dir,
            ))
        }
        Some(smtp) => Ok(Transport::Smtp(
            Box::new(smtp_transport(smtp)?),
            Duration::from_secs(smtp.timeout_secs),
        )),
    }
}

fn attachment(path: &Path) -> anyhow::Result<SinglePart> {
    let body = std::fs::read(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    let ct =
        ContentType::parse("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")?;
    Ok(Attachment::new(file_name(path)).body(body, ct))
}

/// A workbook's name as its attachment and the body's note show it.
fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default()
}

/// Builds the email for one bundle.
pub fn build_message(
    from: &Mailbox,
    to: &Mailbox,
    bundle: &Bundle,
    message_id: &str,
) -> anyhow::Result<Message> {
    let mut mixed = MultiPart::mixed().multipart(body_with_charts(&bundle.html_body, bundle)?);
    for workbook in workbooks(bundle) {
        mixed = mixed.singlepart(attachment(workbook)?);
    }
    addressed(from, to, bundle, message_id)
        .multipart(mixed)
        .map_err(Into::into)
}

/// The email for one bundle without its workbooks, for a server that
/// refused it with them: the body opens with `note` (HTML), which says so.
fn build_message_without_workbooks(
    from: &Mailbox,
    to: &Mailbox,
    bundle: &Bundle,
    message_id: &str,
    note: &str,
) -> anyhow::Result<Message> {
    let body = &bundle.html_body;
    // after `<body …>` when the template has one, else first
    let at = body
        .find("<body")
        .and_then(|start| body[start..].find('>').map(|end| start + end + 1))
        .unwrap_or(0);
    let html = format!("{}\n{note}\n{}", &body[..at], &body[at..]);
    addressed(from, to, bundle, message_id)
        .multipart(body_with_charts(&html, bundle)?)
        .map_err(Into::into)
}

/// multipart/related keeps the chart images with the HTML that shows them
fn body_with_charts(html: &str, bundle: &Bundle) -> anyhow::Result<MultiPart> {
    let mut related = MultiPart::related().singlepart(SinglePart::html(html.to_string()));
    for (cid, png) in &bundle.charts {
        related = related.singlepart(
            Attachment::new_inline(cid.clone()).body(png.clone(), ContentType::parse("image/png")?),
        );
    }
    Ok(related)
}

fn addressed(
    from: &Mailbox,
    to: &Mailbox,
    bundle: &Bundle,
    message_id: &str,
) -> lettre::message::MessageBuilder {
    Message::builder()
        .from(from.clone())
        .to(to.clone())
        .subject(bundle.title.clone())
        .message_id(Some(message_id.to_string()))
}

/// The workbooks a bundle's email carries.
fn workbooks(bundle: &Bundle) -> impl Iterator<Item = &PathBuf> {
    std::iter::once(&bundle.xlsx).chain(bundle.quality_xlsx.as_ref())
}

/// The body's opening line when the workbooks were left out: the size the
/// email had with them and the files, by name, to ask operations for.
fn workbooks_note(bundle: &Bundle, size: usize, labels: Labels) -> String {
    let files: Vec<String> = workbooks(bundle).map(|p| file_name(p)).collect();
    #[allow(clippy::cast_precision_loss)] // a size in MB to one decimal
    let text = labels
        .get("workbooks_not_attached")
        .replace("{size}", &format!("{:.1}", size as f64 / 1_048_576.0))
        .replace("{files}", &files.join(", "));
    let mut escaped = Vec::new();
    // region names come from the masters: the note is escaped like the page
    let _ = tera::escape_html(&text, &mut escaped);
    format!(
        "<p class=\"more\" style=\"font-weight:bold\">{}</p>",
        String::from_utf8_lossy(&escaped)
    )
}

fn spool(settings: &Settings) -> anyhow::Result<AsyncFileTransport<Tokio1Executor>> {
    let dir = spool_dir(settings);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    Ok(AsyncFileTransport::<Tokio1Executor>::with_envelope(dir))
}

fn spool_dir(settings: &Settings) -> PathBuf {
    settings.output_dir().join("spool")
}

/// Where the spooled email `id` is kept without its workbooks: the spool
/// holds messages, not the bundles they were built from, so `deliveries
/// retry` could not leave the workbooks out of a message refused for its
/// size. Kept apart so that `spool/*.eml` stays one file per failed email.
fn without_workbooks_path(spool_dir: &Path, id: &str) -> PathBuf {
    spool_dir
        .join("without-workbooks")
        .join(format!("{id}.eml"))
}

/// Spools `lighter`, the email `id` without its workbooks.
fn spool_without_workbooks(spool_dir: &Path, id: &str, lighter: &Message) -> anyhow::Result<()> {
    let path = without_workbooks_path(spool_dir, id);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create `{}`", dir.display()))?;
    }
    std::fs::write(&path, lighter.formatted())
        .with_context(|| format!("cannot write `{}`", path.display()))
}

/// Removes the spooled email `id`: its message, its envelope and its
/// lighter twin. A file already gone is no error.
fn unspool(spool_dir: &Path, id: &str) {
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

/// The ledger's error text for an email that went out without workbooks.
fn left_out_note(size: usize, refused: &str) -> String {
    format!("sent without its workbooks: with them the email ({size} bytes) was refused: {refused}")
}

/// Why a send failed, and whether the server itself is unusable (it cannot
/// be reached, does not answer in time, or refuses TLS or our login) rather
/// than this one message: then every later message would fail the same way.
#[derive(Debug)]
struct SendFailure {
    /// the server refused the message for its size (552: RFC 1870's reply
    /// for a message over the server's limit): sending it again cannot help
    too_large: bool,
    message: String,
    server_down: bool,
}

/// SMTP replies that are about the session, not the message: 421 service
/// closing, 454 TLS or authentication unavailable, 530/534/535/538 login.
fn server_level_reply(code: u16) -> bool {
    matches!(code, 421 | 454 | 530 | 534 | 535 | 538)
}

async fn send_once(t: &Transport, envelope: &Envelope, raw: &[u8]) -> Result<(), SendFailure> {
    match t {
        Transport::Outbox(f, _) => {
            f.send_raw(envelope, raw)
                .await
                .map(|_| ())
                .map_err(|e| SendFailure {
                    message: e.to_string(),
                    server_down: true,
                    too_large: false,
                })
        }
        // lettre's timeout covers connecting only: bound the whole send
        Transport::Smtp(s, limit) => {
            match tokio::time::timeout(*limit, s.send_raw(envelope, raw)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(SendFailure {
                    server_down: e
                        .status()
                        .map_or(!e.is_client(), |code| server_level_reply(code.into())),
                    too_large: e.status().is_some_and(|code| u16::from(code) == 552),
                    message: e.to_string(),
                }),
                Err(_) => Err(SendFailure {
                    message: format!("send timed out after {}s", limit.as_secs()),
                    server_down: true,
                    too_large: false,
                }),
            }
        }
    }
}

/// Sends with up to `ATTEMPTS` tries, backing off 0.5 s then 2 s; returns
/// the attempts made and the last failure. Once one message has failed all
/// its attempts because the server is unusable (`down` then holds why), later
/// messages of the same run are not tried: each would wait out the same
/// timeouts (three minutes a message with the default 60 s), and the spool
/// keeps them for `deliveries retry`.
async fn send_with_backoff(
    t: &Transport,
    envelope: &Envelope,
    raw: &[u8],
    down: &mut Option<String>,
) -> (i64, Result<(), SendFailure>) {
    if let Some(why) = down {
        return (
            0,
            Err(SendFailure {
                message: format!(
                    "not tried: the server failed an earlier email of this run ({why})"
                ),
                server_down: false,
                too_large: false,
            }),
        );
    }
    let mut result = Ok(());
    let mut made = 0;
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500 * 4u64.pow(attempt - 1))).await;
        }
        made += 1;
        result = send_once(t, envelope, raw).await;
        // a message over the server's size limit fails the same way again
        if matches!(
            &result,
            Ok(())
                | Err(SendFailure {
                    too_large: true,
                    ..
                })
        ) {
            break;
        }
    }
    if let Err(failure) = &result {
        if failure.server_down {
            warn!(error = %failure.message, "the mail server is unusable: this run's remaining emails are spooled without trying");
            *down = Some(failure.message.clone());
        }
    }
    (made, result)
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
