//! What the component build is told through `wasi:config`: the API key and the service's settings.
//! The host parses only what it uses itself (the upstream URL for its egress allowlist, the upstream
//! timeout for its egress cap); the rest passes through as written and the build judges it.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use stock_shared::settings::{self, default_of};

use super::duration::parse_positive_duration;
use super::upstream::{authority_of_url, parse_upstream_url};

/// The build's settings and the API key.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Service (passed to the component)")]
pub struct ServiceOptions {
    /// Alpha Vantage API key. Prefer APIKEY_FILE in clusters; never logged.
    #[arg(long, env = settings::APIKEY.env, hide_env_values = true, conflicts_with = "apikey_file")]
    pub apikey: Option<String>,
    /// File holding the API key (e.g. a mounted Kubernetes Secret); re-read every second, a changed key
    /// applies to new requests without a restart.
    #[arg(long, env = "APIKEY_FILE")]
    pub apikey_file: Option<PathBuf>,
    /// Alpha Vantage query endpoint; only its authority may be called.
    #[arg(long, env = settings::ALPHAVANTAGE_URL.env, default_value = default_of(settings::ALPHAVANTAGE_URL), value_parser = parse_upstream_url)]
    pub alphavantage_url: String,
    /// Symbol for `GET /` (the component checks it at startup).
    #[arg(long, env = settings::SYMBOL.env, default_value = default_of(settings::SYMBOL))]
    pub symbol: String,
    /// Days for `GET /` and `GET /{symbol}` (the component checks it at startup).
    #[arg(long, env = settings::NDAYS.env, default_value = default_of(settings::NDAYS))]
    pub ndays: String,
    /// How long a fetched series is served from cache (`300`, `300s`, `5m`; the component checks it).
    #[arg(long, env = settings::CACHE_TTL.env, default_value = default_of(settings::CACHE_TTL))]
    pub cache_ttl: String,
    /// Consecutive upstream failures that open the circuit breaker (the component checks it).
    #[arg(long, env = settings::BREAKER_THRESHOLD.env, default_value = default_of(settings::BREAKER_THRESHOLD))]
    pub circuit_breaker_threshold: String,
    /// How long the breaker stays open before one probe (`30` or `30s`; the component checks it).
    #[arg(long, env = settings::BREAKER_TIMEOUT.env, default_value = default_of(settings::BREAKER_TIMEOUT))]
    pub circuit_breaker_timeout: String,
    /// Upstream calls allowed per UTC day, 0 = unlimited (the component checks it).
    #[arg(long, env = settings::UPSTREAM_DAILY_QUOTA.env, default_value = default_of(settings::UPSTREAM_DAILY_QUOTA))]
    pub upstream_daily_quota: String,
    /// How long "unknown symbol" answers are remembered, 0 = not at all (the component checks it).
    #[arg(long, env = settings::NEGATIVE_CACHE_TTL.env, default_value = default_of(settings::NEGATIVE_CACHE_TTL))]
    pub negative_cache_ttl: String,
    /// The only symbols served, comma-separated (`MSFT,IBM`); any other answers 404 with no upstream
    /// call. Empty: any symbol (the component checks it).
    #[arg(long, env = settings::ALLOWED_SYMBOLS.env, default_value = default_of(settings::ALLOWED_SYMBOLS))]
    pub allowed_symbols: String,
    /// Percent of UPSTREAM_DAILY_QUOTA that symbols never served before may spend; the rest is kept
    /// for symbols that have answered (the component checks it).
    #[arg(long, env = settings::NEW_SYMBOL_QUOTA_PERCENT.env, default_value = default_of(settings::NEW_SYMBOL_QUOTA_PERCENT))]
    pub new_symbol_quota_percent: String,
    /// Deadline for one upstream call (the host caps every outgoing request with it too).
    #[arg(long, env = settings::UPSTREAM_TIMEOUT.env, default_value = default_of(settings::UPSTREAM_TIMEOUT), value_parser = parse_positive_duration)]
    pub upstream_timeout: Duration,
}

impl ServiceOptions {
    /// Authority (`host:port`) the component may call; [`parse_upstream_url`] checked it parses.
    pub fn upstream_authority(&self) -> String {
        authority_of_url(&self.alphavantage_url).unwrap_or_default()
    }

    /// The `wasi:config` pairs (key, value) of every setting but the API key, as the build reads them.
    pub fn variables(&self) -> Vec<(String, String)> {
        [
            (settings::ALPHAVANTAGE_URL, self.alphavantage_url.clone()),
            (settings::SYMBOL, self.symbol.clone()),
            (settings::NDAYS, self.ndays.clone()),
            (settings::CACHE_TTL, self.cache_ttl.clone()),
            (settings::UPSTREAM_TIMEOUT, super::duration::config_duration(self.upstream_timeout)),
            (settings::BREAKER_THRESHOLD, self.circuit_breaker_threshold.clone()),
            (settings::BREAKER_TIMEOUT, self.circuit_breaker_timeout.clone()),
            (settings::UPSTREAM_DAILY_QUOTA, self.upstream_daily_quota.clone()),
            (settings::NEGATIVE_CACHE_TTL, self.negative_cache_ttl.clone()),
            (settings::ALLOWED_SYMBOLS, self.allowed_symbols.clone()),
            (settings::NEW_SYMBOL_QUOTA_PERCENT, self.new_symbol_quota_percent.clone()),
        ]
        .into_iter()
        .map(|(setting, value)| (setting.key.to_owned(), value))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::parse;
    use stock_shared::settings;

    #[test]
    fn every_build_setting_but_the_key_is_passed_on() {
        let config = parse(&["--cache-ttl", "5 minutes"]).expect("the build judges CACHE_TTL, not the host");
        let variables = config.service.variables();
        for setting in settings::ALL.iter().filter(|s| s.key != settings::APIKEY.key) {
            assert!(variables.iter().any(|(k, _)| k == setting.key), "{} is not passed to the component", setting.key);
        }
        assert!(variables.contains(&(settings::CACHE_TTL.key.to_owned(), "5 minutes".to_owned())));
    }
}
