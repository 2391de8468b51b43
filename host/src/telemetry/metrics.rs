//! Every metric name and label in one place, the registry, and the `/metrics` text.
//! `stock_api_*` keep the seed service's names so its dashboards keep working.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Requests answered, by route template and status.
pub const REQUESTS_TOTAL: &str = "stock_api_requests_total";
/// Time to the response head, by route template.
pub const REQUEST_DURATION_SECONDS: &str = "stock_api_request_duration_seconds";
/// Price answers served from a fresh cache entry.
pub const CACHE_HITS_TOTAL: &str = "stock_api_cache_hits_total";
/// Price answers that needed the upstream.
pub const CACHE_MISSES_TOTAL: &str = "stock_api_cache_misses_total";
/// Price answers served stale because the upstream failed.
pub const CACHE_STALE_TOTAL: &str = "stock_api_cache_stale_total";
/// Breaker state: 0 closed, 1 open, 2 half-open (shared by all instances).
pub const CIRCUIT_BREAKER_STATE: &str = "stock_api_circuit_breaker_state";
/// Breaker transitions recorded by the component, by target state.
pub const CIRCUIT_BREAKER_TRANSITIONS_TOTAL: &str = "stock_api_circuit_breaker_transitions_total";
/// Upstream calls, by outcome.
pub const EXTERNAL_CALLS_TOTAL: &str = "stock_api_external_calls_total";
/// Upstream call time to the response head.
pub const EXTERNAL_CALL_DURATION_SECONDS: &str = "stock_api_external_call_duration_seconds";
/// This host binary (value 1): its version, git commit and wasmtime version.
pub const BUILD_INFO: &str = "stock_host_build_info";
/// The running component (value 1), by version.
pub const COMPONENT_INFO: &str = "stock_host_component_info";
/// Time to instantiate the component for one request.
pub const INSTANTIATION_SECONDS: &str = "stock_host_instantiation_seconds";
/// Component traps (including deadline interruptions).
pub const TRAPS_TOTAL: &str = "stock_host_traps_total";
/// Requests over the whole-request deadline.
pub const REQUEST_TIMEOUTS_TOTAL: &str = "stock_host_request_timeouts_total";
/// Component requests currently running.
pub const IN_FLIGHT_REQUESTS: &str = "stock_host_in_flight_requests";
/// 1 while Redis (KV_URL) does not answer and the host serves from its local store.
pub const KV_FALLBACK: &str = "stock_host_kv_fallback";
/// Keyvalue operations, by backend, operation and result.
pub const KV_OPERATIONS_TOTAL: &str = "stock_host_kv_operations_total";
/// Outgoing requests refused because their authority is not the configured upstream.
pub const EGRESS_REFUSED_TOTAL: &str = "stock_host_egress_refused_total";
/// Upstream calls not made because Redis, where the fleet counts the day's quota, was unreachable.
pub const UPSTREAM_PAUSED_TOTAL: &str = "stock_host_upstream_paused_total";

/// Requests served by a reused instance (no instantiation).
pub const INSTANCE_REUSES_TOTAL: &str = "stock_host_instance_reuses_total";
/// Component swap attempts, by result (the words of `builds::SwapResult`).
pub const SWAPS_TOTAL: &str = "stock_host_swaps_total";
/// From a change being noticed (file event or upload) to the new build serving.
pub const SWAP_SECONDS: &str = "stock_host_swap_seconds";
/// Upstream calls spent today (UTC), as the running build counts them.
pub const UPSTREAM_QUOTA_USED: &str = "stock_api_upstream_quota_used";
/// Upstream calls allowed per UTC day (0 = unlimited).
pub const UPSTREAM_QUOTA_LIMIT: &str = "stock_api_upstream_quota_limit";
/// Open connections on the traffic port.
pub const OPEN_CONNECTIONS: &str = "stock_host_open_connections";
/// Connections answered 503 and closed because MAX_CONNECTIONS were open.
pub const CONNECTIONS_SHED_TOTAL: &str = "stock_host_connections_shed_total";

/// Registry polls (HEAD of the COMPONENT tag), by result: unchanged, changed, error.
pub const REGISTRY_POLLS_TOTAL: &str = "stock_host_registry_polls_total";
/// Registry pulls of a new digest, by result: pulled, cached (nothing downloaded), rejected, error.
pub const REGISTRY_PULLS_TOTAL: &str = "stock_host_registry_pulls_total";
/// 1 when the registry answered the host's last request, 0 when it did not.
pub const REGISTRY_UP: &str = "stock_host_registry_up";
/// Unix time of the last registry poll.
pub const REGISTRY_LAST_POLL: &str = "stock_host_registry_last_poll_timestamp_seconds";
/// 1 while the host serves a build from COMPONENT_CACHE_DIR because the registry did not answer at start.
pub const COMPONENT_FROM_CACHE: &str = "stock_host_component_from_cache";
/// Compiled-code cache lookups, by result: hit (no Cranelift), miss (compiled and stored), error.
pub const COMPILED_CACHE_TOTAL: &str = "stock_host_compiled_cache_total";

