//! What the host tells operators: Prometheus metrics, trace context, OTLP span export, and the
//! redaction every log line and every answer built from a build's words passes through.

pub mod metrics;
pub mod otel;
pub mod redact;
pub mod trace;
