//! Optional trace export over OTLP/HTTP (protobuf), off unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set: one server span per request and one client span per
//! upstream call, with the ids the `traceparent` headers carry, sent in batches off the request path.
//!
//! Spans are recorded when they end, from times the host already measures, so a request pays for
//! nothing when export is off and for one queue push per span when it is on.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{BatchSpanProcessor, SpanData, SpanEvents, SpanExporter, SpanLinks, SpanProcessor};
use prometheus::IntCounterVec;

use crate::trace::TraceContext;

/// The service name spans carry when `OTEL_SERVICE_NAME` is not set.
pub const DEFAULT_SERVICE_NAME: &str = "stock-host";

/// Where and how spans are exported (from the standard `OTEL_*` variables).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSettings {
    /// The full URL spans are POSTed to (`…/v1/traces`).
    pub traces_url: String,
    /// `service.name` of the resource.
    pub service_name: String,
}

impl ExportSettings {
    /// Export settings when an endpoint is configured: the traces endpoint as given, else the base
    /// endpoint with `/v1/traces` appended (as the OTLP specification says); `None` keeps export off.
    pub fn from_endpoints(base: Option<&str>, traces: Option<&str>, service_name: Option<&str>) -> Option<Self> {
        let traces_url = match (traces, base) {
            (Some(url), _) => url.to_owned(),
            (None, Some(base)) => format!("{}/v1/traces", base.trim_end_matches('/')),
            (None, None) => return None,
        };
        let service_name = service_name.filter(|name| !name.trim().is_empty()).unwrap_or(DEFAULT_SERVICE_NAME).to_owned();
        Some(Self { traces_url, service_name })
    }
}

/// A checked OTLP endpoint: plain `http://` (the host has no TLS stack for export; send to a
/// collector agent or sidecar, which forwards over TLS).
pub fn parse_endpoint(text: &str) -> Result<String, String> {
    let uri: http::Uri = text.trim().parse().map_err(|_| format!("{text:?} is not a URL like http://otel-collector:4318"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http"), Some(host)) if !host.is_empty() => Ok(text.trim().to_owned()),
        (Some("https"), _) => {
            Err(format!("{text:?}: this host exports over plain http only; point it at a collector agent or sidecar (http://…:4318)"))
        }
        _ => Err(format!("{text:?} is not a URL like http://otel-collector:4318")),
    }
}

/// The OTLP protocol: only `http/protobuf` is built in.
pub fn parse_protocol(text: &str) -> Result<String, String> {
    match text.trim() {
        "http/protobuf" => Ok("http/protobuf".into()),
        other => Err(format!("{other:?} is not supported; use http/protobuf (OTLP over HTTP on port 4318)")),
    }
}

/// One finished span, as the host measured it.
pub struct FinishedSpan<'a> {
    /// The request's trace.
    pub trace: &'a TraceContext,
    /// This span's id (16 hex digits).
    pub span_id: &'a str,
    /// Its parent's id; `None` for a trace root.
    pub parent_id: Option<&'a str>,
    /// Whether the parent came from another process (the caller's `traceparent`).
    pub parent_is_remote: bool,
    /// Server (a request to us) or client (our upstream call).
    pub kind: SpanKind,
    /// Low-cardinality name, e.g. `GET /{symbol}/{days}`.
    pub name: String,
    /// When it began and ended (wall clock).
    pub start: SystemTime,
    /// See `start`.
    pub end: SystemTime,
    /// Semantic-convention attributes; never the API key (no full upstream URL).
    pub attributes: Vec<KeyValue>,
    /// Whether it failed (error status).
    pub failed: bool,
}

/// The exporter: a batch processor with its own thread; shut it down to flush.
pub struct SpanExport {
    processor: BatchSpanProcessor,
    scope: InstrumentationScope,
}

impl std::fmt::Debug for SpanExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpanExport").finish_non_exhaustive()
    }
}

