//! What `wasi:io` 0.2 promises both sides of a body stream.

/// Most bytes one `blocking-write-and-flush` takes: a build writes at most this much per such call, and the
/// host sizes what it buffers of a body by it.
pub const BLOCKING_WRITE_MAX: usize = 4096;
