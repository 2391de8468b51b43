//! A fleet in containers, for real: `scripts/fleet.sh up` starts three replicas of the image under test behind
//! HAProxy (active `/ready` checks), one Redis, one registry (the replicas follow a tag in it) and the simulator,
//! each in its own container on the fleet's own Docker networks. Load comes from this process through the
//! balancer's port published on 127.0.0.1, and every answer is counted. One fleet, eight scenarios in a row:
//! caching and the quota, rollouts, a killed replica, a rolling restart, Redis killed, a replica cut off from
//! Redis, the quota while Redis is down, the registry stopped. Everything is removed at the end (also on failure).
//! Like the container tests, it needs STOCK_IMAGE (`make test` sets it) or STOCK_SKIP_CONTAINER=1.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

const REPLICAS: usize = 3;
/// The fleet's UPSTREAM_DAILY_QUOTA: one budget for every replica.
const QUOTA: u64 = 300;
/// The fleet's CACHE_TTL.
const TTL: Duration = Duration::from_secs(3);
/// Load threads: each has at most one request in flight.
const THREADS: usize = 4;
/// Pause between one load thread's requests: three replicas, the balancer and the load share two cores.
const PACE: Duration = Duration::from_millis(5);
const TAG: &str = "live";
/// What the replicas run with besides the fleet's defaults: canaries judged and promoted by themselves.
/// The judge compares error ratios here: a p99 floor of 1 s keeps two shared cores' scheduling noise out of it.
const REPLICA_ENV: &str =
    "CANARY_PERCENT=50 CANARY_AUTO_PROMOTE=3s CANARY_MIN_REQUESTS=15 CANARY_P99_FLOOR=1s CACHE_TTL=3s NEW_SYMBOL_QUOTA_PERCENT=100";

#[test]
fn a_fleet_of_the_image_keeps_one_quota_rolls_out_builds_and_rides_out_kills_restarts_and_outages() {
    let Some(image) = crate::container::image() else { return };
    let dir = TempDir::new("fleet");
    let fleet = Fleet::up(&image);
    let mut figures = Vec::new();
    one_call_per_symbol_per_ttl_for_the_whole_fleet(&fleet, &mut figures);
    rollouts_reach_every_replica_and_a_bad_build_is_rolled_back_everywhere(&fleet, &dir, &mut figures);
    a_killed_replica_is_routed_around_and_rejoins_with_the_current_build(&fleet, &mut figures);
    a_rolling_restart_fails_no_request(&fleet, &mut figures);
    redis_killed_every_replica_falls_back_and_returns_to_shared_state(&fleet, &mut figures);
    a_replica_cut_off_from_redis_falls_back_alone_and_rejoins_without_overwriting(&fleet, &mut figures);
    the_quota_holds_for_the_fleet_while_redis_is_down(&fleet, &mut figures);
    the_registry_stopped_changes_nothing_served_and_the_next_tag_move_applies(&fleet, &dir, &mut figures);
    let mut table = String::from("fleet figures: scenario | requests | failed | refused as designed | upstream calls\n");
    for (scenario, requests, failed, designed, upstream) in &figures {
        table.push_str(&format!("  {scenario:<24} | {requests:>6} | {failed:>3} | {designed:>4} | {upstream:>4}\n"));
    }
    // Past libtest's capture: the figures are part of what `make test` reports.
    let _ = write!(std::io::stderr(), "{table}");
}