impl SpanExport {
    /// Starts the exporter (headers, timeout and batching follow the standard `OTEL_EXPORTER_OTLP_*`
    /// and `OTEL_BSP_*` variables); nothing is sent until a span ends.
    pub fn start(settings: &ExportSettings, counted_in: IntCounterVec) -> anyhow::Result<Self> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(settings.traces_url.clone())
            .build()
            .with_context(|| format!("cannot start the OTLP exporter for {}", settings.traces_url))?;
        let mut processor = BatchSpanProcessor::builder(CountingExporter { inner: exporter, counted_in }).build();
        let resource = Resource::builder()
            .with_service_name(settings.service_name.clone())
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        processor.set_resource(&resource);
        let scope = InstrumentationScope::builder("stock-host").with_version(env!("CARGO_PKG_VERSION")).build();
        Ok(Self { processor, scope })
    }

    /// Queues `span` for export when its trace is sampled; a full queue drops it (counted by the SDK's
    /// own log), never blocks the request.
    pub fn record(&self, span: FinishedSpan<'_>) {
        if !span.trace.sampled() {
            return;
        }
        let (Ok(trace_id), Ok(span_id)) = (TraceId::from_hex(&span.trace.trace_id), SpanId::from_hex(span.span_id)) else { return };
        let parent_span_id = span.parent_id.and_then(|id| SpanId::from_hex(id).ok()).unwrap_or(SpanId::INVALID);
        let status = if span.failed { Status::error("") } else { Status::Unset };
        self.processor.on_end(SpanData {
            span_context: SpanContext::new(trace_id, span_id, TraceFlags::SAMPLED, false, TraceState::default()),
            parent_span_id,
            parent_span_is_remote: span.parent_is_remote,
            span_kind: span.kind,
            name: Cow::Owned(span.name),
            start_time: span.start,
            end_time: span.end,
            attributes: span.attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status,
            instrumentation_scope: self.scope.clone(),
        });
    }

    /// Sends what is queued and stops the export thread (blocking, bounded by `within`).
    pub fn shutdown(&self, within: Duration) {
        if let Err(error) = self.processor.shutdown_with_timeout(within) {
            tracing::warn!(error = %error, "spans queued at shutdown were not all exported");
        }
    }
}

/// Counts each batch's spans as exported or failed (`stock_host_trace_spans_total`), so a collector
/// that stopped taking spans shows on the dashboard and not only in the log.
#[derive(Debug)]
struct CountingExporter<E> {
    inner: E,
    counted_in: IntCounterVec,
}

impl<E: SpanExporter> SpanExporter for CountingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = u64::try_from(batch.len()).unwrap_or(u64::MAX);
        let result = self.inner.export(batch).await;
        self.counted_in.with_label_values(&[if result.is_ok() { "exported" } else { "failed" }]).inc_by(spans);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_url_follows_the_otlp_rules() {
        let settings = |base, traces| ExportSettings::from_endpoints(base, traces, None).map(|s| s.traces_url);
        assert_eq!(settings(None, None), None, "off by default");
        assert_eq!(settings(Some("http://c:4318"), None).as_deref(), Some("http://c:4318/v1/traces"));
        assert_eq!(settings(Some("http://c:4318/"), None).as_deref(), Some("http://c:4318/v1/traces"));
        assert_eq!(settings(Some("http://c:4318/otlp"), None).as_deref(), Some("http://c:4318/otlp/v1/traces"));
        assert_eq!(settings(Some("http://c:4318"), Some("http://t:9/x")).as_deref(), Some("http://t:9/x"), "the traces variable wins");
    }

    #[test]
    fn the_service_name_defaults_to_the_host() {
        let name = |given| ExportSettings::from_endpoints(Some("http://c:4318"), None, given).map(|s| s.service_name);
        assert_eq!(name(None).as_deref(), Some(DEFAULT_SERVICE_NAME));
        assert_eq!(name(Some(" ")).as_deref(), Some(DEFAULT_SERVICE_NAME));
        assert_eq!(name(Some("prices-eu")).as_deref(), Some("prices-eu"));
    }

    #[test]
    fn endpoints_must_be_plain_http_urls() {
        assert_eq!(parse_endpoint("http://otel-collector:4318").as_deref(), Ok("http://otel-collector:4318"));
        assert_eq!(parse_endpoint(" http://127.0.0.1:4318/ ").as_deref(), Ok("http://127.0.0.1:4318/"));
        assert!(parse_endpoint("https://collector:4318").is_err_and(|e| e.contains("plain http")));
        for bad in ["collector:4318", "not a url", "ftp://x/", "http://"] {
            assert!(parse_endpoint(bad).is_err(), "{bad}");
        }
        assert!(parse_protocol("http/protobuf").is_ok());
        assert!(parse_protocol("grpc").is_err_and(|e| e.contains("http/protobuf")));
    }
}
