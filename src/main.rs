//! Thin entry point: parse the command line, set up logging, run, map the
//! outcome to SPEC §2's exit codes.

use std::io::IsTerminal as _;

use clap::Parser;
use salesbatch::config::ConfigError;
use salesbatch::{Cli, ExitCode};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,salesbatch=info".into()),
        )
        .with_writer(std::io::stderr)
        // colour codes only for a person at a terminal, never in cron mail,
        // journald or a redirected log file
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    // boxed: the command future is too deeply nested for rustc to lay out inline
    let code = match Box::pin(salesbatch::run(cli)).await {
        Ok(code) => code,
        Err(e) => {
            if let Some(config) = e.downcast_ref::<ConfigError>() {
                eprint!("error: {config}");
                ExitCode::Usage
            } else {
                eprintln!("error: {}", salesbatch::cli::error_chain(e.as_ref()));
                ExitCode::Failure
            }
        }
    };
    std::process::ExitCode::from(code as u8)
}
