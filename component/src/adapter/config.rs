//! Settings from `wasi:config`, read in one `get-all` call.

use std::cell::OnceCell;
use std::collections::HashMap;

use super::wasi::config::store;
use crate::core::config::{ConfigError, Settings};
use crate::core::error::Error;

thread_local! {
    /// The settings this instance read at its first request. The world's contract (`wit/world.wit`):
    /// configuration is fixed for the life of an instance, and a host that changes it (a rotated key)
    /// serves the next requests from new instances. So a reused instance reads and parses `wasi:config`
    /// once, not on every request.
    static SETTINGS: OnceCell<Result<Settings, Error>> = const { OnceCell::new() };
}

/// Every key `wasi:config` holds, in the order the host lists them, or why they cannot be read.
fn raw_pairs() -> Result<Vec<(String, String)>, ConfigError> {
    store::get_all().map_err(|e| {
        let reason = match e {
            store::Error::Upstream(m) | store::Error::Io(m) => m,
        };
        ConfigError { key: "wasi:config", reason }
    })
}

/// Every key `wasi:config` holds, or why they cannot be read.
fn pairs() -> Result<HashMap<String, String>, ConfigError> {
    Ok(raw_pairs()?.into_iter().collect())
}

/// Runs `f` on the settings, or the error every price request will answer with. A `wasi:config` that
/// cannot be read is asked again at the next request; what it held, valid or not, is kept.
pub fn with_settings<R>(f: impl FnOnce(&Result<Settings, Error>) -> R) -> R {
    SETTINGS.with(|kept| match kept.get() {
        Some(settings) => f(settings),
        None => match raw_pairs() {
            Ok(pairs) => {
                let map: HashMap<&str, &str> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                f(kept.get_or_init(|| Settings::from_lookup(|key| map.get(key).map(|v| (*v).to_owned())).map_err(Error::from)))
            }
            Err(error) => f(&Err(Error::from(error))),
        },
    })
}

/// The current settings (a copy), or the error every price request will answer with.
pub fn load() -> Result<Settings, Error> {
    with_settings(Clone::clone)
}

/// The settings with every key at its default (when the configuration itself is unusable).
pub fn defaults() -> Result<Settings, Error> {
    Ok(Settings::from_lookup(|_| None)?)
}

/// Every problem in the current configuration.
pub fn problems() -> Vec<ConfigError> {
    match pairs() {
        Ok(map) => Settings::problems(|key| map.get(key).cloned()),
        Err(error) => vec![error],
    }
}
