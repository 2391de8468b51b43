//! The request flow: cache, single flight, breaker and upstream, over an [`Env`].

use stock_shared::cache_status;

use super::breaker::{BreakerState, STATE_NAMES, secs_until};
use super::cache::{self, Freshness, freshness};
use super::config::{ConfigError, Settings};
use super::decimal::Decimal;
use super::env::{Env, Key};
use super::error::Error;
use super::flight::single_flight;
use super::layout;
use super::model::{Close, MAX_DAYS, Series, Symbol};
use super::render::prices_json;
use super::upstream::{self, key_fingerprint, stored_ms};

/// Where an answer came from, reported as `X-Cache`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Fresh from the shared cache.
    Hit,
    /// Fetched from upstream for this request (or for a concurrent one it waited on).
    Miss,
    /// Past its TTL, served because the upstream failed.
    Stale,
}

impl CacheStatus {
    /// Header value (`stock_shared::cache_status`, which the host counts).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => cache_status::HIT,
            Self::Miss => cache_status::MISS,
            Self::Stale => cache_status::STALE,
        }
    }
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prices {
    /// The symbol asked for.
    pub symbol: Symbol,
    /// The window, oldest first.
    pub closes: Vec<Close>,
    /// Exact mean rounded half-to-even to 4 places.
    pub average: Decimal,
    /// Where the series came from.
    pub cache: CacheStatus,
    /// Seconds since the series was fetched upstream.
    pub age_secs: u64,
    /// When the series was fetched upstream (Unix milliseconds).
    pub fetched_at_ms: u64,
}

/// Resolves a typed request (the `prices` export): defaults from `settings`, the HTTP routes' checks.
pub fn typed_request(settings: &Settings, symbol: Option<&str>, days: Option<u32>) -> Result<(Symbol, u32), Error> {
    let symbol = match symbol {
        None => settings.default_symbol.clone(),
        Some(text) => Symbol::parse(text).ok_or_else(|| Error::InvalidSymbol(text.chars().take(32).collect()))?,
    };
    let days = days.unwrap_or(settings.default_days);
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(Error::InvalidDays(days.to_string()));
    }
    Ok((symbol, days))
}

/// The last `days` closes of `symbol` with their average.
pub fn closing_prices(env: &impl Env, settings: &Settings, symbol: &Symbol, days: u32) -> Result<Prices, Error> {
    let stored = stored_series(env, settings, symbol)?;
    prices_from(env, settings, symbol, days, stored.as_deref(), env.now_ms())
}

/// The cached series of `symbol`, as stored, once `settings` allow the symbol at all.
fn stored_series(env: &impl Env, settings: &Settings, symbol: &Symbol) -> Result<Option<Vec<u8>>, Error> {
    if !settings.allows(symbol) {
        return Err(Error::NotAllowed(symbol.as_str().to_owned()));
    }
    Ok(env.kv_get(&layout::series(symbol.as_str())))
}

/// The JSON body of a successful answer, where it came from, and its age.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricesBody {
    /// `{"symbol":..,"ndays":..,"prices":[..],"average":..}`.
    pub body: String,
    /// Where the series came from.
    pub cache: CacheStatus,
    /// Seconds since the series was fetched upstream.
    pub age_secs: u64,
}

/// [`closing_prices`] rendered as the HTTP body. A hit whose stored bytes this instance rendered the same
/// window of before takes that body ([`Rendered`](super::rendered::Rendered)): no decoding, no rendering.
pub fn prices_body(env: &impl Env, settings: &Settings, symbol: &Symbol, days: u32) -> Result<PricesBody, Error> {
    let stored = stored_series(env, settings, symbol)?;
    let now = env.now_ms();
    let parts = stored.as_deref().and_then(|bytes| cache::window_parts(bytes, days));
    if let Some(parts) = parts {
        let found = env.with_rendered(|rendered| {
            let found = rendered.get(symbol.as_str(), days, parts)?;
            (freshness(found.fetched_at_ms, now, settings.cache_ttl_ms) == Freshness::Fresh).then(|| PricesBody {
                body: found.body.to_owned(),
                cache: CacheStatus::Hit,
                age_secs: now.saturating_sub(found.fetched_at_ms) / 1000,
            })
        });
        if let Some(found) = found {
            return Ok(found);
        }
    }
    let prices = prices_from(env, settings, symbol, days, stored.as_deref(), now)?;
    let body = prices_json(&prices.symbol, &prices.closes, prices.average);
    if let (CacheStatus::Hit, Some(parts)) = (prices.cache, parts) {
        env.with_rendered(|rendered| rendered.put(symbol.as_str(), days, parts, prices.fetched_at_ms, body.clone()));
    }
    Ok(PricesBody { body, cache: prices.cache, age_secs: prices.age_secs })
}

