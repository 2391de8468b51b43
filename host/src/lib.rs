//! `stock-host`: serves the stock WebAssembly component with wasmtime.
//!
//! The host owns what a component cannot: listeners, the shared keyvalue store, the API key,
//! egress policy, deadlines, metrics and the running component (behind one swappable handle).

#![warn(missing_docs)]

pub mod admin;
pub mod body;
pub mod canary;
pub mod config;
pub mod docs;
pub mod egress;
pub mod engine;
pub mod error;
pub mod handler;
pub mod keyvalue;
pub mod metrics;
pub mod otel;
pub mod pool;
pub mod secrets;
pub mod server;
pub mod slots;
pub mod state;
pub mod status;
pub mod swap;
pub mod trace;
pub mod watch;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use http::HeaderValue;
use stock_shared::settings;
use tokio::net::TcpListener;
use wasmtime::Engine;

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::canary::{Canary, CanaryPolicy};

use crate::admin::AdminAuth;
use crate::config::{APIKEY_FILE_POLL, KvUrl, ServeConfig};
use crate::egress::EgressPolicy;
use crate::engine::{EpochTicker, LoadedComponent, build_engine, build_linker, load_component};
use crate::handler::build_report;
use crate::keyvalue::Buckets;
use crate::keyvalue::redis::{RedisLink, RedisProber, RedisSettings};
use crate::metrics::Metrics;
use crate::otel::SpanExport;
use crate::pool::Reuse;
use crate::secrets::{ComponentConfig, KeyFileWatcher, read_key_file};
use crate::slots::Slots;
use crate::status::ConfigProblem;
use crate::swap::Swaps;
use crate::watch::ComponentWatcher;

/// Shared state of the running host.
pub struct App {
    engine: Engine,
    component: ArcSwap<LoadedComponent>,
    canary: ArcSwapOption<Canary>,
    canary_policy: CanaryPolicy,
    routed: AtomicU64,
    swaps: Swaps,
    admin_auth: AdminAuth,
    component_config: Arc<ComponentConfig>,
    kv: Buckets,
    metrics: Arc<Metrics>,
    egress: EgressPolicy,
    spans: Option<Arc<SpanExport>>,
    slots: Arc<Slots>,
    request_timeout: Duration,
    max_connections: usize,
    reuse: Reuse,
    drain_timeout: Duration,
    shutdown_delay: Duration,
    max_memory_bytes: usize,
    draining: AtomicBool,
    next_request: AtomicU64,
    request_prefix: String,
}

impl App {
    /// The component serving new requests; requests already running keep the one they started with.
    pub fn component(&self) -> Arc<LoadedComponent> {
        self.component.load_full()
    }

    /// The build that serves a new request, and the canary it counts toward when one runs (the bool:
    /// whether this request goes to the canary).
    pub fn pick(&self, headers: &http::HeaderMap) -> (Arc<LoadedComponent>, Option<(Arc<Canary>, bool)>) {
        let Some(canary) = self.canary.load_full() else { return (self.component(), None) };
        let sticky = headers.get(&self.canary_policy.sticky_header).map(|v| v.as_bytes());
        let to_canary = canary::routes_to_canary(canary.percent, sticky, self.routed.fetch_add(1, Ordering::Relaxed));
        let build = if to_canary { canary.build.clone() } else { self.component() };
        (build, Some((canary, to_canary)))
    }

    /// Makes `build` serve new requests (one atomic switch; see [`swap`]).
    fn set_component(&self, build: Arc<LoadedComponent>) {
        self.component.store(build);
    }

    /// Marks the host as shutting down (`/ready` answers 503).
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// The caller's `X-Request-Id` when it is short and plain, else a new one.
    pub fn request_id(&self, incoming: Option<&HeaderValue>) -> String {
        let plain = |v: &&str| (1..=64).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        match incoming.and_then(|v| v.to_str().ok()).filter(plain) {
            Some(id) => id.to_owned(),
            None => format!("{}-{:x}", self.request_prefix, self.next_request.fetch_add(1, Ordering::Relaxed)),
        }
    }

    /// Asks the running build for its breaker (through `stock:service/status`) before a scrape.
    pub async fn refresh_build_metrics(&self) {
        let component = self.component();
        match build_report(self, &component).await {
            Ok(report) => server::apply_build_metrics(&self.metrics, &report),
            Err(error) => {
                tracing::warn!(version = %component.version, error = %format!("{error:#}"), "the running build did not report its status")
            }
        }
    }
}

/// One line naming each setting the build refused, by the environment variable that feeds it.
fn describe_config_problems(problems: &[ConfigProblem]) -> String {
    let each = problems.iter().map(|p| match settings::by_key(&p.key) {
        Some(setting) => format!("{}: {}", setting.env, p.reason),
        None => format!("{} (wasi:config): {}", p.key, p.reason),
    });
    each.collect::<Vec<_>>().join("; ")
}

