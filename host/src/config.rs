//! Command line and environment: one clap struct, every flag also an environment variable, checked
//! before anything listens. The seed's names (SYMBOL, NDAYS, APIKEY, PORT, CACHE_TTL,
//! CIRCUIT_BREAKER_TIMEOUT) are kept unprefixed.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
// Setting names and defaults shared with every component build, so `stock-host` and `wasmtime serve`
// behave the same unconfigured. Whether a value is usable is the running build's call (status.check-config).
use stock_shared::duration::{DURATION_FORMS, parse_ms, render_ms};
use stock_shared::settings::{self, default_of};

use crate::egress::authority_of_url;

/// Traffic port of the seed service.
pub const DEFAULT_PORT: u16 = 8080;
/// Admin port: `/metrics` and `/admin/*`, kept off the traffic port so it is never exposed by accident.
pub const DEFAULT_ADMIN_PORT: u16 = 9090;
/// Where `cargo build --release --target wasm32-wasip2 -p stock-component` puts the component.
pub const DEFAULT_COMPONENT: &str = "target/wasm32-wasip2/release/stock_component.wasm";
/// Where the container image keeps it.
pub const IMAGE_COMPONENT: &str = "/component/stock_component.wasm";

/// The default COMPONENT: the working directory's build, else the build beside this binary
/// (`target/release/stock-host` -> `target/wasm32-wasip2/release/...`), else the image's copy.
pub fn default_component() -> PathBuf {
    let beside_binary = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent().map(|target| target.join("wasm32-wasip2/release/stock_component.wasm")));
    [Some(PathBuf::from(DEFAULT_COMPONENT)), beside_binary, Some(PathBuf::from(IMAGE_COMPONENT))]
        .into_iter()
        .flatten()
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_COMPONENT))
}
/// Whole-request deadline: above the upstream timeout plus the single-flight grace (2 s).
pub const DEFAULT_REQUEST_TIMEOUT: &str = "15s";
/// Linear memory one component instance may use.
pub const DEFAULT_MAX_MEMORY_MIB: u32 = 64;
/// Component instances alive at once (pooling allocator slots); more requests wait.
pub const DEFAULT_MAX_CONCURRENCY: u32 = 256;
/// Requests per instance: reuse takes instantiation off almost every request; the stock build keeps
/// no per-request state in globals, so reuse is safe for it.
pub const DEFAULT_MAX_INSTANCE_REUSE: u32 = 1000;
/// Idle instances retire after this long (checked every half of it), returning their memory.
pub const DEFAULT_INSTANCE_IDLE_TIMEOUT: &str = "30s";
/// Slots one symbol may hold: a hanging upstream for one symbol leaves the rest for everyone else.
pub const DEFAULT_MAX_CONCURRENCY_PER_SYMBOL: u32 = 32;
/// Open traffic connections: each costs ~18 KB and a file descriptor; containers often allow 1024.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 768;
/// Keys held by the in-memory cache bucket before the least recently used are evicted.
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

/// Keyvalue backend (KV_URL).
#[derive(Clone, PartialEq, Eq)]
pub enum KvUrl {
    /// In-process buckets shared by every instance of this process.
    Memory,
    /// Redis shared by every replica: `redis://host:port[/db]` or `rediss://...`.
    Redis(String),
}

impl std::fmt::Debug for KvUrl {
    // Never prints the URL: it may carry a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Memory => f.write_str("memory"),
            Self::Redis(_) => f.write_str("redis://(redacted)"),
        }
    }
}

fn parse_kv_url(text: &str) -> Result<KvUrl, String> {
    if text == "memory" {
        return Ok(KvUrl::Memory);
    }
    let usable = (text.starts_with("redis://") || text.starts_with("rediss://")) && redis::Client::open(text).is_ok();
    if usable { Ok(KvUrl::Redis(text.to_owned())) } else { Err("must be `memory` or redis://host:port[/db] (rediss:// for TLS)".into()) }
}

/// A validated LOG_LEVEL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLevel(String);

impl LogLevel {
    /// The tracing filter: a bare level applies to this service (host and component lines) only, so
    /// `debug` does not mean cranelift's compiler internals.
    pub fn filter(&self) -> tracing_subscriber::EnvFilter {
        let directives = match self.0.as_str() {
            level @ ("error" | "warn" | "info" | "debug" | "trace") if level != "info" => {
                let others = if matches!(level, "error" | "warn") { level } else { "info" };
                format!("{others},stock_host={level},component={level}")
            }
            other => other.to_owned(),
        };
        tracing_subscriber::EnvFilter::try_new(&directives).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    }
}

