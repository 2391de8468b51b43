//! The simulator's run-time state: the fault in force (possibly for a limited number of calls), the latency, and the
//! call counters. Shared by all connections behind one `tokio::sync::Mutex` that is only held for bookkeeping, never
//! across a sleep.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Mutex;

use crate::fault::FaultMode;

/// Shared simulator state.
#[derive(Debug)]
pub struct SimState {
    inner: Mutex<Inner>,
}

/// How one `/query` call must be answered, decided when it arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// The fault in force for this call.
    pub fault: FaultMode,
    /// Delay before answering (or before misbehaving).
    pub latency: Duration,
}

/// The fault settings, as answered by `PUT /_sim/fault` and `POST /_sim/reset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FaultView {
    /// Name of the mode in force.
    pub fault: &'static str,
    /// Latency applied before every `/query` answer, in milliseconds.
    pub latency_ms: u64,
    /// Calls left before reverting to `none`; `null` when the setting is permanent.
    pub times_remaining: Option<u32>,
}

/// Counters and settings, as answered by `GET /_sim/stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// `/query` requests received, whatever they were answered with.
    pub calls: u64,
    /// `/query` requests per upper-cased `symbol` parameter (requests without one are not listed).
    pub by_symbol: BTreeMap<String, u64>,
    /// Name of the mode in force.
    pub fault: &'static str,
    /// Latency applied before every `/query` answer, in milliseconds.
    pub latency_ms: u64,
    /// The W3C `traceparent` header of the last `/query` call that had one (tracing tests).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_traceparent: Option<String>,
}

/// A temporary fault: how many calls it still applies to, and the latency to restore afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Countdown {
    remaining: u32,
    restore_latency_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Inner {
    fault: FaultMode,
    latency_ms: u64,
    countdown: Option<Countdown>,
    calls: u64,
    by_symbol: BTreeMap<String, u64>,
    last_traceparent: Option<String>,
}

// === impl Inner ===

impl Inner {
    fn record_call(&mut self, symbol: Option<&str>, traceparent: Option<&str>) -> Plan {
        self.calls += 1;
        if let Some(traceparent) = traceparent {
            self.last_traceparent = Some(traceparent.chars().take(128).collect());
        }
        if let Some(symbol) = symbol.filter(|s| !s.is_empty()) {
            *self.by_symbol.entry(symbol.to_ascii_uppercase()).or_default() += 1;
        }
        let plan = Plan { fault: self.fault, latency: Duration::from_millis(self.latency_ms) };
        if let Some(countdown) = self.countdown.as_mut() {
            countdown.remaining = countdown.remaining.saturating_sub(1);
            if countdown.remaining == 0 {
                self.fault = FaultMode::None;
                self.latency_ms = countdown.restore_latency_ms;
                self.countdown = None;
            }
        }
        plan
    }

    fn set_fault(&mut self, fault: FaultMode, latency_ms: Option<u64>, times: Option<u32>) -> FaultView {
        // The latency to come back to is the one of the last permanent setting.
        let permanent_latency_ms = self.countdown.map_or(self.latency_ms, |c| c.restore_latency_ms);
        self.fault = fault;
        self.latency_ms = latency_ms.unwrap_or(self.latency_ms);
        self.countdown = times.map(|remaining| Countdown { remaining, restore_latency_ms: permanent_latency_ms });
        self.fault_view()
    }

    fn fault_view(&self) -> FaultView {
        FaultView { fault: self.fault.name(), latency_ms: self.latency_ms, times_remaining: self.countdown.map(|c| c.remaining) }
    }

    fn stats(&self) -> Stats {
        Stats {
            calls: self.calls,
            by_symbol: self.by_symbol.clone(),
            fault: self.fault.name(),
            latency_ms: self.latency_ms,
            last_traceparent: self.last_traceparent.clone(),
        }
    }
}

// === impl SimState ===

