//! `wasi:keyvalue` (store, atomics, batch) implemented over one shared [`KvStore`], so every instance
//! and every request sees one cache and one breaker. The in-memory store is bounded; Redis can slot in
//! behind the same trait.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use crate::metrics::Metrics;

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
    /// The bucket name is not served.
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
    /// Keys starting with `prefix`.
    fn keys<'a>(&'a self, prefix: &'a str) -> KvFuture<'a, Vec<String>>;
}

/// In-process store: a map bounded by entry count, evicting the least recently used key.
pub struct MemoryStore {
    max_entries: usize,
    inner: Mutex<MemoryInner>,
}

#[derive(Default)]
struct MemoryInner {
    entries: HashMap<String, (Vec<u8>, u64)>,
    clock: u64,
}

impl MemoryInner {
    fn touch(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn insert(&mut self, key: &str, value: Vec<u8>, max_entries: usize) {
        let now = self.touch();
        if !self.entries.contains_key(key) && self.entries.len() >= max_entries {
            let oldest = self.entries.iter().min_by_key(|(_, (_, used))| *used).map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(key.to_owned(), (value, now));
    }
}

impl MemoryStore {
    /// A store holding at most `max_entries` keys.
    pub fn new(max_entries: usize) -> Self {
        Self { max_entries: max_entries.max(1), inner: Mutex::new(MemoryInner::default()) }
    }

    fn with<T>(&self, f: impl FnOnce(&mut MemoryInner) -> Result<T, KvError>) -> KvFuture<'_, T>
    where
        T: Send + 'static,
    {
        // A poisoned lock only means another request panicked mid-update; the map itself is still usable.
        let mut inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let result = f(&mut inner);
        Box::pin(std::future::ready(result))
    }
}

impl KvStore for MemoryStore {
    fn get<'a>(&'a self, key: &'a str) -> KvFuture<'a, Option<Vec<u8>>> {
        self.with(|inner| {
            let now = inner.touch();
            Ok(inner.entries.get_mut(key).map(|(value, used)| {
                *used = now;
                value.clone()
            }))
        })
    }

    fn set<'a>(&'a self, key: &'a str, value: Vec<u8>) -> KvFuture<'a, ()> {
        let max = self.max_entries;
        self.with(move |inner| {
            if value.len() > MAX_VALUE_BYTES {
                return Err(KvError::Other(format!("value larger than {MAX_VALUE_BYTES} bytes")));
            }
            inner.insert(key, value, max);
            Ok(())
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> KvFuture<'a, ()> {
        self.with(|inner| {
            inner.entries.remove(key);
            Ok(())
        })
    }

    fn increment<'a>(&'a self, key: &'a str, delta: u64) -> KvFuture<'a, u64> {
        let max = self.max_entries;
        self.with(move |inner| {
            let current = match inner.entries.get(key) {
                None => 0,
                Some((value, _)) => std::str::from_utf8(value)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| KvError::Other(format!("value at {key} is not a counter")))?,
            };
            let next = current.checked_add(delta).ok_or_else(|| KvError::Other("counter overflow".into()))?;
            inner.insert(key, next.to_string().into_bytes(), max);
            Ok(next)
        })
    }

    fn keys<'a>(&'a self, prefix: &'a str) -> KvFuture<'a, Vec<String>> {
        self.with(|inner| Ok(inner.entries.keys().filter(|k| k.starts_with(prefix)).cloned().collect()))
    }
}

/// An open bucket: a key prefix in the shared store (`""` is the default bucket, no prefix).
pub struct Bucket {
    prefix: String,
}

impl Bucket {
    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

/// The keyvalue view of one request's store.
pub struct KvView<'a> {
    /// The request's resource table.
    pub table: &'a mut ResourceTable,
    /// The shared store.
    pub store: &'a Arc<dyn KvStore>,
    /// Where operation counts go.
    pub metrics: &'a Metrics,
}

impl KvView<'_> {
    fn count<T>(&self, op: &str, result: &Result<T, KvError>) {
        let outcome = if result.is_ok() { "ok" } else { "error" };
        self.metrics.kv_operations.with_label_values(&[op, outcome]).inc();
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
        let prefix = if identifier.is_empty() { String::new() } else { format!("{identifier}/") };
        Ok(self.table.push(Bucket { prefix })?)
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
        let key = self.table.get(&bucket)?.key(&key);
        let result = self.store.get(&key).await;
        self.count("get", &result);
        result
    }

    async fn set(&mut self, bucket: Resource<Bucket>, key: String, value: Vec<u8>) -> Result<(), KvError> {
        let key = self.table.get(&bucket)?.key(&key);
        let result = self.store.set(&key, value).await;
        self.count("set", &result);
        result
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> Result<(), KvError> {
        let key = self.table.get(&bucket)?.key(&key);
        let result = self.store.delete(&key).await;
        self.count("delete", &result);
        result
    }

    async fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> Result<bool, KvError> {
        let key = self.table.get(&bucket)?.key(&key);
        let result = self.store.get(&key).await.map(|v| v.is_some());
        self.count("exists", &result);
        result
    }

    async fn list_keys(&mut self, bucket: Resource<Bucket>, _cursor: Option<u64>) -> Result<store::KeyResponse, KvError> {
        let prefix = self.table.get(&bucket)?.prefix.clone();
        let result = self.store.keys(&prefix).await;
        self.count("list_keys", &result);
        let keys = result?.into_iter().map(|k| k[prefix.len()..].to_owned()).collect();
        Ok(store::KeyResponse { keys, cursor: None })
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for KvView<'_> {
    async fn increment(&mut self, bucket: Resource<Bucket>, key: String, delta: u64) -> Result<u64, KvError> {
        let key = self.table.get(&bucket)?.key(&key);
        let result = self.store.increment(&key, delta).await;
        self.count("increment", &result);
        result
    }
}

impl batch::Host for KvView<'_> {
    async fn get_many(&mut self, bucket: Resource<Bucket>, keys: Vec<String>) -> Result<Vec<Option<(String, Vec<u8>)>>, KvError> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let full = self.table.get(&bucket)?.key(&key);
            let result = self.store.get(&full).await;
            self.count("get", &result);
            out.push(result?.map(|value| (key, value)));
        }
        Ok(out)
    }

    async fn set_many(&mut self, bucket: Resource<Bucket>, key_values: Vec<(String, Vec<u8>)>) -> Result<(), KvError> {
        for (key, value) in key_values {
            let full = self.table.get(&bucket)?.key(&key);
            let result = self.store.set(&full, value).await;
            self.count("set", &result);
            result?;
        }
        Ok(())
    }

    async fn delete_many(&mut self, bucket: Resource<Bucket>, keys: Vec<String>) -> Result<(), KvError> {
        for key in keys {
            let full = self.table.get(&bucket)?.key(&key);
            let result = self.store.delete(&full).await;
            self.count("delete", &result);
            result?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<T>(future: KvFuture<'_, T>) -> Result<T, KvError> {
        tokio::runtime::Builder::new_current_thread().build().expect("runtime").block_on(future)
    }

    #[test]
    fn counters_are_decimal_text_like_wasmtime_and_redis() {
        let store = MemoryStore::new(10);
        assert_eq!(run(store.increment("c", 2)).expect("ok"), 2);
        assert_eq!(run(store.increment("c", 3)).expect("ok"), 5);
        assert_eq!(run(store.get("c")).expect("ok"), Some(b"5".to_vec()));
        run(store.set("x", b"abc".to_vec())).expect("ok");
        assert!(run(store.increment("x", 1)).is_err(), "non-counter values are not incremented");
    }

    #[test]
    fn the_least_recently_used_key_is_evicted_at_the_bound() {
        let store = MemoryStore::new(2);
        run(store.set("a", vec![1])).expect("ok");
        run(store.set("b", vec![2])).expect("ok");
        run(store.get("a")).expect("ok");
        run(store.set("c", vec![3])).expect("ok");
        assert_eq!(run(store.get("b")).expect("ok"), None);
        assert_eq!(run(store.get("a")).expect("ok"), Some(vec![1]));
        assert_eq!(run(store.get("c")).expect("ok"), Some(vec![3]));
    }

    #[test]
    fn oversized_values_are_refused() {
        let store = MemoryStore::new(2);
        assert!(run(store.set("big", vec![0; MAX_VALUE_BYTES + 1])).is_err());
    }
}
