//! `wasi:keyvalue` (store, atomics, batch) over the host's shared [`Buckets`], so every instance and
//! every request sees one cache and one breaker. Only the `cache` bucket is evicted; the state bucket
//! (breaker, tickets, quota) never is. Redis can slot in behind the same [`KvStore`] trait.

use std::collections::HashMap;
use std::future::Future;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use lru::LruCache;
use stock_shared::keyvalue::{CACHE_BUCKET, STATE_BUCKET};
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use crate::metrics::Metrics;

pub mod redis;

mod generated {
    wasmtime::component::bindgen!({
        path: "../wit/deps/keyvalue",
        world: "wasi:keyvalue/imports",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": super::Bucket,
        },
        trappable_error_type: {
            "wasi:keyvalue/store.error" => super::KvError,
        },
    });
}

use generated::wasi::keyvalue::{atomics, batch, store};

/// Largest value the store accepts (a cached series is ~2 KB).
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;

/// A keyvalue failure, as the guest sees it.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// The bucket name is not one the host serves.
    #[error("no such store")]
    NoSuchStore,
    /// Anything else (backend down, value too large, not a counter).
    #[error("{0}")]
    Other(String),
    /// A host-side failure that must trap the guest (resource table misuse).
    #[error(transparent)]
    Trap(#[from] wasmtime::Error),
}

impl From<wasmtime::component::ResourceTableError> for KvError {
    fn from(error: wasmtime::component::ResourceTableError) -> Self {
        Self::Trap(error.into())
    }
}

/// Future returned by [`KvStore`] operations.
pub type KvFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, KvError>> + Send + 'a>>;

/// The storage behind `wasi:keyvalue`: one flat key space shared by every request.
pub trait KvStore: Send + Sync + 'static {
    /// Value at `key`.
    fn get<'a>(&'a self, key: &'a str) -> KvFuture<'a, Option<Vec<u8>>>;
    /// Stores `value` at `key`.
    fn set<'a>(&'a self, key: &'a str, value: Vec<u8>) -> KvFuture<'a, ()>;
    /// Removes `key`.
    fn delete<'a>(&'a self, key: &'a str) -> KvFuture<'a, ()>;
    /// Adds `delta` to the decimal counter at `key` (absent = 0) and returns the new value.
    fn increment<'a>(&'a self, key: &'a str, delta: u64) -> KvFuture<'a, u64>;
    /// Every key.
    fn keys(&self) -> KvFuture<'_, Vec<String>>;
    /// Which backend serves right now (a metric label).
    fn backend(&self) -> &'static str {
        "memory"
    }
}

/// Keys the in-memory state bucket holds at most. State is small (a breaker, tickets, a counter a
/// day); the cap only stops a runaway build, by refusing new keys: state is never evicted.
pub const MAX_STATE_KEYS: usize = 100_000;

/// The buckets the host serves (see `stock_shared::keyvalue`): evictable cache and durable state.
#[derive(Clone)]
pub struct Buckets {
    /// Never evicted.
    pub state: Arc<dyn KvStore>,
    /// Evicted least recently used first.
    pub cache: Arc<dyn KvStore>,
}

impl Buckets {
    /// In-process buckets: the cache bounded to `cache_entries` keys, the state to [`MAX_STATE_KEYS`].
    pub fn in_memory(cache_entries: usize) -> Self {
        Self { state: Arc::new(MemoryState::new(MAX_STATE_KEYS)), cache: Arc::new(MemoryCache::new(cache_entries)) }
    }

    /// Buckets in Redis shared by every replica, each with an in-memory twin for outages.
    pub fn redis(link: Arc<redis::RedisLink>, settings: &redis::RedisSettings, cache_entries: usize) -> Self {
        let local = Self::in_memory(cache_entries);
        Self {
            state: Arc::new(redis::RedisBucket::new(link.clone(), &settings.prefix, "state", None, local.state)),
            cache: Arc::new(redis::RedisBucket::new(link, &settings.prefix, "cache", Some(settings.cache_expiry), local.cache)),
        }
    }

    fn by_name(&self, name: &str) -> Option<&Arc<dyn KvStore>> {
        match name {
            STATE_BUCKET => Some(&self.state),
            CACHE_BUCKET => Some(&self.cache),
            _ => None,
        }
    }
}

/// Adds `delta` to the decimal counter text in `current` (absent = 0), like wasmtime's and Redis's `INCRBY`.
fn incremented(key: &str, current: Option<&[u8]>, delta: u64) -> Result<u64, KvError> {
    let current = match current {
        None => 0,
        Some(value) => std::str::from_utf8(value)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| KvError::Other(format!("value at {key} is not a counter")))?,
    };
    current.checked_add(delta).ok_or_else(|| KvError::Other("counter overflow".into()))
}

