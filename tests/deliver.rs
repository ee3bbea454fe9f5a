//! Delivery over a real SMTP conversation (aiosmtpd as the server): the
//! server is down, the emails fail and are spooled; it comes up, `deliveries
//! retry` sends the very same messages; nothing is sent twice.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::cli::{bin, text};
use crate::ingest::require;

struct SmtpServer {
    child: Child,
    maildir: PathBuf,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether aiosmtpd is there; `false` only where `require` lets a test skip.
fn aiosmtpd_required() -> bool {
    let installed = Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .output()
        .is_ok_and(|o| o.status.success());
    require("python3 -m aiosmtpd (pip install aiosmtpd)", installed)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts aiosmtpd storing every message in a maildir; waits until it listens.
fn start_smtp(port: u16, maildir: &Path) -> SmtpServer {
    start_smtp_with(port, maildir, "aiosmtpd.handlers.Mailbox", None, &[])
}

/// `start_smtp` with another handler class, found on `python_path`, and
/// further aiosmtpd options.
fn start_smtp_with(
    port: u16,
    maildir: &Path,
    handler: &str,
    python_path: Option<&Path>,
    options: &[&str],
) -> SmtpServer {
    let mut command = Command::new("python3");
    if let Some(dir) = python_path {
        command.env("PYTHONPATH", dir);
    }
    let child = command
        .args(["-m", "aiosmtpd", "-n"])
        .args(options)
        .arg("-l")
        .arg(format!("127.0.0.1:{port}"))
        .args(["-c", handler])
        .arg(maildir)
        .spawn()
        .unwrap();
    let server = SmtpServer {
        child,
        maildir: maildir.to_path_buf(),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "aiosmtpd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

fn delivered(maildir: &Path) -> Vec<String> {
    let mut mails: Vec<String> = std::fs::read_dir(maildir.join("new"))
        .map(|d| {
            d.map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
                .collect()
        })
        .unwrap_or_default();
    mails.sort();
    mails
}

fn header<'a>(mail: &'a str, name: &str) -> &'a str {
    mail.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} header in\n{mail}"))
}

/// Writes and runs the demo (as of 2026-11-20) in `dir/demo`.
fn demo_in(dir: &Path) -> PathBuf {
    crate::cli::demo_in(dir, "2026-11-20")
}

/// Each row's status starts in the terminal column of the header's
/// `status`, a Chinese region (华东: two columns a character) or not.
fn assert_columns_line_up(ledger: &str) {
    let column = |line: &str, word: &str| {
        let at = line
            .find(word)
            .unwrap_or_else(|| panic!("`{word}` in {line}"));
        unicode_width::UnicodeWidthStr::width(&line[..at])
    };
    let mut lines = ledger.lines();
    let header = column(lines.next().expect("a header"), " status ");
    for row in lines {
        // the first of them: an error at the end may hold the other word
        let status = [" sent ", " failed "]
            .into_iter()
            .filter(|s| row.contains(s))
            .min_by_key(|s| row.find(s))
            .unwrap_or_else(|| panic!("a status in {row}"));
        assert_eq!(column(row, status), header, "{ledger}");
    }
}

/// The demo, its nightly job sending to an SMTP server on `port` (nothing
/// listens there yet).
struct DemoLab {
    dir: tempfile::TempDir,
    demo: PathBuf,
    config: PathBuf,
    erp: String,
    port: u16,
}

impl DemoLab {
    fn new(timeout_secs: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let demo = demo_in(dir.path());
        let erp = format!(
            "sqlite://{}",
            std::fs::canonicalize(demo.join("erp.db"))
                .unwrap()
                .display()
        );
        let port = free_port();
        let config = demo.join("salesbatch.toml");
        let mut toml = std::fs::read_to_string(&config).unwrap();
        toml.push_str(&format!(
            "\n[smtp]\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"none\"\nfrom = \"销售报表 <reports@example.com>\"\ntimeout_secs = {timeout_secs}\n"
        ));
        std::fs::write(&config, toml).unwrap();
        Self {
            dir,
            demo,
            config,
            erp,
            port,
        }
    }

