//! `stock-host`: serves the stock WebAssembly component with wasmtime.
//!
//! The host is built in rooms (see `docs/architecture.md`); arrows point down only:
//! - [`config`]: settings as plain data, one clap group per capability; imports nothing of ours;
//! - [`telemetry`]: metrics, trace context, OTLP export, redaction; uses only config;
//! - [`state`]: `wasi:keyvalue` over memory or Redis;
//! - [`runtime`]: engine, linker, stores, instance pools, slots, deadlines: compile and call a build;
//! - [`builds`]: the stable build, the canary, history and the judge, behind one door (`submit`);
//! - [`sources`]: the COMPONENT file, an OCI registry and admin uploads, each making candidates for the door;
//! - [`http`]: the listeners, traffic routes, admin routes and the API page.
//!
//! This file only wires the rooms together.

#![warn(missing_docs)]

mod body;
mod builds;
pub mod cli;
pub mod config;
mod error;
mod files;
mod http;
pub mod runtime;
mod sources;
pub mod state;
pub mod telemetry;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::builds::{BackgroundTasks, Builds};
use crate::config::ServeConfig;
use crate::config::component::ComponentSource;
use crate::config::kv::{KvOptions, KvUrl};
use crate::config::secret_file::read_secret_file;
use crate::http::{AdminAuth, Server};
use crate::runtime::Runtime;
use crate::runtime::egress::EgressPolicy;
use crate::runtime::variables::{ComponentConfig, KeyFileWatcher};
use crate::sources::file::{ComponentWatcher, startup_candidate};
use crate::sources::registry::RegistrySource;
use crate::state::Buckets;
use crate::state::redis::{RedisLink, RedisProber, RedisSettings};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::otel::SpanExport;

pub use crate::runtime::engine::version_of;
pub use crate::sources::registry::push::push;

/// How long exit waits for queued spans to reach the collector.
const SPAN_FLUSH_TIMEOUT: Duration = Duration::from_secs(4);
/// How often APIKEY_FILE is checked for a new key.
const APIKEY_FILE_POLL: Duration = Duration::from_secs(1);

/// Settings that cannot work together (found after parsing, before anything listens).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(String);

/// Whether `error` is a refused setting (the host's or the build's): exit code 2, like a parse mistake.
pub fn is_settings_error(error: &anyhow::Error) -> bool {
    error.downcast_ref::<SettingsError>().is_some()
        || matches!(error.downcast_ref::<builds::StartError>(), Some(builds::StartError::Config(_)))
}

