//! Replicas sharing one cache, one breaker, one quota and one single flight through a real Redis, and
//! what happens when Redis goes away and comes back.

use std::sync::Arc;
use std::time::Duration;

use stock_host::state::contract;
use stock_host::state::redis::{RedisBucket, RedisLink, RedisSettings};
use stock_host::state::{KvStore, MemoryBucket, Policy};
use stock_host::telemetry::metrics::Metrics;

use crate::common::*;

fn two_hosts(sim: &Sim, redis: &RedisServer, env: &[(&str, &str)]) -> (Host, Host) {
    let url = redis.url();
    let mut all = vec![("KV_URL", url.as_str())];
    all.extend_from_slice(env);
    (Host::with_sim(sim, "shared-key", &all), Host::with_sim(sim, "shared-key", &all))
}

fn settings(redis: &RedisServer) -> RedisSettings {
    RedisSettings {
        url: redis.url(),
        password: None,
        password_file: None,
        prefix: "contract:".into(),
        timeout: Duration::from_millis(500),
        cache_expiry: Duration::from_secs(3600),
        state_expiry: Duration::from_secs(3600),
        memo_expiry: Duration::from_secs(3600),
    }
}

/// A link to the test's Redis, connected.
async fn connected(settings: &RedisSettings) -> Arc<RedisLink> {
    let link = RedisLink::new(settings, Arc::new(Metrics::new().expect("metrics"))).expect("link");
    assert!(link.connect().await, "redis answers");
    link
}

#[test]
fn the_redis_backend_keeps_the_same_store_contract_as_memory() {
    let redis = RedisServer::start();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let settings = settings(&redis);
        let link = connected(&settings).await;
        let local = Arc::new(MemoryBucket::new(Policy::cache(10, None)));
        let bucket = RedisBucket::new(link.clone(), &settings.prefix, "state", settings.state_expiry, local, false);
        contract::check(&bucket).await;
        assert_eq!(bucket.backend(), "redis", "the contract ran against Redis, not the local twin");
    });
}

#[test]
fn redis_forgets_a_key_not_written_within_its_expiry_like_memory() {
    // See the filed issue: `quota/{day}` and flight `takeover/{lease}` never expired, so a long-running fleet's
    // Redis grew forever. Every write and increment (INCRBY and PEXPIRE in one transaction) sets the expiry.
    let redis = RedisServer::start();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let settings = settings(&redis);
        let link = connected(&settings).await;
        let expiry = Duration::from_millis(1_000);
        let local = Arc::new(MemoryBucket::new(Policy::memo(10, Some(expiry))));
        let bucket = RedisBucket::new(link.clone(), &settings.prefix, "expiring", expiry, local, false);
        contract::check_expiry(&bucket, expiry).await;
        assert_eq!(bucket.backend(), "redis", "the expiry was Redis's, not the local twin's");
    });
}

#[test]
fn two_hosts_on_one_redis_share_the_cache_and_make_one_upstream_call() {
    let sim = Sim::start();
    let redis = RedisServer::start();
    let (a, b) = two_hosts(&sim, &redis, &[]);
    assert_eq!(get(a.addr, "/MSFT/7").header("x-cache"), Some("MISS"));
    assert_eq!(get(b.addr, "/MSFT/3").header("x-cache"), Some("HIT"), "the second replica reads the first one's fetch");
    assert_eq!(sim.calls(), 1);
    let (addr_a, addr_b) = (a.addr, b.addr);
    let cold: Vec<_> = (0..50).map(|i| std::thread::spawn(move || get(if i % 2 == 0 { addr_a } else { addr_b }, "/NVDA/5"))).collect();
    for client in cold {
        let reply = client.join().expect("client");
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    assert_eq!(sim.calls_for("NVDA"), 1, "50 concurrent cold requests over two replicas: one upstream call");
    assert_eq!(a.metric("stock_host_kv_fallback"), 0.0);
    assert!(a.metrics().contains("stock_host_kv_operations_total{backend=\"redis\""), "operations are counted by backend");
}

#[test]
fn a_breaker_opened_through_one_replica_is_open_on_the_other() {
    let sim = Sim::start();
    let redis = RedisServer::start();
    let (a, b) = two_hosts(&sim, &redis, &[("CIRCUIT_BREAKER_THRESHOLD", "2"), ("CIRCUIT_BREAKER_TIMEOUT", "60s")]);
    sim.fault("http-500", 0, None);
    assert_eq!(get(a.addr, "/MSFT/7").status, 502);
    assert_eq!(get(a.addr, "/IBM/7").status, 502);
    let calls = sim.calls();
    let refused = get(b.addr, "/AAPL/7");
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.json()["type"], "https://stock-service.dev/problems/circuit-open");
    assert_eq!(sim.calls(), calls, "the other replica makes no call while the shared breaker is open");
    assert_eq!(b.metric("stock_api_circuit_breaker_state"), 1.0);
}

