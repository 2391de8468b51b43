//! The `wasi:config` variables every request sees: the service's settings and the API key (from APIKEY
//! or APIKEY_FILE, re-read when the file changes). Every key ever held is made unloggable
//! ([`crate::telemetry::redact`]).

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::task::JoinHandle;
use wasmtime_wasi_config::WasiConfigVariables;

use stock_shared::settings;

use crate::config::secret_file::read_secret_file;
use crate::telemetry::redact::remember_secret;

/// One consistent set of variables: the pairs, and the same pairs as wasmtime wants them.
struct Snapshot {
    pairs: Vec<(String, String)>,
    variables: Arc<WasiConfigVariables>,
}

/// The `wasi:config` variables every request sees; swapped whole when the key changes.
pub struct ComponentConfig {
    base: Vec<(String, String)>,
    current: RwLock<Arc<Snapshot>>,
}

impl ComponentConfig {
    /// The variables: the service's settings (`base`, key-value pairs) and the initial key.
    pub fn new(base: Vec<(String, String)>, apikey: Option<String>) -> Self {
        let empty = Snapshot { pairs: Vec::new(), variables: Arc::new(WasiConfigVariables::new()) };
        let this = Self { base, current: RwLock::new(Arc::new(empty)) };
        this.set_key(apikey);
        this
    }

    /// The variables for a new request.
    pub fn variables(&self) -> Arc<WasiConfigVariables> {
        self.snapshot().variables.clone()
    }

    /// The `wasi:config` pairs new requests see.
    pub fn pairs(&self) -> Vec<(String, String)> {
        self.snapshot().pairs.clone()
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the key; earlier keys stay unloggable ([`remember_secret`]).
    pub fn set_key(&self, apikey: Option<String>) {
        let mut pairs = self.base.clone();
        if let Some(key) = apikey.filter(|k| !k.is_empty()) {
            remember_secret(&key);
            pairs.push((settings::APIKEY.key.to_owned(), key));
        }
        let variables = Arc::new(pairs.iter().cloned().collect());
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(Snapshot { pairs, variables });
    }
}

/// Polls APIKEY_FILE and installs a changed key; stops when dropped.
pub struct KeyFileWatcher {
    task: JoinHandle<()>,
}

impl KeyFileWatcher {
    /// Starts polling `path` every `every`. Kubernetes updates Secret volumes by swapping a `..data`
    /// symlink, so the file's contents (not inotify on the path) are what we compare.
    pub fn spawn(path: PathBuf, config: Arc<ComponentConfig>, initial: Option<String>, every: Duration) -> Self {
        let task = tokio::spawn(async move {
            let mut known = initial;
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                match tokio::task::spawn_blocking({
                    let path = path.clone();
                    move || read_secret_file(&path)
                })
                .await
                {
                    Ok(Ok(key)) if key != known => {
                        tracing::info!(path = %path.display(), present = key.is_some(), "API key file changed; new requests use the new key");
                        config.set_key(key.clone());
                        known = key;
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => tracing::warn!(path = %path.display(), %error, "cannot read API key file; keeping the current key"),
                    Err(error) => tracing::warn!(%error, "API key reader failed"),
                }
            }
        });
        Self { task }
    }
}

impl Drop for KeyFileWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::redact::redact;

    fn base() -> Vec<(String, String)> {
        crate::config::tests::parse(&[]).expect("defaults").service.variables()
    }

    #[test]
    fn every_key_ever_held_is_scrubbed() {
        let component = ComponentConfig::new(base(), Some("first-key".into()));
        component.set_key(Some("second-key".into()));
        assert_eq!(redact("a first-key b second-key"), "a REDACTED b REDACTED");
        assert_eq!(redact("url=h/q?apikey=other-key"), "url=h/q?apikey=REDACTED");
    }

    #[test]
    fn new_requests_see_the_current_key_under_the_shared_key_name() {
        let component = ComponentConfig::new(base(), Some("first-key".into()));
        let apikey = |c: &ComponentConfig| c.pairs().iter().find(|(k, _)| k == settings::APIKEY.key).map(|(_, v)| v.clone());
        assert_eq!(apikey(&component).as_deref(), Some("first-key"));
        component.set_key(Some("second-key".into()));
        assert_eq!(apikey(&component).as_deref(), Some("second-key"));
        component.set_key(None);
        assert_eq!(apikey(&component), None, "a removed key is not passed on");
        component.set_key(Some(String::new()));
        assert_eq!(apikey(&component), None, "an empty key is no key");
    }
}
