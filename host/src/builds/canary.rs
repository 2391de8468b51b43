//! Canary rollouts inside the pod: a candidate build takes a share of new requests (sticky per client
//! when the client sends the configured header), both versions' answers are counted over the same
//! window, and a judge rolls the candidate back when it answers worse (5xx ratio, p99) than the
//! stable build, or promotes it after a healthy period when that is configured.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::record::Origin;
use crate::config::canary::CanaryPolicy;
use crate::runtime::engine::LoadedComponent;

/// Upper bounds (ms) of the latency buckets used to estimate p99.
const BUCKETS_MS: [f64; 14] = [0.5, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, f64::INFINITY];

/// One version's answers since the canary began.
#[derive(Default)]
pub struct VersionStats {
    requests: AtomicU64,
    server_errors: AtomicU64,
    buckets: [AtomicU64; BUCKETS_MS.len()],
}

/// A copy of [`VersionStats`] for judging and reporting.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Snapshot {
    /// Requests answered.
    pub requests: u64,
    /// Of which 5xx.
    pub server_errors: u64,
    /// `server_errors / requests` (0 without requests).
    pub error_ratio: f64,
    /// Upper bound of the bucket holding the 99th percentile, in ms; `None` without requests.
    pub p99_ms: Option<f64>,
}

