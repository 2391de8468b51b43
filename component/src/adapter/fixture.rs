//! Test-fixture builds only (never shipped): switches a test flips over HTTP to make this build's
//! smoke test misbehave, so races in the host's rollout control plane can be driven deterministically.
//! `GET /_fixture/smoke/{hold,forever,echo-key,release}` stores the switch in the state bucket (shared
//! by every build the host runs); `status.check-config` obeys it:
//! - `hold`: waits, 20 ms at a time, until the switch is released;
//! - `forever`: blocks one hour in a single host call (`pollable.block`), where no epoch can interrupt it;
//! - `echo-key`: refuses the configuration with a reason that echoes the API key.

use super::wasi::clocks::monotonic_clock;
use super::wasi::keyvalue::store;
use crate::core::respond::Reply;

/// State-bucket key of the switch.
const SWITCH: &str = "fixture/smoke";

/// Answers `/_fixture/smoke/*`; `None` for any other path.
pub fn control(path: &str) -> Option<Reply> {
    let word = path.strip_prefix("/_fixture/smoke/")?;
    let bucket = store::open("").ok()?;
    let done = match word {
        "hold" | "forever" | "echo-key" => bucket.set(SWITCH, word.as_bytes()).is_ok(),
        "release" => bucket.delete(SWITCH).is_ok(),
        _ => false,
    };
    Some(Reply {
        status: if done { 200 } else { 400 },
        headers: vec![("content-type", "text/plain".into())],
        body: format!("fixture smoke switch: {word}").into(),
    })
}

/// What the switch makes `check-config` do; the problems it reports (none unless `echo-key`).
pub fn smoke_switch() -> Vec<(String, String)> {
    let Ok(bucket) = store::open("") else { return Vec::new() };
    let read = |b: &store::Bucket| b.get(SWITCH).ok().flatten().map(|v| String::from_utf8_lossy(&v).into_owned());
    match read(&bucket).as_deref() {
        Some("hold") => {
            while read(&bucket).as_deref() == Some("hold") {
                monotonic_clock::subscribe_duration(20_000_000).block();
            }
            Vec::new()
        }
        Some("forever") => {
            monotonic_clock::subscribe_duration(3_600_000_000_000).block();
            Vec::new()
        }
        Some("echo-key") => {
            let key = super::wasi::config::store::get("apikey").ok().flatten().unwrap_or_default();
            vec![("apikey".to_owned(), format!("fixture: the key {key} is not accepted here"))]
        }
        _ => Vec::new(),
    }
}
