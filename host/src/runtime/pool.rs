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

/// What the pool needs to know of what it keeps.
pub trait Reusable {
    /// Requests served so far.
    fn uses(&self) -> u32;
    /// Whether it must retire now whatever its uses (its stderr buffer is filling up).
    fn worn_out(&self) -> bool;
}

impl Reusable for Instance {
    fn uses(&self) -> u32 {
        self.uses
    }

    fn worn_out(&self) -> bool {
        self.store.data().stderr_nearly_full()
    }
}

/// A live instance with its store.
pub struct Instance {
    /// The store the instance lives in (its `RequestState` is refreshed per request).
    pub store: Store<RequestState>,
    /// Its `wasi:http/incoming-handler` export.
    pub proxy: Proxy,
    uses: u32,
}

impl Instance {
    /// A newly instantiated instance.
    pub fn new(store: Store<RequestState>, proxy: Proxy) -> Self {
        Self { store, proxy, uses: 0 }
    }

    /// Counts one request served.
    pub fn served(&mut self) {
        self.uses = self.uses.saturating_add(1);
    }
}

/// The idle instances of one build (`T` is the runtime's [`Instance`]; tests keep fakes).
pub struct InstancePool<T = Instance> {
    reuse: Reuse,
    idle: Mutex<Vec<(T, Instant)>>,
    retired: AtomicBool,
}

impl<T: Reusable> InstancePool<T> {
    /// An empty pool.
    pub fn new(reuse: Reuse) -> Self {
        Self { reuse, idle: Mutex::new(Vec::new()), retired: AtomicBool::new(false) }
    }

    /// The most recently used idle instance (its memory is the warmest), dropping any that idled too long.
    pub fn take(&self) -> Option<T> {
        let mut idle = self.lock();
        while let Some((instance, idle_since)) = idle.pop() {
            if idle_since.elapsed() < self.reuse.idle_timeout {
                return Some(instance);
            }
        }
        None
    }

    /// Keeps `instance` for the next request, unless it has served its share, its build retired, its
    /// stderr buffer is filling up, or enough instances are idle already. True when it was kept.
    pub fn give_back(&self, instance: T) -> bool {
        if instance.uses() >= self.reuse.max_uses || instance.worn_out() {
            return false;
        }
        // Checked under the lock `retire` takes, so an instance cannot slip into a retired pool.
        let mut idle = self.lock();
        if self.retired.load(Ordering::SeqCst) || idle.len() >= self.reuse.max_idle {
            return false;
        }
        idle.push((instance, Instant::now()));
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
        self.lock().retain(|(_, idle_since)| idle_since.elapsed() < timeout);
    }

    /// Reuses instances again (the build serves again, e.g. after a rollback).
    pub fn revive(&self) {
        self.retired.store(false, Ordering::SeqCst);
    }

    /// Idle instances right now.
    pub fn idle(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(T, Instant)>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An instance that has served `uses` requests.
    struct Fake {
        uses: u32,
        full: bool,
    }

    impl Reusable for Fake {
        fn uses(&self) -> u32 {
            self.uses
        }
        fn worn_out(&self) -> bool {
            self.full
        }
    }

    fn pool(max_uses: u32, idle_timeout: Duration, max_idle: usize) -> InstancePool<Fake> {
        InstancePool::new(Reuse { max_uses, idle_timeout, max_idle })
    }

    #[test]
    fn only_instances_with_uses_left_go_back_and_the_warmest_comes_out_first() {
        let pool = pool(3, Duration::from_secs(60), 4);
        assert!(pool.give_back(Fake { uses: 1, full: false }));
        assert!(pool.give_back(Fake { uses: 2, full: false }));
        assert!(!pool.give_back(Fake { uses: 3, full: false }), "it has served its share");
        assert!(!pool.give_back(Fake { uses: 1, full: true }), "its stderr buffer is filling up");
        assert_eq!(pool.take().map(|f| f.uses), Some(2), "the most recently used");
        assert_eq!(pool.idle(), 1);
    }

    #[test]
    fn no_more_than_max_idle_are_kept() {
        let pool = pool(100, Duration::from_secs(60), 2);
        let kept: Vec<bool> = (0..4).map(|_| pool.give_back(Fake { uses: 1, full: false })).collect();
        assert_eq!(kept, [true, true, false, false]);
    }

    #[test]
    fn a_retired_pool_keeps_nothing_until_revived() {
        let pool = pool(100, Duration::from_secs(60), 4);
        assert!(pool.give_back(Fake { uses: 1, full: false }));
        pool.retire();
        assert_eq!(pool.idle(), 0, "idle instances are dropped at once");
        assert!(!pool.give_back(Fake { uses: 1, full: false }), "a busy instance of a retired build does not come back");
        pool.revive();
        assert!(pool.give_back(Fake { uses: 1, full: false }));
    }

    #[test]
    fn instances_idle_past_the_timeout_are_never_reused() {
        let pool = pool(100, Duration::from_millis(30), 4);
        assert!(pool.give_back(Fake { uses: 1, full: false }));
        std::thread::sleep(Duration::from_millis(40));
        assert!(pool.take().is_none(), "too long idle");
        assert!(pool.give_back(Fake { uses: 1, full: false }));
        std::thread::sleep(Duration::from_millis(40));
        pool.sweep();
        assert_eq!(pool.idle(), 0, "the sweep returns their memory");
    }
}