/// (scenario, requests, failed, answered non-200 as designed (the canary's failing route, 503 without Redis, 404
/// and 503 spending the quota), upstream calls).
type Figure = (&'static str, u64, u64, u64, u64);

fn one_call_per_symbol_per_ttl_for_the_whole_fleet(fleet: &Fleet, figures: &mut Vec<Figure>) {
    let before = fleet.sim_stats();
    let started = Instant::now();
    let load = Load::start_with(fleet.lb, &["/MSFT/7", "/AAPL/5", "/IBM/3"], &[], THREADS, PACE);
    std::thread::sleep(Duration::from_secs(7));
    let tally = load.tally();
    let elapsed = started.elapsed();
    assert_eq!(tally.failed(|_, status| status == 200), 0, "{tally:?}");
    let after = fleet.sim_stats();
    let most = elapsed.as_secs() / TTL.as_secs() + 1;
    for symbol in ["MSFT", "AAPL", "IBM"] {
        let calls = after.calls_for(symbol).unwrap_or(0) - before.calls_for(symbol).unwrap_or(0);
        assert!((1..=most).contains(&calls), "{symbol}: {calls} upstream calls in {elapsed:?} with a {TTL:?} TTL, for 3 replicas");
    }
    for i in 1..=REPLICAS {
        assert!(fleet.metric_sum(i, "stock_api_requests_total{") > 0.0, "replica-{i} served part of the load");
        assert_eq!(fleet.metric(i, "stock_api_upstream_quota_used") as u64, after.calls, "replica-{i} sees the fleet's one quota count");
    }
    figures.push(("1 cache and quota", tally.total(), 0, 0, after.calls - before.calls));
}

fn rollouts_reach_every_replica_and_a_bad_build_is_rolled_back_everywhere(fleet: &Fleet, dir: &TempDir, figures: &mut Vec<Figure>) {
    let calls = fleet.sim_stats().calls;
    let (good, good_version) = written_build(dir, &component_path(), "fleet-good");
    let load = Load::start_with(fleet.lb, &["/MSFT/7", "/AAPL/5"], &[], THREADS, PACE);
    fleet.push(&good);
    fleet.eventually(Duration::from_secs(90), "every replica canaries, then promotes, the moved tag's build", || {
        (1..=REPLICAS)
            .all(|i| fleet.component(i).is_some_and(|c| c["running"]["version"] == good_version.as_str() && c["canary"].is_null()))
    });
    let good_tally = load.tally();
    assert_eq!(good_tally.failed(|_, status| status == 200), 0, "{good_tally:?}");
    for i in 1..=REPLICAS {
        // A canary first; the fleet has no admin token, so only the judge can have promoted it.
        assert!(fleet.metric(i, "stock_host_swaps_total{result=\"canary\"}") >= 1.0, "replica-{i} canaried the moved tag's build");
    }

    // The fixture build answers /_fixture/fail with 500 (the stable build: 400, not a symbol).
    let (bad, bad_version) = written_build(dir, &fixture_component_path(), "fleet-bad");
    let load = Load::start_with(fleet.lb, &["/MSFT/7", "/_fixture/fail", "/AAPL/5"], &[], THREADS, PACE);
    fleet.push(&bad);
    fleet.eventually(Duration::from_secs(90), "every replica rolls the bad canary back", || {
        (1..=REPLICAS).all(|i| {
            fleet.component(i).is_some_and(|c| c["running"]["version"] == good_version.as_str() && c["canary"].is_null())
                && fleet.metric(i, "stock_host_swaps_total{result=\"auto_rollback\"}") >= 1.0
        })
    });
    let bad_tally = load.tally();
    let canary_failures = bad_tally.count("/_fixture/fail", 500);
    assert_eq!(
        bad_tally.failed(|path, status| status == 200 || (path == "/_fixture/fail" && matches!(status, 400 | 500))),
        0,
        "only the canary's own failing route failed: {bad_tally:?}"
    );
    assert!(canary_failures > 0, "the bad build was canaried and judged on its failures: {bad_tally:?}");
    for i in 1..=REPLICAS {
        let answer = fleet.pinned(i, "/_fixture/fail");
        assert_eq!(answer.status, 400, "replica-{i} answers with the stable build again");
        assert_ne!(fleet.component(i).map(|c| c["running"]["version"].clone()), Some(bad_version.as_str().into()));
    }
    // The operator moves the tag back to the good build, so replicas that start later take it.
    fleet.push(&good);
    std::thread::sleep(Duration::from_secs(3));
    for i in 1..=REPLICAS {
        let component = fleet.component(i).expect("admin answers");
        assert_eq!((component["running"]["version"].as_str(), component["canary"].is_null()), (Some(good_version.as_str()), true));
    }
    let upstream = fleet.sim_stats().calls - calls;
    let designed = bad_tally.count("/_fixture/fail", 400) + canary_failures;
    figures.push(("2 rollout: good, bad", good_tally.total() + bad_tally.total(), 0, designed, upstream));
}

fn the_registry_stopped_changes_nothing_served_and_the_next_tag_move_applies(fleet: &Fleet, dir: &TempDir, figures: &mut Vec<Figure>) {
    let calls = fleet.sim_stats().calls;
    let errors = |i| fleet.metric(i, "stock_host_registry_polls_total{result=\"error\"}");
    let before: Vec<f64> = (1..=REPLICAS).map(errors).collect();
    let load = Load::start_with(fleet.lb, &["/MSFT/7", "/AAPL/5"], &[], THREADS, PACE);
    fleet.docker(&["stop", "-t", "5", &fleet.container("registry")]);
    fleet.eventually(Duration::from_secs(30), "every replica counts failed polls", || {
        (1..=REPLICAS).all(|i| errors(i) >= before[i - 1] + 2.0)
    });
    fleet.docker(&["start", &fleet.container("registry")]);
    let (third, third_version) = written_build(dir, &component_path(), "fleet-third");
    fleet.eventually(Duration::from_secs(30), "the registry takes a push again", || fleet.try_push(&third));
    fleet.eventually(Duration::from_secs(90), "the tag moved after the outage reaches every replica", || {
        (1..=REPLICAS)
            .all(|i| fleet.component(i).is_some_and(|c| c["running"]["version"] == third_version.as_str() && c["canary"].is_null()))
    });
    let tally = load.tally();
    assert_eq!(tally.failed(|_, status| status == 200), 0, "{tally:?}");
    figures.push(("8 registry stopped", tally.total(), 0, 0, fleet.sim_stats().calls - calls));
}

fn a_killed_replica_is_routed_around_and_rejoins_with_the_current_build(fleet: &Fleet, figures: &mut Vec<Figure>) {
    let calls = fleet.sim_stats().calls;
    let current = fleet.component(1).expect("admin")["running"]["version"].clone();
    let load = Load::start_with(fleet.lb, &["/MSFT/7", "/AAPL/5", "/IBM/3"], &[], THREADS, PACE);
    std::thread::sleep(Duration::from_secs(1));
    fleet.docker(&["kill", &fleet.replica(2)]);
    fleet.eventually(Duration::from_secs(10), "the balancer marks the killed replica down", || fleet.replicas_up() == REPLICAS - 1);
    std::thread::sleep(Duration::from_secs(2));
    fleet.docker(&["start", &fleet.replica(2)]);
    fleet.eventually(Duration::from_secs(60), "the restarted replica is back in rotation with the current build", || {
        fleet.replicas_up() == REPLICAS && fleet.component(2).is_some_and(|c| c["running"]["version"] == current)
    });
    std::thread::sleep(Duration::from_secs(1));
    let tally = load.tally();
    // Only requests in flight on the killed replica can fail: at most one per load thread (HAProxy resends
    // those it can, so usually none).
    let failed = tally.failed(|_, status| status == 200);
    assert!(failed <= THREADS as u64, "{failed} failed, more than the {THREADS} that can be in flight: {tally:?}");
    figures.push(("3 replica killed", tally.total(), failed, 0, fleet.sim_stats().calls - calls));
}

fn a_rolling_restart_fails_no_request(fleet: &Fleet, figures: &mut Vec<Figure>) {
    let calls = fleet.sim_stats().calls;
    let load = Load::start_with(fleet.lb, &["/MSFT/7", "/AAPL/5", "/IBM/3"], &[], THREADS, PACE);
    for i in 1..=REPLICAS {
        // SIGTERM: /ready answers 503 at once, the balancer stops sending within a check, in-flight requests drain.
        fleet.docker(&["stop", "-t", "30", &fleet.replica(i)]);
        fleet.docker(&["start", &fleet.replica(i)]);
        fleet.eventually(Duration::from_secs(60), "the restarted replica is back in rotation", || fleet.replicas_up() == REPLICAS);
    }
    let tally = load.tally();
    assert_eq!(tally.failed(|_, status| status == 200), 0, "a rolling restart fails nothing: {tally:?}");
    figures.push(("4 rolling restart", tally.total(), 0, 0, fleet.sim_stats().calls - calls));
}

fn redis_killed_every_replica_falls_back_and_returns_to_shared_state(fleet: &Fleet, figures: &mut Vec<Figure>) {
    let calls = fleet.sim_stats().calls;
    let load = Load::start_with(fleet.lb, &["/MSFT/7", "/AAPL/5", "/IBM/3"], &[], THREADS, PACE);
    std::thread::sleep(Duration::from_secs(1));
    fleet.docker(&["kill", &fleet.container("redis")]);
    fleet.eventually(Duration::from_secs(20), "every replica falls back to its local store", || {
        (1..=REPLICAS).all(|i| fleet.metric(i, "stock_host_kv_fallback") == 1.0)
    });
    let at_fallback = fleet.sim_stats().calls;
    // Past the TTL: answers come from each replica's copy, fresh then stale; no upstream call is made.
    std::thread::sleep(TTL + Duration::from_secs(2));
    assert_eq!(fleet.sim_stats().calls, at_fallback, "no upstream call while Redis (the quota's count) is down");
    fleet.docker(&["start", &fleet.container("redis")]);
    fleet.eventually(Duration::from_secs(30), "every replica returns to Redis", || {
        (1..=REPLICAS).all(|i| fleet.metric(i, "stock_host_kv_fallback") == 0.0)
    });
    let tally = load.tally();
    assert_eq!(tally.failed(|_, status| status == 200), 0, "no 5xx while Redis is down: {tally:?}");
    // Shared single flight again: concurrent misses of a new symbol on every replica make one call.
    let before = fleet.sim_stats().calls_for("NVDA").unwrap_or(0);
    let answers: Vec<u16> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..12)
            .map(|_| scope.spawn(|| try_request(fleet.lb, "GET", "/NVDA/5", Duration::from_secs(20)).map_or(0, |r| r.status)))
            .collect();
        threads.into_iter().map(|t| t.join().expect("thread")).collect()
    });
    assert!(answers.iter().all(|&s| s == 200), "{answers:?}");
    assert_eq!(fleet.sim_stats().calls_for("NVDA").unwrap_or(0) - before, 1, "12 concurrent misses across the fleet, one upstream call");
    figures.push(("5 Redis killed", tally.total() + 12, 0, 0, fleet.sim_stats().calls - calls));
}

