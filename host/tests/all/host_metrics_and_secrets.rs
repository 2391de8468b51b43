//! Metrics (names, promtool), the API key (file rotation, never leaked), egress accounting.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

const SEED_AND_HOST_METRICS: [&str; 17] = [
    "stock_api_requests_total",
    "stock_api_request_duration_seconds",
    "stock_api_cache_hits_total",
    "stock_api_cache_misses_total",
    "stock_api_circuit_breaker_state",
    "stock_api_external_calls_total",
    "stock_api_external_call_duration_seconds",
    "stock_host_component_info",
    "stock_host_build_info",
    "stock_host_instantiation_seconds",
    "stock_host_traps_total",
    "stock_host_in_flight_requests",
    "stock_host_kv_operations_total",
    "stock_host_egress_refused_total",
    "stock_host_request_timeouts_total",
    "stock_api_cache_stale_total",
    "stock_api_circuit_breaker_transitions_total",
];

#[test]
fn metrics_have_every_name_and_pass_promtool() {
    let sim = Sim::start();
    let host = Host::with_sim(&sim, "metrics-test-key", &[]);
    get(host.addr, "/MSFT/7");
    get(host.addr, "/MSFT/3");
    let text = host.metrics();
    for name in SEED_AND_HOST_METRICS {
        assert!(text.lines().any(|l| l.starts_with(&format!("# TYPE {name} "))), "{name} missing from /metrics:\n{text}");
    }
    assert_eq!(host.metric("stock_api_cache_hits_total"), 1.0);
    assert_eq!(host.metric("stock_api_cache_misses_total"), 1.0);
    assert_eq!(host.metric("stock_api_external_calls_total{outcome=\"ok\"}"), 1.0);
    let version = get(host.addr, "/health").header("x-component-version").expect("version header").to_owned();
    assert_eq!(
        host.metric(&format!("stock_api_requests_total{{route=\"/{{symbol}}/{{days}}\",status=\"200\",version=\"{version}\"}}")),
        2.0
    );
    assert_eq!(host.component_info(&version), Some(1.0));
    let build = host.metrics().lines().find(|l| l.starts_with("stock_host_build_info{")).unwrap_or_default().to_owned();
    assert!(
        build.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))) && build.contains("wasmtime=\"48.") && build.ends_with(" 1"),
        "the host's build information: {build}"
    );
    let info = host.metrics().lines().find(|l| l.starts_with("stock_host_component_info{")).unwrap_or_default().to_owned();
    let running = get(host.admin, "/admin/component").json();
    let digest = running["running"]["digest"].as_str().expect("running digest").to_owned();
    assert!(info.contains(&format!("digest=\"{digest}\"")), "the info metric carries the whole digest: {info}");

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed by `make test` (Debian package prometheus)");
    promtool.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write metrics");
    let output = promtool.wait_with_output().expect("promtool");
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn every_response_names_the_component_version_and_a_request_id() {
    let sim = Sim::start();
    let host = Host::with_sim(&sim, "header-test-key", &[]);
    let bytes = std::fs::read(component_path()).expect("component");
    let want = stock_host::version_of(&bytes);
    let mut ids = std::collections::HashSet::new();
    for path in ["/health", "/ready", "/MSFT/2", "/NOSUCH", "/MSFT/0"] {
        let reply = get(host.addr, path);
        assert_eq!(reply.header("x-component-version"), Some(want.as_str()), "{path}");
        assert!(ids.insert(reply.header("x-request-id").expect("request id").to_owned()), "ids are unique");
    }
}

#[test]
fn health_and_ready_never_spend_upstream_quota() {
    let sim = Sim::start();
    let host = Host::with_sim(&sim, "probe-test-key", &[]);
    for _ in 0..5 {
        assert_eq!(get(host.addr, "/health").json()["status"], "ok");
        let ready = get(host.addr, "/ready");
        assert_eq!(ready.status, 200, "{}", ready.body);
        assert_eq!(ready.json()["status"], "ready");
    }
    assert_eq!(sim.calls(), 0);
}

