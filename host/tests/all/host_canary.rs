//! Canary rollouts inside one pod: a share of traffic for a candidate build, sticky clients, promotion,
//! rollback by an operator and by the judge when the candidate answers worse.

use std::collections::HashMap;
use std::time::Duration;

use crate::common::*;

const TOKEN: (&str, &str) = ("Authorization", "Bearer canary-token");

fn versions(host: &Host, path: &str, n: usize, headers: &[(&str, &str)]) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for _ in 0..n {
        let reply = request_with(host.addr, "GET", path, headers, b"");
        *seen.entry(reply.header("x-component-version").expect("version").to_owned()).or_default() += 1;
    }
    seen
}

fn canary(host: &Host) -> serde_json::Value {
    get(host.admin, "/admin/component").json()["canary"].clone()
}

#[test]
fn a_canary_takes_its_share_and_promotion_makes_it_the_only_build() {
    let release = std::fs::read(component_path()).expect("component");
    let marked = with_custom_section(&release, "stock-canary-build");
    let (stable, candidate) = (stock_host::version_of(&release), stock_host::version_of(&marked));
    let sim = Sim::start();
    let host = Host::with_sim(&sim, "canary-key", &[("ADMIN_TOKEN", "canary-token")]);
    let started = request_with(host.admin, "PUT", "/admin/component?canary=20", &[TOKEN], &marked);
    assert_eq!((started.status, started.json()["result"].as_str()), (200, Some("canary")), "{}", started.body);
    let seen = versions(&host, "/MSFT/7", 1000, &[]);
    let share = seen.get(&candidate).copied().unwrap_or(0);
    for _ in 0..20 {
        assert_eq!(get(host.addr, "/health").status, 200, "the host answers /health itself: no build is judged by it");
    }
    assert!((150..=250).contains(&share), "the canary's share of 1,000 requests is within 15-25 %: {seen:?}");
    assert_eq!(share + seen.get(&stable).copied().unwrap_or(0), 1000, "every answer came from one of the two builds");
    let state = canary(&host);
    assert_eq!((state["version"].as_str(), state["percent"].as_u64()), (Some(candidate.as_str()), Some(20)));
    assert_eq!(state["canary_stats"]["requests"].as_u64(), Some(share as u64));
    assert_eq!(state["stable_stats"]["server_errors"].as_u64(), Some(0));
    let metrics = host.metrics();
    for version in [&stable, &candidate] {
        assert!(metrics.contains(&format!("version=\"{version}\"")), "requests are labelled by version: {version}");
    }
    let refused = request_with(host.admin, "PUT", "/admin/component?canary=150", &[TOKEN], &marked);
    assert_eq!(refused.status, 400, "{}", refused.body);

    let promoted = request_with(host.admin, "POST", "/admin/promote", &[TOKEN], b"");
    assert_eq!(promoted.status, 200, "{}", promoted.body);
    assert_eq!(versions(&host, "/MSFT/7", 20, &[]).get(&candidate), Some(&20), "the promoted build takes everything");
    assert!(canary(&host).is_null());
    assert_eq!(request_with(host.admin, "POST", "/admin/promote", &[TOKEN], b"").status, 409, "nothing left to promote");
}

#[test]
fn clients_sending_the_sticky_header_stay_on_one_version() {
    let release = std::fs::read(component_path()).expect("component");
    let marked = with_custom_section(&release, "stock-sticky-build");
    let sim = Sim::start();
    let host = Host::with_sim(&sim, "sticky-key", &[("ADMIN_TOKEN", "canary-token")]);
    assert_eq!(request_with(host.admin, "PUT", "/admin/component?canary=50", &[TOKEN], &marked).status, 200);
    let mut clients_per_version: HashMap<String, usize> = HashMap::new();
    for client in 0..20 {
        let id = format!("session-{client}");
        let seen = versions(&host, "/IBM/3", 10, &[("X-Session-Id", &id)]);
        assert_eq!(seen.len(), 1, "{id} flipped between versions: {seen:?}");
        *clients_per_version.entry(seen.into_keys().next().expect("a version")).or_default() += 1;
    }
    assert_eq!(clients_per_version.len(), 2, "clients are spread over both versions: {clients_per_version:?}");
}

