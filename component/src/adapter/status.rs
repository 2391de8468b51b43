//! The `stock:service/status` export: what this build tells its host about itself.

use super::Component;
use super::env::WasiEnv;
use super::exports::stock::service::status::{BreakerState, BreakerStatus, ConfigProblem, Guest, QuotaStatus};
use crate::core::breaker::BreakerState as CoreState;
use crate::core::service::breaker_report;
use crate::core::upstream::quota_report;

impl Guest for Component {
    fn breaker() -> BreakerStatus {
        // An unusable configuration still has a breaker to report: read it with the defaults' rules.
        let settings = super::config::load().or_else(|_| super::config::defaults());
        let Ok(settings) = settings else {
            return BreakerStatus {
                state: BreakerState::Closed,
                consecutive_failures: 0,
                threshold: 0,
                open_seconds: 0,
                retry_after_seconds: None,
                transitions_to_closed: 0,
                transitions_to_open: 0,
                transitions_to_half_open: 0,
            };
        };
        let report = breaker_report(&WasiEnv::default(), &settings);
        let [to_closed, to_open, to_half_open] = report.transitions;
        BreakerStatus {
            state: match report.state {
                CoreState::Closed => BreakerState::Closed,
                CoreState::Open { .. } => BreakerState::Open,
                CoreState::HalfOpen { .. } => BreakerState::HalfOpen,
            },
            consecutive_failures: report.consecutive_failures,
            threshold: report.threshold,
            open_seconds: u32::try_from(report.open_secs).unwrap_or(u32::MAX),
            retry_after_seconds: report.retry_after_secs,
            transitions_to_closed: to_closed,
            transitions_to_open: to_open,
            transitions_to_half_open: to_half_open,
        }
    }

    fn quota() -> QuotaStatus {
        let settings = super::config::load().or_else(|_| super::config::defaults());
        let Ok(settings) = settings else {
            return QuotaStatus { day: String::new(), used: 0, limit: 0, retry_after_seconds: None };
        };
        let report = quota_report(&WasiEnv::default(), &settings);
        QuotaStatus { day: report.day, used: report.used, limit: report.limit, retry_after_seconds: report.retry_after_secs }
    }

    fn check_config() -> Vec<ConfigProblem> {
        #[cfg(feature = "fixture")]
        {
            let switched = super::fixture::smoke_switch();
            if !switched.is_empty() {
                return switched.into_iter().map(|(key, reason)| ConfigProblem { key, reason }).collect();
            }
        }
        super::config::problems().into_iter().map(|p| ConfigProblem { key: p.key.to_owned(), reason: p.reason }).collect()
    }
}