#[test]
fn the_api_key_is_in_no_log_line_header_body_or_metric() {
    const KEY: &str = "leak-canary-9c27d1";
    let sim = Sim::start();
    let host = Host::with_sim(&sim, KEY, &[("LOG_LEVEL", "debug"), ("UPSTREAM_TIMEOUT", "2s")]);
    let mut seen = String::new();
    for path in ["/MSFT/7", "/MSFT/7", "/NOSUCH/2", "/circuit-breaker", "/ready", "/bad$/1"] {
        seen.push_str(&get(host.addr, path).raw());
    }
    // bad-key last: a refused key is backed off, so nothing after it would reach the upstream.
    for mode in ["http-500", "malformed", "note", "hang", "bad-key"] {
        sim.fault(mode, 0, Some(1));
        seen.push_str(&get(host.addr, "/AAPL/3").raw());
    }
    seen.push_str(&host.metrics());
    // The last request's component stderr is logged as its call ends, which can trail the response.
    wait_until(Duration::from_secs(5), "the last call's upstream line is logged", || {
        host.logs().contains("outcome=upstream-misconfigured")
    });
    let logs = host.logs();
    assert!(logs.contains("apikey=REDACTED"), "upstream calls are logged, redacted:\n{logs}");
    assert!(!seen.contains(KEY), "key in an answer or metric:\n{seen}");
    assert!(!logs.contains(KEY), "key in the host's logs:\n{logs}");
}

#[test]
fn a_rotated_apikey_file_is_used_without_restart() {
    let sim = Sim::start();
    let dir = TempDir::new("apikey");
    // Kubernetes Secret volumes: the file is a symlink through `..data`, swapped atomically.
    let write_key = |generation: u32, key: &str| {
        let data = dir.0.join(format!("..{generation}"));
        std::fs::create_dir_all(&data).expect("mkdir");
        std::fs::write(data.join("apikey"), format!("{key}\n")).expect("write key");
        let tmp = dir.0.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(format!("..{generation}"), &tmp).expect("symlink");
        std::fs::rename(&tmp, dir.0.join("..data")).expect("atomic swap");
    };
    write_key(1, "demo");
    std::os::unix::fs::symlink("..data/apikey", dir.0.join("apikey")).expect("link");
    let key_file = dir.0.join("apikey");
    let host = Host::start(&[("ALPHAVANTAGE_URL", &sim.url()), ("APIKEY_FILE", key_file.to_str().expect("utf-8"))]);
    let refused = get(host.addr, "/MSFT/2");
    assert_eq!(refused.status, 503, "the demo key is refused for MSFT: {}", refused.body);
    assert_eq!(refused.json()["type"], "https://stock-service.dev/problems/upstream-misconfigured");

    write_key(2, "rotated-good-key");
    let started = Instant::now();
    loop {
        let reply = get(host.addr, "/AAPL/2");
        if reply.status == 200 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "rotated key not picked up: {}", reply.body);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!host.logs().contains("rotated-good-key"));
}

#[test]
fn a_traceparent_reaches_the_upstream_and_every_log_line_of_the_request() {
    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    let sim = Sim::start();
    let host = Host::with_sim(&sim, "trace-test-key", &[]);
    let reply = request_with(host.addr, "GET", "/MSFT/7", &[("traceparent", &format!("00-{TRACE}-00f067aa0ba902b7-01"))], b"");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let seen = get(sim.addr, "/_sim/stats").json()["last_traceparent"].as_str().expect("the upstream got a traceparent").to_owned();
    let parts: Vec<&str> = seen.split('-').collect();
    assert_eq!((parts[0], parts[1], parts[3]), ("00", TRACE, "01"), "same trace: {seen}");
    assert_ne!(parts[2], "00f067aa0ba902b7", "the upstream call is a child span of its own");
    let traced = |needle: &str| host.logs().lines().any(|l| l.contains(needle) && l.contains(TRACE));
    wait_until(Duration::from_secs(5), "the access line carries the trace id", || traced("\"message\":\"request\""));
    assert!(traced("component stderr"), "the component's lines carry it too:\n{}", host.logs());

    get(host.addr, "/IBM/7");
    let started = get(sim.addr, "/_sim/stats").json()["last_traceparent"].as_str().expect("traceparent").to_owned();
    assert!(!started.contains(TRACE) && started.len() == 55, "without one, the host starts a trace: {started}");
}

