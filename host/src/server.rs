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
use stock_shared::routes;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::Instrument;

use crate::App;
use crate::body::{HostBody, full, static_json};
use crate::error::HostError;
use crate::handler::call_component;
use crate::metrics::Metrics;
use crate::status::{BreakerStatus, gauge_value, transitions};

/// Header naming the running component build.
pub const COMPONENT_VERSION_HEADER: &str = "x-component-version";
/// Header carrying the request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Serves until `shutdown` resolves, then drains. Returns when every connection is closed or
/// the drain timeout passed.
pub async fn serve(app: Arc<App>, traffic: TcpListener, admin: TcpListener, shutdown: impl Future<Output = ()>) {
    let (stop_accepting, accepting) = watch::channel(false);
    let traffic_graceful = GracefulShutdown::new();
    let admin_graceful = GracefulShutdown::new();
    let traffic_loop = accept_loop(traffic, accepting.clone(), &traffic_graceful, {
        let app = app.clone();
        move |request| traffic_request(app.clone(), request)
    });
    let admin_loop = accept_loop(admin, accepting, &admin_graceful, {
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
        Ok(()) => tracing::info!("drained; exiting"),
        Err(_) => tracing::warn!("drain timeout passed with requests still running; exiting"),
    }
}

async fn accept_loop<F, Fut>(listener: TcpListener, mut stop: watch::Receiver<bool>, graceful: &GracefulShutdown, handle: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<HostBody>> + Send + 'static,
{
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => return,
        };
        let (stream, _) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let handle = handle.clone();
        let service = service_fn(move |request| {
            let handle = handle.clone();
            async move { Ok::<_, Infallible>(handle(request).await) }
        });
        let connection = http1::Builder::new().timer(hyper_util::rt::TokioTimer::new()).serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
}

/// Route template for metrics: bounded cardinality, never the raw symbol.
pub fn route_template(path: &str) -> &'static str {
    match routes::reserved(path) {
        Some(routes::HEALTH) => "/health",
        Some(routes::READY) => "/ready",
        Some(routes::CIRCUIT_BREAKER) => "/circuit-breaker",
        Some(routes::OPENAPI) => "/openapi.json",
        Some(_) => "/docs",
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

async fn traffic_request(app: Arc<App>, request: Request<Incoming>) -> Response<HostBody> {
    let started = Instant::now();
    let req_id = app.request_id(request.headers().get(REQUEST_ID_HEADER));
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let route = route_template(&path);
    // The build chosen now is the one that answers, whatever is swapped in meanwhile.
    let component = app.component();
    let span = tracing::info_span!("request", req_id = %req_id, route, version = %component.version);
    let host_owned = matches!(method, Method::GET | Method::HEAD) && matches!(route, "/health" | "/ready");
    let mut response = async {
        if host_owned && route == "/health" {
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
    app.metrics.requests.with_label_values(&[route, &status.to_string()]).inc();
    app.metrics.request_duration.with_label_values(&[route]).observe(elapsed.as_secs_f64());
    tracing::info!(req_id, method = %method, route, status, cache, duration_ms = elapsed.as_secs_f64() * 1000.0, version = %component.version, "request");
    response
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
