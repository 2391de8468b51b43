//! The traffic port: the host's own routes (`/health`, `/ready`, `/docs`), everything else through
//! the build [`Builds::pick`](crate::builds::Builds::pick) chooses, and one log line, one set of
//! metrics and (with export on) one span per request.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use stock_shared::{cache_status, routes};
use tracing::Instrument;

use super::{COMPONENT_VERSION_HEADER, REQUEST_ID_HEADER, Server, json_response};
use crate::body::{HostBody, full, static_json};
use crate::error::HostError;
use crate::runtime::engine::LoadedComponent;
use crate::telemetry::otel::{FinishedSpan, SpanExport};
use crate::telemetry::trace::{TRACEPARENT, TraceContext};

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

/// Answers one request on the traffic port: the host's own routes, or the build chosen for it.
pub(super) async fn request(app: Arc<Server>, mut request: Request<Incoming>) -> Response<HostBody> {
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
    let (component, canary) = app.builds.pick(request.headers());
    let span = tracing::info_span!("request", req_id = %req_id, route, version = %component.version, trace_id = %trace.trace_id);
    let host_owned = matches!(method, Method::GET | Method::HEAD) && matches!(route, "/health" | "/ready" | "/docs");
    let mut response = async {
        if !target_is_path {
            HostError::NotAPath.into_response(&path, &req_id)
        } else if host_owned && route == "/docs" {
            super::docs::serve(&path).unwrap_or_else(|| HostError::NotFound.into_response(&path, &req_id))
        } else if host_owned && route == "/health" {
            json_response(StatusCode::OK, static_json(r#"{"status":"ok"}"#))
        } else if host_owned {
            readiness(&app, component.clone(), &req_id, &path).await
        } else {
            match app.runtime.call(component.clone(), request).await {
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
    let cache = response.headers().get(cache_status::HEADER).and_then(|v| v.to_str().ok()).unwrap_or("-");
    match cache {
        cache_status::HIT => app.metrics.cache_hits.inc(),
        cache_status::MISS => app.metrics.cache_misses.inc(),
        cache_status::STALE => app.metrics.cache_stale.inc(),
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
    spans: &SpanExport,
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
    spans.record(FinishedSpan {
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
async fn readiness(app: &Arc<Server>, component: Arc<LoadedComponent>, req_id: &str, path: &str) -> Response<HostBody> {
    if app.is_draining() {
        return HostError::NotReady("shutting down".into()).into_response(path, req_id);
    }
    let probe = Request::get("http://localhost/ready").body(Empty::<Bytes>::new().map_err(never_hyper));
    let probe = match probe {
        Ok(probe) => probe,
        Err(error) => return HostError::Internal(error.to_string()).into_response(path, req_id),
    };
    let version = component.version.clone();
    match app.runtime.call(component, probe).await {
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
}
