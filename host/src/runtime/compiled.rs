//! The compiled-code cache: a build compiled once is stored (wasmtime's serialized form) under
//! `COMPONENT_CACHE_DIR/compiled/<engine compatibility hash>/<digest>.cwasm`, so a restart or a swap
//! back to a known digest skips Cranelift.
//!
//! Deserializing runs native code, so only what this host wrote is ever read back: the directory is
//! created with mode 0700 and used only when this user owns it and nobody else can write to it; each
//! file is this user's, and its bytes must hash to the sha256 written beside it when it was stored
//! (a truncated or corrupted file is removed and compiled again). The bytes checked are the bytes
//! deserialized (read once into memory, never mapped), so nothing can change in between.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use prometheus::IntCounterVec;
use wasmtime::Engine;
use wasmtime::component::Component;

use super::identity::digest;

/// Why a cached compiled build was not used.
enum Unusable {
    /// Not this user's, or not the bytes written: removed.
    Damaged(String),
    /// Intact, but wasmtime refuses it with this engine (its limits): kept for the settings it fits.
    Refused(String),
}

/// Compiled builds kept on disk (the oldest go first); a few MiB each.
pub const KEPT_COMPILED: usize = 8;

/// Where compiled builds of one engine configuration live.
pub struct CompiledCache {
    dir: PathBuf,
    results: IntCounterVec,
}

impl CompiledCache {
    /// The cache under `root` for `engine` with `limits` (what else decides whether compiled code loads,
    /// such as the memory cap); `None` (with a warning) when the directory cannot be made private to this
    /// user, and always for an empty `root` (the cache switched off).
    pub fn open(root: &Path, engine: &Engine, limits: &str, results: IntCounterVec) -> Option<Self> {
        if root.as_os_str().is_empty() {
            return None;
        }
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        limits.hash(&mut hasher);
        let dir = root.join("compiled").join(format!("{:016x}", hasher.finish()));
        let usable = crate::files::create_private_dir(&dir).map_err(|e| e.to_string()).and_then(|()| owned_privately(root, &dir));
        match usable {
            Ok(()) => Some(Self { dir, results }),
            Err(reason) => {
                tracing::warn!(dir = %dir.display(), %reason, "compiled-code cache off: every build is compiled");
                None
            }
        }
    }

    /// The build `component_digest` compiled earlier by this host, if its file is intact.
    pub fn load(&self, engine: &Engine, component_digest: &str) -> Option<Component> {
        let (code, sum) = self.paths(component_digest);
        if !code.exists() {
            self.results.with_label_values(&["miss"]).inc();
            return None;
        }
        let checked = (|| {
            owned_by_me(&code).map_err(Unusable::Damaged)?;
            let bytes = std::fs::read(&code).map_err(|e| Unusable::Damaged(e.to_string()))?;
            let expected = std::fs::read_to_string(&sum).map_err(|e| Unusable::Damaged(format!("its checksum: {e}")))?;
            if digest(&bytes) != expected.trim() {
                return Err(Unusable::Damaged("its bytes do not match the checksum written with them (truncated or corrupted)".to_owned()));
            }
            // SAFETY: the bytes were written by this host (Component::serialize) into a directory only
            // this user can write, and they hash to what was written with them; wasmtime also checks
            // they were made by this wasmtime version and engine configuration.
            unsafe { Component::deserialize(engine, &bytes) }.map_err(|e| Unusable::Refused(format!("{e:#}")))
        })();
        match checked {
            Ok(component) => {
                crate::files::touch(&code);
                crate::files::touch(&sum);
                self.results.with_label_values(&["hit"]).inc();
                tracing::debug!(digest = component_digest, "compiled build read from the cache");
                Some(component)
            }
            Err(Unusable::Refused(reason)) => {
                // Intact, but not for this engine's limits (another MAX_MEMORY_MIB shares the cache): the
                // compile that follows says what is wrong, if anything, in its own words.
                self.results.with_label_values(&["miss"]).inc();
                tracing::debug!(file = %code.display(), %reason, "a cached compiled build does not load with these settings; compiling");
                None
            }
            Err(Unusable::Damaged(reason)) => {
                self.results.with_label_values(&["error"]).inc();
                tracing::warn!(file = %code.display(), %reason, "a cached compiled build is not used; compiling again");
                let _ = std::fs::remove_file(&code);
                let _ = std::fs::remove_file(&sum);
                None
            }
        }
    }

