//! The builds that serve: the stable build, an optional canary, the previous build, the last few
//! compiled builds and the history, behind **one door**: [`Builds::submit`]. Every source (startup,
//! the watched file, a registry tag, an admin upload) only makes a [`Candidate`] and submits it;
//! the door checks it (size, expected digest, compile, link, exports, smoke test), decides what it does
//! ([`decide`]) and records it ([`record`]).
//!
//! Two locks, each with one job:
//! - `checking` (async) lets one candidate be checked at a time, so the last of several waiting wins.
//!   It is held across compile and the smoke test, both bounded (the smoke test by REQUEST_TIMEOUT).
//! - `control` (sync, never held across an await) guards every role change. The judge, promote,
//!   rollback and drop take only this one, so none of them ever waits behind a compile or guest code.
//!
//! Every role change names the build it acts on (a canary's id, a version) and does nothing when that
//! build is no longer in that role.

pub mod canary;
pub mod decide;
pub mod record;
mod tasks;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use arc_swap::{ArcSwap, ArcSwapOption};
use bytes::Bytes;
use serde::Serialize;

use crate::config::canary::CanaryPolicy;
use crate::runtime::Runtime;
use crate::runtime::engine::{LoadError, LoadStep, LoadedComponent, digest, version_of_digest};
use crate::telemetry::metrics::Metrics;
use canary::Canary;
pub use decide::Mode;
use decide::{Action, Roles, decide};
use record::unix_now;
pub use record::{Origin, Source, SwapRecord, SwapResult};
pub use tasks::BackgroundTasks;

/// Largest build any source may deliver (a ConfigMap holds at most 1 MiB; ours is ~350 KB). One limit
/// for the file, uploads and every later source.
pub const MAX_COMPONENT_BYTES: usize = 32 * 1024 * 1024;
/// Compiled builds kept (by digest) so a rollback or a repeat is instant.
pub const KEPT_BUILDS: usize = 4;
/// Attempts remembered for `GET /admin/component`.
pub const HISTORY_LEN: usize = 32;

/// What the builds room needs of a build: its identity, and a way to stop and restart reusing its
/// instances. Implemented by the runtime's compiled build; tests use a fake.
pub trait Build: Send + Sync + 'static {
    /// sha256 of its bytes, lower-case hex.
    fn digest(&self) -> &str;
    /// First 12 hex digits of the digest.
    fn version(&self) -> &str;
    /// It stopped serving: drop its idle instances and keep none.
    fn retire(&self);
    /// It serves again (a rollback, a repeat): reuse instances again.
    fn revive(&self);
    /// Drop instances idle for longer than the idle timeout.
    fn sweep(&self);
}

impl Build for LoadedComponent {
    fn digest(&self) -> &str {
        &self.digest
    }

    fn version(&self) -> &str {
        &self.version
    }

    fn retire(&self) {
        self.pool.retire();
    }

    fn revive(&self) {
        self.pool.revive();
    }

    fn sweep(&self) {
        self.pool.sweep();
    }
}

/// The check every candidate passes before it takes a role: compile (or take the kept build with the
/// same digest) and smoke-test. Given to the room by its owner, so the room runs without a runtime in tests.
pub type Check<B> =
    Arc<dyn Fn(Bytes, String, Option<Arc<B>>) -> Pin<Box<dyn Future<Output = Result<Arc<B>, LoadError>> + Send>> + Send + Sync>;

/// The check with the real runtime: compile (never for a kept build) and smoke test, each bounded.
pub fn runtime_check(runtime: Arc<Runtime>) -> Check<LoadedComponent> {
    Arc::new(move |bytes, digest, kept| {
        let runtime = runtime.clone();
        Box::pin(async move {
            let build = match kept {
                Some(kept) => kept,
                None => Arc::new(runtime.compile(bytes, digest).await?),
            };
            runtime.smoke_test(&build).await?;
            Ok(build)
        })
    })
}

/// A build some source wants to run.
pub struct Candidate {
    /// Its bytes (a component; `.wat` text is accepted too).
    pub bytes: Bytes,
    /// Which source delivered it.
    pub source: Source,
    /// What that source calls it (the COMPONENT path, or `oci://REG/REPO:TAG@sha256:<manifest digest>`).
    pub reference: Option<String>,
    /// The digest the source promises (hex sha256); the bytes must match it.
    pub expected_digest: Option<String>,
    /// What the source asks for.
    pub mode: Mode,
    /// When the source noticed it, so records measure change-to-live.
    pub noticed: Instant,
}

/// A build in a role, with where it came from.
pub struct Placed<B = LoadedComponent> {
    /// The compiled build.
    pub build: Arc<B>,
    /// Where it came from.
    pub origin: Origin,
    /// Since when it has had its role (Unix seconds).
    pub since: u64,
}

/// The canary a request was routed through, and whether it went to the canary (else the stable build).
pub type Routed<B> = (Arc<Canary<B>>, bool);

