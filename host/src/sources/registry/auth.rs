//! Registry credentials and challenges. Pure: a Docker `config.json` (REGISTRY_AUTH_FILE, the format of
//! skopeo, podman and a `kubernetes.io/dockerconfigjson` Secret) read into a username and password for
//! one registry, and a `WWW-Authenticate` challenge read into what to answer it with.

use base64::Engine as _;

/// A username and password for one registry. Never printed: `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user.
    pub username: String,
    /// The password or token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ***)", self.username)
    }
}

impl Credentials {
    /// The `Authorization: Basic …` value.
    pub fn basic(&self) -> String {
        let pair = format!("{}:{}", self.username, self.password);
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
    }
}

/// The credentials `config_json` holds for `registry` (host:port), if any. Keys are matched as Docker
/// matches them: exactly, or with a scheme and path around the host (`https://host/v1/`).
pub fn credentials_for(config_json: &[u8], registry: &str) -> Result<Option<Credentials>, String> {
    let config: serde_json::Value = serde_json::from_slice(config_json).map_err(|e| format!("it is not JSON: {e}"))?;
    let auths = config.get("auths").and_then(|a| a.as_object()).ok_or("it has no \"auths\" object (a Docker config.json)")?;
    let host_of = |key: &str| {
        let without_scheme = key.split_once("://").map_or(key, |(_, rest)| rest);
        without_scheme.split('/').next().unwrap_or(without_scheme).to_ascii_lowercase()
    };
    let Some(entry) = auths.iter().find(|(key, _)| host_of(key) == registry.to_ascii_lowercase()).map(|(_, v)| v) else {
        return Ok(None);
    };
    if let Some(auth) = entry.get("auth").and_then(|a| a.as_str()).filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| format!("the \"auth\" of {registry} is not base64"))?;
        let decoded = String::from_utf8(decoded).map_err(|_| format!("the \"auth\" of {registry} is not text"))?;
        let (username, password) = decoded.split_once(':').ok_or_else(|| format!("the \"auth\" of {registry} is not user:password"))?;
        return Ok(Some(Credentials { username: username.to_owned(), password: password.to_owned() }));
    }
    let field = |name: &str| entry.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    match (field("username"), field("password")) {
        (Some(username), Some(password)) => Ok(Some(Credentials { username, password })),
        _ => Err(format!("the entry for {registry} has neither \"auth\" nor \"username\" and \"password\"")),
    }
}

/// How a registry asks to be authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// Send the credentials with every request.
    Basic,
    /// Trade the credentials (or nothing) for a token at `realm`.
    Bearer {
        /// The token endpoint.
        realm: String,
        /// The `service` parameter to pass back.
        service: Option<String>,
        /// The `scope` parameter to pass back, when the registry named one.
        scope: Option<String>,
    },
}

/// Reads a `WWW-Authenticate` header value.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let (scheme, params) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut realm = None;
    let mut service = None;
    let mut scope = None;
    for (key, value) in parameters(params) {
        match key.to_ascii_lowercase().as_str() {
            "realm" => realm = Some(value),
            "service" => service = Some(value),
            "scope" => scope = Some(value),
            _ => {}
        }
    }
    Some(Challenge::Bearer { realm: realm?, service, scope })
}

/// `key="value", key=value` pairs (quoted values may hold commas).
fn parameters(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim().to_owned();
        let after = after.trim_start();
        let (value, remaining) = match after.strip_prefix('"') {
            Some(quoted) => match quoted.find('"') {
                Some(end) => (quoted[..end].to_owned(), &quoted[end + 1..]),
                None => (quoted.to_owned(), ""),
            },
            None => {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim().to_owned(), &after[end..])
            }
        };
        out.push((key, value));
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_auth_or_from_username_and_password() {
        let config = br#"{"auths": {
            "127.0.0.1:5000": {"auth": "dXNlcjpwYTpzcw=="},
            "https://ghcr.io/v1/": {"username": "bot", "password": "token"},
            "broken.io": {"auth": "%%"},
            "empty.io": {}
        }}"#;
        let local = credentials_for(config, "127.0.0.1:5000").expect("reads").expect("found");
        assert_eq!((local.username.as_str(), local.password.as_str()), ("user", "pa:ss"));
        assert_eq!(local.basic(), "Basic dXNlcjpwYTpzcw==");
        assert_eq!(credentials_for(config, "GHCR.io").expect("reads").map(|c| c.username), Some("bot".into()));
        assert_eq!(credentials_for(config, "quay.io").expect("reads"), None);
        assert!(credentials_for(config, "broken.io").expect_err("bad base64").contains("base64"));
        assert!(credentials_for(config, "empty.io").is_err());
        assert!(credentials_for(b"[]", "r").expect_err("not a config").contains("auths"));
        assert!(!format!("{local:?}").contains("pa:ss"), "Debug never shows the password");
    }

    #[test]
    fn challenges_are_read_as_registries_write_them() {
        assert_eq!(parse_challenge(r#"Basic realm="Registry Realm""#), Some(Challenge::Basic));
        assert_eq!(
            parse_challenge(r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull,push""#),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
        assert_eq!(
            parse_challenge("bearer realm=https://ghcr.io/token"),
            Some(Challenge::Bearer { realm: "https://ghcr.io/token".into(), service: None, scope: None })
        );
        assert_eq!(parse_challenge("Bearer service=x"), None, "no realm, nothing to ask");
        assert_eq!(parse_challenge("Negotiate abc"), None);
    }
}
