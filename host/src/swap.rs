//! Hot swap: a new component build goes live while traffic flows. A candidate (from the watched file
//! or the admin API) is compiled on a blocking thread, one at a time, then checked (component, pooling
//! limits, imports, exports, a smoke test through its status export and its HTTP handler) and switched
//! in atomically. Requests already running finish on the build they started with. A candidate that
//! fails any step is rejected with one log line naming the step; the running build keeps serving.
//! A change arriving while another is being checked waits; when several wait, the last one wins.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use serde::Serialize;
use wasmtime::component::Linker;

use crate::App;
use crate::canary::Canary;
use crate::engine::{LoadError, LoadStep, LoadedComponent, load_bytes};
use crate::handler::{build_report, call_component};
use crate::state::RequestState;

/// Compiled builds kept (by digest) so a rollback or a repeat is instant.
pub const KEPT_BUILDS: usize = 4;
/// Swap attempts remembered for `GET /admin/component`.
pub const HISTORY_LEN: usize = 32;

/// Where a candidate build came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// `COMPONENT` at startup.
    Startup,
    /// The watched `COMPONENT` file changed.
    File,
    /// `PUT /admin/component`.
    Admin,
    /// `POST /admin/rollback`.
    Rollback,
    /// `POST /admin/promote`.
    Promote,
    /// The canary judge (auto rollback or auto promotion).
    CanaryJudge,
}

/// How an attempt ended (the same word in the history and in the `result` metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SwapResult {
    /// The candidate is live.
    Ok,
    /// A check failed; the running build kept serving.
    Rejected,
    /// A newer change arrived before this one was checked; it was skipped.
    Superseded,
    /// The candidate is the build already running.
    Unchanged,
    /// The candidate passed every check and now takes a share of traffic as a canary.
    Canary,
    /// An operator dropped the canary.
    Rollback,
    /// The judge dropped the canary: it answered worse than the stable build.
    AutoRollback,
}

impl SwapResult {
    /// Label value for `stock_host_swaps_total`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Rejected => "rejected",
            Self::Superseded => "superseded",
            Self::Unchanged => "unchanged",
            Self::Canary => "canary",
            Self::Rollback => "rollback",
            Self::AutoRollback => "auto_rollback",
        }
    }
}

/// One attempt, as `GET /admin/component` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SwapRecord {
    /// Unix seconds when the change was noticed or uploaded.
    pub at: u64,
    /// Where it came from.
    pub source: Source,
    /// The candidate's version (first 12 hex of its sha256), when it could be read.
    pub version: Option<String>,
    /// The build running before the attempt.
    pub previous: Option<String>,
    /// How it ended.
    pub result: SwapResult,
    /// The check that refused it.
    pub step: Option<&'static str>,
    /// What that check said.
    pub reason: Option<String>,
    /// From the change being noticed to the end of the attempt.
    pub seconds: f64,
}

/// The swap machinery's state, owned by [`App`].
pub struct Swaps {
    linker: Linker<RequestState>,
    lock: tokio::sync::Mutex<()>,
    latest: AtomicU64,
    kept: Mutex<VecDeque<Arc<LoadedComponent>>>,
    previous: Mutex<Option<Arc<LoadedComponent>>>,
    history: Mutex<VecDeque<SwapRecord>>,
    running_source: Mutex<(Source, u64)>,
}

impl Swaps {
    /// Swap state for a host whose first build is `initial`.
    pub fn new(linker: Linker<RequestState>, initial: &Arc<LoadedComponent>) -> Self {
        let this = Self {
            linker,
            lock: tokio::sync::Mutex::new(()),
            latest: AtomicU64::new(0),
            kept: Mutex::new(VecDeque::from([initial.clone()])),
            previous: Mutex::new(None),
            history: Mutex::new(VecDeque::new()),
            running_source: Mutex::new((Source::Startup, unix_now())),
        };
        this.remember(SwapRecord {
            at: unix_now(),
            source: Source::Startup,
            version: Some(initial.version.clone()),
            previous: None,
            result: SwapResult::Ok,
            step: None,
            reason: None,
            seconds: 0.0,
        });
        this
    }

    /// Attempts so far, oldest first.
    pub fn history(&self) -> Vec<SwapRecord> {
        lock(&self.history).iter().cloned().collect()
    }

    /// The build a rollback would go back to.
    pub fn previous(&self) -> Option<Arc<LoadedComponent>> {
        lock(&self.previous).clone()
    }

    /// Where the running build came from, and since when (Unix seconds).
    pub fn running_source(&self) -> (Source, u64) {
        *lock(&self.running_source)
    }

    fn remember(&self, record: SwapRecord) {
        let mut history = lock(&self.history);
        if history.len() == HISTORY_LEN {
            history.pop_front();
        }
        history.push_back(record);
    }

    fn replace_last(&self, record: SwapRecord) {
        if let Some(last) = lock(&self.history).back_mut() {
            *last = record;
        }
    }

