//! A small client of the OCI distribution API, only what the host needs: HEAD and GET a manifest,
//! GET a blob (following a redirect to storage), and for `stock-host push` upload a blob and PUT a
//! manifest. TLS (webpki roots, the same stack as the component's own egress) unless the registry is
//! listed in COMPONENT_INSECURE_REGISTRIES. Answers the registry's challenge with Basic credentials
//! or a Bearer token obtained with them; credentials are re-read from REGISTRY_AUTH_FILE whenever the
//! registry asks, so a rotated Secret is used without a restart, and never logged.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::auth::{Challenge, Credentials, credentials_for, parse_challenge};
use crate::runtime::identity::oci_digest;

/// One request (connect, send, headers) may take this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A whole body (a component of up to 32 MiB) may take this long to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(120);
/// Redirects followed for one blob (registries send blobs from storage elsewhere).
const MAX_REDIRECTS: usize = 5;
/// Largest token response read.
const MAX_TOKEN_BYTES: usize = 64 * 1024;

/// Why a registry request did not give what was asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    /// No answer: connection refused, TLS failure, timeout, or a server error.
    #[error("registry {registry} did not answer: {reason}")]
    Unreachable {
        /// host:port.
        registry: String,
        /// What happened.
        reason: String,
    },
    /// The registry refused the credentials (or wants some and none were given).
    #[error("registry {registry} refused access: {reason}")]
    Denied {
        /// host:port.
        registry: String,
        /// What it said, and where credentials come from.
        reason: String,
    },
    /// The manifest or blob is not there.
    #[error("registry {registry} has no {what}")]
    NotFound {
        /// host:port.
        registry: String,
        /// What was asked for.
        what: String,
    },
    /// Any other answer the host cannot use.
    #[error("registry {registry}: {reason}")]
    Invalid {
        /// host:port.
        registry: String,
        /// What was wrong.
        reason: String,
    },
}

impl RegistryError {
    /// Whether the registry gave no usable answer at all (the case for serving from the cache).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Unreachable { .. })
    }
}

/// Which access a request needs (the Bearer token's scope).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read manifests and blobs.
    Pull,
    /// Also write them (`stock-host push`).
    Push,
}

/// A client of one registry.
pub struct RegistryClient {
    registry: String,
    base: String,
    auth_file: Option<PathBuf>,
    /// The Authorization value that worked last (Basic, or a Bearer token), tried first next time.
    authorization: Mutex<Option<String>>,
}

impl RegistryClient {
    /// A client of `registry` (host:port), over plain HTTP when `insecure`.
    pub fn new(registry: &str, insecure: bool, auth_file: Option<PathBuf>) -> Self {
        let scheme = if insecure { "http" } else { "https" };
        Self { registry: registry.to_owned(), base: format!("{scheme}://{registry}"), auth_file, authorization: Mutex::new(None) }
    }

