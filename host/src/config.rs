//! Command line and environment: one clap struct, every flag also an environment variable, checked
//! before anything listens. The seed's names (SYMBOL, NDAYS, APIKEY, PORT, CACHE_TTL,
//! CIRCUIT_BREAKER_TIMEOUT) are kept unprefixed.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
// Defaults shared with the component, so `stock-host` and `wasmtime serve` behave the same unconfigured.
use stock_component::core::config::{
    DEFAULT_ALPHAVANTAGE_URL, DEFAULT_BREAKER_THRESHOLD, DEFAULT_NDAYS, DEFAULT_SYMBOL, Scheme, parse_duration_ms, split_url,
};
use stock_component::core::model::{Symbol, parse_days};

/// Traffic port of the seed service.
pub const DEFAULT_PORT: u16 = 8080;
/// Admin port: `/metrics` and `/admin/*`, kept off the traffic port so it is never exposed by accident.
pub const DEFAULT_ADMIN_PORT: u16 = 9090;
/// Where `cargo build --release --target wasm32-wasip2 -p stock-component` puts the component.
pub const DEFAULT_COMPONENT: &str = "target/wasm32-wasip2/release/stock_component.wasm";
/// Five minutes: daily closes change once a day and the free tier allows 25 calls a day.
pub const DEFAULT_CACHE_TTL: &str = "300";
/// Thirty seconds open before a probe.
pub const DEFAULT_BREAKER_TIMEOUT: &str = "30s";
/// Ten seconds for one upstream call.
pub const DEFAULT_UPSTREAM_TIMEOUT: &str = "10s";
/// Whole-request deadline: above the upstream timeout plus the single-flight grace (2 s).
pub const DEFAULT_REQUEST_TIMEOUT: &str = "15s";
/// Linear memory one component instance may use.
pub const DEFAULT_MAX_MEMORY_MIB: u32 = 64;
/// Component instances alive at once (pooling allocator slots); more requests wait.
pub const DEFAULT_MAX_CONCURRENCY: u32 = 256;
/// Keys held by the in-memory keyvalue store before the least recently used are evicted.
pub const DEFAULT_KV_MAX_ENTRIES: usize = 10_000;
/// How long requests in flight may take to finish after SIGTERM.
pub const DEFAULT_DRAIN_TIMEOUT: &str = "20s";
/// How long to keep accepting (and answering `/ready` 503) after SIGTERM, so load balancers notice.
pub const DEFAULT_SHUTDOWN_DELAY: &str = "0s";
/// How often APIKEY_FILE is checked for a new key.
pub const APIKEY_FILE_POLL: Duration = Duration::from_secs(1);

/// `stock-host`: serves the stock component.
#[derive(Debug, Parser)]
#[command(name = "stock-host", version, about = "Serves the stock closing-price WebAssembly component")]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the component over HTTP.
    Serve(Box<ServeConfig>),
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (containers).
    Json,
    /// Human-readable lines (terminals).
    Text,
}

