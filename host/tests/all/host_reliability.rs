//! Faults a production upstream, client and pod produce, each through the real host and simulator.
//! Regression tests for the defects probing found are named after them (issue 12).

use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::*;

#[test]
fn one_hanging_symbol_does_not_stall_cached_reads_of_others() {
    // Defects 1 and 2: waiters for a hanging symbol held every instance slot, and impatient waiters
    // became leaders, so one symbol made dozens of upstream calls and a cached HIT took seconds.
    let sim = Sim::start();
    let host = Host::with_sim(&sim, "hang-key", &[("UPSTREAM_TIMEOUT", "3s"), ("REQUEST_TIMEOUT", "6s")]);
    assert_eq!(get(host.addr, "/MSFT/7").status, 200);
    sim.fault("hang", 0, None);
    let addr = host.addr;
    let waiters: Vec<_> =
        (0..300).map(|_| std::thread::spawn(move || try_request(addr, "GET", "/NVDA/3", Duration::from_secs(30)))).collect();
    wait_until(Duration::from_secs(10), "NVDA waiters fill their share of slots", || host.metric("stock_host_in_flight_requests") >= 32.0);
    let mut latencies: Vec<Duration> = (0..50)
        .map(|_| {
            let started = Instant::now();
            let reply = get(addr, "/MSFT/7");
            assert_eq!((reply.status, reply.header("x-cache")), (200, Some("HIT")));
            started.elapsed()
        })
        .collect();
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    assert!(p99 < Duration::from_millis(50), "cached HIT p99 {p99:?} behind a hanging symbol; all: {latencies:?}");
    assert_eq!(sim.calls_for("NVDA"), 1, "one upstream call for the hanging symbol until its timeout");
    wait_until(Duration::from_secs(10), "the leader's timeout is recorded by the breaker", || {
        get(addr, "/circuit-breaker").json()["consecutive_failures"].as_u64().unwrap_or(0) >= 1
    });
    sim.fault("none", 0, None);
    for waiter in waiters {
        let reply = waiter.join().expect("waiter").expect("every waiter gets an answer");
        assert!(matches!(reply.status, 200 | 503 | 504), "waiter got {}: {}", reply.status, reply.body);
    }
}

#[test]
fn an_orphaned_single_flight_ticket_expires_instead_of_causing_a_false_504() {
    // Defect 3: a leader killed by the host deadline left its ticket; the next request waited it out
    // and answered 504 without calling upstream. Now the ticket's lease runs out and the next caller leads.
    let sim = Sim::start();
    let host = Host::with_sim(&sim, "orphan-key", &[("UPSTREAM_TIMEOUT", "2s"), ("REQUEST_TIMEOUT", "1s")]);
    sim.fault("hang", 0, Some(1));
    assert_eq!(get(host.addr, "/IBM/3").status, 504, "the host deadline kills the leader mid-call");
    std::thread::sleep(Duration::from_millis(3_200)); // the leader's lease: upstream timeout + 2 s grace
    let started = Instant::now();
    let reply = get(host.addr, "/IBM/3");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(started.elapsed() < Duration::from_millis(900), "took {:?}", started.elapsed());
    assert_eq!(sim.calls_for("IBM"), 2);
}

