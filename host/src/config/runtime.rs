//! The wasmtime runtime: instances, deadlines, memory, reuse.

use std::time::Duration;

use clap::Args;

use super::duration::parse_positive_duration;

/// Room for what a build does around its upstream call within one request (its single-flight waits,
/// one retry's pause): REQUEST_TIMEOUT defaults to UPSTREAM_TIMEOUT plus this.
pub const DEFAULT_REQUEST_TIMEOUT_MARGIN: Duration = Duration::from_secs(5);
/// Linear memory one component instance may use.
pub const DEFAULT_MAX_MEMORY_MIB: u32 = 64;
/// Component instances alive at once (pooling allocator slots); more requests wait.
pub const DEFAULT_MAX_CONCURRENCY: u32 = 256;
/// Requests per instance: reuse takes instantiation off almost every request; the stock build keeps
/// no per-request state in globals, so reuse is safe for it.
pub const DEFAULT_MAX_INSTANCE_REUSE: u32 = 1000;
/// Idle instances retire after this long (checked every half of it), returning their memory.
pub const DEFAULT_INSTANCE_IDLE_TIMEOUT: &str = "30s";
/// Slots one symbol may hold: a hanging upstream for one symbol leaves the rest for everyone else.
pub const DEFAULT_MAX_CONCURRENCY_PER_SYMBOL: u32 = 32;

/// Engine and instance settings.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Runtime")]
pub struct RuntimeOptions {
    /// Deadline for a whole request inside the component (epoch interruption plus a wall-clock timer),
    /// and for a candidate build's smoke test. Default: UPSTREAM_TIMEOUT + 5s.
    #[arg(long = "request-timeout", env = "REQUEST_TIMEOUT", value_parser = parse_positive_duration)]
    pub request_timeout_setting: Option<Duration>,
    /// Linear memory cap per component instance, in MiB.
    #[arg(long, env = "MAX_MEMORY_MIB", default_value_t = DEFAULT_MAX_MEMORY_MIB, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub max_memory_mib: u32,
    /// Component instances alive at once; further requests wait for a slot.
    #[arg(long, env = "MAX_CONCURRENCY", default_value_t = DEFAULT_MAX_CONCURRENCY, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_concurrency: u32,
    /// Component instances one first path segment (a symbol) may hold at once, so one slow symbol
    /// cannot take every slot; further requests for it wait for one of its own.
    #[arg(long, env = "MAX_CONCURRENCY_PER_SYMBOL", default_value_t = DEFAULT_MAX_CONCURRENCY_PER_SYMBOL, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_concurrency_per_symbol: u32,
    /// Requests one component instance serves, one after another, before it retires (1 = a fresh
    /// instance per request: strict isolation, slower). Instances that trap or time out are never reused.
    #[arg(long, env = "MAX_INSTANCE_REUSE", default_value_t = DEFAULT_MAX_INSTANCE_REUSE, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_instance_reuse: u32,
    /// How long an idle instance is kept for reuse.
    #[arg(long, env = "INSTANCE_IDLE_TIMEOUT", default_value = DEFAULT_INSTANCE_IDLE_TIMEOUT, value_parser = parse_positive_duration)]
    pub instance_idle_timeout: Duration,
}

impl RuntimeOptions {
    /// REQUEST_TIMEOUT, or UPSTREAM_TIMEOUT plus [`DEFAULT_REQUEST_TIMEOUT_MARGIN`] when unset.
    pub fn request_timeout(&self, upstream_timeout: Duration) -> Duration {
        self.request_timeout_setting.unwrap_or(upstream_timeout + DEFAULT_REQUEST_TIMEOUT_MARGIN)
    }

    /// MAX_MEMORY_MIB in bytes.
    pub fn max_memory_bytes(&self) -> usize {
        usize::try_from(self.max_memory_mib).unwrap_or(usize::MAX).saturating_mul(1024 * 1024)
    }
}
