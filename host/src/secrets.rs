//! The API key: from APIKEY or APIKEY_FILE (re-read when the file changes), handed to the component
//! through `wasi:config`, and scrubbed from everything the process logs: every log line passes through
//! [`RedactingStderr`], whatever crate wrote it and at whatever level.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::task::JoinHandle;
use wasmtime_wasi_config::WasiConfigVariables;

use stock_shared::redact::{REDACTED, query_secrets};
use stock_shared::settings;

use crate::config::{ServeConfig, config_duration};

/// Every API key this process has held. Log output is process-wide, so this is too.
static KNOWN_SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Shortest secret scrubbed wherever it appears; shorter ones would garble every log line (a key `k`
/// would turn each "k" into REDACTED). `apikey=` values are scrubbed whatever their length.
pub const MIN_SCRUBBED_SECRET_LEN: usize = 6;

/// Makes `secret` unloggable from now on.
pub fn remember_secret(secret: &str) {
    if secret.len() < MIN_SCRUBBED_SECRET_LEN {
        return;
    }
    let mut known = KNOWN_SECRETS.write().unwrap_or_else(|p| p.into_inner());
    if !known.iter().any(|k| k == secret) {
        known.push(secret.to_owned());
    }
}

/// `text` with every key this process has held, and any `apikey=` query value, replaced.
pub fn redact(text: &str) -> String {
    let mut out = query_secrets(text);
    for key in KNOWN_SECRETS.read().unwrap_or_else(|p| p.into_inner()).iter() {
        if out.contains(key.as_str()) {
            out = out.replace(key.as_str(), REDACTED);
        }
    }
    out
}

/// The log sink: each write is one formatted event (the non-blocking writer in front of it hands over
/// whole events), written to stderr with secrets [`redact`]ed. It runs on the logging thread, so
/// request threads neither scan for secrets nor wait on stderr.
pub struct RedactingStderr;

impl std::io::Write for RedactingStderr {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let line = redact(&String::from_utf8_lossy(bytes));
        std::io::stderr().lock().write_all(line.as_bytes())?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

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
    /// Builds the variables from the validated configuration and the initial key.
    pub fn new(config: &ServeConfig, apikey: Option<String>) -> Self {
        let base = [
            (settings::ALPHAVANTAGE_URL, config.alphavantage_url.clone()),
            (settings::SYMBOL, config.symbol.clone()),
            (settings::NDAYS, config.ndays.clone()),
            (settings::CACHE_TTL, config_duration(config.cache_ttl)),
            (settings::UPSTREAM_TIMEOUT, config_duration(config.upstream_timeout)),
            (settings::BREAKER_THRESHOLD, config.circuit_breaker_threshold.clone()),
            (settings::BREAKER_TIMEOUT, config_duration(config.circuit_breaker_timeout)),
            (settings::UPSTREAM_DAILY_QUOTA, config.upstream_daily_quota.clone()),
            (settings::NEGATIVE_CACHE_TTL, config_duration(config.negative_cache_ttl)),
        ]
        .into_iter()
        .map(|(setting, value)| (setting.key.to_owned(), value))
        .collect();
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

    /// Replaces the key; earlier keys stay known to [`redact`](Self::redact).
    pub fn set_key(&self, apikey: Option<String>) {
        let mut pairs = self.base.clone();
        if let Some(key) = apikey.filter(|k| !k.is_empty()) {
            remember_secret(&key);
            pairs.push((settings::APIKEY.key.to_owned(), key));
        }
        let variables = Arc::new(pairs.iter().cloned().collect());
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(Snapshot { pairs, variables });
    }

    /// `text` with every key this process has held, and any `apikey=` query value, replaced.
    pub fn redact(&self, text: &str) -> String {
        redact(text)
    }
}

/// Reads a key file: trimmed contents, `None` when empty.
pub fn read_key_file(path: &Path) -> std::io::Result<Option<String>> {
    let text = std::fs::read_to_string(path)?;
    let key = text.trim();
    Ok((!key.is_empty()).then(|| key.to_owned()))
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
                    move || read_key_file(&path)
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

    #[test]
    fn every_key_ever_held_is_scrubbed() {
        let component = ComponentConfig::new(&test_config(), Some("first-key".into()));
        component.set_key(Some("second-key".into()));
        assert_eq!(component.redact("a first-key b second-key"), "a REDACTED b REDACTED");
        assert_eq!(component.redact("url=h/q?apikey=other-key"), "url=h/q?apikey=REDACTED");
    }

    #[test]
    fn new_requests_see_the_current_key_under_the_shared_key_name() {
        let component = ComponentConfig::new(&test_config(), Some("first-key".into()));
        let apikey = |c: &ComponentConfig| c.pairs().iter().find(|(k, _)| k == settings::APIKEY.key).map(|(_, v)| v.clone());
        assert_eq!(apikey(&component).as_deref(), Some("first-key"));
        component.set_key(Some("second-key".into()));
        assert_eq!(apikey(&component).as_deref(), Some("second-key"));
        component.set_key(None);
        assert_eq!(apikey(&component), None, "a removed key is not passed on");
        component.set_key(Some(String::new()));
        assert_eq!(apikey(&component), None, "an empty key is no key");
        let keys: Vec<String> = component.pairs().iter().map(|(k, _)| k.clone()).collect();
        for setting in settings::ALL.iter().filter(|s| s.key != settings::APIKEY.key) {
            assert!(keys.contains(&setting.key.to_owned()), "{} is not passed to the component", setting.key);
        }
    }

    fn test_config() -> ServeConfig {
        use clap::Parser;
        match crate::config::Cli::parse_from(["stock-host", "serve"]).command {
            crate::config::Command::Serve(config) => *config,
        }
    }
}