fn check_size(value: &[u8]) -> Result<(), KvError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(KvError::Other(format!("value larger than {MAX_VALUE_BYTES} bytes")));
    }
    Ok(())
}

/// Runs `f` on the value behind `lock` and wraps the result as a ready [`KvFuture`].
fn locked<'a, S, T: Send + 'static>(lock: &Mutex<S>, f: impl FnOnce(&mut S) -> Result<T, KvError>) -> KvFuture<'a, T> {
    // A poisoned lock only means another request panicked mid-update; the map itself is still usable.
    let mut inner = lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    Box::pin(std::future::ready(f(&mut inner)))
}

/// In-process cache bucket: at most a fixed number of keys, the least recently used evicted first.
pub struct MemoryCache {
    entries: Mutex<LruCache<String, Vec<u8>>>,
}

impl MemoryCache {
    /// A cache holding at most `max_entries` keys (at least one).
    pub fn new(max_entries: usize) -> Self {
        Self { entries: Mutex::new(LruCache::new(NonZeroUsize::new(max_entries).unwrap_or(NonZeroUsize::MIN))) }
    }
}

impl KvStore for MemoryCache {
    fn get<'a>(&'a self, key: &'a str) -> KvFuture<'a, Option<Vec<u8>>> {
        locked(&self.entries, |entries| Ok(entries.get(key).cloned()))
    }

    fn set<'a>(&'a self, key: &'a str, value: Vec<u8>) -> KvFuture<'a, ()> {
        locked(&self.entries, move |entries| {
            check_size(&value)?;
            entries.put(key.to_owned(), value);
            Ok(())
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> KvFuture<'a, ()> {
        locked(&self.entries, |entries| {
            entries.pop(key);
            Ok(())
        })
    }

    fn increment<'a>(&'a self, key: &'a str, delta: u64) -> KvFuture<'a, u64> {
        locked(&self.entries, move |entries| {
            let next = incremented(key, entries.get(key).map(Vec::as_slice), delta)?;
            entries.put(key.to_owned(), next.to_string().into_bytes());
            Ok(next)
        })
    }

    fn keys(&self) -> KvFuture<'_, Vec<String>> {
        locked(&self.entries, |entries| Ok(entries.iter().map(|(k, _)| k.clone()).collect()))
    }
}

/// In-process state bucket: never evicts; refuses new keys past its cap.
pub struct MemoryState {
    max_keys: usize,
    entries: Mutex<HashMap<String, Vec<u8>>>,
}

impl MemoryState {
    /// A state bucket that refuses new keys once it holds `max_keys`.
    pub fn new(max_keys: usize) -> Self {
        Self { max_keys, entries: Mutex::new(HashMap::new()) }
    }
}

fn insert_bounded(entries: &mut HashMap<String, Vec<u8>>, max_keys: usize, key: &str, value: Vec<u8>) -> Result<(), KvError> {
    if !entries.contains_key(key) && entries.len() >= max_keys {
        return Err(KvError::Other(format!("state bucket is full ({max_keys} keys)")));
    }
    entries.insert(key.to_owned(), value);
    Ok(())
}

impl KvStore for MemoryState {
    fn get<'a>(&'a self, key: &'a str) -> KvFuture<'a, Option<Vec<u8>>> {
        locked(&self.entries, |entries| Ok(entries.get(key).cloned()))
    }

    fn set<'a>(&'a self, key: &'a str, value: Vec<u8>) -> KvFuture<'a, ()> {
        let max_keys = self.max_keys;
        locked(&self.entries, move |entries| {
            check_size(&value)?;
            insert_bounded(entries, max_keys, key, value)
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> KvFuture<'a, ()> {
        locked(&self.entries, |entries| {
            entries.remove(key);
            Ok(())
        })
    }

    fn increment<'a>(&'a self, key: &'a str, delta: u64) -> KvFuture<'a, u64> {
        let max_keys = self.max_keys;
        locked(&self.entries, move |entries| {
            let next = incremented(key, entries.get(key).map(Vec::as_slice), delta)?;
            insert_bounded(entries, max_keys, key, next.to_string().into_bytes())?;
            Ok(next)
        })
    }

    fn keys(&self) -> KvFuture<'_, Vec<String>> {
        locked(&self.entries, |entries| Ok(entries.keys().cloned().collect()))
    }
}

/// An open bucket: the store behind one of the [`Buckets`].
pub struct Bucket {
    store: Arc<dyn KvStore>,
}

/// The keyvalue view of one request's store.
pub struct KvView<'a> {
    /// The request's resource table.
    pub table: &'a mut ResourceTable,
    /// The shared buckets.
    pub buckets: &'a Buckets,
    /// Where operation counts go.
    pub metrics: &'a Metrics,
}

impl KvView<'_> {
    fn count<T>(&self, backend: &str, op: &str, result: &Result<T, KvError>) {
        let outcome = if result.is_ok() { "ok" } else { "error" };
        self.metrics.kv_operations.with_label_values(&[backend, op, outcome]).inc();
    }
}