/// Spans handed to the OTLP collector, by result (exported, failed, dropped); only with trace export on.
pub const TRACE_SPANS_TOTAL: &str = "stock_host_trace_spans_total";

/// Label: route template.
pub const LABEL_ROUTE: &str = "route";
/// Label: HTTP status code.
pub const LABEL_STATUS: &str = "status";
/// Label: outcome of an upstream call.
pub const LABEL_OUTCOME: &str = "outcome";
/// Label: keyvalue backend that served (memory or redis).
pub const LABEL_BACKEND: &str = "backend";
/// Label: keyvalue operation.
pub const LABEL_OP: &str = "op";
/// Label: ok or error.
pub const LABEL_RESULT: &str = "result";
/// Label: breaker state.
pub const LABEL_STATE: &str = "state";
/// Values of [`LABEL_STATE`]: the seed's breaker states.
pub const BREAKER_STATES: [&str; 3] = ["closed", "open", "half-open"];
/// Label: component version (sha256 prefix).
pub const LABEL_VERSION: &str = "version";
/// Label: the whole sha256 of a component build's bytes.
pub const LABEL_DIGEST: &str = "digest";

/// The host's metrics.
pub struct Metrics {
    registry: Registry,
    /// See [`REQUESTS_TOTAL`].
    pub requests: IntCounterVec,
    /// See [`REQUEST_DURATION_SECONDS`].
    pub request_duration: HistogramVec,
    /// See [`CACHE_HITS_TOTAL`].
    pub cache_hits: IntCounter,
    /// See [`CACHE_MISSES_TOTAL`].
    pub cache_misses: IntCounter,
    /// See [`CACHE_STALE_TOTAL`].
    pub cache_stale: IntCounter,
    /// See [`CIRCUIT_BREAKER_STATE`].
    pub breaker_state: IntGauge,
    /// See [`CIRCUIT_BREAKER_TRANSITIONS_TOTAL`].
    pub breaker_transitions: IntCounterVec,
    /// See [`EXTERNAL_CALLS_TOTAL`].
    pub external_calls: IntCounterVec,
    /// See [`EXTERNAL_CALL_DURATION_SECONDS`].
    pub external_call_duration: Histogram,
    /// See [`COMPONENT_INFO`].
    pub component_info: IntGaugeVec,
    /// See [`INSTANTIATION_SECONDS`].
    pub instantiation: Histogram,
    /// See [`TRAPS_TOTAL`].
    pub traps: IntCounter,
    /// See [`REQUEST_TIMEOUTS_TOTAL`].
    pub request_timeouts: IntCounter,
    /// See [`IN_FLIGHT_REQUESTS`].
    pub in_flight: IntGauge,
    /// See [`KV_OPERATIONS_TOTAL`].
    pub kv_operations: IntCounterVec,
    /// See [`KV_FALLBACK`].
    pub kv_fallback: IntGauge,
    /// See [`EGRESS_REFUSED_TOTAL`].
    pub egress_refused: IntCounter,
    /// See [`UPSTREAM_PAUSED_TOTAL`].
    pub upstream_paused: IntCounter,
    /// See [`INSTANCE_REUSES_TOTAL`].
    pub instance_reuses: IntCounter,
    /// See [`SWAPS_TOTAL`].
    pub swaps: IntCounterVec,
    /// See [`SWAP_SECONDS`].
    pub swap_seconds: Histogram,
    /// See [`UPSTREAM_QUOTA_USED`].
    pub quota_used: IntGauge,
    /// See [`UPSTREAM_QUOTA_LIMIT`].
    pub quota_limit: IntGauge,
    /// See [`OPEN_CONNECTIONS`].
    pub open_connections: IntGauge,
    /// See [`CONNECTIONS_SHED_TOTAL`].
    pub connections_shed: IntCounter,
    /// See [`TRACE_SPANS_TOTAL`].
    pub trace_spans: IntCounterVec,
    /// See [`REGISTRY_POLLS_TOTAL`].
    pub registry_polls: IntCounterVec,
    /// See [`REGISTRY_PULLS_TOTAL`].
    pub registry_pulls: IntCounterVec,
    /// See [`REGISTRY_UP`].
    pub registry_up: IntGauge,
    /// See [`REGISTRY_LAST_POLL`].
    pub registry_last_poll: IntGauge,
    /// See [`COMPONENT_FROM_CACHE`].
    pub component_from_cache: IntGauge,
    /// See [`COMPILED_CACHE_TOTAL`].
    pub compiled_cache: IntCounterVec,
}

