//! Instance reuse: a finished instance serves the next request instead of being torn down, which takes
//! instantiation and per-instance memory setup off most requests. A p2 component is never called
//! concurrently: an instance serves one request at a time. Only an instance that returned cleanly goes
//! back; one that trapped, hit its deadline or ran out of memory is dropped. An instance retires after
//! `max_uses` requests, after `idle_timeout` unused, and when its build stops being the running one.
//! Reuse trades some isolation for speed: a build must keep no per-request state in globals
//! (`MAX_INSTANCE_REUSE=1` gives every request a fresh instance).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::Proxy;

use super::store::RequestState;

/// How instances of a build are reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reuse {
    /// Requests one instance serves before it retires (1 = a fresh instance per request).
    pub max_uses: u32,
    /// How long an instance may sit unused before it retires.
    pub idle_timeout: Duration,
    /// Idle instances kept at most (each holds one pooling-allocator slot).
    pub max_idle: usize,
}

/// A live instance with its store.
pub struct Instance {
    /// The store the instance lives in (its `RequestState` is refreshed per request).
    pub store: Store<RequestState>,
    /// Its `wasi:http/incoming-handler` export.
    pub proxy: Proxy,
    uses: u32,
    idle_since: Instant,
}

impl Instance {
    /// A newly instantiated instance.
    pub fn new(store: Store<RequestState>, proxy: Proxy) -> Self {
        Self { store, proxy, uses: 0, idle_since: Instant::now() }
    }

    /// Counts one request served.
    pub fn served(&mut self) {
        self.uses = self.uses.saturating_add(1);
    }
}

/// The idle instances of one build.
pub struct InstancePool {
    reuse: Reuse,
    idle: Mutex<Vec<Instance>>,
    retired: AtomicBool,
}

impl InstancePool {
    /// An empty pool.
    pub fn new(reuse: Reuse) -> Self {
        Self { reuse, idle: Mutex::new(Vec::new()), retired: AtomicBool::new(false) }
    }

    /// The most recently used idle instance (its memory is the warmest), dropping any that idled too long.
    pub fn take(&self) -> Option<Instance> {
        let mut idle = self.lock();
        while let Some(instance) = idle.pop() {
            if instance.idle_since.elapsed() < self.reuse.idle_timeout {
                return Some(instance);
            }
        }
        None
    }

    /// Keeps `instance` for the next request, unless it has served its share, its build retired, its
    /// stderr buffer is filling up, or enough instances are idle already. True when it was kept.
    pub fn give_back(&self, mut instance: Instance) -> bool {
        let worn_out = instance.uses >= self.reuse.max_uses || instance.store.data().stderr_nearly_full();
        if worn_out {
            return false;
        }
        // Checked under the lock `retire` takes, so an instance cannot slip into a retired pool.
        let mut idle = self.lock();
        if self.retired.load(Ordering::SeqCst) || idle.len() >= self.reuse.max_idle {
            return false;
        }
        instance.idle_since = Instant::now();
        idle.push(instance);
        true
    }

    /// Drops every idle instance and keeps none from now on (the build stopped serving).
    pub fn retire(&self) {
        let mut idle = self.lock();
        self.retired.store(true, Ordering::SeqCst);
        idle.clear();
    }

    /// Drops instances idle for longer than the idle timeout, returning their memory.
    pub fn sweep(&self) {
        let timeout = self.reuse.idle_timeout;
        self.lock().retain(|instance| instance.idle_since.elapsed() < timeout);
    }

    /// Reuses instances again (the build serves again, e.g. after a rollback).
    pub fn revive(&self) {
        self.retired.store(false, Ordering::SeqCst);
    }

    /// Idle instances right now.
    pub fn idle(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Instance>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }
}
