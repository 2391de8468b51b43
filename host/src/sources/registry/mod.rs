//! COMPONENT as an OCI registry reference: resolved at start, then polled. Each new digest of the tag
//! is pulled (manifest checked against its digest, the wasm layout checked, the cosign signature
//! checked when COMPONENT_VERIFY_KEY is set, the blob checked against its digest and size) and
//! becomes a candidate for the one door ([`Builds::submit`]), which compiles, smoke-tests and decides
//! swap or canary exactly as for a file. A digest that was refused is not pulled again until the tag
//! moves. Verified blobs are cached on disk ([`cache`]); when the registry does not answer at start,
//! the last digest that went live for the reference is served from there.

pub mod artifact;
pub mod auth;
pub mod cache;
pub mod client;
pub mod cosign;
pub mod push;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use tokio::task::JoinHandle;

use crate::builds::{Builds, Candidate, MAX_COMPONENT_BYTES, Mode, Source, SwapResult};
use crate::config::component::ComponentOptions;
use crate::config::oci_reference::OciReference;
use crate::runtime::engine::{LoadError, LoadStep};
use crate::runtime::identity::{digest, oci_digest};
use crate::telemetry::metrics::{Metrics, REGISTRY_POLL_RESULTS, REGISTRY_PULL_RESULTS};
use cache::BlobCache;
use client::{RegistryClient, RegistryError};
use cosign::VerifyKey;

/// Largest signature manifest or payload read.
const MAX_SIGNATURE_BYTES: usize = 64 * 1024;

/// Why a digest could not be turned into a candidate.
#[derive(Debug)]
enum PullError {
    /// The registry did not give an answer to act on: tried again on the next poll.
    Registry(RegistryError),
    /// The artifact itself is refused: not tried again until the tag moves.
    Refused {
        /// The check and what it said.
        error: LoadError,
        /// The component's digest, when the manifest named it.
        layer_digest: Option<String>,
    },
}

/// The registry as `GET /admin/component` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RegistryView {
    /// COMPONENT as configured.
    pub reference: String,
    /// Whether a digest pins it (never polled).
    pub pinned: bool,
    /// Seconds between polls.
    pub poll_interval_seconds: f64,
    /// The manifest digest the tag pointed at when last looked at.
    pub manifest_digest: Option<String>,
    /// Whether the registry answered the last request.
    pub registry_answered: bool,
    /// Whether the running build came from COMPONENT_CACHE_DIR because the registry did not answer at start.
    pub serving_from_cache: bool,
    /// Unix seconds of the last poll.
    pub last_poll: Option<u64>,
    /// What the last poll found: unchanged, changed, error.
    pub last_poll_result: Option<&'static str>,
    /// What went wrong on the last poll or pull, if anything (never a credential).
    pub last_error: Option<String>,
    /// Whether only signed builds are accepted.
    pub signatures_required: bool,
}

/// The running poll loop; stops when dropped.
pub struct Poller(JoinHandle<()>);

impl Drop for Poller {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The component source of an `oci://` COMPONENT.
pub struct RegistrySource {
    reference: OciReference,
    client: RegistryClient,
    cache: BlobCache,
    verify_key: Option<VerifyKey>,
    /// Which key verified a cached digest: a start from the cache needs the same key (or none set).
    key_id: Option<String>,
    metrics: Arc<Metrics>,
    view: Mutex<RegistryView>,
}

impl RegistrySource {
    /// The source for `reference`; reads COMPONENT_VERIFY_KEY (a key that cannot be read or used is a
    /// refused setting, said in one line).
    pub fn new(reference: OciReference, options: &ComponentOptions, metrics: Arc<Metrics>) -> Result<Self, String> {
        let (verify_key, key_id) = match &options.component_verify_key {
            Some(path) => {
                let pem =
                    std::fs::read_to_string(path).map_err(|e| format!("COMPONENT_VERIFY_KEY {} cannot be read: {e}", path.display()))?;
                let key = VerifyKey::from_pem(&pem).map_err(|e| format!("COMPONENT_VERIFY_KEY {}: {e}", path.display()))?;
                (Some(key), Some(digest(pem.trim().as_bytes())))
            }
            None => (None, None),
        };
        let client = RegistryClient::new(&reference.registry, options.is_insecure(&reference.registry), options.registry_auth_file.clone());
        for result in REGISTRY_POLL_RESULTS {
            metrics.registry_polls.with_label_values(&[result]);
        }
        for result in REGISTRY_PULL_RESULTS {
            metrics.registry_pulls.with_label_values(&[result]);
        }
        let view = RegistryView {
            reference: reference.to_string(),
            pinned: reference.is_pinned(),
            poll_interval_seconds: options.component_poll_interval.as_secs_f64(),
            manifest_digest: reference.digest.clone(),
            registry_answered: false,
            serving_from_cache: false,
            last_poll: None,
            last_poll_result: None,
            last_error: None,
            signatures_required: verify_key.is_some(),
        };
        Ok(Self {
            cache: BlobCache::new(
                Some(options.component_cache_dir.as_path()).filter(|d| !d.as_os_str().is_empty()).map(|d| d.join("registry")).as_deref(),
            ),
            reference,
            client,
            verify_key,
            key_id,
            metrics,
            view: Mutex::new(view),
        })
    }

