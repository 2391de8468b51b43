//! Components from an OCI registry, against Debian's real `docker-registry` (distribution 2.8) on a
//! free loopback port: builds published with `stock-host push`, tags moved with `skopeo copy`, broken
//! artifacts written with the distribution API itself, signatures made with Python's `cryptography`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

const REPOSITORY: &str = "stock/component";

/// `docker-registry serve` with filesystem storage in a scratch directory; stopped on drop, and
/// restartable on the same port with the same storage (an outage, not a new registry).
struct Registry {
    process: Option<Process>,
    port: u16,
    dir: TempDir,
    /// `user:password` when it asks for basic auth (htpasswd).
    credentials: Option<(String, String)>,
}

impl Registry {
    fn start() -> Self {
        Self::start_with(None)
    }

    fn start_with(credentials: Option<(&str, &str)>) -> Self {
        let dir = TempDir::new("registry");
        let credentials = credentials.map(|(u, p)| (u.to_owned(), p.to_owned()));
        let mut auth = String::new();
        if let Some((user, password)) = &credentials {
            let hash = bcrypt::hash(password, 5).expect("bcrypt");
            std::fs::write(dir.0.join("htpasswd"), format!("{user}:{hash}\n")).expect("htpasswd");
            auth = format!("auth:\n  htpasswd:\n    realm: stock-test\n    path: {}\n", dir.0.join("htpasswd").display());
        }
        let port = free_port();
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
             delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
            dir.0.join("data").display()
        );
        std::fs::write(dir.0.join("config.yml"), config).expect("config");
        let mut registry = Self { process: None, port, dir, credentials };
        registry.restart();
        registry
    }

    fn restart(&mut self) {
        let mut command = Command::new("docker-registry");
        command.arg("serve").arg(self.dir.0.join("config.yml"));
        self.process = Some(Process::spawn_named("docker-registry", command));
        wait_for_port(self.addr(), Duration::from_secs(10));
    }

    fn stop(&mut self) {
        self.process = None;
    }

    fn addr(&self) -> std::net::SocketAddr {
        format!("127.0.0.1:{}", self.port).parse().expect("addr")
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn reference(&self, tag: &str) -> String {
        format!("oci://{}/{REPOSITORY}:{tag}", self.host())
    }

    /// A Docker config.json for this registry with `user:password`.
    fn auth_file(&self, name: &str, user: &str, password: &str) -> PathBuf {
        let path = self.dir.0.join(name);
        let auth = base64(format!("{user}:{password}").as_bytes());
        std::fs::write(&path, format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, self.host())).expect("auth file");
        path
    }

    /// The `Authorization` header the test itself uses for raw API calls.
    fn raw_headers(&self) -> Vec<(String, String)> {
        self.credentials
            .iter()
            .map(|(u, p)| ("Authorization".to_owned(), format!("Basic {}", base64(format!("{u}:{p}").as_bytes()))))
            .collect()
    }

    /// `stock-host push FILE REF`: the manifest digest it printed.
    fn push(&self, file: &Path, tag: &str) -> String {
        let mut command = Command::new(env!("CARGO_BIN_EXE_stock-host"));
        command.args(["push", file.to_str().expect("utf-8"), &self.reference(tag)]).env("COMPONENT_INSECURE_REGISTRIES", self.host());
        if let Some((user, password)) = &self.credentials {
            command.env("REGISTRY_AUTH_FILE", self.auth_file("push-auth.json", user, password));
        }
        let output = command.output().expect("stock-host push");
        assert!(output.status.success(), "push failed: {}", String::from_utf8_lossy(&output.stderr));
        let digest = String::from_utf8(output.stdout).expect("utf-8").trim().to_owned();
        assert!(digest.starts_with("sha256:") && digest.len() == 71, "push prints the manifest digest: {digest:?}");
        digest
    }

    /// `skopeo copy` of `digest` to `tag`: how an operator moves a tag (the manifest digest is kept).
    fn move_tag(&self, digest: &str, tag: &str) {
        let from = format!("docker://{}/{REPOSITORY}@{digest}", self.host());
        let to = format!("docker://{}/{REPOSITORY}:{tag}", self.host());
        let mut command = Command::new("skopeo");
        command.args(["copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false", &from, &to]);
        if let Some((user, password)) = &self.credentials {
            command.args(["--src-creds", &format!("{user}:{password}"), "--dest-creds", &format!("{user}:{password}")]);
        }
        let output = command.output().expect("skopeo (make prereqs-debian installs it)");
        assert!(output.status.success(), "skopeo copy: {}", String::from_utf8_lossy(&output.stderr));
    }

    /// Uploads `bytes` as a blob with the distribution API (monolithic upload); its digest.
    fn put_blob(&self, bytes: &[u8]) -> String {
        let digest = format!("sha256:{}", stock_host::runtime::engine::digest(bytes));
        let auth = self.raw_headers();
        let headers: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let started = request_with(self.addr(), "POST", &format!("/v2/{REPOSITORY}/blobs/uploads/"), &headers, b"");
        assert_eq!(started.status, 202, "{}", started.body);
        let location = started.header("location").expect("upload location").to_owned();
        let path = location.strip_prefix(&format!("http://{}", self.host())).unwrap_or(&location).to_owned();
        let separator = if path.contains('?') { '&' } else { '?' };
        let mut put_headers = headers.clone();
        put_headers.push(("Content-Type", "application/octet-stream"));
        let done = request_with(self.addr(), "PUT", &format!("{path}{separator}digest={digest}"), &put_headers, bytes);
        assert_eq!(done.status, 201, "{}", done.body);
        digest
    }

    /// PUTs `manifest` under `tag`; the digest the registry stored it under.
    fn put_manifest(&self, tag: &str, manifest: &serde_json::Value) -> String {
        let auth = self.raw_headers();
        let mut headers: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        headers.push(("Content-Type", "application/vnd.oci.image.manifest.v1+json"));
        let body = manifest.to_string();
        let stored = request_with(self.addr(), "PUT", &format!("/v2/{REPOSITORY}/manifests/{tag}"), &headers, body.as_bytes());
        assert_eq!(stored.status, 201, "{}", stored.body);
        format!("sha256:{}", stock_host::runtime::engine::digest(body.as_bytes()))
    }

    /// An artifact with the given config and layer media types around `layer`, tagged `tag`.
    fn put_artifact(&self, tag: &str, config_type: &str, layer_type: &str, layer: &[u8]) -> String {
        let config = br#"{"architecture":"wasm","os":"wasip2"}"#;
        let config_digest = self.put_blob(config);
        let layer_digest = self.put_blob(layer);
        self.put_manifest(
            tag,
            &serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": config_type, "digest": config_digest, "size": config.len()},
                "layers": [{"mediaType": layer_type, "digest": layer_digest, "size": layer.len()}],
            }),
        )
    }

    /// The blob file in the registry's storage (to corrupt it behind the registry's back).
    fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir.0.join("data/docker/registry/v2/blobs/sha256").join(&hex[..2]).join(hex).join("data")
    }
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() { ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
        }
    }
    out
}

