//! The builds room's own background work: the canary judge and the idle-instance sweep. Both stop
//! when [`BackgroundTasks`] is dropped.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::canary::{Verdict, judge};
use super::{Build, Builds, Expect, Source, SwapResult};

/// How often the canary's numbers are compared with the stable build's.
const JUDGE_EVERY: Duration = Duration::from_millis(250);

/// The judge and the sweep; stops them when dropped.
pub struct BackgroundTasks(Vec<JoinHandle<()>>);

impl BackgroundTasks {
    /// Starts judging canaries and sweeping idle instances of `builds` (every `sweep_every`).
    pub fn spawn<B: Build>(builds: Arc<Builds<B>>, sweep_every: Duration) -> Self {
        Self(vec![tokio::spawn(judge_canaries(builds.clone())), tokio::spawn(sweep_idle(builds, sweep_every))])
    }
}

impl Drop for BackgroundTasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Rolls a running canary back (or promotes it) as [`judge`] decides. Each verdict names the canary
/// it was reached on: if that canary is gone by the time it acts, nothing happens.
async fn judge_canaries<B: Build>(builds: Arc<Builds<B>>) {
    let mut tick = tokio::time::interval(JUDGE_EVERY);
    loop {
        tick.tick().await;
        let Some(running) = builds.canary() else { continue };
        let (stable, candidate) = (running.stable.snapshot(), running.candidate.snapshot());
        let outcome = match judge(&stable, &candidate, running.since.elapsed(), &builds.policy) {
            Verdict::Wait => continue,
            Verdict::Rollback(reason) => {
                builds.end_canary(Expect::Id(running.id), SwapResult::AutoRollback, Source::CanaryJudge, Some(reason))
            }
            Verdict::Promote => builds.promote(Expect::Id(running.id), Source::CanaryJudge),
        };
        if let Err(refused) = outcome {
            tracing::debug!(canary = %running.origin.version, %refused, "the judged canary is gone; verdict dropped");
        }
    }
}

/// Retires idle instances of the stable build and of a canary once they pass INSTANCE_IDLE_TIMEOUT.
async fn sweep_idle<B: Build>(builds: Arc<Builds<B>>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        builds.stable().build.sweep();
        if let Some(canary) = builds.canary() {
            canary.build.sweep();
        }
    }
}
