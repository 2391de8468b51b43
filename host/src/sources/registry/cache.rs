//! The verified blob cache in COMPONENT_CACHE_DIR: manifests and components stored by digest
//! (`blobs/sha256/<hex>`), written to a temporary name and renamed, checked against their digest
//! whenever they are read (a corrupted or truncated file is removed and counts as absent); and per
//! reference the last digest that went live (`refs/<sha256 of the reference>`), so a start with the
//! registry down can serve it.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::files::{prune_oldest, touch, write_atomically};

/// Blobs kept (manifests and components; the oldest go first): about as many builds as the builds
/// room keeps compiled, with room for their manifests, so an emptyDir of a few hundred MiB suffices.
pub const KEPT_BLOBS: usize = 16;
use crate::runtime::identity::{digest, oci_digest};

/// The blob cache at one directory (or none: COMPONENT_CACHE_DIR empty).
#[derive(Debug, Clone)]
pub struct BlobCache {
    root: Option<PathBuf>,
}

impl BlobCache {
    /// The cache under `dir` (created on first write, mode 0700); `None` caches nothing.
    pub fn new(dir: Option<&Path>) -> Self {
        Self { root: dir.map(Path::to_path_buf) }
    }

    /// The blob `digest` (`sha256:HEX`) if it is cached and its bytes still hash to it.
    pub fn get(&self, blob_digest: &str) -> Option<Bytes> {
        let path = self.blob_path(blob_digest)?;
        let bytes = std::fs::read(&path).ok()?;
        if oci_digest(&bytes) == blob_digest {
            return Some(Bytes::from(bytes));
        }
        tracing::warn!(path = %path.display(), digest = blob_digest, "a cached blob does not match its digest (corrupted or truncated); removed, it will be pulled again");
        let _ = std::fs::remove_file(&path);
        None
    }

    /// Stores `bytes` (already checked against `blob_digest` by the caller). A cache that cannot be
    /// written is a warning, never a failure: the build still serves from memory.
    pub fn put(&self, blob_digest: &str, bytes: &[u8]) {
        let Some(path) = self.blob_path(blob_digest) else { return };
        if let Err(error) = write_atomically(&path, bytes) {
            tracing::warn!(path = %path.display(), %error, "cannot write to COMPONENT_CACHE_DIR; the build is not cached");
        }
        if let Some(dir) = path.parent() {
            prune_oldest(dir, KEPT_BLOBS, |name| !name.starts_with('.'));
        }
    }

    /// Marks the blobs of a build as just used (the live build's are pruned last).
    pub fn keep(&self, blob_digests: &[&str]) {
        for blob in blob_digests {
            if let Some(path) = self.blob_path(blob) {
                touch(&path);
            }
        }
    }

    /// The manifest digest that last went live for `reference`, and the id of the signature key that
    /// verified it (if one was set).
    pub fn live_digest(&self, reference: &str) -> Option<(String, Option<String>)> {
        let text = std::fs::read_to_string(self.ref_path(reference)?).ok()?;
        let value: serde_json::Value = serde_json::from_str(&text).ok()?;
        if value["reference"].as_str() != Some(reference) {
            return None;
        }
        let manifest_digest = value["manifest_digest"].as_str()?.to_owned();
        Some((manifest_digest, value["verified_by"].as_str().map(str::to_owned)))
    }

    /// Remembers that `manifest_digest` went live for `reference`, verified by key `verified_by`.
    pub fn set_live_digest(&self, reference: &str, manifest_digest: &str, verified_by: Option<&str>) {
        let record = serde_json::json!({ "reference": reference, "manifest_digest": manifest_digest, "verified_by": verified_by });
        let Some(path) = self.ref_path(reference) else { return };
        if let Err(error) = write_atomically(&path, record.to_string().as_bytes()) {
            tracing::warn!(path = %path.display(), %error, "cannot write to COMPONENT_CACHE_DIR; a restart with the registry down will not find this build");
        }
    }

    fn blob_path(&self, blob_digest: &str) -> Option<PathBuf> {
        let hex = crate::config::oci_reference::parse_digest(blob_digest).ok()?.trim_start_matches("sha256:").to_owned();
        Some(self.root.as_ref()?.join("blobs").join("sha256").join(hex))
    }

    fn ref_path(&self, reference: &str) -> Option<PathBuf> {
        Some(self.root.as_ref()?.join("refs").join(digest(reference.as_bytes())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("stock-blob-cache-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_blob_comes_back_only_while_it_matches_its_digest() {
        let dir = temp("verify");
        let cache = BlobCache::new(Some(&dir));
        let blob = b"(component)";
        let name = oci_digest(blob);
        assert_eq!(cache.get(&name), None);
        cache.put(&name, blob);
        assert_eq!(cache.get(&name).as_deref(), Some(&blob[..]));
        let file = dir.join("blobs/sha256").join(digest(blob));
        std::fs::write(&file, &blob[..4]).expect("truncate");
        assert_eq!(cache.get(&name), None, "a truncated blob is not served");
        assert!(!file.exists(), "and is removed so it is pulled again");
        assert_eq!(cache.get("sha256:../../etc/passwd"), None, "only digests name files");
        let off = BlobCache::new(None);
        off.put(&name, blob);
        off.set_live_digest("oci://r/s:t", &name, None);
        assert_eq!((off.get(&name), off.live_digest("oci://r/s:t")), (None, None), "no directory, no cache");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_live_digest_is_remembered_per_reference() {
        let dir = temp("refs");
        let cache = BlobCache::new(Some(&dir));
        assert_eq!(cache.live_digest("oci://r/s:t"), None);
        cache.set_live_digest("oci://r/s:t", "sha256:aa", None);
        cache.set_live_digest("oci://r/s:u", "sha256:bb", Some("key"));
        assert_eq!(cache.live_digest("oci://r/s:t"), Some(("sha256:aa".into(), None)));
        assert_eq!(cache.live_digest("oci://r/s:u"), Some(("sha256:bb".into(), Some("key".into()))));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("refs")).expect("dir").permissions().mode();
            assert_eq!(mode & 0o077, 0, "private to this user");
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
