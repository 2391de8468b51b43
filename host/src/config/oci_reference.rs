//! `oci://REGISTRY/REPO:TAG` and `oci://REGISTRY/REPO@sha256:HEX`: a component in an OCI registry, as
//! COMPONENT names it. Parsed strictly (the distribution spec's grammar), so a typo is one clear line
//! at start instead of a 404 from the registry later.

use std::fmt;

/// The scheme that marks COMPONENT as a registry reference rather than a path.
pub const SCHEME: &str = "oci://";
/// The tag a reference without tag or digest means (the docker convention).
const DEFAULT_TAG: &str = "latest";

/// A component in a registry: where, which repository, and a tag (polled) or a digest (pinned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciReference {
    /// `host[:port]` of the registry.
    pub registry: String,
    /// The repository path (`stock/stock-component`).
    pub repository: String,
    /// The tag, when the reference names one (kept for display when a digest pins it too).
    pub tag: Option<String>,
    /// `sha256:HEX` when the reference is pinned: it never moves and is never polled.
    pub digest: Option<String>,
}

impl OciReference {
    /// Parses `oci://REGISTRY/REPO[:TAG][@sha256:HEX]`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let rest = text.strip_prefix(SCHEME).ok_or_else(|| format!("{text:?} does not start with {SCHEME}"))?;
        let (registry, path) = rest.split_once('/').ok_or_else(|| format!("{text:?} names no repository (oci://REGISTRY/REPO:TAG)"))?;
        if registry.is_empty() || !registry.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']')) {
            return Err(format!("{registry:?} is not a registry host[:port]"));
        }
        let (name_and_tag, digest) = match path.split_once('@') {
            Some((name, digest)) => (name, Some(parse_digest(digest)?)),
            None => (path, None),
        };
        // A ':' after the last '/' starts the tag (a ':' before it would be a port, which is the registry's).
        let (repository, tag) = match name_and_tag.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
            _ => (name_and_tag, None),
        };
        check_repository(repository)?;
        if let Some(tag) = tag {
            check_tag(tag)?;
        }
        let tag = tag.map(str::to_owned).or_else(|| digest.is_none().then(|| DEFAULT_TAG.to_owned()));
        Ok(Self { registry: registry.to_owned(), repository: repository.to_owned(), tag, digest })
    }

    /// What to ask the registry for: the digest when pinned, else the tag.
    pub fn manifest_reference(&self) -> &str {
        self.digest.as_deref().or(self.tag.as_deref()).unwrap_or(DEFAULT_TAG)
    }

    /// Whether the reference is pinned to a digest (never polled).
    pub fn is_pinned(&self) -> bool {
        self.digest.is_some()
    }

    /// The same repository at `digest`: how records name the exact artifact a tag pointed at.
    pub fn at_digest(&self, digest: &str) -> String {
        let tag = self.tag.as_deref().map(|t| format!(":{t}")).unwrap_or_default();
        format!("{SCHEME}{}/{}{tag}@{digest}", self.registry, self.repository)
    }
}

impl fmt::Display for OciReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Whether `registry` (host:port) is in `insecure` (COMPONENT_INSECURE_REGISTRIES): reached over plain HTTP.
pub fn is_listed(insecure: &[String], registry: &str) -> bool {
    insecure.iter().any(|r| r.trim().eq_ignore_ascii_case(registry))
}

/// `sha256:` and 64 lower-case hex digits (the only algorithm the host verifies).
pub fn parse_digest(text: &str) -> Result<String, String> {
    let hex = text.strip_prefix("sha256:").ok_or_else(|| format!("digest {text:?} is not sha256:HEX"))?;
    if hex.len() != 64 || !hex.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')) {
        return Err(format!("digest {text:?} is not sha256: and 64 lower-case hex digits"));
    }
    Ok(text.to_owned())
}

/// Path components of lower-case letters and digits, separated by `.`, `_`, `__` or `-` runs, joined by `/`.
fn check_repository(repository: &str) -> Result<(), String> {
    let valid_component = |part: &str| {
        !part.is_empty()
            && part.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && part.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
    };
    if repository.is_empty() || !repository.split('/').all(valid_component) {
        return Err(format!("repository {repository:?} is not a valid name (lower-case letters, digits, '.', '_', '-', '/')"));
    }
    Ok(())
}

/// Up to 128 characters of letters, digits, `_`, `.` and `-`, not starting with `.` or `-`.
fn check_tag(tag: &str) -> Result<(), String> {
    let valid = !tag.is_empty()
        && tag.len() <= 128
        && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && tag.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid { Ok(()) } else { Err(format!("tag {tag:?} is not a valid tag (letters, digits, '_', '.', '-'; at most 128)")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn tags_digests_and_ports_are_told_apart() {
        let tagged = OciReference::parse("oci://127.0.0.1:5000/stock/component:v1.2").expect("tagged");
        assert_eq!((tagged.registry.as_str(), tagged.repository.as_str()), ("127.0.0.1:5000", "stock/component"));
        assert_eq!((tagged.tag.as_deref(), tagged.digest.as_deref(), tagged.is_pinned()), (Some("v1.2"), None, false));
        assert_eq!(tagged.manifest_reference(), "v1.2");

        let pinned = OciReference::parse(&format!("oci://ghcr.io/acme/stock@sha256:{HEX}")).expect("pinned");
        assert_eq!((pinned.tag.as_deref(), pinned.manifest_reference()), (None, format!("sha256:{HEX}").as_str()));
        assert!(pinned.is_pinned());

        let both = OciReference::parse(&format!("oci://registry.example.com/stock:stable@sha256:{HEX}")).expect("both");
        assert_eq!((both.tag.as_deref(), both.manifest_reference()), (Some("stable"), format!("sha256:{HEX}").as_str()));

        let bare = OciReference::parse("oci://localhost:5000/stock").expect("bare");
        assert_eq!(bare.tag.as_deref(), Some("latest"));
    }

    #[test]
    fn display_gives_back_what_was_parsed_and_records_name_the_digest() {
        for text in ["oci://127.0.0.1:5000/stock/component:v1", &format!("oci://r.io/a/b:t@sha256:{HEX}")] {
            assert_eq!(OciReference::parse(text).expect("parses").to_string(), text);
        }
        let tagged = OciReference::parse("oci://r.io/stock:stable").expect("tagged");
        assert_eq!(tagged.at_digest(&format!("sha256:{HEX}")), format!("oci://r.io/stock:stable@sha256:{HEX}"));
    }

    #[test]
    fn mistakes_are_named() {
        for (text, says) in [
            ("/etc/component.wasm", "does not start with oci://"),
            ("oci://registry-only", "names no repository"),
            ("oci://r.io/Stock:v1", "not a valid name"),
            ("oci://r.io/stock:-v1", "not a valid tag"),
            ("oci://r.io/stock@sha256:abc", "64 lower-case hex"),
            ("oci://r.io/stock@md5:abc", "not sha256:HEX"),
            ("oci://r.io//stock:v1", "not a valid name"),
            ("oci:///stock:v1", "not a registry"),
        ] {
            let error = OciReference::parse(text).expect_err(text);
            assert!(error.contains(says), "{text}: {error}");
        }
    }
}
