//! Settings from `wasi:config`, read in one `get-all` call.

use std::collections::HashMap;

use super::wasi::config::store;
use crate::core::config::{ConfigError, Settings};
use crate::core::error::Error;

/// Every key `wasi:config` holds, or why they cannot be read.
fn pairs() -> Result<HashMap<String, String>, ConfigError> {
    let pairs = store::get_all().map_err(|e| {
        let reason = match e {
            store::Error::Upstream(m) | store::Error::Io(m) => m,
        };
        ConfigError { key: "wasi:config", reason }
    })?;
    Ok(pairs.into_iter().collect())
}

/// The current settings, or the error every price request will answer with.
pub fn load() -> Result<Settings, Error> {
    let map = pairs()?;
    Ok(Settings::from_lookup(|key| map.get(key).cloned())?)
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