fn a_replica_cut_off_from_redis_falls_back_alone_and_rejoins_without_overwriting(fleet: &Fleet, figures: &mut Vec<Figure>) {
    let calls = fleet.sim_stats().calls;
    let external = |i| fleet.metric_sum(i, "stock_api_external_calls_total{");
    // Make sure replica-3 holds its own copy of MSFT before it is cut off.
    assert_eq!(fleet.pinned(3, "/MSFT/7").status, 200);
    let state_network = format!("{}-state", fleet.name);
    fleet.docker(&["network", "disconnect", &state_network, &fleet.replica(3)]);
    let shared = Load::start_with(fleet.lb, &["/MSFT/7", "/AAPL/5"], &[], THREADS, PACE);
    let pinned = Load::start_with(fleet.lb, &["/MSFT/7", "/AAPL/5"], &[("X-Fleet-Replica", "replica-3")], THREADS, PACE);
    fleet.eventually(Duration::from_secs(20), "replica-3 falls back", || fleet.metric(3, "stock_host_kv_fallback") == 1.0);
    let apart_calls = external(3);
    // Past the TTL: the others refresh MSFT in Redis; replica-3 serves its older copy and calls nobody.
    std::thread::sleep(TTL + Duration::from_secs(2));
    assert_eq!(
        (fleet.metric(1, "stock_host_kv_fallback"), fleet.metric(2, "stock_host_kv_fallback")),
        (0.0, 0.0),
        "the others stay shared"
    );
    assert_eq!(external(3), apart_calls, "replica-3 makes no upstream call while apart");
    assert!(fleet.metric(3, "stock_host_upstream_paused_total") >= 1.0);
    let stale = fleet.pinned(3, "/MSFT/7");
    assert_eq!((stale.status, stale.header("x-cache")), (200, Some("STALE")), "apart, replica-3 serves its own copy");
    fleet.docker(&["network", "connect", &state_network, &fleet.replica(3)]);
    fleet.eventually(Duration::from_secs(30), "replica-3 rejoins", || fleet.metric(3, "stock_host_kv_fallback") == 0.0);
    let (shared_tally, pinned_tally) = (shared.tally(), pinned.tally());
    assert_eq!(shared_tally.failed(|_, status| status == 200) + pinned_tally.failed(|_, status| status == 200), 0);
    // Back, it serves the shared series (newer than its copy), and its local counting never reached Redis.
    let back = fleet.pinned(3, "/MSFT/7");
    let age: u64 = back.header("age").and_then(|a| a.parse().ok()).expect("Age");
    assert!(back.header("x-cache") != Some("STALE") && age <= TTL.as_secs(), "the shared series, not its copy: {:?}", back.headers);
    let total = fleet.sim_stats().calls;
    for i in 1..=REPLICAS {
        assert_eq!(fleet.metric(i, "stock_api_upstream_quota_used") as u64, total, "replica-{i}: Redis counts exactly the calls made");
    }
    figures.push(("6 partition", shared_tally.total() + pinned_tally.total(), 0, 0, total - calls));
}

