//! The `wasi:keyvalue` buckets the host serves, and the policy of each. What a build stores inside them
//! (keys, encodings) is the build's own versioned wire format; the host only knows the buckets by name,
//! how many keys each may hold and when their keys expire.
//!
//! | bucket | holds | in memory | in Redis |
//! |---|---|---|---|
//! | [`STATE_BUCKET`] | what the service depends on: breaker, flight tickets, quota | never evicted; past its cap new keys are refused | expires when idle (refreshed on every write) |
//! | [`CACHE_BUCKET`] | answers: fetched series | least recently used evicted | expires |
//! | [`MEMO_BUCKET`] | per-symbol leftovers: remembered refusals, flight outcomes | least recently used evicted, on its own bound | expires |
//!
//! Keeping the three apart is the point: unknown symbols cannot evict cached series, and per-symbol
//! leftovers cannot fill the state the breaker and single flight need.

/// Shared state that must never be evicted (breaker, single-flight tickets, quota, counters). The
/// default bucket, so `wasmtime serve -S keyvalue` (which knows only `""`) serves it too. Builds keep
/// only bounded state here: a fixed set of keys, plus per-symbol keys that live while that symbol's
/// upstream call runs and are removed when it ends.
pub const STATE_BUCKET: &str = "";
/// Cached answers that may be evicted at any time (least recently used first) when the store is full.
/// A host that does not know it answers `no-such-store`; builds then fall back to [`STATE_BUCKET`].
pub const CACHE_BUCKET: &str = "cache";
/// Short-lived per-symbol memos that may be forgotten at any time (evicted least recently used first, or
/// expired): what a build remembers so it need not ask the upstream again (an unknown symbol, a refused
/// key), a flight leader's outcome for its followers. Bounded on its own, apart from [`CACHE_BUCKET`], so
/// remembered failures never evict answers. A host that does not know it answers `no-such-store`; builds
/// then fall back to [`STATE_BUCKET`] (as under `wasmtime serve`, where no bucket outlives a request).
pub const MEMO_BUCKET: &str = "memo";

/// Every bucket the host serves.
pub const ALL: [&str; 3] = [STATE_BUCKET, CACHE_BUCKET, MEMO_BUCKET];
