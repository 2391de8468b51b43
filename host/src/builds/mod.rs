//! The builds that serve: the stable build, an optional canary, the previous build, the last few
//! compiled builds and the history, behind **one door**: [`Builds::submit`]. Every source (startup,
//! the watched file, an admin upload; later a registry) only makes a [`Candidate`] and submits it;
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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use arc_swap::{ArcSwap, ArcSwapOption};
use bytes::Bytes;
use serde::Serialize;

use crate::config::canary::CanaryPolicy;
use crate::runtime::Runtime;
use crate::runtime::engine::{LoadError, LoadStep, LoadedComponent, digest, version_of_digest};
use crate::runtime::status::BuildReport;
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

/// A build some source wants to run.
pub struct Candidate {
    /// Its bytes (a component; `.wat` text is accepted too).
    pub bytes: Bytes,
    /// Which source delivered it.
    pub source: Source,
    /// What that source calls it (the COMPONENT path; a registry reference later).
    pub reference: Option<String>,
    /// The digest the source promises (hex sha256); the bytes must match it.
    pub expected_digest: Option<String>,
    /// What the source asks for.
    pub mode: Mode,
    /// When the source noticed it, so records measure change-to-live.
    pub noticed: Instant,
}

/// A build in a role, with where it came from.
pub struct Placed {
    /// The compiled build.
    pub build: Arc<LoadedComponent>,
    /// Where it came from.
    pub origin: Origin,
    /// Since when it has had its role (Unix seconds).
    pub since: u64,
}

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

/// What only role changes touch, under one lock.
struct Control {
    previous: Option<Arc<Placed>>,
    kept: VecDeque<Arc<LoadedComponent>>,
    history: VecDeque<SwapRecord>,
    last_change: LastChange,
    checking: Option<Checking>,
}

