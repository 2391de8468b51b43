//! The component, unchanged, under the stock `wasmtime serve` and the simulator: windows,
//! averages, configuration defaults and every error status.

use std::time::{Duration, Instant};

use crate::common::*;

const KEY: &str = "serve-test-key-5f1e";

fn serve(sim: &Sim, extra: &[(&str, &str)]) -> WasmtimeServe {
    let url = sim.url();
    let mut config = vec![("apikey", KEY), ("alphavantage_url", url.as_str()), ("upstream_timeout", "2")];
    config.extend_from_slice(extra);
    WasmtimeServe::start(&config)
}

/// The exact body the service must produce for `symbol` and `days`, from the simulator's own data.
fn expected_body(sim: &Sim, symbol: &str, days: usize) -> String {
    let closes = oracle_closes(&sim.series(symbol));
    let window = &closes[closes.len().saturating_sub(days)..];
    let prices: Vec<String> =
        window.iter().map(|(date, close)| format!(r#"{{"date":"{date}","close":{}}}"#, render_ten_thousandths(*close))).collect();
    let values: Vec<i64> = window.iter().map(|(_, c)| *c).collect();
    format!(
        r#"{{"symbol":"{}","ndays":{},"prices":[{}],"average":{}}}"#,
        symbol.to_ascii_uppercase(),
        window.len(),
        prices.join(","),
        oracle_average(&values)
    )
}

#[test]
fn windows_and_exact_averages_for_several_symbols_and_day_counts() {
    let sim = Sim::start();
    let server = serve(&sim, &[]);
    for (symbol, days) in [("MSFT", 7), ("AAPL", 1), ("IBM", 30), ("BRK.B", 100), ("NVDA", 13), ("GOOGL", 2)] {
        let reply = get(server.addr, &format!("/{symbol}/{days}"));
        assert_eq!(reply.status, 200, "{symbol}/{days}: {}", reply.body);
        assert_eq!(reply.body, expected_body(&sim, symbol, days), "{symbol}/{days}");
        assert_eq!(reply.header("content-type"), Some("application/json"));
        assert_eq!(reply.header("x-cache"), Some("MISS"), "wasmtime serve keeps no store between requests");
    }
    let lower = get(server.addr, "/msft/3");
    assert_eq!(lower.body, expected_body(&sim, "MSFT", 3), "symbols are case-insensitive and answered upper-case");
}

#[test]
fn root_and_symbol_routes_use_the_configured_defaults() {
    let sim = Sim::start();
    let server = serve(&sim, &[("symbol", "aapl"), ("ndays", "4")]);
    assert_eq!(get(server.addr, "/").body, expected_body(&sim, "AAPL", 4));
    assert_eq!(get(server.addr, "/IBM").body, expected_body(&sim, "IBM", 4));
    let defaults = serve(&sim, &[]);
    assert_eq!(get(defaults.addr, "/").body, expected_body(&sim, "MSFT", 7));
}

#[test]
fn client_errors_are_problem_documents() {
    let sim = Sim::start();
    let server = serve(&sim, &[]);
    for (method, path, status, slug) in [
        ("GET", "/TOOLONGSYMBOL/7", 400, "invalid-symbol"),
        ("GET", "/MS$FT", 400, "invalid-symbol"),
        ("GET", "/MSFT/0", 400, "invalid-days"),
        ("GET", "/MSFT/101", 400, "invalid-days"),
        ("GET", "/MSFT/seven", 400, "invalid-days"),
        ("GET", "/MSFT/7/extra", 400, "invalid-path"),
        ("GET", "/NOSUCH/7", 404, "unknown-symbol"),
        ("POST", "/MSFT/7", 405, "method-not-allowed"),
        ("DELETE", "/", 405, "method-not-allowed"),
    ] {
        let reply = request(server.addr, method, path);
        assert_eq!(reply.status, status, "{method} {path}: {}", reply.body);
        assert_eq!(reply.header("content-type"), Some("application/problem+json"), "{method} {path}");
        let problem = reply.json();
        assert_eq!(problem["type"], format!("https://stock-service.dev/problems/{slug}"), "{method} {path}");
        assert_eq!(problem["status"], status);
        assert_eq!(problem["instance"], path);
        if status == 405 {
            assert_eq!(reply.header("allow"), Some("GET, HEAD"));
        }
    }
    assert_eq!(sim.calls(), 1, "only the unknown symbol reached the upstream");
}

#[test]
fn upstream_failures_map_to_502_503_and_504() {
    let sim = Sim::start();
    let server = serve(&sim, &[]);
    for (mode, status, slug, retry_after) in [
        ("http-500", 502, "bad-upstream-response", None),
        ("http-503", 502, "bad-upstream-response", None),
        ("malformed", 502, "bad-upstream-response", None),
        ("empty", 502, "bad-upstream-response", None),
        ("empty-series", 502, "bad-upstream-response", None),
        ("reset", 502, "bad-upstream-response", None),
        ("note", 503, "upstream-rate-limited", Some("60")),
        ("information", 503, "upstream-rate-limited", Some("3600")),
        ("bad-key", 503, "upstream-misconfigured", Some("3600")),
    ] {
        sim.fault(mode, 0, None);
        let reply = get(server.addr, "/MSFT/5");
        assert_eq!(reply.status, status, "fault {mode}: {}", reply.body);
        assert_eq!(reply.json()["type"], format!("https://stock-service.dev/problems/{slug}"), "fault {mode}");
        assert_eq!(reply.header("retry-after"), retry_after, "fault {mode}");
        assert!(!reply.raw().contains(KEY), "fault {mode} leaked the key: {}", reply.raw());
    }
    sim.fault("none", 0, None);
    assert_eq!(get(server.addr, "/MSFT/5").status, 200, "recovers once the upstream does");
}

#[test]
fn a_hanging_upstream_is_a_504_within_the_timeout() {
    let sim = Sim::start();
    let server = serve(&sim, &[]);
    sim.fault("hang", 0, None);
    let started = Instant::now();
    let reply = get(server.addr, "/MSFT/7");
    let took = started.elapsed();
    assert_eq!(reply.status, 504, "{}", reply.body);
    assert_eq!(reply.json()["type"], "https://stock-service.dev/problems/upstream-timeout");
    assert!(took >= Duration::from_millis(1900) && took < Duration::from_secs(5), "took {took:?} with upstream_timeout=2");
}

#[test]
fn the_key_never_appears_in_answers_or_logs() {
    let sim = Sim::start();
    let server = serve(&sim, &[]);
    for path in ["/MSFT/7", "/NOSUCH", "/circuit-breaker", "/openapi.json", "/"] {
        assert!(!get(server.addr, path).raw().contains(KEY), "{path}");
    }
    sim.fault("http-500", 0, None);
    assert!(!get(server.addr, "/MSFT/2").raw().contains(KEY));
    wait_until(Duration::from_secs(5), "wasmtime serve prints the component's upstream lines", || {
        server.logs().contains("apikey=REDACTED")
    });
    let logs = server.logs();
    assert!(logs.contains("apikey=REDACTED"), "the component logs redacted upstream URLs:\n{logs}");
    assert!(!logs.contains(KEY), "key in wasmtime serve output:\n{logs}");
}

#[test]
fn reserved_paths_are_not_symbols() {
    let sim = Sim::start();
    let server = serve(&sim, &[]);
    let openapi = get(server.addr, "/openapi.json");
    assert_eq!(openapi.status, 200);
    assert_eq!(openapi.json()["openapi"], "3.1.0");
    let breaker = get(server.addr, "/circuit-breaker").json();
    assert_eq!(breaker["state"], "closed");
    assert_eq!(get(server.addr, "/health").status, 200);
    assert_eq!(get(server.addr, "/ready").status, 200);
    assert_eq!(get(server.addr, "/docs").status, 404);
    assert_eq!(sim.calls(), 0, "no reserved path calls the upstream");
}

#[test]
fn head_answers_cleanly_under_both_servers() {
    // Under wasmtime serve every HEAD used to log `cannot write response: finish: HttpResponseBodySize`.
    let sim = Sim::start();
    let server = serve(&sim, &[]);
    let host = Host::with_sim(&sim, "head-key", &[]);
    for addr in [server.addr, host.addr] {
        for path in ["/MSFT/7", "/openapi.json", "/NOSUCH/2"] {
            let head = request(addr, "HEAD", path);
            let get = get(addr, path);
            assert_eq!(head.status, get.status, "{path}");
            assert!(head.body.is_empty(), "{path}: HEAD has no body");
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(!server.logs().contains("cannot write response"), "{}", server.logs());
    assert!(!host.logs().contains("cannot write response"), "{}", host.logs());
}