fn the_quota_holds_for_the_fleet_while_redis_is_down(fleet: &Fleet, figures: &mut Vec<Figure>) {
    let calls = fleet.sim_stats().calls;
    fleet.docker(&["kill", &fleet.container("redis")]);
    fleet.eventually(Duration::from_secs(20), "every replica falls back", || {
        (1..=REPLICAS).for_each(|i| drop(fleet.try_pinned(i, "/MSFT/7")));
        (1..=REPLICAS).all(|i| fleet.metric(i, "stock_host_kv_fallback") == 1.0)
    });
    // New symbols, on every replica: refused without an upstream call, so no replica spends a share of its own.
    let mut requests = 0;
    for i in 1..=REPLICAS {
        for symbol in ["TSLA", "META", "QOUTAGE1", "QOUTAGE2"] {
            let answer = fleet.pinned(i, &format!("/{symbol}/5"));
            requests += 1;
            assert_eq!(answer.status, 503, "{}", answer.body);
            assert_eq!(answer.json()["type"], "https://stock-service.dev/problems/upstream-call-refused", "{}", answer.body);
            assert!(answer.header("retry-after").is_some());
        }
    }
    assert_eq!(fleet.sim_stats().calls, calls, "no upstream call while Redis is down");
    fleet.docker(&["start", &fleet.container("redis")]);
    fleet.eventually(Duration::from_secs(30), "every replica returns to Redis", || {
        (1..=REPLICAS).all(|i| fleet.metric(i, "stock_host_kv_fallback") == 0.0)
    });
    // The rest of the day's budget, spent through the balancer by words the upstream does not know (one call each).
    let used = fleet.metric(1, "stock_api_upstream_quota_used") as u64;
    assert_eq!(used, fleet.sim_stats().calls, "the count survived Redis's restart (append-only file)");
    assert!(used < QUOTA, "the earlier scenarios left part of the quota ({used} of {QUOTA})");
    let mut statuses = BTreeMap::<u16, u64>::new();
    for n in 0..(QUOTA - used + 5) {
        let answer = get(fleet.lb, &format!("/QSPEND{n}/5"));
        *statuses.entry(answer.status).or_default() += 1;
        requests += 1;
    }
    assert_eq!(statuses, BTreeMap::from([(404, QUOTA - used), (503, 5)]), "exactly the rest of the quota, then 503");
    let total = fleet.sim_stats().calls;
    assert_eq!(total, QUOTA, "the fleet's upstream calls today: exactly UPSTREAM_DAILY_QUOTA");
    for i in 1..=REPLICAS {
        assert_eq!(fleet.metric(i, "stock_api_upstream_quota_used") as u64, QUOTA, "replica-{i}");
    }
    figures.push(("7 quota, Redis down", requests, 0, requests, total - calls));
}