/// Marker tying [`KvView`] to the linker.
pub struct HasKv;

impl HasData for HasKv {
    type Data<'a> = KvView<'a>;
}

/// Adds `wasi:keyvalue/{store,atomics,batch}` to `linker`.
pub fn add_to_linker<T: Send + 'static>(linker: &mut Linker<T>, view: fn(&mut T) -> KvView<'_>) -> wasmtime::Result<()> {
    store::add_to_linker::<T, HasKv>(linker, view)?;
    atomics::add_to_linker::<T, HasKv>(linker, view)?;
    batch::add_to_linker::<T, HasKv>(linker, view)?;
    Ok(())
}

impl store::Host for KvView<'_> {
    async fn open(&mut self, identifier: String) -> Result<Resource<Bucket>, KvError> {
        let store = self.buckets.by_name(&identifier).ok_or(KvError::NoSuchStore)?.clone();
        Ok(self.table.push(Bucket { store })?)
    }

    fn convert_error(&mut self, error: KvError) -> wasmtime::Result<store::Error> {
        match error {
            KvError::NoSuchStore => Ok(store::Error::NoSuchStore),
            KvError::Other(message) => Ok(store::Error::Other(message)),
            KvError::Trap(error) => Err(error),
        }
    }
}

impl store::HostBucket for KvView<'_> {
    async fn get(&mut self, bucket: Resource<Bucket>, key: String) -> Result<Option<Vec<u8>>, KvError> {
        let store = self.table.get(&bucket)?.store.clone();
        let result = store.get(&key).await;
        self.count(store.backend(), "get", &result);
        result
    }

    async fn set(&mut self, bucket: Resource<Bucket>, key: String, value: Vec<u8>) -> Result<(), KvError> {
        let store = self.table.get(&bucket)?.store.clone();
        let result = store.set(&key, value).await;
        self.count(store.backend(), "set", &result);
        result
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> Result<(), KvError> {
        let store = self.table.get(&bucket)?.store.clone();
        let result = store.delete(&key).await;
        self.count(store.backend(), "delete", &result);
        result
    }

    async fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> Result<bool, KvError> {
        let store = self.table.get(&bucket)?.store.clone();
        let result = store.get(&key).await.map(|v| v.is_some());
        self.count(store.backend(), "exists", &result);
        result
    }

    async fn list_keys(&mut self, bucket: Resource<Bucket>, _cursor: Option<u64>) -> Result<store::KeyResponse, KvError> {
        let store = self.table.get(&bucket)?.store.clone();
        let result = store.keys().await;
        self.count(store.backend(), "list_keys", &result);
        Ok(store::KeyResponse { keys: result?, cursor: None })
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for KvView<'_> {
    async fn increment(&mut self, bucket: Resource<Bucket>, key: String, delta: u64) -> Result<u64, KvError> {
        let store = self.table.get(&bucket)?.store.clone();
        let result = store.increment(&key, delta).await;
        self.count(store.backend(), "increment", &result);
        result
    }
}

impl batch::Host for KvView<'_> {
    async fn get_many(&mut self, bucket: Resource<Bucket>, keys: Vec<String>) -> Result<Vec<Option<(String, Vec<u8>)>>, KvError> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let store = self.table.get(&bucket)?.store.clone();
            let result = store.get(&key).await;
            self.count(store.backend(), "get", &result);
            out.push(result?.map(|value| (key, value)));
        }
        Ok(out)
    }

    async fn set_many(&mut self, bucket: Resource<Bucket>, key_values: Vec<(String, Vec<u8>)>) -> Result<(), KvError> {
        for (key, value) in key_values {
            let store = self.table.get(&bucket)?.store.clone();
            let result = store.set(&key, value).await;
            self.count(store.backend(), "set", &result);
            result?;
        }
        Ok(())
    }

    async fn delete_many(&mut self, bucket: Resource<Bucket>, keys: Vec<String>) -> Result<(), KvError> {
        for key in keys {
            let store = self.table.get(&bucket)?.store.clone();
            let result = store.delete(&key).await;
            self.count(store.backend(), "delete", &result);
            result?;
        }
        Ok(())
    }
}

/// The behaviour every [`KvStore`] backend must show; run against memory here and against a real Redis
/// in the integration tests, so both backends are held to the same contract.
pub mod contract {
    use super::{KvStore, MAX_VALUE_BYTES};

