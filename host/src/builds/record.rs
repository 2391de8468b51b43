//! The one record shape of where a build came from and what happened to it: the same fields in
//! `GET /admin/component` (running, canary, previous, history), in the `result` metric label and in
//! the log line each change writes.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Where a candidate or a role change came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// `COMPONENT` at startup.
    Startup,
    /// The watched `COMPONENT` file changed.
    File,
    /// The `COMPONENT` registry tag moved to a new digest.
    Registry,
    /// `PUT /admin/component`.
    Admin,
    /// `POST /admin/rollback`.
    Rollback,
    /// `POST /admin/promote`.
    Promote,
    /// The canary judge (auto rollback or auto promotion).
    CanaryJudge,
}

impl Source {
    /// The word in records and log lines.
    pub fn name(self) -> &'static str {
        match self {
            Self::Startup => "startup",
            Self::File => "file",
            Self::Registry => "registry",
            Self::Admin => "admin",
            Self::Rollback => "rollback",
            Self::Promote => "promote",
            Self::CanaryJudge => "canary-judge",
        }
    }
}

/// How an attempt ended (the same word in the history and in the `result` metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SwapResult {
    /// The candidate (or the promoted canary, or the rolled-back-to build) serves all traffic.
    Ok,
    /// A check failed; the running build kept serving.
    Rejected,
    /// A newer change arrived before this one was checked; it was skipped.
    Superseded,
    /// The candidate is the build already in the role asked for.
    Unchanged,
    /// The candidate passed every check and now takes a share of traffic as a canary.
    Canary,
    /// An operator (or the source) dropped the canary.
    Rollback,
    /// The judge dropped the canary: it answered worse than the stable build.
    AutoRollback,
}

impl SwapResult {
    /// Every result, so each `stock_host_swaps_total{result}` series exists at zero.
    pub const ALL: [Self; 7] =
        [Self::Ok, Self::Rejected, Self::Superseded, Self::Unchanged, Self::Canary, Self::Rollback, Self::AutoRollback];

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

/// Where a build came from: the same three facts for the running build, the canary, the previous
/// build and every record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Origin {
    /// Which source delivered it.
    pub source: Source,
    /// What that source calls it (the COMPONENT path; `None` for an upload).
    pub reference: Option<String>,
    /// sha256 of its bytes, lower-case hex.
    pub digest: String,
    /// First 12 hex digits of the digest: the version in headers, labels and logs.
    pub version: String,
}

/// One attempt or role change, as `GET /admin/component` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SwapRecord {
    /// Unix seconds when the change was noticed, uploaded or asked for.
    pub at: u64,
    /// Where it came from.
    pub source: Source,
    /// What the source calls the build (COMPONENT path), when it has a name.
    pub reference: Option<String>,
    /// The build's whole digest, when its bytes were read.
    pub digest: Option<String>,
    /// The build's version (first 12 hex of its digest).
    pub version: Option<String>,
    /// The stable build before the change.
    pub previous: Option<String>,
    /// How it ended.
    pub result: SwapResult,
    /// The check (or judgment) that refused or ended it.
    pub step: Option<&'static str>,
    /// What that check said (scrubbed of secrets).
    pub reason: Option<String>,
    /// From the change being noticed to the end of the attempt.
    pub seconds: f64,
}

impl SwapRecord {
    /// Writes the record's log line: one per change, naming the build and where it came from.
    pub fn log(&self) {
        let (source, version, result) = (self.source.name(), self.version.as_deref().unwrap_or("-"), self.result.name());
        let reference = self.reference.as_deref().unwrap_or("-");
        let previous = self.previous.as_deref().unwrap_or("-");
        match (self.result, self.step, self.reason.as_deref()) {
            (SwapResult::Rejected, step, reason) => tracing::warn!(
                source,
                reference,
                version,
                step = step.unwrap_or("-"),
                reason = reason.unwrap_or("-"),
                "component build rejected; the running build keeps serving"
            ),
            (SwapResult::Ok, _, _) => {
                tracing::info!(source, reference, version, previous, seconds = self.seconds, "component build is live")
            }
            (SwapResult::Canary, _, _) => tracing::info!(source, reference, version, stable = previous, "canary started"),
            (SwapResult::AutoRollback, _, reason) => tracing::warn!(
                source,
                version,
                stable = previous,
                result,
                reason = reason.unwrap_or("-"),
                "canary rolled back by the judge; the stable build takes all traffic"
            ),
            (SwapResult::Rollback, _, _) => {
                tracing::info!(source, version, stable = previous, result, "canary dropped; the stable build takes all traffic")
            }
            (SwapResult::Superseded | SwapResult::Unchanged, _, _) => {
                tracing::info!(source, reference, version, result, "component change skipped")
            }
        }
    }
}

/// Now, as Unix seconds.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