/// A distinct, valid build: the release component with a custom section (another digest).
fn build(dir: &TempDir, name: &str) -> (PathBuf, String) {
    written_build(dir, &component_path(), name)
}

fn registry_host(registry: &Registry, tag: &str, cache: &Path, extra: &[(&str, &str)]) -> Host {
    let reference = registry.reference(tag);
    let host_port = registry.host();
    let mut env = vec![
        ("COMPONENT", reference.as_str()),
        ("COMPONENT_INSECURE_REGISTRIES", host_port.as_str()),
        ("COMPONENT_POLL_INTERVAL", "300ms"),
        ("COMPONENT_CACHE_DIR", cache.to_str().expect("utf-8")),
        ("APIKEY", "registry-key"),
    ];
    env.extend_from_slice(extra);
    Host::start(&env)
}

fn admin(host: &Host) -> serde_json::Value {
    get(host.admin, "/admin/component").json()
}

fn running_version(host: &Host) -> String {
    admin(host)["running"]["version"].as_str().expect("running version").to_owned()
}

/// Waits for a rejected record naming `manifest_digest` and returns it.
fn rejection(host: &Host, manifest_digest: &str) -> serde_json::Value {
    let mut found = serde_json::Value::Null;
    wait_until(Duration::from_secs(20), &format!("a rejected record for {manifest_digest}"), || {
        let history = admin(host)["history"].clone();
        found = history
            .as_array()
            .and_then(|h| {
                h.iter().find(|r| {
                    r["result"] == "rejected" && r["reference"].as_str().is_some_and(|reference| reference.ends_with(manifest_digest))
                })
            })
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        !found.is_null()
    });
    found
}

