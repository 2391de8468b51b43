//! The request flow: cache, single flight, breaker and upstream, over an [`Env`].

use stock_shared::redact::query_secrets as redact;

use super::alphavantage::{parse_answer, query_url};
use super::breaker::{self, Admission, BreakerState, STATE_NAMES};
use super::cache::{self, Freshness, freshness};
use super::config::Settings;
use super::decimal::Decimal;
use super::env::{Env, FetchError};
use super::error::Error;
use super::layout;
use super::model::{Close, MAX_DAYS, Series, Symbol};

/// How often a single-flight follower looks for the leader's result.
pub const FLIGHT_POLL_MS: u64 = 20;
/// Extra wait beyond the upstream timeout before a follower gives up on its leader.
pub const FLIGHT_GRACE_MS: u64 = 2_000;

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
    /// Header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "HIT",
            Self::Miss => "MISS",
            Self::Stale => "STALE",
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
    let (series, cache) = series_for(env, settings, symbol)?;
    let closes = series.window(days).to_vec();
    let values: Vec<Decimal> = closes.iter().map(|c| c.close).collect();
    let average = Decimal::mean(&values).ok_or_else(|| Error::BadUpstream("upstream series has no closes".into()))?;
    let age_secs = env.now_ms().saturating_sub(series.fetched_at_ms) / 1000;
    Ok(Prices { symbol: symbol.clone(), closes, average, cache, age_secs })
}

fn series_for(env: &impl Env, settings: &Settings, symbol: &Symbol) -> Result<(Series, CacheStatus), Error> {
    let cached = env.cache_get(&layout::series(symbol.as_str())).and_then(|bytes| cache::decode(&bytes));
    let now = env.now_ms();
    let usable = |s: &Series| freshness(s.fetched_at_ms, now, settings.cache_ttl_ms);
    if let Some(series) = cached.as_ref().filter(|s| usable(s) == Freshness::Fresh) {
        return Ok((series.clone(), CacheStatus::Hit));
    }
    match single_flight(env, settings, symbol, cached.as_ref()) {
        Ok(series) => Ok((series, CacheStatus::Miss)),
        Err(error) if error.allows_stale() => match cached.filter(|s| usable(s) != Freshness::Expired) {
            Some(stale) => {
                env.log(&format!("serving stale symbol={} reason={:?}", symbol.as_str(), error.problem().slug));
                Ok((stale, CacheStatus::Stale))
            }
            None => Err(error),
        },
        Err(error) => Err(error),
    }
}

/// Makes at most one upstream call per symbol at a time across all instances sharing the store:
/// the first to take the ticket fetches, the others wait for its result.
fn single_flight(env: &impl Env, settings: &Settings, symbol: &Symbol, cached: Option<&Series>) -> Result<Series, Error> {
    let flight_key = layout::flight_ticket(symbol.as_str());
    let outcome_key = layout::flight_outcome(symbol.as_str());
    let seen_at = cached.map_or(0, |s| s.fetched_at_ms);
    let deadline = env.now_ms().saturating_add(settings.upstream_timeout_ms + FLIGHT_GRACE_MS);
    loop {
        let ticket = env.kv_increment(&flight_key, 1);
        if matches!(ticket, None | Some(1)) {
            let result = lead_flight(env, settings, symbol);
            match &result {
                Ok(_) => env.kv_delete(&outcome_key),
                Err(error) => env.kv_set(&outcome_key, error.encode_outcome().as_bytes()),
            }
            env.kv_delete(&flight_key);
            return result;
        }
        // Follower: wait for a newer series, or for the leader to finish with an error.
        loop {
            env.sleep_ms(FLIGHT_POLL_MS);
            if let Some(series) = newer_series(env, symbol, seen_at) {
                return Ok(series);
            }
            if env.kv_get(&flight_key).is_none() {
                if let Some(series) = newer_series(env, symbol, seen_at) {
                    return Ok(series);
                }
                return match env.kv_get(&outcome_key) {
                    Some(outcome) => Err(Error::decode_outcome(&String::from_utf8_lossy(&outcome))),
                    None => break, // the leader vanished without a word: take a ticket again
                };
            }
            if env.now_ms() >= deadline {
                // The leader is gone (trap, crash); free the ticket so the next request can lead.
                env.kv_delete(&flight_key);
                return Err(Error::UpstreamTimeout(settings.upstream_timeout_ms));
            }
        }
        if env.now_ms() >= deadline {
            return Err(Error::UpstreamTimeout(settings.upstream_timeout_ms));
        }
    }
}

fn newer_series(env: &impl Env, symbol: &Symbol, seen_at: u64) -> Option<Series> {
    env.cache_get(&layout::series(symbol.as_str())).and_then(|bytes| cache::decode(&bytes)).filter(|s| s.fetched_at_ms > seen_at)
}

/// The leader's work: re-check the cache (a previous leader may just have filled it), then ask the breaker.
fn lead_flight(env: &impl Env, settings: &Settings, symbol: &Symbol) -> Result<Series, Error> {
    let fresh = env
        .cache_get(&layout::series(symbol.as_str()))
        .and_then(|bytes| cache::decode(&bytes))
        .filter(|s| freshness(s.fetched_at_ms, env.now_ms(), settings.cache_ttl_ms) == Freshness::Fresh);
    if let Some(series) = fresh {
        return Ok(series);
    }
    if settings.apikey.is_empty() {
        env.log("no API key configured (config key apikey); not calling the upstream");
        return Err(Error::UpstreamMisconfigured { retry_after_secs: 60 });
    }
    guarded_call(env, settings, symbol)
}

