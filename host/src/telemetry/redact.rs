//! Secrets never reach a log line: every key this process has held (API key, Redis password) and any
//! `apikey=` query value are scrubbed from everything the process writes, whatever crate wrote it and
//! at whatever level, by [`RedactingStderr`]; answers and records built from a build's own words go
//! through [`redact`] too.

use std::sync::RwLock;

use stock_shared::redact::{REDACTED, query_secrets};

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
