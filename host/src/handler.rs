//! One request through a component build: a slot, a fresh `Store` with a deadline, an instance from the
//! build's pre-instantiated component, `wasi:http/incoming-handler`, and its stderr re-emitted with
//! the request id. The same store setup serves the host's own calls of `stock:service/status`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response};
use http_body_util::BodyExt;
use tokio::sync::oneshot;
use tracing::Instrument;
use wasmtime::component::Resource;
use wasmtime::{Store, Trap};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p2::types::{HostIncomingRequest, HostResponseOutparam};

use crate::App;
use crate::body::{BodyError, HostBody};
use crate::engine::{EPOCH_TICK, LoadedComponent};
use crate::error::HostError;
use crate::slots::{Slot, Slots};
use crate::state::{RequestState, STDERR_CAPACITY};
use crate::status::{BreakerStatus, ConfigProblem, QuotaStatus};

/// Slack after the deadline before the caller stops waiting for the task.
const DEADLINE_MARGIN: Duration = Duration::from_millis(250);

/// Runs `request` through `component` (the caller names the build, so it can name it in the answer).
pub async fn call_component<B>(
    app: &Arc<App>,
    component: Arc<LoadedComponent>,
    request: Request<B>,
) -> Result<Response<HostBody>, HostError>
where
    B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let permit = acquire_slot(app, request.uri().path()).await?;
    // The deadline starts with the slot, so time spent queueing never kills a call mid-way (a leader
    // killed mid-call would leave its single-flight ticket behind and record no failure).
    let remaining = app.request_timeout;
    let (mut store, stderr) = new_store(app, remaining);
    let (sender, receiver) = oneshot::channel();
    let incoming = store
        .data_mut()
        .http()
        .new_incoming_request(Scheme::Http, request)
        .map_err(|e| HostError::Internal(format!("cannot pass the request to the component: {e:#}")))?;
    let outparam = store
        .data_mut()
        .http()
        .new_response_outparam(sender)
        .map_err(|e| HostError::Internal(format!("cannot create the response slot: {e:#}")))?;
    let task = tokio::spawn({
        let app = app.clone();
        async move {
            let _permit = permit;
            let _in_flight = InFlight::start(app.clone());
            let result = run_handler(&app, &component, &mut store, incoming, outparam, remaining).await;
            emit_stderr(&app, &stderr);
            result
        }
        .instrument(tracing::Span::current())
    });
    await_response(app, receiver, task, remaining).await
}

/// A free instance slot for `path`'s symbol, waiting at most the request deadline.
async fn acquire_slot(app: &App, path: &str) -> Result<Slot, HostError> {
    tokio::time::timeout(app.request_timeout, app.slots.acquire(Slots::key_of(path)))
        .await
        .map_err(|_| HostError::Overloaded)?
        .map_err(|_| HostError::NotReady("shutting down".into()))
}

/// A store for one call: fresh WASI and HTTP contexts, the current configuration, the shared buckets,
/// the memory cap, and an epoch deadline `deadline` from now. Returns the pipe that collects stderr.
fn new_store(app: &App, deadline: Duration) -> (Store<RequestState>, MemoryOutputPipe) {
    let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
    let state =
        RequestState::new(app.egress.clone(), app.component_config.variables(), app.kv.clone(), app.max_memory_bytes, stderr.clone());
    let mut store = Store::new(&app.engine, state);
    store.limiter(RequestState::limiter);
    let ticks = u64::try_from(deadline.as_millis() / EPOCH_TICK.as_millis()).unwrap_or(u64::MAX).max(1);
    store.set_epoch_deadline(ticks);
    store.epoch_deadline_trap();
    (store, stderr)
}

/// Instantiates `component` and calls its handler, bounded by `remaining` even while the guest waits
/// on host I/O or is still writing its body, where epoch interruption cannot reach it.
async fn run_handler(
    app: &App,
    component: &LoadedComponent,
    store: &mut Store<RequestState>,
    incoming: Resource<HostIncomingRequest>,
    outparam: Resource<HostResponseOutparam>,
    remaining: Duration,
) -> Result<(), Failure> {
    let work = async {
        let instantiated = Instant::now();
        let (proxy, _status) = component.instantiate(store).await?;
        app.metrics.instantiation.observe(instantiated.elapsed().as_secs_f64());
        proxy.wasi_http_incoming_handler().call_handle(&mut *store, incoming, outparam).await
    };
    let result = match tokio::time::timeout(remaining, work).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) if matches!(error.downcast_ref::<Trap>(), Some(Trap::Interrupt)) => Err(Failure::Deadline),
        Ok(Err(error)) => Err(Failure::Trap(format!("{error:#}"))),
        Err(_) => Err(Failure::Deadline),
    };
    match &result {
        Err(Failure::Deadline) => {
            app.metrics.traps.inc();
            app.metrics.request_timeouts.inc();
        }
        Err(Failure::Trap(_)) => app.metrics.traps.inc(),
        Ok(()) => {}
    }
    result
}

