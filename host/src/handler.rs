//! One request through the component: a fresh `Store` with a deadline, instantiate from the
//! pre-instantiated proxy, call `wasi:http/incoming-handler`, re-emit its stderr with the request id.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response};
use http_body_util::BodyExt;
use wasmtime::{Store, Trap};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::App;
use crate::body::{BodyError, HostBody};
use crate::engine::EPOCH_TICK;
use crate::error::HostError;
use crate::state::{RequestState, STDERR_CAPACITY};

/// Runs `request` through the running component.
pub async fn call_component<B>(app: &Arc<App>, request: Request<B>, req_id: &str) -> Result<Response<HostBody>, HostError>
where
    B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let started = Instant::now();
    let deadline = app.request_timeout;
    let permit = tokio::time::timeout(deadline, app.slots.clone().acquire_owned())
        .await
        .map_err(|_| HostError::Overloaded)?
        .map_err(|_| HostError::NotReady("shutting down".into()))?;
    let component = app.component();
    let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
    let state = RequestState::new(app.egress.clone(), app.component_config.variables(), app.kv.clone(), app.max_memory_bytes, stderr.clone());
    let mut store = Store::new(&app.engine, state);
    store.limiter(RequestState::limiter);
    let ticks = u64::try_from(deadline.as_millis() / EPOCH_TICK.as_millis()).unwrap_or(u64::MAX).max(1);
    store.set_epoch_deadline(ticks);
    store.epoch_deadline_trap();

    let (sender, receiver) = tokio::sync::oneshot::channel();
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
        let req_id = req_id.to_owned();
        let stderr = stderr.clone();
        let remaining = deadline.saturating_sub(started.elapsed());
        async move {
            let _permit = permit;
            let _in_flight = InFlight::start(app.metrics.clone());
            let work = async {
                let instantiated = Instant::now();
                let proxy = component.pre.instantiate_async(&mut store).await?;
                app.metrics.instantiation.observe(instantiated.elapsed().as_secs_f64());
                proxy.wasi_http_incoming_handler().call_handle(&mut store, incoming, outparam).await
            };
            // Bounds the whole call, including a guest waiting on host I/O or still writing its body,
            // where epoch interruption cannot reach it. Dropping the store ends everything it owns.
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
            emit_stderr(&app, &req_id, &stderr);
            result
        }
    });

    // The task enforces the deadline; this wait only adds a margin so a wedged task cannot hold the client.
    match tokio::time::timeout(deadline.saturating_sub(started.elapsed()) + DEADLINE_MARGIN, receiver).await {
        Ok(Ok(Ok(response))) => Ok(response.map(box_component_body)),
        Ok(Ok(Err(code))) => Err(HostError::Internal(format!("component answered with error code {code:?}"))),
        Ok(Err(_)) => match task.await {
            Ok(Err(Failure::Deadline)) => Err(HostError::Deadline(deadline.as_millis())),
            Ok(Err(Failure::Trap(cause))) => Err(HostError::Trap(app.component_config.redact(&cause))),
            Ok(Ok(())) => Err(HostError::Internal("component returned without a response".into())),
            Err(join) => Err(HostError::Internal(format!("component task failed: {join}"))),
        },
        Err(_) => {
            task.abort();
            app.metrics.request_timeouts.inc();
            Err(HostError::Deadline(deadline.as_millis()))
        }
    }
}

/// Slack after the deadline before the caller stops waiting for the task.
const DEADLINE_MARGIN: Duration = Duration::from_millis(250);

/// How a component call ended without a response.
enum Failure {
    /// The request deadline passed (timer or epoch interruption).
    Deadline,
    /// The guest trapped; the cause, unredacted.
    Trap(String),
}

/// Counts a component call as in flight for as long as it lives, even when the task is aborted.
struct InFlight(Arc<crate::metrics::Metrics>);

impl InFlight {
    fn start(metrics: Arc<crate::metrics::Metrics>) -> Self {
        metrics.in_flight.inc();
        Self(metrics)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

fn box_component_body(body: HyperOutgoingBody) -> HostBody {
    body.map_err(|code| -> BodyError { format!("component body error: {code:?}").into() }).boxed_unsync()
}

/// Logs what the component wrote to stderr, one event per line, tagged with the request id, secrets scrubbed.
fn emit_stderr(app: &App, req_id: &str, stderr: &MemoryOutputPipe) {
    let contents = stderr.contents();
    if contents.is_empty() {
        return;
    }
    for line in String::from_utf8_lossy(&contents).lines().filter(|l| !l.trim().is_empty()) {
        let line = app.component_config.redact(line);
        tracing::info!(target: "component", req_id, %line, "component stderr");
    }
}
