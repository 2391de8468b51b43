//! `stock-host` entry point: parse configuration, set up logging, run.

use std::io::IsTerminal;

use clap::Parser;
use stock_host::config::{Cli, Command, LogFormat};
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let Command::Serve(config) = cli.command;
    let format = config.log_format.unwrap_or(if std::io::stderr().is_terminal() { LogFormat::Text } else { LogFormat::Json });
    let filter = EnvFilter::try_from_env("LOG_LEVEL").unwrap_or_else(|_| EnvFilter::new("info"));
    // Events are formatted on the thread that logs them and written (redacted) by a logging thread;
    // nothing is dropped when it falls behind (lossy off): callers wait instead.
    let (writer, flush_on_exit) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(64 * 1024)
        .finish(stock_host::secrets::RedactingStderr);
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(false).init(),
        LogFormat::Text => builder.init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("stock-host: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(stock_host::run(*config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            let error = stock_host::secrets::redact(&format!("{error:#}"));
            tracing::error!(%error, "stock-host stopped");
            drop(flush_on_exit);
            eprintln!("stock-host: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
