//! Thin entry point: parse the command line, set up logging, run, map the
//! outcome to SPEC §2's exit codes.

use std::io::IsTerminal as _;

use clap::Parser;
use salesbatch::config::ConfigError;
use salesbatch::{Cli, ExitCode, LogFormat};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,salesbatch=info".into()),
        )
        .with_writer(std::io::stderr);
    match cli.log_format {
        // colour codes only for a person at a terminal, never in cron mail,
        // journald or a redirected log file
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        // the event's fields at the top level and the run's span (job,
        // run_id, as_of) beside them: what Loki or Elasticsearch index
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
    // boxed: the command future is too deeply nested for rustc to lay out inline
    let code = match Box::pin(salesbatch::run(cli)).await {
        Ok(code) => code,
        Err(e) => {
            let (code, message) = match e.downcast_ref::<ConfigError>() {
                Some(config) => (ExitCode::Usage, config.to_string()),
                None => (ExitCode::Failure, salesbatch::cli::error_chain(e.as_ref())),
            };
            let message = format!("error: {}", message.trim_end());
            salesbatch::cli::say(tracing::Level::ERROR, &message);
            code
        }
    };
    std::process::ExitCode::from(code as u8)
}
