//! The wasmtime engine and linker (built once), the epoch ticker, and loading a component into a
//! pre-instantiated, checked [`LoadedComponent`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyIndices};

use super::compiled::CompiledCache;
pub use super::identity::{digest, version_of, version_of_digest};
use super::pool::{InstancePool, Reuse};
use super::status::{Status, StatusIndices};
use super::store::RequestState;

/// Epoch tick: the granularity of the per-request deadline.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Builds the engine: async, pooling allocator sized for `max_concurrency`, epoch interruption,
/// linear memory capped at `max_memory_bytes`.
pub fn build_engine(max_concurrency: u32, max_memory_bytes: usize) -> anyhow::Result<Engine> {
    let mut pooling = PoolingAllocationConfig::default();
    pooling
        .total_component_instances(max_concurrency)
        .total_core_instances(max_concurrency * 4)
        .total_memories(max_concurrency * 2)
        .total_tables(max_concurrency * 4)
        .total_stacks(max_concurrency)
        .max_memory_size(max_memory_bytes);
    let mut config = Config::new();
    config.wasm_component_model(true).epoch_interruption(true).allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
    Engine::new(&config).map_err(anyhow::Error::from).context("cannot create the wasmtime engine (pooling allocator)")
}

/// Builds the linker with every import the stock world needs: WASI proxy interfaces, wasi:http,
/// wasi:config and wasi:keyvalue.
pub fn build_linker(engine: &Engine) -> anyhow::Result<Linker<RequestState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    wasmtime_wasi_config::add_to_linker(&mut linker, RequestState::config)?;
    crate::state::add_to_linker(&mut linker, RequestState::kv)?;
    Ok(linker)
}

/// A compiled, linked and checked component build, instantiated per request.
pub struct LoadedComponent {
    pre: InstancePre<RequestState>,
    proxy: ProxyIndices,
    status: StatusIndices,
    /// First 12 hex digits of the sha256 of the component's bytes.
    pub version: String,
    /// The whole sha256 of the component's bytes, lower-case hex.
    pub digest: String,
    /// Its idle instances, reused by the next requests.
    pub pool: InstancePool,
}

impl LoadedComponent {
    /// A new instance of this build in `store`, with both of its exports the host calls.
    pub async fn instantiate(&self, store: &mut Store<RequestState>) -> wasmtime::Result<(Proxy, Status)> {
        let instance = self.pre.instantiate_async(&mut *store).await?;
        let proxy = self.proxy.load(&mut *store, &instance)?;
        let status = self.status.load(&mut *store, &instance)?;
        Ok((proxy, status))
    }
}

/// The check a candidate build failed, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadStep {
    /// Reading the candidate from its source.
    Read,
    /// A registry artifact that is not a wasm component in the standard layout (media types, layers).
    Manifest,
    /// A registry artifact without a valid cosign signature by COMPONENT_VERIFY_KEY.
    Signature,
    /// Larger than any source may deliver (`builds::MAX_COMPONENT_BYTES`).
    Size,
    /// Not the bytes its source promised (an expected digest did not match).
    Digest,
    /// Compiling: not a WebAssembly component, invalid, or over the pooling allocator's limits.
    Compile,
    /// Linking: it imports something this host does not provide.
    Link,
    /// Its exports: `wasi:http/incoming-handler` and `stock:service/status`.
    Exports,
    /// The smoke test: its status export and a request through its handler.
    SmokeTest,
    /// It refuses this host's configuration (`stock:service/status.check-config`).
    Config,
}

impl LoadStep {
    /// Name for logs, metrics and the swap history.
    pub fn name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Manifest => "manifest",
            Self::Signature => "signature",
            Self::Size => "size",
            Self::Digest => "digest",
            Self::Compile => "compile",
            Self::Link => "link",
            Self::Exports => "exports",
            Self::SmokeTest => "smoke-test",
            Self::Config => "config",
        }
    }
}

/// Why a build cannot be served: the step that refused it and what it said.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", step.name())]
pub struct LoadError {
    /// The check that failed.
    pub step: LoadStep,
    /// What it said.
    pub reason: String,
}