fn parse_log_level(text: &str) -> Result<LogLevel, String> {
    let text = text.trim().to_ascii_lowercase();
    tracing_subscriber::EnvFilter::builder()
        .parse(&text)
        .map(|_| LogLevel(text.clone()))
        .map_err(|e| format!("{e}; use a level (error, warn, info, debug, trace) or directives like info,stock_host=debug"))
}

/// Why the command line did not yield a configuration: help or version was asked for, or a value is wrong.
pub struct CliExit {
    message: String,
    success: bool,
}

impl CliExit {
    /// Prints the message (help and version to stdout, a mistake as one line on stderr) and gives the exit code.
    pub fn report(self) -> std::process::ExitCode {
        if self.success {
            print!("{}", self.message);
            std::process::ExitCode::SUCCESS
        } else {
            eprintln!("{}", self.message);
            std::process::ExitCode::from(2)
        }
    }
}

/// `stock-host --version`: the version, git commit, wasmtime version and the default component's digest.
pub fn long_version() -> String {
    let component = default_component();
    let digest = std::fs::read(&component).map_or_else(|_| "not found".to_owned(), |b| crate::engine::short_version(&b));
    format!(
        "stock-host {}\ncommit {}\nwasmtime {}\ndefault component {} ({})\n",
        env!("CARGO_PKG_VERSION"),
        env!("STOCK_HOST_COMMIT"),
        env!("STOCK_HOST_WASMTIME"),
        component.display(),
        digest
    )
}