/// The response head the guest set, or the failure that kept it from setting one.
async fn await_response(
    app: &App,
    receiver: oneshot::Receiver<Result<Response<HyperOutgoingBody>, ErrorCode>>,
    task: tokio::task::JoinHandle<Result<(), Failure>>,
    remaining: Duration,
) -> Result<Response<HostBody>, HostError> {
    // The task enforces the deadline; this wait only adds a margin so a wedged task cannot hold the client.
    match tokio::time::timeout(remaining + DEADLINE_MARGIN, receiver).await {
        Ok(Ok(Ok(response))) => Ok(response.map(box_component_body)),
        Ok(Ok(Err(code))) => Err(HostError::Internal(format!("component answered with error code {code:?}"))),
        Ok(Err(_)) => match task.await {
            Ok(Err(Failure::Deadline)) => Err(HostError::Deadline(app.request_timeout.as_millis())),
            Ok(Err(Failure::Trap(cause))) => Err(HostError::Trap(app.component_config.redact(&cause))),
            Ok(Ok(())) => Err(HostError::Internal("component returned without a response".into())),
            Err(join) => Err(HostError::Internal(format!("component task failed: {join}"))),
        },
        Err(_) => {
            task.abort();
            app.metrics.request_timeouts.inc();
            Err(HostError::Deadline(app.request_timeout.as_millis()))
        }
    }
}

/// What a build reports about itself through `stock:service/status`.
pub struct BuildReport {
    /// Its breaker.
    pub breaker: BreakerStatus,
    /// Today's use of the upstream quota.
    pub quota: QuotaStatus,
    /// What it finds wrong with the configuration it sees.
    pub config_problems: Vec<ConfigProblem>,
}

/// Calls `component`'s status export in a fresh store (the load-time smoke test, and every scrape).
pub async fn build_report(app: &App, component: &LoadedComponent) -> anyhow::Result<BuildReport> {
    use anyhow::Context;
    let (mut store, stderr) = new_store(app, app.request_timeout);
    let result = async {
        let (_proxy, status) = component.instantiate(&mut store).await.map_err(anyhow::Error::from).context("cannot instantiate")?;
        let breaker = status.call_breaker(&mut store).await.map_err(anyhow::Error::from).context("status.breaker failed")?;
        let quota = status.call_quota(&mut store).await.map_err(anyhow::Error::from).context("status.quota failed")?;
        let config_problems =
            status.call_check_config(&mut store).await.map_err(anyhow::Error::from).context("status.check-config failed")?;
        Ok(BuildReport { breaker, quota, config_problems })
    }
    .await;
    emit_stderr(app, &stderr);
    result
}

/// How a component call ended without a response.
enum Failure {
    /// The request deadline passed (timer or epoch interruption).
    Deadline,
    /// The guest trapped; the cause, unredacted.
    Trap(String),
}

/// Counts a component call as in flight for as long as it lives, even when the task is aborted.
struct InFlight(Arc<App>);

impl InFlight {
    fn start(app: Arc<App>) -> Self {
        app.metrics.in_flight.inc();
        Self(app)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.metrics.in_flight.dec();
    }
}

fn box_component_body(body: HyperOutgoingBody) -> HostBody {
    body.map_err(|code| -> BodyError { format!("component body error: {code:?}").into() }).boxed_unsync()
}

/// Logs what the component wrote to stderr, one event per line, in the request's span, secrets scrubbed.
fn emit_stderr(app: &App, stderr: &MemoryOutputPipe) {
    let contents = stderr.contents();
    if contents.is_empty() {
        return;
    }
    for line in String::from_utf8_lossy(&contents).lines().filter(|l| !l.trim().is_empty()) {
        let line = app.component_config.redact(line);
        tracing::info!(target: "component", %line, "component stderr");
    }
}