#[test]
fn an_operator_rollback_during_a_canary_drops_it_at_once() {
    let release = std::fs::read(component_path()).expect("component");
    let marked = with_custom_section(&release, "stock-dropped-build");
    let sim = Sim::start();
    let host = Host::with_sim(&sim, "drop-key", &[("ADMIN_TOKEN", "canary-token")]);
    assert_eq!(request_with(host.admin, "PUT", "/admin/component?canary=50", &[TOKEN], &marked).status, 200);
    let dropped = request_with(host.admin, "POST", "/admin/rollback", &[TOKEN], b"");
    assert_eq!((dropped.status, dropped.json()["result"].as_str()), (200, Some("rollback")), "{}", dropped.body);
    assert!(canary(&host).is_null());
    let stable = stock_host::version_of(&release);
    assert_eq!(versions(&host, "/MSFT/7", 20, &[]).get(&stable), Some(&20), "the stable build takes everything again");
}

#[test]
fn a_canary_answering_worse_is_rolled_back_by_itself_under_load_without_failing_other_requests() {
    // The fixture build answers /_fixture/fail with a 500; the stable build answers it 400 (bad symbol).
    // Meanwhile a load of ordinary requests, which both builds answer, must not see a single failure.
    let fixture = std::fs::read(fixture_component_path()).expect("fixture");
    let sim = Sim::start();
    let host = Host::with_sim(&sim, "judge-key", &[("ADMIN_TOKEN", "canary-token"), ("CANARY_MIN_REQUESTS", "20")]);
    assert_eq!(get(host.addr, "/MSFT/7").status, 200);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (stop, addr) = (stop.clone(), host.addr);
        std::thread::spawn(move || {
            let (mut ok, mut failed) = (0, Vec::new());
            let started = std::time::Instant::now();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && started.elapsed() < Duration::from_secs(60) {
                match try_request(addr, "GET", "/MSFT/7", Duration::from_secs(10)) {
                    Ok(reply) if reply.status == 200 => ok += 1,
                    Ok(reply) => failed.push(format!("{} {}", reply.status, reply.body)),
                    Err(error) => failed.push(error.to_string()),
                }
                // Paced: the judge looks every 250 ms at everything since the canary began, and an unpaced
                // load on a fast host dilutes the canary's 500s below its 5 % bound before it looks.
                std::thread::sleep(Duration::from_millis(2));
            }
            (ok, failed)
        })
    };
    assert_eq!(request_with(host.admin, "PUT", "/admin/component?canary=50", &[TOKEN], &fixture).status, 200);
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    for _ in 0..60 {
        *statuses.entry(get(host.addr, "/_fixture/fail").status).or_default() += 1;
    }
    // The judge counts the load's canary requests too, so it may act after any number of these failures.
    assert!(statuses.get(&500).is_some_and(|n| *n >= 1), "the canary failed some requests: {statuses:?}");
    assert_eq!(statuses.values().sum::<usize>(), statuses.get(&500).unwrap_or(&0) + statuses.get(&400).unwrap_or(&0));
    wait_until(Duration::from_secs(5), "the judge rolls the canary back", || canary(&host).is_null());
    assert_eq!(host.metric("stock_host_swaps_total{result=\"auto_rollback\"}"), 1.0);
    let history = get(host.admin, "/admin/component").json()["history"].as_array().expect("history").clone();
    let last = history.last().expect("an entry");
    assert_eq!((last["result"].as_str(), last["step"].as_str()), (Some("auto_rollback"), Some("canary-judgment")));
    assert!(last["reason"].as_str().is_some_and(|r| r.contains("5xx")), "{last}");
    assert!((0..20).all(|_| get(host.addr, "/_fixture/fail").status == 400), "only the stable build answers now");
    assert!(host.logs().contains("canary rolled back by the judge"));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = load.join().expect("load");
    assert!(ok > 50, "the load ran: {ok}");
    assert!(failed.is_empty(), "ordinary requests failed during the canary: {failed:?}");
}

