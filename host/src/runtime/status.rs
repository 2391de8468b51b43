//! The `stock:service/status` export, as the host calls it: the only way it learns a build's breaker
//! and whether the build accepts its configuration.

#[expect(missing_docs, reason = "bindgen-generated code")]
mod generated {
    wasmtime::component::bindgen!({
        path: "../wit",
        inline: "
            package stock:host;
            /// What the host calls on every build besides `wasi:http/incoming-handler`.
            world build-status {
                export stock:service/status@1.0.0;
            }
        ",
        world: "stock:host/build-status",
        exports: { default: async },
    });
}

use crate::telemetry::metrics::{BREAKER_STATES, Metrics};

pub use generated::exports::stock::service::status::{
    BreakerState, BreakerStatus, ConfigProblem, Guest as Status, GuestIndices as StatusIndices, QuotaStatus,
};

/// The seed's gauge value: 0 closed, 1 open, 2 half-open.
pub fn gauge_value(state: BreakerState) -> i64 {
    match state {
        BreakerState::Closed => 0,
        BreakerState::Open => 1,
        BreakerState::HalfOpen => 2,
    }
}

/// Transition totals by the `state` label value the metrics use.
pub fn transitions(breaker: &BreakerStatus) -> [(&'static str, u64); 3] {
    let [closed, open, half_open] = BREAKER_STATES;
    [(closed, breaker.transitions_to_closed), (open, breaker.transitions_to_open), (half_open, breaker.transitions_to_half_open)]
}

/// What a build reports about itself through `stock:service/status`.
pub struct BuildReport {
    /// Its breaker.
    pub breaker: BreakerStatus,
    /// Today's use of the upstream quota.
    pub quota: QuotaStatus,
    /// What it finds wrong with the configuration it sees.
    pub config_problems: Vec<ConfigProblem>,
}

impl BuildReport {
    /// Sets the gauges and counters that come from the running build's report.
    pub fn apply_to(&self, metrics: &Metrics) {
        metrics.breaker_state.set(gauge_value(self.breaker.state));
        for (name, total) in transitions(&self.breaker) {
            let counter = metrics.breaker_transitions.with_label_values(&[name]);
            let current = counter.get();
            if total > current {
                counter.inc_by(total - current);
            }
        }
        metrics.quota_used.set(i64::try_from(self.quota.used).unwrap_or(i64::MAX));
        metrics.quota_limit.set(i64::try_from(self.quota.limit).unwrap_or(i64::MAX));
    }

    /// The settings the build refused, one line naming each by the environment variable that feeds it,
    /// with anything secret the build echoed scrubbed.
    pub fn config_problems_line(&self) -> Option<String> {
        if self.config_problems.is_empty() {
            return None;
        }
        let each = self.config_problems.iter().map(|p| match stock_shared::settings::by_key(&p.key) {
            Some(setting) => format!("{}: {}", setting.env, p.reason),
            None => format!("{} (wasi:config): {}", p.key, p.reason),
        });
        Some(crate::telemetry::redact::redact(&each.collect::<Vec<_>>().join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(state: BreakerState, to_open: u64) -> BuildReport {
        BuildReport {
            breaker: BreakerStatus {
                state,
                consecutive_failures: 0,
                threshold: 5,
                open_seconds: 30,
                retry_after_seconds: None,
                transitions_to_closed: 0,
                transitions_to_open: to_open,
                transitions_to_half_open: 0,
            },
            quota: QuotaStatus { day: "2026-11-29".into(), used: 3, limit: 25, retry_after_seconds: None },
            config_problems: Vec::new(),
        }
    }

    #[test]
    fn breaker_gauge_follows_the_reported_state_and_counters_never_go_back() {
        let metrics = Metrics::new().expect("metrics");
        for (state, want) in [(BreakerState::Closed, 0), (BreakerState::Open, 1), (BreakerState::HalfOpen, 2)] {
            report(state, 0).apply_to(&metrics);
            assert_eq!(metrics.breaker_state.get(), want);
        }
        report(BreakerState::Open, 3).apply_to(&metrics);
        report(BreakerState::Open, 2).apply_to(&metrics);
        assert_eq!(metrics.breaker_transitions.with_label_values(&["open"]).get(), 3);
        assert_eq!((metrics.quota_used.get(), metrics.quota_limit.get()), (3, 25));
    }

    #[test]
    fn refused_settings_are_named_by_their_variable_and_never_carry_a_secret() {
        crate::telemetry::redact::remember_secret("status-test-secret");
        let mut refused = report(BreakerState::Closed, 0);
        refused.config_problems = vec![
            ConfigProblem { key: "ndays".into(), reason: "\"0\" is not a whole number from 1 to 100".into() },
            ConfigProblem { key: "apikey".into(), reason: "got status-test-secret".into() },
        ];
        let line = refused.config_problems_line().expect("problems");
        assert!(line.starts_with("NDAYS: "), "{line}");
        assert!(line.contains("APIKEY: got REDACTED"), "{line}");
        assert_eq!(report(BreakerState::Closed, 0).config_problems_line(), None);
    }
}
