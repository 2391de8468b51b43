//! The one response body type the servers write: the component's streamed body or a host-made one.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use stock_shared::wasi_io::BLOCKING_WRITE_MAX;

/// Component bodies up to this size are collected before the head is sent, so head and body leave in one write.
pub const BUFFERED_BODY_MAX: u64 = 64 * 1024;

/// Body writes the host holds before reading any: enough for a whole [`BUFFERED_BODY_MAX`] body written
/// 4 KiB at a time, so the guest never waits for the host to read (which would move a call that needs no
/// I/O to a task of its own). Larger bodies stream with this much in flight.
pub const BODY_WRITES_BUFFERED: usize = BUFFERED_BODY_MAX as usize / BLOCKING_WRITE_MAX;

/// Error type of any response body.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;
/// A boxed response body.
pub type HostBody = UnsyncBoxBody<Bytes, BodyError>;

/// A complete in-memory body.
pub fn full(bytes: impl Into<Bytes>) -> HostBody {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

/// A JSON response body from a `&'static str`.
pub fn static_json(text: &'static str) -> HostBody {
    full(Bytes::from_static(text.as_bytes()))
}

/// A body that fails at once, so the client sees a broken response rather than a short one.
pub fn failed(reason: String) -> HostBody {
    Failed(Some(reason.into())).boxed_unsync()
}

struct Failed(Option<BodyError>);

impl hyper::body::Body for Failed {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, BodyError>>> {
        std::task::Poll::Ready(self.0.take().map(Err))
    }
}
