//! Test harness: real processes on loopback ports (the simulator, `stock-host`, `wasmtime serve`),
//! a tiny HTTP/1.1 client, and an independent exact-average oracle.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The release component built by `make component`.
pub fn component_path() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/release/stock_component.wasm");
    assert!(path.exists(), "{} is missing: run `make component` (or `make test`) first", path.display());
    path
}

/// Value of `sample` (name plus exact labels) in Prometheus text, if present.
pub fn sample_value(text: &str, sample: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(sample).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
}

/// The test-only build made by `make fixture`: its own keyvalue layout, and `/_fixture/{trap,spin,grow}`.
pub fn fixture_component_path() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fixtures/stock_component_fixture.wasm");
    assert!(path.exists(), "{} is missing: run `make fixture` (or `make test`) first", path.display());
    path
}

/// A fixture component under `tests/fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// A unique scratch directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates `target/test-tmp/<name>-<pid>-<n>`.
    pub fn new(name: &str) -> Self {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("stock-test-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// === HTTP client ===

/// A response read to the end.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Reply {
    /// Header value by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// Body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }

    /// Everything the client saw, for leak checks.
    pub fn raw(&self) -> String {
        let headers: Vec<String> = self.headers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        format!("{}\n{}\n{}", self.status, headers.join("\n"), self.body)
    }
}

/// Sends one request with `Connection: close` and reads the whole answer (30 s bound).
pub fn request(addr: SocketAddr, method: &str, path: &str) -> Reply {
    try_request(addr, method, path, Duration::from_secs(30)).unwrap_or_else(|e| panic!("{method} {path} on {addr}: {e}"))
}

/// GET `path`.
pub fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path)
}

/// Writes `raw` bytes on a new connection and reads until the server closes it (10 s bound). A failed write is not
/// an error here: a server may answer (431, 400) and close before reading all of `raw`; check the answer with
/// [`status_of`], which fails on an empty one.
pub fn raw_exchange(addr: SocketAddr, raw: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let _ = stream.write_all(raw);
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of the first response in a raw answer; fails the test when the answer does not start with an
/// `HTTP/1.x NNN` status line (an empty answer, a closed connection, garbage), naming `what` was sent.
pub fn status_of(answer: &str, what: &str) -> u16 {
    let line = answer.lines().next().unwrap_or_default();
    let status = line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| line.strip_prefix("HTTP/1.0 "))
        .and_then(|rest| rest.get(..3))
        .filter(|code| code.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|code| code.parse().ok());
    status.unwrap_or_else(|| {
        let start: String = answer.chars().take(200).collect();
        panic!("{what}: no HTTP status line in the answer ({} bytes): {start:?}", answer.len())
    })
}

/// Sends `method path` with extra `headers` and `body` (`Connection: close`) and reads the answer.
pub fn request_with(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    let head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n{extra}\r\n", body.len());
    stream.write_all(head.as_bytes()).expect("write head");
    stream.write_all(body).expect("write body");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no header end in {text:?}"));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).expect("status");
    let headers = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned())).collect();
    Reply { status, headers, body: body.to_owned() }
}

/// `bytes` with a custom section appended: the same build, a different digest (a second valid build).
pub fn with_custom_section(bytes: &[u8], name: &str) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut payload = Vec::new();
    leb(name.len(), &mut payload);
    payload.extend_from_slice(name.as_bytes());
    payload.extend_from_slice(b"test build marker");
    let mut out = bytes.to_vec();
    out.push(0);
    leb(payload.len(), &mut out);
    out.extend_from_slice(&payload);
    out
}

/// `base` with a custom section named `name`, written to `dir`: a distinct valid build (its own digest and
/// version). Its path and version.
pub fn written_build(dir: &TempDir, base: &Path, name: &str) -> (PathBuf, String) {
    let bytes = with_custom_section(&std::fs::read(base).expect("component"), name);
    let path = dir.0.join(format!("{name}.wasm"));
    std::fs::write(&path, &bytes).expect("write build");
    (path, stock_host::version_of(&bytes))
}