/// A role change that was refused: the build named is not in the role, or nothing is there.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Which canary a decision is about.
#[derive(Debug, Clone, Copy)]
pub enum Expect<'a> {
    /// The one running when the decision is taken (an operator who named none).
    Current,
    /// Canary number `id` (the judge, and a source that saw it).
    Id(u64),
    /// The build with this version (an operator who named it).
    Version(&'a str),
}

/// The last thing that changed the roles: a rollback that names no build undoes this.
#[derive(Debug, Clone)]
enum LastChange {
    /// The first build went live.
    Started,
    /// A build took all traffic (swap, promotion or rollback).
    Swapped,
    /// A canary started.
    CanaryStarted,
    /// A canary ended without being promoted.
    CanaryEnded { version: String, result: SwapResult, at: u64 },
}

/// A candidate being checked right now.
#[derive(Debug, Clone, Serialize)]
struct Checking {
    version: String,
    source: Source,
    canary: bool,
}

/// Shows a candidate in `GET /admin/component` (`checking`) while it is checked, and clears it however
/// the check ends (also when the caller gives up and drops the submit), so a stale entry can never
/// make rollbacks refuse.
struct ShownChecking<'a, B: Build>(&'a Builds<B>);

impl<'a, B: Build> ShownChecking<'a, B> {
    fn start(builds: &'a Builds<B>, checking: Checking) -> Self {
        builds.control().checking = Some(checking);
        Self(builds)
    }
}

impl<B: Build> Drop for ShownChecking<'_, B> {
    fn drop(&mut self) {
        self.0.control().checking = None;
    }
}

/// What only role changes touch, under one lock.
struct Control<B> {
    previous: Option<Arc<Placed<B>>>,
    kept: VecDeque<Arc<B>>,
    history: VecDeque<SwapRecord>,
    last_change: LastChange,
    checking: Option<Checking>,
}

/// The builds room, for builds of type `B` (the runtime's compiled build in the host).
pub struct Builds<B: Build = LoadedComponent> {
    check: Check<B>,
    policy: CanaryPolicy,
    metrics: Arc<Metrics>,
    stable: ArcSwap<Placed<B>>,
    canary: ArcSwapOption<Canary<B>>,
    routed: AtomicU64,
    control: Mutex<Control<B>>,
    checking: tokio::sync::Mutex<()>,
    latest: AtomicU64,
    next_canary: AtomicU64,
}

/// Why the first build could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The build refuses this configuration: the one line names each variable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Any other check failed.
    #[error("COMPONENT {reference} cannot be served: {error}")]
    Build {
        /// The COMPONENT reference.
        reference: String,
        /// The check and what it said.
        error: LoadError,
    },
}

impl<B: Build> Builds<B> {
    /// Checks the first build exactly as any candidate (the same door steps, `check`) and makes it the
    /// stable build.
    pub async fn start(
        check: Check<B>,
        policy: CanaryPolicy,
        metrics: Arc<Metrics>,
        candidate: Candidate,
    ) -> Result<Arc<Self>, StartError> {
        for result in SwapResult::ALL {
            metrics.swaps.with_label_values(&[result.name()]);
        }
        let reference = candidate.reference.clone().unwrap_or_else(|| "(unnamed)".into());
        let digest = digest_of(&candidate.bytes).await;
        let checked = match check_identity(&candidate, &digest) {
            Ok(()) => check(candidate.bytes.clone(), digest.clone(), None).await,
            Err(error) => Err(error),
        };
        let build = match checked {
            Ok(build) => build,
            Err(error) if error.step == LoadStep::Config => return Err(StartError::Config(error.reason)),
            Err(error) => return Err(StartError::Build { reference, error }),
        };
        let origin = origin_of(&candidate, &digest);
        metrics.component_info.with_label_values(&[&origin.version, &origin.digest]).set(1);
        let placed = Arc::new(Placed { build: build.clone(), origin: origin.clone(), since: unix_now() });
        let this = Arc::new(Self {
            check,
            policy,
            metrics,
            stable: ArcSwap::new(placed),
            canary: ArcSwapOption::empty(),
            routed: AtomicU64::new(0),
            control: Mutex::new(Control {
                previous: None,
                kept: VecDeque::from([build]),
                history: VecDeque::new(),
                last_change: LastChange::Started,
                checking: None,
            }),
            checking: tokio::sync::Mutex::new(()),
            latest: AtomicU64::new(0),
            next_canary: AtomicU64::new(1),
        });
        let record = this.record(&mut this.control(), &candidate, Some(&origin), None, SwapResult::Ok, None);
        record.log();
        Ok(this)
    }

    /// The stable build and where it came from.
    pub fn stable(&self) -> Arc<Placed<B>> {
        self.stable.load_full()
    }

    /// The running canary, if any.
    pub fn canary(&self) -> Option<Arc<Canary<B>>> {
        self.canary.load_full()
    }