#[test]
fn a_request_without_a_host_header_is_answered_like_any_other() {
    // Defect 4: HTTP/1.0 without Host answered 500 internal-error and counted a 5xx.
    let sim = Sim::start();
    let host = Host::with_sim(&sim, "nohost-key", &[]);
    let answer = raw_exchange(host.addr, b"GET /MSFT/7 HTTP/1.0\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""symbol":"MSFT""#), "{answer}");
}

#[test]
fn an_authority_form_target_is_a_bad_request_not_the_root() {
    let sim = Sim::start();
    let host = Host::with_sim(&sim, "authority-key", &[]);
    let answer = raw_exchange(host.addr, b"GET evil.example:443 HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("invalid-path"), "{answer}");
    assert_eq!(sim.calls(), 0, "an authority-form target calls no upstream");
    // Positive control: an origin-form request to the same host is counted, so the zero above was measured.
    assert_eq!(get(host.addr, "/MSFT/7").status, 200);
    assert_eq!(sim.calls(), 1, "an ordinary request reaches the simulator");
}

#[test]
fn the_api_key_appears_in_no_log_line_even_at_trace_level() {
    // Defect 5: wasmtime-wasi-http's trace events printed the outgoing URL with apikey=...
    const KEY: &str = "trace-level-secret-key";
    let sim = Sim::start();
    let filter = "trace,cranelift_codegen=warn,cranelift_frontend=warn,regalloc2=warn,wasmtime_cranelift=warn,wasmtime_environ=warn";
    let host = Host::with_sim(&sim, KEY, &[("LOG_LEVEL", filter)]);
    assert_eq!(get(host.addr, "/MSFT/7").status, 200);
    sim.fault("bad-key", 0, Some(1));
    get(host.addr, "/AAPL/2");
    wait_until(Duration::from_secs(5), "the upstream calls are logged", || host.logs().matches("apikey=REDACTED").count() >= 2);
    let logs = host.logs();
    assert!(logs.contains("wasmtime_wasi_http") || logs.contains("hyper"), "trace events from the HTTP stack are there to check");
    assert!(
        !logs.contains(KEY),
        "the key leaked at trace level:\n{}",
        logs.lines().filter(|l| l.contains(KEY)).collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn connections_past_the_cap_are_shed_politely_and_service_recovers() {
    // Defect 6: with descriptors exhausted, new clients hung for 15 s while the log flooded.
    let sim = Sim::start();
    let host = Host::with_sim(&sim, "conn-key", &[("MAX_CONNECTIONS", "8")]);
    let idle: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(host.addr).expect("connect")).collect();
    wait_until(Duration::from_secs(5), "the idle connections are counted", || host.metric("stock_host_open_connections") == 8.0);
    let started = Instant::now();
    let shed = try_request(host.addr, "GET", "/MSFT/7", Duration::from_secs(5)).expect("a shed client still gets an answer");
    assert_eq!((shed.status, shed.header("retry-after")), (503, Some("1")), "{}", shed.body);
    assert!(started.elapsed() < Duration::from_secs(1), "shed at once, took {:?}", started.elapsed());
    assert_eq!(host.metric("stock_host_connections_shed_total"), 1.0);
    drop(idle);
    wait_until(Duration::from_secs(5), "closed connections free their places", || host.metric("stock_host_open_connections") == 0.0);
    assert_eq!(get(host.addr, "/MSFT/7").status, 200);
}

#[test]
fn unknown_symbols_and_a_refused_key_do_not_burn_the_quota() {
    // Defect 7: every request for an unknown symbol, and every request with a refused key, called upstream.
    let sim = Sim::start();
    let host = Host::with_sim(&sim, "negative-key", &[]);
    for _ in 0..3 {
        assert_eq!(get(host.addr, "/NOSUCH/2").status, 404);
    }
    assert_eq!(sim.calls_for("NOSUCH"), 1, "unknown symbols are remembered");
    let addr = host.addr;
    let concurrent: Vec<_> = (0..10).map(|_| std::thread::spawn(move || get(addr, "/NOPE/2"))).collect();
    for client in concurrent {
        let reply = client.join().expect("client");
        assert_eq!(reply.status, 404, "{}", reply.body);
    }
    assert_eq!(sim.calls_for("NOPE"), 1, "concurrent fast failures make one call");
    sim.fault("bad-key", 0, None);
    for _ in 0..3 {
        assert_eq!(get(host.addr, "/AAPL/2").json()["type"], "https://stock-service.dev/problems/upstream-misconfigured");
    }
    assert_eq!(sim.calls_for("AAPL"), 1, "a refused key is backed off");
}

#[test]
fn the_daily_quota_is_enforced_with_retry_after_and_stale_or_cached_data_still_served() {
    let sim = Sim::start();
    // The whole quota for any symbol: the share kept from new symbols has its own test.
    let host = Host::with_sim(&sim, "quota-key", &[("UPSTREAM_DAILY_QUOTA", "2"), ("NEW_SYMBOL_QUOTA_PERCENT", "100")]);
    assert_eq!(get(host.addr, "/MSFT/7").status, 200);
    assert_eq!(get(host.addr, "/IBM/7").status, 200);
    let spent = get(host.addr, "/AAPL/7");
    assert_eq!(spent.status, 503, "{}", spent.body);
    assert_eq!(spent.json()["type"], "https://stock-service.dev/problems/upstream-quota-exhausted");
    let retry: u32 = spent.header("retry-after").and_then(|r| r.parse().ok()).expect("Retry-After");
    assert!((1..=86_400).contains(&retry), "until UTC midnight: {retry}");
    assert_eq!(sim.calls(), 2, "no call past the quota");
    assert_eq!(get(host.addr, "/MSFT/3").header("x-cache"), Some("HIT"), "cached data is still served");
    assert_eq!(host.metric("stock_api_upstream_quota_used"), 2.0);
    assert_eq!(host.metric("stock_api_upstream_quota_limit"), 2.0);
}

#[test]
fn a_scanner_cannot_spend_the_day_and_an_allowed_list_makes_unknown_words_cost_nothing() {
    let words: Vec<String> = ["admin", "wp-login", "version", "login", ".env"]
        .iter()
        .map(|w| (*w).to_owned())
        .chain((0..45).map(|i| format!("scan{i}")))
        .collect();
    let sim = Sim::start();
    let host = Host::with_sim(&sim, "scanner-key", &[("CACHE_TTL", "2s")]);
    assert_eq!(get(host.addr, "/MSFT/3").status, 200, "MSFT has answered: it is a known symbol from now on");
    let mut refused = 0;
    for word in &words {
        let reply = get(host.addr, &format!("/{word}"));
        match reply.status {
            404 => assert_eq!(reply.json()["type"], "https://stock-service.dev/problems/unknown-symbol"),
            503 => {
                assert_eq!(reply.json()["type"], "https://stock-service.dev/problems/upstream-quota-exhausted");
                assert!(reply.json()["detail"].as_str().is_some_and(|d| d.contains("symbols not served before")), "{}", reply.body);
                refused += 1;
            }
            other => panic!("/{word}: {other} {}", reply.body),
        }
    }
    // UPSTREAM_DAILY_QUOTA 25 and NEW_SYMBOL_QUOTA_PERCENT 50: new symbols may spend 13 calls, MSFT's first included.
    assert_eq!(sim.calls(), 13, "50 unknown words spent only the new symbols' share");
    assert_eq!(refused, 50 - 12);
    std::thread::sleep(Duration::from_millis(2_100));
    let refreshed = get(host.addr, "/MSFT/3");
    assert_eq!((refreshed.status, refreshed.header("x-cache")), (200, Some("MISS")), "a known symbol whose TTL ran out is refreshed");
    assert_eq!(sim.calls_for("MSFT"), 2);
    assert_eq!(host.metric("stock_api_upstream_quota_used"), 14.0);

    let listed = Sim::start();
    let host = Host::with_sim(&listed, "allowed-key", &[("ALLOWED_SYMBOLS", "MSFT,IBM")]);
    for word in &words {
        let reply = get(host.addr, &format!("/{word}"));
        assert_eq!(reply.status, 404, "/{word}: {}", reply.body);
    }
    assert_eq!(listed.calls(), 0, "with an allowed list, the 50 words cost no upstream call");
    assert_eq!(get(host.addr, "/IBM/3").status, 200);
    assert_eq!(listed.calls(), 1);
}

#[test]
fn a_transient_upstream_failure_is_retried_once() {
    let sim = Sim::start();
    let host = Host::with_sim(&sim, "retry-key", &[]);
    sim.fault("http-503", 0, Some(1));
    let reply = get(host.addr, "/MSFT/7");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(sim.calls(), 2, "one failed call and one retry");
    sim.fault("http-500", 0, Some(2));
    assert_eq!(get(host.addr, "/IBM/7").status, 502);
    assert_eq!(sim.calls_for("IBM"), 1, "a 500 is not retried");
}

#[test]
fn days_have_one_rule_canonical_decimals() {
    let sim = Sim::start();
    let host = Host::with_sim(&sim, "days-key", &[]);
    for (path, status) in [("/MSFT/7", 200), ("/MSFT/100", 200), ("/MSFT/007", 400), ("/MSFT/0100", 400), ("/MSFT/0", 400)] {
        assert_eq!(get(host.addr, path).status, status, "{path}");
    }
}

#[test]
fn requests_cut_off_by_the_drain_timeout_make_the_exit_code_non_zero() {
    let sim = Sim::start();
    let mut host = Host::with_sim(&sim, "drain-timeout-key", &[("DRAIN_TIMEOUT", "1s"), ("UPSTREAM_TIMEOUT", "8s")]);
    sim.fault("latency", 5_000, None);
    let addr = host.addr;
    let slow = std::thread::spawn(move || try_request(addr, "GET", "/MSFT/7", Duration::from_secs(10)));
    wait_until(Duration::from_secs(5), "the slow request is in flight", || host.metric("stock_host_in_flight_requests") == 1.0);
    host.process.terminate();
    // `wait_exit` fails the test if the host is still running (a hang); `None` is an exit by signal, not a code.
    let code = host.process.wait_exit(Duration::from_secs(10));
    assert!(matches!(code, Some(c) if c != 0), "a drain that cut requests off exits with a non-zero code, got {code:?}");
    assert!(host.logs().contains("drain timeout passed"), "{}", host.logs());
    let _ = slow.join();
}
