//! One request through a component build: a slot, an instance (reused from the build's pool, or new
//! from its pre-instantiated component) with a fresh deadline and the current configuration,
//! `wasi:http/incoming-handler`, and its stderr re-emitted in the request's span. The same store setup
//! serves the host's own calls of `stock:service/status`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use tokio::sync::oneshot;
use tracing::Instrument;
use wasmtime::{Store, Trap};
use wasmtime_wasi_config::WasiConfigVariables;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::engine::{EPOCH_TICK, LoadError, LoadStep, LoadedComponent};
use super::pool::Instance;
use super::runner::Runtime;
use super::slots::{Slot, Slots};
use super::status::BuildReport;
use super::store::RequestState;
use crate::body::{BUFFERED_BODY_MAX, BodyError, HostBody};
use crate::error::HostError;
use crate::telemetry::redact::redact;
use crate::telemetry::trace::TraceContext;

impl Runtime {
    /// Runs `request` through `build`.
    pub async fn call<B>(self: &Arc<Self>, build: Arc<LoadedComponent>, request: Request<B>) -> Result<Response<HostBody>, HostError>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        call_component(self, build, request).await
    }

    /// `build`'s status report, within the request deadline.
    pub async fn report(&self, build: &LoadedComponent) -> anyhow::Result<BuildReport> {
        build_report(self, build).await
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
}

/// Slack after the deadline before the caller stops waiting for the task.
const DEADLINE_MARGIN: Duration = Duration::from_millis(250);

/// The sender the guest's response head goes to.
type ResponseSender = oneshot::Sender<Result<Response<HyperOutgoingBody>, ErrorCode>>;

/// Runs `request` through `component` (the caller names the build, so it can name it in the answer).
pub async fn call_component<B>(
    app: &Arc<Runtime>,
    component: Arc<LoadedComponent>,
    request: Request<B>,
) -> Result<Response<HostBody>, HostError>
where
    B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let permit = acquire_slot(app, request.uri().path()).await?;
    let trace = request.extensions().get::<TraceContext>().cloned();
    let (sender, receiver) = oneshot::channel();
    let work = Box::pin({
        let app = app.clone();
        async move {
            let _permit = permit;
            let _in_flight = InFlight::start(app.clone());
            // The deadline starts with the slot, so time spent queueing never kills a call mid-way (a
            // leader killed mid-call would leave its single-flight ticket behind and record no failure).
            let mut instance = checkout(&app, &component).await?;
            instance.store.data_mut().begin_request(trace);
            let result = serve(&app, &mut instance, request, sender).await;
            emit_stderr(&instance.store.data_mut().take_stderr());
            match result {
                Ok(()) => {
                    instance.served();
                    component.pool.give_back(instance);
                    Ok(())
                }
                // Never reuse an instance that trapped or hit its deadline: its state is unknown.
                Err(failure) => Err(failure),
            }
        }
        .instrument(tracing::Span::current())
    });
    let guest = start_guest(work).await;
    await_response(app, receiver, guest, app.request_timeout).await
}

/// A guest call that finished on the connection's task, or the task it goes on running in.
enum Guest {
    Finished(Result<(), Failure>),
    Running(tokio::task::JoinHandle<Result<(), Failure>>),
}

/// Polls the guest call once here: a call that needs no I/O (a cached read, the OpenAPI document)
/// finishes in that poll, with no hand-off to another task and back. One that waits (an upstream
/// call) continues in its own task, so a client that hangs up cannot cut it off half-way (a leader
/// stopped mid-call would leave its single-flight ticket behind).
async fn start_guest<F>(mut work: std::pin::Pin<Box<F>>) -> Guest
where
    F: Future<Output = Result<(), Failure>> + Send + 'static,
{
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(work.as_mut().poll(cx))).await;
    match first {
        std::task::Poll::Ready(result) => Guest::Finished(result),
        std::task::Poll::Pending => Guest::Running(tokio::spawn(work)),
    }
}

/// A free instance slot for `path`'s symbol, waiting at most the request deadline.
async fn acquire_slot(app: &Runtime, path: &str) -> Result<Slot, HostError> {
    tokio::time::timeout(app.request_timeout, app.slots.acquire(Slots::key_of(path)))
        .await
        .map_err(|_| HostError::Overloaded)?
        .map_err(|_| HostError::NotReady("shutting down".into()))
}