    /// The build that serves a new request, and the canary it counts toward when one runs (the bool:
    /// whether this request goes to the canary).
    pub fn pick(&self, headers: &http::HeaderMap) -> (Arc<B>, Option<Routed<B>>) {
        let stable = self.stable.load().build.clone();
        let Some(canary) = self.canary.load_full() else { return (stable, None) };
        let sticky = headers.get(&self.policy.sticky_header).map(|v| v.as_bytes());
        let to_canary = canary::routes_to_canary(canary.percent, sticky, self.routed.fetch_add(1, Ordering::Relaxed));
        let build = if to_canary { canary.build.clone() } else { stable };
        (build, Some((canary, to_canary)))
    }

    /// **The door.** Checks `candidate` and does what its mode and the settings decide; one candidate
    /// is checked at a time, and when several wait the last one wins. Never fails: the record says how
    /// it ended.
    pub async fn submit(self: &Arc<Self>, candidate: Candidate) -> SwapRecord {
        let ticket = self.latest.fetch_add(1, Ordering::SeqCst) + 1;
        let digest = digest_of(&candidate.bytes).await;
        let origin = origin_of(&candidate, &digest);
        if let Err(error) = check_identity(&candidate, &digest) {
            return self.finish(&candidate, Some(&origin), None, SwapResult::Rejected, Some(error));
        }
        let _one_at_a_time = self.checking.lock().await;
        if self.latest.load(Ordering::SeqCst) != ticket {
            return self.finish(&candidate, Some(&origin), None, SwapResult::Superseded, None);
        }
        let action = {
            let stable = self.stable.load();
            let canary = self.canary.load();
            let roles = Roles { stable: &stable.origin.digest, canary: (*canary).as_ref().map(|c| (c.id, c.origin.digest.as_str())) };
            decide(candidate.mode, &digest, roles, self.policy.source_canary_percent)
        };
        let percent = match action {
            Action::Unchanged => return self.finish(&candidate, Some(&origin), None, SwapResult::Unchanged, None),
            Action::DropCanary(id) => {
                return match self.end_canary(Expect::Id(id), SwapResult::Rollback, candidate.source, None) {
                    Ok(record) => record,
                    Err(_) => self.finish(&candidate, Some(&origin), None, SwapResult::Unchanged, None),
                };
            }
            Action::Swap => None,
            Action::Canary(percent) => Some(percent),
        };
        let kept = self.control().kept.iter().find(|b| b.digest() == digest).cloned();
        let shown =
            ShownChecking::start(self, Checking { version: origin.version.clone(), source: candidate.source, canary: percent.is_some() });
        let checked = (self.check)(candidate.bytes.clone(), digest, kept).await;
        drop(shown);
        let mut control = self.control();
        let build = match checked {
            Ok(build) => build,
            Err(error) => {
                let record = self.record(&mut control, &candidate, Some(&origin), None, SwapResult::Rejected, Some(error));
                drop(control);
                record.log();
                return record;
            }
        };
        // The roles may have moved while it was checked (a promotion, a rollback): act on them as they are now.
        let record = if build.digest() == self.stable.load().origin.digest {
            self.record(&mut control, &candidate, Some(&origin), None, SwapResult::Unchanged, None)
        } else {
            match percent {
                None => self.switch(&mut control, build, origin, &candidate),
                Some(percent) => self.begin_canary(&mut control, build, origin, percent, &candidate),
            }
        };
        drop(control);
        record.log();
        record
    }

    /// Records a candidate its source refused before it reached the door (a registry artifact in the
    /// wrong layout, or unsigned): the running build keeps serving, and the record says why.
    pub fn refuse(&self, candidate: &Candidate, digest: Option<&str>, error: LoadError) -> SwapRecord {
        let origin = digest.map(|d| origin_of(candidate, d.trim_start_matches("sha256:")));
        self.finish(candidate, origin.as_ref(), None, SwapResult::Rejected, Some(error))
    }

    /// Makes the canary named by `expect` the only build. Refused when no canary, or another one, runs.
    pub fn promote(&self, expect: Expect<'_>, source: Source) -> Result<SwapRecord, Refused> {
        let mut control = self.control();
        let canary = self.expected_canary(expect)?;
        self.canary.store(None);
        let request = role_request(source, &canary.origin);
        let record = self.switch(&mut control, canary.build.clone(), canary.origin.clone(), &request);
        drop(control);
        record.log();
        Ok(record)
    }

    /// Drops the canary named by `expect`; the stable build takes all traffic again. `reason` is what
    /// the judge saw. Refused when no canary, or another one, runs.
    pub fn end_canary(
        &self,
        expect: Expect<'_>,
        result: SwapResult,
        source: Source,
        reason: Option<String>,
    ) -> Result<SwapRecord, Refused> {
        let mut control = self.control();
        let canary = self.expected_canary(expect)?;
        self.canary.store(None);
        let stable = self.stable.load_full();
        self.retire(&canary.build, &stable.build);
        control.last_change = LastChange::CanaryEnded { version: canary.origin.version.clone(), result, at: unix_now() };
        let request = role_request(source, &canary.origin);
        let step = reason.as_ref().map(|_| "canary-judgment");
        let mut record = self.record(&mut control, &request, Some(&canary.origin), None, result, None);
        record.step = step;
        record.reason = reason;
        if let Some(last) = control.history.back_mut() {
            last.step = step;
            last.reason.clone_from(&record.reason);
        }
        drop(control);
        record.log();
        Ok(record)
    }

