//! Settings read from `wasi:config` keys (named in `stock_shared::settings`, with their defaults), and
//! this build's rules for them. Every problem is reported, so `status.check-config` can list them all.

use stock_shared::duration::{DURATION_FORMS, parse_ms};
use stock_shared::settings::{self, Setting, default_of};

use super::model::{MAX_DAYS, Symbol, parse_days};

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
    /// Upstream calls allowed per UTC day; 0 means unlimited.
    pub daily_quota: u64,
    /// How long an unknown symbol is remembered.
    pub negative_cache_ttl_ms: u64,
    /// The only symbols served; empty: any.
    pub allowed_symbols: Vec<Symbol>,
    /// Percent of the daily quota symbols never served before may spend.
    pub new_symbol_quota_percent: u8,
}

impl Settings {
    /// Whether `symbol` may be served (ALLOWED_SYMBOLS empty, or it is listed).
    pub fn allows(&self, symbol: &Symbol) -> bool {
        self.allowed_symbols.is_empty() || self.allowed_symbols.contains(symbol)
    }

    /// Upstream calls per UTC day for symbols never served before; `None`: no limit of its own.
    pub fn new_symbol_quota(&self) -> Option<u64> {
        (self.daily_quota > 0 && self.new_symbol_quota_percent < 100)
            .then(|| (self.daily_quota * u64::from(self.new_symbol_quota_percent)).div_ceil(100))
    }
}

/// A configuration value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} (wasi:config key {key}): {reason}", settings::by_key(key).map_or(*key, |s| s.env))]
pub struct ConfigError {
    /// The offending key.
    pub key: &'static str,
    /// What is wrong with it (never the value of the API key).
    pub reason: String,
}

impl Settings {
    /// Reads settings through `lookup` (missing or blank keys take their defaults); the first problem wins.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::read(lookup).map_err(|problems| {
            let unexplained = || ConfigError { key: "wasi:config", reason: "unusable configuration".into() };
            problems.into_iter().next().unwrap_or_else(unexplained)
        })
    }

    /// Every problem in the configuration `lookup` sees (empty when it is usable).
    pub fn problems(lookup: impl Fn(&str) -> Option<String>) -> Vec<ConfigError> {
        Self::read(lookup).err().unwrap_or_default()
    }

    fn read(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Vec<ConfigError>> {
        let mut reader = Reader { lookup, problems: Vec::new() };
        let duration = |min_ms: u64| {
            move |s: &str| {
                parse_ms(s).filter(|ms| *ms >= min_ms).ok_or_else(|| format!("{s:?} is not {DURATION_FORMS} (at least {min_ms} ms)"))
            }
        };
        let upstream_url = reader.take(settings::ALPHAVANTAGE_URL, |s| split_url(s).map(|_| s.to_owned()));
        let default_symbol =
            reader.take(settings::SYMBOL, |s| Symbol::parse(s).ok_or_else(|| format!("{s:?} is not 1-10 letters, digits, '.' or '-'")));
        let default_days =
            reader.take(settings::NDAYS, |s| parse_days(s).ok_or_else(|| format!("{s:?} is not a whole number from 1 to {MAX_DAYS}")));
        let cache_ttl_ms = reader.take(settings::CACHE_TTL, duration(0));
        let upstream_timeout_ms = reader.take(settings::UPSTREAM_TIMEOUT, duration(1));
        let breaker_threshold = reader.take(settings::BREAKER_THRESHOLD, |s| {
            s.parse::<u32>().ok().filter(|n| *n >= 1).ok_or_else(|| format!("{s:?} is not a whole number of at least 1"))
        });
        let breaker_timeout_ms = reader.take(settings::BREAKER_TIMEOUT, duration(1));
        let daily_quota = reader
            .take(settings::UPSTREAM_DAILY_QUOTA, |s| s.parse::<u64>().map_err(|_| format!("{s:?} is not a whole number (0 = unlimited)")));
        let negative_cache_ttl_ms = reader.take(settings::NEGATIVE_CACHE_TTL, duration(0));
        let allowed_symbols = reader.take(settings::ALLOWED_SYMBOLS, parse_symbol_list);
        let new_symbol_quota_percent = reader.take(settings::NEW_SYMBOL_QUOTA_PERCENT, |s| {
            s.trim_end_matches('%')
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= 100)
                .ok_or_else(|| format!("{s:?} is not a whole percent from 0 to 100"))
        });
        if let (Some(allowed), Some(symbol)) = (&allowed_symbols, &default_symbol)
            && !allowed.is_empty()
            && !allowed.contains(symbol)
        {
            let reason = format!("SYMBOL {} (served at GET /) is not in the list", symbol.as_str());
            reader.problems.push(ConfigError { key: settings::ALLOWED_SYMBOLS.key, reason });
        }
        let apikey = (reader.lookup)(settings::APIKEY.key).map(|k| k.trim().to_owned()).unwrap_or_default();
        let parsed = (upstream_url, default_symbol, default_days, cache_ttl_ms, upstream_timeout_ms);
        let limits = (breaker_threshold, breaker_timeout_ms, daily_quota, negative_cache_ttl_ms);
        let symbols = (allowed_symbols, new_symbol_quota_percent);
        if !reader.problems.is_empty() {
            return Err(reader.problems);
        }
        match (parsed, limits, symbols) {
            (
                (Some(upstream_url), Some(default_symbol), Some(default_days), Some(cache_ttl_ms), Some(upstream_timeout_ms)),
                (Some(breaker_threshold), Some(breaker_timeout_ms), Some(daily_quota), Some(negative_cache_ttl_ms)),
                (Some(allowed_symbols), Some(new_symbol_quota_percent)),
            ) => Ok(Self {
                upstream_url,
                apikey,
                default_symbol,
                default_days,
                cache_ttl_ms,
                upstream_timeout_ms,
                breaker_threshold,
                breaker_timeout_ms,
                daily_quota,
                negative_cache_ttl_ms,
                allowed_symbols,
                new_symbol_quota_percent,
            }),
            _ => Err(reader.problems),
        }
    }
}

