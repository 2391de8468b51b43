//! What the service needs from its surroundings: shared keyvalue, clocks, the upstream and a log.
//! The WASI adapter implements it for real; tests use [`fake::FakeEnv`].

use stock_shared::keyvalue::{CACHE_BUCKET, MEMO_BUCKET, STATE_BUCKET};

use super::rendered::Rendered;

/// The upstream's raw answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// HTTP status.
    pub status: u16,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// Why no answer came back from the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// Nothing within the deadline.
    Timeout,
    /// Connection refused or reset, DNS, TLS, protocol errors.
    Failed(String),
    /// The host would not make the call (its policy, not the upstream's state): asking again at once repeats it.
    Refused(String),
}

/// Which of the host's buckets (`stock_shared::keyvalue`) a key lives in: each has its own bound, so what
/// one holds can never crowd out another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bucket {
    /// What the service depends on (breaker, flight tickets, quota): never evicted.
    State,
    /// Answers (fetched series): evicted least recently used first.
    Cache,
    /// Per-symbol leftovers (remembered refusals, flight outcomes): evicted or expired, on a bound of its own.
    Memo,
}

impl Bucket {
    /// The name the host serves this bucket under.
    pub fn name(self) -> &'static str {
        match self {
            Self::State => STATE_BUCKET,
            Self::Cache => CACHE_BUCKET,
            Self::Memo => MEMO_BUCKET,
        }
    }
}

/// A key in one bucket; the layout (`layout.rs`) decides both, so no key is ever written to the wrong bucket.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    /// Where it lives.
    pub bucket: Bucket,
    /// Its name inside the bucket.
    pub name: String,
}

/// The service's view of the world. Keyvalue failures read as "absent" so a broken store degrades
/// to "no cache", never to an error page; implementations log them.
pub trait Env {
    /// Value of `key`.
    fn kv_get(&self, key: &Key) -> Option<Vec<u8>>;
    /// Stores `value` under `key`.
    fn kv_set(&self, key: &Key, value: &[u8]);
    /// Removes `key`.
    fn kv_delete(&self, key: &Key);
    /// Atomically adds `delta` to the counter at `key` and returns the new value; `None` when the store failed.
    fn kv_increment(&self, key: &Key, delta: u64) -> Option<u64>;
    /// Wall-clock milliseconds since the Unix epoch (shared across instances and replicas).
    fn now_ms(&self) -> u64;
    /// Blocks this request for `ms` milliseconds.
    fn sleep_ms(&self, ms: u64);
    /// GETs `url`, giving up after `timeout_ms`.
    fn fetch(&self, url: &str, timeout_ms: u64) -> Result<Fetched, FetchError>;
    /// Writes one diagnostic line (stderr); callers never pass secrets.
    fn log(&self, line: &str);
    /// A random number (for jitter; not for secrets).
    fn random_u64(&self) -> u64;
    /// Runs `f` on the bodies this instance rendered before (kept between the requests of a reused instance).
    fn with_rendered<R>(&self, f: impl FnOnce(&mut Rendered) -> R) -> R;
}

/// An in-memory [`Env`] with a scripted upstream and a manual clock, for native tests.
#[cfg(test)]
pub mod fake {
    use super::*;
    use std::cell::{Cell, RefCell};
    use std::collections::{HashMap, VecDeque};

    /// A hook run on every sleep.
    pub type SleepHook = Box<dyn FnMut(&FakeEnv)>;

    /// Scripted world: answers are popped per fetch; when empty, `default_answer` is used.
    #[derive(Default)]
    pub struct FakeEnv {
        /// Every bucket's contents.
        pub kv: RefCell<HashMap<Key, Vec<u8>>>,
        /// Current time.
        pub now: Cell<u64>,
        /// Answers for the next fetches, in order.
        pub answers: RefCell<VecDeque<Result<Fetched, FetchError>>>,
        /// Answer when the script is empty.
        pub default_answer: RefCell<Option<Result<Fetched, FetchError>>>,
        /// URLs fetched so far.
        pub fetched: RefCell<Vec<String>>,
        /// Log lines written.
        pub logs: RefCell<Vec<String>>,
        /// Called on every sleep, to let a test change the world while a follower waits.
        pub on_sleep: RefCell<Option<SleepHook>>,
        /// Bodies rendered so far, as a reused instance keeps them.
        pub rendered: RefCell<Rendered>,
    }

    impl FakeEnv {
        /// An answer with status 200 and `body`.
        pub fn ok(body: &str) -> Result<Fetched, FetchError> {
            Ok(Fetched { status: 200, body: body.as_bytes().to_vec() })
        }

        /// The names of the keys in `bucket`, sorted.
        pub fn keys_in(&self, bucket: Bucket) -> Vec<String> {
            let mut names: Vec<String> = self.kv.borrow().keys().filter(|k| k.bucket == bucket).map(|k| k.name.clone()).collect();
            names.sort();
            names
        }
    }

    impl Env for FakeEnv {
        fn kv_get(&self, key: &Key) -> Option<Vec<u8>> {
            self.kv.borrow().get(key).cloned()
        }
        fn kv_set(&self, key: &Key, value: &[u8]) {
            self.kv.borrow_mut().insert(key.clone(), value.to_vec());
        }
        fn kv_delete(&self, key: &Key) {
            self.kv.borrow_mut().remove(key);
        }
        fn kv_increment(&self, key: &Key, delta: u64) -> Option<u64> {
            let mut kv = self.kv.borrow_mut();
            let entry = kv.entry(key.clone()).or_insert_with(|| b"0".to_vec());
            let next = std::str::from_utf8(entry).ok()?.parse::<u64>().ok()? + delta;
            *entry = next.to_string().into_bytes();
            Some(next)
        }
        fn now_ms(&self) -> u64 {
            self.now.get()
        }
        fn sleep_ms(&self, ms: u64) {
            self.now.set(self.now.get() + ms);
            let hook = self.on_sleep.borrow_mut().take();
            if let Some(mut hook) = hook {
                hook(self);
                *self.on_sleep.borrow_mut() = Some(hook);
            }
        }
        fn fetch(&self, url: &str, _timeout_ms: u64) -> Result<Fetched, FetchError> {
            self.fetched.borrow_mut().push(url.to_owned());
            let next = self.answers.borrow_mut().pop_front();
            next.or_else(|| self.default_answer.borrow().clone()).unwrap_or_else(|| Err(FetchError::Failed("no scripted answer".into())))
        }
        fn log(&self, line: &str) {
            self.logs.borrow_mut().push(line.to_owned());
        }
        fn random_u64(&self) -> u64 {
            0x9e37_79b9_7f4a_7c15
        }
        fn with_rendered<R>(&self, f: impl FnOnce(&mut Rendered) -> R) -> R {
            f(&mut self.rendered.borrow_mut())
        }
    }
}
