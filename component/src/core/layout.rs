//! This build's keyvalue layout: every key it reads or writes, and the bucket each lives in, in one place.
//! The layout is a versioned wire format: another build may share the store (hot swap, canary, replicas),
//! so a key's encoding never changes under the same name; a new encoding gets a new version. The host
//! never reads these keys; it learns the breaker through `stock:service/status`.
//!
//! Where keys live, and what bounds each bucket:
//! - state (never evicted): the breaker's few keys, four quota counters per UTC day (all calls, new symbols', and
//!   of each the calls the host refused to make), and per symbol only the
//!   flight ticket and lease, which the leader removes when its flight ends. So the state bucket holds a fixed
//!   set of keys, plus two per symbol whose upstream call is running right now (at most two per request in
//!   flight), plus the rare ticket of a leader killed mid-call, which the next request for that symbol takes
//!   over and removes. The host expires state keys nobody writes any more (old days' counters, an orphan nobody
//!   asks about again) after KV_STATE_EXPIRY.
//! - memo (evicted or expired, bounded on its own): everything else that is per symbol or per key and
//!   outlives a flight: remembered unknown symbols and refused keys, a leader's outcome for its followers,
//!   takeover tickets. Losing any of them costs at most one more upstream call, never a wrong answer.
//! - cache (evicted): fetched series only, so remembered failures never evict answers.

use super::env::{Bucket, Key};

/// Version segment of the breaker's keys and the remembered refusals. Test-fixture builds store their breaker
/// under a layout of their own, which proves the host reads a build's state through WIT and not through these keys.
pub const LAYOUT: &str = if cfg!(feature = "fixture") { "fixture-v1" } else { "v1" };

/// Version segment of single flight's keys. v2 moved the leader's outcome and the takeover tickets from the
/// state bucket to the memo bucket: a v1 follower would look for a v2 leader's outcome where it is no longer
/// written, so the two protocols take separate tickets (while both run, each build has its own flight).
pub const FLIGHT_LAYOUT: &str = if cfg!(feature = "fixture") { "fixture-v2" } else { "v2" };

fn state(name: String) -> Key {
    Key { bucket: Bucket::State, name }
}

fn memo(name: String) -> Key {
    Key { bucket: Bucket::Memo, name }
}

/// Breaker state (`closed`, `open:<ms>`, `half-open:<ms>`), in the state bucket.
pub fn breaker_state() -> Key {
    state(format!("breaker/{LAYOUT}/state"))
}

/// Consecutive upstream failures (an atomics counter), in the state bucket.
pub fn breaker_failures() -> Key {
    state(format!("breaker/{LAYOUT}/failures"))
}

/// Ticket for the single half-open probe that leaves `state` (encoded), in the state bucket; the probe
/// removes it when it ends.
pub fn breaker_probe(encoded_state: &str) -> Key {
    state(format!("breaker/{LAYOUT}/probe/{encoded_state}"))
}

/// Transitions into the state named `state` (an atomics counter), in the state bucket.
pub fn breaker_transitions(state_name: &str) -> Key {
    state(format!("breaker/{LAYOUT}/transitions/{state_name}"))
}

/// Single-flight ticket for `symbol` (an atomics counter), in the state bucket while its flight runs.
pub fn flight_ticket(symbol: &str) -> Key {
    state(format!("flight/{FLIGHT_LAYOUT}/{symbol}"))
}

/// When the current single-flight leader for `symbol` gives up (`until_ms`), in the state bucket while its
/// flight runs: after that its ticket is an orphan (the leader was killed) and a follower may take over.
pub fn flight_lease(symbol: &str) -> Key {
    state(format!("flight/{FLIGHT_LAYOUT}/{symbol}/lease"))
}

/// The last single-flight leader's error for `symbol` (see `Error::encode_outcome`), in the memo bucket:
/// only the followers of that flight need it.
pub fn flight_outcome(symbol: &str) -> Key {
    memo(format!("flight/{FLIGHT_LAYOUT}/{symbol}/outcome"))
}

