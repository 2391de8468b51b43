//! The `wasi:keyvalue` buckets the host serves. What a build stores inside them (keys, encodings) is
//! the build's own versioned wire format; the host only knows which bucket may be evicted.

/// Shared state that must never be evicted (breaker, single-flight tickets, quota, counters). The
/// default bucket, so `wasmtime serve -S keyvalue` (which knows only `""`) serves it too.
pub const STATE_BUCKET: &str = "";
/// Cached data that may be evicted at any time (least recently used first) when the store is full.
/// A host that does not know it answers `no-such-store`; builds then fall back to [`STATE_BUCKET`].
pub const CACHE_BUCKET: &str = "cache";