/// The window and its average from the `stored` series when it is fresh, else from the upstream (or stale).
fn prices_from(env: &impl Env, settings: &Settings, symbol: &Symbol, days: u32, stored: Option<&[u8]>, now: u64) -> Result<Prices, Error> {
    let (series, cache) = series_for(env, settings, symbol, stored, days, now)?;
    let closes = series.window(days).to_vec();
    let values: Vec<Decimal> = closes.iter().map(|c| c.close).collect();
    let average = Decimal::mean(&values).ok_or_else(|| Error::BadUpstream("upstream series has no closes".into()))?;
    let age_secs = now.saturating_sub(series.fetched_at_ms) / 1000;
    Ok(Prices { symbol: symbol.clone(), closes, average, cache, age_secs, fetched_at_ms: series.fetched_at_ms })
}

/// The series to answer from: the `stored` one when fresh (only its last `days` rows decoded), else a
/// fetched one, else the stored one while it may still be served stale.
fn series_for(
    env: &impl Env,
    settings: &Settings,
    symbol: &Symbol,
    stored: Option<&[u8]>,
    days: u32,
    now: u64,
) -> Result<(Series, CacheStatus), Error> {
    let usable = |fetched_at_ms: u64| freshness(fetched_at_ms, now, settings.cache_ttl_ms);
    let fresh = stored.filter(|bytes| cache::fetched_at(bytes).is_some_and(|at| usable(at) == Freshness::Fresh));
    if let Some(window) = fresh.and_then(|bytes| cache::decode_last(bytes, days)) {
        return Ok((window, CacheStatus::Hit));
    }
    let cached = stored.and_then(cache::decode);
    let seen_at = cached.as_ref().map_or(0, |s| s.fetched_at_ms);
    let fetched = remembered_refusal(env, settings, symbol)
        .map_or_else(|| single_flight(env, symbol, seen_at, settings.upstream_timeout_ms, || lead_flight(env, settings, symbol)), Err);
    match fetched {
        Ok(series) => Ok((series, CacheStatus::Miss)),
        Err(error) if error.allows_stale() => match cached.filter(|s| usable(s.fetched_at_ms) != Freshness::Expired) {
            Some(stale) => {
                env.log(&format!("serving stale symbol={} reason={:?}", symbol.as_str(), error.problem().slug));
                Ok((stale, CacheStatus::Stale))
            }
            None => Err(error),
        },
        Err(error) => Err(error),
    }
}

/// A refusal that asking again would only repeat: a symbol the upstream said it does not know, or a key
/// it refused (both remembered for a while, so they cost no quota and no waiting).
fn remembered_refusal(env: &impl Env, settings: &Settings, symbol: &Symbol) -> Option<Error> {
    let now = env.now_ms();
    let unknown_until = stored_ms(env.kv_get(&layout::unknown_symbol(symbol.as_str())));
    if unknown_until.is_some_and(|until| now < until) {
        return Some(Error::UnknownSymbol(symbol.as_str().to_owned()));
    }
    let refused_until = stored_ms(env.kv_get(&layout::refused_key(&key_fingerprint(&settings.apikey))))?;
    (now < refused_until).then(|| Error::UpstreamMisconfigured { retry_after_secs: secs_until(now, refused_until) })
}