/// Waits until the host has polled `n` more times (so a refused digest had chances to be pulled again).
fn wait_for_polls(host: &Host, n: f64) {
    let start = host.metric("stock_host_registry_polls_total{result=\"unchanged\"}");
    wait_until(Duration::from_secs(20), "more polls", || host.metric("stock_host_registry_polls_total{result=\"unchanged\"}") >= start + n);
}

#[test]
fn a_moved_tag_goes_live_under_load_with_zero_failed_requests() {
    let registry = Registry::start();
    let dir = TempDir::new("registry-move");
    let (first, first_version) = build(&dir, "registry-first");
    let (second, second_version) = build(&dir, "registry-second");
    let first_digest = registry.push(&first, "first");
    let second_digest = registry.push(&second, "second");
    registry.move_tag(&first_digest, "live");
    let sim = Sim::start();
    let cache = TempDir::new("registry-move-cache");
    let url = sim.url();
    let host = registry_host(&registry, "live", &cache.0, &[("ALPHAVANTAGE_URL", url.as_str())]);
    assert_eq!(running_version(&host), first_version);
    assert_eq!(get(host.addr, "/MSFT/7").status, 200);

    let load = Load::start(host.addr, &["/MSFT/7", "/health", "/IBM/3"], 3);
    std::thread::sleep(Duration::from_millis(300));
    let moved = Instant::now();
    registry.move_tag(&second_digest, "live");
    wait_until(Duration::from_secs(30), "the moved tag's build answers", || {
        get(host.addr, "/health").header("x-component-version") == Some(second_version.as_str())
    });
    let latency = moved.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    let (ok, failed) = load.finish();
    eprintln!("tag move to live: {latency:?} (poll interval 300ms); requests ok {ok}");
    assert_eq!(failed, 0, "requests failed while the tag moved");
    assert!(ok > 50, "the load generator ran");

    let state = admin(&host);
    assert_eq!(state["running"]["source"], "registry");
    let reference = state["running"]["reference"].as_str().expect("reference");
    assert_eq!(reference, format!("{}@{second_digest}", registry.reference("live")), "the record names the exact artifact");
    assert_eq!(state["previous"]["version"], first_version.as_str());
    assert_eq!(state["registry"]["manifest_digest"], second_digest.as_str());
    assert_eq!(state["registry"]["registry_answered"], true);
    assert!(state["registry"]["last_poll"].as_u64().is_some_and(|t| t > 0), "{state}");
    assert_eq!(host.metric("stock_host_registry_pulls_total{result=\"pulled\"}"), 2.0, "the start and the move; polls download nothing");
    assert!(host.metric("stock_host_registry_polls_total{result=\"unchanged\"}") >= 1.0);
    assert_eq!(host.metric("stock_host_registry_up"), 1.0);
    assert_eq!(host.component_info(&second_version), Some(1.0));
    let whole = state["running"]["digest"].as_str().expect("digest");
    assert!(host.metrics().contains(&format!("digest=\"{whole}\"")), "the info metric carries the digest");
}

/// Publishes an artifact under `live` and gives its manifest digest.
type Publish<'a> = Box<dyn Fn() -> String + 'a>;

