//! Canary rollouts: how a candidate is routed and judged, and whether a changed file starts one.

use std::time::Duration;

use clap::Args;
use http::HeaderName;

use super::duration::{parse_duration, parse_positive_duration};

/// Requests carrying this header stay on one version.
pub const DEFAULT_STICKY_HEADER: &str = "x-session-id";
/// Canary requests before any judgment.
pub const DEFAULT_MIN_REQUESTS: u64 = 50;
/// How far the canary's 5xx ratio may exceed the stable build's.
pub const DEFAULT_MAX_ERROR_RATIO: f64 = 0.05;
/// How many times the stable build's p99 the canary's p99 may reach.
pub const DEFAULT_MAX_P99_RATIO: f64 = 2.0;
/// p99s below this never count against a canary.
pub const DEFAULT_P99_FLOOR: &str = "25ms";

/// How canaries are routed and judged (plain data the builds room acts on).
#[derive(Debug, Clone)]
pub struct CanaryPolicy {
    /// Requests carrying this header stay on one version (hashed value).
    pub sticky_header: HeaderName,
    /// Canary requests before any judgment.
    pub min_requests: u64,
    /// How far the canary's 5xx ratio may exceed the stable build's (0.05 = 5 points).
    pub max_error_ratio_delta: f64,
    /// How many times the stable build's p99 the canary's p99 may reach.
    pub max_p99_ratio: f64,
    /// p99s below this are never held against a canary (noise on fast routes).
    pub p99_floor: Duration,
    /// Promote by itself after this long healthy (with enough requests); `None`: never.
    pub auto_promote_after: Option<Duration>,
    /// A changed `COMPONENT` source starts a canary at this share instead of a full swap; `None`: full swap.
    pub source_canary_percent: Option<u8>,
}

/// Canary settings.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Canary rollouts")]
pub struct CanaryOptions {
    /// Canary routing: requests carrying this header stay on one version (the header's value is hashed).
    #[arg(long, env = "CANARY_STICKY_HEADER", default_value = DEFAULT_STICKY_HEADER, value_parser = parse_header_name)]
    pub canary_sticky_header: HeaderName,
    /// Canary requests before the judge compares the canary with the stable build.
    #[arg(long, env = "CANARY_MIN_REQUESTS", default_value_t = DEFAULT_MIN_REQUESTS)]
    pub canary_min_requests: u64,
    /// How many points the canary's 5xx ratio may exceed the stable build's before it is rolled back (0.05 = 5 %).
    #[arg(long, env = "CANARY_MAX_ERROR_RATIO", default_value_t = DEFAULT_MAX_ERROR_RATIO)]
    pub canary_max_error_ratio: f64,
    /// How many times the stable build's p99 the canary's p99 may reach before it is rolled back.
    #[arg(long, env = "CANARY_MAX_P99_RATIO", default_value_t = DEFAULT_MAX_P99_RATIO)]
    pub canary_max_p99_ratio: f64,
    /// p99 latencies below this never count against a canary (noise on fast routes).
    #[arg(long, env = "CANARY_P99_FLOOR", default_value = DEFAULT_P99_FLOOR, value_parser = parse_duration)]
    pub canary_p99_floor: Duration,
    /// Promote a healthy canary by itself after this long (`off`: only POST /admin/promote does).
    #[arg(long, env = "CANARY_AUTO_PROMOTE", default_value = "off", value_parser = parse_auto_promote)]
    pub canary_auto_promote: AutoPromote,
    /// A changed COMPONENT file or a moved registry tag starts a canary at this percent (1-99) instead
    /// of a full swap.
    #[arg(long, env = "CANARY_PERCENT", value_parser = clap::value_parser!(u8).range(1..=99))]
    pub canary_percent: Option<u8>,
}

fn parse_header_name(text: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(text.trim().as_bytes()).map_err(|_| format!("{text:?} is not an HTTP header name"))
}

/// CANARY_AUTO_PROMOTE: `off`, or how long a canary must stay healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoPromote(pub Option<Duration>);

fn parse_auto_promote(text: &str) -> Result<AutoPromote, String> {
    if text == "off" { Ok(AutoPromote(None)) } else { parse_positive_duration(text).map(|d| AutoPromote(Some(d))) }
}

impl CanaryOptions {
    /// How canaries are routed and judged.
    pub fn policy(&self) -> CanaryPolicy {
        CanaryPolicy {
            sticky_header: self.canary_sticky_header.clone(),
            min_requests: self.canary_min_requests.max(1),
            max_error_ratio_delta: self.canary_max_error_ratio,
            max_p99_ratio: self.canary_max_p99_ratio,
            p99_floor: self.canary_p99_floor,
            auto_promote_after: self.canary_auto_promote.0,
            source_canary_percent: self.canary_percent,
        }
    }
}