/// A directory laid out like a mounted Kubernetes ConfigMap: `component.wasm -> ..data/component.wasm`,
/// `..data -> ..<timestamp>`; [`ConfigMapDir::publish`] swaps `..data` atomically as the kubelet does.
pub struct ConfigMapDir {
    pub dir: TempDir,
    generation: usize,
}

impl ConfigMapDir {
    /// A volume holding `bytes` as `component.wasm`.
    pub fn new(name: &str, bytes: &[u8]) -> Self {
        let mut this = Self { dir: TempDir::new(name), generation: 0 };
        this.publish(bytes);
        std::os::unix::fs::symlink("..data/component.wasm", this.path()).expect("component symlink");
        this
    }

    /// The path to give as COMPONENT.
    pub fn path(&self) -> PathBuf {
        self.dir.0.join("component.wasm")
    }

    /// Writes a new timestamped directory and renames `..data` onto it (never touching the old one).
    pub fn publish(&mut self, bytes: &[u8]) {
        self.generation += 1;
        let name = format!("..2026_11_27_06_00_{:02}.{}", self.generation % 60, self.generation);
        let data = self.dir.0.join(&name);
        std::fs::create_dir_all(&data).expect("timestamped dir");
        std::fs::write(data.join("component.wasm"), bytes).expect("write component");
        let tmp = self.dir.0.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&name, &tmp).expect("..data_tmp");
        std::fs::rename(&tmp, self.dir.0.join("..data")).expect("atomic ..data swap");
    }
}

/// Like [`request`] but returns I/O errors.
pub fn try_request(addr: SocketAddr, method: &str, path: &str, timeout: Duration) -> std::io::Result<Reply> {
    try_request_with(addr, method, path, &[], timeout)
}

/// [`try_request`] with extra request headers.
pub fn try_request_with(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], timeout: Duration) -> std::io::Result<Reply> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n{extra}\r\n")?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| std::io::Error::other(format!("no header end in {text:?}")))?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
    let headers = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned())).collect();
    Ok(Reply { status, headers, body: body.to_owned() })
}