#[test]
fn refused_artifacts_keep_the_running_build_and_are_not_pulled_again() {
    let registry = Registry::start();
    let dir = TempDir::new("registry-refused");
    let (good, good_version) = build(&dir, "registry-good");
    let good_digest = registry.push(&good, "good");
    registry.move_tag(&good_digest, "live");
    let cache = TempDir::new("registry-refused-cache");
    let host = registry_host(&registry, "live", &cache.0, &[]);
    assert_eq!(running_version(&host), good_version);
    let component = std::fs::read(&good).expect("good build");

    // A wrong media type (an ordinary container image config), a layer that is not a component, a
    // component of another world, and a blob whose bytes do not match its digest.
    let wrong_type = registry.put_artifact("live", "application/vnd.oci.image.config.v1+json", "application/wasm", &component);
    let not_component = with_custom_section(b"this is not WebAssembly", "x");
    let other_world = b"(component (core module (func (export \"other\"))))".to_vec();
    let cases: Vec<(&str, Publish<'_>)> = vec![
        ("manifest", Box::new(move || wrong_type.clone())),
        ("compile", Box::new(|| registry.put_artifact("live", "application/vnd.wasm.config.v0+json", "application/wasm", &not_component))),
        ("exports", Box::new(|| registry.put_artifact("live", "application/vnd.wasm.config.v0+json", "application/wasm", &other_world))),
        (
            "digest",
            Box::new(|| {
                let mismatched = with_custom_section(&component, "registry-mismatch");
                let digest = registry.put_artifact("live", "application/vnd.wasm.config.v0+json", "application/wasm", &mismatched);
                let layer = format!("sha256:{}", stock_host::runtime::engine::digest(&mismatched));
                let mut tampered = mismatched.clone();
                let middle = tampered.len() / 2;
                tampered[middle] ^= 0xff;
                std::fs::write(registry.blob_file(&layer), &tampered).expect("tamper with the stored blob");
                digest
            }),
        ),
    ];
    for (step, publish) in cases {
        let manifest_digest = publish();
        let record = rejection(&host, &manifest_digest);
        assert_eq!(record["step"], step, "{record}");
        assert_eq!(record["source"], "registry");
        assert_eq!(running_version(&host), good_version, "the running build kept serving after a {step} refusal");
        assert_eq!(get(host.addr, "/health").status, 200);
        let refusals = || host.metric("stock_host_swaps_total{result=\"rejected\"}");
        let before = refusals();
        wait_for_polls(&host, 3.0);
        assert_eq!(refusals(), before, "a refused digest ({step}) is not pulled and checked again on every poll");
    }
    assert_eq!(host.metric("stock_host_registry_pulls_total{result=\"rejected\"}"), 1.0, "only the manifest refusal is the source's own");

    // The poller goes on: the next good build goes live.
    let (next, next_version) = build(&dir, "registry-next");
    let next_digest = registry.push(&next, "next");
    registry.move_tag(&next_digest, "live");
    wait_until(Duration::from_secs(30), "the next good build", || running_version(&host) == next_version);
}

