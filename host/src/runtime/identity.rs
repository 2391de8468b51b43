//! A build's identity: the sha256 of its bytes and the version made of it. A leaf, so every part of
//! the runtime (the engine, the compiled-code cache) names builds the same way.

use sha2::{Digest, Sha256};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `sha256(bytes)` as lower-case hex.
pub fn digest(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// `sha256:HEX` of `bytes`: the same digest as an OCI descriptor writes it.
pub fn oci_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", digest(bytes))
}

/// A build's version: the first 12 hex digits of its digest (the one rule for every log line, metric
/// label, header and record).
pub fn version_of_digest(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

/// The version of the build made of `bytes`.
pub fn version_of(bytes: &[u8]) -> String {
    version_of_digest(&digest(bytes)).to_owned()
}
