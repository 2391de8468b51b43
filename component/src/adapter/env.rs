//! [`Env`] over WASI: keyvalue buckets `""` (state), `cache` and `memo`, wall and monotonic clocks, outgoing
//! HTTP, stderr.

use std::cell::{OnceCell, RefCell};

use super::wasi::clocks::{monotonic_clock, wall_clock};
use super::wasi::http::outgoing_handler;
use super::wasi::http::types::{ErrorCode, Fields, IncomingResponse, Method, OutgoingRequest, RequestOptions, Scheme};
use super::wasi::io::poll::{self, Pollable};
use super::wasi::io::streams::StreamError;
use super::wasi::keyvalue::{atomics, store};
use super::wasi::random::random;
use crate::core::config::{self, split_url};
use crate::core::env::{Bucket, Env, FetchError, Fetched, Key};
use crate::core::rendered::Rendered;

/// Largest upstream body we read; a compact daily series is ~12 KB.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Bytes asked for per read of the upstream body.
const READ_CHUNK: u64 = 64 * 1024;

thread_local! {
    /// Bodies this instance rendered: a reused instance keeps them for its next requests.
    static RENDERED: RefCell<Rendered> = RefCell::new(Rendered::default());
}

/// The per-request environment; buckets are opened on first use.
#[derive(Default)]
pub struct WasiEnv {
    state: OnceCell<Option<store::Bucket>>,
    cache: OnceCell<Option<store::Bucket>>,
    memo: OnceCell<Option<store::Bucket>>,
}

impl WasiEnv {
    fn bucket(&self, which: Bucket) -> Option<&store::Bucket> {
        let cell = match which {
            Bucket::State => &self.state,
            Bucket::Cache => &self.cache,
            Bucket::Memo => &self.memo,
        };
        cell.get_or_init(|| open(which)).as_ref()
    }
}

/// Opens `which`; a host that does not serve the cache or memo bucket (`wasmtime serve` knows only `""`)
/// gets the state bucket in its place, so the service still works there.
fn open(which: Bucket) -> Option<store::Bucket> {
    match store::open(which.name()) {
        Ok(bucket) => Some(bucket),
        Err(store::Error::NoSuchStore) if which != Bucket::State => open(Bucket::State),
        Err(error) => {
            eprintln!("keyvalue: cannot open bucket {:?}, it is disabled: {error:?}", which.name());
            None
        }
    }
}

fn report(op: &str, key: &Key, error: store::Error) {
    eprintln!("keyvalue: {op} {:?}/{} failed: {error:?}", key.bucket.name(), key.name);
}

impl Env for WasiEnv {
    fn kv_get(&self, key: &Key) -> Option<Vec<u8>> {
        self.bucket(key.bucket)?.get(&key.name).map_err(|e| report("get", key, e)).ok().flatten()
    }

    fn kv_set(&self, key: &Key, value: &[u8]) {
        if let Some(bucket) = self.bucket(key.bucket) {
            let _ = bucket.set(&key.name, value).map_err(|e| report("set", key, e));
        }
    }

    fn kv_delete(&self, key: &Key) {
        if let Some(bucket) = self.bucket(key.bucket) {
            let _ = bucket.delete(&key.name).map_err(|e| report("delete", key, e));
        }
    }

    fn kv_increment(&self, key: &Key, delta: u64) -> Option<u64> {
        atomics::increment(self.bucket(key.bucket)?, &key.name, delta).map_err(|e| report("increment", key, e)).ok()
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
        let request = build_request(url)?;
        let response = send(request, timeout_ms, &deadline)?;
        let status = response.status();
        let body = read_body(response, &deadline)?;
        Ok(Fetched { status, body })
    }

    fn log(&self, line: &str) {
        eprintln!("{line}");
    }

    fn random_u64(&self) -> u64 {
        random::get_random_u64()
    }

    fn with_rendered<R>(&self, f: impl FnOnce(&mut Rendered) -> R) -> R {
        RENDERED.with_borrow_mut(f)
    }
}

/// A GET for `url`.
fn build_request(url: &str) -> Result<OutgoingRequest, FetchError> {
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
    Ok(request)
}