/// Validates `config`, starts the first build through the door, binds both ports and serves until
/// SIGTERM/SIGINT.
pub async fn run(config: ServeConfig) -> anyhow::Result<()> {
    let listen = &config.listen;
    if listen.port == listen.admin_port && listen.port != 0 {
        return Err(SettingsError(format!("PORT and ADMIN_PORT are both {}: give the admin port its own number", listen.port)).into());
    }
    if listen.inline_admin_token().is_some() && listen.admin_token_file.is_some() {
        return Err(SettingsError("ADMIN_TOKEN and ADMIN_TOKEN_FILE are both set: set one of them".into()).into());
    }
    let (admin_auth, _token_watcher) = AdminAuth::start(listen)?;
    let apikey = match (&config.service.apikey, &config.service.apikey_file) {
        // An empty APIKEY is what a missing Kubernetes secret looks like: the same as none.
        (Some(key), _) => Some(key.trim().to_owned()).filter(|k| !k.is_empty()),
        (None, Some(path)) => read_secret_file(path).with_context(|| format!("APIKEY_FILE {} cannot be read", path.display()))?,
        (None, None) => None,
    };
    let upstream_timeout = config.service.upstream_timeout;
    let request_timeout = config.runtime.request_timeout(upstream_timeout);
    let metrics = Arc::new(Metrics::new().context("cannot register metrics")?);
    let missing_key = apikey.is_none();
    let variables = Arc::new(ComponentConfig::new(config.service.variables(), apikey.clone()));
    let _key_watcher =
        config.service.apikey_file.clone().map(|path| KeyFileWatcher::spawn(path, variables.clone(), apikey, APIKEY_FILE_POLL));
    let (kv, shared_state, _redis_prober) = keyvalue_buckets(&config.kv, &metrics).await?;
    let spans = match config.telemetry.span_export() {
        Some(settings) => {
            let export = SpanExport::start(&settings, metrics.trace_spans.clone())?;
            tracing::info!(endpoint = %settings.traces_url, service = %settings.service_name, "exporting traces over OTLP/HTTP");
            Some(Arc::new(export))
        }
        None => None,
    };
    let egress = EgressPolicy {
        allowed_authority: config.service.upstream_authority(),
        timeout: upstream_timeout,
        metrics: metrics.clone(),
        trace: None,
        spans: spans.clone(),
        shared_state,
        epoch_at_start: None,
    };
    let cache_dir = &config.component.component_cache_dir;
    let runtime = Arc::new(Runtime::new(&config.runtime, cache_dir, request_timeout, kv, egress, variables, metrics.clone())?);

    // The first build goes through the same door as every later one: read (or pull), check, smoke test, live.
    let (candidate, registry) = match &config.component.component {
        ComponentSource::File(path) => {
            (startup_candidate(path).await.with_context(|| format!("COMPONENT {} cannot be read", path.display()))?, None)
        }
        ComponentSource::Registry(reference) => {
            let source = Arc::new(RegistrySource::new(reference.clone(), &config.component, metrics.clone()).map_err(SettingsError)?);
            let (candidate, manifest_digest) = source.startup_candidate().await?;
            (candidate, Some((source, manifest_digest)))
        }
    };
    let builds = Builds::start(builds::runtime_check(runtime.clone()), config.canary.policy(), metrics.clone(), candidate).await?;
    // Warnings about settings the build accepted: after its check, so a refused setting is the only line.
    if missing_key {
        tracing::warn!("no APIKEY or APIKEY_FILE: price requests will answer 503 until a key is configured");
    }
    if request_timeout <= upstream_timeout {
        tracing::warn!(
            request_timeout_ms = request_timeout.as_millis() as u64,
            upstream_timeout_ms = upstream_timeout.as_millis() as u64,
            "REQUEST_TIMEOUT is not above UPSTREAM_TIMEOUT: slow upstream calls will end as 504 from the host"
        );
    }
    let _watcher = match &config.component.component {
        ComponentSource::File(path) => Some(ComponentWatcher::spawn(builds.clone(), path.clone())),
        ComponentSource::Registry(_) => None,
    };
    let _poller = registry.as_ref().and_then(|(source, manifest_digest)| {
        source.went_live(manifest_digest);
        source.clone().spawn_poller(builds.clone(), manifest_digest.clone(), config.component.component_poll_interval)
    });
    let _tasks = BackgroundTasks::spawn(builds.clone(), (runtime.reuse().idle_timeout / 2).max(Duration::from_secs(1)));

    let traffic =
        TcpListener::bind(listen.traffic_addr()).await.with_context(|| format!("cannot listen on PORT {}", listen.traffic_addr()))?;
    let admin =
        TcpListener::bind(listen.admin_addr()).await.with_context(|| format!("cannot listen on ADMIN_PORT {}", listen.admin_addr()))?;
    let traffic_addr = traffic.local_addr()?;
    let admin_addr = admin.local_addr()?;
    let stable = builds.stable();
    tracing::info!(
        traffic = %traffic_addr,
        admin = %admin_addr,
        component = %config.component.component,
        version = %stable.origin.version,
        upstream = %config.service.upstream_authority(),
        "listening on http://{}: try /{}/{} (prices), /docs (API reference); admin on http://{}: /metrics, /docs (admin API)",
        browsable(traffic_addr),
        config.service.symbol,
        config.service.ndays,
        browsable(admin_addr),
    );
    let server = Server::new(builds, runtime, listen, admin_auth, spans.clone(), registry.map(|(source, _)| source));
    let served = http::serve(server, traffic, admin, shutdown_signal()).await;
    if let Some(spans) = spans {
        // Within the pod's grace period: what the drain left in the queue goes out before exit.
        let _ = tokio::task::spawn_blocking(move || spans.shutdown(SPAN_FLUSH_TIMEOUT)).await;
    }
    served?;
    Ok(())
}

/// `addr` as a user can open it: `localhost` for an address bound on every interface.
fn browsable(addr: std::net::SocketAddr) -> String {
    if addr.ip().is_unspecified() { format!("localhost:{}", addr.port()) } else { addr.to_string() }
}

/// The keyvalue buckets KV_URL asks for; with Redis, its link (upstream calls pause while it is down) and the
/// prober that keeps it connected.
async fn keyvalue_buckets(
    options: &KvOptions,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<(Buckets, Option<Arc<RedisLink>>, Option<RedisProber>)> {
    let KvUrl::Redis(url) = &options.kv_url else { return Ok((Buckets::in_memory(options.kv_max_entries), None, None)) };
    let password = match &options.kv_password_file {
        Some(path) => Some(
            read_secret_file(path)
                .with_context(|| format!("KV_PASSWORD_FILE {} cannot be read", path.display()))?
                .with_context(|| format!("KV_PASSWORD_FILE {} is empty", path.display()))?,
        ),
        None => None,
    };
    if let Some(password) = &password {
        telemetry::redact::remember_secret(password);
    }
    let settings = RedisSettings {
        url: url.clone(),
        password,
        password_file: options.kv_password_file.clone(),
        prefix: options.kv_prefix.clone(),
        timeout: options.kv_timeout,
        cache_expiry: options.kv_cache_expiry,
        state_expiry: options.kv_state_expiry,
        memo_expiry: options.kv_memo_expiry,
    };
    let link = RedisLink::new(&settings, metrics.clone()).map_err(|e| anyhow::anyhow!("KV_URL cannot be used: {e}"))?;
    tracing::info!(redis = %link.endpoint, prefix = %settings.prefix, "keyvalue: Redis, shared by every replica");
    let prober = RedisProber::start(link.clone()).await;
    Ok((Buckets::redis(link.clone(), &settings, options.kv_max_entries), Some(link), Some(prober)))
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