    fn kept_build(&self, digest: &str) -> Option<Arc<LoadedComponent>> {
        lock(&self.kept).iter().find(|c| c.digest == digest).cloned()
    }

    fn keep(&self, build: &Arc<LoadedComponent>) {
        let mut kept = lock(&self.kept);
        kept.retain(|c| c.digest != build.digest);
        if kept.len() == KEPT_BUILDS {
            kept.pop_front();
        }
        kept.push_back(build.clone());
    }
}

/// Makes `bytes` the running build if every check passes. `noticed` is when the change was seen
/// (file event or upload start), so the recorded time is change-to-live.
pub async fn swap_bytes(app: &Arc<App>, bytes: Bytes, source: Source, noticed: Instant) -> SwapRecord {
    change(app, bytes, source, noticed, None).await
}

/// Checks `bytes` exactly as a swap does, then lets it take `percent` % of new requests as a canary
/// (replacing any canary already running) instead of all of them.
pub async fn start_canary(app: &Arc<App>, bytes: Bytes, source: Source, percent: u8, noticed: Instant) -> SwapRecord {
    change(app, bytes, source, noticed, Some(percent)).await
}

async fn change(app: &Arc<App>, bytes: Bytes, source: Source, noticed: Instant, canary: Option<u8>) -> SwapRecord {
    let ticket = app.swaps.latest.fetch_add(1, Ordering::SeqCst) + 1;
    let _one_at_a_time = app.swaps.lock.lock().await;
    let running = app.component();
    if app.swaps.latest.load(Ordering::SeqCst) != ticket {
        return finish(app, source, noticed, None, &running, Err(SwapResult::Superseded), None);
    }
    let digest = crate::engine::digest(&bytes);
    if digest == running.digest {
        return finish(app, source, noticed, Some(running.version.clone()), &running, Err(SwapResult::Unchanged), None);
    }
    let candidate = match app.swaps.kept_build(&digest) {
        Some(kept) => Ok(kept),
        None => compile(app, bytes).await.map(Arc::new),
    };
    let version = Some(digest[..12].to_owned());
    let checked = match candidate {
        Ok(candidate) => smoke_test(app, &candidate).await.map(|()| candidate),
        Err(error) => Err(error),
    };
    match (checked, canary) {
        (Ok(candidate), None) => switch(app, source, noticed, candidate, &running),
        (Ok(candidate), Some(percent)) => begin_canary(app, source, noticed, candidate, percent, &running),
        (Err(error), _) => finish(app, source, noticed, version, &running, Err(SwapResult::Rejected), Some(error)),
    }
}

fn begin_canary(
    app: &Arc<App>,
    source: Source,
    noticed: Instant,
    candidate: Arc<LoadedComponent>,
    percent: u8,
    running: &Arc<LoadedComponent>,
) -> SwapRecord {
    app.swaps.keep(&candidate);
    candidate.pool.revive();
    if let Some(replaced) = app.canary.swap(Some(Arc::new(Canary::new(candidate.clone(), percent))))
        && !Arc::ptr_eq(&replaced.build, &candidate)
    {
        retire_canary(app, &replaced.build, running);
    }
    app.metrics.component_info.with_label_values(&[&candidate.version]).set(1);
    finish(app, source, noticed, Some(candidate.version.clone()), running, Err(SwapResult::Canary), None)
}

/// Makes the canary the only build.
pub async fn promote(app: &Arc<App>, source: Source) -> Option<SwapRecord> {
    let noticed = Instant::now();
    app.swaps.latest.fetch_add(1, Ordering::SeqCst);
    let _one_at_a_time = app.swaps.lock.lock().await;
    let canary = app.canary.swap(None)?;
    let running = app.component();
    Some(switch(app, source, noticed, canary.build.clone(), &running))
}

/// Drops the canary at once; the stable build takes all traffic again. `reason` is what the judge saw.
pub async fn end_canary(app: &Arc<App>, result: SwapResult, source: Source, reason: Option<String>) -> Option<SwapRecord> {
    let noticed = Instant::now();
    let _one_at_a_time = app.swaps.lock.lock().await;
    let canary = app.canary.swap(None)?;
    let running = app.component();
    retire_canary(app, &canary.build, &running);
    if let Some(reason) = &reason {
        tracing::warn!(version = %canary.build.version, %reason, "canary rolled back by the judge");
    }
    let mut record = finish(app, source, noticed, Some(canary.build.version.clone()), &running, Err(result), None);
    record.step = reason.as_ref().map(|_| "canary-judgment");
    record.reason = reason;
    app.swaps.replace_last(record.clone());
    Some(record)
}

fn retire_canary(app: &App, build: &Arc<LoadedComponent>, running: &Arc<LoadedComponent>) {
    if !Arc::ptr_eq(build, running) {
        build.pool.retire();
        let _ = app.metrics.component_info.remove_label_values(&[&build.version]);
    }
}