/// Polls `addr` until it accepts connections.
pub fn wait_for_port(addr: SocketAddr, within: Duration) {
    let start = Instant::now();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(start.elapsed() < within, "nothing listens on {addr} after {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `ready` every 20 ms until it holds; fails the test naming `what` after `within`.
pub fn wait_until(within: Duration, what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

// === processes ===

/// A child process whose stderr is collected; killed on drop, output printed if the test failed.
pub struct Process {
    pub name: String,
    pub child: Child,
    pub stderr: Arc<Mutex<Vec<String>>>,
    pub stdout: Arc<Mutex<Vec<String>>>,
}

impl Process {
    /// Starts `command`, collecting its output under `name`.
    pub fn spawn_named(name: &str, command: Command) -> Self {
        Self::spawn(name, command)
    }

    fn spawn(name: &str, mut command: Command) -> Self {
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot start {name} ({command:?}): {e}"));
        let collect = |reader: Box<dyn Read + Send>| {
            let lines = Arc::new(Mutex::new(Vec::new()));
            let sink = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(reader).lines().map_while(Result::ok) {
                    sink.lock().expect("lines").push(line);
                }
            });
            lines
        };
        let stdout = collect(Box::new(child.stdout.take().expect("stdout")));
        let stderr = collect(Box::new(child.stderr.take().expect("stderr")));
        Self { name: name.to_owned(), child, stderr, stdout }
    }

    /// Waits until a stdout or stderr line satisfies `find`, returning what it extracted.
    pub fn wait_for_line<T>(&mut self, within: Duration, find: impl Fn(&str) -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            for lines in [&self.stdout, &self.stderr] {
                if let Some(found) = lines.lock().expect("lines").iter().find_map(|l| find(l)) {
                    return found;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited with {status} before it was ready:\n{}", self.name, self.output());
            }
            assert!(start.elapsed() < within, "{} not ready after {within:?}:\n{}", self.name, self.output());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// All output so far.
    pub fn output(&self) -> String {
        let out = self.stdout.lock().expect("lines").join("\n");
        let err = self.stderr.lock().expect("lines").join("\n");
        format!("--- {} stdout ---\n{out}\n--- {} stderr ---\n{err}", self.name, self.name)
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill");
        assert!(status.success());
    }

    /// Waits for exit (bounded), returning the exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            assert!(start.elapsed() < within, "{} still running after {within:?}:\n{}", self.name, self.output());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            std::thread::sleep(Duration::from_millis(50));
            eprintln!("{}", self.output());
        }
    }
}

/// The `alphavantage-sim` binary: a separate package, so Cargo provides no `CARGO_BIN_EXE_` for it. It sits in the
/// profile directory this test executable was built into (`target/<profile>/deps/all-<hash>` ->
/// `target/<profile>/alphavantage-sim`).
fn sim_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test executable");
    let profile_dir = exe.parent().and_then(Path::parent).unwrap_or_else(|| panic!("{} is not under target/<profile>/deps", exe.display()));
    let path = profile_dir.join(format!("alphavantage-sim{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: run `make build` (or `cargo build -p alphavantage-sim` in the same profile as the tests) first",
        path.display()
    );
    path
}

/// The Alpha Vantage simulator.
pub struct Sim {
    pub process: Process,
    pub addr: SocketAddr,
}

impl Sim {
    /// Starts `alphavantage-sim` on a free loopback port.
    pub fn start() -> Self {
        let mut command = Command::new(sim_binary());
        command.args(["--addr", "127.0.0.1:0"]);
        let mut process = Process::spawn("alphavantage-sim", command);
        let addr =
            process.wait_for_line(Duration::from_secs(20), |l| l.strip_prefix("listening on http://").and_then(|a| a.trim().parse().ok()));
        Self { process, addr }
    }

    /// The query endpoint to configure.
    pub fn url(&self) -> String {
        format!("http://{}/query", self.addr)
    }

    /// Sets a fault mode (`none`, `hang`, `http-500`, ...), optional latency and count.
    pub fn fault(&self, mode: &str, latency_ms: u64, times: Option<u32>) {
        let times = times.map(|t| format!("&times={t}")).unwrap_or_default();
        let reply = request(self.addr, "PUT", &format!("/_sim/fault?mode={mode}&latency_ms={latency_ms}{times}"));
        assert_eq!(reply.status, 200, "sim refused fault {mode}: {}", reply.body);
    }

    /// `GET /_sim/stats`, read strictly (see [`sim_stats`]).
    pub fn stats(&self) -> SimStats {
        sim_stats(self.addr)
    }

    /// Total /query calls received.
    pub fn calls(&self) -> u64 {
        self.stats().calls
    }

    /// /query calls received for `symbol`; 0 also when the simulator never saw it (`by_symbol` lists only seen
    /// symbols). To assert that a symbol never reached the simulator use [`Sim::assert_never_saw`], next to a
    /// positive control in the same test (a request that does reach it, counted afterwards).
    pub fn calls_for(&self, symbol: &str) -> u64 {
        self.stats().calls_for(symbol).unwrap_or(0)
    }

    /// Fails unless the simulator answered its stats and has no `/query` call for `symbol`.
    pub fn assert_never_saw(&self, symbol: &str, why: &str) {
        let stats = self.stats();
        assert_eq!(stats.calls_for(symbol), None, "{why}: the simulator saw {symbol}; {stats:?}");
    }

    /// The raw TIME_SERIES_DAILY document for `symbol`, fetched directly.
    pub fn series(&self, symbol: &str) -> serde_json::Value {
        let reply = get(self.addr, &format!("/query?function=TIME_SERIES_DAILY&symbol={symbol}&apikey=oracle"));
        reply.json()
    }
}

/// `GET /_sim/stats` of the simulator at `addr` (a process here, or a container's published port), read strictly:
/// an answer without the counters fails the test instead of reading as 0.
pub fn sim_stats(addr: SocketAddr) -> SimStats {
    let reply = get(addr, "/_sim/stats");
    assert_eq!(reply.status, 200, "GET /_sim/stats: {}", reply.body);
    let stats = reply.json();
    let calls = stats["calls"].as_u64().unwrap_or_else(|| panic!("no `calls` counter in the sim's stats: {stats}"));
    let by_symbol = stats["by_symbol"]
        .as_object()
        .unwrap_or_else(|| panic!("no `by_symbol` object in the sim's stats: {stats}"))
        .iter()
        .map(|(symbol, n)| (symbol.clone(), n.as_u64().unwrap_or_else(|| panic!("calls for {symbol} is not a count: {stats}"))))
        .collect();
    SimStats { calls, by_symbol }
}

/// What the simulator's `GET /_sim/stats` answered.
#[derive(Debug, Clone)]
pub struct SimStats {
    /// Every `/query` call, faulted or not.
    pub calls: u64,
    /// Calls per upper-case symbol; only symbols the simulator saw are listed.
    pub by_symbol: HashMap<String, u64>,
}

impl SimStats {
    /// Calls for `symbol`, or `None` when the simulator never saw it (not the same as a count of 0).
    pub fn calls_for(&self, symbol: &str) -> Option<u64> {
        self.by_symbol.get(symbol).copied()
    }
}

/// `stock-host serve` on free loopback ports.
pub struct Host {
    pub process: Process,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
}

impl Host {
    /// Starts the host with `env` on top of loopback ports, JSON logs and the release component.
    pub fn start(env: &[(&str, &str)]) -> Self {
        let component = component_path();
        let mut command = Command::new(env!("CARGO_BIN_EXE_stock-host"));
        command.arg("serve");
        for key in
            ["APIKEY", "APIKEY_FILE", "PORT", "ADMIN_PORT", "ALPHAVANTAGE_URL", "SYMBOL", "NDAYS", "CACHE_TTL", "KV_URL", "LOG_FORMAT"]
        {
            command.env_remove(key);
        }
        for (key, _) in std::env::vars().filter(|(key, _)| key.starts_with("OTEL_")) {
            command.env_remove(key);
        }
        command.envs([("BIND", "127.0.0.1"), ("PORT", "0"), ("ADMIN_PORT", "0"), ("LOG_FORMAT", "json"), ("LOG_LEVEL", "info")]);
        command.env("COMPONENT", &component);
        // Compiled builds are cached under target/, shared by the tests, never in the user's home.
        command.env("COMPONENT_CACHE_DIR", Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-cache"));
        command.envs(env.iter().copied());
        let mut process = Process::spawn("stock-host", command);
        let (addr, admin) = process.wait_for_line(Duration::from_secs(60), |line| {
            let event: serde_json::Value = serde_json::from_str(line).ok()?;
            let traffic: SocketAddr = event.get("traffic")?.as_str()?.parse().ok()?;
            let admin: SocketAddr = event.get("admin")?.as_str()?.parse().ok()?;
            Some((traffic, admin))
        });
        Self { process, addr, admin }
    }

    /// Starts the host against `sim` with `apikey` and extra `env`.
    pub fn with_sim(sim: &Sim, apikey: &str, env: &[(&str, &str)]) -> Self {
        let url = sim.url();
        let mut all = vec![("ALPHAVANTAGE_URL", url.as_str()), ("APIKEY", apikey)];
        all.extend_from_slice(env);
        Self::start(&all)
    }

    /// Every stderr line so far.
    pub fn logs(&self) -> String {
        self.process.stderr.lock().expect("lines").join("\n")
    }

    /// `/metrics` text.
    pub fn metrics(&self) -> String {
        let reply = get(self.admin, "/metrics");
        assert_eq!(reply.status, 200);
        reply.body
    }

    /// The `stock_host_component_info` sample of the build with `version`, whatever its digest label.
    pub fn component_info(&self, version: &str) -> Option<f64> {
        let label = format!("version=\"{version}\"");
        self.metrics()
            .lines()
            .find(|l| l.starts_with("stock_host_component_info{") && l.contains(&label))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    /// Value of an unlabelled (or exactly labelled) sample in `/metrics`; a missing sample fails the
    /// test, so an assertion on zero cannot pass because the metric vanished.
    pub fn metric(&self, sample: &str) -> f64 {
        let text = self.metrics();
        sample_value(&text, sample).unwrap_or_else(|| panic!("no sample {sample} in /metrics:\n{text}"))
    }
}

/// Load from a few threads, every answer counted by (path, status); status 0 is a request that got no HTTP
/// answer. Each thread stops when told or after two minutes.
pub struct Load {
    stop: Arc<std::sync::atomic::AtomicBool>,
    counts: Arc<Mutex<BTreeMap<(String, u16), u64>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    /// `threads` threads cycling through `paths` on `addr`, back to back.
    pub fn start(addr: SocketAddr, paths: &[&str], threads: usize) -> Self {
        Self::start_with(addr, paths, &[], threads, Duration::ZERO)
    }

    /// Like [`Load::start`], with extra request `headers` and a pause of `pace` between a thread's requests.
    pub fn start_with(addr: SocketAddr, paths: &[&str], headers: &[(&str, &str)], threads: usize, pace: Duration) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        let (stop, counts) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(BTreeMap::new())));
        let paths: Vec<String> = paths.iter().map(|p| (*p).to_owned()).collect();
        let headers: Vec<(String, String)> = headers.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let threads = (0..threads)
            .map(|i| {
                let (stop, counts, paths, headers) = (stop.clone(), counts.clone(), paths.clone(), headers.clone());
                std::thread::spawn(move || {
                    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                    let started = Instant::now();
                    let mut n = i;
                    while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(120) {
                        let path = &paths[n % paths.len()];
                        let status = match try_request_with(addr, "GET", path, &headers, Duration::from_secs(20)) {
                            Ok(reply) => reply.status,
                            Err(error) => {
                                eprintln!("no answer under load for {path}: {error}");
                                0
                            }
                        };
                        if status != 200 {
                            eprintln!("under load: {path} answered {status}");
                        }
                        *counts.lock().expect("counts").entry((path.clone(), status)).or_default() += 1;
                        n += 1;
                        std::thread::sleep(pace);
                    }
                })
            })
            .collect();
        Self { stop, counts, threads }
    }

    /// Stops the threads and gives (ok, failed): 200 is ok, anything else failed.
    pub fn finish(self) -> (u64, u64) {
        let tally = self.tally();
        let failed = tally.failed(|_, status| status == 200);
        (tally.total() - failed, failed)
    }

    /// Stops the threads and gives every answer by (path, status).
    pub fn tally(self) -> Tally {
        use std::sync::atomic::Ordering;
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            thread.join().expect("load thread");
        }
        Tally(self.counts.lock().expect("counts").clone())
    }
}

