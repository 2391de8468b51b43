//! The image, run for real with the Docker Engine: locked down as a cluster would run it, with the
//! simulator as upstream on the host's loopback, the component from a ConfigMap-style volume, a hot swap
//! inside the running container, and `docker stop` draining a request in flight.
//! `make test` builds the image and sets STOCK_IMAGE (it fails without a Docker Engine). Without STOCK_IMAGE these
//! tests fail; a developer without Docker skips them knowingly with STOCK_SKIP_CONTAINER=1.

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

/// The image to test (`make test` sets it to the image it just built).
const ENV_IMAGE: &str = "STOCK_IMAGE";
/// `1`: skip the container tests on purpose (no Docker Engine here). `make test` clears it.
const ENV_SKIP: &str = "STOCK_SKIP_CONTAINER";

/// The image to test, or `None` when the developer opted out with STOCK_SKIP_CONTAINER=1 (said on stderr, past the
/// test harness's capture). A missing STOCK_IMAGE without that opt-out fails the test: it must not pass untested.
pub(crate) fn image() -> Option<String> {
    match std::env::var(ENV_SKIP).as_deref() {
        Ok("1") => {
            // Straight to stderr, not `eprintln!`: libtest captures that and would hide the line for a passing test.
            let _ = writeln!(std::io::stderr(), "SKIPPED: container tests ({ENV_SKIP}=1): the image is NOT tested");
            return None;
        }
        Ok("") | Err(std::env::VarError::NotPresent) => {}
        Ok(other) => panic!("{ENV_SKIP} must be 1 (skip the container tests) or unset, got {other:?}"),
        Err(e) => panic!("{ENV_SKIP}: {e}"),
    }
    match std::env::var(ENV_IMAGE) {
        Ok(image) if !image.is_empty() => Some(image),
        _ => panic!(
            "{ENV_IMAGE} is not set: run `make test` (it builds the image; needs a Docker Engine), set {ENV_IMAGE}=<image>, \
             or set {ENV_SKIP}=1 to skip the container tests knowingly"
        ),
    }
}

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker").args(args).output().expect("docker runs")
}

/// A running container, removed on drop (its logs printed when the test failed).
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let logs = docker(&["logs", &self.0]);
            eprintln!("--- container logs ---\n{}{}", String::from_utf8_lossy(&logs.stdout), String::from_utf8_lossy(&logs.stderr));
        }
        let _ = docker(&["rm", "-f", &self.0]);
    }
}