/// Everything `stock-host serve` accepts.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Traffic port (component, /health, /ready).
    #[arg(long, env = "PORT", default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// Admin port (/metrics).
    #[arg(long, env = "ADMIN_PORT", default_value_t = DEFAULT_ADMIN_PORT)]
    pub admin_port: u16,
    /// Address both ports bind to.
    #[arg(long, env = "BIND", default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    pub bind: IpAddr,
    /// Path of the component (.wasm; .wat also accepted).
    #[arg(long, env = "COMPONENT", default_value = DEFAULT_COMPONENT)]
    pub component: PathBuf,
    /// Alpha Vantage API key. Prefer APIKEY_FILE in clusters; never logged.
    #[arg(long, env = "APIKEY", hide_env_values = true, conflicts_with = "apikey_file")]
    pub apikey: Option<String>,
    /// File holding the API key (e.g. a mounted Kubernetes Secret); re-read when it changes.
    #[arg(long, env = "APIKEY_FILE")]
    pub apikey_file: Option<PathBuf>,
    /// Alpha Vantage query endpoint; only its authority may be called.
    #[arg(long, env = "ALPHAVANTAGE_URL", default_value = DEFAULT_ALPHAVANTAGE_URL, value_parser = parse_upstream_url)]
    pub alphavantage_url: String,
    /// Symbol for `GET /`.
    #[arg(long, env = "SYMBOL", default_value = DEFAULT_SYMBOL, value_parser = parse_symbol)]
    pub symbol: String,
    /// Days for `GET /` and `GET /{symbol}` (1-100).
    #[arg(long, env = "NDAYS", default_value_t = DEFAULT_NDAYS, value_parser = parse_ndays)]
    pub ndays: u32,
    /// Seconds a fetched series is served from cache (`300`, `300s`, `5m`).
    #[arg(long, env = "CACHE_TTL", default_value = DEFAULT_CACHE_TTL, value_parser = parse_duration)]
    pub cache_ttl: Duration,
    /// Consecutive upstream failures that open the circuit breaker.
    #[arg(long, env = "CIRCUIT_BREAKER_THRESHOLD", default_value_t = DEFAULT_BREAKER_THRESHOLD, value_parser = clap::value_parser!(u32).range(1..))]
    pub circuit_breaker_threshold: u32,
    /// How long the breaker stays open before one probe (`30` or `30s`).
    #[arg(long, env = "CIRCUIT_BREAKER_TIMEOUT", default_value = DEFAULT_BREAKER_TIMEOUT, value_parser = parse_positive_duration)]
    pub circuit_breaker_timeout: Duration,
    /// Deadline for one upstream call.
    #[arg(long, env = "UPSTREAM_TIMEOUT", default_value = DEFAULT_UPSTREAM_TIMEOUT, value_parser = parse_positive_duration)]
    pub upstream_timeout: Duration,
    /// Deadline for a whole request inside the component (epoch interruption plus a wall-clock timer).
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = DEFAULT_REQUEST_TIMEOUT, value_parser = parse_positive_duration)]
    pub request_timeout: Duration,
    /// Keyvalue backend: `memory` (one process; Redis arrives later).
    #[arg(long, env = "KV_URL", default_value = "memory", value_parser = parse_kv_url)]
    pub kv_url: String,
    /// Most keys in the in-memory keyvalue store.
    #[arg(long, env = "KV_MAX_ENTRIES", default_value_t = DEFAULT_KV_MAX_ENTRIES)]
    pub kv_max_entries: usize,
    /// Linear memory cap per component instance, in MiB.
    #[arg(long, env = "MAX_MEMORY_MIB", default_value_t = DEFAULT_MAX_MEMORY_MIB, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub max_memory_mib: u32,
    /// Component instances alive at once; further requests wait for a slot.
    #[arg(long, env = "MAX_CONCURRENCY", default_value_t = DEFAULT_MAX_CONCURRENCY, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_concurrency: u32,
    /// After SIGTERM: how long requests in flight may take to finish.
    #[arg(long, env = "DRAIN_TIMEOUT", default_value = DEFAULT_DRAIN_TIMEOUT, value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// After SIGTERM: how long to keep accepting with /ready answering 503 before draining.
    #[arg(long, env = "SHUTDOWN_DELAY", default_value = DEFAULT_SHUTDOWN_DELAY, value_parser = parse_duration)]
    pub shutdown_delay: Duration,
    /// Log format; defaults to text on a terminal and JSON otherwise.
    #[arg(long, env = "LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

impl ServeConfig {
    /// Traffic listener address.
    pub fn traffic_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.port)
    }

    /// Admin listener address.
    pub fn admin_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.admin_port)
    }

    /// Authority (`host:port`) the component may call.
    pub fn upstream_authority(&self) -> String {
        upstream_authority(&self.alphavantage_url).unwrap_or_default()
    }
}