    /// What `GET /admin/component` shows of the registry.
    pub fn view(&self) -> RegistryView {
        self.view.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The first build: the tag resolved and pulled now, or, when the registry does not answer, the
    /// last digest that went live for this reference, from the verified cache (said in a log line and
    /// `stock_host_component_from_cache`). Fails with one line naming COMPONENT and the registry's answer.
    pub async fn startup_candidate(&self) -> anyhow::Result<(Candidate, String)> {
        let noticed = Instant::now();
        let resolved = match &self.reference.digest {
            Some(pinned) => Ok(pinned.clone()),
            None => self.client.resolve(&self.reference.repository, self.reference.manifest_reference()).await,
        };
        let failure = match resolved {
            Ok(manifest_digest) => match self.pull(&manifest_digest, Source::Startup, noticed).await {
                Ok(candidate) => {
                    self.answered(&manifest_digest);
                    return Ok((candidate, manifest_digest));
                }
                Err(PullError::Refused { error, .. }) => {
                    anyhow::bail!("COMPONENT {} ({manifest_digest}) cannot be served: {error}", self.reference)
                }
                Err(PullError::Registry(error)) => error,
            },
            Err(error) => error,
        };
        if !failure.is_unreachable() {
            anyhow::bail!("COMPONENT {} cannot be pulled: {failure}", self.reference);
        }
        let Some(manifest_digest) = self.cached_live_digest() else {
            anyhow::bail!("COMPONENT {} cannot be pulled and nothing is cached for it: {failure}", self.reference);
        };
        let candidate = match self.cached_candidate(&manifest_digest, noticed) {
            Some(candidate) => candidate,
            None => anyhow::bail!(
                "COMPONENT {} cannot be pulled and its cached build {manifest_digest} is gone or corrupt: {failure}",
                self.reference
            ),
        };
        tracing::warn!(
            component = %self.reference,
            manifest_digest = %manifest_digest,
            error = %failure,
            "the registry does not answer: serving the last verified build from COMPONENT_CACHE_DIR; polling goes on"
        );
        self.metrics.component_from_cache.set(1);
        self.metrics.registry_up.set(0);
        let mut view = self.view.lock().unwrap_or_else(|p| p.into_inner());
        view.serving_from_cache = true;
        view.manifest_digest = Some(manifest_digest.clone());
        view.last_error = Some(failure.to_string());
        drop(view);
        Ok((candidate, manifest_digest))
    }

    /// Remembers that `manifest_digest` went live, for a later start with the registry down, and keeps
    /// its blobs longest.
    pub fn went_live(&self, manifest_digest: &str) {
        if let Some(layer) = self.cache.get(manifest_digest).and_then(|m| artifact::component_layer(&m, None).ok()) {
            self.cache.keep(&[manifest_digest, &layer.digest]);
        }
        self.cache.set_live_digest(&self.reference.to_string(), manifest_digest, self.key_id.as_deref());
    }

    /// Polls the tag every `interval` (not at all when pinned), submitting each new digest once; stops
    /// when the returned poller is dropped.
    pub fn spawn_poller(self: Arc<Self>, builds: Arc<Builds>, live: String, interval: Duration) -> Option<Poller> {
        if self.reference.is_pinned() {
            tracing::info!(component = %self.reference, "COMPONENT is pinned to a digest: not polled");
            return None;
        }
        Some(Poller(tokio::spawn(async move {
            let mut last_seen = live;
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if let Some(seen) = self.poll_once(&builds, &last_seen).await {
                    last_seen = seen;
                }
            }
        })))
    }