#[test]
fn a_restart_with_the_registry_down_serves_the_cached_build_from_compiled_code_and_recovers() {
    let mut registry = Registry::start();
    let dir = TempDir::new("registry-down");
    let (first, first_version) = build(&dir, "registry-cached");
    let first_digest = registry.push(&first, "cached");
    registry.move_tag(&first_digest, "live");
    let cache = TempDir::new("registry-down-cache");

    let started = Instant::now();
    let mut cold = registry_host(&registry, "live", &cache.0, &[]);
    wait_until(Duration::from_secs(30), "/ready (cold cache)", || get(cold.addr, "/ready").status == 200);
    let cold_ready = started.elapsed();
    assert_eq!(cold.metric("stock_host_compiled_cache_total{result=\"miss\"}"), 1.0, "a cold cache compiles");
    cold.process.terminate();
    cold.process.wait_exit(Duration::from_secs(30));

    registry.stop();
    let started = Instant::now();
    let warm = registry_host(&registry, "live", &cache.0, &[]);
    wait_until(Duration::from_secs(30), "/ready (warm cache, registry down)", || get(warm.addr, "/ready").status == 200);
    let warm_ready = started.elapsed();
    eprintln!("start to /ready: cold cache {cold_ready:?}, warm cache with the registry down {warm_ready:?}");
    assert_eq!(running_version(&warm), first_version, "the last verified build serves");
    assert_eq!(warm.metric("stock_host_compiled_cache_total{result=\"hit\"}"), 1.0, "compiled code came from the cache");
    assert_eq!(warm.metric("stock_host_compiled_cache_total{result=\"miss\"}"), 0.0);
    assert_eq!(warm.metric("stock_host_component_from_cache"), 1.0);
    assert_eq!(warm.metric("stock_host_registry_up"), 0.0);
    assert!(warm.logs().contains("serving the last verified build from COMPONENT_CACHE_DIR"), "{}", warm.logs());
    assert_eq!(admin(&warm)["registry"]["serving_from_cache"], true);
    wait_until(Duration::from_secs(10), "a failed poll", || warm.metric("stock_host_registry_polls_total{result=\"error\"}") >= 2.0);
    assert_eq!(get(warm.addr, "/health").status, 200, "keeps serving while the registry is down");

    // The registry returns with the tag moved: the host recovers and applies the move.
    registry.restart();
    let (second, second_version) = build(&dir, "registry-after-outage");
    let second_digest = registry.push(&second, "after");
    registry.move_tag(&second_digest, "live");
    wait_until(Duration::from_secs(30), "the move after the outage", || running_version(&warm) == second_version);
    assert_eq!(warm.metric("stock_host_component_from_cache"), 0.0);
    assert_eq!(warm.metric("stock_host_registry_up"), 1.0);

    // A cache file damaged on disk is found and pulled again.
    let layer = admin(&warm)["running"]["digest"].as_str().expect("digest").to_owned();
    let cached = cache.0.join("registry/blobs/sha256").join(&layer);
    let bytes = std::fs::read(&cached).expect("the blob is cached");
    std::fs::write(&cached, &bytes[..bytes.len() / 2]).expect("truncate");
    drop(warm);
    let again = registry_host(&registry, "live", &cache.0, &[]);
    assert_eq!(running_version(&again), second_version);
    assert_eq!(std::fs::read(&cached).expect("pulled again"), bytes, "the truncated blob was replaced by a verified one");
    assert!(again.logs().contains("does not match its digest"), "{}", again.logs());
}

#[test]
fn with_the_registry_down_and_nothing_cached_the_host_exits_with_one_line() {
    let port = free_port();
    let cache = TempDir::new("registry-none");
    let reference = format!("oci://127.0.0.1:{port}/{REPOSITORY}:live");
    let output = Command::new(env!("CARGO_BIN_EXE_stock-host"))
        .arg("serve")
        .envs([
            ("COMPONENT", reference.as_str()),
            ("COMPONENT_INSECURE_REGISTRIES", &format!("127.0.0.1:{port}")),
            ("COMPONENT_CACHE_DIR", cache.0.to_str().expect("utf-8")),
            ("PORT", "0"),
            ("ADMIN_PORT", "0"),
            ("BIND", "127.0.0.1"),
            ("LOG_FORMAT", "json"),
        ])
        .output()
        .expect("stock-host");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("stock-host: COMPONENT oci://127.0.0.1:"), "{stderr}");
    assert!(last.contains("nothing is cached") && last.contains(&format!("registry 127.0.0.1:{port} did not answer")), "{last}");
}

