//! Outgoing HTTP from the component: only the configured upstream authority, bounded by the
//! upstream timeout, counted and timed.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::config::upstream::authority_of;
use crate::state::redis::RedisLink;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::otel::{FinishedSpan, SpanExport};
use crate::telemetry::trace::{TraceContext, new_span_id};

/// Values of the `outcome` label of upstream calls (and of their spans).
pub mod outcome {
    /// A 2xx answer.
    pub const OK: &str = "ok";
    /// Any other HTTP answer.
    pub const HTTP_ERROR: &str = "http_error";
    /// No answer within UPSTREAM_TIMEOUT (or the guest gave up first).
    pub const TIMEOUT: &str = "timeout";
    /// Connection failures and everything else.
    pub const ERROR: &str = "error";
    /// Every value, so the series exist at zero before the first call.
    pub const ALL: [&str; 4] = [OK, HTTP_ERROR, TIMEOUT, ERROR];
}

/// What the component may call and how long it may wait.
#[derive(Clone)]
pub struct EgressPolicy {
    /// `host:port` of the upstream, lower-case, port explicit.
    pub allowed_authority: String,
    /// Cap on connect, first byte and between bytes.
    pub timeout: Duration,
    /// Where calls are counted.
    pub metrics: Arc<Metrics>,
    /// The trace of the request this instance serves now; each upstream call becomes a child span.
    pub trace: Option<TraceContext>,
    /// Where finished upstream-call spans go, when trace export is on.
    pub spans: Option<Arc<SpanExport>>,
    /// Redis, when the day's upstream quota is counted there (KV_URL): while this replica cannot reach it,
    /// it cannot know what the fleet has left, so it makes no upstream call (see docs/fleet.md, "The quota").
    pub shared_state: Option<Arc<RedisLink>>,
    /// [`RedisLink::shared_epoch`] when the current request began ([`EgressPolicy::begin_request`]).
    pub epoch_at_start: Option<u64>,
}

type SendFuture =
    Box<dyn Future<Output = Result<(http::Response<WasiBody>, Box<dyn Future<Output = Result<(), HttpError>> + Send>), HttpError>> + Send>;

impl EgressPolicy {
    /// Makes every outcome's series visible at zero, so dashboards and alerts see them before the first call.
    pub fn touch_labels(metrics: &Metrics) {
        for value in outcome::ALL {
            metrics.external_calls.with_label_values(&[value]);
        }
    }

    /// Marks the start of a request: its upstream calls are allowed only if Redis stays reachable, without a
    /// return in between, until then (an outage that began and ended mid-request may have counted its quota locally).
    pub fn begin_request(&mut self, trace: Option<TraceContext>) {
        self.trace = trace;
        self.epoch_at_start = self.shared_state.as_ref().and_then(|link| link.shared_epoch());
    }

