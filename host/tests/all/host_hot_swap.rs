//! Hot swap through the real host: Kubernetes-style ConfigMap updates under load, rejected candidates,
//! the admin API with its token, and rollback.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;

fn version_of(bytes: &[u8]) -> String {
    stock_host::version_of(bytes)
}

fn running_version(host: &Host) -> String {
    get(host.admin, "/admin/component").json()["running"]["version"].as_str().expect("running version").to_owned()
}

#[test]
fn kubelet_style_updates_under_load_go_live_with_zero_failed_requests() {
    let release = std::fs::read(component_path()).expect("component");
    let marked = with_custom_section(&release, "stock-test-build");
    let builds = [(release.clone(), version_of(&release)), (marked.clone(), version_of(&marked))];
    assert_ne!(builds[0].1, builds[1].1);
    let mut volume = ConfigMapDir::new("kubelet", &release);
    let sim = Sim::start();
    let component = volume.path();
    let host = Host::with_sim(&sim, "swap-key", &[("COMPONENT", component.to_str().expect("utf-8"))]);
    assert_eq!(get(host.addr, "/MSFT/7").status, 200);

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load: Vec<_> = (0..4)
        .map(|i| {
            let (stop, ok, failed, addr) = (stop.clone(), ok.clone(), failed.clone(), host.addr);
            std::thread::spawn(move || {
                let paths = ["/MSFT/7", "/health", "/IBM/3", "/openapi.json"];
                let started = Instant::now();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(120) {
                    match try_request(addr, "GET", paths[(i + n) % paths.len()], Duration::from_secs(10)) {
                        Ok(reply) if reply.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                        Ok(reply) => {
                            eprintln!("failed during swaps: {} {}", reply.status, reply.body);
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                        Err(error) => {
                            eprintln!("failed during swaps: {error}");
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                    n += 1;
                }
            })
        })
        .collect();

    let mut latencies = Vec::new();
    for swap in 1..=10 {
        let (bytes, version) = &builds[swap % 2];
        let started = Instant::now();
        volume.publish(bytes);
        wait_until(Duration::from_secs(5), &format!("swap {swap} to {version} visible in X-Component-Version"), || {
            get(host.addr, "/health").header("x-component-version") == Some(version.as_str())
        });
        latencies.push(started.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    for thread in load {
        thread.join().expect("load thread");
    }
    latencies.sort();
    eprintln!("swap latencies (file change to visible): {latencies:?}; requests ok {}", ok.load(Ordering::Relaxed));
    assert_eq!(failed.load(Ordering::Relaxed), 0, "requests failed during swaps");
    assert!(ok.load(Ordering::Relaxed) > 100, "the load generator ran");
    assert_eq!(host.metric("stock_host_swaps_total{result=\"ok\"}"), 10.0);
    assert_eq!(host.component_info(&builds[0].1), Some(1.0));
    assert_eq!(host.component_info(&builds[1].1), None, "only the running build is listed");
    assert_eq!(get(host.addr, "/MSFT/3").header("x-cache"), Some("HIT"), "the cache survived ten swaps");
}

#[test]
fn garbage_and_builds_of_another_world_are_rejected_while_the_old_build_serves() {
    let release = std::fs::read(component_path()).expect("component");
    let mut volume = ConfigMapDir::new("reject", &release);
    let sim = Sim::start();
    let component = volume.path();
    let host = Host::with_sim(&sim, "reject-key", &[("COMPONENT", component.to_str().expect("utf-8"))]);
    let running = version_of(&release);
    let other_world = std::fs::read(fixture("trap.wat")).expect("trap.wat");
    let precompiled = b"\x7fELF\x02\x01\x01\x00 precompiled bytes are never deserialized".to_vec();
    for (candidate, step) in [(b"this is not wasm".to_vec(), "compile"), (other_world, "exports"), (precompiled, "compile")] {
        let before = host.metric("stock_host_swaps_total{result=\"rejected\"}");
        volume.publish(&candidate);
        wait_until(Duration::from_secs(5), &format!("a {step} rejection is counted"), || {
            host.metric("stock_host_swaps_total{result=\"rejected\"}") == before + 1.0
        });
        let history = get(host.admin, "/admin/component").json()["history"].as_array().expect("history").clone();
        let last = history.last().expect("an attempt");
        assert_eq!((last["result"].as_str(), last["step"].as_str(), last["source"].as_str()), (Some("rejected"), Some(step), Some("file")));
        assert_eq!(running_version(&host), running);
        assert_eq!(get(host.addr, "/MSFT/7").header("x-component-version"), Some(running.as_str()), "the old build keeps serving");
    }
    assert!(host.logs().contains("component build rejected; the running build keeps serving"));
}

#[test]
fn admin_uploads_need_the_token_and_rollback_restores_the_previous_build() {
    let release = std::fs::read(component_path()).expect("component");
    let marked = with_custom_section(&release, "stock-admin-build");
    let sim = Sim::start();
    let closed = Host::with_sim(&sim, "admin-key", &[]);
    let refused = request_with(closed.admin, "PUT", "/admin/component", &[("Authorization", "Bearer x")], &marked);
    assert_eq!(refused.status, 403, "no token configured: {}", refused.body);
    assert!(refused.body.contains("ADMIN_TOKEN"), "says why: {}", refused.body);
    drop(closed);

    let host = Host::with_sim(&sim, "admin-key", &[("ADMIN_TOKEN", "let-me-swap")]);
    for auth in [None, Some("Bearer wrong"), Some("let-me-swap")] {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        let reply = request_with(host.admin, "PUT", "/admin/component", &headers, &marked);
        assert_eq!(reply.status, 401, "{auth:?}: {}", reply.body);
        assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
    }
    assert_eq!(request_with(host.admin, "POST", "/admin/rollback", &[], b"").status, 401);
    let auth = [("Authorization", "Bearer let-me-swap")];
    let live = request_with(host.admin, "PUT", "/admin/component", &auth, &marked);
    assert_eq!(live.status, 200, "{}", live.body);
    assert_eq!(live.json()["result"], "ok");
    assert_eq!(get(host.addr, "/MSFT/7").header("x-component-version"), Some(version_of(&marked).as_str()));
    let state = get(host.admin, "/admin/component").json();
    assert_eq!(state["running"]["version"], version_of(&marked).as_str());
    assert_eq!(state["running"]["source"], "admin");
    assert_eq!(state["previous"]["version"], version_of(&release).as_str());

    let garbage = request_with(host.admin, "PUT", "/admin/component", &auth, b"\0asm garbage");
    assert_eq!(garbage.status, 422, "{}", garbage.body);
    assert!(garbage.body.contains("compile"), "{}", garbage.body);

    let back = request_with(host.admin, "POST", "/admin/rollback", &auth, b"");
    assert_eq!(back.status, 200, "{}", back.body);
    assert_eq!(running_version(&host), version_of(&release));
    assert_eq!(get(host.addr, "/MSFT/7").header("x-component-version"), Some(version_of(&release).as_str()));
    let again = request_with(host.admin, "PUT", "/admin/component", &auth, &marked);
    assert_eq!(again.json()["result"], "ok", "a repeat of a kept build goes live (from the compiled cache)");
    assert!(again.json()["seconds"].as_f64().expect("seconds") < 0.5, "{}", again.body);
}

#[test]
fn an_idle_host_leaves_its_component_file_alone_and_still_takes_a_plain_overwrite() {
    use notify::{RecursiveMode, Watcher};
    let dir = TempDir::new("idle-watch");
    let path = dir.0.join("component.wasm");
    std::fs::copy(component_path(), &path).expect("copy component");
    let opens = Arc::new(AtomicU64::new(0));
    let mut watcher = notify::recommended_watcher({
        let opens = opens.clone();
        let path = path.clone();
        move |event: notify::Result<notify::Event>| {
            if let Ok(event) = event
                && matches!(event.kind, notify::EventKind::Access(notify::event::AccessKind::Open(_)))
                && event.paths.contains(&path)
            {
                opens.fetch_add(1, Ordering::SeqCst);
            }
        }
    })
    .expect("watcher");
    watcher.watch(&dir.0, RecursiveMode::NonRecursive).expect("watch the directory");
    let path_text = path.display().to_string();
    let host = Host::start(&[("COMPONENT", path_text.as_str()), ("APIKEY", "k")]);
    std::thread::sleep(Duration::from_millis(500));
    let before = opens.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(3));
    let idle_opens = opens.load(Ordering::SeqCst) - before;
    // The safety-net poll (every 10 s) reads it at most twice in 3 s; reacting to its own reads, the host
    // opened it about 20 times.
    assert!(idle_opens <= 2, "an idle host opened its component {idle_opens} times in 3 s");
    let (build, version) = written_build(&dir, &component_path(), "overwrite");
    std::fs::copy(&build, &path).expect("overwrite in place, as cp does");
    wait_until(Duration::from_secs(30), "the overwritten file goes live", || running_version(&host) == version);
}