    /// `POST /admin/rollback`: undoes the last role change, or acts on the build `named`.
    /// - a canary runs: it is dropped (the stable build is never touched while a canary is in flight);
    /// - a canary candidate is being checked, or the last change was a canary that already ended:
    ///   refused, naming what happened, unless the stable build is named;
    /// - otherwise (or the stable build named): back to the previous build (kept compiled, so instant).
    pub fn rollback(&self, named: Option<&str>) -> Result<SwapRecord, Refused> {
        let stable = self.stable.load_full();
        let canary = self.canary.load_full();
        match (named, &canary) {
            (None, Some(_)) => return self.end_canary(Expect::Current, SwapResult::Rollback, Source::Rollback, None),
            (Some(version), Some(running)) if running.origin.version == version => {
                return self.end_canary(Expect::Version(version), SwapResult::Rollback, Source::Rollback, None);
            }
            (Some(version), Some(running)) if stable.origin.version == version => {
                return Err(Refused(format!(
                    "canary {} is running: roll it back first (POST /admin/rollback); the stable build {version} was not touched",
                    running.origin.version
                )));
            }
            (Some(version), _) if stable.origin.version != version => {
                return Err(Refused(format!(
                    "{version} is neither the stable build ({}) nor the canary; nothing was changed",
                    stable.origin.version
                )));
            }
            _ => {}
        }
        let mut control = self.control();
        if named.is_none() {
            if let Some(checking) = control.checking.as_ref().filter(|c| c.canary) {
                return Err(Refused(format!(
                    "canary candidate {} is being checked; the stable build {} was not touched (to roll the stable build back, \
                     POST /admin/rollback?version={})",
                    checking.version, stable.origin.version, stable.origin.version
                )));
            }
            if let LastChange::CanaryEnded { version, result, at } = &control.last_change {
                return Err(Refused(format!(
                    "canary {version} already ended ({}, {}s ago); the stable build {} was not touched (to roll it back, \
                     POST /admin/rollback?version={})",
                    result.name(),
                    unix_now().saturating_sub(*at),
                    stable.origin.version,
                    stable.origin.version
                )));
            }
        }
        if !Arc::ptr_eq(&stable, &self.stable.load_full()) || self.canary.load().is_some() {
            return Err(Refused("the builds changed while this rollback was decided; nothing was changed: look again".into()));
        }
        let previous = control.previous.clone().ok_or_else(|| Refused("there is no previous build to roll back to".into()))?;
        let request = role_request(Source::Rollback, &previous.origin);
        let record = self.switch(&mut control, previous.build.clone(), previous.origin.clone(), &request);
        drop(control);
        record.log();
        Ok(record)
    }

    /// `GET /admin/component`: the builds in their roles, where each came from, and the history.
    pub fn describe(&self) -> serde_json::Value {
        let stable = self.stable.load_full();
        let canary = self.canary.load_full().map(|c| {
            serde_json::json!({
                "version": c.origin.version,
                "digest": c.origin.digest,
                "source": c.origin.source,
                "reference": c.origin.reference,
                "percent": c.percent,
                "since": c.since_unix,
                "stable_stats": c.stable.snapshot(),
                "canary_stats": c.candidate.snapshot(),
            })
        });
        let control = self.control();
        serde_json::json!({
            "running": placed_json(&stable),
            "canary": canary,
            "previous": control.previous.as_deref().map(placed_json),
            "checking": control.checking,
            "history": control.history,
        })
    }

    /// The canary `expect` names, if it is the one running now.
    fn expected_canary(&self, expect: Expect<'_>) -> Result<Arc<Canary<B>>, Refused> {
        let canary = self.canary.load_full().ok_or_else(|| Refused("there is no canary".into()))?;
        let matches = match expect {
            Expect::Current => true,
            Expect::Id(id) => canary.id == id,
            Expect::Version(version) => canary.origin.version == version,
        };
        if matches {
            Ok(canary)
        } else {
            Err(Refused(format!("the running canary is {}, not the one named; nothing was changed", canary.origin.version)))
        }
    }

    /// Makes `build` the stable build (ending any canary). Caller holds `control`.
    fn switch(&self, control: &mut Control<B>, build: Arc<B>, origin: Origin, request: &Candidate) -> SwapRecord {
        let running = self.stable.load_full();
        if let Some(canary) = self.canary.swap(None) {
            self.retire(&canary.build, &build);
        }
        self.keep(control, &build);
        build.revive();
        let placed = Arc::new(Placed { build: build.clone(), origin: origin.clone(), since: unix_now() });
        self.stable.store(placed);
        // Instances of the old build retire: idle ones now, busy ones when their request ends.
        self.retire(&running.build, &build);
        control.previous = Some(running.clone());
        control.last_change = LastChange::Swapped;
        self.metrics.component_info.with_label_values(&[&origin.version, &origin.digest]).set(1);
        let record = self.record(control, request, Some(&origin), Some(&running.origin.version), SwapResult::Ok, None);
        self.metrics.swap_seconds.observe(record.seconds);
        record
    }