/// How long exit waits for queued spans to reach the collector.
const SPAN_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Validates `config`, loads the component, binds both ports and serves until SIGTERM/SIGINT.
pub async fn run(config: ServeConfig) -> anyhow::Result<()> {
    let apikey = match (&config.apikey, &config.apikey_file) {
        // An empty APIKEY is what a missing Kubernetes secret looks like: the same as none.
        (Some(key), _) => Some(key.trim().to_owned()).filter(|k| !k.is_empty()),
        (None, Some(path)) => read_key_file(path).with_context(|| format!("APIKEY_FILE {} cannot be read", path.display()))?,
        (None, None) => None,
    };
    if apikey.is_none() {
        tracing::warn!("no APIKEY or APIKEY_FILE: price requests will answer 503 until a key is configured");
    }
    if config.request_timeout <= config.upstream_timeout {
        tracing::warn!(
            request_timeout_ms = config.request_timeout.as_millis() as u64,
            upstream_timeout_ms = config.upstream_timeout.as_millis() as u64,
            "REQUEST_TIMEOUT is not above UPSTREAM_TIMEOUT: slow upstream calls will end as 504 from the host"
        );
    }
    let max_memory_bytes = usize::try_from(config.max_memory_mib).unwrap_or(usize::MAX).saturating_mul(1024 * 1024);
    // Busy instances (one per slot), as many idle ones kept for reuse, and the host's own calls.
    let engine = build_engine(config.max_concurrency * 2 + HOST_INSTANCES, max_memory_bytes)?;
    let linker = build_linker(&engine)?;
    let reuse = Reuse {
        max_uses: config.max_instance_reuse,
        idle_timeout: config.instance_idle_timeout,
        max_idle: usize::try_from(config.max_concurrency).unwrap_or(1),
    };
    let component = Arc::new(load_component(&engine, &linker, &config.component, reuse)?);
    let metrics = Arc::new(Metrics::new().context("cannot register metrics")?);
    metrics.component_info.with_label_values(&[&component.version]).set(1);
    let component_config = Arc::new(ComponentConfig::new(&config, apikey.clone()));
    let _key_watcher =
        config.apikey_file.clone().map(|path| KeyFileWatcher::spawn(path, component_config.clone(), apikey, APIKEY_FILE_POLL));
    let _ticker = EpochTicker::spawn(engine.clone())?;
    let (kv, _redis_prober) = keyvalue_buckets(&config, &metrics).await?;
    let spans = match config.span_export() {
        Some(settings) => {
            let export = SpanExport::start(&settings, metrics.trace_spans.clone())?;
            tracing::info!(endpoint = %settings.traces_url, service = %settings.service_name, "exporting traces over OTLP/HTTP");
            Some(Arc::new(export))
        }
        None => None,
    };

    let app = Arc::new(App {
        egress: EgressPolicy {
            allowed_authority: config.upstream_authority(),
            timeout: config.upstream_timeout,
            metrics: metrics.clone(),
            trace: None,
            spans: spans.clone(),
        },
        spans,
        engine,
        swaps: Swaps::new(linker, &component),
        component: ArcSwap::new(component),
        canary: ArcSwapOption::empty(),
        canary_policy: config.canary_policy(),
        routed: AtomicU64::new(0),
        admin_auth: AdminAuth { token: config.admin_token.clone(), token_file: config.admin_token_file.clone() },
        component_config,
        kv,
        metrics,
        slots: Slots::new(
            usize::try_from(config.max_concurrency).unwrap_or(1),
            usize::try_from(config.max_concurrency_per_symbol).unwrap_or(1),
        ),
        max_connections: usize::try_from(config.max_connections).unwrap_or(usize::MAX),
        reuse,
        request_timeout: config.request_timeout,
        drain_timeout: config.drain_timeout,
        shutdown_delay: config.shutdown_delay,
        max_memory_bytes,
        draining: AtomicBool::new(false),
        next_request: AtomicU64::new(1),
        request_prefix: request_id_prefix(),
    });
    // The smoke test: the build answers its status export and accepts this configuration.
    let report = build_report(&app, &app.component()).await.context("the component does not answer stock:service/status")?;
    if !report.config_problems.is_empty() {
        anyhow::bail!("invalid configuration: {}", describe_config_problems(&report.config_problems));
    }
    server::apply_build_metrics(&app.metrics, &report);

    let _watcher = ComponentWatcher::spawn(app.clone(), config.component.clone());
    let _sweeper = IdleSweeper::spawn(app.clone());
    let _judge = CanaryJudge::spawn(app.clone());
    let traffic =
        TcpListener::bind(config.traffic_addr()).await.with_context(|| format!("cannot listen on PORT {}", config.traffic_addr()))?;
    let admin =
        TcpListener::bind(config.admin_addr()).await.with_context(|| format!("cannot listen on ADMIN_PORT {}", config.admin_addr()))?;
    let traffic_addr = traffic.local_addr()?;
    let admin_addr = admin.local_addr()?;
    tracing::info!(
        traffic = %traffic_addr,
        admin = %admin_addr,
        component = %config.component.display(),
        version = %app.component().version,
        upstream = %app.egress.allowed_authority,
        "listening on http://{traffic_addr}"
    );
    let served = server::serve(app.clone(), traffic, admin, shutdown_signal()).await;
    if let Some(spans) = app.spans.clone() {
        // Within the pod's grace period: what the drain left in the queue goes out before exit.
        let _ = tokio::task::spawn_blocking(move || spans.shutdown(SPAN_FLUSH_TIMEOUT)).await;
    }
    served?;
    Ok(())
}

