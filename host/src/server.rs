//! The two listeners (traffic and admin), host-owned routes, per-request logging and metrics,
//! and the SIGTERM sequence: not ready at once, keep answering for SHUTDOWN_DELAY, drain, exit.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use stock_shared::problem::{PROBLEM_JSON, ProblemDoc};
use stock_shared::routes;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tracing::Instrument;

use crate::App;
use crate::body::{HostBody, full, static_json};
use crate::error::HostError;
use crate::handler::call_component;
use crate::metrics::Metrics;
use crate::status::{BreakerStatus, gauge_value, transitions};
use crate::trace::{TRACEPARENT, TraceContext};

/// Header naming the running component build.
pub const COMPONENT_VERSION_HEADER: &str = "x-component-version";
/// Header carrying the request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Connections the admin port keeps open at once (scrapers and operators, never traffic).
const MAX_ADMIN_CONNECTIONS: usize = 64;
/// How long a shed connection gets to read its 503 (and finish sending) before it is closed anyway.
const SHED_WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// At most one "accept failed" line per this interval; the rest are counted into it.
const ACCEPT_ERROR_LOG_EVERY: Duration = Duration::from_secs(1);

/// Requests still running when the drain timeout passed: the process should exit non-zero.
#[derive(Debug, thiserror::Error)]
#[error("the drain timeout ({0:?}) passed with requests still running; they were cut off")]
pub struct DrainTimedOut(pub Duration);

