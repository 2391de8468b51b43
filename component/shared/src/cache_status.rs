//! The `X-Cache` header: where an answer came from. Every build sets it and the host counts it
//! (`stock_api_cache_hits_total`, ...), so both read the name and the values from here.

/// The header's name, lower-case (as `http::HeaderName::from_static` requires; HTTP names are case-insensitive).
pub const HEADER: &str = "x-cache";
/// Fresh from the shared cache.
pub const HIT: &str = "HIT";
/// Fetched from the upstream for this request (or for a concurrent one it waited on).
pub const MISS: &str = "MISS";
/// Past its TTL, served because the upstream failed.
pub const STALE: &str = "STALE";

/// Every value, in the order above.
pub const ALL: [&str; 3] = [HIT, MISS, STALE];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_name_is_lower_case_and_the_values_are_distinct() {
        assert_eq!(HEADER, HEADER.to_ascii_lowercase());
        for (i, a) in ALL.iter().enumerate() {
            assert!(ALL[i + 1..].iter().all(|b| a != b), "{a} twice");
            assert!(a.bytes().all(|b| b.is_ascii_uppercase()), "{a}");
        }
    }
}