    /// One poll: HEAD the tag; a digest other than `last_seen` is pulled and submitted. Returns the
    /// digest now acted on (the new one, whatever the door decided), or `None` to try again next time.
    async fn poll_once(&self, builds: &Arc<Builds>, last_seen: &str) -> Option<String> {
        let noticed = Instant::now();
        let resolved = self.client.resolve(&self.reference.repository, self.reference.manifest_reference()).await;
        self.metrics.registry_last_poll.set(crate::builds::record::unix_now() as i64);
        let manifest_digest = match resolved {
            Ok(digest) => digest,
            Err(error) => {
                self.polled("error");
                self.failed(&error);
                return None;
            }
        };
        let changed = manifest_digest != last_seen;
        self.polled(if changed { "changed" } else { "unchanged" });
        self.answered(&manifest_digest);
        if !changed {
            return None;
        }
        tracing::info!(component = %self.reference, manifest_digest = %manifest_digest, previous = %last_seen, "the tag moved: pulling the new digest");
        match self.pull(&manifest_digest, Source::Registry, noticed).await {
            Ok(candidate) => {
                let record = builds.submit(candidate).await;
                if matches!(record.result, SwapResult::Ok | SwapResult::Unchanged) {
                    self.went_live(&manifest_digest);
                }
                Some(manifest_digest)
            }
            Err(PullError::Refused { error, layer_digest }) => {
                self.metrics.registry_pulls.with_label_values(&["rejected"]).inc();
                self.view.lock().unwrap_or_else(|p| p.into_inner()).last_error = Some(error.to_string());
                let refused = Candidate {
                    bytes: Bytes::new(),
                    source: Source::Registry,
                    reference: Some(self.reference.at_digest(&manifest_digest)),
                    expected_digest: None,
                    mode: Mode::Policy,
                    noticed,
                };
                builds.refuse(&refused, layer_digest.as_deref(), error);
                Some(manifest_digest)
            }
            Err(PullError::Registry(error)) => {
                self.failed(&error);
                None
            }
        }
    }

    /// Pulls `manifest_digest` (from the cache where it can) and checks it into a candidate.
    async fn pull(&self, manifest_digest: &str, source: Source, noticed: Instant) -> Result<Candidate, PullError> {
        let repository = &self.reference.repository;
        let mut downloaded = false;
        let manifest = match self.cache.get(manifest_digest) {
            Some(bytes) => bytes,
            None => {
                let (bytes, content_type) = self.client.manifest(repository, manifest_digest).await.map_err(|e| self.pull_failed(e))?;
                let actual = oci_digest(&bytes);
                if actual != manifest_digest {
                    return Err(refused(LoadStep::Digest, format!("the manifest hashes to {actual}, not {manifest_digest}"), None));
                }
                // The layout check reads mediaType from the bytes; the Content-Type only matters without it.
                artifact::component_layer(&bytes, content_type.as_deref()).map_err(|r| refused(LoadStep::Manifest, r, None))?;
                self.cache.put(manifest_digest, &bytes);
                downloaded = true;
                bytes
            }
        };
        let layer = artifact::component_layer(&manifest, None).map_err(|r| refused(LoadStep::Manifest, r, None))?;
        if let Some(key) = &self.verify_key {
            self.verify_signature(key, manifest_digest, &layer.digest).await?;
        }
        let bytes = match self.cache.get(&layer.digest) {
            Some(bytes) => bytes,
            None => {
                let bytes = self.client.blob(repository, &layer.digest, MAX_COMPONENT_BYTES + 1).await.map_err(|e| self.pull_failed(e))?;
                if bytes.len() as u64 != layer.size {
                    let reason = format!("the blob is {} bytes, the manifest says {}", bytes.len(), layer.size);
                    return Err(refused(LoadStep::Digest, reason, Some(layer.digest.clone())));
                }
                // A blob that does not match is not cached; the door refuses it by its digest.
                if oci_digest(&bytes) == layer.digest {
                    self.cache.put(&layer.digest, &bytes);
                }
                downloaded = true;
                bytes
            }
        };
        self.metrics.registry_pulls.with_label_values(&[if downloaded { "pulled" } else { "cached" }]).inc();
        Ok(Candidate {
            bytes,
            source,
            reference: Some(self.reference.at_digest(manifest_digest)),
            expected_digest: Some(layer.digest),
            mode: Mode::Policy,
            noticed,
        })
    }

