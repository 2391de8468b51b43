//! The rollout control plane: every source reaches the builds through one door and leaves the same
//! record; no build serves that nobody asked for; no candidate can wedge the door; no secret leaves
//! through it. The races are driven deterministically: the fixture build's smoke test waits on a
//! switch the test flips over HTTP (`/_fixture/smoke/{hold,forever,echo-key,release}`).

use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::*;

const TOKEN: (&str, &str) = ("Authorization", "Bearer rollout-token");

/// The fixture build with a custom section `name`: the same code, its own version.
fn fixture_named(name: &str) -> Vec<u8> {
    with_custom_section(&std::fs::read(fixture_component_path()).expect("fixture"), name)
}

fn fixture_env() -> String {
    fixture_component_path().to_str().expect("utf-8").to_owned()
}

fn describe(host: &Host) -> serde_json::Value {
    get(host.admin, "/admin/component").json()
}

fn running(host: &Host) -> String {
    describe(host)["running"]["version"].as_str().expect("running version").to_owned()
}

/// Flips the fixture's smoke-test switch (served by whichever fixture build answers).
fn smoke(host: &Host, word: &str) {
    let reply = get(host.addr, &format!("/_fixture/smoke/{word}"));
    assert_eq!(reply.status, 200, "switch {word}: {}", reply.body);
}

/// Runs `call` on its own thread; `None` when it has not answered within `limit` (or failed).
fn within<T: Send + 'static>(limit: Duration, call: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = send.send(call());
    });
    receive.recv_timeout(limit).ok()
}

/// Starts an upload on its own thread; its answer arrives on the returned channel.
fn upload_later(admin: SocketAddr, query: &str, bytes: Vec<u8>) -> mpsc::Receiver<Reply> {
    let (send, receive) = mpsc::channel();
    let path = format!("/admin/component{query}");
    std::thread::spawn(move || {
        let _ = send.send(request_with(admin, "PUT", &path, &[TOKEN], &bytes));
    });
    receive
}

/// A value of the sticky header that routes to the build `version`.
fn sticky_to(host: &Host, version: &str) -> String {
    (0..400)
        .map(|i| format!("client-{i}"))
        .find(|value| {
            request_with(host.addr, "GET", "/ready", &[("x-session-id", value)], b"").header("x-component-version") == Some(version)
        })
        .unwrap_or_else(|| panic!("no sticky value routes to {version}"))
}

#[test]
fn startup_file_changes_and_uploads_reach_the_builds_through_one_door_and_leave_one_record_shape() {
    let release = std::fs::read(component_path()).expect("component");
    let from_file = with_custom_section(&release, "door-file");
    let uploaded = with_custom_section(&release, "door-upload");
    let mut volume = ConfigMapDir::new("door", &release);
    let path = volume.path();
    let sim = Sim::start();
    let host = Host::with_sim(&sim, "door-key", &[("COMPONENT", path.to_str().expect("utf-8")), ("ADMIN_TOKEN", "rollout-token")]);
    let digest = |bytes: &[u8]| stock_host::runtime::engine::digest(bytes);
    let started = describe(&host);
    assert_eq!(started["running"]["source"], "startup");
    assert_eq!(started["running"]["reference"], path.to_str().expect("utf-8"));
    assert_eq!(started["running"]["digest"], digest(&release).as_str());

    volume.publish(&from_file);
    wait_until(Duration::from_secs(20), "the file's build is live", || running(&host) == stock_host::version_of(&from_file));
    let uploaded_reply = request_with(host.admin, "PUT", "/admin/component", &[TOKEN], &uploaded);
    assert_eq!(uploaded_reply.status, 200, "{}", uploaded_reply.body);

    let state = describe(&host);
    let history = state["history"].as_array().expect("history");
    let by_source =
        |source: &str| history.iter().find(|r| r["source"] == source).unwrap_or_else(|| panic!("no {source} record: {history:?}"));
    let keys = |record: &serde_json::Value| record.as_object().expect("record").keys().cloned().collect::<Vec<_>>();
    let (startup, file, admin) = (by_source("startup"), by_source("file"), by_source("admin"));
    assert_eq!(keys(startup), keys(file), "one record shape");
    assert_eq!(keys(file), keys(admin), "one record shape");
    for (record, bytes, reference) in [
        (startup, &release, Some(path.to_str().expect("utf-8"))),
        (file, &from_file, Some(path.to_str().expect("utf-8"))),
        (admin, &uploaded, None),
    ] {
        assert_eq!(record["result"], "ok", "{record}");
        assert_eq!(record["digest"], digest(bytes).as_str(), "{record}");
        assert_eq!(record["version"], stock_host::version_of(bytes).as_str(), "{record}");
        assert_eq!(record["reference"].as_str(), reference, "{record}");
    }
    assert_eq!(state["running"]["source"], "admin");
    assert_eq!(state["previous"]["source"], "file");
    assert_eq!(state["previous"]["reference"], path.to_str().expect("utf-8"));
    // Log lines reach stderr from the host's logging thread: wait for them rather than race them.
    wait_until(Duration::from_secs(5), "one log line per record, naming its source", || {
        let logs = host.logs();
        ["startup", "file", "admin"].iter().all(|source| logs.contains(&format!("\"source\":\"{source}\"")))
    });
}

