//! The wasmtime runtime: one engine and linker, the stores and instance pools, slots, deadlines and
//! the memory cap. It compiles bytes into a checked build, runs a request through a build ([`Runtime::call`])
//! and asks a build for its status ([`Runtime::report`]); it never decides which build serves (that is
//! the builds room's job).

pub mod call;
pub mod egress;
pub mod engine;
pub mod pool;
pub mod slots;
pub mod status;
pub mod store;
pub mod variables;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use wasmtime::Engine;
use wasmtime::component::Linker;

use crate::body::HostBody;
use crate::config::runtime::RuntimeOptions;
use crate::error::HostError;
use crate::state::Buckets;
use crate::telemetry::metrics::Metrics;
use egress::EgressPolicy;
use engine::{EpochTicker, LoadError, LoadStep, LoadedComponent, build_engine, build_linker, load_bytes};
use pool::Reuse;
use slots::Slots;
use status::BuildReport;
use store::RequestState;
use variables::ComponentConfig;

/// Instances beyond MAX_CONCURRENCY for the host's own calls (status at load and on scrapes, smoke tests).
const HOST_INSTANCES: u32 = 4;

/// The engine and everything a call of any build needs.
pub struct Runtime {
    engine: Engine,
    linker: Linker<RequestState>,
    kv: Buckets,
    egress: EgressPolicy,
    variables: Arc<ComponentConfig>,
    slots: Arc<Slots>,
    metrics: Arc<Metrics>,
    reuse: Reuse,
    request_timeout: Duration,
    max_memory_bytes: usize,
    _ticker: EpochTicker,
}

impl Runtime {
    /// The engine (pooling allocator sized from `options`), the linker with every import of the stock
    /// world, and the epoch ticker that enforces deadlines.
    pub fn new(
        options: &RuntimeOptions,
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
        Ok(Self { engine, linker, kv, egress, variables, slots, metrics, reuse, request_timeout, max_memory_bytes, _ticker: ticker })
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

    /// Compiles (never deserializes), links and checks `bytes` (whose sha256 is `digest`) on a blocking thread.
    pub async fn compile(&self, bytes: Bytes, digest: String) -> Result<LoadedComponent, LoadError> {
        let (engine, linker, reuse) = (self.engine.clone(), self.linker.clone(), self.reuse);
        tokio::task::spawn_blocking(move || load_bytes(&engine, &linker, &bytes, digest, reuse))
            .await
            .map_err(|e| LoadError::new(LoadStep::Compile, format!("the compile thread failed: {e}")))?
    }

    /// Runs `request` through `build`.
    pub async fn call<B>(self: &Arc<Self>, build: Arc<LoadedComponent>, request: Request<B>) -> Result<Response<HostBody>, HostError>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        call::call_component(self, build, request).await
    }

    /// `build`'s status report, within the request deadline.
    pub async fn report(&self, build: &LoadedComponent) -> anyhow::Result<BuildReport> {
        call::build_report(self, build).await
    }

    /// The smoke test a build passes before it serves anyone: it reports its status, accepts this
    /// configuration and answers a request that needs no upstream, all within REQUEST_TIMEOUT. What it
    /// says in a refusal is scrubbed of secrets before it reaches an answer, a record or a log line.
    pub async fn smoke_test(self: &Arc<Self>, build: &Arc<LoadedComponent>) -> Result<BuildReport, LoadError> {
        let fail = |reason: String| LoadError::new(LoadStep::SmokeTest, crate::telemetry::redact::redact(&reason));
        let report = self.report(build).await.map_err(|e| fail(format!("status export: {e:#}")))?;
        if let Some(problems) = report.config_problems_line() {
            return Err(LoadError::new(LoadStep::Config, problems));
        }
        let probe = Request::get("http://localhost/openapi.json")
            .body(Empty::<Bytes>::new().map_err(|never: std::convert::Infallible| -> hyper::Error { match never {} }))
            .map_err(|e| fail(e.to_string()))?;
        let response = self.call(build.clone(), probe).await.map_err(|e| fail(format!("GET /openapi.json: {e}")))?;
        if response.status() != StatusCode::OK {
            return Err(fail(format!("GET /openapi.json answered {}", response.status())));
        }
        tokio::time::timeout(self.request_timeout, response.into_body().collect())
            .await
            .map_err(|_| fail("GET /openapi.json: the body did not finish within REQUEST_TIMEOUT".into()))?
            .map_err(|e| fail(format!("GET /openapi.json body: {e}")))?;
        Ok(report)
    }

    /// Metrics, for the rooms above.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }
}
