//! Failure containment and shutdown: traps, runaway guests, bad configuration, SIGTERM.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

#[test]
fn a_trapping_request_is_answered_with_a_500_problem_and_counted() {
    let fixture = fixture_component_path();
    let host = Host::start(&[("COMPONENT", fixture.to_str().expect("utf-8")), ("APIKEY", "k")]);
    let reply = get(host.addr, "/_fixture/trap");
    assert_eq!(reply.status, 500, "{}", reply.body);
    assert_eq!(reply.json()["type"], "https://stock-service.dev/problems/component-trap");
    assert_eq!(get(host.addr, "/health").status, 200, "the host survives");
    assert_eq!(get(host.addr, "/ready").status, 200, "one trapping request does not make the build unready");
    assert_eq!(host.metric("stock_host_traps_total"), 1.0);
}

#[test]
fn a_component_without_the_status_export_is_refused_at_startup() {
    // trap.wat exports only wasi:http/incoming-handler: the host cannot learn its state, so it never serves it.
    let output = Command::new(env!("CARGO_BIN_EXE_stock-host"))
        .args(["serve", "--port", "0", "--admin-port", "0", "--bind", "127.0.0.1"])
        .env("COMPONENT", fixture("trap.wat"))
        .env("LOG_FORMAT", "text")
        .output()
        .expect("run stock-host");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("does not export stock:service/status"), "{stderr}");
}

#[test]
fn a_runaway_component_is_stopped_at_the_request_deadline() {
    let fixture = fixture_component_path();
    let host = Host::start(&[("COMPONENT", fixture.to_str().expect("utf-8")), ("APIKEY", "k"), ("REQUEST_TIMEOUT", "1s")]);
    let started = Instant::now();
    let reply = get(host.addr, "/_fixture/spin");
    let took = started.elapsed();
    assert_eq!(reply.status, 504, "{}", reply.body);
    assert_eq!(reply.json()["type"], "https://stock-service.dev/problems/request-timeout");
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(3), "took {took:?}");
    assert_eq!(get(host.addr, "/health").status, 200);
    assert_eq!(host.metric("stock_host_request_timeouts_total"), 1.0);
    assert_eq!(host.metric("stock_host_in_flight_requests"), 0.0, "the stopped call no longer counts as in flight");
}

