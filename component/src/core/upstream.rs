//! One leader's trip to the upstream: the breaker's admission, the daily quota, at most one retry of a
//! transient failure, and remembering refusals that asking again would only repeat.

use stock_shared::calendar::{next_utc_midnight, utc_date};
use stock_shared::redact::query_secrets as redact;

use super::alphavantage::{parse_answer, query_url};
use super::breaker::{self, Admission, BreakerState, secs_until};
use super::cache;
use super::config::Settings;
use super::env::{Env, FetchError, Fetched, Key};
use super::error::Error;
use super::layout;
use super::model::{Series, Symbol};

/// How long a refused key is not tried again (a rotated key has another fingerprint and is tried at once).
pub const REFUSED_KEY_BACKOFF_MS: u64 = 60_000;
/// Shortest backoff before the one retry; up to [`RETRY_JITTER_MS`] more is added at random.
pub const RETRY_BACKOFF_MS: u64 = 100;
/// Random extra backoff, so replicas do not retry in step.
pub const RETRY_JITTER_MS: u64 = 200;
/// A retry needs at least this much of the upstream timeout left, or it is not tried.
pub const MIN_RETRY_BUDGET_MS: u64 = 500;

/// Calls the upstream through the circuit breaker and records the result in it. `known`: the symbol has
/// answered before (its series is cached, fresh or not); others may spend only their share of the quota.
pub fn guarded_call(env: &impl Env, settings: &Settings, symbol: &Symbol, known: bool) -> Result<Series, Error> {
    quota_left(env, settings, known)?;
    let now = env.now_ms();
    let state = env.kv_get(&layout::breaker_state()).map_or(BreakerState::Closed, |b| BreakerState::decode(&b));
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
    let result = call_upstream(env, settings, symbol, known);
    record_in_breaker(env, settings, state, probe_ticket.is_some(), &result);
    if let Some(ticket_key) = probe_ticket {
        env.kv_delete(&ticket_key);
    }
    remember_refusal(env, settings, symbol, &result);
    result
}

fn record_in_breaker(env: &impl Env, settings: &Settings, state: BreakerState, was_probe: bool, result: &Result<Series, Error>) {
    let healthy = match result {
        Ok(_) => true,
        Err(error) => !error.counts_against_upstream(),
    };
    if healthy {
        if was_probe || state != BreakerState::Closed {
            transition(env, BreakerState::Closed);
        }
        env.kv_delete(&layout::breaker_failures());
        return;
    }
    let failures = env.kv_increment(&layout::breaker_failures(), 1).unwrap_or(1);
    if let Some(open) = breaker::after_failure(was_probe, failures, settings.breaker_threshold, env.now_ms(), settings.breaker_timeout_ms) {
        transition(env, open);
        env.kv_delete(&layout::breaker_failures());
    }
}

fn transition(env: &impl Env, to: BreakerState) {
    env.kv_set(&layout::breaker_state(), to.encode().as_bytes());
    env.kv_increment(&layout::breaker_transitions(to.name()), 1);
    env.log(&format!("circuit breaker state={}", to.name()));
}

/// Remembers an unknown symbol (negative cache) and a refused key (back-off), so neither costs quota again.
/// Both go to the memo bucket: however many symbols are unknown, they evict neither answers nor state.
fn remember_refusal(env: &impl Env, settings: &Settings, symbol: &Symbol, result: &Result<Series, Error>) {
    let now = env.now_ms();
    match result {
        Err(Error::UnknownSymbol(_)) if settings.negative_cache_ttl_ms > 0 => {
            let until = now.saturating_add(settings.negative_cache_ttl_ms);
            env.kv_set(&layout::unknown_symbol(symbol.as_str()), until.to_string().as_bytes());
        }
        Err(Error::UpstreamMisconfigured { .. }) => {
            let until = now.saturating_add(REFUSED_KEY_BACKOFF_MS);
            env.kv_set(&layout::refused_key(&key_fingerprint(&settings.apikey)), until.to_string().as_bytes());
        }
        _ => {}
    }
}

/// Today's use of the daily quota, as `stock:service/status` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaReport {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    /// Calls made or reserved today.
    pub used: u64,
    /// Calls allowed per day; 0 = unlimited.
    pub limit: u64,
    /// Seconds until midnight UTC when the quota is spent.
    pub retry_after_secs: Option<u32>,
}

/// Reads today's quota counter; never calls upstream.
pub fn quota_report(env: &impl Env, settings: &Settings) -> QuotaReport {
    let now = env.now_ms();
    let day = utc_date(now);
    let used = net_use(env, &layout::quota(&day), &layout::quota_refunded(&day));
    let spent = settings.daily_quota > 0 && used >= settings.daily_quota;
    QuotaReport { day, used, limit: settings.daily_quota, retry_after_secs: spent.then(|| secs_until(now, next_utc_midnight(now))) }
}

/// Refuses when today's calls already reached the quota (0 = unlimited), or, for a symbol never served
/// before, the share of it such symbols may spend.
fn quota_left(env: &impl Env, settings: &Settings, known: bool) -> Result<(), Error> {
    let now = env.now_ms();
    let day = utc_date(now);
    if settings.daily_quota > 0 && net_use(env, &layout::quota(&day), &layout::quota_refunded(&day)) >= settings.daily_quota {
        return Err(Error::QuotaExhausted { quota: settings.daily_quota, retry_after_secs: secs_until(now, next_utc_midnight(now)) });
    }
    match settings.new_symbol_quota() {
        Some(share) if !known && net_use(env, &layout::new_symbol_quota(&day), &layout::new_symbol_quota_refunded(&day)) >= share => {
            Err(Error::NewSymbolQuotaExhausted { share, retry_after_secs: secs_until(now, next_utc_midnight(now)) })
        }
        _ => Ok(()),
    }
}

