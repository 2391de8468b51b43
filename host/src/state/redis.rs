//! Redis behind the keyvalue buckets, so replicas share one cache, one breaker, one quota and one
//! single flight. Every operation has a short deadline; when Redis is down, slow or restarting, each
//! bucket serves from its local in-memory twin (said once in the log, `stock_host_kv_fallback` = 1)
//! and a prober brings it back to Redis on its own once Redis answers again. The cache bucket's twin
//! holds a copy of every answer this replica read or wrote, so an outage starts with what it served;
//! nothing local is ever written back to Redis, so a replica cut off cannot overwrite newer shared state.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::task::JoinHandle;

use super::{Buckets, KvError, KvFuture, KvStore, check_size};
use crate::telemetry::metrics::Metrics;

/// How often the prober checks Redis while the host is on its local store.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Where Redis is and how to talk to it.
#[derive(Clone)]
pub struct RedisSettings {
    /// `redis://host:port[/db]` or `rediss://...` (never logged: it may hold a password).
    pub url: String,
    /// From KV_PASSWORD_FILE; overrides one in the URL.
    pub password: Option<String>,
    /// KV_PASSWORD_FILE itself: re-read while Redis refuses or is unreachable, so a rotated password
    /// (Secret volume) is picked up without a restart.
    pub password_file: Option<PathBuf>,
    /// Prefix of every key (KV_PREFIX), before the bucket's name.
    pub prefix: String,
    /// Deadline of one operation (KV_TIMEOUT).
    pub timeout: Duration,
    /// Expiry of cache-bucket entries (KV_CACHE_EXPIRY): longer than any build serves stale data.
    pub cache_expiry: Duration,
    /// Idle expiry of state-bucket keys (KV_STATE_EXPIRY, default [`DEFAULT_KV_STATE_EXPIRY`](crate::config::kv::DEFAULT_KV_STATE_EXPIRY)), refreshed on every
    /// write and increment: what the service uses stays, and a fleet's Redis does not keep every day's quota
    /// counter, probe ticket or orphaned flight ticket forever. Keep it longer than a UTC day (the quota's).
    pub state_expiry: Duration,
    /// Expiry of memo-bucket keys (KV_MEMO_EXPIRY, default [`DEFAULT_KV_MEMO_EXPIRY`](crate::config::kv::DEFAULT_KV_MEMO_EXPIRY)): per-symbol leftovers
    /// (remembered unknown symbols, flight outcomes), so 20,000 unknown symbols cost keys for this long only.
    /// Keep it at least NEGATIVE_CACHE_TTL, or unknown symbols are asked about again sooner.
    pub memo_expiry: Duration,
}

/// The connection shared by both buckets, and whether it is usable.
pub struct RedisLink {
    /// `KV_URL` as given (a password in it applies when no file overrides it).
    base: redis::ConnectionInfo,
    password_file: Option<PathBuf>,
    password: Mutex<Option<String>>,
    client: ArcSwap<redis::Client>,
    conn: ArcSwapOption<ConnectionManager>,
    healthy: AtomicBool,
    /// How many times Redis came back after this replica fell back: see [`RedisLink::shared_epoch`].
    returns: AtomicU64,
    timeout: Duration,
    metrics: Arc<Metrics>,
    /// `host:port` only, for logs.
    pub endpoint: String,
}

impl RedisLink {
    /// Parses the settings; connects later ([`RedisLink::connect`]).
    pub fn new(settings: &RedisSettings, metrics: Arc<Metrics>) -> Result<Arc<Self>, String> {
        let base = redis::IntoConnectionInfo::into_connection_info(settings.url.as_str()).map_err(|e| e.to_string())?;
        let endpoint = base.addr().to_string();
        let client = client_for(&base, settings.password.as_deref())?;
        metrics.kv_fallback.set(1);
        Ok(Arc::new(Self {
            base,
            password_file: settings.password_file.clone(),
            password: Mutex::new(settings.password.clone()),
            client: ArcSwap::from_pointee(client),
            conn: ArcSwapOption::empty(),
            healthy: AtomicBool::new(false),
            returns: AtomicU64::new(0),
            timeout: settings.timeout,
            metrics,
            endpoint,
        }))
    }