#[test]
fn a_slow_upstream_is_bounded_by_the_upstream_timeout() {
    let sim = Sim::start();
    let host = Host::with_sim(&sim, "slow-key", &[("UPSTREAM_TIMEOUT", "1s")]);
    sim.fault("latency", 5_000, None);
    let started = Instant::now();
    let reply = get(host.addr, "/MSFT/7");
    assert_eq!(reply.status, 504, "{}", reply.body);
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    // The abandoned call is counted when the host's send task ends, which can trail the response a little.
    let counted = Instant::now();
    while host.metric("stock_api_external_calls_total{outcome=\"timeout\"}") != 1.0 {
        assert!(counted.elapsed() < Duration::from_secs(3), "timeout not counted:\n{}", host.metrics());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn bad_configuration_stops_startup_with_one_line_naming_the_variable() {
    // NDAYS, SYMBOL and CIRCUIT_BREAKER_THRESHOLD are the build's rules: the host asks it (status.check-config).
    for (variable, value) in [
        ("NDAYS", "0"),
        ("CIRCUIT_BREAKER_TIMEOUT", "soon"),
        ("SYMBOL", "$$$"),
        ("CIRCUIT_BREAKER_THRESHOLD", "0"),
        ("PORT", "http"),
        ("ALPHAVANTAGE_URL", "ftp://x"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_stock-host"))
            .args(["serve", "--bind", "127.0.0.1"])
            .envs([("PORT", "0"), ("ADMIN_PORT", "0"), ("LOG_FORMAT", "json"), ("APIKEY", "k")])
            .env("COMPONENT", component_path())
            .env(variable, value)
            .output()
            .expect("run stock-host");
        assert!(!output.status.success(), "{variable}={value} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first = stderr.lines().next().unwrap_or("");
        assert!(first.contains(variable), "{variable}={value}: first line does not name it: {stderr}");
    }
    let missing = Command::new(env!("CARGO_BIN_EXE_stock-host"))
        .args(["serve", "--component", "/nonexistent/stock.wasm", "--port", "0", "--admin-port", "0"])
        .env("LOG_FORMAT", "text")
        .output()
        .expect("run stock-host");
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/stock.wasm"));
}

#[test]
fn sigterm_turns_ready_off_drains_in_flight_requests_and_exits_zero() {
    let sim = Sim::start();
    let mut host = Host::with_sim(&sim, "drain-key", &[("SHUTDOWN_DELAY", "1s"), ("DRAIN_TIMEOUT", "10s")]);
    assert_eq!(get(host.addr, "/ready").status, 200);
    sim.fault("latency", 1_500, None);
    let addr = host.addr;
    let slow = std::thread::spawn(move || get(addr, "/MSFT/7"));
    wait_until(Duration::from_secs(5), "the slow request is in flight", || host.metric("stock_host_in_flight_requests") == 1.0);
    host.process.terminate();
    wait_until(Duration::from_secs(1), "/ready answers 503 after SIGTERM", || get(addr, "/ready").status == 503);
    let finished = slow.join().expect("slow client");
    assert_eq!(finished.status, 200, "the request in flight finished: {}", finished.body);
    assert_eq!(host.process.wait_exit(Duration::from_secs(15)), Some(0));
}

#[test]
fn a_component_that_does_not_fit_the_memory_cap_is_refused_at_startup() {
    // The component's initial linear memory is over 1 MiB: the pooling allocator refuses it up front,
    // so the host fails fast with a clear error instead of failing every request.
    let output = Command::new(env!("CARGO_BIN_EXE_stock-host"))
        .args(["serve", "--port", "0", "--admin-port", "0", "--bind", "127.0.0.1"])
        .env("COMPONENT", component_path())
        .env("MAX_MEMORY_MIB", "1")
        .env("LOG_FORMAT", "text")
        .output()
        .expect("run stock-host");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("MAX_MEMORY_MIB"), "{stderr}");
    assert!(!stderr.contains("0x"), "sizes in one (decimal) format: {stderr}");
    let sim = Sim::start();
    let roomy = Host::with_sim(&sim, "memory-key", &[("MAX_MEMORY_MIB", "16")]);
    assert_eq!(get(roomy.addr, "/MSFT/7").status, 200, "16 MiB is enough for the component");
}

#[test]
fn command_line_mistakes_are_one_line_naming_the_variable_and_the_accepted_form() {
    for (variable, value, accepted) in [
        ("PORT", "abc", "is not a port number from 0 to 65535"),
        ("LOG_LEVEL", "nonsense===", "use a level"),
        ("CACHE_TTL", "5 minutes", "30s"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_stock-host")).arg("serve").env(variable, value).output().expect("run stock-host");
        assert_eq!(output.status.code(), Some(2), "{variable}={value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "{variable}={value}: one line, got:\n{stderr}");
        assert!(stderr.contains(variable) && stderr.contains(accepted), "{variable}={value}: {stderr}");
    }
}

#[test]
fn a_file_that_is_not_a_component_is_named_as_such_once() {
    let readme = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let output = Command::new(env!("CARGO_BIN_EXE_stock-host"))
        .args(["serve", "--port", "0", "--admin-port", "0", "--bind", "127.0.0.1"])
        .env("COMPONENT", &readme)
        .env("LOG_FORMAT", "json")
        .env("APIKEY", "some-key")
        .output()
        .expect("run stock-host");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not a WebAssembly component"), "{stderr}");
    assert_eq!(stderr.lines().filter(|l| l.contains("not a WebAssembly component")).count(), 1, "printed once: {stderr}");
}

#[test]
fn version_names_the_build_the_commit_wasmtime_and_the_default_component() {
    let output = Command::new(env!("CARGO_BIN_EXE_stock-host")).arg("--version").output().expect("run stock-host");
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.starts_with(&format!("stock-host {}", env!("CARGO_PKG_VERSION"))), "{text}");
    for part in ["commit ", "wasmtime 48.", "default component "] {
        assert!(text.contains(part), "{part} missing: {text}");
    }
    let digest = stock_host::version_of(&std::fs::read(component_path()).expect("component"));
    assert!(text.contains(&digest), "the default component (the release build beside the binary) is named by its digest: {text}");
}

#[test]
fn ctrl_c_on_make_run_stops_everything_without_an_error_line() {
    // See issue 14: the cleanup trap failed when the signal had already ended the simulator, and
    // `bash -e` turned that into `make: *** [run] Error 1`. `-o build`: the test binaries are fresh.
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let (port, admin, sim) = (free_port(), free_port(), free_port());
    let mut make = Command::new("setsid");
    make.args(["make", "--no-print-directory", "-o", "build", "-C"]).arg(&repo).arg("run");
    make.args([format!("PORT={port}"), format!("ADMIN_PORT={admin}"), format!("SIM_PORT={sim}"), "BIND=127.0.0.1".into()]);
    make.env_remove("APIKEY").env_remove("APIKEY_FILE").env("LOG_FORMAT", "json");
    let mut make = Process::spawn_named("make run", make);
    let addr = format!("127.0.0.1:{port}").parse().expect("addr");
    wait_for_port(addr, Duration::from_secs(60));
    assert_eq!(get(addr, "/MSFT/2").status, 200, "make run serves the simulator's data");
    let group = make.child.id().to_string();
    let status = Command::new("kill").args(["-INT", "--", &format!("-{group}")]).status().expect("kill");
    assert!(status.success());
    make.wait_exit(Duration::from_secs(30));
    let output = make.output();
    assert!(!output.contains("Error 1") && !output.contains("*** [Makefile"), "make reported an error:\n{output}");
    assert!(output.contains("drained; exiting"), "the host shut down cleanly:\n{output}");
    assert!(try_request(addr, "GET", "/health", Duration::from_secs(1)).is_err(), "nothing listens any more");
}

#[test]
fn the_readme_settings_table_and_serve_help_name_the_same_variables() {
    let help = Command::new(env!("CARGO_BIN_EXE_stock-host")).args(["serve", "--help"]).output().expect("run stock-host");
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let accepted: std::collections::BTreeSet<String> = help
        .split("[env: ")
        .skip(1)
        .filter_map(|rest| rest.split(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')).next())
        .map(str::to_owned)
        .collect();
    assert!(accepted.len() > 40 && accepted.contains("PORT") && accepted.contains("COMPONENT_VERIFY_KEY"), "{accepted:?}");
    let readme = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).expect("README");
    let section = readme.split("## Configuration").nth(1).and_then(|s| s.split("\n## ").next()).expect("the Configuration section");
    let documented: std::collections::BTreeSet<String> = section
        .lines()
        .filter_map(|line| line.strip_prefix("| `")?.split('`').next().map(str::to_owned))
        .filter(|name| name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        .collect();
    let unknown: Vec<&String> = documented.difference(&accepted).collect();
    assert!(unknown.is_empty(), "the README's table names variables `serve` does not accept: {unknown:?}");
    let undocumented: Vec<&String> =
        accepted.iter().filter(|name| !documented.contains(*name) && !section.contains(name.as_str())).collect();
    assert!(undocumented.is_empty(), "`serve` accepts variables the README's Configuration section never names: {undocumented:?}");
}

#[test]
fn the_error_lines_the_docs_quote_are_the_lines_the_binary_prints() {
    // (document, variable, value, the line it quotes): the quote must be in the document, and the binary's
    // last line for that value must start with it.
    for (document, variable, value, quoted) in [
        ("README.md", "NDAYS", "0", r#"stock-host: invalid configuration: NDAYS: "0" is not a whole number from 1 to 100"#),
        (
            "docs/operations.md",
            "CACHE_TTL",
            "5 minutes",
            r#"stock-host: invalid configuration: CACHE_TTL: "5 minutes" is not a duration such as 30, 30s, 1500ms, 5m or 1h"#,
        ),
        ("docs/operations.md", "PORT", "abc", "stock-host: PORT (--port): "),
    ] {
        let text = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(document)).expect("document");
        assert!(text.contains(quoted), "{document} no longer quotes {quoted:?}");
        let output = Command::new(env!("CARGO_BIN_EXE_stock-host"))
            .arg("serve")
            .envs([("PORT", "0"), ("ADMIN_PORT", "0"), ("BIND", "127.0.0.1"), ("APIKEY", "doc-key"), ("LOG_FORMAT", "json")])
            .env(variable, value)
            .output()
            .expect("run stock-host");
        assert_eq!(output.status.code(), Some(2), "{variable}={value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().last().unwrap_or_default();
        assert!(last.starts_with(quoted), "{document} quotes {quoted:?}, the binary prints {last:?}");
    }
}