/// Counts one upstream call against today's quota (and a new symbol's against its share); refused
/// when it would go past either.
fn spend_quota(env: &impl Env, settings: &Settings, known: bool) -> Result<(), Error> {
    let now = env.now_ms();
    let day = utc_date(now);
    let retry_after_secs = secs_until(now, next_utc_midnight(now));
    let refunded = |key| stored_ms(env.kv_get(&key)).unwrap_or(0);
    let used = env.kv_increment(&layout::quota(&day), 1);
    if settings.daily_quota > 0 && used.is_some_and(|n| n.saturating_sub(refunded(layout::quota_refunded(&day))) > settings.daily_quota) {
        return Err(Error::QuotaExhausted { quota: settings.daily_quota, retry_after_secs });
    }
    match settings.new_symbol_quota() {
        Some(share)
            if !known
                && env
                    .kv_increment(&layout::new_symbol_quota(&day), 1)
                    .is_some_and(|n| n.saturating_sub(refunded(layout::new_symbol_quota_refunded(&day))) > share) =>
        {
            Err(Error::NewSymbolQuotaExhausted { share, retry_after_secs })
        }
        _ => Ok(()),
    }
}

/// Gives back what [`spend_quota`] counted for a call the host refused to make: none left this replica, so it
/// must not use up the day (while Redis is down, every refresh the host refuses would otherwise count).
fn refund_quota(env: &impl Env, settings: &Settings, known: bool) {
    let day = utc_date(env.now_ms());
    env.kv_increment(&layout::quota_refunded(&day), 1);
    if settings.new_symbol_quota().is_some() && !known {
        env.kv_increment(&layout::new_symbol_quota_refunded(&day), 1);
    }
}

/// A counter minus what was refunded from it.
fn net_use(env: &impl Env, counted: &Key, refunded: &Key) -> u64 {
    let read = |key| stored_ms(env.kv_get(key)).unwrap_or(0);
    read(counted).saturating_sub(read(refunded))
}

fn call_upstream(env: &impl Env, settings: &Settings, symbol: &Symbol, known: bool) -> Result<Series, Error> {
    let url = query_url(&settings.upstream_url, symbol, &settings.apikey);
    spend_quota(env, settings, known)?;
    let started = env.now_ms();
    let fetched = fetch_with_one_retry(env, settings, &url, known);
    if matches!(fetched, Err(FetchError::Refused(_))) {
        refund_quota(env, settings, known);
    }
    let elapsed = env.now_ms().saturating_sub(started);
    let result = fetched
        .map_err(|e| match e {
            FetchError::Timeout => Error::UpstreamTimeout(settings.upstream_timeout_ms),
            FetchError::Failed(why) => Error::BadUpstream(format!("upstream unreachable: {why}")),
            FetchError::Refused(why) => Error::UpstreamRefused(why),
        })
        .and_then(|answer| parse_answer(answer.status, &answer.body).map_err(|refusal| Error::from_refusal(refusal, symbol.as_str())));
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => e.problem().slug,
    };
    env.log(&format!("upstream url={} outcome={outcome} ms={elapsed}", redact(&url)));
    let closes = result?;
    let series = Series { fetched_at_ms: env.now_ms(), closes };
    env.kv_set(&layout::series(symbol.as_str()), &cache::encode(&series));
    Ok(series)
}

/// One call, and one more after a jittered backoff when the first failed in a way that may pass
/// (connection refused or reset, 502, 503), within the same upstream timeout and the quota.
fn fetch_with_one_retry(env: &impl Env, settings: &Settings, url: &str, known: bool) -> Result<Fetched, FetchError> {
    let started = env.now_ms();
    let first = env.fetch(url, settings.upstream_timeout_ms);
    if !is_transient(&first) {
        return first;
    }
    let backoff = RETRY_BACKOFF_MS + env.random_u64() % (RETRY_JITTER_MS + 1);
    let elapsed = env.now_ms().saturating_sub(started);
    let budget = settings.upstream_timeout_ms.saturating_sub(elapsed + backoff);
    if budget < MIN_RETRY_BUDGET_MS || spend_quota(env, settings, known).is_err() {
        return first;
    }
    env.sleep_ms(backoff);
    env.log(&format!("upstream failed transiently; retrying once after {backoff} ms"));
    env.fetch(url, budget)
}

fn is_transient(result: &Result<Fetched, FetchError>) -> bool {
    match result {
        Err(FetchError::Failed(_)) => true,
        Ok(answer) => matches!(answer.status, 502 | 503),
        Err(FetchError::Timeout | FetchError::Refused(_)) => false,
    }
}

/// A decimal number stored as text (a `until_ms` time or a counter).
pub fn stored_ms(bytes: Option<Vec<u8>>) -> Option<u64> {
    String::from_utf8(bytes?).ok()?.parse().ok()
}

/// 8 hex digits of FNV-1a over the key: tells keys apart in keyvalue without storing anything that
/// identifies the key itself.
pub fn key_fingerprint(apikey: &str) -> String {
    let hash = apikey.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3));
    format!("{:08x}", (hash ^ (hash >> 32)) as u32)
}
