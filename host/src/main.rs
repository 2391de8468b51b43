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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(stock_host::secrets::RedactingStderr)
        .with_ansi(std::io::stderr().is_terminal());
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
            eprintln!("stock-host: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