    /// Re-reads KV_PASSWORD_FILE; a changed password replaces the client and drops the connection, so
    /// the next connect authenticates with it. An unreadable or empty file keeps the password in use.
    fn reload_password(&self) {
        let Some(path) = &self.password_file else { return };
        let fresh = match crate::config::secret_file::read_secret_file(path) {
            Ok(Some(fresh)) => fresh,
            Ok(None) | Err(_) => return,
        };
        let mut current = self.password.lock().unwrap_or_else(|p| p.into_inner());
        if current.as_deref() == Some(fresh.as_str()) {
            return;
        }
        crate::telemetry::redact::remember_secret(&fresh);
        match client_for(&self.base, Some(&fresh)) {
            Ok(client) => {
                self.client.store(Arc::new(client));
                self.conn.store(None);
                *current = Some(fresh);
                tracing::info!(redis = %self.endpoint, "keyvalue: KV_PASSWORD_FILE changed; connecting with the new password");
            }
            Err(error) => tracing::warn!(redis = %self.endpoint, %error, "keyvalue: the new KV_PASSWORD_FILE password cannot be used"),
        }
    }

    /// Connects (or checks the connection) once; true when Redis answered.
    pub async fn connect(&self) -> bool {
        self.reload_password();
        let conn = match self.conn.load_full() {
            Some(conn) => (*conn).clone(),
            None => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout))
                    .set_number_of_retries(1);
                let client = self.client.load_full();
                match tokio::time::timeout(self.timeout * 4, client.get_connection_manager_with_config(config)).await {
                    Ok(Ok(conn)) => {
                        self.conn.store(Some(Arc::new(conn.clone())));
                        conn
                    }
                    _ => return false,
                }
            }
        };
        let mut conn = conn;
        let pong = tokio::time::timeout(self.timeout, redis::cmd("PING").query_async::<String>(&mut conn)).await;
        if matches!(pong, Ok(Ok(_))) {
            if !self.healthy.load(Ordering::SeqCst) {
                // The epoch moves before Redis counts as healthy, so no request that began before this return
                // ever sees its own epoch with Redis healthy again (see `shared_epoch`). Only the prober calls
                // this once it runs, so the load and the store do not race.
                self.returns.fetch_add(1, Ordering::SeqCst);
                self.healthy.store(true, Ordering::SeqCst);
                tracing::info!(redis = %self.endpoint, "keyvalue: Redis answers; replicas share state again");
                self.metrics.kv_fallback.set(0);
            }
            return true;
        }
        false
    }

    /// A connection when Redis is believed healthy; `None` while on the local store.
    fn usable(&self) -> Option<ConnectionManager> {
        if !self.healthy.load(Ordering::SeqCst) {
            return None;
        }
        self.conn.load_full().map(|c| (*c).clone())
    }

    /// Switches to the local store after `op` failed; logs once per outage.
    fn degrade(&self, op: &str, why: &str) {
        if self.healthy.swap(false, Ordering::SeqCst) {
            tracing::warn!(
                redis = %self.endpoint,
                op,
                why,
                "keyvalue: Redis unreachable; serving from this replica's local store, and making no upstream call \
                 (the fleet's daily quota is counted in Redis), until it is back"
            );
            self.metrics.kv_fallback.set(1);
        }
    }

    /// Whether operations currently go to Redis.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::SeqCst)
    }

    /// `Some(n)` while operations go to Redis, `None` while on the local store. `n` changes every time Redis
    /// comes back, so a request that saw the same `Some(n)` at its start and at an upstream call had every
    /// keyvalue operation in between (its quota count among them) in Redis.
    pub fn shared_epoch(&self) -> Option<u64> {
        let epoch = self.returns.load(Ordering::SeqCst);
        self.is_healthy().then_some(epoch)
    }

    async fn run<T: redis::FromRedisValue>(&self, op: &str, query: Query) -> Option<Result<T, KvError>> {
        let mut conn = self.usable()?;
        let answer = match &query {
            Query::One(cmd) => tokio::time::timeout(self.timeout, cmd.query_async::<T>(&mut conn)).await,
            Query::Atomic(pipe) => tokio::time::timeout(self.timeout, pipe.query_async::<T>(&mut conn)).await,
        };
        match answer {
            Ok(Ok(value)) => Some(Ok(value)),
            // Redis answered with an error about the data (not a counter): the guest's problem, not an outage.
            Ok(Err(error)) if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError) => {
                Some(Err(KvError::Other(error.to_string())))
            }
            Ok(Err(error)) => {
                self.degrade(op, &error.to_string());
                None
            }
            Err(_) => {
                self.degrade(op, "timed out");
                None
            }
        }
    }
}

