//! The email of one bundle: the HTML body with its charts inline and a
//! plain-text alternative, the workbooks attached, or, for a server that
//! refused it for its size, the same body without them, opening with a
//! note that says so.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::Message;

use crate::report::i18n::Labels;
use crate::report::Bundle;

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
    let mut mixed =
        MultiPart::mixed().multipart(body(&bundle.html_body, &bundle.text_body, bundle)?);
    for workbook in workbooks(bundle) {
        mixed = mixed.singlepart(attachment(workbook)?);
    }
    addressed(from, to, bundle, message_id)
        .multipart(mixed)
        .map_err(Into::into)
}

/// The email for one bundle without its workbooks, for a server that
/// refused it with them: both its parts open with `note` (text), which
/// says so.
pub(super) fn build_message_without_workbooks(
    from: &Mailbox,
    to: &Mailbox,
    bundle: &Bundle,
    message_id: &str,
    note: &str,
) -> anyhow::Result<Message> {
    let page = &bundle.html_body;
    // after `<body …>` when the template has one, else first
    let at = page
        .find("<body")
        .and_then(|start| page[start..].find('>').map(|end| start + end + 1))
        .unwrap_or(0);
    let mut escaped = Vec::new();
    // region names come from the masters: the note is escaped like the page
    let _ = tera::escape_html(note, &mut escaped);
    let html = format!(
        "{}\n<p class=\"more\" style=\"font-weight:bold\">{}</p>\n{}",
        &page[..at],
        String::from_utf8_lossy(&escaped),
        &page[at..]
    );
    let text = format!("{note}\n\n{}", bundle.text_body);
    addressed(from, to, bundle, message_id)
        .multipart(body(&html, &text, bundle)?)
        .map_err(Into::into)
}

/// multipart/alternative offers the text for clients that show no HTML;
/// multipart/related keeps the chart images with the HTML that shows them.
fn body(html: &str, text: &str, bundle: &Bundle) -> anyhow::Result<MultiPart> {
    let mut related = MultiPart::related().singlepart(SinglePart::html(html.to_string()));
    for (cid, png) in &bundle.charts {
        related = related.singlepart(
            Attachment::new_inline(cid.clone()).body(png.clone(), ContentType::parse("image/png")?),
        );
    }
    // the last alternative is the preferred one (RFC 2046 §5.1.4)
    Ok(MultiPart::alternative()
        .singlepart(SinglePart::plain(text.to_string()))
        .multipart(related))
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
        // a manager away sends no out-of-office reply to the report
        // address each night: RFC 3834, and Exchange's own header
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Auto-Submitted"),
            "auto-generated".into(),
        ))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("X-Auto-Response-Suppress"),
            "All".into(),
        ))
}

/// The workbooks a bundle's email carries.
fn workbooks(bundle: &Bundle) -> impl Iterator<Item = &PathBuf> {
    std::iter::once(&bundle.xlsx).chain(bundle.quality_xlsx.as_ref())
}

/// The body's opening line when the workbooks were left out: the size the
/// email had with them and the files, by name, to ask operations for.
#[allow(clippy::cast_precision_loss)] // a size in MB to one decimal
pub(super) fn workbooks_note(bundle: &Bundle, size: usize, labels: Labels) -> String {
    let files: Vec<String> = workbooks(bundle).map(|p| file_name(p)).collect();
    labels
        .get("workbooks_not_attached")
        .replace("{size}", &format!("{:.1}", size as f64 / 1_048_576.0))
        .replace("{files}", &files.join(", "))
}