/// ALLOWED_SYMBOLS: symbols separated by commas (blanks ignored), each as a request's symbol is read.
fn parse_symbol_list(text: &str) -> Result<Vec<Symbol>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| Symbol::parse(s).ok_or_else(|| format!("{s:?} is not 1-10 letters, digits, '.' or '-'")))
        .collect()
}

/// Reads keys, parsing a missing one's default exactly like a given value, and collects the problems.
struct Reader<F> {
    lookup: F,
    problems: Vec<ConfigError>,
}

impl<F: Fn(&str) -> Option<String>> Reader<F> {
    fn take<T>(&mut self, setting: Setting, parse: impl Fn(&str) -> Result<T, String>) -> Option<T> {
        let given = (self.lookup)(setting.key).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let text = given.unwrap_or_else(|| default_of(setting).to_owned());
        parse(&text).map_err(|reason| self.problems.push(ConfigError { key: setting.key, reason })).ok()
    }
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
        assert_eq!(s.upstream_url, "https://www.alphavantage.co/query");
        assert_eq!(s.default_symbol.as_str(), "MSFT");
        assert_eq!((s.default_days, s.cache_ttl_ms, s.upstream_timeout_ms), (7, 300_000, 10_000));
        assert_eq!((s.breaker_threshold, s.breaker_timeout_ms), (5, 30_000));
        assert_eq!((s.daily_quota, s.negative_cache_ttl_ms), (25, 600_000));
        assert_eq!(s.apikey, "");
    }

    #[test]
    fn the_allowed_list_and_the_new_symbols_share_are_read_and_checked() {
        let s = settings(&[("allowed_symbols", " msft, brk.b ,,IBM"), ("new_symbol_quota_percent", "10%")]).expect("valid");
        let names: Vec<&str> = s.allowed_symbols.iter().map(Symbol::as_str).collect();
        assert_eq!(names, ["MSFT", "BRK.B", "IBM"]);
        assert!(s.allows(&Symbol::parse("ibm").expect("valid")) && !s.allows(&Symbol::parse("WP").expect("valid")));
        assert_eq!(s.new_symbol_quota(), Some(3), "10 % of 25, rounded up");
        let any = settings(&[]).expect("defaults");
        assert!(any.allowed_symbols.is_empty() && any.allows(&Symbol::parse("ANY").expect("valid")));
        assert_eq!(settings(&[("upstream_daily_quota", "0")]).expect("valid").new_symbol_quota(), None, "unlimited stays unlimited");
        assert_eq!(settings(&[("new_symbol_quota_percent", "100")]).expect("valid").new_symbol_quota(), None);
        for (pairs, key, says) in [
            (&[("allowed_symbols", "IBM")][..], "allowed_symbols", "SYMBOL MSFT"),
            (&[("allowed_symbols", "MSFT,$$$")][..], "allowed_symbols", "\"$$$\""),
            (&[("new_symbol_quota_percent", "120")][..], "new_symbol_quota_percent", "0 to 100"),
        ] {
            let error = settings(pairs).expect_err("invalid");
            assert_eq!(error.key, key);
            assert!(error.reason.contains(says), "{error}");
        }
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
    fn every_problem_is_reported_not_only_the_first() {
        let map: HashMap<String, String> =
            [("ndays", "0"), ("symbol", "$"), ("cache_ttl", "1d")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let keys: Vec<&str> = Settings::problems(|k| map.get(k).cloned()).iter().map(|p| p.key).collect();
        assert_eq!(keys, ["symbol", "ndays", "cache_ttl"]);
        assert!(Settings::problems(|_| None).is_empty(), "the defaults are valid");
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