/// The builds room.
pub struct Builds {
    runtime: Arc<Runtime>,
    policy: CanaryPolicy,
    metrics: Arc<Metrics>,
    stable: ArcSwap<Placed>,
    canary: ArcSwapOption<Canary>,
    routed: AtomicU64,
    control: Mutex<Control>,
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

impl Builds {
    /// Checks the first build exactly as any candidate (the same door steps) and makes it the stable
    /// build; on success also returns its status report (for the first metrics).
    pub async fn start(runtime: Arc<Runtime>, policy: CanaryPolicy, candidate: Candidate) -> Result<(Arc<Self>, BuildReport), StartError> {
        let metrics = runtime.metrics().clone();
        for result in SwapResult::ALL {
            metrics.swaps.with_label_values(&[result.name()]);
        }
        let reference = candidate.reference.clone().unwrap_or_else(|| "(unnamed)".into());
        let digest = digest_of(&candidate.bytes).await;
        let checked = match check_identity(&candidate, &digest) {
            Ok(()) => prepare(&runtime, None, candidate.bytes.clone(), digest.clone()).await,
            Err(error) => Err(error),
        };
        let (build, report) = match checked {
            Ok(ready) => ready,
            Err(error) if error.step == LoadStep::Config => return Err(StartError::Config(error.reason)),
            Err(error) => return Err(StartError::Build { reference, error }),
        };
        let origin = origin_of(&candidate, &digest);
        metrics.component_info.with_label_values(&[&origin.version]).set(1);
        let placed = Arc::new(Placed { build: build.clone(), origin: origin.clone(), since: unix_now() });
        let this = Arc::new(Self {
            runtime,
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
        Ok((this, report))
    }

    /// The runtime builds run on.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// The stable build and where it came from.
    pub fn stable(&self) -> Arc<Placed> {
        self.stable.load_full()
    }

    /// The running canary, if any.
    pub fn canary(&self) -> Option<Arc<Canary>> {
        self.canary.load_full()
    }

    /// The build that serves a new request, and the canary it counts toward when one runs (the bool:
    /// whether this request goes to the canary).
    pub fn pick(&self, headers: &http::HeaderMap) -> (Arc<LoadedComponent>, Option<(Arc<Canary>, bool)>) {
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
        let kept = self.control().kept.iter().find(|b| b.digest == digest).cloned();
        self.control().checking = Some(Checking { version: origin.version.clone(), source: candidate.source, canary: percent.is_some() });
        let checked = prepare(&self.runtime, kept, candidate.bytes.clone(), digest).await;
        let mut control = self.control();
        control.checking = None;
        let build = match checked {
            Ok((build, _report)) => build,
            Err(error) => {
                let record = self.record(&mut control, &candidate, Some(&origin), None, SwapResult::Rejected, Some(error));
                drop(control);
                record.log();
                return record;
            }
        };
        // The roles may have moved while it was checked (a promotion, a rollback): act on them as they are now.
        let record = if build.digest == self.stable.load().origin.digest {
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
    fn expected_canary(&self, expect: Expect<'_>) -> Result<Arc<Canary>, Refused> {
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
    fn switch(&self, control: &mut Control, build: Arc<LoadedComponent>, origin: Origin, request: &Candidate) -> SwapRecord {
        let running = self.stable.load_full();
        if let Some(canary) = self.canary.swap(None) {
            self.retire(&canary.build, &build);
        }
        keep(&mut control.kept, &build);
        build.pool.revive();
        let placed = Arc::new(Placed { build: build.clone(), origin: origin.clone(), since: unix_now() });
        self.stable.store(placed);
        // Instances of the old build retire: idle ones now, busy ones when their request ends.
        self.retire(&running.build, &build);
        control.previous = Some(running.clone());
        control.last_change = LastChange::Swapped;
        self.metrics.component_info.with_label_values(&[&origin.version]).set(1);
        let record = self.record(control, request, Some(&origin), Some(&running.origin.version), SwapResult::Ok, None);
        self.metrics.swap_seconds.observe(record.seconds);
        record
    }

    /// Starts `build` as a canary at `percent`, replacing any canary. Caller holds `control`.
    fn begin_canary(
        &self,
        control: &mut Control,
        build: Arc<LoadedComponent>,
        origin: Origin,
        percent: u8,
        request: &Candidate,
    ) -> SwapRecord {
        keep(&mut control.kept, &build);
        build.pool.revive();
        let id = self.next_canary.fetch_add(1, Ordering::Relaxed);
        let stable = self.stable.load_full();
        if let Some(replaced) = self.canary.swap(Some(Arc::new(Canary::new(id, build.clone(), origin.clone(), percent)))) {
            self.retire(&replaced.build, &build);
        }
        control.last_change = LastChange::CanaryStarted;
        self.metrics.component_info.with_label_values(&[&origin.version]).set(1);
        self.record(control, request, Some(&origin), Some(&stable.origin.version), SwapResult::Canary, None)
    }

    /// `build` stops serving unless it is `kept_serving` (or the other role's build).
    fn retire(&self, build: &Arc<LoadedComponent>, kept_serving: &Arc<LoadedComponent>) {
        let still_serving = Arc::ptr_eq(build, kept_serving)
            || Arc::ptr_eq(build, &self.stable.load().build)
            || self.canary.load().as_ref().is_some_and(|c| Arc::ptr_eq(&c.build, build));
        if !still_serving {
            build.pool.retire();
            let _ = self.metrics.component_info.remove_label_values(&[&build.version]);
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
        control: &mut Control,
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

    fn control(&self) -> MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Compiles `bytes` (or takes the `kept` build with the same digest) and smoke-tests it; no role lock
/// is held, and every step is bounded.
async fn prepare(
    runtime: &Arc<Runtime>,
    kept: Option<Arc<LoadedComponent>>,
    bytes: Bytes,
    digest: String,
) -> Result<(Arc<LoadedComponent>, BuildReport), LoadError> {
    let build = match kept {
        Some(kept) => kept,
        None => Arc::new(runtime.compile(bytes, digest).await?),
    };
    let report = runtime.smoke_test(&build).await?;
    Ok((build, report))
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

fn keep(kept: &mut VecDeque<Arc<LoadedComponent>>, build: &Arc<LoadedComponent>) {
    kept.retain(|c| c.digest != build.digest);
    if kept.len() == KEPT_BUILDS {
        kept.pop_front();
    }
    kept.push_back(build.clone());
}

fn placed_json(placed: &Placed) -> serde_json::Value {
    serde_json::json!({
        "version": placed.origin.version,
        "digest": placed.origin.digest,
        "source": placed.origin.source,
        "reference": placed.origin.reference,
        "since": placed.since,
    })
}