/// What a [`Load`] got: answers by (path, status).
#[derive(Debug)]
pub struct Tally(pub BTreeMap<(String, u16), u64>);

impl Tally {
    /// Every answer.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// Answers to `path` with `status`.
    pub fn count(&self, path: &str, status: u16) -> u64 {
        self.0.get(&(path.to_owned(), status)).copied().unwrap_or(0)
    }

    /// Answers that `ok` does not accept.
    pub fn failed(&self, ok: impl Fn(&str, u16) -> bool) -> u64 {
        self.0.iter().filter(|((path, status), _)| !ok(path, *status)).map(|(_, n)| n).sum()
    }
}

/// A real `redis-server` (Debian's) on a free loopback port, no persistence; stopped on drop.
pub struct RedisServer {
    pub process: Option<Process>,
    pub port: u16,
    args: Vec<String>,
}

impl RedisServer {
    /// Starts redis-server on a free port and waits until it accepts connections.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts redis-server with extra arguments (e.g. `--requirepass`), kept for restarts.
    pub fn start_with(args: &[&str]) -> Self {
        let mut this = Self { process: None, port: free_port(), args: args.iter().map(|a| (*a).to_owned()).collect() };
        this.restart();
        this
    }

    /// `redis://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it (SIGKILL: an outage, not a shutdown).
    pub fn kill(&mut self) {
        self.process = None;
    }