/// Watches a running canary and rolls it back (or promotes it) as [`canary::judge`] decides; stops when dropped.
struct CanaryJudge(tokio::task::JoinHandle<()>);

impl CanaryJudge {
    /// How often the canary's numbers are compared with the stable build's.
    const EVERY: Duration = Duration::from_millis(250);

    fn spawn(app: Arc<App>) -> Self {
        Self(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Self::EVERY);
            loop {
                tick.tick().await;
                let Some(running) = app.canary.load_full() else { continue };
                let (stable, candidate) = (running.stable.snapshot(), running.candidate.snapshot());
                match canary::judge(&stable, &candidate, running.since.elapsed(), &app.canary_policy) {
                    canary::Verdict::Wait => {}
                    canary::Verdict::Rollback(reason) => {
                        swap::end_canary(&app, swap::SwapResult::AutoRollback, swap::Source::CanaryJudge, Some(reason)).await;
                    }
                    canary::Verdict::Promote => {
                        swap::promote(&app, swap::Source::CanaryJudge).await;
                    }
                }
            }
        }))
    }
}

impl Drop for CanaryJudge {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Retires idle instances of the running build (and of a canary) once they pass INSTANCE_IDLE_TIMEOUT; stops when dropped.
struct IdleSweeper(tokio::task::JoinHandle<()>);

impl IdleSweeper {
    fn spawn(app: Arc<App>) -> Self {
        let every = (app.reuse.idle_timeout / 2).max(Duration::from_secs(1));
        Self(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                app.component().pool.sweep();
                if let Some(canary) = app.canary.load_full() {
                    canary.build.pool.sweep();
                }
            }
        }))
    }
}

impl Drop for IdleSweeper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The keyvalue buckets KV_URL asks for; with Redis, the prober that keeps it connected.
async fn keyvalue_buckets(config: &ServeConfig, metrics: &Arc<Metrics>) -> anyhow::Result<(Buckets, Option<RedisProber>)> {
    let KvUrl::Redis(url) = &config.kv_url else { return Ok((Buckets::in_memory(config.kv_max_entries), None)) };
    let password = match &config.kv_password_file {
        Some(path) => Some(
            read_key_file(path)
                .with_context(|| format!("KV_PASSWORD_FILE {} cannot be read", path.display()))?
                .with_context(|| format!("KV_PASSWORD_FILE {} is empty", path.display()))?,
        ),
        None => None,
    };
    if let Some(password) = &password {
        secrets::remember_secret(password);
    }
    let settings = RedisSettings {
        url: url.clone(),
        password,
        password_file: config.kv_password_file.clone(),
        prefix: config.kv_prefix.clone(),
        timeout: config.kv_timeout,
        cache_expiry: config.kv_cache_expiry,
    };
    let link = RedisLink::new(&settings, metrics.clone()).map_err(|e| anyhow::anyhow!("KV_URL cannot be used: {e}"))?;
    tracing::info!(redis = %link.endpoint, prefix = %settings.prefix, "keyvalue: Redis, shared by every replica");
    let prober = RedisProber::start(link.clone()).await;
    Ok((Buckets::redis(link, &settings, config.kv_max_entries), Some(prober)))
}

/// Instances beyond MAX_CONCURRENCY for the host's own calls (status at load and on scrapes).
const HOST_INSTANCES: u32 = 4;

/// A per-process prefix for request ids: the pid alone is 1 in every container, so mix in the start time.
fn request_id_prefix() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos() ^ (d.as_secs() as u32));
    format!("{:08x}", nanos ^ std::process::id().rotate_left(16))
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!(signal = "SIGINT", "signal received"),
        _ = terminate => tracing::info!(signal = "SIGTERM", "signal received"),
    }
}
