//! The wasmtime engine and linker (built once), the epoch ticker, and loading a component into a
//! pre-instantiated, checked [`LoadedComponent`].

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyIndices};

use crate::state::RequestState;
use crate::status::{Status, StatusIndices};

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
    crate::keyvalue::add_to_linker(&mut linker, RequestState::kv)?;
    Ok(linker)
}

/// A compiled, linked and checked component build, instantiated per request.
pub struct LoadedComponent {
    pre: InstancePre<RequestState>,
    proxy: ProxyIndices,
    status: StatusIndices,
    /// First 12 hex digits of the sha256 of the component's bytes.
    pub version: String,
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

/// Reads, compiles, links and checks the component at `path`: each step names itself when it fails.
pub fn load_component(engine: &Engine, linker: &Linker<RequestState>, path: &Path) -> anyhow::Result<LoadedComponent> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read component {}", path.display()))?;
    let version = short_version(&bytes);
    let component = Component::new(engine, &bytes)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("cannot compile component {} (if memory is mentioned, raise MAX_MEMORY_MIB)", path.display()))?;
    let pre = linker
        .instantiate_pre(&component)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("component {} imports something this host does not provide", path.display()))?;
    let proxy = ProxyIndices::new(&pre)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("component {} does not export wasi:http/incoming-handler", path.display()))?;
    let status = StatusIndices::new(&pre)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("component {} does not export stock:service/status", path.display()))?;
    Ok(LoadedComponent { pre, proxy, status, version })
}

/// `sha256(bytes)` as 12 lower-case hex digits.
pub fn short_version(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().take(6).map(|b| format!("{b:02x}")).collect()
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
    fn versions_are_sha256_prefixes() {
        assert_eq!(short_version(b""), "e3b0c44298fc");
        assert_eq!(short_version(b"abc"), "ba7816bf8f01");
    }
}