/// The spans in every export the collector received.
fn exported_spans(
    posts: &[OtlpPost],
) -> Vec<(opentelemetry_proto::tonic::resource::v1::Resource, opentelemetry_proto::tonic::trace::v1::Span)> {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;
    let mut spans = Vec::new();
    for post in posts {
        let export = ExportTraceServiceRequest::decode(post.body.as_slice()).expect("an OTLP protobuf export");
        for resource_spans in export.resource_spans {
            for scope_spans in resource_spans.scope_spans {
                spans.extend(scope_spans.spans.into_iter().map(|span| (resource_spans.resource.clone().unwrap_or_default(), span)));
            }
        }
    }
    spans
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A string or integer attribute as text.
fn attribute(attributes: &[opentelemetry_proto::tonic::common::v1::KeyValue], key: &str) -> Option<String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    match attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?.value.as_ref()? {
        Value::StringValue(text) => Some(text.clone()),
        Value::IntValue(number) => Some(number.to_string()),
        other => Some(format!("{other:?}")),
    }
}

#[test]
fn traces_are_exported_over_otlp_linked_to_the_caller_and_flushed_at_exit() {
    use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
    const TRACE: &str = "5bf92f3577b34da6a3ce929d0e0e4737";
    const UNSAMPLED: &str = "6bf92f3577b34da6a3ce929d0e0e4738";
    const CALLER: &str = "10f067aa0ba902b7";
    let collector = OtlpReceiver::start();
    let sim = Sim::start();
    // A batch delay longer than the test: only the flush at exit can deliver these spans.
    let endpoint = collector.endpoint();
    // The exporter honours proxy variables, as HTTP clients do; the collector here is on loopback.
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
        ("NO_PROXY", "127.0.0.1,localhost"),
        ("no_proxy", "127.0.0.1,localhost"),
    ];
    let mut host = Host::with_sim(&sim, "otlp-secret-key", &env);
    let not_sampled = request_with(host.addr, "GET", "/IBM/7", &[("traceparent", &format!("00-{UNSAMPLED}-{CALLER}-00"))], b"");
    assert_eq!(not_sampled.status, 200, "{}", not_sampled.body);
    let reply = request_with(host.addr, "GET", "/MSFT/7", &[("traceparent", &format!("00-{TRACE}-{CALLER}-01"))], b"");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let upstream = get(sim.addr, "/_sim/stats").json()["last_traceparent"].as_str().expect("traceparent").to_owned();
    let upstream_span = upstream.split('-').nth(2).expect("a span id").to_owned();
    assert_eq!(get(host.addr, "/AAPL/7").status, 200, "a request without a traceparent starts a trace");
    assert_eq!(get(host.addr, "/health").status, 200);
    assert!(collector.posts().is_empty(), "spans are batched, not sent one by one");

    host.process.terminate();
    assert_eq!(host.process.wait_exit(Duration::from_secs(30)), Some(0), "{}", host.logs());
    let posts = collector.posts();
    assert!(!posts.is_empty(), "the queued spans were sent at exit:\n{}", host.logs());
    for post in &posts {
        assert_eq!((post.path.as_str(), post.content_type.as_str()), ("/v1/traces", "application/x-protobuf"));
        assert!(!post.body.windows(b"otlp-secret-key".len()).any(|w| w == b"otlp-secret-key"), "the API key is in an export");
    }
    let spans = exported_spans(&posts);
    let in_trace = |trace: &str| spans.iter().filter(|(_, s)| hex(&s.trace_id) == trace).collect::<Vec<_>>();
    assert!(in_trace(UNSAMPLED).is_empty(), "a trace the caller did not sample is not exported");
    assert!(spans.iter().all(|(_, s)| !s.name.contains("/health")), "probes are not traced");

    let traced = in_trace(TRACE);
    let (resource, server) = traced.iter().find(|(_, s)| s.kind == SpanKind::Server as i32).expect("a server span for the request");
    assert_eq!(server.name, "GET /{symbol}/{days}");
    assert_eq!(hex(&server.parent_span_id), CALLER, "the server span is the caller's child");
    assert_eq!(attribute(&server.attributes, "http.response.status_code").as_deref(), Some("200"));
    assert_eq!(attribute(&server.attributes, "url.path").as_deref(), Some("/MSFT/7"));
    assert_eq!(attribute(&server.attributes, "stock.cache").as_deref(), Some("MISS"));
    assert!(server.end_time_unix_nano > server.start_time_unix_nano);
    assert_eq!(attribute(&resource.attributes, "service.name").as_deref(), Some("stock-host"));
    let clients: Vec<_> = traced.iter().filter(|(_, s)| s.kind == SpanKind::Client as i32).collect();
    assert_eq!(clients.len(), 1, "one upstream call: {clients:?}");
    let client = &clients[0].1;
    assert_eq!(hex(&client.span_id), upstream_span, "the client span is the one whose traceparent reached the upstream");
    assert_eq!(hex(&client.parent_span_id), hex(&server.span_id), "the upstream call is the server span's child");
    assert_eq!(attribute(&client.attributes, "http.response.status_code").as_deref(), Some("200"));
    assert_eq!(attribute(&client.attributes, "server.address").as_deref(), Some("127.0.0.1"));
    assert_eq!(attribute(&client.attributes, "server.port"), Some(sim.addr.port().to_string()));
    assert!(client.start_time_unix_nano >= server.start_time_unix_nano && client.end_time_unix_nano <= server.end_time_unix_nano);

    let root =
        spans.iter().find(|(_, s)| attribute(&s.attributes, "url.path").as_deref() == Some("/AAPL/7")).expect("the untraced request");
    assert!(root.1.parent_span_id.is_empty(), "a trace this host started has a root span");
}

