//! Component instance slots: a global cap (the pooling allocator's size) and a cap per first path
//! segment (a symbol), so requests piling up behind one slow symbol cannot hold every instance while
//! cached reads of other symbols wait.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Longest key kept: symbols are at most 10 characters; anything longer is garbage sharing one key.
const MAX_KEY_LEN: usize = 16;

/// The host's instance slots.
pub struct Slots {
    global: Arc<Semaphore>,
    per_key: usize,
    keys: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// Held while a component call runs; frees both slots when dropped.
pub struct Slot {
    _key: KeyPermit,
    _global: OwnedSemaphorePermit,
}

/// Slots are closed: the host is shutting down.
#[derive(Debug)]
pub struct Closed;

impl Slots {
    /// `global` slots in all, at most `per_key` of them for one key.
    pub fn new(global: usize, per_key: usize) -> Arc<Self> {
        Arc::new(Self { global: Arc::new(Semaphore::new(global.max(1))), per_key: per_key.max(1), keys: Mutex::new(HashMap::new()) })
    }

    /// The key of a request path: its first segment, upper-cased and bounded.
    pub fn key_of(path: &str) -> String {
        let first = path.trim_start_matches('/').split(['/', '?']).next().unwrap_or("");
        first.chars().take(MAX_KEY_LEN).collect::<String>().to_ascii_uppercase()
    }

    /// Waits for a slot of `key` first (holding nothing global meanwhile), then for a global one.
    pub async fn acquire(self: &Arc<Self>, key: String) -> Result<Slot, Closed> {
        let semaphore = {
            let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
            keys.entry(key.clone()).or_insert_with(|| Arc::new(Semaphore::new(self.per_key))).clone()
        };
        let key_permit = KeyPermit { slots: self.clone(), key, permit: Some(semaphore.acquire_owned().await.map_err(|_| Closed)?) };
        let global = self.global.clone().acquire_owned().await.map_err(|_| Closed)?;
        Ok(Slot { _key: key_permit, _global: global })
    }

    /// Keys currently tracked (for tests: entries go away when nobody holds or waits for them).
    pub fn tracked_keys(&self) -> usize {
        self.keys.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

struct KeyPermit {
    slots: Arc<Slots>,
    key: String,
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for KeyPermit {
    fn drop(&mut self) {
        drop(self.permit.take());
        let mut keys = self.slots.keys.lock().unwrap_or_else(|p| p.into_inner());
        // Only the map holds the semaphore now: nobody runs or waits for this key, so forget it.
        if keys.get(&self.key).is_some_and(|s| Arc::strong_count(s) == 1) {
            keys.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime")
    }

    #[test]
    fn keys_are_the_first_segment_upper_cased_and_bounded() {
        for (path, want) in [("/nvda/3", "NVDA"), ("/MSFT", "MSFT"), ("/", ""), ("/ready", "READY"), ("/x?y=1", "X")] {
            assert_eq!(Slots::key_of(path), want, "{path}");
        }
        assert_eq!(Slots::key_of(&format!("/{}", "a".repeat(100))).len(), MAX_KEY_LEN);
    }

    #[test]
    fn one_busy_key_leaves_the_other_slots_to_other_keys() {
        runtime().block_on(async {
            let slots = Slots::new(4, 2);
            let a1 = slots.acquire("NVDA".into()).await.expect("slot");
            let a2 = slots.acquire("NVDA".into()).await.expect("slot");
            let third = tokio::time::timeout(Duration::from_millis(50), slots.acquire("NVDA".into())).await;
            assert!(third.is_err(), "a key gets no more than its share");
            let other = tokio::time::timeout(Duration::from_millis(50), slots.acquire("MSFT".into())).await;
            assert!(other.is_ok(), "another key still gets a slot at once");
            drop((a1, a2, other));
            assert_eq!(slots.tracked_keys(), 0, "idle keys are forgotten");
        });
    }

    #[test]
    fn the_global_cap_still_holds() {
        runtime().block_on(async {
            let slots = Slots::new(2, 2);
            let _a = slots.acquire("A".into()).await.expect("slot");
            let _b = slots.acquire("B".into()).await.expect("slot");
            assert!(tokio::time::timeout(Duration::from_millis(50), slots.acquire("C".into())).await.is_err());
        });
    }
}