#[test]
fn wrong_credentials_are_refused_with_the_registry_named_and_right_ones_pull() {
    let registry = Registry::start_with(Some(("stock-ci", "correct horse battery staple")));
    let dir = TempDir::new("registry-auth");
    let (build_path, version) = build(&dir, "registry-auth");
    let digest = registry.push(&build_path, "auth");
    registry.move_tag(&digest, "live");
    let cache = TempDir::new("registry-auth-cache");
    let reference = registry.reference("live");
    let start = |auth: Option<&Path>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_stock-host"));
        command.arg("serve").envs([
            ("COMPONENT", reference.as_str()),
            ("COMPONENT_INSECURE_REGISTRIES", registry.host().as_str()),
            ("COMPONENT_CACHE_DIR", cache.0.to_str().expect("utf-8")),
            ("PORT", "0"),
            ("ADMIN_PORT", "0"),
            ("BIND", "127.0.0.1"),
        ]);
        command.env_remove("REGISTRY_AUTH_FILE");
        if let Some(auth) = auth {
            command.env("REGISTRY_AUTH_FILE", auth);
        }
        command.output().expect("stock-host")
    };
    let wrong = registry.auth_file("wrong.json", "stock-ci", "wrong password");
    for (auth, says) in [(Some(wrong.as_path()), "were refused"), (None, "set REGISTRY_AUTH_FILE")] {
        let output = start(auth);
        assert_eq!(output.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().last().unwrap_or_default();
        assert!(last.contains(&format!("registry {} refused access", registry.host())) && last.contains(says), "{stderr}");
        assert!(!stderr.contains("correct horse") && !stderr.contains("wrong password"), "no password in the output: {stderr}");
    }
    let right = registry.auth_file("right.json", "stock-ci", "correct horse battery staple");
    let right = right.to_str().expect("utf-8");
    let host = registry_host(&registry, "live", &cache.0, &[("REGISTRY_AUTH_FILE", right)]);
    assert_eq!(running_version(&host), version);
    assert!(!host.logs().contains("correct horse"), "the password is never logged");
}

/// Python with `cryptography`: the venv `make prereqs-python` makes, else the system's.
fn python() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/py/bin/python3");
    if venv.exists() { venv } else { PathBuf::from("python3") }
}

fn signer(args: &[&Path]) -> String {
    let output = Command::new(python()).arg(fixture("cosign_sign.py")).args(args).output().expect("python3");
    assert!(output.status.success(), "cosign_sign.py: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("utf-8").trim().to_owned()
}

/// Stores a cosign signature of `signed_digest` by `key` under the `.sig` tag of `tag_digest`.
fn sign(registry: &Registry, dir: &TempDir, key: &Path, tag_digest: &str, signed_digest: &str) {
    let payload = serde_json::json!({
        "critical": {
            "identity": {"docker-reference": format!("{}/{REPOSITORY}", registry.host())},
            "image": {"docker-manifest-digest": signed_digest},
            "type": "cosign container image signature"
        },
        "optional": null
    })
    .to_string();
    let payload_path = dir.0.join("payload.json");
    std::fs::write(&payload_path, &payload).expect("payload");
    let signature = signer(&[Path::new("sign"), key, &payload_path]);
    let config = br#"{"architecture":"","os":""}"#;
    let config_digest = registry.put_blob(config);
    let payload_digest = registry.put_blob(payload.as_bytes());
    registry.put_manifest(
        &format!("{}.sig", tag_digest.replacen(':', "-", 1)),
        &serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": [{
                "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                "digest": payload_digest,
                "size": payload.len(),
                "annotations": {"dev.cosignproject.cosign/signature": signature}
            }]
        }),
    );
}