    /// Starts `build` as a canary at `percent`, replacing any canary. Caller holds `control`.
    fn begin_canary(&self, control: &mut Control<B>, build: Arc<B>, origin: Origin, percent: u8, request: &Candidate) -> SwapRecord {
        self.keep(control, &build);
        build.revive();
        let id = self.next_canary.fetch_add(1, Ordering::Relaxed);
        let stable = self.stable.load_full();
        if let Some(replaced) = self.canary.swap(Some(Arc::new(Canary::new(id, build.clone(), origin.clone(), percent)))) {
            self.retire(&replaced.build, &build);
        }
        control.last_change = LastChange::CanaryStarted;
        self.metrics.component_info.with_label_values(&[&origin.version, &origin.digest]).set(1);
        self.record(control, request, Some(&origin), Some(&stable.origin.version), SwapResult::Canary, None)
    }

    /// Keeps `build` compiled. When a build falls out of the kept set, the metric series of every
    /// version that is neither kept nor in a role (stable, canary, previous) go: such a build can come
    /// back only as a new candidate.
    fn keep(&self, control: &mut Control<B>, build: &Arc<B>) {
        if keep(&mut control.kept, build).is_none() {
            return;
        }
        let stable = self.stable.load_full();
        let canary = self.canary.load_full();
        let mut live: Vec<&str> = control.kept.iter().map(|b| b.version()).collect();
        live.push(&stable.origin.version);
        live.extend(canary.as_ref().map(|c| c.origin.version.as_str()));
        live.extend(control.previous.as_ref().map(|p| p.origin.version.as_str()));
        self.metrics.forget_versions_except(&live);
    }

    /// `build` stops serving unless it is `kept_serving` (or the other role's build).
    fn retire(&self, build: &Arc<B>, kept_serving: &Arc<B>) {
        let still_serving = Arc::ptr_eq(build, kept_serving)
            || Arc::ptr_eq(build, &self.stable.load().build)
            || (*self.canary.load()).as_ref().is_some_and(|c| Arc::ptr_eq(&c.build, build));
        if !still_serving {
            build.retire();
            let _ = self.metrics.component_info.remove_label_values(&[build.version(), build.digest()]);
        }
    }

    /// Records an attempt that never reached the roles (skipped before its check, or rejected early).
    fn finish(
        &self,
        candidate: &Candidate,
        origin: Option<&Origin>,
        previous: Option<&str>,
        result: SwapResult,
        error: Option<LoadError>,
    ) -> SwapRecord {
        let record = self.record(&mut self.control(), candidate, origin, previous, result, error);
        record.log();
        record
    }

    /// Counts, remembers and returns the record of one attempt. Caller holds `control` (passed in).
    fn record(
        &self,
        control: &mut Control<B>,
        candidate: &Candidate,
        origin: Option<&Origin>,
        previous: Option<&str>,
        result: SwapResult,
        error: Option<LoadError>,
    ) -> SwapRecord {
        let seconds = candidate.noticed.elapsed().as_secs_f64();
        // The first build is recorded like any other, but it is not a swap.
        if candidate.source != Source::Startup {
            self.metrics.swaps.with_label_values(&[result.name()]).inc();
        }
        let stable_version = || self.stable.load().origin.version.clone();
        let record = SwapRecord {
            at: unix_now().saturating_sub(candidate.noticed.elapsed().as_secs()),
            source: candidate.source,
            reference: origin.and_then(|o| o.reference.clone()).or_else(|| candidate.reference.clone()),
            digest: origin.map(|o| o.digest.clone()),
            version: origin.map(|o| o.version.clone()),
            previous: previous.map(str::to_owned).or_else(|| (candidate.source != Source::Startup).then(stable_version)),
            result,
            step: error.as_ref().map(|e| e.step.name()),
            reason: error.map(|e| crate::telemetry::redact::redact(&e.reason)),
            seconds,
        };
        if control.history.len() == HISTORY_LEN {
            control.history.pop_front();
        }
        control.history.push_back(record.clone());
        record
    }

