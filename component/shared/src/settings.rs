//! The settings a component build reads from `wasi:config`: each key, the host's environment variable
//! that feeds it, and its default. Defaults are written in the same syntax operators use, and a build
//! reads a missing key by parsing its default exactly as it parses a given value.

/// One `wasi:config` key and where its value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// The `wasi:config` key (`-S config-var=KEY=...` under `wasmtime serve`).
    pub key: &'static str,
    /// The `stock-host` environment variable (and, lower-cased with dashes, its flag).
    pub env: &'static str,
    /// Value when neither is set; `None` for the API key.
    pub default: Option<&'static str>,
}

/// Alpha Vantage query endpoint; the only authority the component may call.
pub const ALPHAVANTAGE_URL: Setting =
    Setting { key: "alphavantage_url", env: "ALPHAVANTAGE_URL", default: Some("https://www.alphavantage.co/query") };
/// The Alpha Vantage API key (a secret: never logged, never answered). No default.
pub const APIKEY: Setting = Setting { key: "apikey", env: "APIKEY", default: None };
/// Symbol for `GET /`: the seed's default.
pub const SYMBOL: Setting = Setting { key: "symbol", env: "SYMBOL", default: Some("MSFT") };
/// Trading days for `GET /` and `GET /{symbol}`: the seed's default week and a half.
pub const NDAYS: Setting = Setting { key: "ndays", env: "NDAYS", default: Some("7") };
/// How long a fetched series is fresh: daily closes change once a day and the free tier allows
/// 25 calls a day, so five minutes keeps a busy service far below it.
pub const CACHE_TTL: Setting = Setting { key: "cache_ttl", env: "CACHE_TTL", default: Some("300s") };
/// Deadline of one upstream call: Alpha Vantage usually answers in well under a second.
pub const UPSTREAM_TIMEOUT: Setting = Setting { key: "upstream_timeout", env: "UPSTREAM_TIMEOUT", default: Some("10s") };
/// Consecutive upstream failures that open the breaker.
pub const BREAKER_THRESHOLD: Setting = Setting { key: "breaker_threshold", env: "CIRCUIT_BREAKER_THRESHOLD", default: Some("5") };
/// How long the breaker stays open before one probe.
pub const BREAKER_TIMEOUT: Setting = Setting { key: "breaker_timeout", env: "CIRCUIT_BREAKER_TIMEOUT", default: Some("30s") };

/// Upstream calls allowed per UTC day (0 = unlimited): the free tier's 25.
pub const UPSTREAM_DAILY_QUOTA: Setting = Setting { key: "upstream_daily_quota", env: "UPSTREAM_DAILY_QUOTA", default: Some("25") };
/// How long "the upstream does not know this symbol" is remembered, so typos do not spend the quota.
pub const NEGATIVE_CACHE_TTL: Setting = Setting { key: "negative_cache_ttl", env: "NEGATIVE_CACHE_TTL", default: Some("10m") };

/// The only symbols served, comma-separated; any other answers 404 with no upstream call. Empty: any symbol.
pub const ALLOWED_SYMBOLS: Setting = Setting { key: "allowed_symbols", env: "ALLOWED_SYMBOLS", default: Some("") };
/// The share (percent) of the daily quota that symbols never served before may spend; the rest is kept for
/// symbols that have answered, so a scanner's made-up words cannot spend the day (100: no share kept).
pub const NEW_SYMBOL_QUOTA_PERCENT: Setting =
    Setting { key: "new_symbol_quota_percent", env: "NEW_SYMBOL_QUOTA_PERCENT", default: Some("50") };

/// Every setting, in the order they are documented.
pub const ALL: [Setting; 12] = [
    ALPHAVANTAGE_URL,
    APIKEY,
    SYMBOL,
    NDAYS,
    CACHE_TTL,
    UPSTREAM_TIMEOUT,
    BREAKER_THRESHOLD,
    BREAKER_TIMEOUT,
    UPSTREAM_DAILY_QUOTA,
    NEGATIVE_CACHE_TTL,
    ALLOWED_SYMBOLS,
    NEW_SYMBOL_QUOTA_PERCENT,
];

/// The setting behind `key`, if it is one of ours.
pub fn by_key(key: &str) -> Option<Setting> {
    ALL.into_iter().find(|s| s.key == key)
}

/// The default of a setting that has one (every setting but [`APIKEY`]).
pub const fn default_of(setting: Setting) -> &'static str {
    match setting.default {
        Some(value) => value,
        None => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_variables_are_unique_and_found() {
        for (i, a) in ALL.iter().enumerate() {
            assert_eq!(by_key(a.key), Some(*a));
            for b in &ALL[i + 1..] {
                assert_ne!(a.key, b.key);
                assert_ne!(a.env, b.env);
            }
        }
        assert_eq!(by_key("nope"), None);
    }

    #[test]
    fn duration_defaults_are_in_the_duration_syntax() {
        for setting in [CACHE_TTL, UPSTREAM_TIMEOUT, BREAKER_TIMEOUT, NEGATIVE_CACHE_TTL] {
            assert!(crate::duration::parse_ms(default_of(setting)).is_some(), "{setting:?}");
        }
        assert_eq!(default_of(APIKEY), "");
    }
}