    /// Stores `component` (compiled from bytes hashing to `component_digest`); a failure only costs a
    /// compile next time.
    pub fn store(&self, component: &Component, component_digest: &str) {
        let (code, sum) = self.paths(component_digest);
        let written = component.serialize().map_err(|e| format!("{e:#}")).and_then(|bytes| {
            // The checksum first: a code file without its checksum is never read.
            crate::files::write_atomically(&sum, digest(&bytes).as_bytes()).map_err(|e| e.to_string())?;
            crate::files::write_atomically(&code, &bytes).map_err(|e| e.to_string())
        });
        if let Err(reason) = written {
            tracing::warn!(dir = %self.dir.display(), %reason, "cannot store the compiled build; it will be compiled again next time");
        }
        // A checksum without its code file is harmless (never read) and goes with the next prune.
        crate::files::prune_oldest(&self.dir, KEPT_COMPILED, |name| name.ends_with(".cwasm"));
        crate::files::prune_oldest(&self.dir, KEPT_COMPILED, |name| name.ends_with(".cwasm.sha256"));
    }

    fn paths(&self, component_digest: &str) -> (PathBuf, PathBuf) {
        let name: String = component_digest.chars().filter(char::is_ascii_hexdigit).collect();
        (self.dir.join(format!("{name}.cwasm")), self.dir.join(format!("{name}.cwasm.sha256")))
    }
}

/// `root` and `dir` belong to this user and nobody else may write to them.
fn owned_privately(root: &Path, dir: &Path) -> Result<(), String> {
    for path in [root, dir] {
        owned_by_me(path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).map_err(|e| e.to_string())?.permissions().mode();
            if mode & 0o022 != 0 {
                return Err(format!("{} is writable by others (mode {:o}); make it 0700", path.display(), mode & 0o777));
            }
        }
    }
    Ok(())
}

/// `path` belongs to the user this process runs as.
fn owned_by_me(path: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let owner = std::fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?.uid();
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if owner != me {
            return Err(format!("{} belongs to uid {owner}, not to this process (uid {me})", path.display()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::Opts;

    fn results() -> IntCounterVec {
        IntCounterVec::new(Opts::new("t", "t"), &["result"]).expect("counter")
    }

    const WAT: &str = "(component)";

    #[test]
    fn a_stored_build_is_read_back_and_a_damaged_one_is_not() {
        let root = std::env::temp_dir().join(format!("stock-compiled-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let engine = Engine::default();
        let results = results();
        let cache = CompiledCache::open(&root, &engine, "", results.clone()).expect("a private directory");
        let name = digest(WAT.as_bytes());
        assert!(cache.load(&engine, &name).is_none());
        cache.store(&Component::new(&engine, WAT).expect("compiles"), &name);
        assert!(cache.load(&engine, &name).is_some());
        let (code, _) = cache.paths(&name);
        let bytes = std::fs::read(&code).expect("stored");
        std::fs::write(&code, &bytes[..bytes.len() / 2]).expect("truncate");
        assert!(cache.load(&engine, &name).is_none(), "a truncated file is compiled again");
        assert!(!code.exists(), "and removed");
        let counts: Vec<u64> = ["hit", "miss", "error"].iter().map(|r| results.with_label_values(&[r]).get()).collect();
        assert_eq!(counts, [1, 1, 1]);
        assert!(CompiledCache::open(Path::new(""), &engine, "", results).is_none(), "an empty COMPONENT_CACHE_DIR switches it off");
        let _ = std::fs::remove_dir_all(root);
    }

    #[cfg(unix)]
    #[test]
    fn a_directory_others_can_write_is_not_used() {
        use std::os::unix::fs::PermissionsExt;
        let root = std::env::temp_dir().join(format!("stock-compiled-open-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("dir");
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        assert!(CompiledCache::open(&root, &Engine::default(), "", results()).is_none());
        let _ = std::fs::remove_dir_all(root);
    }
}