/// Parses the command line; a mistake becomes one line naming the environment variable (and flag)
/// and what is accepted, instead of clap's usage block.
pub fn parse_args<I, T>(args: I) -> Result<Cli, CliExit>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let error = match Cli::try_parse_from(args) {
        Ok(cli) => return Ok(cli),
        Err(error) => error,
    };
    match error.kind() {
        ErrorKind::DisplayVersion => return Err(CliExit { message: long_version(), success: true }),
        ErrorKind::DisplayHelp | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            return Err(CliExit { message: error.render().to_string(), success: matches!(error.kind(), ErrorKind::DisplayHelp) });
        }
        _ => {}
    }
    let rendered = error.render().to_string();
    let reason = rendered.lines().next().unwrap_or("invalid arguments").trim_start_matches("error: ").to_owned();
    let flag = match error.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => arg.split_whitespace().next().map(|f| f.trim_start_matches('-').to_owned()),
        _ => None,
    };
    let env = flag.as_deref().and_then(|long| {
        let command = <Cli as clap::CommandFactory>::command();
        let serve = command.find_subcommand("serve")?.clone();
        serve.get_arguments().find(|a| a.get_long() == Some(long)).and_then(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
    });
    let message = match (env, flag) {
        (Some(env), Some(flag)) => format!("stock-host: {env} (--{flag}): {reason}"),
        _ => format!("stock-host: {reason}"),
    };
    Err(CliExit { message, success: false })
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
    /// Path of the component (.wasm; .wat also accepted); watched, a changed file is swapped in. By
    /// default the release build next to this binary, or the image's /component/stock_component.wasm.
    #[arg(long, env = "COMPONENT", default_value_os_t = default_component())]
    pub component: PathBuf,
    /// Alpha Vantage API key. Prefer APIKEY_FILE in clusters; never logged.
    #[arg(long, env = settings::APIKEY.env, hide_env_values = true, conflicts_with = "apikey_file")]
    pub apikey: Option<String>,
    /// File holding the API key (e.g. a mounted Kubernetes Secret); re-read every second, a changed key
    /// applies to new requests without a restart.
    #[arg(long, env = "APIKEY_FILE")]
    pub apikey_file: Option<PathBuf>,
    /// Bearer token for admin writes (PUT /admin/component, POST /admin/rollback); never logged.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true, conflicts_with = "admin_token_file")]
    pub admin_token: Option<String>,
    /// File holding the admin token (a mounted Secret); read on every admin write.
    #[arg(long, env = "ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Alpha Vantage query endpoint; only its authority may be called.
    #[arg(long, env = settings::ALPHAVANTAGE_URL.env, default_value = default_of(settings::ALPHAVANTAGE_URL), value_parser = parse_upstream_url)]
    pub alphavantage_url: String,
    /// Symbol for `GET /` (the component checks it at startup).
    #[arg(long, env = settings::SYMBOL.env, default_value = default_of(settings::SYMBOL))]
    pub symbol: String,
    /// Days for `GET /` and `GET /{symbol}` (the component checks it at startup).
    #[arg(long, env = settings::NDAYS.env, default_value = default_of(settings::NDAYS))]
    pub ndays: String,
    /// How long a fetched series is served from cache (`300`, `300s`, `5m`).
    #[arg(long, env = settings::CACHE_TTL.env, default_value = default_of(settings::CACHE_TTL), value_parser = parse_duration)]
    pub cache_ttl: Duration,
    /// Consecutive upstream failures that open the circuit breaker (the component checks it at startup).
    #[arg(long, env = settings::BREAKER_THRESHOLD.env, default_value = default_of(settings::BREAKER_THRESHOLD))]
    pub circuit_breaker_threshold: String,
    /// How long the breaker stays open before one probe (`30` or `30s`).
    #[arg(long, env = settings::BREAKER_TIMEOUT.env, default_value = default_of(settings::BREAKER_TIMEOUT), value_parser = parse_positive_duration)]
    pub circuit_breaker_timeout: Duration,
    /// Upstream calls allowed per UTC day, 0 = unlimited (the component checks it at startup).
    #[arg(long, env = settings::UPSTREAM_DAILY_QUOTA.env, default_value = default_of(settings::UPSTREAM_DAILY_QUOTA))]
    pub upstream_daily_quota: String,
    /// How long "unknown symbol" answers are remembered (0 = not at all).
    #[arg(long, env = settings::NEGATIVE_CACHE_TTL.env, default_value = default_of(settings::NEGATIVE_CACHE_TTL), value_parser = parse_duration)]
    pub negative_cache_ttl: Duration,
    /// Deadline for one upstream call.
    #[arg(long, env = settings::UPSTREAM_TIMEOUT.env, default_value = default_of(settings::UPSTREAM_TIMEOUT), value_parser = parse_positive_duration)]
    pub upstream_timeout: Duration,
    /// Deadline for a whole request inside the component (epoch interruption plus a wall-clock timer).
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = DEFAULT_REQUEST_TIMEOUT, value_parser = parse_positive_duration)]
    pub request_timeout: Duration,
    /// Keyvalue backend: `memory` (this process only) or `redis://host:port[/db]` / `rediss://` (every
    /// replica shares cache, breaker, quota and single flight). Never logged: it may hold a password.
    #[arg(long, env = "KV_URL", default_value = "memory", value_parser = parse_kv_url, hide_env_values = true)]
    pub kv_url: KvUrl,
    /// File holding the Redis password (a mounted Secret); overrides one in KV_URL.
    #[arg(long, env = "KV_PASSWORD_FILE")]
    pub kv_password_file: Option<PathBuf>,
    /// Prefix of every Redis key, so several services can share one Redis.
    #[arg(long, env = "KV_PREFIX", default_value = "stock:")]
    pub kv_prefix: String,
    /// Deadline of one Redis operation; past it the host serves from its local store until Redis answers.
    #[arg(long, env = "KV_TIMEOUT", default_value = "250ms", value_parser = parse_positive_duration)]
    pub kv_timeout: Duration,
    /// Expiry of cache entries in Redis: longer than any build serves stale data (24 h).
    #[arg(long, env = "KV_CACHE_EXPIRY", default_value = "25h", value_parser = parse_positive_duration)]
    pub kv_cache_expiry: Duration,
    /// Most keys in the in-memory cache bucket (least recently used evicted; state is never evicted).
    #[arg(long, env = "KV_MAX_ENTRIES", default_value_t = DEFAULT_KV_MAX_ENTRIES)]
    pub kv_max_entries: usize,
    /// Linear memory cap per component instance, in MiB.
    #[arg(long, env = "MAX_MEMORY_MIB", default_value_t = DEFAULT_MAX_MEMORY_MIB, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub max_memory_mib: u32,
    /// Component instances one first path segment (a symbol) may hold at once, so one slow symbol
    /// cannot take every slot; further requests for it wait for one of its own.
    #[arg(long, env = "MAX_CONCURRENCY_PER_SYMBOL", default_value_t = DEFAULT_MAX_CONCURRENCY_PER_SYMBOL, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_concurrency_per_symbol: u32,
    /// Open connections on the traffic port; past it new connections get a 503 and are closed.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Requests one component instance serves, one after another, before it retires (1 = a fresh
    /// instance per request: strict isolation, slower). Instances that trap or time out are never reused.
    #[arg(long, env = "MAX_INSTANCE_REUSE", default_value_t = DEFAULT_MAX_INSTANCE_REUSE, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_instance_reuse: u32,
    /// How long an idle instance is kept for reuse.
    #[arg(long, env = "INSTANCE_IDLE_TIMEOUT", default_value = DEFAULT_INSTANCE_IDLE_TIMEOUT, value_parser = parse_positive_duration)]
    pub instance_idle_timeout: Duration,
    /// Component instances alive at once; further requests wait for a slot.
    #[arg(long, env = "MAX_CONCURRENCY", default_value_t = DEFAULT_MAX_CONCURRENCY, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_concurrency: u32,
    /// After SIGTERM: how long requests in flight may take to finish.
    #[arg(long, env = "DRAIN_TIMEOUT", default_value = DEFAULT_DRAIN_TIMEOUT, value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// After SIGTERM: how long to keep accepting with /ready answering 503 before draining.
    #[arg(long, env = "SHUTDOWN_DELAY", default_value = DEFAULT_SHUTDOWN_DELAY, value_parser = parse_duration)]
    pub shutdown_delay: Duration,
    /// Canary routing: requests carrying this header stay on one version (the header's value is hashed).
    #[arg(long, env = "CANARY_STICKY_HEADER", default_value = "x-session-id", value_parser = parse_header_name)]
    pub canary_sticky_header: http::HeaderName,
    /// Canary requests before the judge compares the canary with the stable build.
    #[arg(long, env = "CANARY_MIN_REQUESTS", default_value_t = 50)]
    pub canary_min_requests: u64,
    /// How many points the canary's 5xx ratio may exceed the stable build's before it is rolled back (0.05 = 5 %).
    #[arg(long, env = "CANARY_MAX_ERROR_RATIO", default_value_t = 0.05)]
    pub canary_max_error_ratio: f64,
    /// How many times the stable build's p99 the canary's p99 may reach before it is rolled back.
    #[arg(long, env = "CANARY_MAX_P99_RATIO", default_value_t = 2.0)]
    pub canary_max_p99_ratio: f64,
    /// p99 latencies below this never count against a canary (noise on fast routes).
    #[arg(long, env = "CANARY_P99_FLOOR", default_value = "25ms", value_parser = parse_duration)]
    pub canary_p99_floor: Duration,
    /// Promote a healthy canary by itself after this long (`off`: only POST /admin/promote does).
    #[arg(long, env = "CANARY_AUTO_PROMOTE", default_value = "off", value_parser = parse_optional_duration)]
    pub canary_auto_promote: AutoPromote,
    /// A changed COMPONENT file starts a canary at this percent (1-99) instead of a full swap.
    #[arg(long, env = "CANARY_PERCENT", value_parser = clap::value_parser!(u8).range(1..=99))]
    pub canary_percent: Option<u8>,
    /// Log filter: a level (`info`, `debug`, ...: this service's own events at that level, everything
    /// else at info) or a full tracing directive list (`info,wasmtime_wasi_http=trace`).
    #[arg(long, env = "LOG_LEVEL", default_value = "info", value_parser = parse_log_level)]
    pub log_level: LogLevel,
    /// Log format; defaults to text on a terminal and JSON otherwise.
    #[arg(long, env = "LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// OTLP/HTTP collector base URL (`/v1/traces` is appended); set it to export traces, unset keeps export off.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_parser = crate::otel::parse_endpoint)]
    pub otel_exporter_otlp_endpoint: Option<String>,
    /// Full OTLP/HTTP traces URL; wins over OTEL_EXPORTER_OTLP_ENDPOINT.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", value_parser = crate::otel::parse_endpoint)]
    pub otel_exporter_otlp_traces_endpoint: Option<String>,
    /// OTLP protocol: only http/protobuf is built in.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_PROTOCOL", value_parser = crate::otel::parse_protocol)]
    pub otel_exporter_otlp_protocol: Option<String>,
    /// OTLP protocol for traces; same rule.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", value_parser = crate::otel::parse_protocol)]
    pub otel_exporter_otlp_traces_protocol: Option<String>,
    /// `service.name` on exported spans (default stock-host).
    #[arg(long, env = "OTEL_SERVICE_NAME")]
    pub otel_service_name: Option<String>,
}

