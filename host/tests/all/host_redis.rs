//! Replicas sharing one cache, one breaker, one quota and one single flight through a real Redis, and
//! what happens when Redis goes away and comes back.

use std::sync::Arc;
use std::time::Duration;

use stock_host::keyvalue::contract;
use stock_host::keyvalue::redis::{RedisBucket, RedisLink, RedisSettings};
use stock_host::keyvalue::{KvStore, MemoryCache};
use stock_host::metrics::Metrics;

use crate::common::*;

fn two_hosts(sim: &Sim, redis: &RedisServer, env: &[(&str, &str)]) -> (Host, Host) {
    let url = redis.url();
    let mut all = vec![("KV_URL", url.as_str())];
    all.extend_from_slice(env);
    (Host::with_sim(sim, "shared-key", &all), Host::with_sim(sim, "shared-key", &all))
}

#[test]
fn the_redis_backend_keeps_the_same_store_contract_as_memory() {
    let redis = RedisServer::start();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let settings = RedisSettings {
            url: redis.url(),
            password: None,
            prefix: "contract:".into(),
            timeout: Duration::from_millis(500),
            cache_expiry: Duration::from_secs(3600),
        };
        let link = RedisLink::new(&settings, Arc::new(Metrics::new().expect("metrics"))).expect("link");
        assert!(link.connect().await, "redis answers");
        let bucket = RedisBucket::new(link.clone(), &settings.prefix, "state", None, Arc::new(MemoryCache::new(10)));
        contract::check(&bucket).await;
        assert_eq!(bucket.backend(), "redis", "the contract ran against Redis, not the local twin");
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
fn a_redis_outage_costs_no_5xx_and_sharing_comes_back_on_its_own() {
    let sim = Sim::start();
    let mut redis = RedisServer::start();
    let (a, b) = two_hosts(&sim, &redis, &[("KV_TIMEOUT", "200ms")]);
    assert_eq!(get(a.addr, "/MSFT/7").status, 200);
    redis.kill();
    for i in 0..20 {
        let host = if i % 2 == 0 { &a } else { &b };
        let reply = get(host.addr, if i % 3 == 0 { "/IBM/3" } else { "/MSFT/7" });
        assert_eq!(reply.status, 200, "request {i} during the outage: {}", reply.body);
    }
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
