//! The host's shared keyvalue store: one cache and one breaker for every request and instance.

use std::time::Duration;

use crate::common::*;

#[test]
fn miss_then_hit_and_other_windows_come_from_the_one_cached_series() {
    let sim = Sim::start();
    let host = Host::with_sim(&sim, "cache-test-key", &[]);
    let first = get(host.addr, "/MSFT/7");
    assert_eq!((first.status, first.header("x-cache")), (200, Some("MISS")), "{}", first.body);
    let second = get(host.addr, "/MSFT/7");
    assert_eq!(second.header("x-cache"), Some("HIT"));
    assert_eq!(second.body, first.body);
    for days in [1, 30, 100] {
        let other = get(host.addr, &format!("/msft/{days}"));
        assert_eq!((other.status, other.header("x-cache")), (200, Some("HIT")), "days {days}");
        assert_eq!(other.json()["ndays"], days);
    }
    assert_eq!(sim.calls(), 1, "one upstream call served every window");
    let age: u64 = second.header("age").and_then(|a| a.parse().ok()).expect("Age header");
    assert!(age <= 2);
    assert!(second.header("cache-control").is_some_and(|c| c.starts_with("public, max-age=")));
}

#[test]
fn fifty_concurrent_misses_for_one_symbol_make_one_upstream_call() {
    let sim = Sim::start();
    let host = Host::with_sim(&sim, "flight-test-key", &[]);
    // Slow the upstream so every request arrives while the first call is still in flight.
    sim.fault("latency", 400, None);
    let addr = host.addr;
    let threads: Vec<_> = (0..50).map(|i| std::thread::spawn(move || get(addr, &format!("/NVDA/{}", 1 + i % 10)))).collect();
    let replies: Vec<Reply> = threads.into_iter().map(|t| t.join().expect("client thread")).collect();
    for reply in &replies {
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    assert_eq!(sim.calls(), 1, "single flight: exactly one upstream call for 50 concurrent misses");
    assert!(replies.iter().all(|r| r.json()["symbol"] == "NVDA"));
}

#[test]
fn stale_data_is_served_when_the_upstream_fails_after_the_ttl() {
    let sim = Sim::start();
    let host = Host::with_sim(&sim, "stale-test-key", &[("CACHE_TTL", "1")]);
    assert_eq!(get(host.addr, "/IBM/3").header("x-cache"), Some("MISS"));
    std::thread::sleep(Duration::from_millis(1100));
    sim.fault("information", 0, None);
    let stale = get(host.addr, "/IBM/3");
    assert_eq!((stale.status, stale.header("x-cache")), (200, Some("STALE")), "{}", stale.body);
    let nothing_cached = get(host.addr, "/AAPL/3");
    assert_eq!(nothing_cached.status, 503, "nothing stale to serve: {}", nothing_cached.body);
    assert_eq!(nothing_cached.header("retry-after"), Some("3600"));
}

#[test]
fn the_breaker_is_shared_opens_after_the_threshold_and_stops_upstream_calls() {
    let sim = Sim::start();
    let host = Host::with_sim(&sim, "breaker-test-key", &[("CIRCUIT_BREAKER_THRESHOLD", "2"), ("CIRCUIT_BREAKER_TIMEOUT", "30s")]);
    sim.fault("http-500", 0, None);
    assert_eq!(get(host.addr, "/MSFT/7").status, 502);
    assert_eq!(get(host.addr, "/AAPL/7").status, 502);
    let open = get(host.addr, "/IBM/7");
    assert_eq!(open.status, 503, "{}", open.body);
    assert_eq!(open.json()["type"], "https://stock-service.dev/problems/circuit-open");
    let retry: u32 = open.header("retry-after").and_then(|r| r.parse().ok()).expect("Retry-After");
    assert!((1..=30).contains(&retry));
    assert_eq!(sim.calls(), 2, "an open breaker makes no upstream call");
    let state = get(host.addr, "/circuit-breaker").json();
    assert_eq!(state["state"], "open");
    assert_eq!(host.metric("stock_api_circuit_breaker_state"), 1.0);
    assert_eq!(host.metric("stock_api_circuit_breaker_transitions_total{state=\"open\"}"), 1.0);
}

#[test]
fn the_breaker_gauge_follows_what_the_running_build_reports_not_a_keyvalue_layout() {
    // The fixture build keeps its breaker under keys of its own layout. The host learns the state only
    // through stock:service/status, so the gauge still follows it; a host decoding keyvalue would show 0.
    let sim = Sim::start();
    let fixture = fixture_component_path();
    let host = Host::with_sim(
        &sim,
        "fixture-breaker-key",
        &[("COMPONENT", fixture.to_str().expect("utf-8")), ("CIRCUIT_BREAKER_THRESHOLD", "1"), ("CIRCUIT_BREAKER_TIMEOUT", "30s")],
    );
    assert_eq!(host.metric("stock_api_circuit_breaker_state"), 0.0);
    sim.fault("http-500", 0, None);
    assert_eq!(get(host.addr, "/MSFT/7").status, 502);
    assert_eq!(get(host.addr, "/circuit-breaker").json()["state"], "open");
    assert_eq!(host.metric("stock_api_circuit_breaker_state"), 1.0);
    assert_eq!(host.metric("stock_api_circuit_breaker_transitions_total{state=\"open\"}"), 1.0);
    assert_eq!(host.metric("stock_api_circuit_breaker_transitions_total{state=\"closed\"}"), 0.0);
}

#[test]
fn each_answer_names_the_build_that_produced_it() {
    let sim = Sim::start();
    let fixture = fixture_component_path();
    let host = Host::with_sim(&sim, "version-key", &[("COMPONENT", fixture.to_str().expect("utf-8"))]);
    let want = stock_host::version_of(&std::fs::read(&fixture).expect("fixture"));
    let released = stock_host::version_of(&std::fs::read(component_path()).expect("component"));
    assert_ne!(want, released, "the fixture is a different build");
    for path in ["/MSFT/2", "/health", "/ready", "/_fixture/trap"] {
        assert_eq!(get(host.addr, path).header("x-component-version"), Some(want.as_str()), "{path}");
    }
    assert_eq!(get(host.addr, "/ready").json()["component_version"], want.as_str());
}