/// What [`RedisLink::run`] sends: one command, or several in one `MULTI`/`EXEC` transaction.
enum Query {
    One(redis::Cmd),
    Atomic(redis::Pipeline),
}

/// A client for `base`, with `password` (from KV_PASSWORD_FILE) instead of any in the URL.
fn client_for(base: &redis::ConnectionInfo, password: Option<&str>) -> Result<redis::Client, String> {
    let mut info = base.clone();
    if let Some(password) = password {
        let redis_settings = info.redis_settings().clone().set_password(password);
        info = info.set_redis_settings(redis_settings);
    }
    redis::Client::open(info).map_err(|e| e.to_string())
}

/// Keeps probing Redis while the host is on its local store; stops when dropped.
pub struct RedisProber(JoinHandle<()>);

impl RedisProber {
    /// Connects now (bounded), then probes every [`PROBE_EVERY`] while unhealthy.
    pub async fn start(link: Arc<RedisLink>) -> Self {
        if !link.connect().await {
            tracing::warn!(redis = %link.endpoint, "keyvalue: Redis does not answer at startup; serving from the local store until it does");
        }
        Self(tokio::spawn(async move {
            let mut tick = tokio::time::interval(PROBE_EVERY);
            loop {
                tick.tick().await;
                if !link.is_healthy() {
                    link.connect().await;
                }
            }
        }))
    }
}

impl Drop for RedisProber {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Buckets {
    /// Buckets in Redis shared by every replica, each with an in-memory twin (same bounds, same expiries) for outages.
    pub fn redis(link: Arc<RedisLink>, settings: &RedisSettings, max_entries: usize) -> Self {
        let local = Self::memory(max_entries, settings.state_expiry, Some(settings.cache_expiry), Some(settings.memo_expiry));
        let bucket = |name: &str, expiry: Duration, local: Arc<dyn KvStore>, mirrored: bool| -> Arc<dyn KvStore> {
            Arc::new(RedisBucket::new(link.clone(), &settings.prefix, name, expiry, local, mirrored))
        };
        Self {
            state: bucket("state", settings.state_expiry, local.state.clone(), false),
            cache: bucket("cache", settings.cache_expiry, local.cache.clone(), true),
            memo: bucket("memo", settings.memo_expiry, local.memo.clone(), false),
            local: Some(Arc::new(local)),
        }
    }
}

/// One bucket in Redis (keys `{prefix}{bucket}:{key}`), with its local twin for outages. Every key expires:
/// every write and increment sets its expiry again, so only keys nobody writes any more go away.
pub struct RedisBucket {
    link: Arc<RedisLink>,
    prefix: String,
    expiry_ms: u64,
    local: Arc<dyn KvStore>,
    /// Whether `local` keeps a copy of what Redis answered and was sent, to serve during an outage.
    mirrored: bool,
}

impl RedisBucket {
    /// The bucket `name` under `prefix`; a key expires `expiry` after it was last written (at least 1 ms).
    /// `mirrored`: the local twin keeps a copy of every value read or written, for outages.
    pub fn new(link: Arc<RedisLink>, prefix: &str, name: &str, expiry: Duration, local: Arc<dyn KvStore>, mirrored: bool) -> Self {
        let expiry_ms = u64::try_from(expiry.as_millis()).unwrap_or(u64::MAX).max(1);
        Self { link, prefix: format!("{prefix}{name}:"), expiry_ms, local, mirrored }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

impl KvStore for RedisBucket {
    fn get<'a>(&'a self, key: &'a str) -> KvFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            let mut cmd = redis::cmd("GET");
            cmd.arg(self.key(key));
            match self.link.run::<Option<Vec<u8>>>("get", Query::One(cmd)).await {
                Some(Ok(Some(value))) if self.mirrored => {
                    // A full twin only forgets its copy; the answer from Redis stands.
                    let _ = self.local.set(key, value.clone()).await;
                    Ok(Some(value))
                }
                Some(result) => result,
                None => self.local.get(key).await,
            }
        })
    }

