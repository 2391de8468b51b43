//! W3C trace context (`traceparent`): accepted from the client (or started here), carried into every
//! log line of the request (the request span's `trace_id`) and into the upstream call, as a child span.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use http::HeaderValue;
use sha2::{Digest, Sha256};

/// The header, lower-case as HTTP/2 and hyper write it.
pub const TRACEPARENT: &str = "traceparent";

/// One request's place in a distributed trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lower-case hex digits, never all zero.
    pub trace_id: String,
    /// The caller's span: 16 lower-case hex digits.
    pub parent_id: String,
    /// Trace flags (`01` = sampled).
    pub flags: String,
}

impl TraceContext {
    /// The client's `traceparent` when it is well formed (version 00 layout), else `None`.
    pub fn from_header(value: Option<&HeaderValue>) -> Option<Self> {
        let text = value?.to_str().ok()?.trim();
        let mut parts = text.split('-');
        let (version, trace_id, parent_id, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let nonzero = |s: &str| s.bytes().any(|b| b != b'0');
        let valid = hex(version, 2)
            && version != "ff"
            && hex(trace_id, 32)
            && nonzero(trace_id)
            && hex(parent_id, 16)
            && nonzero(parent_id)
            && hex(flags, 2);
        // Version 00 has exactly four fields; later versions may append more.
        (valid && (version != "00" || parts.next().is_none())).then(|| Self {
            trace_id: trace_id.into(),
            parent_id: parent_id.into(),
            flags: flags.into(),
        })
    }

    /// A new trace started by this host (sampled).
    pub fn root() -> Self {
        Self { trace_id: random_hex(16), parent_id: random_hex(8), flags: "01".into() }
    }

    /// The `traceparent` of a new child span (an upstream call) in this trace.
    pub fn child_header(&self) -> String {
        format!("00-{}-{}-{}", self.trace_id, random_hex(8), self.flags)
    }
}

/// `bytes` random-looking bytes as hex: unique per process and call, not secret.
fn random_hex(bytes: usize) -> String {
    static SEED: OnceLock<[u8; 32]> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = SEED.get_or_init(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        Sha256::digest(format!("{now}-{}-{:p}", std::process::id(), &COUNTER).as_bytes()).into()
    });
    let mut hasher = Sha256::new();
    hasher.update(seed);
    hasher.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    hasher.finalize().iter().take(bytes).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Option<TraceContext> {
        TraceContext::from_header(Some(&HeaderValue::from_str(text).expect("header")))
    }

    #[test]
    fn well_formed_headers_are_accepted_and_broken_ones_ignored() {
        let ok = parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").expect("valid");
        assert_eq!(
            (ok.trace_id.as_str(), ok.parent_id.as_str(), ok.flags.as_str()),
            ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "01")
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-xyz-00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        assert!(parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future").is_some(), "later versions may add fields");
    }

    #[test]
    fn children_keep_the_trace_and_get_new_span_ids() {
        let root = TraceContext::root();
        assert_eq!(root.trace_id.len(), 32);
        let (a, b) = (root.child_header(), root.child_header());
        assert_ne!(a, b);
        let child = parse(&a).expect("a child header is itself valid");
        assert_eq!(child.trace_id, root.trace_id);
        assert_ne!(TraceContext::root().trace_id, root.trace_id);
    }
}
