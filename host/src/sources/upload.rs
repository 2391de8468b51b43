//! `PUT /admin/component` as a source of builds: the uploaded body becomes a candidate, read within
//! a size limit (the door's [`MAX_COMPONENT_BYTES`]) and a deadline, so a trickling client cannot hold
//! an upload open for as long as it likes.

use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Limited};

use crate::builds::{Candidate, MAX_COMPONENT_BYTES, Mode, Source};

/// How long one upload may take from its head to its last byte (32 MiB at 1 MB/s fits).
pub const UPLOAD_DEADLINE: Duration = Duration::from_secs(60);

/// Why an upload did not become a candidate.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// Larger than any source may deliver.
    #[error("component uploads are limited to {MAX_COMPONENT_BYTES} bytes")]
    TooLarge,
    /// The body did not arrive within [`UPLOAD_DEADLINE`].
    #[error("the upload did not finish within {}s", UPLOAD_DEADLINE.as_secs())]
    TooSlow,
    /// The connection failed mid-body.
    #[error("the upload broke off: {0}")]
    Broken(String),
}

/// Reads `body` (declared `declared_len` bytes, if the client said) into a candidate asking for `mode`.
pub async fn receive<B>(body: B, declared_len: Option<u64>, mode: Mode, noticed: Instant) -> Result<Candidate, UploadError>
where
    B: hyper::body::Body<Data = bytes::Bytes>,
    B::Error: std::fmt::Display + Send + Sync + 'static + Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if declared_len.is_some_and(|n| n > MAX_COMPONENT_BYTES as u64) {
        return Err(UploadError::TooLarge);
    }
    let read = tokio::time::timeout(UPLOAD_DEADLINE.saturating_sub(noticed.elapsed()), Limited::new(body, MAX_COMPONENT_BYTES).collect());
    let collected = match read.await {
        Err(_) => return Err(UploadError::TooSlow),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => return Err(UploadError::TooLarge),
        Ok(Err(error)) => return Err(UploadError::Broken(error.to_string())),
        Ok(Ok(collected)) => collected,
    };
    Ok(Candidate { bytes: collected.to_bytes(), source: Source::Admin, reference: None, expected_digest: None, mode, noticed })
}