/// The leader's work: re-check the cache and the remembered refusals (a previous leader may just have
/// written either, after this request last looked), then ask the breaker.
fn lead_flight(env: &impl Env, settings: &Settings, symbol: &Symbol) -> Result<Series, Error> {
    let cached = env.kv_get(&layout::series(symbol.as_str())).and_then(|bytes| cache::decode(&bytes));
    // A symbol with a series in the cache, fresh or not, has answered before: it may use the whole quota.
    let known = cached.is_some();
    if let Some(series) = cached.filter(|s| freshness(s.fetched_at_ms, env.now_ms(), settings.cache_ttl_ms) == Freshness::Fresh) {
        return Ok(series);
    }
    if let Some(refusal) = remembered_refusal(env, settings, symbol) {
        return Err(refusal);
    }
    if settings.apikey.is_empty() {
        // Our configuration, not the upstream's refusal: no call was made.
        env.log("no API key configured (config key apikey); not calling the upstream");
        return Err(Error::Config(ConfigError { key: stock_shared::settings::APIKEY.key, reason: "no API key is configured".into() }));
    }
    upstream::guarded_call(env, settings, symbol, known)
}

fn stored_breaker(env: &impl Env) -> BreakerState {
    env.kv_get(&layout::breaker_state()).map_or(BreakerState::Closed, |b| BreakerState::decode(&b))
}

fn counter(env: &impl Env, key: &Key) -> u64 {
    env.kv_get(key).and_then(|b| String::from_utf8(b).ok()).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// The breaker as `GET /circuit-breaker` and `stock:service/status` report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerReport {
    /// Current state.
    pub state: BreakerState,
    /// Upstream failures in a row.
    pub consecutive_failures: u64,
    /// Failures in a row that open the breaker.
    pub threshold: u32,
    /// How long it stays open, in seconds.
    pub open_secs: u64,
    /// Seconds until calls may be tried again; `None` when closed.
    pub retry_after_secs: Option<u32>,
    /// Transitions into each state, in [`STATE_NAMES`] order.
    pub transitions: [u64; 3],
}

/// Reads the breaker from the shared store; never calls upstream.
pub fn breaker_report(env: &impl Env, settings: &Settings) -> BreakerReport {
    let state = stored_breaker(env);
    BreakerReport {
        state,
        consecutive_failures: counter(env, &layout::breaker_failures()),
        threshold: settings.breaker_threshold,
        open_secs: settings.breaker_timeout_ms / 1000,
        retry_after_secs: state.retry_after_secs(env.now_ms()),
        transitions: STATE_NAMES.map(|name| counter(env, &layout::breaker_transitions(name))),
    }
}

