//! Files the host writes for itself (its caches): private directories, and writes a reader never sees
//! half done.

use std::io::Write;
use std::path::Path;

/// Creates `dir` (and its parents) readable and writable by this user only.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Writes `bytes` to a temporary file beside `path`, syncs it and renames it into place, so a reader
/// never sees half a file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().ok_or_else(|| std::io::Error::other("no parent directory"))?;
    create_private_dir(dir)?;
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let temporary = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, path)
}

/// Removes the oldest (by modification time) regular files in `dir` whose names `counts` accepts,
/// leaving `keep` of them: what bounds a cache that would otherwise grow with every build seen.
pub fn prune_oldest(dir: &Path, keep: usize, counts: impl Fn(&str) -> bool) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut files: Vec<(std::time::SystemTime, std::path::PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(&counts))
        .filter_map(|e| {
            let metadata = e.metadata().ok().filter(std::fs::Metadata::is_file)?;
            Some((metadata.modified().ok()?, e.path()))
        })
        .collect();
    if files.len() <= keep {
        return;
    }
    files.sort();
    for (_, path) in &files[..files.len() - keep] {
        let _ = std::fs::remove_file(path);
    }
}

/// Marks `path` as just used, so [`prune_oldest`] keeps it longest.
pub fn touch(path: &Path) {
    if let Ok(file) = std::fs::File::options().append(true).open(path) {
        let _ = file.set_modified(std::time::SystemTime::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_keeps_the_newest_and_what_it_does_not_count() {
        let dir = std::env::temp_dir().join(format!("stock-files-prune-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (i, name) in ["a.bin", "b.bin", "c.bin", "keep.txt"].iter().enumerate() {
            write_atomically(&dir.join(name), b"x").expect("write");
            let at = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000 + i as u64);
            std::fs::File::options().append(true).open(dir.join(name)).expect("open").set_modified(at).expect("mtime");
        }
        touch(&dir.join("a.bin"));
        prune_oldest(&dir, 2, |name| name.ends_with(".bin"));
        let mut left: Vec<String> = std::fs::read_dir(&dir).expect("dir").filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
        left.sort();
        assert_eq!(left, ["a.bin", "c.bin", "keep.txt"]);
        let _ = std::fs::remove_dir_all(dir);
    }
}