fn parse_header_name(text: &str) -> Result<http::HeaderName, String> {
    http::HeaderName::from_bytes(text.trim().as_bytes()).map_err(|_| format!("{text:?} is not an HTTP header name"))
}

/// CANARY_AUTO_PROMOTE: `off`, or how long a canary must stay healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoPromote(pub Option<Duration>);

fn parse_optional_duration(text: &str) -> Result<AutoPromote, String> {
    if text == "off" { Ok(AutoPromote(None)) } else { parse_positive_duration(text).map(|d| AutoPromote(Some(d))) }
}

impl ServeConfig {
    /// How canaries are routed and judged.
    pub fn canary_policy(&self) -> crate::canary::CanaryPolicy {
        crate::canary::CanaryPolicy {
            sticky_header: self.canary_sticky_header.clone(),
            min_requests: self.canary_min_requests.max(1),
            max_error_ratio_delta: self.canary_max_error_ratio,
            max_p99_ratio: self.canary_max_p99_ratio,
            p99_floor: self.canary_p99_floor,
            auto_promote_after: self.canary_auto_promote.0,
            file_canary_percent: self.canary_percent,
        }
    }

    /// Traffic listener address.
    pub fn traffic_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.port)
    }

    /// Admin listener address.
    pub fn admin_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.admin_port)
    }

    /// Trace export settings; `None` (no OTLP endpoint configured) keeps export off.
    pub fn span_export(&self) -> Option<crate::otel::ExportSettings> {
        crate::otel::ExportSettings::from_endpoints(
            self.otel_exporter_otlp_endpoint.as_deref(),
            self.otel_exporter_otlp_traces_endpoint.as_deref(),
            self.otel_service_name.as_deref(),
        )
    }

    /// Authority (`host:port`) the component may call; [`parse_upstream_url`] checked it parses.
    pub fn upstream_authority(&self) -> String {
        authority_of_url(&self.alphavantage_url).unwrap_or_default()
    }
}

