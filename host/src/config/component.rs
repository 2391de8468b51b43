//! Where the component build comes from: COMPONENT, a path (watched; a changed file is a candidate
//! build like any other) or an OCI registry reference (polled; a moved tag is a candidate), and the
//! registry settings: poll interval, cache, credentials, plain-HTTP registries, signature key.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::duration::parse_positive_duration;
use super::oci_reference::{OciReference, SCHEME};

/// Where `cargo build --release --target wasm32-wasip2 -p stock-component` puts the component.
pub const DEFAULT_COMPONENT: &str = "target/wasm32-wasip2/release/stock_component.wasm";
/// Where the container image keeps it.
pub const IMAGE_COMPONENT: &str = "/component/stock_component.wasm";

/// The default COMPONENT: the working directory's build, else the build beside this binary
/// (`target/release/stock-host` -> `target/wasm32-wasip2/release/...`), else the image's copy.
pub fn default_component() -> PathBuf {
    let beside_binary = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent().map(|target| target.join("wasm32-wasip2/release/stock_component.wasm")));
    [Some(PathBuf::from(DEFAULT_COMPONENT)), beside_binary, Some(PathBuf::from(IMAGE_COMPONENT))]
        .into_iter()
        .flatten()
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_COMPONENT))
}

/// How often a registry tag is checked by default (a HEAD of its manifest; nothing is downloaded
/// while it does not move).
pub const DEFAULT_POLL_INTERVAL: &str = "30s";

/// Where COMPONENT points: a file, or a registry reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComponentSource {
    /// A path (.wasm, or .wat).
    File(PathBuf),
    /// `oci://REGISTRY/REPO:TAG` or `oci://REGISTRY/REPO@sha256:HEX`.
    Registry(OciReference),
}

impl ComponentSource {
    /// `oci://…` is a registry reference; anything else is a path.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.starts_with(SCHEME) { OciReference::parse(text).map(Self::Registry) } else { Ok(Self::File(PathBuf::from(text))) }
    }
}

impl fmt::Display for ComponentSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Registry(reference) => write!(f, "{reference}"),
        }
    }
}

/// The default COMPONENT_CACHE_DIR: `$XDG_CACHE_HOME/stock-host`, else `$HOME/.cache/stock-host`, else
/// `stock-host-cache` in the system's temporary directory.
pub fn default_cache_dir() -> PathBuf {
    let from_env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    from_env("XDG_CACHE_HOME")
        .or_else(|| from_env("HOME").map(|home| home.join(".cache")))
        .map(|cache| cache.join("stock-host"))
        .unwrap_or_else(|| std::env::temp_dir().join("stock-host-cache"))
}

/// COMPONENT_CACHE_DIR as written; empty is accepted and means no cache.
fn parse_cache_dir(text: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(text))
}

/// The component build's source.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Component")]
pub struct ComponentOptions {
    /// The component: a path (.wasm; .wat also accepted), watched, or oci://REGISTRY/REPO:TAG, polled
    /// (or oci://REGISTRY/REPO@sha256:HEX, pinned). A changed file or a moved tag is checked and goes
    /// live (or starts a canary with CANARY_PERCENT). By default the release build next to this
    /// binary, or the image's /component/stock_component.wasm.
    #[arg(long, env = "COMPONENT", value_parser = ComponentSource::parse, default_value_t = ComponentSource::File(default_component()))]
    pub component: ComponentSource,
    /// How often a registry tag is checked for a new digest (a HEAD of the manifest).
    #[arg(long, env = "COMPONENT_POLL_INTERVAL", value_parser = parse_positive_duration, default_value = DEFAULT_POLL_INTERVAL)]
    pub component_poll_interval: Duration,
    /// Directory of verified registry blobs and compiled builds (created with mode 0700; an emptyDir
    /// in Kubernetes). Default: $XDG_CACHE_HOME/stock-host, else $HOME/.cache/stock-host. Empty:
    /// nothing is cached (every start pulls and compiles).
    #[arg(long, env = "COMPONENT_CACHE_DIR", value_parser = parse_cache_dir, default_value_os_t = default_cache_dir())]
    pub component_cache_dir: PathBuf,
    /// Docker config.json with registry credentials (a kubernetes.io/dockerconfigjson Secret mounted
    /// as a file); re-read when it changes. Without it, registries are asked anonymously.
    #[arg(long, env = "REGISTRY_AUTH_FILE")]
    pub registry_auth_file: Option<PathBuf>,
    /// Registries (host:port, comma-separated) reached over plain HTTP; every other one over TLS.
    #[arg(long, env = "COMPONENT_INSECURE_REGISTRIES", value_delimiter = ',')]
    pub component_insecure_registries: Vec<String>,
    /// A cosign public key (PEM file, ECDSA P-256): only registry builds with a valid cosign
    /// signature by it are accepted.
    #[arg(long, env = "COMPONENT_VERIFY_KEY")]
    pub component_verify_key: Option<PathBuf>,
}

impl ComponentOptions {
    /// Whether `registry` (host:port) is reached over plain HTTP.
    pub fn is_insecure(&self, registry: &str) -> bool {
        super::oci_reference::is_listed(&self.component_insecure_registries, registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::parse;

    #[test]
    fn a_path_and_a_registry_reference_are_told_apart() {
        let file = parse(&["--component", "/etc/stock/component.wasm"]).expect("path");
        assert_eq!(file.component.component, ComponentSource::File("/etc/stock/component.wasm".into()));
        let oci = parse(&["--component", "oci://127.0.0.1:5000/stock:v1", "--component-insecure-registries", "127.0.0.1:5000, r.io"])
            .expect("reference");
        assert!(matches!(&oci.component.component, ComponentSource::Registry(r) if r.tag.as_deref() == Some("v1")));
        assert!(oci.component.is_insecure("127.0.0.1:5000") && oci.component.is_insecure("r.io"));
        assert!(!oci.component.is_insecure("ghcr.io"));
        assert_eq!(oci.component.component_poll_interval, Duration::from_secs(30));
        let off = parse(&["--component-cache-dir", ""]).expect("an empty cache dir switches caching off");
        assert_eq!(off.component.component_cache_dir, PathBuf::new());
    }

    #[test]
    fn a_bad_reference_or_interval_names_the_variable() {
        for (flag, value, variable) in
            [("--component", "oci://r.io/Bad:v1", "COMPONENT"), ("--component-poll-interval", "0s", "COMPONENT_POLL_INTERVAL")]
        {
            let error = parse(&[flag, value]).expect_err("invalid");
            assert!(error.to_string().contains(variable) || error.to_string().contains(flag), "{flag}: {error}");
        }
    }
}