#[test]
fn spans_sent_to_the_collector_and_failed_exports_are_counted() {
    let collector = OtlpReceiver::start();
    let sim = Sim::start();
    let endpoint = collector.endpoint();
    let quick = [("OTEL_BSP_SCHEDULE_DELAY", "100"), ("NO_PROXY", "127.0.0.1,localhost"), ("no_proxy", "127.0.0.1,localhost")];
    let mut env = vec![("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())];
    env.extend_from_slice(&quick);
    let host = Host::with_sim(&sim, "counted-key", &env);
    assert_eq!(get(host.addr, "/MSFT/7").status, 200);
    let exported = "stock_host_trace_spans_total{result=\"exported\"}";
    wait_until(Duration::from_secs(15), "the request's two spans are counted as exported", || {
        sample_value(&host.metrics(), exported).is_some_and(|n| n >= 2.0)
    });
    assert!(!collector.posts().is_empty());

    // Nothing listens on this port: every export fails (after the exporter's own retries).
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let mut env = vec![("OTEL_EXPORTER_OTLP_ENDPOINT", nowhere.as_str())];
    env.extend_from_slice(&quick);
    let unreachable = Host::with_sim(&sim, "counted-key", &env);
    assert_eq!(get(unreachable.addr, "/IBM/7").status, 200, "an unreachable collector costs requests nothing");
    let failed = "stock_host_trace_spans_total{result=\"failed\"}";
    wait_until(Duration::from_secs(30), "the failed export is counted", || {
        sample_value(&unreachable.metrics(), failed).is_some_and(|n| n >= 2.0)
    });
    assert_eq!(sample_value(&unreachable.metrics(), exported), Some(0.0), "nothing was exported (the series exists at zero)");
}

#[test]
fn a_silent_collector_costs_counted_drops_and_no_more_than_the_flush_bound_at_exit() {
    // Accepts connections and never answers: every export hangs until the exporter's own timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", silent.local_addr().expect("addr"));
    let held: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>> = std::sync::Arc::default();
    let accepting = held.clone();
    std::thread::spawn(move || {
        for stream in silent.incoming().take(64).flatten() {
            accepting.lock().expect("held").push(stream);
        }
    });
    let sim = Sim::start();
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "64"),
        ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ("NO_PROXY", "127.0.0.1,localhost"),
        ("no_proxy", "127.0.0.1,localhost"),
    ];
    let mut host = Host::with_sim(&sim, "silent-key", &env);
    for _ in 0..300 {
        assert_eq!(get(host.addr, "/MSFT/7").status, 200, "a silent collector costs requests nothing");
    }
    let dropped = host.metric("stock_host_trace_spans_total{result=\"dropped\"}");
    assert!(dropped >= 100.0, "spans past the full queue are counted as dropped: {dropped}");
    let stopping = Instant::now();
    host.process.terminate();
    assert_eq!(host.process.wait_exit(Duration::from_secs(20)), Some(0));
    let took = stopping.elapsed();
    println!("exit with a silent collector took {took:?}");
    assert!(took < Duration::from_millis(5500), "the flush at exit is bounded by 5 s: {took:?}");
}