/// The `GET /circuit-breaker` document.
pub fn breaker_json(report: &BreakerReport) -> String {
    let mut doc = serde_json::json!({
        "state": report.state.name(),
        "consecutive_failures": report.consecutive_failures,
        "threshold": report.threshold,
        "open_period_seconds": report.open_secs,
    });
    if let Some(retry) = report.retry_after_secs {
        doc["retry_after_seconds"] = retry.into();
    }
    doc.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::alphavantage::parse_answer;
    use crate::core::env::fake::FakeEnv;
    use crate::core::env::{Bucket, FetchError, Fetched};
    use crate::core::upstream::quota_report;
    use stock_shared::calendar::{next_utc_midnight, utc_date};

    const T0: u64 = 1_764_000_000_000;

    fn settings() -> Settings {
        let mut s = Settings::from_lookup(|_| None).expect("defaults");
        s.apikey = "secret-key".into();
        s.upstream_url = "http://127.0.0.1:9/query".into();
        s.breaker_threshold = 3;
        s
    }

    fn series_body(closes: &[(&str, &str)]) -> String {
        let rows: Vec<String> = closes.iter().map(|(d, c)| format!(r#""{d}": {{"4. close": "{c}"}}"#)).collect();
        format!(r#"{{"Meta Data": {{}}, "Time Series (Daily)": {{{}}}}}"#, rows.join(","))
    }

    fn msft() -> Symbol {
        Symbol::parse("MSFT").expect("valid")
    }

    fn env_with_series() -> FakeEnv {
        let env = FakeEnv::default();
        env.now.set(T0);
        *env.default_answer.borrow_mut() =
            Some(FakeEnv::ok(&series_body(&[("2026-11-18", "10"), ("2026-11-19", "11"), ("2026-11-20", "12.5")])));
        env
    }

    #[test]
    fn miss_then_hit_then_other_windows_from_the_same_series() {
        let env = env_with_series();
        let s = settings();
        let first = closing_prices(&env, &s, &msft(), 2).expect("prices");
        assert_eq!((first.cache, first.average.to_string(), first.closes.len()), (CacheStatus::Miss, "11.75".into(), 2));
        env.now.set(T0 + 1_000);
        let second = closing_prices(&env, &s, &msft(), 3).expect("prices");
        assert_eq!((second.cache, second.average.to_string(), second.age_secs), (CacheStatus::Hit, "11.1667".into(), 1));
        assert_eq!(env.fetched.borrow().len(), 1, "one upstream call for both windows");
    }

    #[test]
    fn a_hit_takes_the_body_rendered_from_the_same_bytes_and_nothing_stale_or_rewritten() {
        let env = env_with_series();
        let s = settings();
        let body = |days| prices_body(&env, &s, &msft(), days).expect("prices");
        let miss = body(2);
        assert_eq!(miss.cache, CacheStatus::Miss);
        assert_eq!(env.rendered.borrow().len(), 0, "a miss keeps nothing: the stored bytes were not what it rendered from");
        env.now.set(T0 + 2_000);
        let hit = body(2);
        assert_eq!((hit.cache, hit.age_secs, hit.body.as_str()), (CacheStatus::Hit, 2, miss.body.as_str()));
        assert_eq!(env.rendered.borrow().len(), 1);
        env.now.set(T0 + 5_000);
        let again = body(2);
        assert_eq!(
            (again.cache, again.age_secs, again.body),
            (CacheStatus::Hit, 5, miss.body.clone()),
            "from the kept body, its age still counted"
        );
        assert_eq!(
            body(3).body,
            prices_json(&msft(), &closing_prices(&env, &s, &msft(), 3).expect("prices").closes, Decimal::parse("11.1667").expect("valid"))
        );
        // Another replica refreshes the series: the same window renders the new closes, never the kept body.
        let refreshed = Series {
            fetched_at_ms: T0 + 6_000,
            closes: vec![Close {
                date: crate::core::model::Date::parse("2026-11-23").expect("valid"),
                close: Decimal::parse("20").expect("valid"),
            }],
        };
        env.kv_set(&layout::series("MSFT"), &cache::encode(&refreshed));
        let rewritten = body(2);
        assert_eq!(
            (rewritten.cache, rewritten.body.contains("2026-11-23"), rewritten.body.contains("2026-11-19")),
            (CacheStatus::Hit, true, false)
        );
        // Past the TTL the kept body is not served: the series is fetched again.
        env.now.set(T0 + 6_000 + s.cache_ttl_ms);
        assert_eq!(body(2).cache, CacheStatus::Miss);
        assert_eq!(env.fetched.borrow().len(), 2);
    }

    #[test]
    fn expired_ttl_refetches() {
        let env = env_with_series();
        let s = settings();
        closing_prices(&env, &s, &msft(), 2).expect("prices");
        env.now.set(T0 + s.cache_ttl_ms);
        assert_eq!(closing_prices(&env, &s, &msft(), 2).expect("prices").cache, CacheStatus::Miss);
        assert_eq!(env.fetched.borrow().len(), 2);
    }

    #[test]
    fn upstream_failure_serves_stale_data_when_there_is_some() {
        let env = env_with_series();
        let s = settings();
        closing_prices(&env, &s, &msft(), 2).expect("prices");
        env.now.set(T0 + s.cache_ttl_ms + 1);
        *env.default_answer.borrow_mut() = Some(FakeEnv::ok(r#"{"Note": "Our standard API call frequency is 5 calls per minute"}"#));
        let stale = closing_prices(&env, &s, &msft(), 2).expect("stale prices");
        assert_eq!(stale.cache, CacheStatus::Stale);
        env.kv_delete(&layout::series("MSFT"));
        assert_eq!(closing_prices(&env, &s, &msft(), 2), Err(Error::RateLimited { retry_after_secs: 60 }));
    }

    #[test]
    fn unknown_symbol_is_not_hidden_by_stale_data_and_does_not_trip_the_breaker() {
        let env = env_with_series();
        *env.default_answer.borrow_mut() = Some(FakeEnv::ok(r#"{"Error Message": "Invalid API call."}"#));
        let s = settings();
        for _ in 0..5 {
            assert_eq!(closing_prices(&env, &s, &msft(), 2), Err(Error::UnknownSymbol("MSFT".into())));
        }
        assert_eq!(env.kv_get(&layout::breaker_state()), None);
    }

    #[test]
    fn breaker_opens_after_threshold_then_probes_once_and_closes() {
        let env = env_with_series();
        let s = settings();
        *env.default_answer.borrow_mut() = Some(Ok(Fetched { status: 500, body: b"<html>".to_vec() }));
        for _ in 0..3 {
            assert!(matches!(closing_prices(&env, &s, &msft(), 2), Err(Error::BadUpstream(_))));
        }
        assert_eq!(closing_prices(&env, &s, &msft(), 2), Err(Error::CircuitOpen { retry_after_secs: 30 }));
        assert_eq!(env.fetched.borrow().len(), 3, "open breaker makes no call");
        env.now.set(T0 + s.breaker_timeout_ms);
        *env.default_answer.borrow_mut() = Some(FakeEnv::ok(&series_body(&[("2026-11-20", "1")])));
        assert_eq!(closing_prices(&env, &s, &msft(), 2).expect("probe succeeds").cache, CacheStatus::Miss);
        assert_eq!(env.kv_get(&layout::breaker_state()), Some(b"closed".to_vec()));
        assert_eq!(breaker_report(&env, &s).transitions, [1, 1, 1], "closed, open, half-open once each");
    }

    #[test]
    fn failed_probe_reopens_the_breaker() {
        let env = env_with_series();
        let s = settings();
        env.kv_set(&layout::breaker_state(), BreakerState::Open { until_ms: T0 }.encode().as_bytes());
        *env.default_answer.borrow_mut() = Some(Err(FetchError::Timeout));
        assert_eq!(closing_prices(&env, &s, &msft(), 2), Err(Error::UpstreamTimeout(10_000)));
        assert_eq!(env.kv_get(&layout::breaker_state()), Some(BreakerState::Open { until_ms: T0 + 30_000 }.encode().into_bytes()));
    }

    #[test]
    fn half_open_with_a_running_probe_rejects_others() {
        let env = env_with_series();
        env.kv_set(&layout::breaker_state(), BreakerState::HalfOpen { since_ms: T0 - 1 }.encode().as_bytes());
        assert_eq!(closing_prices(&env, &settings(), &msft(), 2), Err(Error::CircuitOpen { retry_after_secs: 1 }));
        assert!(env.fetched.borrow().is_empty());
    }

    #[test]
    fn follower_waits_for_the_leader_and_makes_no_call() {
        let env = env_with_series();
        let s = settings();
        env.kv_set(&layout::flight_ticket("MSFT"), b"1");
        *env.on_sleep.borrow_mut() = Some(Box::new(|env: &FakeEnv| {
            if env.now_ms() >= T0 + 100 {
                let series =
                    Series { fetched_at_ms: env.now_ms(), closes: cache::decode(&cache::encode(&sample())).expect("round trip").closes };
                env.kv_set(&layout::series("MSFT"), &cache::encode(&series));
                env.kv_delete(&layout::flight_ticket("MSFT"));
            }
        }));
        let got = closing_prices(&env, &s, &msft(), 1).expect("leader's result");
        assert_eq!((got.cache, got.closes.len()), (CacheStatus::Miss, 1));
        assert!(env.fetched.borrow().is_empty());
    }

    #[test]
    fn follower_reports_the_leaders_error() {
        let env = env_with_series();
        env.kv_set(&layout::flight_ticket("MSFT"), b"1");
        *env.on_sleep.borrow_mut() = Some(Box::new(|env: &FakeEnv| {
            env.kv_set(&layout::flight_outcome("MSFT"), b"timeout:10000");
            env.kv_delete(&layout::flight_ticket("MSFT"));
        }));
        assert_eq!(closing_prices(&env, &settings(), &msft(), 1), Err(Error::UpstreamTimeout(10_000)));
        assert!(env.fetched.borrow().is_empty());
    }

    #[test]
    fn no_api_key_means_no_call() {
        let env = env_with_series();
        let mut s = settings();
        s.apikey.clear();
        let refused = closing_prices(&env, &s, &msft(), 1);
        assert!(matches!(&refused, Err(Error::Config(e)) if e.key == "apikey"), "{refused:?}");
        assert_eq!(refused.map_err(|e| e.problem().slug), Err("service-misconfigured"));
        assert!(env.fetched.borrow().is_empty());
    }

    #[test]
    fn the_key_reaches_the_upstream_but_never_the_log() {
        let env = env_with_series();
        closing_prices(&env, &settings(), &msft(), 1).expect("prices");
        assert!(env.fetched.borrow()[0].contains("apikey=secret-key"));
        assert!(env.logs.borrow().iter().all(|l| !l.contains("secret-key")), "{:?}", env.logs.borrow());
        assert!(env.logs.borrow().iter().any(|l| l.contains("apikey=REDACTED")));
    }

    #[test]
    fn upstream_calls_are_counted_per_utc_day() {
        let env = env_with_series();
        closing_prices(&env, &settings(), &msft(), 1).expect("prices");
        assert_eq!(env.kv_get(&layout::quota(&utc_date(T0))), Some(b"1".to_vec()));
    }

    #[test]
    fn a_transient_failure_is_retried_once_within_the_timeout() {
        let env = env_with_series();
        env.answers.borrow_mut().push_back(Ok(Fetched { status: 503, body: b"busy".to_vec() }));
        let got = closing_prices(&env, &settings(), &msft(), 1).expect("the retry succeeds");
        assert_eq!(got.cache, CacheStatus::Miss);
        assert_eq!(env.fetched.borrow().len(), 2);
        assert_eq!(env.kv_get(&layout::quota(&utc_date(T0))), Some(b"2".to_vec()), "the retry is a call too");
    }

    #[test]
    fn answers_that_will_not_change_are_not_retried() {
        for answer in [
            FakeEnv::ok(r#"{"Error Message": "Invalid API call."}"#),
            FakeEnv::ok(r#"{"Note": "Our standard API call frequency is 5 calls per minute"}"#),
            Err(FetchError::Timeout),
            Ok(Fetched { status: 500, body: b"boom".to_vec() }),
        ] {
            let env = env_with_series();
            *env.default_answer.borrow_mut() = Some(answer.clone());
            assert!(closing_prices(&env, &settings(), &msft(), 1).is_err());
            assert_eq!(env.fetched.borrow().len(), 1, "{answer:?}");
        }
        let env = env_with_series();
        *env.default_answer.borrow_mut() = Some(Err(FetchError::Failed("connection reset".into())));
        assert!(closing_prices(&env, &settings(), &msft(), 1).is_err());
        assert_eq!(env.fetched.borrow().len(), 2, "a reset is retried once, not more");
    }

    #[test]
    fn unknown_symbols_are_remembered_and_cost_no_more_calls() {
        // See issue 12, defect 7.
        let env = env_with_series();
        *env.default_answer.borrow_mut() = Some(FakeEnv::ok(r#"{"Error Message": "Invalid API call."}"#));
        let s = settings();
        for _ in 0..3 {
            assert_eq!(closing_prices(&env, &s, &msft(), 2), Err(Error::UnknownSymbol("MSFT".into())));
        }
        assert_eq!(env.fetched.borrow().len(), 1);
        env.now.set(T0 + s.negative_cache_ttl_ms);
        assert!(closing_prices(&env, &s, &msft(), 2).is_err());
        assert_eq!(env.fetched.borrow().len(), 2, "asked again once the negative entry expired");
    }

    #[test]
    fn a_leader_that_looked_before_a_refusal_was_remembered_does_not_ask_again() {
        // A request checks the remembered refusals, then a previous leader writes one and releases its ticket,
        // then this request takes the ticket: it must not call the upstream for an answer already known.
        let env = env_with_series();
        *env.default_answer.borrow_mut() = Some(FakeEnv::ok(r#"{"Error Message": "Invalid API call."}"#));
        let s = settings();
        assert_eq!(closing_prices(&env, &s, &msft(), 2), Err(Error::UnknownSymbol("MSFT".into())));
        assert_eq!(lead_flight(&env, &s, &msft()), Err(Error::UnknownSymbol("MSFT".into())));
        assert_eq!(env.fetched.borrow().len(), 1, "the leader re-checks the negative cache");
    }

    #[test]
    fn a_refused_key_is_backed_off_until_it_changes() {
        let env = env_with_series();
        *env.default_answer.borrow_mut() = Some(FakeEnv::ok(r#"{"Error Message": "the parameter apikey is invalid or missing."}"#));
        let mut s = settings();
        for _ in 0..3 {
            assert!(matches!(closing_prices(&env, &s, &msft(), 2), Err(Error::UpstreamMisconfigured { .. })));
        }
        assert_eq!(env.fetched.borrow().len(), 1, "a refused key is not tried again at once");
        s.apikey = "rotated-key".into();
        *env.default_answer.borrow_mut() = Some(FakeEnv::ok(&series_body(&[("2026-11-20", "1")])));
        assert!(closing_prices(&env, &s, &msft(), 2).is_ok(), "a new key is tried at once");
        assert_eq!(env.fetched.borrow().len(), 2);
    }

    #[test]
    fn the_daily_quota_is_enforced_and_stale_data_still_served() {
        let env = env_with_series();
        let mut s = settings();
        s.daily_quota = 1;
        closing_prices(&env, &s, &msft(), 2).expect("first call is within the quota");
        let ibm = Symbol::parse("IBM").expect("valid");
        let refused = closing_prices(&env, &s, &ibm, 2);
        let midnight_secs = u32::try_from((next_utc_midnight(T0) - T0).div_ceil(1000)).expect("small");
        assert_eq!(refused, Err(Error::QuotaExhausted { quota: 1, retry_after_secs: midnight_secs }));
        assert_eq!(env.fetched.borrow().len(), 1, "no call past the quota");
        env.now.set(T0 + s.cache_ttl_ms + 1);
        assert_eq!(closing_prices(&env, &s, &msft(), 2).expect("stale beats quota").cache, CacheStatus::Stale);
        assert_eq!(env.kv_get(&layout::breaker_state()), None, "a spent quota is not an upstream failure");
        env.now.set(next_utc_midnight(T0));
        assert!(closing_prices(&env, &s, &ibm, 2).is_ok(), "a new UTC day, a new quota");
    }

    #[test]
    fn calls_the_host_refuses_use_up_no_quota_trip_no_breaker_and_leave_stale_data_served() {
        // While Redis is down the host refuses every upstream call: none leaves the replica, so none may count.
        let env = env_with_series();
        let mut s = settings();
        s.daily_quota = 4;
        s.new_symbol_quota_percent = 50;
        s.breaker_threshold = 1;
        closing_prices(&env, &s, &msft(), 2).expect("cached before the outage");
        *env.default_answer.borrow_mut() = Some(Err(FetchError::Refused("paused".into())));
        for i in 0..10 {
            let symbol = Symbol::parse(&format!("NEW{i}")).expect("valid");
            assert_eq!(closing_prices(&env, &s, &symbol, 2), Err(Error::UpstreamRefused("paused".into())), "request {i}");
        }
        assert_eq!(env.fetched.borrow().len(), 11, "each was asked once, never retried");
        assert_eq!(quota_report(&env, &s).used, 1, "refused calls are refunded: only MSFT's call counts");
        assert_eq!(env.kv_get(&layout::breaker_state()), None, "the host's refusal is not an upstream failure");
        env.now.set(T0 + s.cache_ttl_ms + 1);
        assert_eq!(closing_prices(&env, &s, &msft(), 2).expect("stale beats a refusal").cache, CacheStatus::Stale);
        *env.default_answer.borrow_mut() = Some(FakeEnv::ok(&series_body(&[("2026-11-20", "1")])));
        assert!(closing_prices(&env, &s, &Symbol::parse("IBM").expect("valid"), 2).is_ok(), "the rest of the quota is left");
    }

    #[test]
    fn a_scanner_spends_only_the_new_symbols_share_and_known_symbols_are_still_refreshed() {
        let env = env_with_series();
        let s = settings();
        assert_eq!((s.daily_quota, s.new_symbol_quota()), (25, Some(13)), "the defaults: 50 % of 25, rounded up");
        closing_prices(&env, &s, &msft(), 2).expect("MSFT answers and is known from now on");
        *env.default_answer.borrow_mut() = Some(FakeEnv::ok(r#"{"Error Message": "Invalid API call."}"#));
        let mut refused_by_share = 0;
        for word in (0..50).map(|i| format!("WP{i}")) {
            match closing_prices(&env, &s, &Symbol::parse(&word).expect("valid"), 2) {
                Err(Error::UnknownSymbol(_)) => {}
                Err(Error::NewSymbolQuotaExhausted { share: 13, .. }) => refused_by_share += 1,
                other => panic!("{word}: {other:?}"),
            }
        }
        assert_eq!(env.fetched.borrow().len(), 1 + 12, "MSFT, then the 12 calls left of the new symbols' share of 13");
        assert_eq!(refused_by_share, 38);
        *env.default_answer.borrow_mut() = Some(FakeEnv::ok(&series_body(&[("2026-11-21", "13")])));
        env.now.set(T0 + s.cache_ttl_ms + 1);
        let refreshed = closing_prices(&env, &s, &msft(), 1).expect("a known symbol whose TTL ran out is refreshed");
        assert_eq!((refreshed.cache, refreshed.average.to_string()), (CacheStatus::Miss, "13".into()));
        assert_eq!(env.fetched.borrow().len(), 14);
    }

    #[test]
    fn with_an_allowed_list_other_symbols_cost_no_call_and_answer_404() {
        let env = env_with_series();
        let mut s = settings();
        s.allowed_symbols = vec![msft()];
        for word in (0..50).map(|i| format!("WP{i}")) {
            let answer = closing_prices(&env, &s, &Symbol::parse(&word).expect("valid"), 2);
            assert_eq!(answer.map_err(|e| e.problem().status), Err(404), "{word}");
        }
        assert!(env.fetched.borrow().is_empty(), "no upstream call for a symbol outside the list");
        assert!(closing_prices(&env, &s, &msft(), 2).is_ok());
        assert_eq!(env.fetched.borrow().len(), 1);
    }

    #[test]
    fn per_symbol_leftovers_go_to_the_memo_bucket_never_to_state_or_cache() {
        // See the filed issue: 20,000 unknown symbols left 19,999 state keys, and ~12k pushed real series out
        // of the cache. Whatever the upstream answers, the state bucket keeps only fixed keys and the cache
        // only series.
        let unknown = FakeEnv::ok(r#"{"Error Message": "Invalid API call."}"#);
        let refused = FakeEnv::ok(r#"{"Error Message": "the parameter apikey is invalid or missing."}"#);
        let day = utc_date(T0);
        for (answer, want_state, memo_per_symbol) in [
            (unknown, vec![format!("quota/{day}"), format!("quota/{day}/new-symbols")], 2),
            (refused, vec![format!("quota/{day}"), format!("quota/{day}/new-symbols")], 1),
            (Err(FetchError::Timeout), vec![format!("quota/{day}"), format!("quota/{day}/new-symbols")], 1),
        ] {
            let env = env_with_series();
            *env.default_answer.borrow_mut() = Some(answer.clone());
            let mut s = settings();
            s.breaker_threshold = 1_000;
            for i in 0..50 {
                let symbol = Symbol::parse(&format!("X{i}")).expect("valid");
                assert!(closing_prices(&env, &s, &symbol, 2).is_err(), "{answer:?}");
            }
            let state: Vec<String> = env.keys_in(Bucket::State).into_iter().filter(|k| !k.starts_with("breaker/")).collect();
            assert_eq!(state, want_state, "{answer:?}");
            assert!(env.keys_in(Bucket::State).len() <= want_state.len() + 2, "breaker keys are fixed: {:?}", env.keys_in(Bucket::State));
            assert_eq!(env.keys_in(Bucket::Cache), Vec::<String>::new(), "{answer:?}");
            let memo = env.keys_in(Bucket::Memo).len();
            assert!(memo <= 50 * memo_per_symbol, "{answer:?}: {memo} memo keys");
        }
    }

    #[test]
    fn breaker_report_reads_the_stored_state() {
        let env = env_with_series();
        env.kv_set(&layout::breaker_state(), BreakerState::Open { until_ms: T0 + 5_000 }.encode().as_bytes());
        env.kv_set(&layout::breaker_failures(), b"2");
        let doc: serde_json::Value = serde_json::from_str(&breaker_json(&breaker_report(&env, &settings()))).expect("json");
        assert_eq!(
            doc,
            serde_json::json!({"state": "open", "consecutive_failures": 2, "threshold": 3, "open_period_seconds": 30, "retry_after_seconds": 5})
        );
    }

    fn sample() -> Series {
        let closes = parse_answer(200, series_body(&[("2026-11-20", "5")]).as_bytes()).expect("valid");
        Series { fetched_at_ms: 0, closes }
    }
}
