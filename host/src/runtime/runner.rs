//! The [`Runtime`]: one engine and linker, and what every call of any build shares (keyvalue, egress,
//! `wasi:config` variables, slots, deadlines, the memory cap). Calls themselves are in [`super::call`].

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use wasmtime::Engine;
use wasmtime::component::Linker;

use super::compiled::CompiledCache;
use super::egress::EgressPolicy;
use super::engine::{EpochTicker, LoadError, LoadStep, LoadedComponent, build_engine, build_linker, load_bytes};
use super::pool::Reuse;
use super::slots::Slots;
use super::store::RequestState;
use super::variables::ComponentConfig;
use crate::config::runtime::RuntimeOptions;
use crate::state::Buckets;
use crate::telemetry::metrics::Metrics;

/// Instances beyond MAX_CONCURRENCY for the host's own calls (status at load and on scrapes, smoke tests).
const HOST_INSTANCES: u32 = 4;

/// The engine and everything a call of any build needs.
pub struct Runtime {
    pub(super) engine: Engine,
    linker: Linker<RequestState>,
    pub(super) kv: Buckets,
    pub(super) egress: EgressPolicy,
    pub(super) variables: Arc<ComponentConfig>,
    pub(super) slots: Arc<Slots>,
    pub(super) metrics: Arc<Metrics>,
    reuse: Reuse,
    pub(super) request_timeout: Duration,
    pub(super) max_memory_bytes: usize,
    compiled: Option<Arc<CompiledCache>>,
    _ticker: EpochTicker,
}

impl Runtime {
    /// The engine (pooling allocator sized from `options`), the linker with every import of the stock
    /// world, the compiled-code cache under `cache_dir` (none for an empty path), and the epoch ticker
    /// that enforces deadlines.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        options: &RuntimeOptions,
        cache_dir: &std::path::Path,
        request_timeout: Duration,
        kv: Buckets,
        egress: EgressPolicy,
        variables: Arc<ComponentConfig>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let max_memory_bytes = options.max_memory_bytes();
        // Busy instances (one per slot), as many idle ones kept for reuse, and the host's own calls.
        let engine = build_engine(options.max_concurrency * 2 + HOST_INSTANCES, max_memory_bytes)?;
        let linker = build_linker(&engine)?;
        let concurrency = usize::try_from(options.max_concurrency).unwrap_or(1);
        let reuse = Reuse { max_uses: options.max_instance_reuse, idle_timeout: options.instance_idle_timeout, max_idle: concurrency };
        let slots = Slots::new(concurrency, usize::try_from(options.max_concurrency_per_symbol).unwrap_or(1));
        let ticker = EpochTicker::spawn(engine.clone())?;
        EgressPolicy::touch_labels(&metrics);
        let limits = format!("max-memory-bytes={max_memory_bytes}");
        let compiled = CompiledCache::open(cache_dir, &engine, &limits, metrics.compiled_cache.clone()).map(Arc::new);
        Ok(Self {
            engine,
            linker,
            kv,
            egress,
            variables,
            slots,
            metrics,
            reuse,
            request_timeout,
            max_memory_bytes,
            compiled,
            _ticker: ticker,
        })
    }

    /// The whole-request deadline (REQUEST_TIMEOUT); a smoke test gets the same.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// How instances are reused (the idle sweep follows its timeout).
    pub fn reuse(&self) -> Reuse {
        self.reuse
    }

    /// The `wasi:config` variables new requests see.
    pub fn variables(&self) -> &Arc<ComponentConfig> {
        &self.variables
    }

    /// Compiles (or reads this host's compiled form of the same digest), links and checks `bytes` (whose
    /// sha256 is `digest`) on a blocking thread.
    pub async fn compile(&self, bytes: Bytes, digest: String) -> Result<LoadedComponent, LoadError> {
        let (engine, linker, reuse, compiled) = (self.engine.clone(), self.linker.clone(), self.reuse, self.compiled.clone());
        tokio::task::spawn_blocking(move || load_bytes(&engine, &linker, &bytes, digest, reuse, compiled.as_deref()))
            .await
            .map_err(|e| LoadError::new(LoadStep::Compile, format!("the compile thread failed: {e}")))?
    }

    /// Metrics, for the rooms above.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }
}
