//! Hostile input never yields a 5xx, a hang or a crash, and never costs an upstream call.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use crate::common::*;

/// Paths a scanner, a fuzzer or a confused client sends.
fn nasty_paths() -> Vec<String> {
    let mut paths: Vec<String> = [
        "/%2F",
        "/MSFT%2F7",
        "/..",
        "/../etc/passwd",
        "/%2e%2e/%2e%2e",
        "/MSFT/..",
        "/./MSFT",
        "/MSFT/%00",
        "/%00",
        "/MS%00FT/7",
        "/%0d%0aSet-Cookie:x",
        "/%1b[31m",
        "/%ff%fe",
        "/%C3%A9",
        "/caf%C3%A9/7",
        "/MSFT/7/extra",
        "/MSFT//7",
        "//",
        "///",
        "/MSFT/",
        "/MSFT/7?",
        "/MSFT/7?days=1&symbol=X",
        "/?symbol=MSFT",
        "/MSFT/-1",
        "/MSFT/1e2",
        "/MSFT/7.5",
        "/MSFT/0x10",
        "/MSFT/99999999999999999999",
        "/MSFT/+7",
        "/MSFT/%207",
        "/MSFT/007",
        "/MSFT/abc",
        "/.well-known/security.txt",
        "/favicon.ico",
        "/robots.txt",
        "/metrics",
        "/admin",
        "/health/x",
        "/ready?x=1",
        "/circuit-breaker/",
        "/openapi.json/x",
        "/docs/x",
        "/%",
        "/%zz",
        "/MSFT#frag",
        "/a.b-c/1",
        "/-/1",
        "/./1",
        "/BRK.B/100",
        "/brk-b/101",
    ]
    .iter()
    .map(|p| p.to_string())
    .collect();
    paths.push(format!("/{}", "A".repeat(10_000)));
    paths.push(format!("/MSFT/{}", "9".repeat(5_000)));
    paths.push(format!("/{}/7", "%41".repeat(3_000)));
    paths
}

#[test]
fn nasty_paths_and_every_method_get_a_4xx_or_a_2xx_never_a_5xx() {
    let sim = Sim::start();
    let host = Host::with_sim(&sim, "hostile-key", &[]);
    for path in nasty_paths() {
        let reply = try_request(host.addr, "GET", &path, Duration::from_secs(10)).unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert!(reply.status < 500, "GET {} answered {}: {}", &path[..path.len().min(60)], reply.status, reply.body);
    }
    for method in ["HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND", "BREW"] {
        let reply = try_request(host.addr, method, "/MSFT/7", Duration::from_secs(10)).unwrap_or_else(|e| panic!("{method}: {e}"));
        assert!(reply.status < 500, "{method} answered {}", reply.status);
        if method != "HEAD" {
            assert_eq!(reply.status, 405, "{method}");
        }
    }
    let stats = sim.stats();
    for symbol in stats.by_symbol.keys() {
        let valid = (1..=10).contains(&symbol.len())
            && symbol.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        assert!(valid, "an invalid symbol reached the upstream: {symbol:?}");
    }
    // Positive control: valid symbols among the paths did reach the simulator, so the check above saw real calls.
    for symbol in ["MSFT", "BRK.B", "A.B-C"] {
        assert!(stats.calls_for(symbol).is_some(), "{symbol} (a valid symbol in the list) never reached the simulator: {stats:?}");
    }
    assert_eq!(stats.calls, stats.by_symbol.values().sum::<u64>(), "every call has a symbol: {stats:?}");
    assert_eq!(get(host.addr, "/health").status, 200);
}