    /// Checks that a cosign signature by `key` over `manifest_digest` is stored under its `.sig` tag.
    async fn verify_signature(&self, key: &VerifyKey, manifest_digest: &str, layer_digest: &str) -> Result<(), PullError> {
        let repository = &self.reference.repository;
        let tag = cosign::signature_tag(manifest_digest);
        let refuse = |reason: String| refused(LoadStep::Signature, reason, Some(layer_digest.to_owned()));
        let manifest = match self.client.manifest(repository, &tag).await {
            Ok((bytes, _)) => bytes,
            Err(RegistryError::NotFound { .. }) => {
                return Err(refuse(format!("unsigned: no cosign signature (tag {tag}) in {repository}")));
            }
            Err(error) => return Err(self.pull_failed(error)),
        };
        let manifest: artifact::Manifest =
            serde_json::from_slice(&manifest).map_err(|e| refuse(format!("the signature manifest {tag} is not an image manifest: {e}")))?;
        let mut reasons = Vec::new();
        for layer in manifest.layers.iter().filter(|l| l.media_type == cosign::SIMPLE_SIGNING) {
            if crate::config::oci_reference::parse_digest(&layer.digest).is_err() {
                reasons.push(format!("a payload with an invalid digest {:?}", layer.digest));
                continue;
            }
            let Some(signature) = layer.annotations.get(cosign::SIGNATURE_ANNOTATION) else {
                reasons.push(format!("a payload without the {} annotation", cosign::SIGNATURE_ANNOTATION));
                continue;
            };
            let payload = self.client.blob(repository, &layer.digest, MAX_SIGNATURE_BYTES).await.map_err(|e| self.pull_failed(e))?;
            if oci_digest(&payload) != layer.digest {
                reasons.push(format!("payload {} does not match its digest", layer.digest));
                continue;
            }
            match key.verify(&payload, signature, manifest_digest) {
                Ok(()) => return Ok(()),
                Err(reason) => reasons.push(reason),
            }
        }
        if reasons.is_empty() {
            reasons.push(format!("{tag} holds no {} payload", cosign::SIMPLE_SIGNING));
        }
        Err(refuse(format!("no valid signature: {}", reasons.join("; "))))
    }

    /// The candidate for `manifest_digest` from the verified cache alone.
    fn cached_candidate(&self, manifest_digest: &str, noticed: Instant) -> Option<Candidate> {
        let manifest = self.cache.get(manifest_digest)?;
        let layer = artifact::component_layer(&manifest, None).ok()?;
        let bytes = self.cache.get(&layer.digest)?;
        Some(Candidate {
            bytes,
            source: Source::Startup,
            reference: Some(self.reference.at_digest(manifest_digest)),
            expected_digest: Some(layer.digest),
            mode: Mode::Policy,
            noticed,
        })
    }

    /// The digest to serve from the cache: the pinned one, or the last that went live for the tag, if
    /// the key that verified it is the one set now (a build never checked by this key is not served).
    fn cached_live_digest(&self) -> Option<String> {
        let (manifest_digest, verified_by) = self.cache.live_digest(&self.reference.to_string())?;
        if self.key_id.is_some() && verified_by != self.key_id {
            tracing::warn!(component = %self.reference, "the cached build was not verified with the COMPONENT_VERIFY_KEY set now: not served");
            return None;
        }
        Some(manifest_digest)
    }

    fn polled(&self, result: &'static str) {
        self.metrics.registry_polls.with_label_values(&[result]).inc();
        let mut view = self.view.lock().unwrap_or_else(|p| p.into_inner());
        view.last_poll = Some(crate::builds::record::unix_now());
        view.last_poll_result = Some(result);
    }

    /// The registry answered: clears the error and the cache fallback.
    fn answered(&self, manifest_digest: &str) {
        self.metrics.registry_up.set(1);
        self.metrics.component_from_cache.set(0);
        let mut view = self.view.lock().unwrap_or_else(|p| p.into_inner());
        if view.serving_from_cache {
            tracing::info!(component = %self.reference, "the registry answers again");
        }
        view.registry_answered = true;
        view.serving_from_cache = false;
        view.manifest_digest = Some(manifest_digest.to_owned());
        view.last_error = None;
    }

    /// A request failed: logged once per distinct error, counted, shown.
    fn failed(&self, error: &RegistryError) {
        let text = crate::telemetry::redact::redact(&error.to_string());
        let mut view = self.view.lock().unwrap_or_else(|p| p.into_inner());
        if view.last_error.as_deref() != Some(text.as_str()) {
            tracing::warn!(component = %self.reference, error = %text, "registry poll failed; the running build keeps serving");
        }
        if error.is_unreachable() {
            self.metrics.registry_up.set(0);
            view.registry_answered = false;
        }
        view.last_error = Some(text);
    }

    fn pull_failed(&self, error: RegistryError) -> PullError {
        self.metrics.registry_pulls.with_label_values(&["error"]).inc();
        PullError::Registry(error)
    }
}

/// The artifact itself is refused at `step`.
fn refused(step: LoadStep, reason: String, layer_digest: Option<String>) -> PullError {
    PullError::Refused { error: LoadError::new(step, reason), layer_digest }
}