/// The fleet `scripts/fleet.sh` started, under a name of this test run's own; removed on drop.
struct Fleet {
    name: String,
    image: String,
    lb: SocketAddr,
    sim: SocketAddr,
}

impl Fleet {
    fn up(image: &str) -> Self {
        let name = format!("stock-fleet-t{}", std::process::id());
        let unset: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        let fleet = Self { name, image: image.to_owned(), lb: unset, sim: unset };
        // Dropped (and so removed) if `up` fails half way.
        let output = fleet.script(&["up"]).output().expect("scripts/fleet.sh");
        assert!(
            output.status.success(),
            "scripts/fleet.sh up failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let mut fleet = fleet;
        fleet.lb = fleet.published(&fleet.container("lb"), "8080/tcp");
        fleet.sim = fleet.published(&fleet.container("sim"), "8081/tcp");
        fleet
    }

    fn script(&self, args: &[&str]) -> Command {
        let mut command = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/fleet.sh"));
        command.args(args).envs([
            ("FLEET_NAME", self.name.as_str()),
            ("FLEET_PORT", "0"),
            ("FLEET_ADMIN_PORT", "0"),
            ("FLEET_SIM_PORT", "0"),
            ("FLEET_TAG", TAG),
            ("FLEET_POLL_INTERVAL", "1s"),
            ("FLEET_REPLICA_ENV", REPLICA_ENV),
        ]);
        command.env("FLEET_QUOTA", QUOTA.to_string());
        command.env("IMAGE", &self.image);
        command.env("FLEET_COMPONENT", component_path());
        command
    }

    fn container(&self, role: &str) -> String {
        format!("{}-{role}", self.name)
    }

    fn replica(&self, i: usize) -> String {
        self.container(&format!("replica-{i}"))
    }

    fn docker(&self, args: &[&str]) {
        let output = Command::new("docker").args(args).output().expect("docker");
        assert!(output.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }

    /// The 127.0.0.1 address Docker published `port` of `container` on (it may change when a container restarts).
    fn try_published(&self, container: &str, port: &str) -> Option<SocketAddr> {
        let output = Command::new("docker").args(["port", container, port]).output().ok()?;
        String::from_utf8_lossy(&output.stdout).lines().find_map(|line| line.trim().parse().ok())
    }

    fn published(&self, container: &str, port: &str) -> SocketAddr {
        self.try_published(container, port).unwrap_or_else(|| panic!("{container} publishes no {port}"))
    }

    /// `GET /admin/component` of replica `i`; `None` while it is not answering.
    fn component(&self, i: usize) -> Option<serde_json::Value> {
        let admin = self.try_published(&self.replica(i), "9090/tcp")?;
        let reply = try_request(admin, "GET", "/admin/component", Duration::from_secs(5)).ok()?;
        (reply.status == 200).then(|| reply.json())
    }

    /// One sample of replica `i`'s `/metrics` (0 while it is not answering).
    fn metric(&self, i: usize, sample: &str) -> f64 {
        self.metrics(i).and_then(|text| sample_value(&text, sample)).unwrap_or(0.0)
    }

    /// The sum of every sample of replica `i` whose line starts with `prefix`.
    fn metric_sum(&self, i: usize, prefix: &str) -> f64 {
        let text = self.metrics(i).unwrap_or_default();
        text.lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok()).sum()
    }

    fn metrics(&self, i: usize) -> Option<String> {
        let admin = self.try_published(&self.replica(i), "9090/tcp")?;
        try_request(admin, "GET", "/metrics", Duration::from_secs(5)).ok().filter(|r| r.status == 200).map(|r| r.body)
    }

    /// A request the balancer sends to replica `i` (X-Fleet-Replica), while that replica is up.
    fn try_pinned(&self, i: usize, path: &str) -> std::io::Result<Reply> {
        let replica = format!("replica-{i}");
        try_request_with(self.lb, "GET", path, &[("X-Fleet-Replica", replica.as_str())], Duration::from_secs(20))
    }

    fn pinned(&self, i: usize, path: &str) -> Reply {
        self.try_pinned(i, path).unwrap_or_else(|e| panic!("GET {path} on replica-{i}: {e}"))
    }

    /// How many replicas the balancer sends traffic to (its stats page).
    fn replicas_up(&self) -> usize {
        let Ok(reply) = try_request(self.lb, "GET", "/_fleet/haproxy;csv", Duration::from_secs(5)) else { return 0 };
        reply
            .body
            .lines()
            .filter(|line| {
                let fields: Vec<&str> = line.split(',').collect();
                fields.len() > 17 && fields[0] == "replicas" && fields[1].starts_with("replica-") && fields[17] == "UP"
            })
            .count()
    }

    fn sim_stats(&self) -> SimStats {
        sim_stats(self.sim)
    }

    fn try_push(&self, build: &Path) -> bool {
        self.script(&["push", build.to_str().expect("utf-8"), TAG]).output().is_ok_and(|o| o.status.success())
    }

    fn push(&self, build: &Path) {
        let output = self.script(&["push", build.to_str().expect("utf-8"), TAG]).output().expect("scripts/fleet.sh push");
        assert!(output.status.success(), "push: {}", String::from_utf8_lossy(&output.stderr));
    }

    /// Polls `done` every 250 ms (each poll asks Docker and the replicas) until it holds, for at most `within`.
    fn eventually(&self, within: Duration, what: &str, mut done: impl FnMut() -> bool) {
        let started = Instant::now();
        while !done() {
            assert!(started.elapsed() < within, "{what}: not within {within:?}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for role in ["lb", "replica-1", "replica-2", "replica-3", "redis", "registry"] {
                let Ok(logs) = Command::new("docker").args(["logs", &self.container(role)]).output() else { continue };
                let text = format!("{}{}", String::from_utf8_lossy(&logs.stdout), String::from_utf8_lossy(&logs.stderr));
                // Everything but the access log and the component's per-request lines: what happened, not the load.
                let events: Vec<&str> =
                    text.lines().filter(|l| !l.contains(r#""message":"request""#) && !l.contains("component stderr")).collect();
                eprintln!("--- {role} ---\n{}", events[events.len().saturating_sub(60)..].join("\n"));
            }
            for i in 1..=REPLICAS {
                eprintln!("--- replica-{i} /admin/component ---\n{:?}", self.component(i));
            }
        }
        match self.script(&["down"]).output() {
            Ok(output) if output.status.success() => {}
            other => eprintln!("scripts/fleet.sh down {}: {other:?}", self.name),
        }
    }
}