/// The words of `stock_host_registry_polls_total{result}`.
pub const REGISTRY_POLL_RESULTS: [&str; 3] = ["unchanged", "changed", "error"];
/// The words of `stock_host_registry_pulls_total{result}`.
pub const REGISTRY_PULL_RESULTS: [&str; 4] = ["pulled", "cached", "rejected", "error"];
/// The words of `stock_host_compiled_cache_total{result}`.
pub const COMPILED_CACHE_RESULTS: [&str; 3] = ["hit", "miss", "error"];

/// Removes (with `remove`) each series of `vec` (labels `names`) whose version is not in `live`.
fn forget_stale(
    vec: &impl prometheus::core::Collector,
    names: &[&str],
    live: &[&str],
    remove: impl Fn(&[String]) -> prometheus::Result<()>,
) {
    for family in vec.collect() {
        for metric in family.get_metric() {
            let labels = metric.get_label();
            let Some(version) = labels.iter().find(|l| l.name() == LABEL_VERSION).map(|l| l.value()) else { continue };
            if live.contains(&version) {
                continue;
            }
            let values: Vec<String> = names
                .iter()
                .map(|name| labels.iter().find(|l| l.name() == *name).map(|l| l.value().to_owned()).unwrap_or_default())
                .collect();
            let _ = remove(&values);
        }
    }
}

