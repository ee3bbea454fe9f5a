//! Thin entry point: parse the command line, set up logging, run, map the
//! outcome to SPEC §2's exit codes.

use std::io::IsTerminal as _;

use clap::{CommandFactory as _, Parser as _};
use salesbatch::config::ConfigError;
use salesbatch::{Cli, ExitCode, LogFormat};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    init_logging(cli.log_format);
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

/// A command line clap refuses: as clap prints it (help and version
/// included), unless JSON logs were asked for, where a log shipper would
/// choke on its text: one ERROR event then, and exit 2 all the same.
fn usage_error(e: &clap::Error) -> std::process::ExitCode {
    // what the line says, as far as clap can still read it (flag or
    // environment); clap stops at the first unknown argument, so a
    // `--log-format json` after it is looked for by hand
    let format = Cli::command()
        .ignore_errors(true)
        .try_get_matches()
        .ok()
        .and_then(|m| m.get_one::<LogFormat>("log_format").copied());
    // `args_os`: `args` panics on an argument that is not UTF-8
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let json_after_error = args
        .windows(2)
        .any(|w| w[0] == "--log-format" && w[1] == "json")
        || args.iter().any(|a| a == "--log-format=json");
    if !e.use_stderr() || !(format == Some(LogFormat::Json) || json_after_error) {
        e.exit();
    }
    init_logging(LogFormat::Json);
    let message = e.render().to_string();
    tracing::error!(target: "salesbatch::cli", "{}", message.trim_end());
    std::process::ExitCode::from(ExitCode::Usage as u8)
}

fn init_logging(format: LogFormat) {
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,salesbatch=info".into()),
        )
        .with_writer(std::io::stderr);
    match format {
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
}
