//! Optional trace export over OTLP/HTTP (protobuf), off unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set: one server span per request and one client span per
//! upstream call, with the ids the `traceparent` headers carry, sent in batches off the request path.
//!
//! Spans are recorded when they end, from times the host already measures, so a request pays for
//! nothing when export is off and for one queue push per span when it is on.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{BatchSpanProcessor, SpanData, SpanEvents, SpanExporter, SpanLinks, SpanProcessor};
use prometheus::IntCounterVec;

use crate::config::telemetry::ExportSettings;
use crate::telemetry::trace::TraceContext;

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

/// The SDK's default queue (`OTEL_BSP_MAX_QUEUE_SIZE`).
const DEFAULT_MAX_QUEUE_SIZE: u64 = 2048;

/// Values of the `result` label of `stock_host_trace_spans_total`.
mod result {
    /// The collector took them.
    pub const EXPORTED: &str = "exported";
    /// The collector refused them or did not answer.
    pub const FAILED: &str = "failed";
    /// Never queued: the queue was full (a slow or silent collector).
    pub const DROPPED: &str = "dropped";
}

/// The exporter: a batch processor with its own thread; shut it down to flush. Spans are counted in
/// before they reach the SDK's queue, so a full queue drops them here, counted, never silently there.
pub struct SpanExport {
    processor: BatchSpanProcessor,
    scope: InstrumentationScope,
    pending: Arc<AtomicU64>,
    capacity: u64,
    counted_in: IntCounterVec,
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
        let pending = Arc::new(AtomicU64::new(0));
        let capacity = std::env::var("OTEL_BSP_MAX_QUEUE_SIZE").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(DEFAULT_MAX_QUEUE_SIZE);
        for value in [result::EXPORTED, result::FAILED, result::DROPPED] {
            counted_in.with_label_values(&[value]);
        }
        let counting = CountingExporter { inner: exporter, counted_in: counted_in.clone(), pending: pending.clone() };
        let mut processor = BatchSpanProcessor::builder(counting).build();
        let resource = Resource::builder()
            .with_service_name(settings.service_name.clone())
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        processor.set_resource(&resource);
        let scope = InstrumentationScope::builder("stock-host").with_version(env!("CARGO_PKG_VERSION")).build();
        Ok(Self { processor, scope, pending, capacity, counted_in })
    }

    /// Queues `span` for export when its trace is sampled; when the queue is full it is dropped and
    /// counted (`result="dropped"`), never blocking the request.
    pub fn record(&self, span: FinishedSpan<'_>) {
        if !span.trace.sampled() {
            return;
        }
        if self.pending.fetch_add(1, Ordering::Relaxed) >= self.capacity {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            self.counted_in.with_label_values(&[result::DROPPED]).inc();
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
    pending: Arc<AtomicU64>,
}

impl<E: SpanExporter> SpanExporter for CountingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = u64::try_from(batch.len()).unwrap_or(u64::MAX);
        let outcome = self.inner.export(batch).await;
        self.counted_in.with_label_values(&[if outcome.is_ok() { result::EXPORTED } else { result::FAILED }]).inc_by(spans);
        let _ = self.pending.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| Some(n.saturating_sub(spans)));
        outcome
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