/// Histogram buckets for request and upstream latencies (seconds).
const LATENCY_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Histogram buckets for swap latency (seconds).
const SWAP_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Histogram buckets for instantiation (seconds): microseconds matter here.
const INSTANTIATION_BUCKETS: &[f64] = &[0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01, 0.1];

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| -> prometheus::Result<IntCounter> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let counter_vec = |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<IntCounterVec> {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let gauge = |name: &str, help: &str| -> prometheus::Result<IntGauge> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let histogram = |name: &str, help: &str, buckets: &[f64]| -> prometheus::Result<Histogram> {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))?;
            registry.register(Box::new(h.clone()))?;
            Ok(h)
        };
        let request_duration = HistogramVec::new(
            HistogramOpts::new(REQUEST_DURATION_SECONDS, "Time to the response head.").buckets(LATENCY_BUCKETS.to_vec()),
            &[LABEL_ROUTE, LABEL_VERSION],
        )?;
        registry.register(Box::new(request_duration.clone()))?;
        let build_info = IntGaugeVec::new(
            Opts::new(BUILD_INFO, "This host binary (value 1): version, git commit, wasmtime."),
            &["version", "commit", "wasmtime"],
        )?;
        registry.register(Box::new(build_info.clone()))?;
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION"), env!("STOCK_HOST_COMMIT"), env!("STOCK_HOST_WASMTIME")]).set(1);
        let component_info = IntGaugeVec::new(
            Opts::new(COMPONENT_INFO, "The running component (value 1), by version and digest."),
            &[LABEL_VERSION, LABEL_DIGEST],
        )?;
        registry.register(Box::new(component_info.clone()))?;
        let metrics = Self {
            requests: counter_vec(
                REQUESTS_TOTAL,
                "Requests answered, by route template, status and component version.",
                &[LABEL_ROUTE, LABEL_STATUS, LABEL_VERSION],
            )?,
            request_duration,
            cache_hits: counter(CACHE_HITS_TOTAL, "Price answers served from a fresh cache entry.")?,
            cache_misses: counter(CACHE_MISSES_TOTAL, "Price answers that needed the upstream.")?,
            cache_stale: counter(CACHE_STALE_TOTAL, "Price answers served stale because the upstream failed.")?,
            breaker_state: gauge(CIRCUIT_BREAKER_STATE, "Circuit breaker state: 0 closed, 1 open, 2 half-open.")?,
            breaker_transitions: counter_vec(
                CIRCUIT_BREAKER_TRANSITIONS_TOTAL,
                "Circuit breaker transitions, by target state.",
                &[LABEL_STATE],
            )?,
            external_calls: counter_vec(EXTERNAL_CALLS_TOTAL, "Upstream calls, by outcome.", &[LABEL_OUTCOME])?,
            external_call_duration: histogram(EXTERNAL_CALL_DURATION_SECONDS, "Upstream call time to the response head.", LATENCY_BUCKETS)?,
            component_info,
            instantiation: histogram(INSTANTIATION_SECONDS, "Time to instantiate the component for one request.", INSTANTIATION_BUCKETS)?,
            traps: counter(TRAPS_TOTAL, "Component traps, including deadline interruptions.")?,
            request_timeouts: counter(REQUEST_TIMEOUTS_TOTAL, "Requests over the whole-request deadline.")?,
            in_flight: gauge(IN_FLIGHT_REQUESTS, "Component requests currently running.")?,
            kv_operations: counter_vec(
                KV_OPERATIONS_TOTAL,
                "Keyvalue operations, by backend, operation and result.",
                &[LABEL_BACKEND, LABEL_OP, LABEL_RESULT],
            )?,
            kv_fallback: gauge(KV_FALLBACK, "1 while the host serves keyvalue from its local store because Redis does not answer.")?,
            egress_refused: counter(EGRESS_REFUSED_TOTAL, "Outgoing requests refused: authority not allowed.")?,
            upstream_paused: counter(
                UPSTREAM_PAUSED_TOTAL,
                "Upstream calls not made because Redis, where the fleet counts the day's quota, was unreachable.",
            )?,
            instance_reuses: counter(INSTANCE_REUSES_TOTAL, "Requests served by a reused instance (no instantiation).")?,
            swaps: counter_vec(SWAPS_TOTAL, "Component swap attempts, by result.", &[LABEL_RESULT])?,
            swap_seconds: histogram(SWAP_SECONDS, "From a component change being noticed to the new build serving.", SWAP_BUCKETS)?,
            quota_used: gauge(UPSTREAM_QUOTA_USED, "Upstream calls spent today (UTC).")?,
            quota_limit: gauge(UPSTREAM_QUOTA_LIMIT, "Upstream calls allowed per UTC day (0 = unlimited).")?,
            open_connections: gauge(OPEN_CONNECTIONS, "Open connections on the traffic port.")?,
            connections_shed: counter(CONNECTIONS_SHED_TOTAL, "Connections answered 503 and closed: MAX_CONNECTIONS were open.")?,
            trace_spans: counter_vec(
                TRACE_SPANS_TOTAL,
                "Spans sent to the OTLP collector, by result (exported, failed, dropped: the queue was full).",
                &[LABEL_RESULT],
            )?,
            registry_polls: counter_vec(REGISTRY_POLLS_TOTAL, "Registry polls of the COMPONENT tag, by result.", &[LABEL_RESULT])?,
            registry_pulls: counter_vec(REGISTRY_PULLS_TOTAL, "Registry pulls of a new digest, by result.", &[LABEL_RESULT])?,
            registry_up: gauge(REGISTRY_UP, "1 when the registry answered the last request, 0 when it did not.")?,
            registry_last_poll: gauge(REGISTRY_LAST_POLL, "Unix time of the last registry poll.")?,
            component_from_cache: gauge(
                COMPONENT_FROM_CACHE,
                "1 while serving a cached build because the registry did not answer at start.",
            )?,
            compiled_cache: counter_vec(COMPILED_CACHE_TOTAL, "Compiled-code cache lookups, by result.", &[LABEL_RESULT])?,
            registry,
        };
        metrics.touch_known_labels();
        Ok(metrics)
    }

    /// Makes the breaker's series visible at zero before their first event, so dashboards and alerts see
    /// them (upstream outcomes and swap results are touched by the rooms that own those words).
    fn touch_known_labels(&self) {
        for state in BREAKER_STATES {
            self.breaker_transitions.with_label_values(&[state]);
        }
        for result in COMPILED_CACHE_RESULTS {
            self.compiled_cache.with_label_values(&[result]);
        }
    }

    /// Removes every series labelled with a version not in `live` (builds no longer kept or in a role:
    /// they can serve again only as new candidates), so per-version series stay bounded however many
    /// builds a long-lived pod sees.
    pub fn forget_versions_except(&self, live: &[&str]) {
        forget_stale(&self.requests, &[LABEL_ROUTE, LABEL_STATUS, LABEL_VERSION], live, |v| self.requests.remove_label_values(v));
        forget_stale(&self.request_duration, &[LABEL_ROUTE, LABEL_VERSION], live, |v| self.request_duration.remove_label_values(v));
        forget_stale(&self.component_info, &[LABEL_VERSION, LABEL_DIGEST], live, |v| self.component_info.remove_label_values(v));
    }

    /// Prometheus text exposition of everything registered.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 * 1024);
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(%error, "cannot encode metrics");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_no_longer_live_leaves_no_series_and_the_live_ones_stay() {
        let metrics = Metrics::new().expect("metrics");
        for version in ["aaaaaaaaaaaa", "bbbbbbbbbbbb"] {
            metrics.requests.with_label_values(&["/{symbol}", "200", version]).inc();
            metrics.requests.with_label_values(&["/health", "200", version]).inc();
            metrics.request_duration.with_label_values(&["/{symbol}", version]).observe(0.001);
            metrics.component_info.with_label_values(&[version, "digest"]).set(1);
        }
        metrics.forget_versions_except(&["bbbbbbbbbbbb"]);
        let text = String::from_utf8(metrics.render()).expect("utf-8");
        assert!(!text.contains("aaaaaaaaaaaa"), "{text}");
        assert!(text.matches("version=\"bbbbbbbbbbbb\"").count() > 3, "{text}");
    }
}