    fn control(&self) -> MutexGuard<'_, Control<B>> {
        self.control.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The checks that need only the bytes: the size limit, and the digest the source promised.
fn check_identity(candidate: &Candidate, digest: &str) -> Result<(), LoadError> {
    if candidate.bytes.len() > MAX_COMPONENT_BYTES {
        return Err(LoadError::new(
            LoadStep::Size,
            format!("{} bytes is more than the {MAX_COMPONENT_BYTES} bytes any source may deliver", candidate.bytes.len()),
        ));
    }
    match candidate.expected_digest.as_deref().map(|d| d.trim_start_matches("sha256:")) {
        Some(expected) if !expected.eq_ignore_ascii_case(digest) => {
            Err(LoadError::new(LoadStep::Digest, format!("the bytes hash to sha256:{digest}, not the promised sha256:{expected}")))
        }
        _ => Ok(()),
    }
}

/// sha256 of `bytes`, off the async threads (a candidate may be tens of MiB).
async fn digest_of(bytes: &Bytes) -> String {
    let bytes = bytes.clone();
    match tokio::task::spawn_blocking(move || digest(&bytes)).await {
        Ok(digest) => digest,
        Err(_) => digest(&[]),
    }
}

fn origin_of(candidate: &Candidate, digest: &str) -> Origin {
    Origin {
        source: candidate.source,
        reference: candidate.reference.clone(),
        digest: digest.to_owned(),
        version: version_of_digest(digest).to_owned(),
    }
}

/// The request behind a role change that has no bytes of its own (promote, rollback, drop).
fn role_request(source: Source, about: &Origin) -> Candidate {
    Candidate {
        bytes: Bytes::new(),
        source,
        reference: about.reference.clone(),
        expected_digest: None,
        mode: Mode::Swap,
        noticed: Instant::now(),
    }
}

/// Keeps `build` compiled (most recent last); returns the build that fell out, if any.
fn keep<B: Build>(kept: &mut VecDeque<Arc<B>>, build: &Arc<B>) -> Option<Arc<B>> {
    kept.retain(|c| c.digest() != build.digest());
    let evicted = if kept.len() == KEPT_BUILDS { kept.pop_front() } else { None };
    kept.push_back(build.clone());
    evicted
}

fn placed_json<B>(placed: &Placed<B>) -> serde_json::Value {
    serde_json::json!({
        "version": placed.origin.version,
        "digest": placed.origin.digest,
        "source": placed.origin.source,
        "reference": placed.origin.reference,
        "since": placed.since,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use tokio::sync::oneshot;

    /// A build with an identity and nothing to run.
    struct Fake {
        digest: String,
        version: String,
        retired: AtomicBool,
    }

    impl Build for Fake {
        fn digest(&self) -> &str {
            &self.digest
        }
        fn version(&self) -> &str {
            &self.version
        }
        fn retire(&self) {
            self.retired.store(true, Ordering::SeqCst);
        }
        fn revive(&self) {
            self.retired.store(false, Ordering::SeqCst);
        }
        fn sweep(&self) {}
    }

    /// Candidates whose bytes are their name; the check passes unless the name starts with `bad`, and
    /// waits for the test first when the name is registered in `held`.
    type Held = Arc<Mutex<Vec<(String, oneshot::Receiver<()>)>>>;

    fn check(held: Held) -> Check<Fake> {
        Arc::new(move |bytes, digest, kept| {
            let held = held.clone();
            Box::pin(async move {
                let name = String::from_utf8_lossy(&bytes).into_owned();
                let wait = {
                    let mut held = held.lock().expect("held");
                    held.iter().position(|(n, _)| *n == name).map(|i| held.remove(i).1)
                };
                if let Some(wait) = wait {
                    let _ = wait.await;
                }
                if name.starts_with("bad") {
                    return Err(LoadError::new(LoadStep::SmokeTest, format!("{name} answered 500")));
                }
                Ok(kept.unwrap_or_else(|| {
                    Arc::new(Fake { version: version_of_digest(&digest).to_owned(), digest, retired: AtomicBool::new(false) })
                }))
            })
        })
    }

    fn policy(canary_percent: Option<u8>) -> CanaryPolicy {
        crate::config::tests::parse(&[]).expect("defaults").canary.policy().tap(|p| p.source_canary_percent = canary_percent)
    }

    trait Tap: Sized {
        fn tap(mut self, f: impl FnOnce(&mut Self)) -> Self {
            f(&mut self);
            self
        }
    }
    impl Tap for CanaryPolicy {}

    fn candidate(name: &str, source: Source, mode: Mode) -> Candidate {
        Candidate {
            bytes: Bytes::from(name.to_owned()),
            source,
            reference: Some(format!("/volume/{name}")),
            expected_digest: None,
            mode,
            noticed: Instant::now(),
        }
    }

    fn version(name: &str) -> String {
        version_of_digest(&digest(name.as_bytes())).to_owned()
    }

    async fn started(canary_percent: Option<u8>) -> (Arc<Builds<Fake>>, Held) {
        let held: Held = Arc::default();
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let builds = Builds::start(check(held.clone()), policy(canary_percent), metrics, candidate("one", Source::Startup, Mode::Policy))
            .await
            .expect("the first build starts");
        (builds, held)
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
    }

    /// Submits `name` on its own task; its check waits until the returned sender is used (or dropped).
    fn submit_held(
        builds: &Arc<Builds<Fake>>,
        held: &Held,
        name: &str,
        source: Source,
        mode: Mode,
    ) -> (tokio::task::JoinHandle<SwapRecord>, oneshot::Sender<()>) {
        let (release, wait) = oneshot::channel();
        held.lock().expect("held").push((name.to_owned(), wait));
        let (builds, name) = (builds.clone(), name.to_owned());
        (tokio::spawn(async move { builds.submit(candidate(&name, source, mode)).await }), release)
    }

    /// Waits (bounded) until the door is checking `name`.
    async fn until_checking(builds: &Builds<Fake>, name: &str) {
        for _ in 0..500 {
            if builds.describe()["checking"]["version"] == version(name).as_str() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        panic!("{name} is never checked");
    }

    fn canary_version(builds: &Builds<Fake>) -> Option<String> {
        builds.canary().map(|c| c.origin.version.clone())
    }

    #[test]
    fn startup_is_recorded_like_every_candidate_with_where_it_came_from() {
        runtime().block_on(async {
            let (builds, _) = started(None).await;
            let state = builds.describe();
            assert_eq!(state["running"]["version"], version("one").as_str());
            assert_eq!(state["running"]["source"], "startup");
            assert_eq!(state["running"]["reference"], "/volume/one");
            let first = &state["history"][0];
            assert_eq!((first["source"].as_str(), first["result"].as_str()), (Some("startup"), Some("ok")));
            assert_eq!(first["digest"], digest(b"one").as_str());
        });
    }

    #[test]
    fn a_promise_the_bytes_do_not_keep_is_rejected_before_any_check() {
        runtime().block_on(async {
            let (builds, _) = started(None).await;
            let mut lying = candidate("two", Source::Admin, Mode::Swap);
            lying.expected_digest = Some(format!("sha256:{}", digest(b"three")));
            let record = builds.submit(lying).await;
            assert_eq!((record.result, record.step), (SwapResult::Rejected, Some("digest")));
            let mut honest = candidate("two", Source::Admin, Mode::Swap);
            honest.expected_digest = Some(format!("sha256:{}", digest(b"two")));
            assert_eq!(builds.submit(honest).await.result, SwapResult::Ok);
        });
    }

    #[test]
    fn the_last_of_several_waiting_candidates_wins() {
        runtime().block_on(async {
            let (builds, held) = started(None).await;
            let (first, release) = submit_held(&builds, &held, "slow", Source::File, Mode::Policy);
            until_checking(&builds, "slow").await;
            let second = tokio::spawn({
                let builds = builds.clone();
                async move { builds.submit(candidate("second", Source::File, Mode::Policy)).await }
            });
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            let third = tokio::spawn({
                let builds = builds.clone();
                async move { builds.submit(candidate("third", Source::Admin, Mode::Swap)).await }
            });
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            let _ = release.send(());
            let (first, second, third) = (first.await.expect("first"), second.await.expect("second"), third.await.expect("third"));
            assert_eq!(first.result, SwapResult::Ok, "the one being checked finishes");
            assert_eq!((second.result, second.version.as_deref()), (SwapResult::Superseded, Some(version("second").as_str())));
            assert_eq!(third.result, SwapResult::Ok, "the last one wins");
            assert_eq!(builds.stable().origin.version, version("third"));
        });
    }

    #[test]
    fn a_verdict_names_its_canary_and_does_nothing_to_the_next_one() {
        runtime().block_on(async {
            let (builds, _) = started(None).await;
            assert_eq!(builds.submit(candidate("a", Source::Admin, Mode::Canary(10))).await.result, SwapResult::Canary);
            let judged = builds.canary().expect("canary a").id;
            assert_eq!(builds.submit(candidate("b", Source::Admin, Mode::Canary(10))).await.result, SwapResult::Canary);
            let verdict = builds.end_canary(Expect::Id(judged), SwapResult::AutoRollback, Source::CanaryJudge, Some("5xx".into()));
            assert!(verdict.is_err(), "a's verdict is refused");
            assert!(builds.promote(Expect::Id(judged), Source::CanaryJudge).is_err(), "a's promotion is refused");
            assert_eq!(canary_version(&builds), Some(version("b")));
            assert_eq!(builds.stable().origin.version, version("one"), "nothing was promoted");
            let current = builds.canary().expect("b").id;
            let promoted = builds.promote(Expect::Id(current), Source::CanaryJudge).expect("b is promoted by its own verdict");
            assert_eq!((promoted.result, promoted.source), (SwapResult::Ok, Source::CanaryJudge));
            assert_eq!(builds.stable().origin.version, version("b"));
            assert_eq!(builds.stable().origin.source, Source::Admin, "where it came from survives the promotion");
        });
    }

    #[test]
    fn a_replaced_canary_retires_unless_it_is_the_stable_build() {
        runtime().block_on(async {
            let (builds, _) = started(None).await;
            builds.submit(candidate("a", Source::Admin, Mode::Canary(10))).await;
            let a = builds.canary().expect("a").build.clone();
            builds.submit(candidate("b", Source::Admin, Mode::Canary(10))).await;
            assert!(a.retired.load(Ordering::SeqCst), "a no longer serves");
            assert!(!builds.stable().build.retired.load(Ordering::SeqCst));
        });
    }

    #[test]
    fn rollback_drops_a_running_canary_and_never_touches_the_stable_build_right_after_one() {
        runtime().block_on(async {
            let (builds, _) = started(None).await;
            builds.submit(candidate("two", Source::Admin, Mode::Swap)).await;
            builds.submit(candidate("canary", Source::Admin, Mode::Canary(20))).await;
            let dropped = builds.rollback(None).expect("drops the canary");
            assert_eq!((dropped.result, dropped.version.as_deref()), (SwapResult::Rollback, Some(version("canary").as_str())));
            assert_eq!(builds.stable().origin.version, version("two"));
            let refused = builds.rollback(None).expect_err("the last change was a canary that ended");
            assert!(refused.0.contains("already ended"), "{refused}");
            assert_eq!(builds.stable().origin.version, version("two"), "the stable build was not touched");
            assert!(builds.rollback(Some("nonsense")).is_err(), "a build in no role");
            let named = builds.rollback(Some(&version("two"))).expect("naming the stable build rolls it back");
            assert_eq!(named.result, SwapResult::Ok);
            assert_eq!(builds.stable().origin.version, version("one"));
            let again = builds.rollback(None).expect("after a swap, rollback goes back again");
            assert_eq!(again.version.as_deref(), Some(version("two").as_str()));
        });
    }

    #[test]
    fn rollback_with_a_canary_candidate_being_checked_is_refused() {
        runtime().block_on(async {
            let (builds, held) = started(None).await;
            builds.submit(candidate("two", Source::Admin, Mode::Swap)).await;
            let (pending, release) = submit_held(&builds, &held, "pending", Source::Admin, Mode::Canary(5));
            until_checking(&builds, "pending").await;
            let refused = builds.rollback(None).expect_err("a canary is in flight");
            assert!(refused.0.contains("being checked"), "{refused}");
            let promoted = builds.promote(Expect::Current, Source::Promote);
            assert!(promoted.is_err(), "nothing to promote yet");
            let _ = release.send(());
            assert_eq!(pending.await.expect("pending").result, SwapResult::Canary);
            assert_eq!(builds.stable().origin.version, version("two"));
        });
    }

    #[test]
    fn a_submit_given_up_half_way_leaves_no_stale_candidate_behind() {
        runtime().block_on(async {
            let (builds, held) = started(None).await;
            builds.submit(candidate("two", Source::Admin, Mode::Swap)).await;
            let (abandoned, _never_released) = submit_held(&builds, &held, "abandoned", Source::Admin, Mode::Canary(5));
            until_checking(&builds, "abandoned").await;
            abandoned.abort();
            let _ = abandoned.await;
            assert!(builds.describe()["checking"].is_null(), "nothing is shown as being checked");
            assert_eq!(builds.rollback(None).expect("rollback is not refused").result, SwapResult::Ok);
        });
    }

    #[test]
    fn a_rejected_candidate_leaves_every_role_as_it_was() {
        runtime().block_on(async {
            let (builds, _) = started(None).await;
            let record = builds.submit(candidate("bad-build", Source::File, Mode::Policy)).await;
            assert_eq!((record.result, record.step), (SwapResult::Rejected, Some("smoke-test")));
            assert_eq!(builds.stable().origin.version, version("one"));
            assert!(builds.canary().is_none());
            assert_eq!(builds.submit(candidate("one", Source::File, Mode::Policy)).await.result, SwapResult::Unchanged);
        });
    }

    #[test]
    fn with_canary_percent_the_file_starts_canaries_and_the_stable_build_back_drops_one() {
        runtime().block_on(async {
            let (builds, _) = started(Some(25)).await;
            let started = builds.submit(candidate("next", Source::File, Mode::Policy)).await;
            assert_eq!(started.result, SwapResult::Canary);
            assert_eq!(builds.canary().map(|c| c.percent), Some(25));
            assert_eq!(builds.submit(candidate("next", Source::File, Mode::Policy)).await.result, SwapResult::Unchanged);
            let dropped = builds.submit(candidate("one", Source::File, Mode::Policy)).await;
            assert_eq!((dropped.result, dropped.source), (SwapResult::Rollback, Source::File));
            assert!(builds.canary().is_none());
        });
    }

    #[test]
    fn the_judge_rolls_back_a_worse_canary_by_its_id() {
        runtime().block_on(async {
            let (builds, _) = started(None).await;
            builds.submit(candidate("worse", Source::Admin, Mode::Canary(50))).await;
            let canary = builds.canary().expect("canary");
            for _ in 0..60 {
                canary.candidate.record(500, std::time::Duration::from_millis(1));
                canary.stable.record(200, std::time::Duration::from_millis(1));
            }
            let verdict = canary::judge(&canary.stable.snapshot(), &canary.candidate.snapshot(), canary.since.elapsed(), &builds.policy);
            let canary::Verdict::Rollback(reason) = verdict else { panic!("a worse canary is rolled back: {verdict:?}") };
            let record =
                builds.end_canary(Expect::Id(canary.id), SwapResult::AutoRollback, Source::CanaryJudge, Some(reason)).expect("by id");
            assert_eq!((record.step, record.version.as_deref()), (Some("canary-judgment"), Some(version("worse").as_str())));
            let history = builds.describe()["history"].as_array().expect("history").clone();
            assert_eq!(history.last().map(|r| r["result"].clone()), Some(serde_json::json!("auto_rollback")));
        });
    }
}
