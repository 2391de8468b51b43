//! One request through the component: a fresh `Store` with a deadline, instantiate from the
//! pre-instantiated proxy, call `wasi:http/incoming-handler`, re-emit its stderr with the request id.

use std::sync::Arc;
use std::time::Instant;

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
        async move {
            let _permit = permit;
            app.metrics.in_flight.inc();
            let instantiated = Instant::now();
            let result = async {
                let proxy = component.pre.instantiate_async(&mut store).await?;
                app.metrics.instantiation.observe(instantiated.elapsed().as_secs_f64());
                proxy.wasi_http_incoming_handler().call_handle(&mut store, incoming, outparam).await
            }
            .await;
            app.metrics.in_flight.dec();
            if result.is_err() {
                app.metrics.traps.inc();
            }
            emit_stderr(&app, &req_id, &stderr);
            result
        }
    });

    match tokio::time::timeout(deadline.saturating_sub(started.elapsed()), receiver).await {
        Ok(Ok(Ok(response))) => Ok(response.map(box_component_body)),
        Ok(Ok(Err(code))) => Err(HostError::Internal(format!("component answered with error code {code:?}"))),
        Ok(Err(_)) => match task.await {
            Ok(Err(error)) if matches!(error.downcast_ref::<Trap>(), Some(Trap::Interrupt)) => {
                app.metrics.request_timeouts.inc();
                Err(HostError::Deadline(deadline.as_millis()))
            }
            Ok(Err(error)) => Err(HostError::Trap(app.component_config.redact(&format!("{error:#}")))),
            Ok(Ok(())) => Err(HostError::Internal("component returned without a response".into())),
            Err(join) => Err(HostError::Internal(format!("component task failed: {join}"))),
        },
        Err(_) => {
            task.abort();
            app.metrics.request_timeouts.inc();
            emit_stderr(app, req_id, &stderr);
            Err(HostError::Deadline(deadline.as_millis()))
        }
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
