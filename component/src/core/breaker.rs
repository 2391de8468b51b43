//! The circuit breaker's state machine: when to call the upstream, probe it, or refuse.
//! Storage (keyvalue) and the clock are the caller's business.

/// Every state name, as used in transition counters.
pub const STATE_NAMES: [&str; 3] = ["closed", "open", "half-open"];

/// The breaker's persisted state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls flow.
    Closed,
    /// Calls are refused until this wall-clock millisecond.
    Open {
        /// When a probe may be tried.
        until_ms: u64,
    },
    /// One probe call is in flight since this millisecond.
    HalfOpen {
        /// When the probe started.
        since_ms: u64,
    },
}

/// What to do with a request that needs the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Call the upstream.
    Proceed,
    /// Call it as the single probe, if the probe ticket is won.
    Probe,
    /// Do not call; try again after this many seconds.
    Reject {
        /// Seconds to advertise in `Retry-After`.
        retry_after_secs: u32,
    },
}

impl BreakerState {
    /// Text stored in keyvalue: `closed`, `open:<ms>`, `half-open:<ms>`.
    pub fn encode(&self) -> String {
        match self {
            Self::Closed => "closed".into(),
            Self::Open { until_ms } => format!("open:{until_ms}"),
            Self::HalfOpen { since_ms } => format!("half-open:{since_ms}"),
        }
    }

    /// Reads [`encode`](Self::encode)'s text; anything unreadable is `Closed` (fail open, never wedge).
    pub fn decode(bytes: &[u8]) -> Self {
        let text = std::str::from_utf8(bytes).unwrap_or("");
        let millis = |rest: &str| rest.parse::<u64>().ok();
        if let Some(until_ms) = text.strip_prefix("open:").and_then(millis) {
            Self::Open { until_ms }
        } else if let Some(since_ms) = text.strip_prefix("half-open:").and_then(millis) {
            Self::HalfOpen { since_ms }
        } else {
            Self::Closed
        }
    }

    /// Name for APIs and logs, matching the seed's gauge (0 closed, 1 open, 2 half-open).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open { .. } => "open",
            Self::HalfOpen { .. } => "half-open",
        }
    }

    /// Decides whether a call may go out now; `open_ms` also bounds how long a probe may take.
    pub fn admit(&self, now_ms: u64, open_ms: u64) -> Admission {
        match *self {
            Self::Closed => Admission::Proceed,
            Self::Open { until_ms } if now_ms < until_ms => Admission::Reject { retry_after_secs: secs_until(now_ms, until_ms) },
            Self::Open { .. } => Admission::Probe,
            Self::HalfOpen { since_ms } if now_ms < since_ms.saturating_add(open_ms) => Admission::Reject { retry_after_secs: 1 },
            // The probe never reported back (trap, crash): let another one try.
            Self::HalfOpen { .. } => Admission::Probe,
        }
    }

    /// Seconds until calls may be tried again, for `/circuit-breaker`.
    pub fn retry_after_secs(&self, now_ms: u64) -> Option<u32> {
        match *self {
            Self::Open { until_ms } => Some(secs_until(now_ms, until_ms)),
            Self::HalfOpen { .. } => Some(1),
            Self::Closed => None,
        }
    }
}

/// The state after a failed call: open when it was the probe or the failures reached the threshold.
pub fn after_failure(was_probe: bool, consecutive_failures: u64, threshold: u32, now_ms: u64, open_ms: u64) -> Option<BreakerState> {
    (was_probe || consecutive_failures >= u64::from(threshold)).then_some(BreakerState::Open { until_ms: now_ms.saturating_add(open_ms) })
}

/// Whole seconds from `now_ms` until `until_ms`, at least 1 (for `Retry-After`).
pub fn secs_until(now_ms: u64, until_ms: u64) -> u32 {
    u32::try_from(until_ms.saturating_sub(now_ms).div_ceil(1000)).unwrap_or(u32::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use BreakerState::*;

    #[test]
    fn state_text_round_trips_and_garbage_is_closed() {
        for state in [Closed, Open { until_ms: 42 }, HalfOpen { since_ms: 7 }] {
            assert_eq!(BreakerState::decode(state.encode().as_bytes()), state);
        }
        for garbage in [&b""[..], b"open:", b"open:x", b"half-open:-1", b"\xff", b"OPEN:1"] {
            assert_eq!(BreakerState::decode(garbage), Closed, "{garbage:?}");
        }
    }

    #[test]
    fn admission_follows_the_state() {
        let open_ms = 30_000;
        for (state, now, want) in [
            (Closed, 0, Admission::Proceed),
            (Open { until_ms: 10_000 }, 0, Admission::Reject { retry_after_secs: 10 }),
            (Open { until_ms: 10_000 }, 9_001, Admission::Reject { retry_after_secs: 1 }),
            (Open { until_ms: 10_000 }, 9_999, Admission::Reject { retry_after_secs: 1 }),
            (Open { until_ms: 10_000 }, 10_000, Admission::Probe),
            (HalfOpen { since_ms: 10_000 }, 10_001, Admission::Reject { retry_after_secs: 1 }),
            (HalfOpen { since_ms: 10_000 }, 40_000, Admission::Probe),
        ] {
            assert_eq!(state.admit(now, open_ms), want, "{state:?} at {now}");
        }
    }

    #[test]
    fn failures_open_the_breaker_at_the_threshold_or_on_a_failed_probe() {
        for (was_probe, failures, want_open) in [(false, 1, false), (false, 4, false), (false, 5, true), (false, 9, true), (true, 1, true)]
        {
            let got = after_failure(was_probe, failures, 5, 1_000, 30_000);
            assert_eq!(got, want_open.then_some(Open { until_ms: 31_000 }), "probe {was_probe} failures {failures}");
        }
    }

    #[test]
    fn retry_after_is_reported_only_when_not_closed() {
        assert_eq!(Closed.retry_after_secs(0), None);
        assert_eq!(Open { until_ms: 2_500 }.retry_after_secs(0), Some(3));
        assert_eq!(Open { until_ms: 2_500 }.retry_after_secs(5_000), Some(1));
    }
}