    fn set<'a>(&'a self, key: &'a str, value: Vec<u8>) -> KvFuture<'a, ()> {
        Box::pin(async move {
            check_size(&value)?;
            let mut cmd = redis::cmd("SET");
            cmd.arg(self.key(key)).arg(value.as_slice()).arg("PX").arg(self.expiry_ms);
            match self.link.run::<()>("set", Query::One(cmd)).await {
                Some(Ok(())) if self.mirrored => {
                    let _ = self.local.set(key, value).await;
                    Ok(())
                }
                Some(result) => result,
                None => self.local.set(key, value).await,
            }
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> KvFuture<'a, ()> {
        Box::pin(async move {
            let mut cmd = redis::cmd("DEL");
            cmd.arg(self.key(key));
            match self.link.run::<()>("delete", Query::One(cmd)).await {
                Some(Ok(())) if self.mirrored => self.local.delete(key).await,
                Some(result) => result,
                None => self.local.delete(key).await,
            }
        })
    }

    fn increment<'a>(&'a self, key: &'a str, delta: u64) -> KvFuture<'a, u64> {
        Box::pin(async move {
            // One transaction, so no counter is ever left without its expiry (a crash between two commands would).
            let full_key = self.key(key);
            let mut pipe = redis::pipe();
            pipe.atomic().cmd("INCRBY").arg(&full_key).arg(delta).cmd("PEXPIRE").arg(&full_key).arg(self.expiry_ms).ignore();
            match self.link.run::<(u64,)>("increment", Query::Atomic(pipe)).await {
                Some(result) => result.map(|(next,)| next),
                None => self.local.increment(key, delta).await,
            }
        })
    }

    fn keys(&self) -> KvFuture<'_, Vec<String>> {
        Box::pin(async move {
            // SCAN, not KEYS: it never blocks a Redis shared with other services.
            let (mut cursor, mut keys) = (0u64, Vec::new());
            loop {
                let mut cmd = redis::cmd("SCAN");
                cmd.arg(cursor).arg("MATCH").arg(format!("{}*", self.prefix)).arg("COUNT").arg(500);
                match self.link.run::<(u64, Vec<String>)>("list_keys", Query::One(cmd)).await {
                    Some(Ok((next, batch))) => {
                        keys.extend(batch.into_iter().filter_map(|k| k.strip_prefix(&self.prefix).map(str::to_owned)));
                        if next == 0 {
                            return Ok(keys);
                        }
                        cursor = next;
                    }
                    Some(Err(error)) => return Err(error),
                    None => return self.local.keys().await,
                }
            }
        })
    }

    fn backend(&self) -> &'static str {
        if self.link.is_healthy() { "redis" } else { "memory" }
    }
}
