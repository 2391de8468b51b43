//! The state the service depends on is never crowded out by per-symbol leftovers: unknown symbols neither evict
//! cached answers nor stop single flight and the breaker, and every key the service writes to Redis expires.
//! See the filed issue "State the service depends on must never be crowded out by per-symbol leftovers".

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::*;

/// Distinct unknown symbols per batch: six times the memo bound below, so the memo evicts over and over.
const UNKNOWN: usize = 300;
/// KV_MAX_ENTRIES for these tests: the cache and, separately, the memo hold this many keys each.
const MAX_ENTRIES: &str = "50";

/// Asks for `count` distinct symbols the upstream does not know (`{prefix}{i}`), from four client threads;
/// each must be a 404.
fn ask_for_unknown_symbols(host: &Host, prefix: &str, count: usize) {
    let addr = host.addr;
    let clients: Vec<_> = (0..4)
        .map(|first| {
            let prefix = prefix.to_owned();
            std::thread::spawn(move || {
                for i in (first..count).step_by(4) {
                    let reply = get(addr, &format!("/{prefix}{i}/1"));
                    assert_eq!(reply.status, 404, "/{prefix}{i}/1: {}", reply.body);
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("client thread");
    }
}

#[test]
fn unknown_symbols_never_evict_a_cached_answer() {
    // The issue: ~12k distinct unknown symbols pushed MSFT out of the 10k-entry cache (HIT -> MISS -> upstream).
    let sim = Sim::start();
    let host = Host::with_sim(&sim, "bounds-cache-key", &[("KV_MAX_ENTRIES", MAX_ENTRIES), ("UPSTREAM_DAILY_QUOTA", "0")]);
    assert_eq!(get(host.addr, "/MSFT/7").header("x-cache"), Some("MISS"));
    ask_for_unknown_symbols(&host, "ZQ", UNKNOWN);
    assert_eq!(sim.calls(), 1 + UNKNOWN as u64, "every unknown symbol reached the upstream once (so each was remembered)");
    let again = get(host.addr, "/MSFT/7");
    assert_eq!((again.status, again.header("x-cache")), (200, Some("HIT")), "{}", again.body);
    assert_eq!(sim.calls_for("MSFT"), 1, "the cached answer survived {UNKNOWN} remembered failures");
    // The memo is bounded, not broken: an unknown symbol asked for after the batch is remembered.
    for _ in 0..2 {
        assert_eq!(get(host.addr, "/ZQLAST/1").status, 404);
    }
    assert_eq!(sim.calls_for("ZQLAST"), 1, "a remembered unknown symbol costs no second call");
}

#[test]
fn after_many_unknown_symbols_single_flight_and_the_breaker_still_work() {
    // The issue: once per-symbol leftovers filled the state bucket, 10 concurrent misses made 10 upstream calls
    // and the breaker stopped counting (20 failures, still closed).
    let sim = Sim::start();
    let host = Host::with_sim(
        &sim,
        "bounds-state-key",
        &[
            ("KV_MAX_ENTRIES", MAX_ENTRIES),
            ("UPSTREAM_DAILY_QUOTA", "0"),
            ("CIRCUIT_BREAKER_THRESHOLD", "3"),
            ("CIRCUIT_BREAKER_TIMEOUT", "60s"),
        ],
    );
    ask_for_unknown_symbols(&host, "ZQ", UNKNOWN);

    // Slow the upstream so all ten arrive while the first call is in flight.
    sim.fault("latency", 400, None);
    let addr = host.addr;
    let misses: Vec<_> = (0..10).map(|i| std::thread::spawn(move || get(addr, &format!("/NVDA/{}", 1 + i)))).collect();
    for miss in misses {
        let reply = miss.join().expect("client thread");
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    assert_eq!(sim.calls_for("NVDA"), 1, "single flight: 10 concurrent misses, one upstream call");

    sim.fault("http-500", 0, None);
    for symbol in ["AAPL", "IBM", "GOOGL"] {
        assert_eq!(get(host.addr, &format!("/{symbol}/7")).status, 502, "{symbol}");
    }
    let refused = get(host.addr, "/AMZN/7");
    assert_eq!(refused.status, 503, "the breaker opened after its threshold of 3: {}", refused.body);
    assert_eq!(refused.json()["type"], "https://stock-service.dev/problems/circuit-open");
    assert_eq!(sim.calls_for("AMZN"), 0, "an open breaker makes no call");
    assert_eq!(get(host.addr, "/circuit-breaker").json()["state"], "open");
}

/// Every key under `pattern` with its remaining time to live in milliseconds (`PTTL`: -1 = never expires).
fn keys_with_ttl(conn: &mut redis::Connection, pattern: &str) -> BTreeMap<String, i64> {
    let keys: Vec<String> = redis::cmd("KEYS").arg(pattern).query(conn).expect("KEYS");
    keys.into_iter().map(|key| (key.clone(), redis::cmd("PTTL").arg(&key).query(conn).expect("PTTL"))).collect()
}

#[test]
fn every_key_the_service_writes_to_redis_expires_and_the_state_stays_bounded() {
    // The issue: `flight/v1/{SYM}/outcome` stayed forever (20,000 unknown symbols left 19,999 keys), and so did
    // `quota/{day}` and flight `takeover/{lease}`.
    let sim = Sim::start();
    let redis = RedisServer::start();
    let url = redis.url();
    let host = Host::with_sim(
        &sim,
        "bounds-redis-key",
        &[
            ("KV_URL", url.as_str()),
            ("KV_STATE_EXPIRY", "2h"),
            ("KV_MEMO_EXPIRY", "10m"),
            ("UPSTREAM_DAILY_QUOTA", "0"),
            ("UPSTREAM_TIMEOUT", "2s"),
            ("REQUEST_TIMEOUT", "1s"),
        ],
    );
    let mut conn = redis::Client::open(url.as_str()).expect("client").get_connection().expect("redis answers");

    assert_eq!(get(host.addr, "/MSFT/7").status, 200, "a series and today's quota counter");
    ask_for_unknown_symbols(&host, "ZQ", 100);
    let state_before = keys_with_ttl(&mut conn, "stock:state:*");
    sim.fault("http-500", 0, Some(1));
    assert_eq!(get(host.addr, "/IBM/7").status, 502, "a failure the breaker counts");
    // A leader killed by the host deadline leaves an orphaned ticket; once its lease (upstream timeout + 2 s
    // grace) has run out, the next request takes it over through a takeover ticket.
    sim.fault("hang", 0, Some(1));
    assert_eq!(get(host.addr, "/AAPL/3").status, 504, "the host deadline kills the leader mid-call");
    std::thread::sleep(Duration::from_millis(3_200));
    assert_eq!(get(host.addr, "/AAPL/3").status, 200, "the orphan was taken over");
    ask_for_unknown_symbols(&host, "ZR", 200);

    let all = keys_with_ttl(&mut conn, "stock:*");
    let never = |prefix: &str| all.iter().filter(|(k, ttl)| k.starts_with(prefix) && **ttl < 0).map(|(k, _)| k.clone()).collect::<Vec<_>>();
    assert_eq!(never("stock:"), Vec::<String>::new(), "keys without an expiry");
    let within = |prefix: &str, max_ms: i64| all.iter().filter(|(k, _)| k.starts_with(prefix)).all(|(_, ttl)| (1..=max_ms).contains(ttl));
    assert!(within("stock:state:", 2 * 3_600_000), "state keys expire within KV_STATE_EXPIRY: {all:?}");
    assert!(within("stock:memo:", 600_000), "memo keys expire within KV_MEMO_EXPIRY: {all:?}");
    assert!(within("stock:cache:", 25 * 3_600_000), "cache keys expire within KV_CACHE_EXPIRY: {all:?}");
    for wanted in ["stock:state:quota/", "stock:memo:negative/", "stock:memo:flight/", "stock:cache:series/MSFT"] {
        assert!(all.keys().any(|k| k.starts_with(wanted)), "positive control: the service wrote {wanted}*: {all:?}");
    }
    assert!(
        all.keys().any(|k| k.starts_with("stock:memo:") && k.contains("/AAPL/takeover/")),
        "a takeover ticket, with its expiry: {all:?}"
    );

    // Per-symbol leftovers never reach the state bucket: 200 more unknown symbols, a failure and a takeover later,
    // it holds no key naming a symbol and no more keys than before (the breaker's and the quota's).
    let state = keys_with_ttl(&mut conn, "stock:state:*");
    assert!(state.keys().all(|k| !k.contains("/ZQ") && !k.contains("/ZR") && !k.contains("flight/")), "{state:?}");
    assert!(state.len() <= state_before.len() + 3, "state grew from {state_before:?} to {state:?}");
    assert!(state.len() <= 8, "the state bucket holds a handful of keys: {state:?}");
    let cache: Vec<&String> = all.keys().filter(|k| k.starts_with("stock:cache:")).collect();
    assert!(cache.iter().all(|k| k.starts_with("stock:cache:series/")), "only answers in the cache: {cache:?}");
}