/// During a canary, drops it; otherwise goes back to the build that ran before the last swap (kept
/// compiled, so instant).
pub async fn rollback(app: &Arc<App>) -> Option<SwapRecord> {
    if app.canary.load().is_some()
        && let Some(record) = end_canary(app, SwapResult::Rollback, Source::Rollback, None).await
    {
        return Some(record);
    }
    let noticed = Instant::now();
    app.swaps.latest.fetch_add(1, Ordering::SeqCst);
    let _one_at_a_time = app.swaps.lock.lock().await;
    let previous = app.swaps.previous()?;
    let running = app.component();
    Some(switch(app, Source::Rollback, noticed, previous, &running))
}

async fn compile(app: &Arc<App>, bytes: Bytes) -> Result<LoadedComponent, LoadError> {
    let engine = app.engine.clone();
    let linker = app.swaps.linker.clone();
    let reuse = app.reuse;
    tokio::task::spawn_blocking(move || load_bytes(&engine, &linker, &bytes, reuse))
        .await
        .map_err(|e| LoadError::new(LoadStep::Compile, format!("the compile thread failed: {e}")))?
}

/// The candidate reports its status, accepts this configuration and answers a request that needs no upstream.
async fn smoke_test(app: &Arc<App>, candidate: &Arc<LoadedComponent>) -> Result<(), LoadError> {
    let fail = |reason: String| LoadError::new(LoadStep::SmokeTest, reason);
    let report = build_report(app, candidate).await.map_err(|e| fail(format!("status export: {e:#}")))?;
    if !report.config_problems.is_empty() {
        let problems: Vec<String> = report.config_problems.iter().map(|p| format!("{}: {}", p.key, p.reason)).collect();
        return Err(fail(format!("it refuses this configuration: {}", problems.join("; "))));
    }
    let probe = Request::get("http://localhost/openapi.json")
        .body(Empty::<Bytes>::new().map_err(|never: std::convert::Infallible| -> hyper::Error { match never {} }))
        .map_err(|e| fail(e.to_string()))?;
    let response = call_component(app, candidate.clone(), probe).await.map_err(|e| fail(format!("GET /openapi.json: {e}")))?;
    if response.status() != StatusCode::OK {
        return Err(fail(format!("GET /openapi.json answered {}", response.status())));
    }
    response.into_body().collect().await.map_err(|e| fail(format!("GET /openapi.json body: {e}")))?;
    Ok(())
}

fn switch(app: &Arc<App>, source: Source, noticed: Instant, candidate: Arc<LoadedComponent>, running: &Arc<LoadedComponent>) -> SwapRecord {
    // A full swap ends any canary: the new build takes all traffic.
    if let Some(canary) = app.canary.swap(None)
        && !Arc::ptr_eq(&canary.build, &candidate)
    {
        retire_canary(app, &canary.build, running);
    }
    app.swaps.keep(&candidate);
    candidate.pool.revive();
    app.set_component(candidate.clone());
    // Instances of the old build retire: idle ones now, busy ones when their request ends.
    if !Arc::ptr_eq(running, &candidate) {
        running.pool.retire();
    }
    *lock(&app.swaps.previous) = Some(running.clone());
    *lock(&app.swaps.running_source) = (source, unix_now());
    app.metrics.component_info.with_label_values(&[&candidate.version]).set(1);
    if running.version != candidate.version {
        let _ = app.metrics.component_info.remove_label_values(&[&running.version]);
    }
    finish(app, source, noticed, Some(candidate.version.clone()), running, Ok(()), None)
}

fn finish(
    app: &App,
    source: Source,
    noticed: Instant,
    version: Option<String>,
    running: &LoadedComponent,
    outcome: Result<(), SwapResult>,
    error: Option<LoadError>,
) -> SwapRecord {
    let result = outcome.err().unwrap_or(SwapResult::Ok);
    let seconds = noticed.elapsed().as_secs_f64();
    app.metrics.swaps.with_label_values(&[result.name()]).inc();
    if result == SwapResult::Ok {
        app.metrics.swap_seconds.observe(seconds);
    }
    let record = SwapRecord {
        at: unix_now().saturating_sub(noticed.elapsed().as_secs()),
        source,
        version: version.clone(),
        previous: Some(running.version.clone()),
        result,
        step: error.as_ref().map(|e| e.step.name()),
        reason: error.as_ref().map(|e| e.reason.clone()),
        seconds,
    };
    let version = version.as_deref().unwrap_or("-");
    match (&error, result) {
        (Some(error), _) => {
            tracing::warn!(?source, version, step = error.step.name(), reason = %error.reason, "component build rejected; the running build keeps serving")
        }
        (None, SwapResult::Ok) => tracing::info!(?source, version, previous = %running.version, seconds, "component build is live"),
        (None, SwapResult::Canary) => tracing::info!(?source, version, stable = %running.version, "canary started"),
        (None, SwapResult::Rollback | SwapResult::AutoRollback) => {
            tracing::info!(?source, version, stable = %running.version, result = result.name(), "canary dropped; the stable build takes all traffic")
        }
        (None, other) => tracing::info!(?source, version, result = other.name(), "component change skipped"),
    }
    app.swaps.remember(record.clone());
    record
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