impl SimState {
    /// State with an initial permanent fault and latency and zeroed counters.
    pub fn new(fault: FaultMode, latency_ms: u64) -> Self {
        Self { inner: Mutex::new(Inner { fault, latency_ms, ..Inner::default() }) }
    }

    /// Counts a `/query` call for `symbol` and decides how to answer it, using up one call of a temporary fault.
    pub async fn record_call(&self, symbol: Option<&str>, traceparent: Option<&str>) -> Plan {
        self.inner.lock().await.record_call(symbol, traceparent)
    }

    /// Sets the fault mode, optionally the latency (kept when `None`), and optionally limits the setting to the next
    /// `times` calls, after which the mode reverts to `none` and the latency to its previous permanent value.
    pub async fn set_fault(&self, fault: FaultMode, latency_ms: Option<u64>, times: Option<u32>) -> FaultView {
        self.inner.lock().await.set_fault(fault, latency_ms, times)
    }

    /// Back to mode `none`, latency 0 and zero counters.
    pub async fn reset(&self) -> FaultView {
        let mut inner = self.inner.lock().await;
        *inner = Inner::default();
        inner.fault_view()
    }

    /// A snapshot of the counters and settings.
    pub async fn stats(&self) -> Stats {
        self.inner.lock().await.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn counts_every_call_by_upper_cased_symbol() {
        let mut inner = Inner::default();
        for symbol in [Some("MSFT"), Some("msft"), Some("XYZ"), None, Some("")] {
            inner.record_call(symbol, None);
        }
        let stats = inner.stats();
        assert_eq!(stats.calls, 5);
        assert_eq!(stats.by_symbol, BTreeMap::from([("MSFT".to_owned(), 2), ("XYZ".to_owned(), 1)]));
    }

    #[test]
    fn temporary_fault_applies_n_times_then_reverts() {
        // (initial latency, PUT latency, times, plans of the next four calls)
        let hang = FaultMode::Hang;
        let none = FaultMode::None;
        for (initial, put_latency, times, want) in [
            (0, None, Some(2), [(hang, 0), (hang, 0), (none, 0), (none, 0)]),
            (50, Some(200), Some(1), [(hang, 200), (none, 50), (none, 50), (none, 50)]),
            (50, None, Some(3), [(hang, 50), (hang, 50), (hang, 50), (none, 50)]),
            (0, Some(10), None, [(hang, 10), (hang, 10), (hang, 10), (hang, 10)]),
        ] {
            let mut inner = Inner { latency_ms: initial, ..Inner::default() };
            let view = inner.set_fault(hang, put_latency, times);
            assert_eq!(view.times_remaining, times);
            let got: Vec<(FaultMode, Duration)> =
                (0..4).map(|_| inner.record_call(Some("IBM"), None)).map(|p| (p.fault, p.latency)).collect();
            let want: Vec<(FaultMode, Duration)> = want.iter().map(|(f, l)| (*f, ms(*l))).collect();
            assert_eq!(got, want, "initial {initial}, latency {put_latency:?}, times {times:?}");
        }
    }

    #[test]
    fn a_new_temporary_fault_restores_the_last_permanent_latency() {
        let mut inner = Inner { latency_ms: 5, ..Inner::default() };
        inner.set_fault(FaultMode::Latency, Some(100), Some(5));
        inner.set_fault(FaultMode::Reset, Some(300), Some(1));
        assert_eq!(inner.record_call(None, None), Plan { fault: FaultMode::Reset, latency: ms(300) });
        assert_eq!(inner.record_call(None, None), Plan { fault: FaultMode::None, latency: ms(5) });
    }

    #[tokio::test]
    async fn reset_clears_everything() {
        let state = SimState::new(FaultMode::Http500, 20);
        state.record_call(Some("AAPL"), None).await;
        let view = state.reset().await;
        assert_eq!(view, FaultView { fault: "none", latency_ms: 0, times_remaining: None });
        let stats = state.stats().await;
        assert_eq!((stats.calls, stats.by_symbol.len(), stats.fault, stats.latency_ms), (0, 0, "none", 0));
    }
}
