//! Settings from `wasi:config`, read in one `get-all` call.

use std::cell::RefCell;
use std::collections::HashMap;

use super::wasi::config::store;
use crate::core::config::{ConfigError, Settings};
use crate::core::error::Error;

/// `wasi:config` pairs as the host lists them.
type Pairs = Vec<(String, String)>;

thread_local! {
    /// The configuration last read and what it parsed to. A reused instance reads `wasi:config` on every
    /// request (a rotated key applies at once) but parses it again only when it changed: the entry is a
    /// pure function of the pairs, never anything of a request's.
    static PARSED: RefCell<Option<(Pairs, Result<Settings, Error>)>> = const { RefCell::new(None) };
}

/// Every key `wasi:config` holds, in the order the host lists them, or why they cannot be read.
fn raw_pairs() -> Result<Pairs, ConfigError> {
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

/// The current settings, or the error every price request will answer with.
pub fn load() -> Result<Settings, Error> {
    let pairs = raw_pairs()?;
    PARSED.with_borrow_mut(|parsed| match parsed {
        Some((seen, settings)) if *seen == pairs => settings.clone(),
        _ => {
            let map: HashMap<&str, &str> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let settings = Settings::from_lookup(|key| map.get(key).map(|v| (*v).to_owned())).map_err(Error::from);
            *parsed = Some((pairs, settings.clone()));
            settings
        }
    })
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