/// An instance of `component` ready for one request: reused when one is idle and saw the current
/// configuration, else instantiated. Either way it gets a full request deadline from now.
async fn checkout(app: &Runtime, component: &LoadedComponent) -> Result<Instance, Failure> {
    let config = app.variables.variables();
    // The world's contract (wit/world.wit): configuration is fixed for an instance's life, so a build may
    // read it once. An instance that saw other settings (before a key rotation) never serves again.
    while let Some(mut instance) = component.pool.take() {
        if instance.store.data().configured_with(&config) {
            app.metrics.instance_reuses.inc();
            arm(app, &mut instance.store);
            return Ok(instance);
        }
    }
    let mut store = new_store(app, config);
    arm(app, &mut store);
    let started = Instant::now();
    let (proxy, _status) = component.instantiate(&mut store).await.map_err(Failure::from_wasmtime)?;
    app.metrics.instantiation.observe(started.elapsed().as_secs_f64());
    Ok(Instance::new(store, proxy))
}

/// Sets a fresh request deadline.
fn arm(app: &Runtime, store: &mut Store<RequestState>) {
    let ticks = u64::try_from(app.request_timeout.as_millis() / EPOCH_TICK.as_millis()).unwrap_or(u64::MAX).max(1);
    store.set_epoch_deadline(ticks);
    store.epoch_deadline_trap();
}

/// A store for a new instance: fresh WASI and HTTP contexts, `config`, the shared buckets and the memory cap.
fn new_store(app: &Runtime, config: Arc<WasiConfigVariables>) -> Store<RequestState> {
    let state = RequestState::new(app.egress.clone(), config, app.kv.clone(), app.max_memory_bytes);
    let mut store = Store::new(&app.engine, state);
    store.limiter(RequestState::limiter);
    store
}

/// Calls the instance's handler with `request`, bounded by the request deadline even while the guest
/// waits on host I/O or is still writing its body, where epoch interruption cannot reach it.
async fn serve<B>(app: &Runtime, instance: &mut Instance, request: Request<B>, sender: ResponseSender) -> Result<(), Failure>
where
    B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let store = &mut instance.store;
    let incoming = store
        .data_mut()
        .http()
        .new_incoming_request(Scheme::Http, request)
        .map_err(|e| Failure::Internal(format!("cannot pass the request to the component: {e:#}")))?;
    let outparam = store
        .data_mut()
        .http()
        .new_response_outparam(sender)
        .map_err(|e| Failure::Internal(format!("cannot create the response slot: {e:#}")))?;
    let call = instance.proxy.wasi_http_incoming_handler().call_handle(&mut *store, incoming, outparam);
    let result = match tokio::time::timeout(app.request_timeout, call).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(Failure::from_wasmtime(error)),
        Err(_) => Err(Failure::Deadline),
    };
    match &result {
        Err(Failure::Deadline) => {
            app.metrics.traps.inc();
            app.metrics.request_timeouts.inc();
        }
        Err(Failure::Trap(_)) => app.metrics.traps.inc(),
        Err(Failure::Internal(_)) | Ok(()) => {}
    }
    result
}

/// The response head the guest set, or the failure that kept it from setting one.
async fn await_response(
    app: &Runtime,
    receiver: oneshot::Receiver<Result<Response<HyperOutgoingBody>, ErrorCode>>,
    guest: Guest,
    remaining: Duration,
) -> Result<Response<HostBody>, HostError> {
    // The task enforces the deadline; this wait only adds a margin so a wedged task cannot hold the client.
    match tokio::time::timeout(remaining + DEADLINE_MARGIN, receiver).await {
        Ok(Ok(Ok(response))) => Ok(buffer_small_body(response, remaining).await),
        Ok(Ok(Err(code))) => Err(HostError::Internal(format!("component answered with error code {code:?}"))),
        Ok(Err(_)) => {
            let finished = match guest {
                Guest::Finished(result) => Ok(result),
                Guest::Running(task) => task.await,
            };
            match finished {
                Ok(Err(Failure::Deadline)) => Err(HostError::Deadline(app.request_timeout.as_millis())),
                Ok(Err(Failure::Trap(cause))) => Err(HostError::Trap(redact(&cause))),
                Ok(Err(Failure::Internal(cause))) => Err(HostError::Internal(cause)),
                Ok(Ok(())) => Err(HostError::Internal("component returned without a response".into())),
                Err(join) => Err(HostError::Internal(format!("component task failed: {join}"))),
            }
        }
        Err(_) => {
            if let Guest::Running(task) = guest {
                task.abort();
            }
            app.metrics.request_timeouts.inc();
            Err(HostError::Deadline(app.request_timeout.as_millis()))
        }
    }
}

