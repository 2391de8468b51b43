//! Settings read from `wasi:config` keys, each with a default when missing.

use super::model::{Symbol, parse_days};

/// Key: full query endpoint of Alpha Vantage.
pub const KEY_ALPHAVANTAGE_URL: &str = "alphavantage_url";
/// Key: the Alpha Vantage API key (a secret: never logged).
pub const KEY_APIKEY: &str = "apikey";
/// Key: symbol for `GET /`.
pub const KEY_SYMBOL: &str = "symbol";
/// Key: days for `GET /` and `GET /{symbol}`.
pub const KEY_NDAYS: &str = "ndays";
/// Key: seconds a fetched series is served without asking upstream.
pub const KEY_CACHE_TTL: &str = "cache_ttl";
/// Key: seconds to wait for the upstream.
pub const KEY_UPSTREAM_TIMEOUT: &str = "upstream_timeout";
/// Key: consecutive failures that open the breaker.
pub const KEY_BREAKER_THRESHOLD: &str = "breaker_threshold";
/// Key: seconds the breaker stays open before one probe.
pub const KEY_BREAKER_TIMEOUT: &str = "breaker_timeout";

/// The real Alpha Vantage endpoint.
pub const DEFAULT_ALPHAVANTAGE_URL: &str = "https://www.alphavantage.co/query";
/// The seed's default symbol.
pub const DEFAULT_SYMBOL: &str = "MSFT";
/// The seed's default window.
pub const DEFAULT_NDAYS: u32 = 7;
/// Five minutes: daily closes change once a day, and the free tier allows 25 calls a day.
pub const DEFAULT_CACHE_TTL_SECS: u64 = 300;
/// Ten seconds: Alpha Vantage usually answers in well under a second.
pub const DEFAULT_UPSTREAM_TIMEOUT_SECS: u64 = 10;
/// Five consecutive failures open the breaker.
pub const DEFAULT_BREAKER_THRESHOLD: u32 = 5;
/// Thirty seconds open before a probe.
pub const DEFAULT_BREAKER_TIMEOUT_SECS: u64 = 30;

/// Everything the component needs to know about its deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Query endpoint of the upstream.
    pub upstream_url: String,
    /// Upstream API key; empty when none is configured.
    pub apikey: String,
    /// Symbol for `GET /`.
    pub default_symbol: Symbol,
    /// Days for routes without a day count.
    pub default_days: u32,
    /// Freshness window of a cached series.
    pub cache_ttl_ms: u64,
    /// Deadline for one upstream call.
    pub upstream_timeout_ms: u64,
    /// Consecutive failures that open the breaker.
    pub breaker_threshold: u32,
    /// How long the breaker stays open.
    pub breaker_timeout_ms: u64,
}

/// A configuration value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration key {key} has an invalid value: {reason}")]
pub struct ConfigError {
    /// The offending key.
    pub key: &'static str,
    /// What is wrong with it (never the value of the API key).
    pub reason: String,
}

impl Settings {
    /// Reads settings through `lookup` (missing or blank keys take their defaults).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |key: &str| lookup(key).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let err = |key: &'static str, reason: String| ConfigError { key, reason };

        let upstream_url = get(KEY_ALPHAVANTAGE_URL).unwrap_or_else(|| DEFAULT_ALPHAVANTAGE_URL.into());
        split_url(&upstream_url).map_err(|reason| err(KEY_ALPHAVANTAGE_URL, reason))?;
        let default_symbol = match get(KEY_SYMBOL) {
            None => Symbol::parse(DEFAULT_SYMBOL).ok_or_else(|| err(KEY_SYMBOL, "default symbol is invalid".into()))?,
            Some(s) => Symbol::parse(&s).ok_or_else(|| err(KEY_SYMBOL, format!("{s:?} is not 1-10 letters, digits, '.' or '-'")))?,
        };
        let default_days = match get(KEY_NDAYS) {
            None => DEFAULT_NDAYS,
            Some(s) => parse_days(&s).ok_or_else(|| err(KEY_NDAYS, format!("{s:?} is not a whole number from 1 to 100")))?,
        };
        let secs = |key: &'static str, default: u64, min: u64| -> Result<u64, ConfigError> {
            match get(key) {
                None => Ok(default * 1000),
                Some(s) => parse_duration_ms(&s)
                    .filter(|ms| *ms >= min)
                    .ok_or_else(|| err(key, format!("{s:?} is not a duration such as 30, 30s, 5m or 1500ms (minimum {min} ms)"))),
            }
        };
        let breaker_threshold = match get(KEY_BREAKER_THRESHOLD) {
            None => DEFAULT_BREAKER_THRESHOLD,
            Some(s) => s.parse().ok().filter(|n| *n >= 1).ok_or_else(|| err(KEY_BREAKER_THRESHOLD, format!("{s:?} is not a whole number of at least 1")))?,
        };
        Ok(Self {
            upstream_url,
            apikey: lookup(KEY_APIKEY).map(|k| k.trim().to_owned()).unwrap_or_default(),
            default_symbol,
            default_days,
            cache_ttl_ms: secs(KEY_CACHE_TTL, DEFAULT_CACHE_TTL_SECS, 0)?,
            upstream_timeout_ms: secs(KEY_UPSTREAM_TIMEOUT, DEFAULT_UPSTREAM_TIMEOUT_SECS, 1)?,
            breaker_threshold,
            breaker_timeout_ms: secs(KEY_BREAKER_TIMEOUT, DEFAULT_BREAKER_TIMEOUT_SECS, 1)?,
        })
    }
}