#[test]
fn a_redis_outage_serves_what_each_replica_served_makes_no_upstream_call_and_sharing_comes_back_on_its_own() {
    let sim = Sim::start();
    let mut redis = RedisServer::start();
    let (a, b) = two_hosts(&sim, &redis, &[("KV_TIMEOUT", "200ms")]);
    // Each replica has read both series from Redis once: its local twin keeps a copy.
    for host in [&a, &b] {
        assert_eq!(get(host.addr, "/MSFT/7").status, 200);
        assert_eq!(get(host.addr, "/IBM/3").status, 200);
    }
    let calls = sim.calls();
    redis.kill();
    for i in 0..20 {
        let host = if i % 2 == 0 { &a } else { &b };
        let reply = get(host.addr, if i % 3 == 0 { "/IBM/3" } else { "/MSFT/7" });
        assert_eq!(reply.status, 200, "request {i} during the outage: {}", reply.body);
    }
    // A symbol neither has a copy of: no upstream call, since the day's count is in Redis.
    let refused = get(b.addr, "/AAPL/5");
    assert_eq!((refused.status, refused.header("retry-after")), (503, Some("5")), "{}", refused.body);
    assert_eq!(refused.json()["type"], "https://stock-service.dev/problems/upstream-call-refused");
    assert_eq!(sim.calls(), calls, "no upstream call while Redis is down");
    assert_eq!(b.metric("stock_host_upstream_paused_total"), 1.0);
    assert_eq!(a.metric("stock_host_kv_fallback"), 1.0, "the outage shows in /metrics");
    assert_eq!(get(a.addr, "/ready").status, 200, "still ready: the service still answers");
    assert_eq!(a.logs().matches("Redis unreachable").count(), 1, "said once in the log");
    redis.restart();
    wait_until(Duration::from_secs(10), "both replicas return to Redis", || {
        a.metric("stock_host_kv_fallback") == 0.0 && b.metric("stock_host_kv_fallback") == 0.0
    });
    let before = sim.calls_for("TSLA");
    assert_eq!(get(a.addr, "/TSLA/3").header("x-cache"), Some("MISS"));
    assert_eq!(get(b.addr, "/TSLA/3").header("x-cache"), Some("HIT"), "shared again");
    assert_eq!(sim.calls_for("TSLA"), before + 1);
}

#[test]
fn a_rotated_kv_password_file_is_picked_up_without_a_restart() {
    const OLD: &str = "old-redis-password-4711";
    const NEW: &str = "new-redis-password-0815";
    let redis = RedisServer::start_with(&["--requirepass", OLD]);
    let dir = TempDir::new("kv-password");
    let password_file = dir.0.join("password");
    std::fs::write(&password_file, format!("{OLD}\n")).expect("password file");
    let sim = Sim::start();
    let url = redis.url();
    let env = [("KV_URL", url.as_str()), ("KV_PASSWORD_FILE", password_file.to_str().expect("utf-8"))];
    let host = Host::with_sim(&sim, "rotation-key", &env);
    assert_eq!(get(host.addr, "/MSFT/7").status, 200);
    // Read before the rotation: while the host falls back, it answers from its copy (no upstream call then).
    assert_eq!(get(host.addr, "/IBM/9").status, 200);
    assert_eq!(host.metric("stock_host_kv_fallback"), 0.0, "the old password opens Redis");

    // Rotate as an operator would: Redis first, then the Secret; then every connection is dropped.
    let admin = redis::Client::open(format!("redis://:{OLD}@127.0.0.1:{}", redis.port)).expect("client");
    let mut admin = admin.get_connection().expect("the old password works before the rotation");
    redis::cmd("CONFIG").arg("SET").arg("requirepass").arg(NEW).exec(&mut admin).expect("CONFIG SET requirepass");
    std::fs::write(&password_file, format!("{NEW}\n")).expect("rotated password file");
    redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("normal").exec(&mut admin).expect("CLIENT KILL");

    let mut served = 0;
    wait_until(Duration::from_secs(15), "the host is back on Redis with the new password", || {
        served += 1;
        assert_eq!(get(host.addr, &format!("/IBM/{}", served % 9 + 1)).status, 200, "no request fails during the rotation");
        host.metric("stock_host_kv_fallback") == 0.0 && host.logs().contains("KV_PASSWORD_FILE changed")
    });
    assert_eq!(get(host.addr, "/AAPL/7").status, 200);
    let fresh = redis::Client::open(format!("redis://:{NEW}@127.0.0.1:{}", redis.port)).expect("client");
    let mut fresh = fresh.get_connection().expect("the new password works");
    let keys: Vec<String> = redis::cmd("KEYS").arg("stock:*AAPL*").query(&mut fresh).expect("KEYS");
    assert!(!keys.is_empty(), "a series fetched after the rotation is in Redis: the host writes with the new password");
    let logs = host.logs();
    assert!(!logs.contains(OLD) && !logs.contains(NEW), "no password in the log");
}
