//! Settings that live in files (Kubernetes Secret volumes): APIKEY_FILE, KV_PASSWORD_FILE.

use std::path::Path;

/// Reads a key file: trimmed contents, `None` when empty.
pub fn read_secret_file(path: &Path) -> std::io::Result<Option<String>> {
    let text = std::fs::read_to_string(path)?;
    let key = text.trim();
    Ok((!key.is_empty()).then(|| key.to_owned()))
}
