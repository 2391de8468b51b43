//! The per-request store data: WASI, wasi:http (with the egress hooks), wasi:config, keyvalue.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_config::{WasiConfig, WasiConfigVariables};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::egress::EgressPolicy;
use crate::state::{Buckets, KvView};
use crate::telemetry::metrics::Metrics;

/// Most bytes of component stderr an instance keeps; a reused instance retires before it fills.
pub const STDERR_CAPACITY: usize = 256 * 1024;

/// Everything one request's `Store` holds.
pub struct RequestState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    egress: EgressPolicy,
    config: Arc<WasiConfigVariables>,
    kv: Buckets,
    metrics: Arc<Metrics>,
    limits: StoreLimits,
    stderr: MemoryOutputPipe,
    stderr_seen: usize,
}

impl RequestState {
    /// Fresh state for a new instance; what it writes to stderr is collected (see [`take_stderr`](Self::take_stderr)).
    pub fn new(mut egress: EgressPolicy, config: Arc<WasiConfigVariables>, kv: Buckets, max_memory_bytes: usize) -> Self {
        // A store used once (a build's report) begins with its creation; a served request begins again.
        egress.begin_request(None);
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        let wasi = WasiCtx::builder().stderr(stderr.clone()).build();
        let metrics = egress.metrics.clone();
        Self {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            egress,
            config,
            kv,
            metrics,
            limits: StoreLimitsBuilder::new().memory_size(max_memory_bytes).instances(64).build(),
            stderr,
            stderr_seen: 0,
        }
    }

    /// Whether this instance was made with `config` (the same snapshot, not merely equal pairs).
    pub fn configured_with(&self, config: &Arc<WasiConfigVariables>) -> bool {
        Arc::ptr_eq(&self.config, config)
    }

    /// Starts the next request: the trace it belongs to (its upstream calls become child spans), and where the
    /// day's quota is counted as it begins.
    pub fn begin_request(&mut self, trace: Option<crate::telemetry::trace::TraceContext>) {
        self.egress.begin_request(trace);
    }

    /// What the component wrote to stderr since the last call.
    pub fn take_stderr(&mut self) -> bytes::Bytes {
        let all = self.stderr.contents();
        let new = all.slice(self.stderr_seen.min(all.len())..);
        self.stderr_seen = all.len();
        new
    }

    /// Whether the stderr buffer is past half full: the instance should retire before writes fail.
    pub fn stderr_nearly_full(&self) -> bool {
        self.stderr_seen > STDERR_CAPACITY / 2
    }

    /// The `wasi:config` view.
    pub fn config(&mut self) -> WasiConfig<'_> {
        WasiConfig::from(&*self.config)
    }

    /// The keyvalue view.
    pub fn kv(&mut self) -> KvView<'_> {
        let local_only = self.egress.off_shared_state();
        KvView { table: &mut self.table, buckets: &self.kv, metrics: &self.metrics, local_only }
    }

    /// The resource limiter (memory cap).
    pub fn limiter(&mut self) -> &mut dyn ResourceLimiter {
        &mut self.limits
    }
}

impl WasiView for RequestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for RequestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.egress }
    }
}