    /// Checks get/set/delete/increment/keys on an empty `store`; panics naming what broke.
    pub async fn check(store: &dyn KvStore) {
        assert_eq!(store.get("absent").await.expect("get"), None, "a missing key reads as absent");
        store.set("series/MSFT", b"\x00bytes\xff".to_vec()).await.expect("set");
        assert_eq!(store.get("series/MSFT").await.expect("get"), Some(b"\x00bytes\xff".to_vec()), "values are bytes, not text");
        store.set("series/MSFT", b"newer".to_vec()).await.expect("overwrite");
        assert_eq!(store.get("series/MSFT").await.expect("get"), Some(b"newer".to_vec()));
        assert_eq!(store.increment("quota/day", 2).await.expect("increment"), 2, "a missing counter starts at 0");
        assert_eq!(store.increment("quota/day", 3).await.expect("increment"), 5);
        assert_eq!(store.get("quota/day").await.expect("get"), Some(b"5".to_vec()), "counters are decimal text");
        assert!(store.increment("series/MSFT", 1).await.is_err(), "a non-counter is not incremented");
        let mut keys = store.keys().await.expect("keys");
        keys.sort();
        assert_eq!(keys, ["quota/day", "series/MSFT"]);
        store.delete("series/MSFT").await.expect("delete");
        store.delete("never-there").await.expect("deleting a missing key is fine");
        assert_eq!(store.get("series/MSFT").await.expect("get"), None);
        assert!(store.set("big", vec![0; MAX_VALUE_BYTES + 1]).await.is_err(), "oversized values are refused");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<T>(future: KvFuture<'_, T>) -> Result<T, KvError> {
        tokio::runtime::Builder::new_current_thread().build().expect("runtime").block_on(future)
    }

    #[test]
    fn both_memory_buckets_keep_the_store_contract() {
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        runtime.block_on(contract::check(&MemoryCache::new(10)));
        runtime.block_on(contract::check(&MemoryState::new(10)));
    }

    #[test]
    fn counters_are_decimal_text_like_wasmtime_and_redis() {
        for store in [&MemoryCache::new(10) as &dyn KvStore, &MemoryState::new(10)] {
            assert_eq!(run(store.increment("c", 2)).expect("ok"), 2);
            assert_eq!(run(store.increment("c", 3)).expect("ok"), 5);
            assert_eq!(run(store.get("c")).expect("ok"), Some(b"5".to_vec()));
            run(store.set("x", b"abc".to_vec())).expect("ok");
            assert!(run(store.increment("x", 1)).is_err(), "non-counter values are not incremented");
        }
    }

    #[test]
    fn the_cache_evicts_the_least_recently_used_key_at_its_bound() {
        let store = MemoryCache::new(2);
        run(store.set("a", vec![1])).expect("ok");
        run(store.set("b", vec![2])).expect("ok");
        run(store.get("a")).expect("ok");
        run(store.set("c", vec![3])).expect("ok");
        assert_eq!(run(store.get("b")).expect("ok"), None);
        assert_eq!(run(store.get("a")).expect("ok"), Some(vec![1]));
        assert_eq!(run(store.get("c")).expect("ok"), Some(vec![3]));
    }

    #[test]
    fn state_is_never_evicted_new_keys_are_refused_when_full() {
        let store = MemoryState::new(2);
        run(store.set("breaker", b"open:1".to_vec())).expect("ok");
        run(store.increment("tickets", 1)).expect("ok");
        assert!(run(store.set("third", vec![3])).is_err(), "full: a new key is refused");
        assert!(run(store.increment("fourth", 1)).is_err(), "full: a new counter is refused");
        run(store.set("breaker", b"closed".to_vec())).expect("existing keys still change");
        assert_eq!(run(store.increment("tickets", 1)).expect("ok"), 2);
        assert_eq!(run(store.get("breaker")).expect("ok"), Some(b"closed".to_vec()));
        run(store.delete("tickets")).expect("ok");
        run(store.set("third", vec![3])).expect("room again after a delete");
    }

    #[test]
    fn buckets_are_found_by_their_shared_names_only() {
        let buckets = Buckets::in_memory(4);
        assert!(buckets.by_name(STATE_BUCKET).is_some_and(|s| Arc::ptr_eq(s, &buckets.state)));
        assert!(buckets.by_name(CACHE_BUCKET).is_some_and(|s| Arc::ptr_eq(s, &buckets.cache)));
        assert!(buckets.by_name("other").is_none());
    }

    #[test]
    fn oversized_values_are_refused() {
        for store in [&MemoryCache::new(2) as &dyn KvStore, &MemoryState::new(2)] {
            assert!(run(store.set("big", vec![0; MAX_VALUE_BYTES + 1])).is_err());
        }
    }
}