    /// Starts it again on the same port (empty: no persistence).
    pub fn restart(&mut self) {
        let mut command = Command::new("redis-server");
        command.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
        command.args(&self.args);
        let process = Process::spawn("redis-server", command);
        self.process = Some(process);
        wait_for_port(format!("127.0.0.1:{}", self.port).parse().expect("addr"), Duration::from_secs(10));
    }
}

/// `wasmtime serve` with the component and `config` variables.
pub struct WasmtimeServe {
    pub process: Process,
    pub addr: SocketAddr,
}

impl WasmtimeServe {
    /// Starts the pinned `wasmtime serve -S cli -S keyvalue -S config` on a free port.
    pub fn start(config: &[(&str, &str)]) -> Self {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let mut command = Command::new("wasmtime");
        command.args(["serve", "--addr", &addr.to_string(), "-S", "cli", "-S", "keyvalue", "-S", "config"]);
        for (key, value) in config {
            command.args(["-S", &format!("config-var={key}={value}")]);
        }
        command.arg(component_path());
        let mut process = Process::spawn("wasmtime serve", command);
        process.wait_for_line(Duration::from_secs(60), |l| l.contains("Serving HTTP on").then_some(()));
        wait_for_port(addr, Duration::from_secs(10));
        Self { process, addr }
    }

