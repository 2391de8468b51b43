//! The HTTP face of the host: the two listeners (traffic and admin), connection limits, and the
//! SIGTERM sequence (not ready at once, keep answering for SHUTDOWN_DELAY, drain, exit). Traffic routes
//! live in [`traffic`], admin routes in [`admin`], the API page in [`docs`].

mod admin;
mod docs;
mod traffic;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::body::HostBody;
use crate::builds::Builds;
use crate::config::listen::ListenOptions;
use crate::error::HostError;
use crate::runtime::Runtime;
use crate::sources::registry::RegistrySource;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::otel::SpanExport;
pub use admin::AdminAuth;

/// Header naming the running component build.
pub const COMPONENT_VERSION_HEADER: &str = "x-component-version";
/// Header carrying the request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Connections the admin port keeps open at once (scrapers and operators, never traffic).
const MAX_ADMIN_CONNECTIONS: usize = 64;
/// Connections past [`MAX_ADMIN_CONNECTIONS`] still served, one request each, for the light requests
/// an operator needs when the port is crowded (`/metrics`, reading the builds, rollback, promote).
const RESERVED_ADMIN_CONNECTIONS: usize = 8;
/// How long an admin client may take to send its request head (a half-open connection holds a slot
/// no longer than this).
const ADMIN_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a shed connection gets to read its 503 (and finish sending) before it is closed anyway.
const SHED_WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// At most one "accept failed" line per this interval; the rest are counted into it.
const ACCEPT_ERROR_LOG_EVERY: Duration = Duration::from_secs(1);

/// Requests still running when the drain timeout passed: the process should exit non-zero.
#[derive(Debug, thiserror::Error)]
#[error("the drain timeout ({0:?}) passed with requests still running; they were cut off")]
pub struct DrainTimedOut(pub Duration);

/// What the HTTP room serves from: the builds, the runtime under them and the host's own state.
pub struct Server {
    builds: Arc<Builds>,
    runtime: Arc<Runtime>,
    metrics: Arc<Metrics>,
    spans: Option<Arc<SpanExport>>,
    registry: Option<Arc<RegistrySource>>,
    admin: AdminAuth,
    uploads: Semaphore,
    max_connections: usize,
    drain_timeout: Duration,
    shutdown_delay: Duration,
    draining: AtomicBool,
    next_request: AtomicU64,
    request_prefix: String,
}

impl Server {
    /// The server for `builds`, with the listeners' settings, the admin token source, and the registry
    /// source (shown by `GET /admin/component`) when COMPONENT is one.
    pub fn new(
        builds: Arc<Builds>,
        runtime: Arc<Runtime>,
        listen: &ListenOptions,
        admin: AdminAuth,
        spans: Option<Arc<SpanExport>>,
        registry: Option<Arc<RegistrySource>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            metrics: runtime.metrics().clone(),
            runtime,
            builds,
            spans,
            registry,
            admin,
            uploads: Semaphore::new(1),
            max_connections: usize::try_from(listen.max_connections).unwrap_or(usize::MAX),
            drain_timeout: listen.drain_timeout,
            shutdown_delay: listen.shutdown_delay,
            draining: AtomicBool::new(false),
            next_request: AtomicU64::new(1),
            request_prefix: request_id_prefix(),
        })
    }

    /// Whether shutdown has begun.
    fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// The caller's `X-Request-Id` when it is short and plain, else a new one.
    fn request_id(&self, incoming: Option<&HeaderValue>) -> String {
        let plain = |v: &&str| (1..=64).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        match incoming.and_then(|v| v.to_str().ok()).filter(plain) {
            Some(id) => id.to_owned(),
            None => format!("{}-{:x}", self.request_prefix, self.next_request.fetch_add(1, Ordering::Relaxed)),
        }
    }
}

/// A per-process prefix for request ids: the pid alone is 1 in every container, so mix in the start time.
fn request_id_prefix() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos() ^ (d.as_secs() as u32));
    format!("{:08x}", nanos ^ std::process::id().rotate_left(16))
}

