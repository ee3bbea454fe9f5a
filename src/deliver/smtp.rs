//! The way out: the outbox folder or an SMTP server, one send with the
//! server's reply sorted (refused for its size, server unusable, or this
//! message's own problem), and the attempts with backoff around it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use tracing::warn;

use crate::config::{Security, Settings, SmtpConfig};

const ATTEMPTS: u32 = 3;

/// Where emails go: the outbox folder without `[smtp]`, else the server,
/// with the time one whole send may take (lettre's own timeout covers
/// only connecting).
pub(super) enum Transport {
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

pub(super) fn transport(settings: &Settings) -> anyhow::Result<Transport> {
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

/// Why a send failed, and whether the server itself is unusable (it cannot
/// be reached, does not answer in time, or refuses TLS or our login) rather
/// than this one message: then every later message would fail the same way.
#[derive(Debug)]
pub(super) struct SendFailure {
    /// the server refused the message for its size (552: RFC 1870's reply
    /// for a message over the server's limit): sending it again cannot help
    pub(super) too_large: bool,
    pub(super) message: String,
    pub(super) server_down: bool,
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
pub(super) async fn send_with_backoff(
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