/// Calls `component`'s status export in a fresh store (the smoke test, and every scrape), within the
/// request deadline: a build whose status export waits in a host call (where epoch interruption cannot
/// reach it) is cut off by the timer instead of holding its caller forever.
pub async fn build_report(app: &Runtime, component: &LoadedComponent) -> anyhow::Result<BuildReport> {
    use anyhow::Context;
    let mut store = new_store(app, app.variables.variables());
    arm(app, &mut store);
    let report = async {
        let (_proxy, status) = component.instantiate(&mut store).await.map_err(anyhow::Error::from).context("cannot instantiate")?;
        let breaker = status.call_breaker(&mut store).await.map_err(anyhow::Error::from).context("status.breaker failed")?;
        let quota = status.call_quota(&mut store).await.map_err(anyhow::Error::from).context("status.quota failed")?;
        let config_problems =
            status.call_check_config(&mut store).await.map_err(anyhow::Error::from).context("status.check-config failed")?;
        Ok(BuildReport { breaker, quota, config_problems })
    };
    let result = match tokio::time::timeout(app.request_timeout, report).await {
        Ok(result) => result,
        Err(_) => Err(anyhow::anyhow!("stock:service/status did not answer within {:?} (REQUEST_TIMEOUT)", app.request_timeout)),
    };
    emit_stderr(&store.data_mut().take_stderr());
    result
}

/// How a component call ended without a response.
enum Failure {
    /// The request deadline passed (timer or epoch interruption).
    Deadline,
    /// The guest trapped (or failed to instantiate); the cause, unredacted.
    Trap(String),
    /// The host could not hand the request over.
    Internal(String),
}

impl Failure {
    fn from_wasmtime(error: wasmtime::Error) -> Self {
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => Self::Deadline,
            _ => Self::Trap(format!("{error:#}")),
        }
    }
}

/// Counts a component call as in flight for as long as it lives, even when the task is aborted.
struct InFlight(Arc<Runtime>);

impl InFlight {
    fn start(app: Arc<Runtime>) -> Self {
        app.metrics.in_flight.inc();
        Self(app)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.metrics.in_flight.dec();
    }
}

/// The response with its body collected when the guest declared a small `content-length` (one write,
/// one packet, instead of a head and then chunks); larger or unknown bodies stream as the guest writes.
async fn buffer_small_body(response: Response<HyperOutgoingBody>, remaining: Duration) -> Response<HostBody> {
    let declared = response.headers().get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_none_or(|n| n > BUFFERED_BODY_MAX) {
        return response.map(box_component_body);
    }
    let (parts, body) = response.into_parts();
    match tokio::time::timeout(remaining, body.collect()).await {
        Ok(Ok(collected)) => Response::from_parts(parts, crate::body::full(collected.to_bytes())),
        Ok(Err(code)) => Response::from_parts(parts, crate::body::failed(format!("component body error: {code:?}"))),
        Err(_) => Response::from_parts(parts, crate::body::failed("the component did not finish its body before the deadline".into())),
    }
}

fn box_component_body(body: HyperOutgoingBody) -> HostBody {
    body.map_err(|code| -> BodyError { format!("component body error: {code:?}").into() }).boxed_unsync()
}

/// Logs what the component wrote to stderr, one event per line, in the request's span, secrets scrubbed.
fn emit_stderr(contents: &[u8]) {
    if contents.is_empty() {
        return;
    }
    for line in String::from_utf8_lossy(contents).lines().filter(|l| !l.trim().is_empty()) {
        let line = redact(line);
        tracing::info!(target: "component", %line, "component stderr");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
    }

    #[test]
    fn a_call_that_needs_no_io_finishes_in_place_and_one_that_waits_moves_to_its_own_task() {
        runtime().block_on(async {
            let ready = start_guest(Box::pin(async { Ok::<(), Failure>(()) })).await;
            assert!(matches!(ready, Guest::Finished(Ok(()))), "no hand-off for a call that is done in one poll");
            let (release, wait) = oneshot::channel::<()>();
            let waiting = start_guest(Box::pin(async move {
                let _ = wait.await;
                Ok::<(), Failure>(())
            }))
            .await;
            let Guest::Running(task) = waiting else { panic!("a waiting call goes on in its own task") };
            let _ = release.send(());
            assert!(matches!(task.await, Ok(Ok(()))), "and finishes there, whoever waits for it");
        });
    }

    #[test]
    fn an_epoch_interruption_is_a_deadline_and_anything_else_a_trap() {
        assert!(matches!(Failure::from_wasmtime(wasmtime::Error::from(Trap::Interrupt)), Failure::Deadline));
        assert!(matches!(Failure::from_wasmtime(wasmtime::Error::from(Trap::UnreachableCodeReached)), Failure::Trap(_)));
        assert!(
            matches!(Failure::from_wasmtime(wasmtime::Error::msg("instantiation failed")), Failure::Trap(cause) if cause.contains("instantiation"))
        );
    }
}