#[test]
fn only_builds_signed_with_the_key_go_live() {
    let registry = Registry::start();
    let dir = TempDir::new("registry-signed");
    let (key, public) = (dir.0.join("cosign.key"), dir.0.join("cosign.pub"));
    let (stranger, stranger_public) = (dir.0.join("stranger.key"), dir.0.join("stranger.pub"));
    signer(&[Path::new("keygen"), &key, &public]);
    signer(&[Path::new("keygen"), &stranger, &stranger_public]);

    let (first, first_version) = build(&dir, "registry-signed-first");
    let first_digest = registry.push(&first, "signed-first");
    sign(&registry, &dir, &key, &first_digest, &first_digest);
    registry.move_tag(&first_digest, "live");
    let cache = TempDir::new("registry-signed-cache");
    let public_path = public.to_str().expect("utf-8");
    let host = registry_host(&registry, "live", &cache.0, &[("COMPONENT_VERIFY_KEY", public_path)]);
    assert_eq!(running_version(&host), first_version, "a signed build goes live at start");
    assert_eq!(admin(&host)["registry"]["signatures_required"], true);

    let (unsigned, _) = build(&dir, "registry-unsigned");
    let (wrong_key, _) = build(&dir, "registry-wrong-key");
    let (other_digest, _) = build(&dir, "registry-other-digest");
    let cases: [(&Path, &str, Option<&Path>, bool); 3] = [
        (&unsigned, "unsigned", None, false),
        (&wrong_key, "does not verify", Some(&stranger), false),
        (&other_digest, "signs sha256:", Some(&key), true),
    ];
    for (path, says, signing_key, sign_another_digest) in cases {
        let name = path.file_stem().and_then(|s| s.to_str()).expect("name");
        let digest = registry.push(path, name);
        if let Some(signing_key) = signing_key {
            let signed = if sign_another_digest { first_digest.as_str() } else { digest.as_str() };
            sign(&registry, &dir, signing_key, &digest, signed);
        }
        registry.move_tag(&digest, "live");
        let record = rejection(&host, &digest);
        assert_eq!(record["step"], "signature", "{record}");
        assert!(record["reason"].as_str().is_some_and(|r| r.contains(says)), "{name}: {record}");
        assert_eq!(running_version(&host), first_version, "{name}: the running build keeps serving");
    }
    assert_eq!(host.metric("stock_host_registry_pulls_total{result=\"rejected\"}"), 3.0);

    let (second, second_version) = build(&dir, "registry-signed-second");
    let second_digest = registry.push(&second, "signed-second");
    sign(&registry, &dir, &key, &second_digest, &second_digest);
    registry.move_tag(&second_digest, "live");
    wait_until(Duration::from_secs(30), "the signed build goes live", || running_version(&host) == second_version);
}

#[test]
fn a_verify_key_that_cannot_be_used_is_refused_in_one_line_before_any_pull() {
    let dir = TempDir::new("registry-bad-key");
    let key = dir.0.join("cosign.pub");
    std::fs::write(
        &key,
        "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n",
    )
    .expect("an ed25519 key");
    let output = Command::new(env!("CARGO_BIN_EXE_stock-host"))
        .arg("serve")
        .envs([
            ("COMPONENT", "oci://127.0.0.1:9/stock/component:live"),
            ("COMPONENT_VERIFY_KEY", key.to_str().expect("utf-8")),
            ("COMPONENT_CACHE_DIR", dir.0.to_str().expect("utf-8")),
            ("PORT", "0"),
            ("ADMIN_PORT", "0"),
            ("BIND", "127.0.0.1"),
        ])
        .output()
        .expect("stock-host");
    assert_eq!(output.status.code(), Some(2), "a refused setting, like one clap refuses");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("stock-host: COMPONENT_VERIFY_KEY") && last.contains("P-256"), "{stderr}");
    assert!(!stderr.contains("did not answer"), "the registry was not asked: {stderr}");
}