#[test]
fn the_image_runs_locked_down_serves_swaps_and_drains_on_docker_stop() {
    let Some(image) = image() else { return };
    let release = std::fs::read(component_path()).expect("component");
    let mut volume = ConfigMapDir::new("container", &release);
    let sim = Sim::start();
    let (port, admin) = (free_port(), free_port());
    let mount = format!("{}:/etc/stock/component:ro", volume.dir.0.display());
    let env = [
        format!("PORT={port}"),
        format!("ADMIN_PORT={admin}"),
        "BIND=127.0.0.1".to_owned(),
        "APIKEY=container-key".to_owned(),
        format!("ALPHAVANTAGE_URL={}", sim.url()),
        "COMPONENT=/etc/stock/component/component.wasm".to_owned(),
        "DRAIN_TIMEOUT=20s".to_owned(),
    ];
    let mut args = vec!["run", "-d", "--read-only", "--user", "65532", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"];
    args.extend(["--network", "host", "-v", &mount]);
    for pair in &env {
        args.extend(["-e", pair.as_str()]);
    }
    args.push(&image);
    let started = docker(&args);
    assert!(started.status.success(), "docker run failed: {}", String::from_utf8_lossy(&started.stderr));
    let container = Container(String::from_utf8_lossy(&started.stdout).trim().to_owned());
    let addr = format!("127.0.0.1:{port}").parse().expect("addr");
    let admin_addr = format!("127.0.0.1:{admin}").parse().expect("addr");
    wait_for_port(addr, Duration::from_secs(30));

    let prices = get(addr, "/MSFT/7");
    assert_eq!(prices.status, 200, "{}", prices.body);
    assert_eq!(prices.header("x-component-version"), Some(stock_host::version_of(&release).as_str()), "the mounted build serves");
    assert_eq!(get(addr, "/health").status, 200);
    assert_eq!(get(addr, "/ready").status, 200);
    assert!(get(admin_addr, "/metrics").body.contains("stock_api_requests_total"));

    let marked = with_custom_section(&release, "stock-container-build");
    let want = stock_host::version_of(&marked);
    volume.publish(&marked);
    wait_until(Duration::from_secs(15), "the new ConfigMap build goes live inside the running container", || {
        get(addr, "/health").header("x-component-version") == Some(want.as_str())
    });

    sim.fault("latency", 2_000, None);
    let in_flight = std::thread::spawn(move || try_request(addr, "GET", "/IBM/7", Duration::from_secs(30)));
    wait_until(Duration::from_secs(5), "the slow request is in flight", || {
        sample_value(&get(admin_addr, "/metrics").body, "stock_host_in_flight_requests") == Some(1.0)
    });
    let stopping = Instant::now();
    let stopped = docker(&["stop", "-t", "30", &container.0]);
    assert!(stopped.status.success(), "{}", String::from_utf8_lossy(&stopped.stderr));
    let answer = in_flight.join().expect("client").expect("the request in flight got its answer");
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(stopping.elapsed() < Duration::from_secs(25), "exited within its grace period: {:?}", stopping.elapsed());
    let code = docker(&["inspect", "-f", "{{.State.ExitCode}}", &container.0]);
    assert_eq!(String::from_utf8_lossy(&code.stdout).trim(), "0", "SIGTERM with a drained request is a clean exit");
}

#[test]
fn the_image_has_no_shell_and_runs_as_a_numeric_non_root_user() {
    let Some(image) = image() else { return };
    let user = docker(&["image", "inspect", "-f", "{{.Config.User}}", &image]);
    assert_eq!(String::from_utf8_lossy(&user.stdout).trim(), "65532:65532");
    let ports = docker(&["image", "inspect", "-f", "{{json .Config.ExposedPorts}}", &image]);
    let ports = String::from_utf8_lossy(&ports.stdout);
    assert!(ports.contains("8080/tcp") && ports.contains("9090/tcp"), "{ports}");
    let shell = docker(&["run", "--rm", "--entrypoint", "/bin/sh", &image, "-c", "true"]);
    assert!(!shell.status.success(), "the image has a shell");
    let stop_signal = docker(&["image", "inspect", "-f", "{{.Config.StopSignal}}", &image]);
    assert_eq!(String::from_utf8_lossy(&stop_signal.stdout).trim(), "SIGTERM");
}

/// The `docker run` command the README documents under `<!-- docker-run:{name} -->`, as arguments
/// (line continuations joined), with its image, host ports and key replaced for this run.
fn documented_docker_run(name: &str, image: &str, replace: &[(&str, String)]) -> Vec<String> {
    let readme = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).expect("README.md");
    let marker = format!("<!-- docker-run:{name} -->");
    let block = readme.split_once(&marker).unwrap_or_else(|| panic!("README.md has no {marker}")).1;
    let command: String = block.split("```").nth(1).expect("a code block after the marker").replace("\\\n", " ");
    let mut command = command.trim().to_owned();
    for (from, to) in replace {
        assert!(command.contains(from), "the documented command has no {from:?}: {command}");
        command = command.replace(from, to);
    }
    let args: Vec<String> = command.split_whitespace().map(str::to_owned).collect();
    assert_eq!(args.first().map(String::as_str), Some("docker"));
    let mut args: Vec<String> = args.into_iter().skip(1).collect();
    let last = args.pop().expect("the image");
    assert_eq!(last, "stock-host:dev", "the README names the image make image builds");
    // Detached here (the README's is in the foreground), and the image under test.
    let at = args.iter().position(|a| a == "run").expect("docker run") + 1;
    args.insert(at, "-d".to_owned());
    args.push(image.to_owned());
    args
}

#[test]
fn the_docker_run_commands_in_the_readme_work_as_written() {
    let Some(image) = image() else { return };
    // With a real key: the ports published on loopback; /health and /ready need no upstream.
    let (port, admin) = (free_port(), free_port());
    let args = documented_docker_run(
        "real-key",
        &image,
        &[
            ("127.0.0.1:8080:8080", format!("127.0.0.1:{port}:8080")),
            ("127.0.0.1:9090:9090", format!("127.0.0.1:{admin}:9090")),
            ("your-alpha-vantage-key", "readme-key".to_owned()),
        ],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let started = docker(&args);
    assert!(started.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&started.stderr));
    let _container = Container(String::from_utf8_lossy(&started.stdout).trim().to_owned());
    let addr = format!("127.0.0.1:{port}").parse().expect("addr");
    wait_until(Duration::from_secs(30), "/ready through the published port", || {
        try_request(addr, "GET", "/ready", Duration::from_secs(2)).is_ok_and(|r| r.status == 200)
    });
    let admin_addr = format!("127.0.0.1:{admin}").parse().expect("addr");
    assert!(get(admin_addr, "/metrics").body.contains("stock_host_build_info"), "the admin port is published too");

    // Against the simulator on the host's loopback.
    let sim = Sim::start();
    let sim_port = sim.url().split(':').nth(2).and_then(|p| p.split('/').next()).expect("sim port").to_owned();
    let (port, admin) = (free_port(), free_port());
    let args = documented_docker_run(
        "simulator",
        &image,
        &[
            ("http://127.0.0.1:8081/query", format!("http://127.0.0.1:{sim_port}/query")),
            ("BIND=127.0.0.1", format!("BIND=127.0.0.1 -e PORT={port} -e ADMIN_PORT={admin}")),
        ],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let started = docker(&args);
    assert!(started.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&started.stderr));
    let _container = Container(String::from_utf8_lossy(&started.stdout).trim().to_owned());
    let addr = format!("127.0.0.1:{port}").parse().expect("addr");
    wait_for_port(addr, Duration::from_secs(30));
    let prices = get(addr, "/MSFT/7");
    assert_eq!(prices.status, 200, "{}", prices.body);
    assert_eq!(sim.calls(), 1, "the documented command reaches the simulator");
}
