//! W3C trace context (`traceparent`): accepted from the client (or started here), carried into every
//! log line of the request (the request span's `trace_id`) and into the upstream call, as a child span.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use http::HeaderValue;

/// The header, lower-case as HTTP/2 and hyper write it.
pub const TRACEPARENT: &str = "traceparent";

/// One request's place in a distributed trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lower-case hex digits, never all zero.
    pub trace_id: String,
    /// The caller's span (16 lower-case hex digits); `None` when this host started the trace.
    pub parent_id: Option<String>,
    /// This host's own span for the request: the parent of its upstream calls.
    pub span_id: String,
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
            parent_id: Some(parent_id.into()),
            span_id: new_span_id(),
            flags: flags.into(),
        })
    }

    /// A new trace started by this host (sampled).
    pub fn root() -> Self {
        Self {
            trace_id: format!("{:016x}{:016x}", random_u64(), random_u64()),
            parent_id: None,
            span_id: new_span_id(),
            flags: "01".into(),
        }
    }

    /// Whether the caller (or this host) asked for the trace to be recorded.
    pub fn sampled(&self) -> bool {
        u8::from_str_radix(&self.flags, 16).is_ok_and(|flags| flags & 1 == 1)
    }

    /// The `traceparent` that makes `span_id` (a new span of this trace) the parent of what it calls.
    pub fn header_for(&self, span_id: &str) -> String {
        format!("00-{}-{span_id}-{}", self.trace_id, self.flags)
    }
}

/// A new span id: 16 lower-case hex digits, never all zero.
pub fn new_span_id() -> String {
    format!("{:016x}", random_u64())
}

/// Random-looking, unique per process and call, never zero; not secret, so cheap (SplitMix64 over a
/// counter seeded from the clock, the process id and an address).
fn random_u64() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = SEED.get_or_init(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        now ^ (u64::from(std::process::id()) << 32) ^ (&COUNTER as *const AtomicU64 as u64)
    });
    let mut z = seed.wrapping_add(COUNTER.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)).max(1)
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
            (ok.trace_id.as_str(), ok.parent_id.as_deref(), ok.flags.as_str()),
            ("4bf92f3577b34da6a3ce929d0e0e4736", Some("00f067aa0ba902b7"), "01")
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
        assert_eq!((root.trace_id.len(), root.span_id.len(), root.parent_id.as_deref()), (32, 16, None));
        assert!(root.sampled());
        let (a, b) = (new_span_id(), new_span_id());
        assert_ne!(a, b);
        let child = parse(&root.header_for(&a)).expect("a child header is itself valid");
        assert_eq!((child.trace_id.as_str(), child.parent_id.as_deref()), (root.trace_id.as_str(), Some(a.as_str())));
        assert_ne!(child.span_id, a, "the receiver's own span is new");
        assert_ne!(TraceContext::root().trace_id, root.trace_id);
        let ids: std::collections::HashSet<String> = (0..10_000).map(|_| new_span_id()).collect();
        assert_eq!(ids.len(), 10_000, "span ids do not repeat");
    }

    #[test]
    fn the_sampled_flag_is_the_low_bit() {
        for (flags, sampled) in [("01", true), ("00", false), ("03", true), ("02", false)] {
            let header = format!("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-{flags}");
            assert_eq!(parse(&header).expect("valid").sampled(), sampled, "{flags}");
        }
    }
}