#[test]
fn oversized_heads_are_refused_with_431_and_the_host_carries_on() {
    let sim = Sim::start();
    let host = Host::with_sim(&sim, "headers-key", &[]);
    let big_header = format!("GET /MSFT/7 HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n", "a".repeat(1 << 20));
    let answer = raw_exchange(host.addr, big_header.as_bytes());
    assert_eq!(status_of(&answer, "a 1 MB header"), 431, "1 MB header: {}", &answer[..answer.len().min(200)]);
    let many: String = (0..10_000).map(|i| format!("X-H{i}: v\r\n")).collect();
    let answer = raw_exchange(host.addr, format!("GET /MSFT/7 HTTP/1.1\r\nHost: x\r\n{many}Connection: close\r\n\r\n").as_bytes());
    assert_eq!(status_of(&answer, "10,000 headers"), 431, "10,000 headers: {}", &answer[..answer.len().min(200)]);
    assert_eq!(get(host.addr, "/MSFT/7").status, 200);
}

#[test]
fn smuggling_shapes_are_rejected_and_bodies_are_not_read() {
    let sim = Sim::start();
    let host = Host::with_sim(&sim, "smuggle-key", &[]);
    let both = "POST /MSFT/7 HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /IBM/7 HTTP/1.1\r\nHost: x\r\n\r\n";
    let answer = raw_exchange(host.addr, both.as_bytes());
    assert!(matches!(status_of(&answer, "Content-Length with Transfer-Encoding"), 400 | 405), "{answer}");
    sim.assert_never_saw("IBM", "the smuggled request never ran");
    // A huge declared body is not read: the answer comes without the body being sent.
    let mut stream = TcpStream::connect(host.addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    stream.write_all(b"POST /MSFT/7 HTTP/1.1\r\nHost: x\r\nContent-Length: 104857600\r\n\r\n").expect("write");
    let mut head = [0u8; 12];
    std::io::Read::read_exact(&mut stream, &mut head).expect("an answer before the body");
    assert_eq!(&head, b"HTTP/1.1 405");
    // Positive control: the same symbol, asked plainly, does reach this simulator and is counted under that name.
    assert_eq!(get(host.addr, "/IBM/7").status, 200);
    assert_eq!(sim.stats().calls_for("IBM"), Some(1), "a plain request for the smuggled symbol reaches the simulator");
}

#[test]
fn pipelined_requests_are_answered_in_order_and_a_vanishing_client_costs_nothing() {
    let sim = Sim::start();
    let host = Host::with_sim(&sim, "pipeline-key", &[]);
    let answer = raw_exchange(host.addr, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /MSFT/2 HTTP/1.1\r\nHost: x\r\n\r\nGET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(answer.matches("HTTP/1.1 200").count(), 3, "{answer}");
    let ok = answer.find(r#"{"status":"ok"}"#).expect("health");
    let prices = answer.find(r#""symbol":"MSFT""#).expect("prices");
    let ready = answer.find(r#""status":"ready""#).expect("ready");
    assert!(ok < prices && prices < ready, "answers in order");
    for _ in 0..20 {
        let mut stream = TcpStream::connect(host.addr).expect("connect");
        stream.write_all(b"GET /IBM/30 HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
        drop(stream);
    }
    assert_eq!(get(host.addr, "/IBM/3").status, 200);
    assert_eq!(host.metric("stock_host_traps_total"), 0.0);
}

#[test]
fn a_component_exhausting_its_memory_costs_only_its_own_request() {
    let sim = Sim::start();
    let fixture = fixture_component_path();
    let host = Host::with_sim(&sim, "grow-key", &[("COMPONENT", fixture.to_str().expect("utf-8")), ("MAX_MEMORY_MIB", "16")]);
    let addr = host.addr;
    let others: Vec<_> = (0..8).map(|_| std::thread::spawn(move || get(addr, "/MSFT/7").status)).collect();
    let grown = get(host.addr, "/_fixture/grow");
    assert_eq!(grown.status, 500, "{}", grown.body);
    assert_eq!(grown.json()["type"], "https://stock-service.dev/problems/component-trap");
    assert!(others.into_iter().all(|t| t.join().expect("client") == 200), "other requests kept succeeding");
    assert_eq!(get(host.addr, "/MSFT/7").status, 200);
    assert_eq!(host.metric("stock_host_traps_total"), 1.0);
}

#[test]
fn schemathesis_finds_no_server_error_and_every_answer_conforms_to_the_served_document() {
    // Generated inputs for every documented operation, every check; bounded to stay within half a minute.
    let st = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/py/bin/st");
    assert!(st.exists(), "{} is missing: `make prereqs-python` (part of `make test`) installs schemathesis", st.display());
    let sim = Sim::start();
    // Unlimited quota: generated symbols are real upstream calls, and a spent quota is a documented 503.
    let host = Host::with_sim(&sim, "schemathesis-key", &[("UPSTREAM_DAILY_QUOTA", "0")]);
    let scratch = TempDir::new("schemathesis"); // it keeps a cache in its working directory
    let output = std::process::Command::new(st)
        .current_dir(&scratch.0)
        .args(["run", &format!("http://{}/openapi.json", host.addr), "--checks", "all", "--max-examples", "50", "--workers", "2"])
        .args(["--seed", "20261127"])
        .output()
        .expect("run schemathesis");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "schemathesis found problems:\n{report}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(report.contains("No issues found"), "{report}");
}

#[test]
fn well_known_paths_are_reserved_and_never_cost_an_upstream_call() {
    // Browsers, crawlers and stray scrapers ask for these on their own; the free tier has 25 calls a day.
    let sim = Sim::start();
    let host = Host::with_sim(&sim, "reserved-key", &[]);
    for path in ["/metrics", "/favicon.ico", "/robots.txt", "/.well-known/security.txt", "/docs/missing.js"] {
        let reply = get(host.addr, path);
        assert_eq!(reply.status, 404, "{path}: {}", reply.body);
        assert_eq!(reply.json()["type"], "https://stock-service.dev/problems/not-found", "{path}");
    }
    assert!(get(host.addr, "/metrics").body.contains("admin port"), "says where metrics are");
    assert_eq!(sim.calls(), 0, "no reserved path called the upstream");
    // Positive control: a prices request from the same host is counted, so the zero above was measured.
    assert_eq!(get(host.addr, "/MSFT/7").status, 200);
    assert_eq!(sim.calls(), 1, "a prices request reaches the simulator");
}

#[test]
fn an_empty_key_behaves_like_no_key_and_names_the_configuration_not_the_upstream() {
    let sim = Sim::start();
    let host = Host::start(&[("ALPHAVANTAGE_URL", &sim.url()), ("APIKEY", "")]);
    let reply = get(host.addr, "/MSFT/7");
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.json()["type"], "https://stock-service.dev/problems/service-misconfigured");
    let detail = reply.json()["detail"].as_str().unwrap_or_default().to_owned();
    assert!(detail.starts_with("APIKEY (wasi:config key apikey)"), "the detail names the variable an operator sets: {detail}");
    assert_eq!(reply.header("retry-after"), Some("60"));
    assert_eq!(sim.calls(), 0, "no call is made without a key");
    assert!(host.logs().contains("no APIKEY or APIKEY_FILE"), "startup warns:\n{}", host.logs());
    // Positive control: the same ALPHAVANTAGE_URL with a key does reach this simulator, so the zero above was measured.
    let keyed = Host::start(&[("ALPHAVANTAGE_URL", &sim.url()), ("APIKEY", "control-key")]);
    assert_eq!(get(keyed.addr, "/MSFT/7").status, 200);
    assert_eq!(sim.calls(), 1, "with a key the same request calls the upstream");
}

#[test]
fn the_served_openapi_document_is_the_file_and_a_valid_openapi_3_1_document() {
    let validator = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/py/bin/openapi-spec-validator");
    assert!(validator.exists(), "{} is missing: `make prereqs-python` (part of `make test`) installs it", validator.display());
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
    let sim = Sim::start();
    let host = Host::with_sim(&sim, "openapi-key", &[]);
    let served = get(host.addr, "/openapi.json");
    assert_eq!(served.status, 200);
    assert_eq!(served.body, std::fs::read_to_string(&file).expect("docs/openapi.json"), "the served document is docs/openapi.json");
    let output = std::process::Command::new(validator).arg(&file).output().expect("run openapi-spec-validator");
    assert!(output.status.success(), "{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
}

#[test]
fn the_admin_port_serves_its_own_openapi_document_listing_exactly_the_routes_it_answers() {
    let validator = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/py/bin/openapi-spec-validator");
    assert!(validator.exists(), "{} is missing: `make prereqs-python` (part of `make test`) installs it", validator.display());
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi-admin.json");
    let text = std::fs::read_to_string(&file).expect("docs/openapi-admin.json");
    let sim = Sim::start();
    let host = Host::with_sim(&sim, "admin-openapi-key", &[]);
    let served = get(host.admin, "/openapi.json");
    assert_eq!(served.status, 200);
    assert_eq!(served.body, text, "the admin port serves docs/openapi-admin.json");
    let output = std::process::Command::new(validator).arg(&file).output().expect("run openapi-spec-validator");
    assert!(output.status.success(), "{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    // Every documented operation is routed (writes answer 403 here: no admin token is set)...
    let document: serde_json::Value = serde_json::from_str(&text).expect("json");
    let mut operations = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys().filter(|m| ["get", "put", "post", "delete"].contains(&m.as_str())) {
            operations.push((method.to_uppercase(), path.clone()));
        }
    }
    assert_eq!(operations.len(), 7, "{operations:?}");
    for (method, path) in &operations {
        let answer = request(host.admin, method, path);
        let want = if method == "GET" { 200 } else { 403 };
        assert_eq!(answer.status, want, "{method} {path}: {}", answer.body);
    }
    // ...and what it does not list is not.
    for (method, path) in
        [("HEAD", "/metrics"), ("DELETE", "/admin/component"), ("GET", "/admin"), ("POST", "/admin/component"), ("GET", "/MSFT/7")]
    {
        assert_eq!(request(host.admin, method, path).status, 404, "{method} {path} is not an admin route");
    }
    let page = get(host.admin, "/docs");
    assert!(page.status == 200 && page.body.contains("/openapi.json"), "the admin port renders its own document");
}

#[test]
fn the_docs_page_and_its_bundle_are_served_by_the_host_with_a_same_origin_policy() {
    let sim = Sim::start();
    let host = Host::with_sim(&sim, "docs-key", &[]);
    let page = get(host.addr, "/docs");
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").is_some_and(|t| t.starts_with("text/html")));
    assert!(page.header("content-security-policy").is_some_and(|p| p.contains("default-src 'self'")), "{:?}", page.headers);
    assert!(page.body.contains("/docs/scalar.standalone.js") && page.body.contains("/openapi.json"));
    assert!(page.body.contains(r#""agent":{"disabled":true}"#), "Ask AI is configured away");
    let bundle = get(host.addr, "/docs/scalar.standalone.js");
    assert_eq!(bundle.status, 200);
    assert!(bundle.body.len() > 3_000_000, "the real Scalar bundle, {} bytes", bundle.body.len());
    assert_eq!(request(host.addr, "HEAD", "/docs").body, "");
    assert_eq!(sim.calls(), 0, "the docs page and its bundle never call the upstream");
    // Positive control: a prices request from the same host is counted, so the zero above was measured.
    assert_eq!(get(host.addr, "/MSFT/7").status, 200);
    assert_eq!(sim.calls(), 1, "a prices request reaches the simulator");
}

#[test]
fn an_unreachable_upstream_is_said_in_words_and_the_debug_form_stays_in_the_log() {
    let closed = free_port();
    let url = format!("http://127.0.0.1:{closed}/query");
    let host = Host::start(&[("ALPHAVANTAGE_URL", url.as_str()), ("APIKEY", "words-key")]);
    let reply = get(host.addr, "/MSFT/7");
    assert_eq!(reply.status, 502, "{}", reply.body);
    assert_eq!(reply.json()["detail"], "upstream unreachable: the upstream refused the connection");
    assert!(!reply.body.contains("ErrorCode"), "no Rust debug text in the answer: {}", reply.body);
    wait_until(Duration::from_secs(5), "the debug form in the log", || host.logs().contains("ConnectionRefused"));
}
