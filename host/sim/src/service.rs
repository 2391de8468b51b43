//! One HTTP request: routing between `/query` and the `/_sim/*` control endpoints, latency, hang and reset, and the
//! per-request log line (with the API key redacted).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use tracing::info;

use crate::control;
use crate::query::{Params, redacted_target};
use crate::route::{self, Outcome, Reply};
use crate::state::SimState;

/// How long a `hang` request is held before the connection is closed anyway (10 minutes).
pub const HANG_FOR: Duration = Duration::from_secs(600);

/// Why a request ends without a response; hyper then closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abort {
    /// `reset` mode: drop the connection (the socket is reset on drop, see [`crate::conn`]).
    Reset,
    /// `hang` mode ran for [`HANG_FOR`] without answering.
    HangOver,
}

impl fmt::Display for Abort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Reset => f.write_str("connection reset by fault mode"),
            Self::HangOver => f.write_str("hang fault mode timed out"),
        }
    }
}

impl std::error::Error for Abort {}

/// The endpoints, matched on path only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Query,
    Fault,
    Stats,
    Reset,
}

impl Endpoint {
    fn from_path(path: &str) -> Option<Self> {
        match path {
            "/query" => Some(Self::Query),
            "/_sim/fault" => Some(Self::Fault),
            "/_sim/stats" => Some(Self::Stats),
            "/_sim/reset" => Some(Self::Reset),
            _ => None,
        }
    }

    /// The one method each endpoint accepts.
    fn method(self) -> Method {
        match self {
            Self::Query | Self::Stats => Method::GET,
            Self::Fault => Method::PUT,
            Self::Reset => Method::POST,
        }
    }

    /// Value of the `Allow` header when another method is used.
    fn allow(self) -> &'static str {
        match self {
            Self::Query | Self::Stats => "GET",
            Self::Fault => "PUT",
            Self::Reset => "POST",
        }
    }
}

/// Turns a [`Reply`] into a hyper response.
fn into_response(reply: Reply) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(reply.body)));
    *response.status_mut() = reply.status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(reply.content_type));
    response
}

/// Handles one request. `reset` is the connection's flag asking for an abortive close when it is dropped.
pub async fn handle<B>(state: Arc<SimState>, reset: Arc<AtomicBool>, request: Request<B>) -> Result<Response<Full<Bytes>>, Abort> {
    let method = request.method().clone();
    let uri = request.uri();
    let target = redacted_target(uri.path(), uri.query());
    let params = Params::parse(uri.query().unwrap_or_default());
    let traceparent = request.headers().get("traceparent").and_then(|v| v.to_str().ok()).map(str::to_owned);

    let Some(endpoint) = Endpoint::from_path(uri.path()) else {
        info!(%method, %target, status = 404, "request");
        return Ok(into_response(Reply::text(StatusCode::NOT_FOUND, "not found")));
    };
    if method != endpoint.method() {
        info!(%method, %target, status = 405, "request");
        let mut response = into_response(Reply::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"));
        response.headers_mut().insert(ALLOW, HeaderValue::from_static(endpoint.allow()));
        return Ok(response);
    }

    let reply = match endpoint {
        Endpoint::Query => return query(&state, &reset, &method, &target, &params, traceparent.as_deref()).await,
        Endpoint::Fault => control::put_fault(&state, &params).await,
        Endpoint::Stats => control::get_stats(&state).await,
        Endpoint::Reset => control::post_reset(&state).await,
    };
    info!(%method, %target, status = reply.status.as_u16(), "request");
    Ok(into_response(reply))
}

/// `GET /query`: counts the call, waits out the latency, then answers, hangs or resets as the fault says.
async fn query(
    state: &SimState,
    reset: &AtomicBool,
    method: &Method,
    target: &str,
    params: &Params,
    traceparent: Option<&str>,
) -> Result<Response<Full<Bytes>>, Abort> {
    // The lock is taken and released inside `record_call`; nothing is held across the sleeps below.
    let plan = state.record_call(params.get("symbol"), traceparent).await;
    if !plan.latency.is_zero() {
        tokio::time::sleep(plan.latency).await;
    }
    let fault = plan.fault;
    let latency_ms = plan.latency.as_millis();
    match route::answer_query(params, fault) {
        Outcome::Reply(reply) => {
            info!(%method, %target, status = reply.status.as_u16(), %fault, latency_ms, "request");
            Ok(into_response(reply))
        }
        Outcome::Hang => {
            info!(%method, %target, status = "hang", %fault, latency_ms, "request");
            tokio::time::sleep(HANG_FOR).await;
            Err(Abort::HangOver)
        }
        Outcome::Reset => {
            info!(%method, %target, status = "reset", %fault, latency_ms, "request");
            reset.store(true, Ordering::SeqCst);
            Err(Abort::Reset)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::FaultMode;
    use http_body_util::BodyExt;

    async fn call(state: &Arc<SimState>, method: Method, uri: &str) -> (Result<(StatusCode, String), Abort>, bool) {
        let reset = Arc::new(AtomicBool::new(false));
        let request = Request::builder().method(method).uri(uri).body(()).expect("valid test request");
        let result = match handle(Arc::clone(state), Arc::clone(&reset), request).await {
            Ok(response) => {
                let status = response.status();
                let body = response.into_body().collect().await.expect("full body").to_bytes();
                Ok((status, String::from_utf8_lossy(&body).into_owned()))
            }
            Err(abort) => Err(abort),
        };
        (result, reset.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn routes_paths_and_methods() {
        let state = Arc::new(SimState::new(FaultMode::None, 0));
        for (method, uri, want_status) in [
            (Method::GET, "/query?function=TIME_SERIES_DAILY&symbol=IBM&apikey=demo", StatusCode::OK),
            (Method::GET, "/query", StatusCode::OK),
            (Method::POST, "/query", StatusCode::METHOD_NOT_ALLOWED),
            (Method::GET, "/", StatusCode::NOT_FOUND),
            (Method::GET, "/_sim/fault?mode=none", StatusCode::METHOD_NOT_ALLOWED),
            (Method::PUT, "/_sim/fault?mode=none", StatusCode::OK),
            (Method::PUT, "/_sim/fault?mode=zzz", StatusCode::BAD_REQUEST),
            (Method::GET, "/_sim/stats", StatusCode::OK),
            (Method::POST, "/_sim/reset", StatusCode::OK),
        ] {
            let (result, reset) = call(&state, method.clone(), uri).await;
            assert_eq!(result.map(|(status, _)| status), Ok(want_status), "{method} {uri}");
            assert!(!reset);
        }
    }

    #[tokio::test]
    async fn reset_mode_aborts_and_flags_the_connection() {
        let state = Arc::new(SimState::new(FaultMode::Reset, 0));
        let (result, reset) = call(&state, Method::GET, "/query?symbol=MSFT").await;
        assert_eq!(result, Err(Abort::Reset));
        assert!(reset);
        assert_eq!(state.stats().await.calls, 1, "faulted calls still count");
    }

    #[tokio::test]
    async fn hang_mode_does_not_answer() {
        let state = Arc::new(SimState::new(FaultMode::Hang, 0));
        let pending = tokio::time::timeout(Duration::from_millis(100), call(&state, Method::GET, "/query")).await;
        assert!(pending.is_err(), "a hanging request must still be pending");
        assert_eq!(state.stats().await.calls, 1);
    }
}