/// Calls the upstream through the circuit breaker and records the result in it.
fn guarded_call(env: &impl Env, settings: &Settings, symbol: &Symbol) -> Result<Series, Error> {
    let now = env.now_ms();
    let state = stored_breaker(env);
    let probe_ticket = match state.admit(now, settings.breaker_timeout_ms) {
        Admission::Proceed => None,
        Admission::Reject { retry_after_secs } => return Err(Error::CircuitOpen { retry_after_secs }),
        Admission::Probe => {
            let ticket_key = layout::breaker_probe(&state.encode());
            if !matches!(env.kv_increment(&ticket_key, 1), None | Some(1)) {
                return Err(Error::CircuitOpen { retry_after_secs: 1 });
            }
            transition(env, BreakerState::HalfOpen { since_ms: now });
            Some(ticket_key)
        }
    };
    let result = call_upstream(env, settings, symbol);
    let healthy = match &result {
        Ok(_) => true,
        Err(error) => !error.counts_against_upstream(),
    };
    if healthy {
        if probe_ticket.is_some() || state != BreakerState::Closed {
            transition(env, BreakerState::Closed);
        }
        env.kv_delete(&layout::breaker_failures());
    } else {
        let failures = env.kv_increment(&layout::breaker_failures(), 1).unwrap_or(1);
        let opened =
            breaker::after_failure(probe_ticket.is_some(), failures, settings.breaker_threshold, env.now_ms(), settings.breaker_timeout_ms);
        if let Some(open) = opened {
            transition(env, open);
            env.kv_delete(&layout::breaker_failures());
        }
    }
    if let Some(ticket_key) = probe_ticket {
        env.kv_delete(&ticket_key);
    }
    result
}

fn transition(env: &impl Env, to: BreakerState) {
    env.kv_set(&layout::breaker_state(), to.encode().as_bytes());
    env.kv_increment(&layout::breaker_transitions(to.name()), 1);
    env.log(&format!("circuit breaker state={}", to.name()));
}

fn call_upstream(env: &impl Env, settings: &Settings, symbol: &Symbol) -> Result<Series, Error> {
    let url = query_url(&settings.upstream_url, symbol, &settings.apikey);
    env.kv_increment(&layout::quota(&civil_date(env.now_ms())), 1);
    let started = env.now_ms();
    let fetched = env.fetch(&url, settings.upstream_timeout_ms);
    let elapsed = env.now_ms().saturating_sub(started);
    let result = fetched
        .map_err(|e| match e {
            FetchError::Timeout => Error::UpstreamTimeout(settings.upstream_timeout_ms),
            FetchError::Failed(why) => Error::BadUpstream(format!("upstream unreachable: {why}")),
        })
        .and_then(|answer| parse_answer(answer.status, &answer.body).map_err(|refusal| Error::from_refusal(refusal, symbol.as_str())));
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => e.problem().slug,
    };
    env.log(&format!("upstream url={} outcome={outcome} ms={elapsed}", redact(&url)));
    let closes = result?;
    let series = Series { fetched_at_ms: env.now_ms(), closes };
    env.cache_set(&layout::series(symbol.as_str()), &cache::encode(&series));
    Ok(series)
}

/// `YYYY-MM-DD` (UTC) of a Unix time in milliseconds (Howard Hinnant's days-to-civil).
pub fn civil_date(unix_ms: u64) -> String {
    let days = i64::try_from(unix_ms / 86_400_000).unwrap_or(0) + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

fn stored_breaker(env: &impl Env) -> BreakerState {
    env.kv_get(&layout::breaker_state()).map_or(BreakerState::Closed, |b| BreakerState::decode(&b))
}

fn counter(env: &impl Env, key: &str) -> u64 {
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
        "open_for_seconds": report.open_secs,
    });
    if let Some(retry) = report.retry_after_secs {
        doc["retry_after_seconds"] = retry.into();
    }
    doc.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::env::Fetched;
    use crate::core::env::fake::FakeEnv;

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
        env.cache.borrow_mut().remove("series/MSFT");
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
        *env.default_answer.borrow_mut() = Some(Ok(Fetched { status: 503, body: b"<html>".to_vec() }));
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
                env.cache_set("series/MSFT", &cache::encode(&series));
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
    fn follower_of_a_dead_leader_gives_up_in_bounded_time_and_frees_the_ticket() {
        let env = env_with_series();
        env.kv_set(&layout::flight_ticket("MSFT"), b"1");
        assert_eq!(closing_prices(&env, &settings(), &msft(), 1), Err(Error::UpstreamTimeout(10_000)));
        assert!(env.now_ms() <= T0 + 10_000 + FLIGHT_GRACE_MS + FLIGHT_POLL_MS);
        assert_eq!(env.kv_get(&layout::flight_ticket("MSFT")), None);
    }

    #[test]
    fn no_api_key_means_no_call() {
        let env = env_with_series();
        let mut s = settings();
        s.apikey.clear();
        assert_eq!(closing_prices(&env, &s, &msft(), 1), Err(Error::UpstreamMisconfigured { retry_after_secs: 60 }));
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
        assert_eq!(env.kv_get(&layout::quota(&civil_date(T0))), Some(b"1".to_vec()));
    }

    #[test]
    fn civil_dates() {
        for (ms, want) in
            [(0, "1970-01-01"), (951_782_400_000, "2000-02-29"), (1_764_000_000_000, "2025-11-24"), (1_798_761_599_000, "2026-12-31")]
        {
            assert_eq!(civil_date(ms), want);
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
            serde_json::json!({"state": "open", "consecutive_failures": 2, "threshold": 3, "open_for_seconds": 30, "retry_after_seconds": 5})
        );
    }

    fn sample() -> Series {
        let closes = parse_answer(200, series_body(&[("2026-11-20", "5")]).as_bytes()).expect("valid");
        Series { fetched_at_ms: 0, closes }
    }
}
