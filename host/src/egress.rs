//! Outgoing HTTP from the component: only the configured upstream authority, bounded by the
//! upstream timeout, counted and timed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::metrics::Metrics;

/// What the component may call and how long it may wait.
#[derive(Clone)]
pub struct EgressPolicy {
    /// `host:port` of the upstream, lower-case, port explicit.
    pub allowed_authority: String,
    /// Cap on connect, first byte and between bytes.
    pub timeout: Duration,
    /// Where calls are counted.
    pub metrics: Arc<Metrics>,
}

type SendFuture = Box<dyn Future<Output = Result<(http::Response<WasiBody>, Box<dyn Future<Output = Result<(), HttpError>> + Send>), HttpError>> + Send>;

impl EgressPolicy {
    fn authority_of(request: &http::Request<WasiBody>) -> Option<String> {
        let uri = request.uri();
        let authority = uri.authority()?;
        let port = authority.port_u16().unwrap_or(if uri.scheme() == Some(&http::uri::Scheme::HTTPS) { 443 } else { 80 });
        Some(format!("{}:{port}", authority.host().to_ascii_lowercase()))
    }

    fn capped(&self, options: Option<RequestOptions>) -> RequestOptions {
        let cap = |asked: Option<Duration>| Some(asked.map_or(self.timeout, |d| d.min(self.timeout)));
        let options = options.unwrap_or_default();
        RequestOptions {
            connect_timeout: cap(options.connect_timeout),
            first_byte_timeout: cap(options.first_byte_timeout),
            between_bytes_timeout: cap(options.between_bytes_timeout),
        }
    }
}

impl WasiHttpHooks for EgressPolicy {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        drop(fut);
        let authority = Self::authority_of(&request);
        if authority.as_deref() != Some(self.allowed_authority.as_str()) {
            self.metrics.egress_refused.inc();
            tracing::warn!(authority = authority.as_deref().unwrap_or("<none>"), allowed = %self.allowed_authority, "outgoing request refused");
            return Box::new(std::future::ready(Err(HttpError::HttpRequestDenied)));
        }
        let options = self.capped(options);
        let metrics = self.metrics.clone();
        Box::new(async move {
            use http_body_util::BodyExt;
            let started = Instant::now();
            let result = wasmtime_wasi_http::default_send_request(request, Some(options)).await;
            metrics.external_call_duration.observe(started.elapsed().as_secs_f64());
            let outcome = match &result {
                Ok((response, _)) if response.status().is_success() => "ok",
                Ok(_) => "http_error",
                Err(HttpError::ConnectionTimeout | HttpError::ConnectionReadTimeout | HttpError::ConnectionWriteTimeout) => "timeout",
                Err(_) => "error",
            };
            metrics.external_calls.with_label_values(&[outcome]).inc();
            let (response, io) = result?;
            Ok((response.map(BodyExt::boxed_unsync), Box::new(io) as Box<dyn Future<Output = _> + Send>))
        })
    }
}