    /// Everything wasmtime printed.
    pub fn logs(&self) -> String {
        self.process.output()
    }
}

// === oracle ===

/// Closes of `symbol` from the simulator's own document, oldest first, as (date, ten-thousandths).
pub fn oracle_closes(series: &serde_json::Value) -> Vec<(String, i64)> {
    let rows = series["Time Series (Daily)"].as_object().expect("series object");
    let mut closes: Vec<(String, i64)> =
        rows.iter().map(|(date, row)| (date.clone(), ten_thousandths(row["4. close"].as_str().expect("close string")))).collect();
    closes.sort();
    closes
}

/// "417.46" or "417.4600" -> 4174600.
pub fn ten_thousandths(text: &str) -> i64 {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    assert!(frac.len() <= 4, "oracle handles 4 decimals, got {text}");
    let frac = format!("{frac:0<4}");
    whole.parse::<i64>().expect("whole") * 10_000 + frac.parse::<i64>().expect("frac")
}

/// Mean of ten-thousandths rounded half-to-even, rendered like the service (trailing zeros trimmed).
pub fn oracle_average(values: &[i64]) -> String {
    let n = values.len() as i64;
    let sum: i64 = values.iter().sum();
    let (q, r) = (sum / n, sum % n);
    let rounded = if 2 * r > n || (2 * r == n && q % 2 == 1) { q + 1 } else { q };
    render_ten_thousandths(rounded)
}

/// 4174600 -> "417.46".
pub fn render_ten_thousandths(value: i64) -> String {
    let text = format!("{}.{:04}", value / 10_000, value % 10_000);
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// One POST an [`OtlpReceiver`] got.
#[derive(Debug, Clone)]
pub struct OtlpPost {
    pub path: String,
    pub content_type: String,
    pub body: Vec<u8>,
}

/// A minimal OTLP/HTTP collector on loopback: records every POST (keep-alive, Content-Length bodies)
/// and answers 200 with an empty export response.
pub struct OtlpReceiver {
    pub addr: SocketAddr,
    pub posts: Arc<Mutex<Vec<OtlpPost>>>,
}

impl OtlpReceiver {
    /// Listens on a free loopback port; connection threads end when their client closes or idles 30 s.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the OTLP receiver");
        let addr = listener.local_addr().expect("address");
        let posts = Arc::new(Mutex::new(Vec::new()));
        let sink = posts.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(1_000).map_while(Result::ok) {
                let sink = sink.clone();
                std::thread::spawn(move || serve_otlp_connection(stream, &sink));
            }
        });
        Self { addr, posts }
    }

    /// The base URL to give as `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every POST so far.
    pub fn posts(&self) -> Vec<OtlpPost> {
        self.posts.lock().expect("posts").clone()
    }
}

fn serve_otlp_connection(stream: TcpStream, sink: &Mutex<Vec<OtlpPost>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut writer) = stream.try_clone() else { return };
    let mut reader = BufReader::new(stream);
    for _ in 0..1_000 {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let (mut length, mut content_type) = (0usize, String::new());
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    "content-type" => content_type = value.trim().to_owned(),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; length.min(64 * 1024 * 1024)];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let path = request_line.split_whitespace().nth(1).unwrap_or_default().to_owned();
        sink.lock().expect("posts").push(OtlpPost { path, content_type, body });
        let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}