    /// Whether the current request must stay off shared state, and make no upstream call: Redis holds the day's
    /// count, and it is unreachable or came back since this request began (so the request may have counted locally).
    pub fn off_shared_state(&self) -> bool {
        self.shared_state.as_ref().is_some_and(|link| {
            let now = link.shared_epoch();
            now.is_none() || now != self.epoch_at_start
        })
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

/// Counts one upstream call when it ends, including when the guest gives up first and drops it
/// (its own deadline passed): that case is a timeout.
struct CallRecord {
    metrics: Arc<Metrics>,
    started: Instant,
    outcome: Option<&'static str>,
    status: Option<u16>,
    span: Option<CallSpan>,
}

/// What the client span of one upstream call needs besides the outcome.
struct CallSpan {
    export: Arc<SpanExport>,
    trace: TraceContext,
    span_id: String,
    started: SystemTime,
    method: String,
    address: String,
    scheme: String,
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        self.metrics.external_call_duration.observe(self.started.elapsed().as_secs_f64());
        let outcome = self.outcome.unwrap_or(outcome::TIMEOUT);
        self.metrics.external_calls.with_label_values(&[outcome]).inc();
        if let Some(span) = self.span.take() {
            span.finish(outcome, self.status);
        }
    }
}

impl CallSpan {
    fn finish(self, outcome: &'static str, status: Option<u16>) {
        use opentelemetry::KeyValue;
        // Host and port, never the URL: its query carries the API key.
        let (host, port) = self.address.rsplit_once(':').unwrap_or((self.address.as_str(), ""));
        let mut attributes = vec![
            KeyValue::new("http.request.method", self.method.clone()),
            KeyValue::new("server.address", host.trim_matches(['[', ']']).to_owned()),
            KeyValue::new("server.port", port.parse::<i64>().unwrap_or_default()),
            KeyValue::new("url.scheme", self.scheme),
            KeyValue::new("stock.upstream.outcome", outcome),
        ];
        if let Some(status) = status {
            attributes.push(KeyValue::new("http.response.status_code", i64::from(status)));
        }
        self.export.record(FinishedSpan {
            trace: &self.trace,
            span_id: &self.span_id,
            parent_id: Some(&self.trace.span_id),
            parent_is_remote: false,
            kind: opentelemetry::trace::SpanKind::Client,
            name: self.method,
            start: self.started,
            end: SystemTime::now(),
            attributes,
            failed: outcome != outcome::OK,
        });
    }
}

impl WasiHttpHooks for EgressPolicy {
    fn p2_outgoing_body_buffer_chunks(&mut self) -> usize {
        crate::body::BODY_WRITES_BUFFERED
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        drop(fut);
        let authority = authority_of(request.uri());
        if authority.as_deref() != Some(self.allowed_authority.as_str()) {
            self.metrics.egress_refused.inc();
            tracing::warn!(authority = authority.as_deref().unwrap_or("<none>"), allowed = %self.allowed_authority, "outgoing request refused");
            return Box::new(std::future::ready(Err(HttpError::HttpRequestDenied)));
        }
        if self.off_shared_state() {
            // Any local allowance would multiply by the number of replicas cut off at once.
            self.metrics.upstream_paused.inc();
            tracing::debug!("outgoing request refused: Redis, where the fleet counts the day's quota, is unreachable");
            return Box::new(std::future::ready(Err(HttpError::HttpRequestDenied)));
        }
        let mut request = request;
        let mut span = None;
        if let Some(trace) = &self.trace {
            let span_id = new_span_id();
            if let Ok(value) = http::HeaderValue::from_str(&trace.header_for(&span_id)) {
                request.headers_mut().insert(crate::telemetry::trace::TRACEPARENT, value);
            }
            span = self.spans.as_ref().filter(|_| trace.sampled()).map(|export| CallSpan {
                export: export.clone(),
                trace: trace.clone(),
                span_id,
                started: SystemTime::now(),
                method: request.method().to_string(),
                // `host:port` as the allowlist parsed it (default port filled in): one parser for both.
                address: self.allowed_authority.clone(),
                scheme: request.uri().scheme_str().unwrap_or("http").to_owned(),
            });
        }
        let options = self.capped(options);
        let metrics = self.metrics.clone();
        Box::new(async move {
            use http_body_util::BodyExt;
            let mut record = CallRecord { metrics, started: Instant::now(), outcome: None, status: None, span };
            let result = wasmtime_wasi_http::default_send_request(request, Some(options)).await;
            record.status = result.as_ref().ok().map(|(response, _)| response.status().as_u16());
            record.outcome = Some(match &result {
                Ok((response, _)) if response.status().is_success() => outcome::OK,
                Ok(_) => outcome::HTTP_ERROR,
                Err(HttpError::ConnectionTimeout | HttpError::ConnectionReadTimeout | HttpError::ConnectionWriteTimeout) => {
                    outcome::TIMEOUT
                }
                Err(_) => outcome::ERROR,
            });
            drop(record);
            let (response, io) = result?;
            Ok((response.map(BodyExt::boxed_unsync), Box::new(io) as Box<dyn Future<Output = _> + Send>))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::upstream::authority_of_url;
    use http_body_util::{BodyExt, Empty};

    fn request(uri: &str) -> http::Request<WasiBody> {
        let body = Empty::<bytes::Bytes>::new().map_err(|never| match never {}).boxed_unsync();
        http::Request::get(uri).body(body).expect("valid request")
    }

    #[test]
    fn only_the_configured_authority_is_allowed() {
        for (uri, want) in [
            ("https://www.alphavantage.co/query?x=1", Some("www.alphavantage.co:443")),
            ("https://WWW.AlphaVantage.co:443/query", Some("www.alphavantage.co:443")),
            ("http://www.alphavantage.co/query", Some("www.alphavantage.co:80")),
            ("http://127.0.0.1:8081/query", Some("127.0.0.1:8081")),
            ("http://[::1]:9000/q", Some("[::1]:9000")),
            ("http://[::1]/q", Some("[::1]:80")),
            ("/relative", None),
        ] {
            assert_eq!(authority_of(request(uri).uri()).as_deref(), want, "{uri}");
            assert_eq!(authority_of_url(uri).as_deref(), want, "configured and requested URLs parse alike: {uri}");
        }
        for url in ["ftp://x/", "http:///x", "http://u@h/", "www.alphavantage.co/query", "not a url"] {
            assert_eq!(authority_of_url(url), None, "{url}");
        }
    }

    #[test]
    fn guest_timeouts_are_capped_by_the_host() {
        let policy = EgressPolicy {
            allowed_authority: "h:80".into(),
            timeout: Duration::from_secs(10),
            metrics: Arc::new(Metrics::new().expect("metrics")),
            trace: None,
            spans: None,
            shared_state: None,
            epoch_at_start: None,
        };
        let capped = policy.capped(Some(RequestOptions {
            connect_timeout: Some(Duration::from_secs(60)),
            first_byte_timeout: Some(Duration::from_secs(2)),
            between_bytes_timeout: None,
        }));
        assert_eq!(capped.connect_timeout, Some(Duration::from_secs(10)));
        assert_eq!(capped.first_byte_timeout, Some(Duration::from_secs(2)));
        assert_eq!(capped.between_bytes_timeout, Some(Duration::from_secs(10)));
    }

    #[test]
    fn refused_requests_are_counted_and_never_sent() {
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let mut policy = EgressPolicy {
            allowed_authority: "www.alphavantage.co:443".into(),
            timeout: Duration::from_secs(1),
            metrics: metrics.clone(),
            trace: None,
            spans: None,
            shared_state: None,
            epoch_at_start: None,
        };
        let future = policy.send_request(request("https://evil.example/steal"), None, Box::new(std::future::ready(Ok(()))));
        let result = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(Box::into_pin(future));
        assert!(matches!(result, Err(HttpError::HttpRequestDenied)));
        assert_eq!(metrics.egress_refused.get(), 1);
        assert_eq!(metrics.external_calls.with_label_values(&["ok"]).get(), 0);
    }

    #[test]
    fn no_upstream_call_while_redis_holding_the_quota_count_is_unreachable() {
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let settings = crate::state::redis::RedisSettings {
            url: "redis://127.0.0.1:1".into(),
            password: None,
            password_file: None,
            prefix: String::new(),
            timeout: Duration::from_millis(50),
            cache_expiry: Duration::from_secs(60),
            state_expiry: Duration::from_secs(60),
            memo_expiry: Duration::from_secs(60),
        };
        // Never connected: the replica is on its local store.
        let link = RedisLink::new(&settings, metrics.clone()).expect("link");
        let mut policy = EgressPolicy {
            allowed_authority: "127.0.0.1:1".into(),
            timeout: Duration::from_secs(1),
            metrics: metrics.clone(),
            trace: None,
            spans: None,
            shared_state: Some(link),
            epoch_at_start: None,
        };
        policy.begin_request(None);
        let future = policy.send_request(request("http://127.0.0.1:1/query"), None, Box::new(std::future::ready(Ok(()))));
        let result = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(Box::into_pin(future));
        assert!(matches!(result, Err(HttpError::HttpRequestDenied)));
        assert_eq!((metrics.upstream_paused.get(), metrics.egress_refused.get()), (1, 0));
        assert_eq!(metrics.external_calls.with_label_values(&["error"]).get(), 0, "nothing was sent");
    }
}
