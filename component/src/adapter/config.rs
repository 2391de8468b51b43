//! Settings from `wasi:config`, read in one `get-all` call per request.

use std::collections::HashMap;

use super::wasi::config::store;
use crate::core::config::{ConfigError, Settings};
use crate::core::error::Error;

/// The current settings, or the error every price request will answer with.
pub fn load() -> Result<Settings, Error> {
    let pairs = store::get_all().map_err(|e| {
        let reason = match e {
            store::Error::Upstream(m) | store::Error::Io(m) => m,
        };
        Error::Config(ConfigError { key: "wasi:config", reason })
    })?;
    let map: HashMap<String, String> = pairs.into_iter().collect();
    Ok(Settings::from_lookup(|key| map.get(key).cloned())?)
}