/// Serves until `shutdown` resolves, then drains. Returns when every connection is closed, or an
/// error when the drain timeout passed first.
pub async fn serve(
    server: Arc<Server>,
    traffic: TcpListener,
    admin: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DrainTimedOut> {
    let (stop_accepting, accepting) = watch::channel(false);
    let traffic_graceful = GracefulShutdown::new();
    let admin_graceful = GracefulShutdown::new();
    let traffic_port = Port {
        limit: Arc::new(Semaphore::new(server.max_connections)),
        reserve: None,
        header_read_timeout: HEADER_READ_TIMEOUT,
        metrics: Some(server.metrics.clone()),
    };
    let admin_port = Port {
        limit: Arc::new(Semaphore::new(MAX_ADMIN_CONNECTIONS)),
        reserve: Some(Arc::new(Semaphore::new(RESERVED_ADMIN_CONNECTIONS))),
        header_read_timeout: ADMIN_HEADER_READ_TIMEOUT,
        metrics: None,
    };
    let traffic_loop = accept_loop(traffic, traffic_port, accepting.clone(), &traffic_graceful, {
        let server = server.clone();
        move |request, _lane| traffic::request(server.clone(), request)
    });
    let admin_loop = accept_loop(admin, admin_port, accepting, &admin_graceful, {
        let server = server.clone();
        move |request, lane| admin::request(server.clone(), request, lane)
    });
    let sequence = async {
        shutdown.await;
        server.draining.store(true, Ordering::SeqCst);
        tracing::info!(delay_ms = server.shutdown_delay.as_millis() as u64, "shutdown requested: /ready now answers 503");
        tokio::time::sleep(server.shutdown_delay).await;
        let _ = stop_accepting.send(true);
    };
    tokio::join!(traffic_loop, admin_loop, sequence);
    tracing::info!(timeout_ms = server.drain_timeout.as_millis() as u64, "draining requests in flight");
    let drained = tokio::time::timeout(server.drain_timeout, async {
        tokio::join!(traffic_graceful.shutdown(), admin_graceful.shutdown());
    })
    .await;
    match drained {
        Ok(()) => {
            tracing::info!("drained; exiting");
            Ok(())
        }
        Err(_) => {
            tracing::error!(in_flight = server.metrics.in_flight.get(), "drain timeout passed with requests still running; exiting");
            Err(DrainTimedOut(server.drain_timeout))
        }
    }
}

/// Which share of a listener's connections a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Within the connection limit.
    Normal,
    /// Past it, on a reserved connection: light requests only, one per connection.
    Reserve,
}

/// What one listener allows: how many connections at once (and a reserve past them), how long a
/// head may take, and where to count them.
struct Port {
    limit: Arc<Semaphore>,
    reserve: Option<Arc<Semaphore>>,
    header_read_timeout: Duration,
    metrics: Option<Arc<Metrics>>,
}

async fn accept_loop<F, Fut>(listener: TcpListener, port: Port, mut stop: watch::Receiver<bool>, graceful: &GracefulShutdown, handle: F)
where
    F: Fn(Request<Incoming>, Lane) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<HostBody>> + Send + 'static,
{
    let mut accept_errors = RateLimitedLog::new(ACCEPT_ERROR_LOG_EVERY);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Typically EMFILE: out of descriptors. Back off a little so the loop does not spin.
                accept_errors.record(|suppressed| tracing::warn!(%error, suppressed, "accept failed"));
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let reserved = || port.reserve.as_ref().and_then(|r| r.clone().try_acquire_owned().ok());
        let (open, lane) = match port.limit.clone().try_acquire_owned() {
            Ok(open) => (open, Lane::Normal),
            Err(_) => match reserved() {
                Some(open) => (open, Lane::Reserve),
                None => {
                    if let Some(metrics) = &port.metrics {
                        metrics.connections_shed.inc();
                    }
                    tokio::spawn(shed(stream));
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let handle = handle.clone();
        let service = service_fn(move |request| {
            let handle = handle.clone();
            async move { Ok::<_, Infallible>(handle(request, lane).await) }
        });
        let connection = http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .keep_alive(lane == Lane::Normal)
            .header_read_timeout(port.header_read_timeout)
            .max_headers(MAX_HEADERS)
            .max_buf_size(MAX_HEADER_BYTES)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        let gauge = port.metrics.clone();
        tokio::spawn(async move {
            let _open = open;
            let _counted = gauge.map(OpenConnection::start);
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
}

/// How long a client may take to send its request head before the connection is closed (slowloris).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Most request headers read; more is answered 431.
pub const MAX_HEADERS: usize = 100;
/// Largest request head buffered, in bytes; larger is answered 431.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Answers a connection over the cap with a 503 and closes it, never waiting long on the client.
async fn shed(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let (status, head, body) = HostError::TooManyConnections.raw_response("/");
    let head = format!("HTTP/1.1 {status}\r\n{head}connection: close\r\ncontent-length: {}\r\n\r\n", body.len());
    let _ = tokio::time::timeout(SHED_WRITE_TIMEOUT, async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.shutdown().await?;
        // Lingering close: read what the client is still sending, so closing does not reset the
        // connection before it has read the answer.
        let mut sink = [0u8; 4096];
        while tokio::io::AsyncReadExt::read(&mut stream, &mut sink).await? > 0 {}
        Ok::<(), std::io::Error>(())
    })
    .await;
}

/// A JSON answer the host makes itself (never cached).
fn json_response(status: StatusCode, body: HostBody) -> Response<HostBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Counts an open traffic connection for as long as it lives.
struct OpenConnection(Arc<Metrics>);

impl OpenConnection {
    fn start(metrics: Arc<Metrics>) -> Self {
        metrics.open_connections.inc();
        Self(metrics)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open_connections.dec();
    }
}

/// Logs an event at most once per interval, saying how many were suppressed in between.
struct RateLimitedLog {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedLog {
    fn new(every: Duration) -> Self {
        Self { every, last: None, suppressed: 0 }
    }

    fn record(&mut self, log: impl FnOnce(u64)) {
        let now = Instant::now();
        if self.last.is_some_and(|last| now.duration_since(last) < self.every) {
            self.suppressed += 1;
            return;
        }
        log(self.suppressed);
        self.last = Some(now);
        self.suppressed = 0;
    }
}