    fn cmd(&self, args: &[&str]) -> std::process::Output {
        bin()
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env("SALESBATCH_DEMO_ERP_URL", &self.erp)
            .output()
            .unwrap()
    }

    /// The ledger's rows for `as_of`.
    fn ledger(&self, as_of: &str) -> Vec<String> {
        let out = String::from_utf8_lossy(&self.cmd(&["deliveries"]).stdout).to_string();
        assert_columns_line_up(&out);
        out.lines()
            .filter(|l| l.starts_with(as_of))
            .map(str::to_string)
            .collect()
    }

    /// The ledger's row for `as_of` and `recipient`.
    fn ledger_row(&self, as_of: &str, recipient: &str) -> String {
        self.ledger(as_of)
            .into_iter()
            .find(|l| l.contains(recipient))
            .unwrap_or_else(|| panic!("no ledger row for {recipient} on {as_of}"))
    }
}

#[test]
fn emails_survive_a_down_smtp_server_and_retry_resends_the_same_message() {
    if !aiosmtpd_required() {
        return;
    }
    let lab = DemoLab::new(10);
    let (dir, demo, port) = (&lab.dir, &lab.demo, lab.port);
    let cmd = |args: &[&str]| lab.cmd(args);

    // the server is down: every send fails after its attempts, the run is degraded
    let run = cmd(&["run", "nightly", "--as-of", "2026-11-19"]);
    assert_eq!(run.status.code(), Some(3), "{}", text(&run));
    assert!(
        text(&run).contains("emails: 0 sent, 0 already sent, 4 failed"),
        "{}",
        text(&run)
    );
    let ledger = cmd(&["deliveries", "--failed"]);
    let failed: Vec<String> = String::from_utf8_lossy(&ledger.stdout)
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect();
    assert_eq!(failed.len(), 4, "{failed:#?}");
    assert!(
        failed
            .iter()
            .all(|l| l.starts_with("2026-11-19 nightly") && l.contains(" failed  ")),
        "{failed:#?}"
    );
    // the first email tried 3 times; the server was then known to be down,
    // so the other three were spooled untried
    let untried = "not tried: the server failed an earlier email of this run (";
    assert_eq!(
        failed.iter().filter(|l| l.contains("  3  ")).count(),
        1,
        "{failed:#?}"
    );
    assert_eq!(
        failed
            .iter()
            .filter(|l| l.contains("  0  ") && l.contains(untried))
            .count(),
        3,
        "{failed:#?}"
    );
    let spooled = crate::cli::emails_in(&demo.join("out/spool"));
    assert_eq!(spooled, 4);

    // the server comes up: retry sends the spooled messages over SMTP
    let server = start_smtp(port, &dir.path().join("maildir"));
    let retry = cmd(&["deliveries", "retry"]);
    assert_eq!(retry.status.code(), Some(0), "{}", text(&retry));
    assert!(
        text(&retry).contains("4 resent, 0 still failing"),
        "{}",
        text(&retry)
    );
    let mails = delivered(&server.maildir);
    assert_eq!(mails.len(), 4);
    let east = mails
        .iter()
        .find(|m| header(m, "To").contains("east@example.com"))
        .unwrap();
    assert!(
        header(east, "Subject").starts_with("=?utf-8?"),
        "subject is not encoded"
    );
    // a manager's out-of-office does not answer the report address
    assert_eq!(header(east, "Auto-Submitted"), "auto-generated");
    assert_eq!(header(east, "X-Auto-Response-Suppress"), "All");
    // one attachment, named after its region (RFC 2231 encoded)
    let attachments: Vec<&str> = east.lines().filter(|l| l.contains("filename")).collect();
    assert_eq!(attachments.len(), 1, "{attachments:?}");
    assert!(
        attachments[0].contains("%E5%8D%8E%E4%B8%9C.xlsx"),
        "{attachments:?}"
    );
    let hq = mails
        .iter()
        .find(|m| header(m, "To").contains("hq@example.com"))
        .unwrap();
    assert_eq!(hq.lines().filter(|l| l.contains("filename")).count(), 2);
    // the message that arrived is the one built and recorded when it failed
    let ledger = String::from_utf8_lossy(&cmd(&["deliveries"]).stdout).to_string();
    let east_row = ledger
        .lines()
        .find(|l| l.starts_with("2026-11-19") && l.contains("east@example.com"))
        .unwrap();
    assert!(
        east_row.contains(" sent ") && east_row.contains("  4  "),
        "{east_row}"
    );
    assert!(east_row.contains(header(east, "Message-ID")), "{east_row}");
    assert!(
        ledger.lines().skip(1).all(|l| !l.contains("failed")),
        "{ledger}"
    );
    assert!(!demo.join("out/spool").read_dir().unwrap().any(|_| true));

    // a rerun of the date sends nothing again
    let again = cmd(&["run", "nightly", "--as-of", "2026-11-19"]);
    assert!(
        text(&again).contains("emails: 0 sent, 4 already sent, 0 failed"),
        "{}",
        text(&again)
    );
    assert_eq!(delivered(&server.maildir).len(), 4);
}

/// A server that accepts connections and then says nothing costs one
/// email's attempts (three timeouts), not every email's: the rest of the run's
/// emails are spooled untried. A recipient the server refuses, on the other
/// hand, is that email's problem only: the others are still sent.
#[test]
fn a_hung_server_is_given_up_once_and_a_refused_recipient_stops_nothing_else() {
    if !aiosmtpd_required() {
        return;
    }
    let lab = DemoLab::new(1);
    // accepts every connection and never says a word, until told to stop
    let hung = std::net::TcpListener::bind(("127.0.0.1", lab.port)).unwrap();
    hung.set_nonblocking(true).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let held = std::thread::spawn({
        let stop = stop.clone();
        move || {
            let mut open = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match hung.accept() {
                    Ok((stream, _)) => open.push(stream),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
    });
    let run = lab.cmd(&["run", "nightly", "--as-of", "2026-11-19"]);
    assert_eq!(run.status.code(), Some(3), "{}", text(&run));
    assert!(
        text(&run).contains("emails: 0 sent, 0 already sent, 4 failed"),
        "{}",
        text(&run)
    );
    let rows = lab.ledger("2026-11-19");
    assert_eq!(rows.len(), 4, "{rows:#?}");
    let timed_out = rows
        .iter()
        .filter(|l| l.contains("  3  ") && l.ends_with("send timed out after 1s"))
        .count();
    let untried = rows
        .iter()
        .filter(|l| {
            l.contains("  0  ")
                && l.ends_with(
                    "not tried: the server failed an earlier email of this run (send timed out after 1s)",
                )
        })
        .count();
    assert_eq!((timed_out, untried), (1, 3), "{rows:#?}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    held.join().unwrap();

    // a server that refuses one mailbox (550) and takes the others
    std::fs::write(
        lab.dir.path().join("reject_north.py"),
        "from aiosmtpd.handlers import Mailbox\n\n\
         class RejectNorth(Mailbox):\n    \
             async def handle_RCPT(self, server, session, envelope, address, rcpt_options):\n        \
                 if address == 'north@example.com':\n            \
                     return '550 5.1.1 no such mailbox here'\n        \
                 envelope.rcpt_tos.append(address)\n        \
                 return '250 OK'\n",
    )
    .unwrap();
    let server = start_smtp_with(
        lab.port,
        &lab.dir.path().join("maildir"),
        "reject_north.RejectNorth",
        Some(lab.dir.path()),
        &[],
    );
    let run = lab.cmd(&["run", "nightly", "--as-of", "2026-11-18"]);
    assert_eq!(run.status.code(), Some(3), "{}", text(&run));
    assert!(
        text(&run).contains("emails: 3 sent, 0 already sent, 1 failed"),
        "{}",
        text(&run)
    );
    let mails = delivered(&server.maildir);
    let to: Vec<&str> = mails.iter().map(|m| header(m, "To")).collect();
    assert_eq!(mails.len(), 3, "{to:?}");
    assert!(to.iter().all(|t| !t.contains("north@")), "{to:?}");
    let north = lab.ledger_row("2026-11-18", "north@example.com");
    assert!(
        north.contains(" failed ") && north.contains("  3  ") && north.contains("550"),
        "{north}"
    );
}

/// `check` tries the mail server as a send would (connect, TLS, login,
/// then NOOP) and sends nothing: down, it is a problem (exit 1) named with
/// the server; up, it is ok. Without `[smtp]` it says where emails go.
#[test]
fn check_tries_the_mail_server_and_sends_nothing() {
    if !aiosmtpd_required() {
        return;
    }
    let lab = DemoLab::new(5);
    let smtp_line = |out: &str| {
        out.lines()
            .find(|l| l.starts_with("smtp: "))
            .unwrap_or_default()
            .to_string()
    };
    let down = lab.cmd(&["check"]);
    let out = text(&down);
    assert_eq!(down.status.code(), Some(1), "{out}");
    let line = smtp_line(&out);
    assert!(
        line.starts_with(&format!("smtp: cannot use `127.0.0.1:{}`: ", lab.port)),
        "{out}"
    );

    let server = start_smtp(lab.port, &lab.dir.path().join("maildir"));
    let up = lab.cmd(&["check"]);
    let out = text(&up);
    assert_eq!(up.status.code(), Some(0), "{out}");
    assert_eq!(
        smtp_line(&out),
        format!("smtp: ok: `127.0.0.1:{}` answered (no TLS)", lab.port)
    );
    assert!(delivered(&server.maildir).is_empty());

    // credentials come from the environment: an unset one is named
    let config = std::fs::read_to_string(&lab.config).unwrap();
    std::fs::write(
        &lab.config,
        config.replace(
            "security = \"none\"",
            "security = \"none\"\nusername_env = \"SB_TEST_SMTP_USER\"\npassword_env = \"SB_TEST_SMTP_PASS\"",
        ),
    )
    .unwrap();
    let unset = lab.cmd(&["check"]);
    let out = text(&unset);
    assert_eq!(unset.status.code(), Some(1), "{out}");
    assert_eq!(
        smtp_line(&out),
        "smtp: environment variable `SB_TEST_SMTP_USER` (smtp.username_env) is not set"
    );

    std::fs::remove_file(&lab.config).unwrap();
    std::fs::write(&lab.config, config.split("\n[smtp]").next().unwrap()).unwrap();
    let outbox = lab.cmd(&["check"]);
    let out = text(&outbox);
    assert_eq!(outbox.status.code(), Some(0), "{out}");
    assert!(
        smtp_line(&out).starts_with("smtp: none: emails are written to `")
            && smtp_line(&out).ends_with("out/outbox`"),
        "{out}"
    );
}

/// A delivered email as Python's `email` package reads it (aiosmtpd's
/// Python): its HTML body, its plain-text body and the names of its
/// attached workbooks.
pub struct Read {
    pub subject: String,
    pub html: String,
    pub text: String,
    pub workbooks: Vec<String>,
}

pub fn body_and_workbooks(mail: &str) -> Read {
    use std::io::Write as _;
    let mut python = Command::new("python3")
        .args([
            "-c",
            "import email, sys\n\
             from email import policy\n\
             m = email.message_from_string(sys.stdin.read(), policy=policy.default)\n\
             print(m['subject'])\n\
             names = [a.get_filename() or '' for a in m.iter_attachments()]\n\
             print('\\n'.join(n for n in names if n.endswith('.xlsx')))\n\
             print('---')\n\
             print(m.get_body(preferencelist=('html',)).get_content())\n\
             print('---')\n\
             print(m.get_body(preferencelist=('plain',)).get_content())\n",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    python
        .stdin
        .take()
        .unwrap()
        .write_all(mail.as_bytes())
        .unwrap();
    let out = python.wait_with_output().unwrap();
    assert!(out.status.success());
    let out = String::from_utf8(out.stdout).unwrap();
    let (subject, out) = out.split_once('\n').unwrap();
    let (names, bodies) = out.split_once("---\n").unwrap();
    let (html, text) = bodies.rsplit_once("\n---\n").unwrap();
    Read {
        subject: subject.to_string(),
        html: html.to_string(),
        // a text part's lines end in CRLF on the wire (RFC 2046 §4.1.1)
        text: text.replace("\r\n", "\n"),
        workbooks: names
            .lines()
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect(),
    }
}

/// An SMTP server on `lab`'s port refusing messages over 45,000 bytes
/// (RFC 1870 `SIZE`): below the demo's national email with its two
/// workbooks (about 61 KB), above the regional ones (about 35 KB).
fn start_smtp_limited(lab: &DemoLab) -> SmtpServer {
    start_smtp_with(
        lab.port,
        &lab.dir.path().join("maildir"),
        "aiosmtpd.handlers.Mailbox",
        None,
        &["-s", "45000"],
    )
}

/// Checks the demo's four emails of 2026-11-19 as `start_smtp_limited`'s
/// server got them, `out` being what the sending command printed: 华东's
/// with its workbook; hq's without its two, its body opening with why and
/// which files, then the report as usual, and in the ledger as sent with
/// the refusal after 2 attempts: whether the full message was tried at
/// night or resent from the spool, it was refused once (552: sending it
/// again cannot help), then sent without its workbooks.
fn only_hq_went_without_workbooks(lab: &DemoLab, out: &str, maildir: &Path) {
    assert!(
        out.contains("email sent without its workbooks: the mail server refused its size"),
        "{out}"
    );
    let mails = delivered(maildir);
    assert_eq!(mails.len(), 4);
    let to = |who: &str| {
        mails
            .iter()
            .find(|m| header(m, "To").contains(who))
            .unwrap()
    };
    let east = body_and_workbooks(to("east@example.com"));
    assert_eq!(east.workbooks, ["华东.xlsx"]);
    assert!(
        east.text.starts_with("销售日报 · 华东 · 2026-11-19\n"),
        "{}",
        east.text
    );
    let hq = to("hq@example.com");
    let read = body_and_workbooks(hq);
    assert!(read.workbooks.is_empty(), "{:?}", read.workbooks);
    let note = "本邮件未附工作簿：附上后邮件共 0.1 MB，超过邮件服务器允许的大小。\
                工作簿 national.xlsx, data-quality.xlsx 已生成，请向运维索取。";
    assert!(
        read.html.contains(&format!(
            "<body>\n<p class=\"more\" style=\"font-weight:bold\">{note}</p>"
        )),
        "{}",
        read.html
    );
    assert!(read.html.contains("<h2>分级变动</h2>"), "{}", read.html);
    // a client showing the plain-text part reads the same note first
    assert!(
        read.text
            .starts_with(&format!("{note}\n\n销售日报 · 全国 · 2026-11-19\n")),
        "{}",
        read.text
    );
    assert!(read.text.contains("\n## 分级变动\n"), "{}", read.text);
    let row = lab.ledger_row("2026-11-19", "hq@example.com");
    assert!(
        row.contains(" sent ")
            && row.contains("  2  ")
            && row.contains("sent without its workbooks: with them the email (")
            && row.contains("552")
            && row.contains(header(hq, "Message-ID")),
        "{row}"
    );
}

/// A dry run writes the email each recipient would get, built as a real
/// run builds it, to `out/dry-run/<date>/<job>/emails/`, and sends none:
/// with no mail server listening it still succeeds, and the ledger and
/// the spool hold nothing of it. Each manager's email carries their own
/// region's workbook only; hq's the national one and the data quality.
#[test]
fn a_dry_run_previews_each_recipients_email_and_sends_none() {
    let lab = DemoLab::new(2);
    let run = lab.cmd(&["run", "nightly", "--as-of", "2026-11-19", "--dry-run"]);
    let out = text(&run);
    assert_eq!(run.status.code(), Some(0), "{out}");
    let dir = lab.demo.join("out/dry-run/2026-11-19/nightly/emails");
    assert!(
        out.contains(&format!(
            "emails: 4 previewed in {} (a dry run sends none)",
            dir.display()
        )),
        "{out}"
    );
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "east@example.com_华东.eml",
            "hq@example.com_national.eml",
            "north@example.com_华北.eml",
            "south@example.com_华南.eml",
        ]
    );
    for (name, to, subject, workbooks) in [
        (
            "east@example.com_华东.eml",
            "east@example.com",
            "销售日报 · 华东 · 2026-11-19",
            &["华东.xlsx"][..],
        ),
        (
            "north@example.com_华北.eml",
            "north@example.com",
            "销售日报 · 华北 · 2026-11-19",
            &["华北.xlsx"],
        ),
        (
            "hq@example.com_national.eml",
            "hq@example.com",
            "销售日报 · 全国 · 2026-11-19",
            &["national.xlsx", "data-quality.xlsx"],
        ),
    ] {
        let mail = std::fs::read_to_string(dir.join(name)).unwrap();
        assert!(header(&mail, "To").contains(to), "{name}");
        let read = body_and_workbooks(&mail);
        assert_eq!(read.workbooks, workbooks, "{name}");
        assert!(
            read.text.starts_with(&format!("{subject}\n")),
            "{name}: {}",
            read.text
        );
    }
    assert!(lab.ledger("2026-11-19").is_empty());
    assert!(!lab.demo.join("out/spool").exists());
}

/// A reader that stops reading (`salesbatch history | head -1`) does not
/// make a command panic, nor an export fail: what is left unprinted is
/// dropped and the command ends with its own exit code, a run's degraded
/// 3 included, and says nothing of it.
#[test]
fn a_closed_standard_output_is_no_panic() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    // 200 customers: the tiers export passes the csv writer's 8 KiB buffer,
    // so the pipe is found closed mid-export, not at its end
    let made = bin()
        .args([
            "demo",
            "--customers",
            "200",
            "--as-of",
            "2026-11-20",
            "--dir",
        ])
        .arg(&demo)
        .output()
        .unwrap();
    assert_eq!(made.status.code(), Some(3), "{}", text(&made));
    let erp = format!(
        "sqlite://{}",
        std::fs::canonicalize(demo.join("erp.db"))
            .unwrap()
            .display()
    );
    for (args, code) in [
        (&["history"][..], 0),
        (&["deliveries"], 0),
        (&["export", "tiers", "--as-of", "2026-11-20"], 0),
        (
            &["run", "nightly", "--as-of", "2026-11-19", "--no-email"],
            3,
        ),
    ] {
        let mut child = bin()
            .arg("--config")
            .arg(demo.join("salesbatch.toml"))
            .args(args)
            .env("SALESBATCH_DEMO_ERP_URL", &erp)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // closed before the command has written anything
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{args:?}: {stderr}"
        );
    }
}

/// The night of 2026-11-19 with nothing listening on the lab's port: its
/// four emails fail and are spooled. The spool's folder.
fn a_night_with_the_server_down(lab: &DemoLab) -> PathBuf {
    let run = lab.cmd(&["run", "nightly", "--as-of", "2026-11-19"]);
    assert!(
        text(&run).contains("emails: 0 sent, 0 already sent, 4 failed"),
        "{}",
        text(&run)
    );
    let spool = lab.demo.join("out/spool");
    assert_eq!(crate::cli::emails_in(&spool), 4);
    spool
}

/// Behind `start_smtp_limited`'s server the regional emails carry their
/// workbook; the national one is refused once (552: sending it again
/// cannot help), then goes out without its workbooks, its body opening
/// with why and which files. The run is degraded and says so, and the
/// ledger records the email as sent, with the refusal; `history` says
/// the same.
#[test]
fn an_email_too_large_for_the_server_goes_out_without_its_workbooks() {
    if !aiosmtpd_required() {
        return;
    }
    let lab = DemoLab::new(10);
    let server = start_smtp_limited(&lab);
    let run = lab.cmd(&["run", "nightly", "--as-of", "2026-11-19"]);
    let out = text(&run);
    assert_eq!(run.status.code(), Some(3), "{out}");
    assert!(
        out.contains(
            "emails: 4 sent, 0 already sent, 0 failed; 1 sent without workbooks (too large for the mail server)"
        ),
        "{out}"
    );
    // `history` says the run's emails in the same words, the refusal included
    let history = text(&lab.cmd(&["history"]));
    assert!(
        history.lines().nth(1).is_some_and(|run| run.ends_with(
            ", emails: 4 sent, 0 already sent, 0 failed; 1 sent without workbooks (too large for the mail server)"
        )),
        "{history}"
    );
    only_hq_went_without_workbooks(&lab, &out, &server.maildir);
}

/// An email spooled while the server was down carries its workbooks; the
/// spool keeps the same email without them beside it. When the server,
/// back up, refuses the national one for its size (the limit of the test
/// above), `deliveries retry` sends that one instead, as the nightly run
/// would have, and says so; the regional emails go as spooled.
#[test]
fn retry_sends_a_spooled_email_too_large_for_the_server_without_its_workbooks() {
    if !aiosmtpd_required() {
        return;
    }
    let lab = DemoLab::new(2);
    let spool = a_night_with_the_server_down(&lab);
    assert_eq!(crate::cli::emails_in(&spool.join("without-workbooks")), 4);

    let server = start_smtp_limited(&lab);
    let retry = lab.cmd(&["deliveries", "retry"]);
    let out = text(&retry);
    assert_eq!(retry.status.code(), Some(3), "{out}");
    assert!(
        out.contains(
            "4 resent, 0 still failing; 1 sent without workbooks (too large for the mail server)"
        ),
        "{out}"
    );
    only_hq_went_without_workbooks(&lab, &out, &server.maildir);
    assert!(!spool.read_dir().unwrap().any(|_| true));
}

/// A date rerun after its emails failed sends them anew: the messages the
/// failed run spooled are superseded and removed, so a later `deliveries
/// retry` cannot send them a second time.
#[test]
fn a_rerun_that_sends_removes_the_failed_runs_spool() {
    if !aiosmtpd_required() {
        return;
    }
    let lab = DemoLab::new(2);
    let spool = a_night_with_the_server_down(&lab);
    let server = start_smtp(lab.port, &lab.dir.path().join("maildir"));
    let again = lab.cmd(&["run", "nightly", "--as-of", "2026-11-19"]);
    assert!(
        text(&again).contains("emails: 4 sent, 0 already sent, 0 failed"),
        "{}",
        text(&again)
    );
    assert!(!spool.read_dir().unwrap().any(|_| true));
    let retry = lab.cmd(&["deliveries", "retry"]);
    assert!(
        text(&retry).contains("0 resent, 0 still failing"),
        "{}",
        text(&retry)
    );
    assert_eq!(delivered(&server.maildir).len(), 4);
}

/// A recipient whose region has no scored customer (renamed or misspelt in
/// the masters or the config) is named and makes the run degraded, instead
/// of silently getting nothing; a run limited with `--region` to other
/// regions does not count it.
#[test]
fn a_recipient_without_a_report_is_named_and_degrades_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let demo = demo_in(dir.path());
    let config = demo.join("salesbatch.toml");
    let mut toml = std::fs::read_to_string(&config).unwrap();
    // no ingest step: the demo's dirty rows do not make these runs degraded
    toml.push_str(
        "\n[[jobs]]\nname = \"reports\"\ncron = \"0 0 6 * * *\"\nsteps = [\"compute\", \"report\", \"deliver\"]\n\
         \n[[recipients]]\nemail = \"west@example.com\"\nname = \"西南大区经理\"\nregions = [\"西南\"]\n",
    );
    std::fs::write(&config, toml).unwrap();
    let run = |extra: &[&str]| {
        bin()
            .arg("--config")
            .arg(&config)
            .args(["run", "reports", "--as-of", "2026-11-20"])
            .args(extra)
            .output()
            .unwrap()
    };
    let all = run(&[]);
    assert_eq!(all.status.code(), Some(3), "{}", text(&all));
    assert!(text(&all).contains(" 0 rejections, "), "{}", text(&all));
    assert!(
        text(&all).contains(
            "no report: recipient west@example.com, region `西南`: the region has no scored customer"
        ),
        "{}",
        text(&all)
    );
    let east = run(&["--region", "华东"]);
    assert_eq!(east.status.code(), Some(0), "{}", text(&east));
    assert!(!text(&east).contains("no report"), "{}", text(&east));
}