fn last_attempt(host: &Host) -> (String, String) {
    let history = get(host.admin, "/admin/component").json()["history"].as_array().expect("history").clone();
    let last = history.last().expect("an attempt");
    (last["source"].as_str().unwrap_or_default().to_owned(), last["result"].as_str().unwrap_or_default().to_owned())
}

#[test]
fn with_canary_percent_a_changed_file_starts_a_canary_and_reverting_the_file_drops_it() {
    let release = std::fs::read(component_path()).expect("component");
    let marked = with_custom_section(&release, "stock-file-canary-build");
    let (stable, candidate) = (stock_host::version_of(&release), stock_host::version_of(&marked));
    let mut volume = ConfigMapDir::new("file-canary", &release);
    let sim = Sim::start();
    let component = volume.path();
    let host = Host::with_sim(&sim, "file-canary-key", &[("COMPONENT", component.to_str().expect("utf-8")), ("CANARY_PERCENT", "30")]);
    volume.publish(&marked);
    wait_until(Duration::from_secs(15), "the file change starts a canary", || {
        canary(&host)["version"].as_str() == Some(candidate.as_str())
    });
    assert_eq!(canary(&host)["percent"].as_u64(), Some(30));
    assert_eq!(last_attempt(&host), ("file".into(), "canary".into()));
    let seen = versions(&host, "/MSFT/7", 200, &[]);
    let share = seen.get(&candidate).copied().unwrap_or(0);
    assert!((40..=80).contains(&share), "the canary takes about 30 % of 200 requests, not all: {seen:?}");

    volume.publish(&release);
    wait_until(Duration::from_secs(15), "reverting the file drops the canary", || canary(&host).is_null());
    assert_eq!(last_attempt(&host), ("file".into(), "rollback".into()));
    assert_eq!(versions(&host, "/MSFT/7", 20, &[]).get(&stable), Some(&20), "the stable build takes everything again");
}

#[test]
fn a_file_canary_with_auto_promotion_becomes_the_only_build_after_a_healthy_period() {
    let release = std::fs::read(component_path()).expect("component");
    let marked = with_custom_section(&release, "stock-file-promoted-build");
    let candidate = stock_host::version_of(&marked);
    let mut volume = ConfigMapDir::new("file-promote", &release);
    let sim = Sim::start();
    let component = volume.path();
    let env = [
        ("COMPONENT", component.to_str().expect("utf-8")),
        ("CANARY_PERCENT", "50"),
        ("CANARY_AUTO_PROMOTE", "1s"),
        ("CANARY_MIN_REQUESTS", "20"),
    ];
    let host = Host::with_sim(&sim, "file-promote-key", &env);
    volume.publish(&marked);
    wait_until(Duration::from_secs(15), "the file change starts a canary", || {
        canary(&host)["version"].as_str() == Some(candidate.as_str())
    });
    let mut sent = 0;
    wait_until(Duration::from_secs(15), "the healthy canary is promoted by the judge", || {
        if sent < 2_000 {
            versions(&host, "/MSFT/7", 10, &[]);
            sent += 10;
        }
        canary(&host).is_null()
    });
    assert_eq!(last_attempt(&host), ("canary-judge".into(), "ok".into()));
    assert_eq!(get(host.admin, "/admin/component").json()["running"]["version"].as_str(), Some(candidate.as_str()));
    assert_eq!(versions(&host, "/MSFT/7", 20, &[]).get(&candidate), Some(&20), "the promoted build takes everything");
}