impl LoadError {
    /// A failure of `step` for `reason`.
    pub fn new(step: LoadStep, reason: impl Into<String>) -> Self {
        Self { step, reason: reason.into() }
    }
}

/// Compiles (or takes this host's own compiled form of the same digest from `compiled`; precompiled
/// bytes from outside are never trusted), links and checks `bytes` (whose sha256 is `digest`); each
/// step names itself when it fails. Blocking: call it off the request path.
pub fn load_bytes(
    engine: &Engine,
    linker: &Linker<RequestState>,
    bytes: &[u8],
    digest: String,
    reuse: Reuse,
    compiled: Option<&CompiledCache>,
) -> Result<LoadedComponent, LoadError> {
    if !bytes.starts_with(b"\0asm") && !looks_like_text(bytes) {
        return Err(LoadError::new(LoadStep::Compile, "not a WebAssembly component (no \\0asm header)"));
    }
    let version = version_of_digest(&digest).to_owned();
    let component = match compiled.and_then(|cache| cache.load(engine, &digest)) {
        Some(component) => component,
        None => {
            let component = Component::new(engine, bytes).map_err(|e| {
                let message = decimal_numbers(&format!("{e:#}"));
                let hint =
                    if message.contains("memory") { " (raise MAX_MEMORY_MIB: the build needs more memory per instance)" } else { "" };
                LoadError::new(LoadStep::Compile, format!("{message}{hint}"))
            })?;
            if let Some(cache) = compiled {
                cache.store(&component, &digest);
            }
            component
        }
    };
    let pre = linker
        .instantiate_pre(&component)
        .map_err(|e| LoadError::new(LoadStep::Link, format!("it imports something this host does not provide: {e:#}")))?;
    let proxy = ProxyIndices::new(&pre)
        .map_err(|e| LoadError::new(LoadStep::Exports, format!("it does not export wasi:http/incoming-handler: {e:#}")))?;
    let status = StatusIndices::new(&pre)
        .map_err(|e| LoadError::new(LoadStep::Exports, format!("it does not export stock:service/status: {e:#}")))?;
    Ok(LoadedComponent { pre, proxy, status, version, digest, pool: InstancePool::new(reuse) })
}

/// `text` with wasmtime's hexadecimal sizes (`0x100000`) written in decimal, so one message uses one format.
fn decimal_numbers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("0x") {
        out.push_str(&rest[..at]);
        let digits: String = rest[at + 2..].chars().take_while(char::is_ascii_hexdigit).collect();
        match u64::from_str_radix(&digits, 16) {
            Ok(value) if !digits.is_empty() => out.push_str(&value.to_string()),
            _ => out.push_str(&rest[at..at + 2 + digits.len()]),
        }
        rest = &rest[at + 2 + digits.len()..];
    }
    out.push_str(rest);
    out
}

/// The WebAssembly text format (`.wat`), accepted for tests and experiments.
fn looks_like_text(bytes: &[u8]) -> bool {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace()).map_or(&[][..], |i| &bytes[i..]);
    start.starts_with(b"(") || start.starts_with(b";;")
}

/// The one thread that advances the engine's epoch for every store's deadline; stops on drop.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    /// Starts ticking `engine` every [`EPOCH_TICK`]; without it no deadline would ever fire, so a
    /// thread that cannot start is a startup error.
    pub fn spawn(engine: Engine) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn({
                let stop = stop.clone();
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                }
            })
            .context("cannot start the epoch ticker thread that enforces request deadlines")?;
        Ok(Self { stop, thread: Some(thread) })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hexadecimal_sizes_are_written_in_decimal() {
        for (input, want) in [
            ("size of 1179648 which exceeds the limit of 0x100000 bytes", "size of 1179648 which exceeds the limit of 1048576 bytes"),
            ("0x10 and 0xff", "16 and 255"),
            ("no numbers", "no numbers"),
            ("a bare 0x here", "a bare 0x here"),
        ] {
            assert_eq!(decimal_numbers(input), want);
        }
    }

    #[test]
    fn versions_are_sha256_prefixes() {
        assert_eq!(version_of(b""), "e3b0c44298fc");
        assert_eq!(version_of(b"abc"), "ba7816bf8f01");
    }
}
