//! Instance reuse: one instance serves many requests one after another, never sharing data between
//! them; instances that trapped are dropped; MAX_INSTANCE_REUSE=1 turns reuse off.

use crate::common::*;

const PATHS: [&str; 4] = ["/MSFT/7", "/IBM/3", "/MSFT/2", "/NOSUCH/5"];

#[test]
fn two_requests_through_one_reused_instance_cannot_see_each_others_data() {
    let sim = Sim::start();
    // One slot: every request goes through the same instance, one after another.
    let reused = Host::with_sim(&sim, "reuse-key", &[("MAX_CONCURRENCY", "1")]);
    let fresh = Host::with_sim(&sim, "reuse-key", &[("MAX_CONCURRENCY", "1"), ("MAX_INSTANCE_REUSE", "1")]);
    for path in PATHS {
        let (a, b) = (get(reused.addr, path), get(fresh.addr, path));
        assert_eq!((a.status, &a.body), (b.status, &b.body), "{path}: a reused instance answers exactly like a fresh one");
        let symbol = path.split('/').nth(1).expect("symbol");
        for other in ["MSFT", "IBM", "NOSUCH"].iter().filter(|s| **s != symbol) {
            assert!(!a.body.contains(other), "{path} shows data of {other}: {}", a.body);
        }
    }
    // The startup smoke test (GET /openapi.json through the handler) made the first instance; with reuse
    // it serves every request after it.
    assert_eq!(reused.metric("stock_host_instantiation_seconds_count"), 1.0, "one instance served them all");
    assert_eq!(reused.metric("stock_host_instance_reuses_total"), PATHS.len() as f64);
    assert_eq!(fresh.metric("stock_host_instance_reuses_total"), 0.0, "MAX_INSTANCE_REUSE=1 turns reuse off");
    assert_eq!(fresh.metric("stock_host_instantiation_seconds_count"), (PATHS.len() + 1) as f64, "the smoke test's and one per request");
}

#[test]
fn an_instance_that_trapped_or_timed_out_is_never_reused() {
    let sim = Sim::start();
    let fixture = fixture_component_path();
    let host = Host::with_sim(
        &sim,
        "trap-reuse-key",
        &[("COMPONENT", fixture.to_str().expect("utf-8")), ("MAX_CONCURRENCY", "1"), ("REQUEST_TIMEOUT", "1s")],
    );
    assert_eq!(get(host.addr, "/MSFT/7").status, 200);
    assert_eq!(get(host.addr, "/_fixture/trap").status, 500, "the reused instance traps");
    assert_eq!(get(host.addr, "/MSFT/7").status, 200);
    assert_eq!(host.metric("stock_host_instantiation_seconds_count"), 2.0, "the trapped instance was replaced");
    assert_eq!(get(host.addr, "/_fixture/spin").status, 504);
    assert_eq!(get(host.addr, "/MSFT/3").status, 200);
    assert_eq!(host.metric("stock_host_instantiation_seconds_count"), 3.0, "the timed-out instance was replaced");
}