/// Sends `request` and waits for the response head, at most until `deadline`.
fn send(request: OutgoingRequest, timeout_ms: u64, deadline: &Pollable) -> Result<IncomingResponse, FetchError> {
    let options = RequestOptions::new();
    let nanos = Some(timeout_ms * 1_000_000);
    // The host may not support every option; the deadline pollable bounds us regardless.
    let _ = options.set_connect_timeout(nanos);
    let _ = options.set_first_byte_timeout(nanos);
    let _ = options.set_between_bytes_timeout(nanos);
    let pending = outgoing_handler::handle(request, Some(options)).map_err(describe)?;
    let ready = pending.subscribe();
    loop {
        if let Some(result) = pending.get() {
            return result.map_err(|()| FetchError::Failed("response already taken".into()))?.map_err(describe);
        }
        if poll::poll(&[&ready, deadline]).contains(&1) && !ready.ready() {
            return Err(FetchError::Timeout);
        }
    }
}

/// The whole body of `response`, at most [`MAX_BODY_BYTES`], read until `deadline`.
fn read_body(response: IncomingResponse, deadline: &Pollable) -> Result<Vec<u8>, FetchError> {
    let body = response.consume().map_err(|()| FetchError::Failed("body already taken".into()))?;
    let stream = body.stream().map_err(|()| FetchError::Failed("body stream already taken".into()))?;
    let readable = stream.subscribe();
    let mut bytes = Vec::new();
    loop {
        match stream.read(READ_CHUNK) {
            Ok(chunk) if chunk.is_empty() => {
                if poll::poll(&[&readable, deadline]).contains(&1) && !readable.ready() {
                    return Err(FetchError::Timeout);
                }
            }
            Ok(chunk) => {
                bytes.extend_from_slice(&chunk);
                if bytes.len() > MAX_BODY_BYTES {
                    return Err(FetchError::Failed(format!("upstream body larger than {MAX_BODY_BYTES} bytes")));
                }
            }
            Err(StreamError::Closed) => return Ok(bytes),
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(FetchError::Failed(format!("reading upstream body: {}", e.to_debug_string())));
            }
        }
    }
}

/// A `wasi:http` error as the problem's detail says it: in words. The debug form goes to the log only.
fn describe(code: ErrorCode) -> FetchError {
    let words = match &code {
        ErrorCode::ConnectionTimeout | ErrorCode::ConnectionReadTimeout | ErrorCode::ConnectionWriteTimeout => {
            return FetchError::Timeout;
        }
        ErrorCode::DnsTimeout => "the upstream's name did not resolve in time",
        ErrorCode::DnsError(_) => "the upstream's name does not resolve",
        ErrorCode::DestinationNotFound | ErrorCode::DestinationUnavailable => "the upstream host cannot be reached",
        ErrorCode::DestinationIpProhibited | ErrorCode::DestinationIpUnroutable => "the upstream address cannot be reached from here",
        ErrorCode::ConnectionRefused => "the upstream refused the connection",
        ErrorCode::ConnectionTerminated => "the upstream closed the connection",
        ErrorCode::ConnectionLimitReached => "too many connections to the upstream are open",
        ErrorCode::TlsProtocolError | ErrorCode::TlsAlertReceived(_) => "the TLS handshake with the upstream failed",
        ErrorCode::TlsCertificateError => "the upstream's TLS certificate is not trusted",
        ErrorCode::HttpRequestDenied => {
            eprintln!("upstream request failed: {code:?}");
            return FetchError::Refused(
                "the host refused the upstream call: it calls only ALPHAVANTAGE_URL, and none while Redis (where the fleet \
                 counts the day's quota) is unreachable; its log says which"
                    .to_owned(),
            );
        }
        ErrorCode::HttpProtocolError => "the upstream did not speak HTTP",
        ErrorCode::HttpResponseIncomplete => "the upstream's answer ended early",
        _ => "the outgoing request failed",
    };
    eprintln!("upstream request failed: {code:?}");
    FetchError::Failed(words.to_owned())
}
