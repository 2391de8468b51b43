//! [`Env`] over WASI: keyvalue bucket `""`, wall and monotonic clocks, outgoing HTTP, stderr.

use std::cell::OnceCell;

use super::wasi::clocks::{monotonic_clock, wall_clock};
use super::wasi::http::outgoing_handler;
use super::wasi::http::types::{ErrorCode, Fields, Method, OutgoingRequest, RequestOptions, Scheme};
use super::wasi::io::poll;
use super::wasi::io::streams::StreamError;
use super::wasi::keyvalue::{atomics, store};
use crate::core::config::{self, split_url};
use crate::core::env::{Env, FetchError, Fetched};

/// Largest upstream body we read; a compact daily series is ~12 KB.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Bucket name: the default store, the only one `wasmtime serve -S keyvalue` knows.
const BUCKET: &str = "";

/// The per-request environment; the bucket is opened on first use.
#[derive(Default)]
pub struct WasiEnv {
    bucket: OnceCell<Option<store::Bucket>>,
}

impl WasiEnv {
    fn bucket(&self) -> Option<&store::Bucket> {
        self.bucket
            .get_or_init(|| {
                store::open(BUCKET)
                    .map_err(|e| eprintln!("keyvalue: cannot open store, caching disabled: {e:?}"))
                    .ok()
            })
            .as_ref()
    }

    fn report(op: &str, key: &str, error: store::Error) {
        eprintln!("keyvalue: {op} {key} failed: {error:?}");
    }
}

impl Env for WasiEnv {
    fn kv_get(&self, key: &str) -> Option<Vec<u8>> {
        self.bucket()?.get(key).map_err(|e| Self::report("get", key, e)).ok().flatten()
    }

    fn kv_set(&self, key: &str, value: &[u8]) {
        if let Some(bucket) = self.bucket() {
            let _ = bucket.set(key, value).map_err(|e| Self::report("set", key, e));
        }
    }

    fn kv_delete(&self, key: &str) {
        if let Some(bucket) = self.bucket() {
            let _ = bucket.delete(key).map_err(|e| Self::report("delete", key, e));
        }
    }

    fn kv_increment(&self, key: &str, delta: u64) -> Option<u64> {
        atomics::increment(self.bucket()?, key, delta).map_err(|e| Self::report("increment", key, e)).ok()
    }

    fn now_ms(&self) -> u64 {
        let now = wall_clock::now();
        now.seconds * 1000 + u64::from(now.nanoseconds / 1_000_000)
    }

    fn sleep_ms(&self, ms: u64) {
        monotonic_clock::subscribe_duration(ms * 1_000_000).block();
    }

    fn fetch(&self, url: &str, timeout_ms: u64) -> Result<Fetched, FetchError> {
        let deadline = monotonic_clock::subscribe_duration(timeout_ms * 1_000_000);
        let (scheme, authority, path) = split_url(url).map_err(FetchError::Failed)?;
        let request = OutgoingRequest::new(Fields::new());
        let scheme = match scheme {
            config::Scheme::Http => Scheme::Http,
            config::Scheme::Https => Scheme::Https,
        };
        let fail = |what: &str| FetchError::Failed(format!("cannot build request: {what}"));
        request.set_method(&Method::Get).map_err(|()| fail("method"))?;
        request.set_scheme(Some(&scheme)).map_err(|()| fail("scheme"))?;
        request.set_authority(Some(authority)).map_err(|()| fail("authority"))?;
        request.set_path_with_query(Some(&path)).map_err(|()| fail("path"))?;
        let options = RequestOptions::new();
        let nanos = Some(timeout_ms * 1_000_000);
        // The host may not support every option; the deadline pollable below bounds us regardless.
        let _ = options.set_connect_timeout(nanos);
        let _ = options.set_first_byte_timeout(nanos);
        let _ = options.set_between_bytes_timeout(nanos);

        let pending = outgoing_handler::handle(request, Some(options)).map_err(describe)?;
        let ready = pending.subscribe();
        let response = loop {
            if let Some(result) = pending.get() {
                break result.map_err(|()| FetchError::Failed("response already taken".into()))?.map_err(describe)?;
            }
            if poll::poll(&[&ready, &deadline]).contains(&1) && !ready.ready() {
                return Err(FetchError::Timeout);
            }
        };
        let status = response.status();
        let body = response.consume().map_err(|()| FetchError::Failed("body already taken".into()))?;
        let stream = body.stream().map_err(|()| FetchError::Failed("body stream already taken".into()))?;
        let readable = stream.subscribe();
        let mut bytes = Vec::new();
        loop {
            match stream.read(64 * 1024) {
                Ok(chunk) if chunk.is_empty() => {
                    if poll::poll(&[&readable, &deadline]).contains(&1) && !readable.ready() {
                        return Err(FetchError::Timeout);
                    }
                }
                Ok(chunk) => {
                    bytes.extend_from_slice(&chunk);
                    if bytes.len() > MAX_BODY_BYTES {
                        return Err(FetchError::Failed(format!("upstream body larger than {MAX_BODY_BYTES} bytes")));
                    }
                }
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(FetchError::Failed(format!("reading upstream body: {}", e.to_debug_string())));
                }
            }
        }
        Ok(Fetched { status, body: bytes })
    }

    fn log(&self, line: &str) {
        eprintln!("{line}");
    }
}

fn describe(code: ErrorCode) -> FetchError {
    match code {
        ErrorCode::ConnectionTimeout | ErrorCode::ConnectionReadTimeout | ErrorCode::ConnectionWriteTimeout => FetchError::Timeout,
        other => FetchError::Failed(format!("{other:?}")),
    }
}
