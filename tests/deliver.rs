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

fn aiosmtpd_installed() -> bool {
    Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts aiosmtpd storing every message in a maildir; waits until it listens.
fn start_smtp(port: u16, maildir: &Path) -> SmtpServer {
    let child = Command::new("python3")
        .args(["-m", "aiosmtpd", "-n", "-l"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-c", "aiosmtpd.handlers.Mailbox"])
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

#[test]
fn emails_survive_a_down_smtp_server_and_retry_resends_the_same_message() {
    if !require(
        "python3 -m aiosmtpd (pip install aiosmtpd)",
        aiosmtpd_installed(),
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let out = bin()
        .args(["demo", "--as-of", "2026-11-20", "--dir"])
        .arg(&demo)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
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
        "\n[smtp]\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"none\"\nfrom = \"销售报表 <reports@example.com>\"\ntimeout_secs = 10\n"
    ));
    std::fs::write(&config, toml).unwrap();
    let cmd = |args: &[&str]| {
        bin()
            .arg("--config")
            .arg(&config)
            .args(args)
            .env("SALESBATCH_DEMO_ERP_URL", &erp)
            .output()
            .unwrap()
    };

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
    assert!(failed.iter().all(|l| l.starts_with("2026-11-19 nightly")
        && l.contains(" failed  ")
        && l.contains("  3  ")));
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
