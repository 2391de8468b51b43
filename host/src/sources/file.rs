//! The COMPONENT file as a source of builds: read once at startup, then watched; a changed file is
//! submitted through the one door ([`Builds::submit`]) with [`Mode::Policy`], which decides swap or
//! canary. It follows Kubernetes
//! ConfigMap/Secret volume semantics: the watched path is usually a symlink through `..data`, which the
//! kubelet swaps atomically, so the file itself never gets a write event. The watcher therefore watches
//! the directory (inotify via `notify`), re-reads the path on any event there, and polls slowly as a
//! safety net. A file being copied over is read until its bytes settle (same size and digest twice).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::builds::{Builds, Candidate, MAX_COMPONENT_BYTES, Mode, Source};
use crate::runtime::engine::digest;

/// The safety-net poll: catches changes the filesystem did not report (network volumes, missed events).
pub const POLL_EVERY: Duration = Duration::from_secs(10);
/// Pause after an event so a burst (a kubelet update, a copy) is read once.
const DEBOUNCE: Duration = Duration::from_millis(50);
/// Pause between two reads while waiting for the bytes to settle.
const SETTLE_EVERY: Duration = Duration::from_millis(100);
/// Reads before giving up on a file that keeps changing (about 10 s).
const SETTLE_TRIES: usize = 100;

/// The running watcher; stops when dropped.
pub struct ComponentWatcher {
    task: JoinHandle<()>,
    _watcher: Option<notify::RecommendedWatcher>,
}

impl ComponentWatcher {
    /// Starts watching `path`, submitting each new content to `builds`.
    pub fn spawn(builds: Arc<Builds>, path: PathBuf) -> Self {
        let (events, mut wake) = mpsc::unbounded_channel::<()>();
        let directory = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok_and(|event| is_change(&event.kind)) {
                let _ = events.send(());
            }
        })
        .and_then(|mut watcher| watcher.watch(&directory, RecursiveMode::NonRecursive).map(|()| watcher));
        let watcher = match watcher {
            Ok(watcher) => Some(watcher),
            Err(error) => {
                tracing::warn!(directory = %directory.display(), %error, "cannot watch the component's directory; polling every {POLL_EVERY:?} instead");
                None
            }
        };
        let task = tokio::spawn(async move {
            let mut poll = tokio::time::interval(POLL_EVERY);
            poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_seen = builds.stable().origin.digest.clone();
            loop {
                let noticed = tokio::select! {
                    _ = poll.tick() => Instant::now(),
                    Some(()) = wake.recv() => {
                        let noticed = Instant::now();
                        tokio::time::sleep(DEBOUNCE).await;
                        while wake.try_recv().is_ok() {}
                        noticed
                    }
                };
                let Some(bytes) = settled(&path).await else { continue };
                let digest = digest(&bytes);
                // Act once per distinct file content: a rejected (or rolled back) file is not retried until it changes.
                if digest == last_seen {
                    continue;
                }
                last_seen = digest;
                builds.submit(file_candidate(&path, bytes, noticed)).await;
            }
        });
        Self { task, _watcher: watcher }
    }
}

impl Drop for ComponentWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether an event in the component's directory may mean new bytes. Opening and reading are not, and
/// this watcher reads the file itself: counting them made an idle host read and hash its component again
/// every ~150 ms, forever. Closing a file written to is (an in-place copy ends with it).
fn is_change(kind: &EventKind) -> bool {
    !matches!(kind, EventKind::Access(access) if *access != AccessKind::Close(AccessMode::Write))
}

/// A candidate made of the COMPONENT file's bytes.
pub fn file_candidate(path: &Path, bytes: Bytes, noticed: Instant) -> Candidate {
    let source = Source::File;
    Candidate { bytes, source, reference: Some(path.display().to_string()), expected_digest: None, mode: Mode::Policy, noticed }
}

/// The first build: the COMPONENT file as it is at startup, through the same door as every change.
pub async fn startup_candidate(path: &Path) -> std::io::Result<Candidate> {
    let bytes = read_bounded(path).await?;
    let mut candidate = file_candidate(path, bytes, Instant::now());
    candidate.source = Source::Startup;
    Ok(candidate)
}

/// At most one byte more than [`MAX_COMPONENT_BYTES`] of the file: enough for the door to refuse an
/// oversized file by its size, without holding a file of any size in memory.
async fn read_bounded(path: &Path) -> std::io::Result<Bytes> {
    use tokio::io::AsyncReadExt;
    let file = tokio::fs::File::open(path).await?;
    let mut bytes = Vec::new();
    file.take(MAX_COMPONENT_BYTES as u64 + 1).read_to_end(&mut bytes).await?;
    Ok(Bytes::from(bytes))
}

/// The file's bytes once two reads in a row agree; `None` while it is missing or keeps changing.
async fn settled(path: &Path) -> Option<Bytes> {
    let mut previous: Option<(usize, String)> = None;
    for _ in 0..SETTLE_TRIES {
        let bytes = match read_bounded(path).await {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::debug!(path = %path.display(), %error, "component file not readable yet");
                tokio::time::sleep(SETTLE_EVERY).await;
                continue;
            }
        };
        let fingerprint = (bytes.len(), digest(&bytes));
        if previous.as_ref() == Some(&fingerprint) {
            return Some(bytes);
        }
        previous = Some(fingerprint);
        tokio::time::sleep(SETTLE_EVERY).await;
    }
    tracing::warn!(path = %path.display(), "the component file kept changing; will look again on the next event or poll");
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
    }

    fn temp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("stock-source-{name}-{}", std::process::id()))
    }

    #[test]
    fn a_file_is_read_no_further_than_one_byte_past_the_limit() {
        runtime().block_on(async {
            let path = temp("oversized");
            std::fs::write(&path, vec![b'x'; MAX_COMPONENT_BYTES + 4096]).expect("write");
            let read = read_bounded(&path).await.expect("read");
            assert_eq!(read.len(), MAX_COMPONENT_BYTES + 1, "enough for the door to refuse it by size");
            let _ = std::fs::remove_file(path);
        });
    }

    #[test]
    fn a_settled_file_is_read_once_two_reads_agree() {
        runtime().block_on(async {
            let path = temp("settled");
            std::fs::write(&path, b"(component)").expect("write");
            assert_eq!(settled(&path).await.as_deref(), Some(&b"(component)"[..]));
            let _ = std::fs::remove_file(&path);
        });
    }

    #[test]
    fn the_startup_candidate_names_the_file_and_asks_the_settings_what_to_do() {
        runtime().block_on(async {
            let path = temp("startup");
            std::fs::write(&path, b"bytes").expect("write");
            let candidate = startup_candidate(&path).await.expect("read");
            assert_eq!((candidate.source, candidate.mode), (Source::Startup, Mode::Policy));
            assert_eq!(candidate.reference.as_deref(), Some(path.display().to_string().as_str()));
            assert!(startup_candidate(&temp("missing")).await.is_err());
            let _ = std::fs::remove_file(path);
        });
    }
}