/// Ticket deciding which follower takes over from the leader whose lease read `lease`, in the memo bucket:
/// it must outlive only the followers of that one dead lease.
pub fn flight_takeover(symbol: &str, lease: &str) -> Key {
    memo(format!("flight/{FLIGHT_LAYOUT}/{symbol}/takeover/{lease}"))
}

/// Until when (`until_ms`) the upstream is known not to have `symbol`, in the memo bucket. (Builds before the
/// memo bucket kept it in the cache bucket; the value is the same, so the name is too: a build reading the
/// other bucket only misses a memo.)
pub fn unknown_symbol(symbol: &str) -> Key {
    memo(format!("negative/{LAYOUT}/{symbol}"))
}

/// Until when (`until_ms`) the upstream refuses the key with this fingerprint, in the memo bucket (formerly
/// in the state bucket, with the same value).
pub fn refused_key(fingerprint: &str) -> Key {
    memo(format!("refused-key/{LAYOUT}/{fingerprint}"))
}

/// Upstream calls made on a UTC day (`YYYY-MM-DD`), a decimal counter any layout agrees on, in the state bucket.
pub fn quota(day: &str) -> Key {
    state(format!("quota/{day}"))
}

/// Upstream calls made on a UTC day for symbols never served before (NEW_SYMBOL_QUOTA_PERCENT's share), a
/// decimal counter, in the state bucket (one per day, like [`quota`]).
pub fn new_symbol_quota(day: &str) -> Key {
    state(format!("quota/{day}/new-symbols"))
}

/// Calls counted in [`quota`] that the host then refused to make (no call left this replica), a decimal
/// counter: today's use is `quota - quota_refunded`. A counter, not a decrement: atomics only add.
pub fn quota_refunded(day: &str) -> Key {
    state(format!("quota/{day}/refunded"))
}

/// Like [`quota_refunded`], for [`new_symbol_quota`].
pub fn new_symbol_quota_refunded(day: &str) -> Key {
    state(format!("quota/{day}/new-symbols/refunded"))
}

/// `symbol`'s series in the cache bucket; the encoding carries its own magic (`cache::encode`).
pub fn series(symbol: &str) -> Key {
    Key { bucket: Bucket::Cache, name: format!("series/{symbol}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_owned_keys_carry_their_layout_version() {
        for (key, version) in [
            (breaker_state(), LAYOUT),
            (breaker_failures(), LAYOUT),
            (breaker_probe("open:1"), LAYOUT),
            (breaker_transitions("open"), LAYOUT),
            (flight_ticket("MSFT"), FLIGHT_LAYOUT),
            (flight_outcome("MSFT"), FLIGHT_LAYOUT),
            (flight_lease("MSFT"), FLIGHT_LAYOUT),
            (flight_takeover("MSFT", "1"), FLIGHT_LAYOUT),
            (unknown_symbol("MSFT"), LAYOUT),
            (refused_key("abcd"), LAYOUT),
        ] {
            assert!(key.name.contains(&format!("/{version}/")), "{key:?}");
        }
        assert_ne!(flight_ticket("MSFT"), flight_outcome("MSFT"));
        assert_eq!(quota("2026-11-27"), Key { bucket: Bucket::State, name: "quota/2026-11-27".into() });
    }

    #[test]
    fn per_symbol_keys_that_outlive_a_flight_stay_out_of_the_state_bucket() {
        // See the filed issue: per-symbol leftovers in the state bucket crowded out the breaker and single flight.
        for (key, bucket) in [
            (flight_ticket("MSFT"), Bucket::State),
            (flight_lease("MSFT"), Bucket::State),
            (flight_outcome("MSFT"), Bucket::Memo),
            (flight_takeover("MSFT", "1"), Bucket::Memo),
            (unknown_symbol("MSFT"), Bucket::Memo),
            (refused_key("abcd"), Bucket::Memo),
            (series("MSFT"), Bucket::Cache),
            (breaker_state(), Bucket::State),
            (quota("2026-11-27"), Bucket::State),
        ] {
            assert_eq!(key.bucket, bucket, "{key:?}");
        }
    }
}