/// `host:port` of an http(s) URL, the port made explicit.
pub fn upstream_authority(url: &str) -> Option<String> {
    let (scheme, authority, _) = split_url(url).ok()?;
    let authority = authority.to_ascii_lowercase();
    if has_port(&authority) {
        return Some(authority);
    }
    let default_port = match scheme {
        Scheme::Https => 443,
        Scheme::Http => 80,
    };
    Some(format!("{authority}:{default_port}"))
}

fn has_port(authority: &str) -> bool {
    match authority.rsplit_once(':') {
        Some((host, port)) => !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && (!host.contains(':') || host.ends_with(']')),
        None => false,
    }
}

fn parse_upstream_url(text: &str) -> Result<String, String> {
    upstream_authority(text)
        .map(|_| text.to_owned())
        .ok_or_else(|| "ALPHAVANTAGE_URL must be an http:// or https:// URL with a host, e.g. https://www.alphavantage.co/query".into())
}

fn parse_symbol(text: &str) -> Result<String, String> {
    Symbol::parse(text).map(|s| s.as_str().to_owned()).ok_or_else(|| "SYMBOL must be 1-10 letters, digits, '.' or '-'".into())
}

fn parse_ndays(text: &str) -> Result<u32, String> {
    parse_days(text).ok_or_else(|| "NDAYS must be a whole number from 1 to 100".into())
}

fn parse_kv_url(text: &str) -> Result<String, String> {
    if text == "memory" { Ok(text.into()) } else { Err("KV_URL must be `memory` (Redis support is not built yet)".into()) }
}

/// Parses `30` (seconds), `30s`, `1500ms`, `5m` or `1h`, exactly as the component does.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    parse_duration_ms(text)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{text:?} is not a duration such as 30, 30s, 1500ms, 5m or 1h"))
}

fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    parse_duration(text).and_then(|d| if d.is_zero() { Err("must be more than zero".into()) } else { Ok(d) })
}

/// Renders a duration the way the component's `wasi:config` parser reads it.
pub fn config_duration(duration: Duration) -> String {
    format!("{}ms", duration.as_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_the_seed_forms() {
        for (input, want) in [("30", Some(30_000)), ("30s", Some(30_000)), ("1500ms", Some(1_500)), ("5m", Some(300_000)), ("1h", Some(3_600_000)), ("", None), ("30x", None), ("-1", None), ("1.5s", None)] {
            assert_eq!(parse_duration(input).ok().map(|d| d.as_millis() as u64), want, "{input:?}");
        }
        assert!(parse_positive_duration("0").is_err());
    }

    #[test]
    fn authorities_get_explicit_ports() {
        for (input, want) in [
            ("https://www.alphavantage.co/query", Some("www.alphavantage.co:443")),
            ("http://127.0.0.1:8081/query", Some("127.0.0.1:8081")),
            ("http://Example.com", Some("example.com:80")),
            ("http://[::1]:9000/q", Some("[::1]:9000")),
            ("http://[::1]/q", Some("[::1]:80")),
            ("ftp://x/", None),
            ("http:///x", None),
            ("http://u@h/", None),
        ] {
            assert_eq!(upstream_authority(input).as_deref(), want, "{input}");
        }
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (flag, value, variable) in [("--ndays", "0", "NDAYS"), ("--symbol", "no way", "SYMBOL"), ("--alphavantage-url", "ftp://x", "ALPHAVANTAGE_URL"), ("--kv-url", "redis://x", "KV_URL")] {
            let error = Cli::try_parse_from(["stock-host", "serve", flag, value]).expect_err("invalid");
            assert!(error.to_string().contains(variable), "{flag}: {error}");
        }
        let ok = Cli::try_parse_from(["stock-host", "serve", "--circuit-breaker-timeout", "30"]).expect("30 is accepted");
        let Command::Serve(config) = ok.command;
        assert_eq!(config.circuit_breaker_timeout, Duration::from_secs(30));
    }
}
