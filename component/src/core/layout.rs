//! This build's keyvalue layout: every key it reads or writes, in one place. The layout is a versioned
//! wire format: another build may share the store (hot swap, canary, replicas), so a key's encoding
//! never changes under the same name; a new encoding gets a new [`LAYOUT`] version. The host never
//! reads these keys; it learns the breaker through `stock:service/status`.

/// Version segment of every state key. Test-fixture builds store their breaker under a layout of
/// their own, which proves the host reads a build's state through WIT and not through these keys.
pub const LAYOUT: &str = if cfg!(feature = "fixture") { "fixture-v1" } else { "v1" };

/// Breaker state (`closed`, `open:<ms>`, `half-open:<ms>`), in the state bucket.
pub fn breaker_state() -> String {
    format!("breaker/{LAYOUT}/state")
}

/// Consecutive upstream failures (an atomics counter), in the state bucket.
pub fn breaker_failures() -> String {
    format!("breaker/{LAYOUT}/failures")
}

/// Ticket for the single half-open probe that leaves `state` (encoded), in the state bucket.
pub fn breaker_probe(encoded_state: &str) -> String {
    format!("breaker/{LAYOUT}/probe/{encoded_state}")
}

/// Transitions into the state named `state` (an atomics counter), in the state bucket.
pub fn breaker_transitions(state: &str) -> String {
    format!("breaker/{LAYOUT}/transitions/{state}")
}

/// Single-flight ticket for `symbol` (an atomics counter), in the state bucket.
pub fn flight_ticket(symbol: &str) -> String {
    format!("flight/{LAYOUT}/{symbol}")
}

/// The last single-flight leader's error for `symbol` (see `Error::encode_outcome`), in the state bucket.
pub fn flight_outcome(symbol: &str) -> String {
    format!("flight/{LAYOUT}/{symbol}/outcome")
}

/// When the current single-flight leader for `symbol` gives up (`until_ms`), in the state bucket:
/// after that its ticket is an orphan (the leader was killed) and a follower may take over.
pub fn flight_lease(symbol: &str) -> String {
    format!("flight/{LAYOUT}/{symbol}/lease")
}

/// Ticket deciding which follower takes over from the leader whose lease read `lease`, in the state bucket.
pub fn flight_takeover(symbol: &str, lease: &str) -> String {
    format!("flight/{LAYOUT}/{symbol}/takeover/{lease}")
}

/// Until when (`until_ms`) the upstream is known not to have `symbol`, in the cache bucket.
pub fn unknown_symbol(symbol: &str) -> String {
    format!("negative/{LAYOUT}/{symbol}")
}

/// Until when (`until_ms`) the upstream refuses the key with this fingerprint, in the state bucket.
pub fn refused_key(fingerprint: &str) -> String {
    format!("refused-key/{LAYOUT}/{fingerprint}")
}

/// Upstream calls made on a UTC day (`YYYY-MM-DD`), a decimal counter any layout agrees on.
pub fn quota(day: &str) -> String {
    format!("quota/{day}")
}

/// `symbol`'s series in the cache bucket; the encoding carries its own magic (`cache::encode`).
pub fn series(symbol: &str) -> String {
    format!("series/{symbol}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_keys_carry_the_layout_version() {
        for key in [
            breaker_state(),
            breaker_failures(),
            breaker_probe("open:1"),
            breaker_transitions("open"),
            flight_ticket("MSFT"),
            flight_outcome("MSFT"),
            flight_lease("MSFT"),
            flight_takeover("MSFT", "1"),
            unknown_symbol("MSFT"),
            refused_key("abcd"),
        ] {
            assert!(key.contains(&format!("/{LAYOUT}/")), "{key}");
        }
        assert_ne!(flight_ticket("MSFT"), flight_outcome("MSFT"));
        assert_eq!(quota("2026-11-27"), "quota/2026-11-27");
    }
}