#[test]
fn auto_promotion_promotes_the_judged_canary_while_another_candidate_is_still_being_checked() {
    let (a, b) = (fixture_named("canary-a"), fixture_named("canary-b"));
    let (version_a, version_b) = (stock_host::version_of(&a), stock_host::version_of(&b));
    let sim = Sim::start();
    let host = Host::with_sim(
        &sim,
        "promote-key",
        &[
            ("COMPONENT", &fixture_env()),
            ("ADMIN_TOKEN", "rollout-token"),
            ("CANARY_AUTO_PROMOTE", "1s"),
            ("CANARY_MIN_REQUESTS", "5"),
            ("REQUEST_TIMEOUT", "30s"),
        ],
    );
    let started = request_with(host.admin, "PUT", "/admin/component?canary=50", &[TOKEN], &a);
    assert_eq!(started.json()["result"], "canary", "{}", started.body);
    smoke(&host, "hold");
    let b_answer = upload_later(host.admin, "?canary=50", b.clone());
    wait_until(Duration::from_secs(20), "B is being checked", || describe(&host)["checking"]["version"] == version_b.as_str());
    let deadline = Instant::now() + Duration::from_secs(15);
    while running(&host) != version_a && Instant::now() < deadline {
        for _ in 0..10 {
            get(host.addr, "/ready");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(running(&host), version_a, "the judge promoted A while B's smoke test was held (it never waits behind a candidate)");
    smoke(&host, "release");
    let b_reply = b_answer.recv_timeout(Duration::from_secs(30)).expect("B's upload answers once released");
    assert_eq!(b_reply.json()["result"], "canary", "{}", b_reply.body);
    let state = describe(&host);
    assert_eq!(state["running"]["version"], version_a.as_str(), "B did not go to 100 % unjudged");
    assert_eq!(state["canary"]["version"], version_b.as_str(), "B is a canary over A");
}

#[test]
fn a_verdict_on_one_canary_never_drops_the_next_one() {
    let (a, b) = (fixture_named("verdict-a"), fixture_named("verdict-b"));
    let (version_a, version_b) = (stock_host::version_of(&a), stock_host::version_of(&b));
    let stable = stock_host::version_of(&std::fs::read(fixture_component_path()).expect("fixture"));
    let sim = Sim::start();
    let host = Host::with_sim(
        &sim,
        "verdict-key",
        &[("COMPONENT", &fixture_env()), ("ADMIN_TOKEN", "rollout-token"), ("CANARY_MIN_REQUESTS", "20"), ("REQUEST_TIMEOUT", "30s")],
    );
    let started = request_with(host.admin, "PUT", "/admin/component?canary=50", &[TOKEN], &a);
    assert_eq!(started.json()["result"], "canary", "{}", started.body);
    let (to_canary, to_stable) = (sticky_to(&host, &version_a), sticky_to(&host, &stable));
    smoke(&host, "hold");
    let b_answer = upload_later(host.admin, "?canary=50", b);
    wait_until(Duration::from_secs(20), "B is being checked", || describe(&host)["checking"]["version"] == version_b.as_str());
    for _ in 0..30 {
        assert_eq!(request_with(host.addr, "GET", "/_fixture/fail", &[("x-session-id", &to_canary)], b"").status, 500);
        assert_eq!(request_with(host.addr, "GET", "/ready", &[("x-session-id", &to_stable)], b"").status, 200);
    }
    wait_until(Duration::from_secs(10), "the judge dropped A while B was held", || describe(&host)["canary"].is_null());
    smoke(&host, "release");
    let b_reply = b_answer.recv_timeout(Duration::from_secs(30)).expect("B's upload answers once released");
    assert_eq!(b_reply.json()["result"], "canary", "{}", b_reply.body);
    std::thread::sleep(Duration::from_millis(600));
    let state = describe(&host);
    assert_eq!(state["canary"]["version"], version_b.as_str(), "B still runs: A's verdict was not applied to it");
    let history = state["history"].as_array().expect("history");
    let rolled_back: Vec<&str> = history.iter().filter(|r| r["result"] == "auto_rollback").filter_map(|r| r["version"].as_str()).collect();
    assert_eq!(rolled_back, vec![version_a.as_str()], "only A was rolled back, and blamed: {history:?}");
}

#[test]
fn a_rollback_after_the_judge_dropped_the_canary_never_touches_the_stable_build() {
    let release = std::fs::read(component_path()).expect("component");
    let second = with_custom_section(&release, "stable-two");
    let (first_version, second_version) = (stock_host::version_of(&release), stock_host::version_of(&second));
    let sim = Sim::start();
    let host = Host::with_sim(&sim, "rollback-key", &[("ADMIN_TOKEN", "rollout-token"), ("CANARY_MIN_REQUESTS", "10")]);
    assert_eq!(request_with(host.admin, "PUT", "/admin/component", &[TOKEN], &second).status, 200);
    let fixture = std::fs::read(fixture_component_path()).expect("fixture");
    assert_eq!(request_with(host.admin, "PUT", "/admin/component?canary=50", &[TOKEN], &fixture).json()["result"], "canary");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !describe(&host)["canary"].is_null() && Instant::now() < deadline {
        for _ in 0..20 {
            get(host.addr, "/_fixture/fail");
        }
    }
    assert!(describe(&host)["canary"].is_null(), "the judge dropped the failing canary");
    let refused = request_with(host.admin, "POST", "/admin/rollback", &[TOKEN], b"");
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(refused.body.contains("already ended"), "{}", refused.body);
    assert_eq!(running(&host), second_version, "the stable build was not rolled back");
    let named = request_with(host.admin, "POST", &format!("/admin/rollback?version={second_version}"), &[TOKEN], b"");
    assert_eq!(named.status, 200, "naming the stable build rolls it back: {}", named.body);
    assert_eq!(running(&host), first_version);
}

#[test]
fn admin_queries_are_decoded_and_anything_not_exactly_understood_is_refused() {
    let release = std::fs::read(component_path()).expect("component");
    let marked = with_custom_section(&release, "query-build");
    let stable = stock_host::version_of(&release);
    let sim = Sim::start();
    let host = Host::with_sim(&sim, "query-key", &[("ADMIN_TOKEN", "rollout-token")]);
    for query in ["?canary%3D10", "?Canary=10", "?canary", "?canary=10&canary=20", "?canary=10&typo=1"] {
        let reply = request_with(host.admin, "PUT", &format!("/admin/component{query}"), &[TOKEN], &marked);
        assert_eq!(reply.status, 400, "{query}: {}", reply.body);
        assert_eq!(running(&host), stable, "{query} changed nothing");
        assert!(describe(&host)["canary"].is_null(), "{query} started nothing");
    }
    let encoded = request_with(host.admin, "PUT", "/admin/component?ca%6Eary=10", &[TOKEN], &marked);
    assert_eq!(encoded.json()["result"], "canary", "a percent-encoded name is the name: {}", encoded.body);
    assert_eq!(describe(&host)["canary"]["percent"], 10);
    assert_eq!(running(&host), stable, "a canary, never a full swap");
}

#[test]
fn a_candidate_blocked_in_a_host_call_is_rejected_at_the_deadline_and_never_wedges_the_door() {
    let sim = Sim::start();
    let host =
        Host::with_sim(&sim, "wedge-key", &[("COMPONENT", &fixture_env()), ("ADMIN_TOKEN", "rollout-token"), ("REQUEST_TIMEOUT", "2s")]);
    let stable = running(&host);
    smoke(&host, "forever");
    let started = Instant::now();
    let answer = upload_later(host.admin, "", fixture_named("blocked"));
    let rollback = within(Duration::from_secs(2), {
        let admin = host.admin;
        move || request_with(admin, "POST", "/admin/rollback", &[TOKEN], b"")
    });
    assert_eq!(rollback.map(|r| r.status), Some(409), "a rollback answers at once while a candidate is checked");
    let reply = answer.recv_timeout(Duration::from_secs(30)).expect("the blocked candidate is answered");
    println!("blocked candidate answered after {:?}", started.elapsed());
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert!(reply.body.contains("smoke-test") && reply.body.contains("REQUEST_TIMEOUT"), "{}", reply.body);
    assert_eq!(running(&host), stable);
    smoke(&host, "release");
    let next = request_with(host.admin, "PUT", "/admin/component", &[TOKEN], &fixture_named("after"));
    assert_eq!(next.json()["result"], "ok", "the door takes the next candidate: {}", next.body);
    wait_until(Duration::from_secs(5), "the rejection is in the log", || host.logs().contains("smoke-test"));
}

#[test]
fn an_admin_token_file_that_blocks_never_stalls_the_host() {
    let dir = TempDir::new("token-fifo");
    let fifo = dir.0.join("token");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo").success());
    let sim = Sim::start();
    let host = Host::with_sim(&sim, "fifo-key", &[("ADMIN_TOKEN_FILE", fifo.to_str().expect("utf-8"))]);
    let writes: Vec<_> = (0..3)
        .map(|_| {
            let admin = host.admin;
            within(Duration::from_secs(5), move || {
                request_with(admin, "PUT", "/admin/component", &[("Authorization", "Bearer fifo-token")], b"x")
            })
        })
        .collect();
    for answer in writes {
        let answer = answer.expect("an admin write answers while the token file blocks");
        assert_eq!(answer.status, 403, "{}", answer.body);
        assert!(answer.body.contains("has not been read yet"), "{}", answer.body);
    }
    for path in ["/health", "/MSFT/7"] {
        let reply = try_request(host.addr, "GET", path, Duration::from_secs(3)).expect("the traffic port answers");
        assert_eq!(reply.status, 200, "{path}");
    }
    assert_eq!(try_request(host.admin, "GET", "/metrics", Duration::from_secs(3)).expect("metrics").status, 200);
    // A writer at last: the blocked read returns the token, and writes are checked against it.
    std::fs::write(&fifo, "fifo-token\n").expect("write the fifo");
    wait_until(Duration::from_secs(5), "the token from the fifo applies", || {
        request_with(host.admin, "PUT", "/admin/component", &[("Authorization", "Bearer fifo-token")], b"not wasm").status == 422
    });
}

#[test]
fn a_crowded_admin_port_still_answers_metrics_and_rollback() {
    use std::io::Write;
    let sim = Sim::start();
    let host = Host::with_sim(&sim, "crowd-key", &[("ADMIN_TOKEN", "rollout-token")]);
    let mut held: Vec<TcpStream> = (0..64)
        .map(|_| {
            let mut stream = TcpStream::connect(host.admin).expect("connect");
            stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").expect("half a head");
            stream
        })
        .collect();
    let mut trickle = TcpStream::connect(host.admin).expect("connect");
    trickle
        .write_all(b"PUT /admin/component HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer rollout-token\r\nContent-Length: 1000000\r\n\r\nabc")
        .expect("trickle");
    held.push(trickle);
    let metrics = try_request(host.admin, "GET", "/metrics", Duration::from_secs(3)).expect("metrics answers");
    assert_eq!(metrics.status, 200, "{}", metrics.body);
    let rollback = within(Duration::from_secs(3), {
        let admin = host.admin;
        move || request_with(admin, "POST", "/admin/rollback", &[TOKEN], b"")
    });
    assert_eq!(rollback.map(|r| r.status), Some(409), "a rollback is answered (nothing to roll back to)");
    drop(held);
}

#[test]
fn every_source_has_one_size_limit() {
    let release = std::fs::read(component_path()).expect("component");
    let mut volume = ConfigMapDir::new("size", &release);
    let sim = Sim::start();
    let host = Host::with_sim(&sim, "size-key", &[("COMPONENT", volume.path().to_str().expect("utf-8"))]);
    let stable = running(&host);
    let before = host.metric("stock_host_swaps_total{result=\"rejected\"}");
    volume.publish(&vec![b'x'; 33 * 1024 * 1024]);
    wait_until(Duration::from_secs(20), "the oversized file is rejected", || {
        host.metric("stock_host_swaps_total{result=\"rejected\"}") == before + 1.0
    });
    let state = describe(&host);
    let last = state["history"].as_array().and_then(|h| h.last()).expect("a record").clone();
    assert_eq!((last["step"].as_str(), last["source"].as_str()), (Some("size"), Some("file")), "{last}");
    assert_eq!(state["running"]["version"], stable.as_str());
}

#[test]
fn what_a_build_says_is_scrubbed_of_the_key_before_any_answer_or_record() {
    let key = "rollout-secret-key-4711";
    let sim = Sim::start();
    let host = Host::with_sim(&sim, key, &[("COMPONENT", &fixture_env()), ("ADMIN_TOKEN", "rollout-token")]);
    smoke(&host, "echo-key");
    let reply = request_with(host.admin, "PUT", "/admin/component", &[TOKEN], &fixture_named("echo"));
    smoke(&host, "release");
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert!(reply.body.contains("REDACTED"), "the refusal is reported, scrubbed: {}", reply.body);
    assert!(!reply.body.contains(key), "{}", reply.body);
    let described = get(host.admin, "/admin/component").body;
    assert!(described.contains("REDACTED") && !described.contains(key), "{described}");
    assert!(!host.logs().contains(key));
}

#[test]
fn an_empty_admin_token_beside_a_token_file_means_the_file() {
    let dir = TempDir::new("token-file");
    let file = dir.0.join("token");
    std::fs::write(&file, "file-token\n").expect("token file");
    let sim = Sim::start();
    let host = Host::with_sim(&sim, "file-token-key", &[("ADMIN_TOKEN", ""), ("ADMIN_TOKEN_FILE", file.to_str().expect("utf-8"))]);
    wait_until(Duration::from_secs(5), "the file's token applies", || {
        request_with(host.admin, "POST", "/admin/rollback", &[("Authorization", "bearer file-token")], b"").status == 409
    });
}

#[test]
fn per_version_series_stay_bounded_however_many_builds_a_pod_sees() {
    let release = std::fs::read(component_path()).expect("component");
    let sim = Sim::start();
    let host = Host::with_sim(&sim, "series-key", &[("ADMIN_TOKEN", "rollout-token")]);
    for n in 0..9 {
        let build = with_custom_section(&release, &format!("series-{n}"));
        assert_eq!(request_with(host.admin, "PUT", "/admin/component", &[TOKEN], &build).json()["result"], "ok");
        assert_eq!(get(host.addr, "/health").status, 200);
    }
    let metrics = host.metrics();
    let mut versions: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("stock_api_requests_total{"))
        .filter_map(|l| l.split("version=\"").nth(1)?.split('"').next())
        .collect();
    versions.sort_unstable();
    versions.dedup();
    assert!(!versions.is_empty(), "requests are labelled by version:\n{metrics}");
    assert!(versions.len() <= 5, "only builds still kept (4) and the running one keep series: {versions:?}");
    let running = running(&host);
    assert!(versions.contains(&running.as_str()), "the running build's series stay");
}