fn parse_upstream_url(text: &str) -> Result<String, String> {
    authority_of_url(text)
        .map(|_| text.to_owned())
        .ok_or_else(|| "must be an http:// or https:// URL with a host, e.g. https://www.alphavantage.co/query".into())
}

/// Parses the shared duration syntax (`30`, `30s`, `1500ms`, `5m`, `1h`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    parse_ms(text).map(Duration::from_millis).ok_or_else(|| format!("{text:?} is not {DURATION_FORMS}"))
}

fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    parse_duration(text).and_then(|d| if d.is_zero() { Err("must be more than zero".into()) } else { Ok(d) })
}

/// Renders a duration in the shared syntax, for `wasi:config`.
pub fn config_duration(duration: Duration) -> String {
    render_ms(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<ServeConfig, clap::Error> {
        let all: Vec<&str> = ["stock-host", "serve"].iter().chain(args).copied().collect();
        Cli::try_parse_from(all).map(|cli| match cli.command {
            Command::Serve(config) => *config,
        })
    }

    #[test]
    fn durations_are_positive_where_zero_makes_no_sense() {
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_positive_duration("0").is_err());
        assert_eq!(config_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn defaults_come_from_the_shared_settings() {
        let config = parse(&[]).expect("defaults parse");
        assert_eq!(config.alphavantage_url, default_of(settings::ALPHAVANTAGE_URL));
        assert_eq!((config.symbol.as_str(), config.ndays.as_str()), (default_of(settings::SYMBOL), default_of(settings::NDAYS)));
        assert_eq!(config.cache_ttl, Duration::from_millis(parse_ms(default_of(settings::CACHE_TTL)).expect("valid default")));
        assert_eq!(config.upstream_authority(), "www.alphavantage.co:443");
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (flag, value, variable) in [
            ("--alphavantage-url", "ftp://x", "ALPHAVANTAGE_URL"),
            ("--kv-url", "postgres://x", "KV_URL"),
            ("--cache-ttl", "5 minutes", "CACHE_TTL"),
            ("--circuit-breaker-timeout", "0", "CIRCUIT_BREAKER_TIMEOUT"),
            ("--otel-exporter-otlp-endpoint", "https://collector:4318", "OTEL_EXPORTER_OTLP_ENDPOINT"),
            ("--otel-exporter-otlp-protocol", "grpc", "OTEL_EXPORTER_OTLP_PROTOCOL"),
            ("--canary-percent", "100", "CANARY_PERCENT"),
            ("--canary-percent", "0", "CANARY_PERCENT"),
        ] {
            let error = parse(&[flag, value]).expect_err("invalid");
            assert!(error.to_string().contains(variable), "{flag}: {error}");
        }
        let config = parse(&["--circuit-breaker-timeout", "30"]).expect("30 is accepted");
        assert_eq!(config.circuit_breaker_timeout, Duration::from_secs(30));
    }
}