    /// The digest `reference` (a tag) points at now, from a HEAD: nothing is downloaded.
    pub async fn resolve(&self, repository: &str, reference: &str) -> Result<String, RegistryError> {
        let url = format!("{}/v2/{repository}/manifests/{reference}", self.base);
        let what = || format!("manifest {repository}:{reference}");
        let response = self.send(Method::HEAD, &url, repository, Access::Pull, Some(super::artifact::ACCEPT), None).await?;
        let response = self.expect_ok(response, what()).await?;
        match response.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()) {
            Some(digest) => crate::config::oci_reference::parse_digest(digest)
                .map_err(|reason| RegistryError::Invalid { registry: self.registry.clone(), reason }),
            // Some registries answer a HEAD without the digest: the manifest itself is small.
            None => Ok(oci_digest(&self.manifest(repository, reference).await?.0)),
        }
    }

    /// The manifest `reference` (tag or digest) names, and its Content-Type.
    pub async fn manifest(&self, repository: &str, reference: &str) -> Result<(Bytes, Option<String>), RegistryError> {
        let url = format!("{}/v2/{repository}/manifests/{reference}", self.base);
        let response = self.send(Method::GET, &url, repository, Access::Pull, Some(super::artifact::ACCEPT), None).await?;
        let response = self.expect_ok(response, format!("manifest {repository}:{reference}")).await?;
        let content_type = response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        Ok((self.body(response, super::artifact::MAX_MANIFEST_BYTES).await?, content_type))
    }

    /// The blob `digest`, at most `limit` bytes, following the registry's redirect to its storage.
    pub async fn blob(&self, repository: &str, digest: &str, limit: usize) -> Result<Bytes, RegistryError> {
        let mut url = format!("{}/v2/{repository}/blobs/{digest}", self.base);
        for _ in 0..=MAX_REDIRECTS {
            let same_registry = url.starts_with(&self.base);
            let response = if same_registry {
                self.send(Method::GET, &url, repository, Access::Pull, None, None).await?
            } else {
                // Storage elsewhere (a signed URL): never send the registry's credentials there.
                self.request(Method::GET, &url, &HeaderMap::new(), None).await?
            };
            if response.status().is_redirection() {
                let location = response.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
                url = if location.starts_with('/') { format!("{}{location}", self.base) } else { location.to_owned() };
                continue;
            }
            let response = self.expect_ok(response, format!("blob {digest} in {repository}")).await?;
            return self.body(response, limit).await;
        }
        Err(self.invalid(format!("more than {MAX_REDIRECTS} redirects for blob {digest}")))
    }

    /// Uploads `bytes` as the blob `digest` unless the registry has it already (monolithic upload).
    pub async fn push_blob(&self, repository: &str, digest: &str, bytes: Bytes) -> Result<(), RegistryError> {
        let head = format!("{}/v2/{repository}/blobs/{digest}", self.base);
        if self.send(Method::HEAD, &head, repository, Access::Push, None, None).await?.status() == StatusCode::OK {
            return Ok(());
        }
        let start = format!("{}/v2/{repository}/blobs/uploads/", self.base);
        let response = self.send(Method::POST, &start, repository, Access::Push, None, Some((Bytes::new(), None))).await?;
        let response = self.expect_status(response, StatusCode::ACCEPTED, format!("an upload to {repository}")).await?;
        let location = response.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let location = if location.starts_with('/') { format!("{}{location}", self.base) } else { location.to_owned() };
        let separator = if location.contains('?') { '&' } else { '?' };
        let put = format!("{location}{separator}digest={digest}");
        let content_type = Some("application/octet-stream");
        let response = self.send(Method::PUT, &put, repository, Access::Push, None, Some((bytes, content_type))).await?;
        self.expect_status(response, StatusCode::CREATED, format!("blob {digest}")).await.map(drop)
    }

    /// PUTs `manifest` as `tag` and gives the digest the registry stored it under.
    pub async fn push_manifest(&self, repository: &str, tag: &str, manifest: Bytes, media_type: &str) -> Result<String, RegistryError> {
        let url = format!("{}/v2/{repository}/manifests/{tag}", self.base);
        let response = self.send(Method::PUT, &url, repository, Access::Push, None, Some((manifest.clone(), Some(media_type)))).await?;
        let response = self.expect_status(response, StatusCode::CREATED, format!("manifest {repository}:{tag}")).await?;
        let stored = response.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()).map(str::to_owned);
        Ok(stored.unwrap_or_else(|| oci_digest(&manifest)))
    }

    /// Sends a request to the registry, answering its challenge once if it asks for credentials.
    async fn send(
        &self,
        method: Method,
        url: &str,
        repository: &str,
        access: Access,
        accept: Option<&str>,
        body: Option<(Bytes, Option<&str>)>,
    ) -> Result<Response<Incoming>, RegistryError> {
        let mut headers = HeaderMap::new();
        if let Some(accept) = accept.and_then(|a| a.parse().ok()) {
            headers.insert(header::ACCEPT, accept);
        }
        if let Some(content_type) = body.as_ref().and_then(|(_, c)| c.as_ref()).and_then(|c| c.parse().ok()) {
            headers.insert(header::CONTENT_TYPE, content_type);
        }
        let body = body.map(|(bytes, _)| bytes);
        let known = self.authorization.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut first = headers.clone();
        if let Some(value) = known.as_deref().and_then(|v| v.parse().ok()) {
            first.insert(header::AUTHORIZATION, value);
        }
        let response = self.request(method.clone(), url, &first, body.clone()).await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let challenge = response.headers().get(header::WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).and_then(parse_challenge);
        let Some(challenge) = challenge else {
            return Err(self.denied("it answered 401 without a challenge this client understands".into()));
        };
        let credentials = self.credentials()?;
        let authorization = match challenge {
            Challenge::Basic => match &credentials {
                Some(credentials) => credentials.basic(),
                None => return Err(self.denied(self.no_credentials())),
            },
            Challenge::Bearer { realm, service, scope } => {
                let scope = scope.unwrap_or_else(|| match access {
                    Access::Pull => format!("repository:{repository}:pull"),
                    Access::Push => format!("repository:{repository}:pull,push"),
                });
                self.token(&realm, service.as_deref(), &scope, credentials.as_ref()).await?
            }
        };
        let mut second = headers;
        if let Ok(value) = authorization.parse() {
            second.insert(header::AUTHORIZATION, value);
        }
        let response = self.request(method, url, &second, body).await?;
        match response.status() {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(self.denied(match credentials {
                Some(c) => {
                    format!("the credentials for user {:?} from REGISTRY_AUTH_FILE were refused ({})", c.username, response.status())
                }
                None => self.no_credentials(),
            })),
            _ => {
                *self.authorization.lock().unwrap_or_else(|p| p.into_inner()) = Some(authorization);
                Ok(response)
            }
        }
    }

    /// A Bearer token for `scope` from the registry's token endpoint.
    async fn token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        credentials: Option<&Credentials>,
    ) -> Result<String, RegistryError> {
        let query = {
            let mut query = form_urlencoded::Serializer::new(String::new());
            if let Some(service) = service {
                query.append_pair("service", service);
            }
            query.append_pair("scope", scope).finish()
        };
        let separator = if realm.contains('?') { '&' } else { '?' };
        let url = format!("{realm}{separator}{query}");
        let mut headers = HeaderMap::new();
        if let Some(value) = credentials.and_then(|c| c.basic().parse().ok()) {
            headers.insert(header::AUTHORIZATION, value);
        }
        let response = self.request(Method::GET, &url, &headers, None).await?;
        if matches!(response.status(), StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            return Err(self.denied(match credentials {
                Some(c) => format!("the token service refused user {:?} from REGISTRY_AUTH_FILE ({})", c.username, response.status()),
                None => self.no_credentials(),
            }));
        }
        let response = self.expect_ok(response, "a token".into()).await?;
        let body = self.body(response, MAX_TOKEN_BYTES).await?;
        let json: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| self.invalid(format!("the token answer is not JSON: {e}")))?;
        let token = json.get("token").or_else(|| json.get("access_token")).and_then(|t| t.as_str());
        token.map(|t| format!("Bearer {t}")).ok_or_else(|| self.invalid("the token answer holds no token".into()))
    }

    /// The credentials REGISTRY_AUTH_FILE holds for this registry now (read again every time).
    fn credentials(&self) -> Result<Option<Credentials>, RegistryError> {
        let Some(path) = &self.auth_file else { return Ok(None) };
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            // An optional Secret that is not there (yet): anonymous until the file appears.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(self.denied(format!("REGISTRY_AUTH_FILE {} cannot be read: {error}", path.display()))),
        };
        let credentials = credentials_for(&bytes, &self.registry)
            .map_err(|e| self.denied(format!("REGISTRY_AUTH_FILE {} cannot be used: {e}", path.display())))?;
        if let Some(credentials) = &credentials {
            crate::telemetry::redact::remember_secret(&credentials.password);
        }
        Ok(credentials)
    }

    fn no_credentials(&self) -> String {
        match &self.auth_file {
            Some(path) => format!("it wants credentials and REGISTRY_AUTH_FILE {} has none for {}", path.display(), self.registry),
            None => "it wants credentials: set REGISTRY_AUTH_FILE (a Docker config.json)".to_owned(),
        }
    }

    /// One request on a new connection: bounded by [`REQUEST_TIMEOUT`] up to the response headers.
    async fn request(
        &self,
        method: Method,
        url: &str,
        headers: &HeaderMap,
        body: Option<Bytes>,
    ) -> Result<Response<Incoming>, RegistryError> {
        let uri: Uri = url.parse().map_err(|e| self.invalid(format!("{url:?} is not a URL: {e}")))?;
        let attempt = async {
            let tls = uri.scheme_str() == Some("https");
            let host = uri.host().ok_or_else(|| format!("{url:?} names no host"))?.to_owned();
            let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
            let tcp = TcpStream::connect((host.trim_start_matches('[').trim_end_matches(']'), port)).await.map_err(|e| e.to_string())?;
            let mut builder = Request::builder().method(method).uri(uri.path_and_query().map_or("/", |p| p.as_str()));
            for (name, value) in headers {
                builder = builder.header(name, value);
            }
            let authority = uri.authority().map_or(host.clone(), |a| a.to_string());
            let request = builder
                .header(header::HOST, authority)
                .header(header::USER_AGENT, concat!("stock-host/", env!("CARGO_PKG_VERSION")))
                .body(Full::new(body.unwrap_or_default()))
                .map_err(|e| e.to_string())?;
            if tls {
                let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| format!("{host}: {e}"))?;
                let stream = tls_connector().connect(name, tcp).await.map_err(|e| format!("TLS: {e}"))?;
                send_on(TokioIo::new(stream), request).await
            } else {
                send_on(TokioIo::new(tcp), request).await
            }
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, attempt).await {
            Ok(Ok(response)) if response.status().is_server_error() => {
                Err(RegistryError::Unreachable { registry: self.registry.clone(), reason: format!("it answered {}", response.status()) })
            }
            Ok(Ok(response)) => Ok(response),
            Ok(Err(reason)) => Err(RegistryError::Unreachable { registry: self.registry.clone(), reason }),
            Err(_) => {
                Err(RegistryError::Unreachable { registry: self.registry.clone(), reason: format!("no answer within {REQUEST_TIMEOUT:?}") })
            }
        }
    }

    /// The response if it is 200, else the error its status means.
    async fn expect_ok(&self, response: Response<Incoming>, what: String) -> Result<Response<Incoming>, RegistryError> {
        self.expect_status(response, StatusCode::OK, what).await
    }

    async fn expect_status(
        &self,
        response: Response<Incoming>,
        want: StatusCode,
        what: String,
    ) -> Result<Response<Incoming>, RegistryError> {
        let status = response.status();
        if status == want {
            return Ok(response);
        }
        if status == StatusCode::NOT_FOUND {
            return Err(RegistryError::NotFound { registry: self.registry.clone(), what });
        }
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            return Err(self.denied(format!("{status} for {what}")));
        }
        let said = self.body(response, 1024).await.map(|b| String::from_utf8_lossy(&b).trim().to_owned()).unwrap_or_default();
        Err(self.invalid(format!("{status} for {what}: {said}")))
    }

    /// The whole body, refused past `limit` bytes or [`BODY_TIMEOUT`].
    async fn body(&self, response: Response<Incoming>, limit: usize) -> Result<Bytes, RegistryError> {
        let declared = response.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|length| length > limit as u64) {
            return Err(self.invalid(format!("the answer is {} bytes, more than the {limit} allowed", declared.unwrap_or_default())));
        }
        match tokio::time::timeout(BODY_TIMEOUT, Limited::new(response.into_body(), limit).collect()).await {
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
            Ok(Err(error)) => {
                Err(RegistryError::Unreachable { registry: self.registry.clone(), reason: format!("reading the answer: {error}") })
            }
            Err(_) => Err(RegistryError::Unreachable {
                registry: self.registry.clone(),
                reason: format!("the answer took more than {BODY_TIMEOUT:?}"),
            }),
        }
    }

    fn denied(&self, reason: String) -> RegistryError {
        RegistryError::Denied { registry: self.registry.clone(), reason }
    }

    fn invalid(&self, reason: String) -> RegistryError {
        RegistryError::Invalid { registry: self.registry.clone(), reason }
    }
}

/// HTTP/1.1 on one connection: handshake, drive it in the background, send one request.
async fn send_on<T>(io: TokioIo<T>, request: Request<Full<Bytes>>) -> Result<Response<Incoming>, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender.send_request(request).await.map_err(|e| e.to_string())
}

/// TLS with the webpki roots (the image has no system certificate store), built once.
fn tls_connector() -> tokio_rustls::TlsConnector {
    static CONNECTOR: OnceLock<tokio_rustls::TlsConnector> = OnceLock::new();
    CONNECTOR
        .get_or_init(|| {
            let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.into() };
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map(|builder| builder.with_root_certificates(roots).with_no_client_auth())
                .unwrap_or_else(|_| {
                    rustls::ClientConfig::builder()
                        .with_root_certificates(rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.into() })
                        .with_no_client_auth()
                });
            tokio_rustls::TlsConnector::from(Arc::new(config))
        })
        .clone()
}
