//! `alphavantage-sim`: a local stand-in for the Alpha Vantage `TIME_SERIES_DAILY` API, for tests and demos.
//!
//! It answers `GET /query` exactly like the real upstream (every error is HTTP 200 with a JSON body) with
//! deterministic sample prices, and can be told at run time to misbehave (latency, 5xx pages, hangs, resets,
//! malformed or empty documents, rate-limit answers) through the `/_sim/*` control endpoints:
//!
//! - `PUT /_sim/fault?mode=M[&latency_ms=MS][&times=N]` switches the fault (see `FaultMode`), optionally the latency,
//!   optionally for the next N `/query` calls only; answers `{"fault", "latency_ms", "times_remaining"}`.
//! - `GET /_sim/stats` answers `{"calls", "by_symbol", "fault", "latency_ms"}`.
//! - `POST /_sim/reset` sets mode `none`, latency 0 and zero counters.
//!
//! ```text
//! $ alphavantage-sim --addr 127.0.0.1:0
//! listening on http://127.0.0.1:40123
//! $ curl 'http://127.0.0.1:40123/query?function=TIME_SERIES_DAILY&symbol=MSFT&apikey=k'
//! ```

mod calendar;
mod conn;
mod control;
mod data;
mod fault;
mod json;
mod query;
mod route;
mod server;
mod service;
mod state;

use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use tokio::net::TcpListener;
use tracing::info;
use tracing_subscriber::EnvFilter;

use crate::control::MAX_LATENCY_MS;
use crate::fault::FaultMode;
use crate::state::SimState;

/// Loopback with a free port picked by the OS; the port is printed on stdout.
const DEFAULT_ADDR: &str = "127.0.0.1:0";
/// Answer normally unless told otherwise.
const DEFAULT_FAULT: &str = "none";
/// No added latency.
const DEFAULT_LATENCY_MS: u64 = 0;
/// Log filter when `RUST_LOG` is not set: one line per request.
const DEFAULT_LOG_FILTER: &str = "info";

/// Local Alpha Vantage simulator (TIME_SERIES_DAILY) with switchable faults.
#[derive(Debug, Parser)]
#[command(name = "alphavantage-sim", version)]
struct Config {
    /// Address to listen on; port 0 picks a free port. The bound address is printed on stdout as
    /// `listening on http://ADDR`.
    #[arg(long, env = "SIM_ADDR", default_value = DEFAULT_ADDR)]
    addr: SocketAddr,

    /// Initial fault mode: none, latency, http-500, http-503, hang, reset, malformed, empty, empty-series, note,
    /// information or bad-key.
    #[arg(long, env = "SIM_FAULT", default_value = DEFAULT_FAULT)]
    fault: FaultMode,

    /// Delay before every /query answer (faults included), in milliseconds, at most 600000.
    #[arg(
        long,
        env = "SIM_LATENCY_MS",
        default_value_t = DEFAULT_LATENCY_MS,
        value_parser = clap::value_parser!(u64).range(..=MAX_LATENCY_MS),
    )]
    latency_ms: u64,
}

/// Logs go to stderr so that stdout carries only the `listening on` line.
fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal()).init();
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    init_tracing();

    let shutdown = server::shutdown_signal()?;
    let listener = TcpListener::bind(config.addr).await.with_context(|| format!("cannot listen on {} (SIM_ADDR)", config.addr))?;
    let local = listener.local_addr().context("cannot read the bound address")?;

    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on http://{local}").context("cannot write to stdout")?;
    stdout.flush().context("cannot flush stdout")?;
    drop(stdout);
    info!(addr = %local, fault = %config.fault, latency_ms = config.latency_ms, "alphavantage-sim started");

    let state = Arc::new(SimState::new(config.fault, config.latency_ms));
    server::run(listener, state, shutdown).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flags_with_defaults() {
        for (args, want) in [
            (vec![], ("127.0.0.1:0", FaultMode::None, 0)),
            (vec!["--addr", "0.0.0.0:8081", "--fault", "hang", "--latency-ms", "250"], ("0.0.0.0:8081", FaultMode::Hang, 250)),
            (vec!["--fault=http-503"], ("127.0.0.1:0", FaultMode::Http503, 0)),
        ] {
            let argv = std::iter::once("alphavantage-sim").chain(args.iter().copied());
            let config = Config::try_parse_from(argv).expect("valid flags");
            assert_eq!((config.addr.to_string().as_str(), config.fault, config.latency_ms), want, "{args:?}");
        }
    }

    #[test]
    fn rejects_bad_flags() {
        for args in [vec!["--fault", "explode"], vec!["--latency-ms", "-1"], vec!["--latency-ms", "600001"], vec!["--addr", "localhost"]] {
            let argv = std::iter::once("alphavantage-sim").chain(args.iter().copied());
            assert!(Config::try_parse_from(argv).is_err(), "{args:?}");
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory as _;
        Config::command().debug_assert();
    }
}
