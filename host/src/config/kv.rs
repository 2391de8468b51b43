//! The `wasi:keyvalue` backend: memory, or Redis shared by every replica.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::duration::parse_positive_duration;

/// Keys held by the in-memory cache bucket before the least recently used are evicted.
pub const DEFAULT_KV_MAX_ENTRIES: usize = 10_000;
/// Prefix of every Redis key.
pub const DEFAULT_KV_PREFIX: &str = "stock:";
/// Deadline of one Redis operation.
pub const DEFAULT_KV_TIMEOUT: &str = "250ms";
/// Expiry of cache entries in Redis: longer than any build serves stale data (24 h).
pub const DEFAULT_KV_CACHE_EXPIRY: &str = "25h";
/// Idle expiry of state keys in Redis: longer than a UTC day (the quota counter's life).
pub const DEFAULT_KV_STATE_EXPIRY: &str = "48h";
/// Expiry of per-symbol leftovers in Redis (remembered unknown symbols, flight outcomes).
pub const DEFAULT_KV_MEMO_EXPIRY: &str = "1h";

/// Keyvalue backend (KV_URL).
#[derive(Clone, PartialEq, Eq)]
pub enum KvUrl {
    /// In-process buckets shared by every instance of this process.
    Memory,
    /// Redis shared by every replica: `redis://host:port[/db]` or `rediss://...`.
    Redis(String),
}

impl std::fmt::Debug for KvUrl {
    // Never prints the URL: it may carry a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Memory => f.write_str("memory"),
            Self::Redis(_) => f.write_str("redis://(redacted)"),
        }
    }
}

fn parse_kv_url(text: &str) -> Result<KvUrl, String> {
    if text == "memory" {
        return Ok(KvUrl::Memory);
    }
    let usable = (text.starts_with("redis://") || text.starts_with("rediss://")) && redis::Client::open(text).is_ok();
    if usable { Ok(KvUrl::Redis(text.to_owned())) } else { Err("must be `memory` or redis://host:port[/db] (rediss:// for TLS)".into()) }
}

/// Keyvalue settings.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Keyvalue")]
pub struct KvOptions {
    /// Keyvalue backend: `memory` (this process only) or `redis://host:port[/db]` / `rediss://` (every
    /// replica shares cache, breaker, quota and single flight). Never logged: it may hold a password.
    #[arg(long, env = "KV_URL", default_value = "memory", value_parser = parse_kv_url, hide_env_values = true)]
    pub kv_url: KvUrl,
    /// File holding the Redis password (a mounted Secret); overrides one in KV_URL.
    #[arg(long, env = "KV_PASSWORD_FILE")]
    pub kv_password_file: Option<PathBuf>,
    /// Prefix of every Redis key, so several services can share one Redis.
    #[arg(long, env = "KV_PREFIX", default_value = DEFAULT_KV_PREFIX)]
    pub kv_prefix: String,
    /// Deadline of one Redis operation; past it the host serves from its local store until Redis answers.
    #[arg(long, env = "KV_TIMEOUT", default_value = DEFAULT_KV_TIMEOUT, value_parser = parse_positive_duration)]
    pub kv_timeout: Duration,
    /// Expiry of cache entries in Redis: longer than any build serves stale data (24 h).
    #[arg(long, env = "KV_CACHE_EXPIRY", default_value = DEFAULT_KV_CACHE_EXPIRY, value_parser = parse_positive_duration)]
    pub kv_cache_expiry: Duration,
    /// Idle expiry of state keys in Redis (breaker, quota, flight tickets), refreshed on every write, so a
    /// long-running fleet's Redis does not keep every day's counters; keep it longer than a day.
    #[arg(long, env = "KV_STATE_EXPIRY", default_value = DEFAULT_KV_STATE_EXPIRY, value_parser = parse_positive_duration)]
    pub kv_state_expiry: Duration,
    /// Expiry of per-symbol leftovers in Redis (remembered unknown symbols, flight outcomes); keep it at
    /// least NEGATIVE_CACHE_TTL.
    #[arg(long, env = "KV_MEMO_EXPIRY", default_value = DEFAULT_KV_MEMO_EXPIRY, value_parser = parse_positive_duration)]
    pub kv_memo_expiry: Duration,
    /// Most keys in the in-memory cache bucket, and separately in the memo bucket (least recently used
    /// evicted; state is never evicted).
    #[arg(long, env = "KV_MAX_ENTRIES", default_value_t = DEFAULT_KV_MAX_ENTRIES)]
    pub kv_max_entries: usize,
}