/// Serves until `shutdown` resolves, then drains. Returns when every connection is closed, or an
/// error when the drain timeout passed first.
pub async fn serve(
    app: Arc<App>,
    traffic: TcpListener,
    admin: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DrainTimedOut> {
    let (stop_accepting, accepting) = watch::channel(false);
    let traffic_graceful = GracefulShutdown::new();
    let admin_graceful = GracefulShutdown::new();
    let traffic_port = Port { limit: Arc::new(Semaphore::new(app.max_connections)), metrics: Some(app.metrics.clone()) };
    let admin_port = Port { limit: Arc::new(Semaphore::new(MAX_ADMIN_CONNECTIONS)), metrics: None };
    let traffic_loop = accept_loop(traffic, traffic_port, accepting.clone(), &traffic_graceful, {
        let app = app.clone();
        move |request| traffic_request(app.clone(), request)
    });
    let admin_loop = accept_loop(admin, admin_port, accepting, &admin_graceful, {
        let app = app.clone();
        move |request| admin_request(app.clone(), request)
    });
    let sequence = async {
        shutdown.await;
        app.set_draining();
        tracing::info!(delay_ms = app.shutdown_delay.as_millis() as u64, "shutdown requested: /ready now answers 503");
        tokio::time::sleep(app.shutdown_delay).await;
        let _ = stop_accepting.send(true);
    };
    tokio::join!(traffic_loop, admin_loop, sequence);
    tracing::info!(timeout_ms = app.drain_timeout.as_millis() as u64, "draining requests in flight");
    let drained = tokio::time::timeout(app.drain_timeout, async {
        tokio::join!(traffic_graceful.shutdown(), admin_graceful.shutdown());
    })
    .await;
    match drained {
        Ok(()) => {
            tracing::info!("drained; exiting");
            Ok(())
        }
        Err(_) => {
            tracing::error!(in_flight = app.metrics.in_flight.get(), "drain timeout passed with requests still running; exiting");
            Err(DrainTimedOut(app.drain_timeout))
        }
    }
}

/// What one listener allows: how many connections at once, and where to count them.
struct Port {
    limit: Arc<Semaphore>,
    metrics: Option<Arc<Metrics>>,
}

async fn accept_loop<F, Fut>(listener: TcpListener, port: Port, mut stop: watch::Receiver<bool>, graceful: &GracefulShutdown, handle: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<HostBody>> + Send + 'static,
{
    let mut accept_errors = RateLimitedLog::new(ACCEPT_ERROR_LOG_EVERY);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Typically EMFILE: out of descriptors. Back off a little so the loop does not spin.
                accept_errors.record(|suppressed| tracing::warn!(%error, suppressed, "accept failed"));
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(open) = port.limit.clone().try_acquire_owned() else {
            if let Some(metrics) = &port.metrics {
                metrics.connections_shed.inc();
            }
            tokio::spawn(shed(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let handle = handle.clone();
        let service = service_fn(move |request| {
            let handle = handle.clone();
            async move { Ok::<_, Infallible>(handle(request).await) }
        });
        let connection = http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .max_headers(MAX_HEADERS)
            .max_buf_size(MAX_HEADER_BYTES)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        let gauge = port.metrics.clone();
        tokio::spawn(async move {
            let _open = open;
            let _counted = gauge.map(OpenConnection::start);
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
}

/// How long a client may take to send its request head before the connection is closed (slowloris).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Most request headers read; more is answered 431.
pub const MAX_HEADERS: usize = 100;
/// Largest request head buffered, in bytes; larger is answered 431.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Answers a connection over the cap with a 503 and closes it, never waiting long on the client.
async fn shed(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let body = ProblemDoc {
        status: 503,
        slug: "overloaded",
        title: "Overloaded",
        detail: "too many open connections; retry shortly",
        instance: "/",
    }
    .to_json();
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: {PROBLEM_JSON}\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let _ = tokio::time::timeout(SHED_WRITE_TIMEOUT, async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.shutdown().await?;
        // Lingering close: read what the client is still sending, so closing does not reset the
        // connection before it has read the answer.
        let mut sink = [0u8; 4096];
        while tokio::io::AsyncReadExt::read(&mut stream, &mut sink).await? > 0 {}
        Ok::<(), std::io::Error>(())
    })
    .await;
}

/// Counts an open traffic connection for as long as it lives.
struct OpenConnection(Arc<Metrics>);

impl OpenConnection {
    fn start(metrics: Arc<Metrics>) -> Self {
        metrics.open_connections.inc();
        Self(metrics)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open_connections.dec();
    }
}

/// Logs an event at most once per interval, saying how many were suppressed in between.
struct RateLimitedLog {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedLog {
    fn new(every: Duration) -> Self {
        Self { every, last: None, suppressed: 0 }
    }

    fn record(&mut self, log: impl FnOnce(u64)) {
        let now = Instant::now();
        if self.last.is_some_and(|last| now.duration_since(last) < self.every) {
            self.suppressed += 1;
            return;
        }
        log(self.suppressed);
        self.last = Some(now);
        self.suppressed = 0;
    }
}

/// Route template for metrics: bounded cardinality, never the raw symbol.
pub fn route_template(path: &str) -> &'static str {
    match routes::reserved(path) {
        Some(routes::HEALTH) => "/health",
        Some(routes::READY) => "/ready",
        Some(routes::CIRCUIT_BREAKER) => "/circuit-breaker",
        Some(routes::OPENAPI) => "/openapi.json",
        Some(routes::DOCS) => "/docs",
        Some(_) => "reserved",
        None => match path.trim_matches('/') {
            "" => "/",
            trimmed => match trimmed.split('/').count() {
                1 => "/{symbol}",
                2 => "/{symbol}/{days}",
                _ => "other",
            },
        },
    }
}

async fn traffic_request(app: Arc<App>, mut request: Request<Incoming>) -> Response<HostBody> {
    let started = Instant::now();
    // HTTP/1.0 clients may send no Host header; wasi:http needs an authority, and the answer does not
    // depend on it, so such requests are answered like any other.
    if request.uri().authority().is_none() && !request.headers().contains_key(header::HOST) {
        request.headers_mut().insert(header::HOST, HeaderValue::from_static("localhost"));
    }
    let target_is_path = request.uri().path().starts_with('/');
    let trace = TraceContext::from_header(request.headers().get(TRACEPARENT)).unwrap_or_else(TraceContext::root);
    request.extensions_mut().insert(trace.clone());
    let req_id = app.request_id(request.headers().get(REQUEST_ID_HEADER));
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let route = route_template(&path);
    // The build chosen now is the one that answers, whatever is swapped in meanwhile.
    let (component, canary) = app.pick(request.headers());
    let span = tracing::info_span!("request", req_id = %req_id, route, version = %component.version, trace_id = %trace.trace_id);
    let host_owned = matches!(method, Method::GET | Method::HEAD) && matches!(route, "/health" | "/ready" | "/docs");
    let mut response = async {
        if !target_is_path {
            HostError::NotAPath.into_response(&path, &req_id)
        } else if host_owned && route == "/docs" {
            crate::docs::serve(&path).unwrap_or_else(|| HostError::NotFound.into_response(&path, &req_id))
        } else if host_owned && route == "/health" {
            json_response(StatusCode::OK, static_json(r#"{"status":"ok"}"#))
        } else if host_owned {
            readiness(&app, component.clone(), &req_id, &path).await
        } else {
            match call_component(&app, component.clone(), request).await {
                Ok(response) => response,
                Err(error) => error.into_response(&path, &req_id),
            }
        }
    }
    .instrument(span.clone())
    .await;
    if method == Method::HEAD && host_owned {
        *response.body_mut() = full(Bytes::new());
    }
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&component.version) {
        headers.insert(COMPONENT_VERSION_HEADER, value);
    }
    if let Ok(value) = HeaderValue::from_str(&req_id) {
        headers.insert(REQUEST_ID_HEADER, value);
    }
    let status = response.status().as_u16();
    let cache = response.headers().get("x-cache").and_then(|v| v.to_str().ok()).unwrap_or("-");
    match cache {
        "HIT" => app.metrics.cache_hits.inc(),
        "MISS" => app.metrics.cache_misses.inc(),
        "STALE" => app.metrics.cache_stale.inc(),
        _ => {}
    }
    let elapsed = started.elapsed();
    // Only answers a build gave count toward judging it: /health and /docs are the host's own.
    let answered_by_build = target_is_path && !(host_owned && matches!(route, "/health" | "/docs"));
    if let Some((canary, to_canary)) = canary.as_ref().filter(|_| answered_by_build) {
        let stats = if *to_canary { &canary.candidate } else { &canary.stable };
        stats.record(status, elapsed);
    }
    app.metrics.requests.with_label_values(&[route, &status.to_string(), &component.version]).inc();
    app.metrics.request_duration.with_label_values(&[route, &component.version]).observe(elapsed.as_secs_f64());
    // Probes every few seconds would drown the traces people look for.
    if let Some(spans) = app.spans.as_ref().filter(|_| !matches!(route, "/health" | "/ready")) {
        record_server_span(spans, &trace, &method, route, &path, status, cache, &component.version, &req_id, elapsed);
    }
    tracing::info!(
        req_id,
        method = %method,
        route,
        status,
        cache,
        duration_ms = (elapsed.as_secs_f64() * 1e6).round() / 1e3,
        version = %component.version,
        trace_id = %trace.trace_id,
        "request"
    );
    response
}

/// The request's server span, child of the caller's span when it sent a `traceparent`.
#[allow(clippy::too_many_arguments)]
fn record_server_span(
    spans: &crate::otel::SpanExport,
    trace: &TraceContext,
    method: &Method,
    route: &str,
    path: &str,
    status: u16,
    cache: &str,
    version: &str,
    req_id: &str,
    elapsed: Duration,
) {
    use opentelemetry::KeyValue;
    let end = std::time::SystemTime::now();
    let mut attributes = vec![
        KeyValue::new("http.request.method", method.to_string()),
        KeyValue::new("http.route", route.to_owned()),
        KeyValue::new("url.path", path.to_owned()),
        KeyValue::new("http.response.status_code", i64::from(status)),
        KeyValue::new("stock.component_version", version.to_owned()),
        KeyValue::new("stock.request_id", req_id.to_owned()),
    ];
    if cache != "-" {
        attributes.push(KeyValue::new("stock.cache", cache.to_owned()));
    }
    spans.record(crate::otel::FinishedSpan {
        trace,
        span_id: &trace.span_id,
        parent_id: trace.parent_id.as_deref(),
        parent_is_remote: trace.parent_id.is_some(),
        kind: opentelemetry::trace::SpanKind::Server,
        name: format!("{method} {route}"),
        start: end.checked_sub(elapsed).unwrap_or(end),
        end,
        attributes,
        failed: status >= 500,
    });
}

/// `/ready`: not draining, and `component` answers its own `/ready` (which never calls upstream).
async fn readiness(app: &Arc<App>, component: Arc<crate::engine::LoadedComponent>, req_id: &str, path: &str) -> Response<HostBody> {
    if app.is_draining() {
        return HostError::NotReady("shutting down".into()).into_response(path, req_id);
    }
    let probe = Request::get("http://localhost/ready").body(Empty::<Bytes>::new().map_err(never_hyper));
    let probe = match probe {
        Ok(probe) => probe,
        Err(error) => return HostError::Internal(error.to_string()).into_response(path, req_id),
    };
    let version = component.version.clone();
    match call_component(app, component, probe).await {
        Ok(response) if response.status() == StatusCode::OK => {
            let body = serde_json::json!({"status": "ready", "component_version": version}).to_string();
            json_response(StatusCode::OK, full(body))
        }
        Ok(response) => HostError::NotReady(format!("component answered /ready with {}", response.status())).into_response(path, req_id),
        Err(error) => HostError::NotReady(format!("component does not answer: {error}")).into_response(path, req_id),
    }
}

fn never_hyper(never: Infallible) -> hyper::Error {
    match never {}
}

async fn admin_request(app: Arc<App>, request: Request<Incoming>) -> Response<HostBody> {
    let req_id = app.request_id(request.headers().get(REQUEST_ID_HEADER));
    let path = request.uri().path().to_owned();
    if path.starts_with("/admin/") {
        return match crate::admin::route(&app, request).await {
            Some(Ok(response)) => response,
            Some(Err(error)) => error.into_response(&path, &req_id),
            None => HostError::NotFound.into_response(&path, &req_id),
        };
    }
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => {
            app.refresh_build_metrics().await;
            let mut response = Response::new(full(app.metrics.render()));
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
            response
        }
        (_, path) => HostError::NotFound.into_response(path, &req_id),
    }
}

fn json_response(status: StatusCode, body: HostBody) -> Response<HostBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Sets the gauges and counters that come from the running build's status report.
pub fn apply_build_metrics(metrics: &Metrics, report: &crate::handler::BuildReport) {
    apply_breaker_metrics(metrics, &report.breaker);
    metrics.quota_used.set(i64::try_from(report.quota.used).unwrap_or(i64::MAX));
    metrics.quota_limit.set(i64::try_from(report.quota.limit).unwrap_or(i64::MAX));
}

/// Sets the breaker gauge and transition counters from what the running build reports.
pub fn apply_breaker_metrics(metrics: &Metrics, breaker: &BreakerStatus) {
    metrics.breaker_state.set(gauge_value(breaker.state));
    for (name, total) in transitions(breaker) {
        let counter = metrics.breaker_transitions.with_label_values(&[name]);
        let current = counter.get();
        if total > current {
            counter.inc_by(total - current);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_templates_keep_cardinality_bounded() {
        for (path, want) in [
            ("/", "/"),
            ("", "/"),
            ("/health", "/health"),
            ("/ready", "/ready"),
            ("/MSFT", "/{symbol}"),
            ("/MSFT/", "/{symbol}"),
            ("/MSFT/7", "/{symbol}/{days}"),
            ("/a/b/c", "other"),
            ("/openapi.json", "/openapi.json"),
            ("/docs/", "/docs"),
            ("/circuit-breaker", "/circuit-breaker"),
        ] {
            assert_eq!(route_template(path), want, "{path}");
        }
    }

    #[test]
    fn breaker_gauge_follows_the_reported_state_and_counters_never_go_back() {
        use crate::status::BreakerState;
        let metrics = Metrics::new().expect("metrics");
        let report = |state, to_open| BreakerStatus {
            state,
            consecutive_failures: 0,
            threshold: 5,
            open_seconds: 30,
            retry_after_seconds: None,
            transitions_to_closed: 0,
            transitions_to_open: to_open,
            transitions_to_half_open: 0,
        };
        for (state, want) in [(BreakerState::Closed, 0), (BreakerState::Open, 1), (BreakerState::HalfOpen, 2)] {
            apply_breaker_metrics(&metrics, &report(state, 0));
            assert_eq!(metrics.breaker_state.get(), want);
        }
        apply_breaker_metrics(&metrics, &report(BreakerState::Open, 3));
        apply_breaker_metrics(&metrics, &report(BreakerState::Open, 2));
        assert_eq!(metrics.breaker_transitions.with_label_values(&["open"]).get(), 3);
    }
}
