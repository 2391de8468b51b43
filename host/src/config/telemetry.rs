//! Logging and trace export settings: LOG_LEVEL, LOG_FORMAT and the standard `OTEL_*` variables.

use clap::{Args, ValueEnum};

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

/// A validated LOG_LEVEL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLevel(String);

impl LogLevel {
    /// The tracing filter directives: a bare level applies to this service (host and component lines)
    /// only, so `debug` does not mean cranelift's compiler internals.
    pub fn directives(&self) -> String {
        match self.0.as_str() {
            level @ ("error" | "warn" | "info" | "debug" | "trace") if level != "info" => {
                let others = if matches!(level, "error" | "warn") { level } else { "info" };
                format!("{others},stock_host={level},component={level}")
            }
            other => other.to_owned(),
        }
    }
}

fn parse_log_level(text: &str) -> Result<LogLevel, String> {
    let text = text.trim().to_ascii_lowercase();
    tracing_subscriber::EnvFilter::builder()
        .parse(&text)
        .map(|_| LogLevel(text.clone()))
        .map_err(|e| format!("{e}; use a level (error, warn, info, debug, trace) or directives like info,stock_host=debug"))
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (containers).
    Json,
    /// Human-readable lines (terminals).
    Text,
}

/// Default LOG_LEVEL.
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// Logs and traces.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Logs and traces")]
pub struct TelemetryOptions {
    /// Log filter: a level (`info`, `debug`, ...: this service's own events at that level, everything
    /// else at info) or a full tracing directive list (`info,wasmtime_wasi_http=trace`).
    #[arg(long, env = "LOG_LEVEL", default_value = DEFAULT_LOG_LEVEL, value_parser = parse_log_level)]
    pub log_level: LogLevel,
    /// Log format; defaults to text on a terminal and JSON otherwise.
    #[arg(long, env = "LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// OTLP/HTTP collector base URL (`/v1/traces` is appended); set it to export traces, unset keeps export off.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_parser = parse_endpoint)]
    pub otel_exporter_otlp_endpoint: Option<String>,
    /// Full OTLP/HTTP traces URL; wins over OTEL_EXPORTER_OTLP_ENDPOINT.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", value_parser = parse_endpoint)]
    pub otel_exporter_otlp_traces_endpoint: Option<String>,
    /// OTLP protocol: only http/protobuf is built in.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_PROTOCOL", value_parser = parse_protocol)]
    pub otel_exporter_otlp_protocol: Option<String>,
    /// OTLP protocol for traces; same rule.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", value_parser = parse_protocol)]
    pub otel_exporter_otlp_traces_protocol: Option<String>,
    /// `service.name` on exported spans (default stock-host).
    #[arg(long, env = "OTEL_SERVICE_NAME")]
    pub otel_service_name: Option<String>,
}

impl TelemetryOptions {
    /// Trace export settings; `None` (no OTLP endpoint configured) keeps export off.
    pub fn span_export(&self) -> Option<ExportSettings> {
        ExportSettings::from_endpoints(
            self.otel_exporter_otlp_endpoint.as_deref(),
            self.otel_exporter_otlp_traces_endpoint.as_deref(),
            self.otel_service_name.as_deref(),
        )
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
