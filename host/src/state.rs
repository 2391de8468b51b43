//! The per-request store data: WASI, wasi:http (with the egress hooks), wasi:config, keyvalue.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_config::{WasiConfig, WasiConfigVariables};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::egress::EgressPolicy;
use crate::keyvalue::{Buckets, KvView};
use crate::metrics::Metrics;

/// Most bytes of component stderr kept per request.
pub const STDERR_CAPACITY: usize = 64 * 1024;

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
}

impl RequestState {
    /// Fresh state; `stderr` collects what the component writes there.
    pub fn new(
        egress: EgressPolicy,
        config: Arc<WasiConfigVariables>,
        kv: Buckets,
        max_memory_bytes: usize,
        stderr: MemoryOutputPipe,
    ) -> Self {
        let wasi = WasiCtx::builder().stderr(stderr).build();
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
        }
    }

    /// The `wasi:config` view.
    pub fn config(&mut self) -> WasiConfig<'_> {
        WasiConfig::from(&*self.config)
    }

    /// The keyvalue view.
    pub fn kv(&mut self) -> KvView<'_> {
        KvView { table: &mut self.table, buckets: &self.kv, metrics: &self.metrics }
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