/// Parses `30` (seconds), `30s`, `5m`, `1h` or `1500ms` into milliseconds.
pub fn parse_duration_ms(text: &str) -> Option<u64> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let factor = match unit {
        "" | "s" => 1000,
        "ms" => 1,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    number.checked_mul(factor)
}

/// URL scheme the upstream is reached with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP (the local simulator).
    Http,
    /// HTTPS (the real Alpha Vantage).
    Https,
}

/// Splits `scheme://authority/path?query` into its parts for `wasi:http`.
pub fn split_url(url: &str) -> Result<(Scheme, &str, String), String> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (Scheme::Https, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (Scheme::Http, rest)
    } else {
        return Err("must start with http:// or https://".into());
    };
    let cut = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(cut);
    if authority.is_empty() || authority.contains('@') || authority.contains(char::is_whitespace) {
        return Err("needs a host name and no user info".into());
    }
    let path = if path.starts_with('/') { path.to_owned() } else { format!("/{path}") };
    Ok((scheme, authority, path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn missing_keys_take_defaults() {
        let s = settings(&[]).expect("defaults are valid");
        assert_eq!(s.upstream_url, DEFAULT_ALPHAVANTAGE_URL);
        assert_eq!(s.default_symbol.as_str(), "MSFT");
        assert_eq!((s.default_days, s.cache_ttl_ms, s.upstream_timeout_ms), (7, 300_000, 10_000));
        assert_eq!((s.breaker_threshold, s.breaker_timeout_ms), (5, 30_000));
        assert_eq!(s.apikey, "");
    }

    #[test]
    fn values_are_read_and_durations_accept_units() {
        let s = settings(&[
            ("symbol", "aapl"),
            ("ndays", "30"),
            ("cache_ttl", "5m"),
            ("upstream_timeout", "2s"),
            ("breaker_threshold", "3"),
            ("breaker_timeout", "45"),
            ("apikey", " k3y "),
            ("alphavantage_url", "http://127.0.0.1:8081/query"),
        ])
        .expect("valid");
        assert_eq!(s.default_symbol.as_str(), "AAPL");
        assert_eq!((s.default_days, s.cache_ttl_ms, s.upstream_timeout_ms), (30, 300_000, 2_000));
        assert_eq!((s.breaker_threshold, s.breaker_timeout_ms, s.apikey.as_str()), (3, 45_000, "k3y"));
    }

    #[test]
    fn bad_values_name_their_key() {
        for (key, value) in [
            ("symbol", "not a symbol"),
            ("ndays", "0"),
            ("ndays", "101"),
            ("cache_ttl", "-1"),
            ("cache_ttl", "5 minutes"),
            ("upstream_timeout", "0"),
            ("breaker_threshold", "0"),
            ("breaker_threshold", "x"),
            ("breaker_timeout", "30x"),
            ("alphavantage_url", "ftp://example.com"),
            ("alphavantage_url", "http://"),
        ] {
            let error = settings(&[(key, value)]).expect_err("invalid");
            assert_eq!(error.key, key, "value {value:?}");
        }
    }

    #[test]
    fn durations() {
        for (input, want) in [
            ("30", Some(30_000)),
            ("30s", Some(30_000)),
            ("1500ms", Some(1_500)),
            ("5m", Some(300_000)),
            ("1h", Some(3_600_000)),
            ("0", Some(0)),
            ("", None),
            ("s", None),
            ("1.5s", None),
            ("10d", None),
            ("99999999999999999999", None),
        ] {
            assert_eq!(parse_duration_ms(input), want, "input {input:?}");
        }
    }

    #[test]
    fn urls_split_into_scheme_authority_and_path() {
        for (input, want) in [
            ("https://www.alphavantage.co/query", (Scheme::Https, "www.alphavantage.co", "/query")),
            ("http://127.0.0.1:8081/query?x=1", (Scheme::Http, "127.0.0.1:8081", "/query?x=1")),
            ("http://h", (Scheme::Http, "h", "/")),
            ("http://h?x", (Scheme::Http, "h", "/?x")),
        ] {
            assert_eq!(split_url(input), Ok((want.0, want.1, want.2.to_owned())), "{input}");
        }
        for input in ["www.alphavantage.co/query", "http:///q", "http://user@h/q", "ftp://h/"] {
            assert!(split_url(input).is_err(), "{input}");
        }
    }
}