#[test]
fn with_canary_percent_a_moved_tag_is_canaried_promoted_by_the_judge_and_moving_back_drops_it() {
    let registry = Registry::start();
    let dir = TempDir::new("registry-canary");
    let (stable, stable_version) = build(&dir, "registry-canary-stable");
    let (candidate, candidate_version) = build(&dir, "registry-canary-candidate");
    let (third, third_version) = build(&dir, "registry-canary-third");
    let digests: Vec<String> =
        [(&stable, "stable"), (&candidate, "candidate"), (&third, "third")].iter().map(|(path, tag)| registry.push(path, tag)).collect();
    registry.move_tag(&digests[0], "live");
    let sim = Sim::start();
    let cache = TempDir::new("registry-canary-cache");
    let url = sim.url();
    let env = [("ALPHAVANTAGE_URL", url.as_str()), ("CANARY_PERCENT", "50"), ("CANARY_MIN_REQUESTS", "20"), ("CANARY_AUTO_PROMOTE", "2s")];
    let host = registry_host(&registry, "live", &cache.0, &env);
    assert_eq!(running_version(&host), stable_version);

    let load = Load::start(host.addr, &["/MSFT/7"], 1);
    registry.move_tag(&digests[1], "live");
    wait_until(Duration::from_secs(20), "the moved tag starts a canary", || {
        admin(&host)["canary"]["version"] == candidate_version.as_str()
    });
    let canary = admin(&host)["canary"].clone();
    assert_eq!((canary["source"].as_str(), canary["percent"].as_u64()), (Some("registry"), Some(50)), "{canary}");
    assert_eq!(running_version(&host), stable_version, "the stable build still serves the other half");
    wait_until(Duration::from_secs(30), "the judge promotes the healthy canary", || running_version(&host) == candidate_version);
    assert!(admin(&host)["canary"].is_null());

    // A canary of a third build; the tag moved back to the stable digest drops it.
    registry.move_tag(&digests[2], "live");
    wait_until(Duration::from_secs(20), "a second canary", || admin(&host)["canary"]["version"] == third_version.as_str());
    registry.move_tag(&digests[1], "live");
    wait_until(Duration::from_secs(20), "moving the tag back drops the canary", || admin(&host)["canary"].is_null());
    let (ok, failed) = load.finish();
    assert_eq!(running_version(&host), candidate_version);
    let history = admin(&host)["history"].clone();
    let last = history.as_array().and_then(|h| h.last()).cloned().unwrap_or_default();
    assert_eq!((last["result"].as_str(), last["source"].as_str()), (Some("rollback"), Some("registry")), "{last}");
    assert_eq!(failed, 0, "no request failed through canary, promotion and rollback ({ok} ok)");
}

#[test]
fn a_pinned_digest_is_never_polled_and_plain_http_is_only_for_listed_registries() {
    let registry = Registry::start();
    let dir = TempDir::new("registry-pinned");
    let (pinned, pinned_version) = build(&dir, "registry-pinned");
    let (other, _) = build(&dir, "registry-pinned-other");
    let pinned_digest = registry.push(&pinned, "live");
    let cache = TempDir::new("registry-pinned-cache");
    let reference = format!("oci://{}/{REPOSITORY}@{pinned_digest}", registry.host());
    let host_port = registry.host();
    let host = Host::start(&[
        ("COMPONENT", reference.as_str()),
        ("COMPONENT_INSECURE_REGISTRIES", host_port.as_str()),
        ("COMPONENT_POLL_INTERVAL", "200ms"),
        ("COMPONENT_CACHE_DIR", cache.0.to_str().expect("utf-8")),
    ]);
    assert_eq!(running_version(&host), pinned_version);
    assert_eq!(admin(&host)["registry"]["pinned"], true);
    let other_digest = registry.push(&other, "live");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(running_version(&host), pinned_version, "a pinned digest never moves");
    for result in ["unchanged", "changed", "error"] {
        assert_eq!(host.metric(&format!("stock_host_registry_polls_total{{result=\"{result}\"}}")), 0.0, "never polled");
    }
    assert_ne!(other_digest, pinned_digest);

    // The same registry, not listed in COMPONENT_INSECURE_REGISTRIES: TLS is tried, and fails on plain HTTP.
    let output = Command::new(env!("CARGO_BIN_EXE_stock-host"))
        .arg("serve")
        .envs([("COMPONENT", registry.reference("live").as_str()), ("COMPONENT_CACHE_DIR", ""), ("PORT", "0"), ("ADMIN_PORT", "0")])
        .env_remove("COMPONENT_INSECURE_REGISTRIES")
        .output()
        .expect("stock-host");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.lines().last().is_some_and(|l| l.contains(&format!("registry {} did not answer: TLS", registry.host()))), "{stderr}");
}
