//! Settings, as plain data: one clap option group per capability (`#[command(flatten)]`), every flag
//! also an environment variable, defaults as named constants, checked before anything listens. The
//! seed's names (SYMBOL, NDAYS, APIKEY, PORT, CACHE_TTL, CIRCUIT_BREAKER_TIMEOUT) are kept unprefixed.
//!
//! This room is the bottom of the house: it imports nothing else of the host. The settings the
//! component build owns (its TTLs, breaker, quota) are passed through as the operator wrote them;
//! whether a value is usable is the running build's call (`stock:service/status.check-config`).

pub mod canary;
pub mod component;
pub mod duration;
pub mod kv;
pub mod listen;
pub mod oci_reference;
pub mod runtime;
pub mod secret_file;
pub mod service;
pub mod telemetry;
pub mod upstream;

use clap::{Args, Parser, Subcommand};

pub use duration::{config_duration, parse_duration, parse_positive_duration};

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
    /// Publish a component to an OCI registry (the wasm artifact layout) and print its digest.
    Push(PushConfig),
}

/// `stock-host push FILE oci://REGISTRY/REPO:TAG`.
#[derive(Debug, Clone, Args)]
pub struct PushConfig {
    /// The component to publish (.wasm).
    pub file: std::path::PathBuf,
    /// Where: oci://REGISTRY/REPO:TAG.
    #[arg(value_parser = oci_reference::OciReference::parse)]
    pub reference: oci_reference::OciReference,
    /// Docker config.json with credentials for the registry (as for serve).
    #[arg(long, env = "REGISTRY_AUTH_FILE")]
    pub registry_auth_file: Option<std::path::PathBuf>,
    /// Registries (host:port, comma-separated) reached over plain HTTP.
    #[arg(long, env = "COMPONENT_INSECURE_REGISTRIES", value_delimiter = ',')]
    pub component_insecure_registries: Vec<String>,
}

impl PushConfig {
    /// Whether `registry` is reached over plain HTTP.
    pub fn is_insecure(&self, registry: &str) -> bool {
        oci_reference::is_listed(&self.component_insecure_registries, registry)
    }
}

/// Everything `stock-host serve` accepts, by capability.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Ports, connections and shutdown.
    #[command(flatten)]
    pub listen: listen::ListenOptions,
    /// Where the component build comes from.
    #[command(flatten)]
    pub component: component::ComponentOptions,
    /// What the component build is told (`wasi:config`).
    #[command(flatten)]
    pub service: service::ServiceOptions,
    /// Engine, instances, deadlines and memory.
    #[command(flatten)]
    pub runtime: runtime::RuntimeOptions,
    /// The `wasi:keyvalue` backend.
    #[command(flatten)]
    pub kv: kv::KvOptions,
    /// Canary rollouts.
    #[command(flatten)]
    pub canary: canary::CanaryOptions,
    /// Logs and traces.
    #[command(flatten)]
    pub telemetry: telemetry::TelemetryOptions,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Duration;
    use stock_shared::settings::{self, default_of};

    /// `stock-host serve ARGS` parsed, for tests of any room.
    pub(crate) fn parse(args: &[&str]) -> Result<ServeConfig, clap::Error> {
        let all: Vec<&str> = ["stock-host", "serve"].iter().chain(args).copied().collect();
        Cli::try_parse_from(all).map(|cli| match cli.command {
            Command::Serve(config) => *config,
            Command::Push(_) => unreachable!("serve was asked for"),
        })
    }

    #[test]
    fn defaults_come_from_the_shared_settings() {
        let config = parse(&[]).expect("defaults parse");
        assert_eq!(config.service.alphavantage_url, default_of(settings::ALPHAVANTAGE_URL));
        assert_eq!(
            (config.service.symbol.as_str(), config.service.ndays.as_str()),
            (default_of(settings::SYMBOL), default_of(settings::NDAYS))
        );
        assert_eq!(config.service.cache_ttl, default_of(settings::CACHE_TTL), "the build's settings pass through as written");
        assert_eq!(config.service.upstream_authority(), "www.alphavantage.co:443");
        assert_eq!(config.runtime.request_timeout(config.service.upstream_timeout), Duration::from_secs(15));
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (flag, value, variable) in [
            ("--alphavantage-url", "ftp://x", "ALPHAVANTAGE_URL"),
            ("--kv-url", "postgres://x", "KV_URL"),
            ("--upstream-timeout", "0", "UPSTREAM_TIMEOUT"),
            ("--otel-exporter-otlp-endpoint", "https://collector:4318", "OTEL_EXPORTER_OTLP_ENDPOINT"),
            ("--otel-exporter-otlp-protocol", "grpc", "OTEL_EXPORTER_OTLP_PROTOCOL"),
            ("--canary-percent", "100", "CANARY_PERCENT"),
            ("--canary-percent", "0", "CANARY_PERCENT"),
        ] {
            let error = parse(&[flag, value]).expect_err("invalid");
            assert!(error.to_string().contains(variable), "{flag}: {error}");
        }
    }
}