impl VersionStats {
    /// Counts one answer.
    pub fn record(&self, status: u16, elapsed: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if status >= 500 {
            self.server_errors.fetch_add(1, Ordering::Relaxed);
        }
        let ms = elapsed.as_secs_f64() * 1000.0;
        let bucket = BUCKETS_MS.iter().position(|bound| ms <= *bound).unwrap_or(BUCKETS_MS.len() - 1);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// The numbers so far.
    pub fn snapshot(&self) -> Snapshot {
        let requests = self.requests.load(Ordering::Relaxed);
        let server_errors = self.server_errors.load(Ordering::Relaxed);
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        let p99_ms = (total > 0).then(|| {
            let needed = (total * 99).div_ceil(100);
            let mut seen = 0;
            BUCKETS_MS
                .iter()
                .zip(&counts)
                .find_map(|(bound, n)| {
                    seen += n;
                    (seen >= needed).then_some(*bound)
                })
                .unwrap_or(f64::INFINITY)
        });
        let error_ratio = if requests == 0 { 0.0 } else { server_errors as f64 / requests as f64 };
        Snapshot { requests, server_errors, error_ratio, p99_ms }
    }
}

/// A running canary of a build of type `B`.
pub struct Canary<B = LoadedComponent> {
    /// Which canary this is: every decision about a canary names it, so a verdict on one never acts on
    /// the next one.
    pub id: u64,
    /// The candidate build.
    pub build: Arc<B>,
    /// Where it came from.
    pub origin: Origin,
    /// Share of new requests it gets, 1..=99.
    pub percent: u8,
    /// When it began (for judgment and auto-promotion).
    pub since: Instant,
    /// The same, as Unix seconds (for the admin API).
    pub since_unix: u64,
    /// The stable build's answers since the canary began.
    pub stable: VersionStats,
    /// The candidate's answers.
    pub candidate: VersionStats,
}

impl<B> Canary<B> {
    /// Canary number `id` of `build` taking `percent` % of new requests.
    pub fn new(id: u64, build: Arc<B>, origin: Origin, percent: u8) -> Self {
        let since_unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Self {
            id,
            build,
            origin,
            percent,
            since: Instant::now(),
            since_unix,
            stable: VersionStats::default(),
            candidate: VersionStats::default(),
        }
    }
}

/// Whether a request goes to the canary: by the sticky header's hash when the client sends one (so one
/// client does not flip between versions), else by a rotating counter (exactly `percent` % in the long run).
pub fn routes_to_canary(percent: u8, sticky: Option<&[u8]>, counter: u64) -> bool {
    let slot = match sticky {
        Some(value) => fnv1a(value) % 100,
        // Spreads consecutive requests over the 100 slots (37 is coprime to 100).
        None => (counter.wrapping_mul(37)) % 100,
    };
    slot < u64::from(percent)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// What the judge decides.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Not enough evidence yet, or healthy and not (yet) promoted.
    Wait,
    /// Worse than the stable build: roll back, for this reason.
    Rollback(String),
    /// Healthy for the configured time: promote.
    Promote,
}

/// Compares the canary's answers with the stable build's over the same window.
pub fn judge(stable: &Snapshot, canary: &Snapshot, running_for: Duration, policy: &CanaryPolicy) -> Verdict {
    if canary.requests < policy.min_requests {
        return Verdict::Wait;
    }
    if canary.error_ratio > stable.error_ratio + policy.max_error_ratio_delta {
        return Verdict::Rollback(format!(
            "5xx ratio {:.1}% against the stable build's {:.1}% over {} requests",
            canary.error_ratio * 100.0,
            stable.error_ratio * 100.0,
            canary.requests
        ));
    }
    if let (Some(canary_p99), Some(stable_p99)) = (canary.p99_ms, stable.p99_ms) {
        let floor = policy.p99_floor.as_secs_f64() * 1000.0;
        if canary_p99 > floor && canary_p99 > stable_p99.max(floor) * policy.max_p99_ratio {
            return Verdict::Rollback(format!("p99 {canary_p99} ms against the stable build's {stable_p99} ms"));
        }
    }
    match policy.auto_promote_after {
        Some(after) if running_for >= after => Verdict::Promote,
        _ => Verdict::Wait,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> CanaryPolicy {
        CanaryPolicy {
            sticky_header: http::HeaderName::from_static("x-session-id"),
            min_requests: 10,
            max_error_ratio_delta: 0.05,
            max_p99_ratio: 2.0,
            p99_floor: Duration::from_millis(10),
            auto_promote_after: None,
            source_canary_percent: None,
        }
    }

    fn stats(requests: u64, errors: u64, ms: u64) -> Snapshot {
        let s = VersionStats::default();
        for i in 0..requests {
            s.record(if i < errors { 500 } else { 200 }, Duration::from_millis(ms));
        }
        s.snapshot()
    }

    #[test]
    fn the_share_is_exact_over_a_hundred_requests_and_sticky_per_client() {
        for percent in [1u8, 10, 37, 50, 99] {
            let share = (0..100).filter(|n| routes_to_canary(percent, None, *n)).count();
            assert_eq!(share, usize::from(percent));
        }
        let client = b"session-42";
        let first = routes_to_canary(30, Some(client), 0);
        assert!((0..50).all(|n| routes_to_canary(30, Some(client), n) == first), "one client stays on one version");
        let clients = (0..1000).filter(|i| routes_to_canary(30, Some(format!("client-{i}").as_bytes()), 0)).count();
        assert!((200..400).contains(&clients), "about 30 % of clients: {clients}");
    }

    #[test]
    fn the_judge_waits_for_evidence_then_rolls_back_errors_and_slowness() {
        let p = policy();
        let healthy = stats(100, 0, 2);
        assert_eq!(judge(&healthy, &stats(5, 5, 2), Duration::ZERO, &p), Verdict::Wait, "too few requests");
        assert!(matches!(judge(&healthy, &stats(20, 4, 2), Duration::ZERO, &p), Verdict::Rollback(r) if r.contains("5xx")));
        assert_eq!(judge(&stats(100, 10, 2), &stats(20, 2, 2), Duration::ZERO, &p), Verdict::Wait, "no worse than stable");
        assert!(matches!(judge(&healthy, &stats(20, 0, 300), Duration::ZERO, &p), Verdict::Rollback(r) if r.contains("p99")));
        assert_eq!(judge(&stats(100, 0, 1), &stats(20, 0, 5), Duration::ZERO, &p), Verdict::Wait, "under the p99 floor");
        let mut promoting = p.clone();
        promoting.auto_promote_after = Some(Duration::from_secs(60));
        assert_eq!(judge(&healthy, &stats(20, 0, 2), Duration::from_secs(30), &promoting), Verdict::Wait);
        assert_eq!(judge(&healthy, &stats(20, 0, 2), Duration::from_secs(61), &promoting), Verdict::Promote);
    }

    #[test]
    fn p99_comes_from_the_latency_buckets() {
        let s = VersionStats::default();
        for _ in 0..98 {
            s.record(200, Duration::from_millis(1));
        }
        s.record(503, Duration::from_millis(40));
        s.record(200, Duration::from_millis(400));
        let snapshot = s.snapshot();
        assert_eq!((snapshot.requests, snapshot.server_errors), (100, 1));
        assert_eq!(snapshot.p99_ms, Some(50.0));
        assert_eq!(VersionStats::default().snapshot().p99_ms, None);
    }
}
