//! The admin port: `/metrics`, `GET /admin/component` (the builds in their roles, where each came
//! from, the history), `PUT /admin/component[?canary=P]` (upload a build, or start it as a canary
//! taking P % of new requests), `POST /admin/promote[?version=V]` and `POST /admin/rollback[?version=V]`.
//! Writes need `Authorization: Bearer <token>` (ADMIN_TOKEN or ADMIN_TOKEN_FILE, compared in constant
//! time; the scheme's case does not matter). Queries are decoded (percent-encoding included) and any
//! parameter that is not exactly understood is refused, so a typo never turns a canary into a swap.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use subtle::ConstantTimeEq;
use tokio::task::JoinHandle;

use super::{Lane, REQUEST_ID_HEADER, Server, json_response};
use crate::body::{HostBody, full};
use crate::builds::{Expect, MAX_COMPONENT_BYTES, Mode, Source, SwapRecord, SwapResult};
use crate::config::listen::ListenOptions;
use crate::config::secret_file::read_secret_file;
use crate::error::HostError;
use crate::sources::upload::{UploadError, receive};

/// How often ADMIN_TOKEN_FILE is read again (a rotated Secret applies within this).
const TOKEN_FILE_POLL: Duration = Duration::from_secs(1);

/// What admin writes are checked against right now.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// Neither ADMIN_TOKEN nor ADMIN_TOKEN_FILE: writes are off.
    Off,
    /// The token.
    Is(String),
    /// ADMIN_TOKEN_FILE is set but has not been read (yet), or cannot be: why.
    Unreadable(String),
}

/// Where the admin token comes from. The file is read by [`TokenWatcher`] off the async threads, so a
/// FIFO or a hung network filesystem there can never stall a request; requests only read the cache.
#[derive(Debug, Clone)]
pub struct AdminAuth {
    token: Arc<RwLock<Token>>,
}

impl AdminAuth {
    /// The token source ADMIN_TOKEN / ADMIN_TOKEN_FILE describe, and the watcher that keeps a file's
    /// token current.
    pub fn start(listen: &ListenOptions) -> anyhow::Result<(Self, Option<TokenWatcher>)> {
        // Both set is refused before this (`SettingsError`); the inline token would win.
        match (listen.inline_admin_token(), listen.admin_token_file.clone()) {
            (Some(token), _) => Ok((Self::fixed(Token::Is(token.to_owned())), None)),
            (None, None) => Ok((Self::fixed(Token::Off), None)),
            (None, Some(path)) => {
                let auth = Self::fixed(Token::Unreadable(format!("ADMIN_TOKEN_FILE {} has not been read yet", path.display())));
                let watcher = TokenWatcher::spawn(path, auth.token.clone());
                Ok((auth, Some(watcher)))
            }
        }
    }

    fn fixed(token: Token) -> Self {
        Self { token: Arc::new(RwLock::new(token)) }
    }

    /// Whether `request` may change the builds.
    pub fn check<B>(&self, request: &Request<B>) -> Result<(), HostError> {
        let expected = match &*self.token.read().unwrap_or_else(|p| p.into_inner()) {
            Token::Off => return Err(HostError::AdminDisabled("set ADMIN_TOKEN or ADMIN_TOKEN_FILE to enable them".into())),
            Token::Unreadable(why) => return Err(HostError::AdminDisabled(why.clone())),
            Token::Is(token) => token.clone(),
        };
        let given =
            request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer).ok_or(HostError::Unauthorized)?;
        if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) { Ok(()) } else { Err(HostError::Unauthorized) }
    }
}

/// The token of a `Bearer` credential; the scheme is case-insensitive (RFC 9110 §11.1).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim_start_matches(' '))
}

/// Reads ADMIN_TOKEN_FILE every [`TOKEN_FILE_POLL`] on a blocking thread, one read at a time, and
/// keeps the cached token current; says so in the log when the file cannot be read. Stops when dropped.
pub struct TokenWatcher(JoinHandle<()>);

impl TokenWatcher {
    fn spawn(path: PathBuf, token: Arc<RwLock<Token>>) -> Self {
        Self(tokio::spawn(async move {
            let mut tick = tokio::time::interval(TOKEN_FILE_POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let read = tokio::task::spawn_blocking({
                    let path = path.clone();
                    move || read_secret_file(&path)
                });
                let now = match read.await {
                    Ok(Ok(Some(text))) => Token::Is(text),
                    Ok(Ok(None)) => Token::Unreadable(format!("ADMIN_TOKEN_FILE {} is empty", path.display())),
                    Ok(Err(error)) => Token::Unreadable(format!("ADMIN_TOKEN_FILE {} cannot be read: {error}", path.display())),
                    Err(error) => Token::Unreadable(format!("ADMIN_TOKEN_FILE {} reader failed: {error}", path.display())),
                };
                let mut current = token.write().unwrap_or_else(|p| p.into_inner());
                if *current != now {
                    match &now {
                        Token::Unreadable(why) => {
                            tracing::warn!(reason = %why, "admin writes are refused until ADMIN_TOKEN_FILE can be read")
                        }
                        Token::Is(_) => tracing::info!(path = %path.display(), "admin token read from ADMIN_TOKEN_FILE"),
                        Token::Off => {}
                    }
                    *current = now;
                }
            }
        }))
    }
}

impl Drop for TokenWatcher {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The admin port's OpenAPI document, served at its `/openapi.json` (and rendered by its `/docs`).
pub const ADMIN_OPENAPI_JSON: &str = include_str!("../../../docs/openapi-admin.json");

/// Answers one request on the admin port. On a reserved connection (the port was full) only the
/// light requests an operator needs are served.
pub(super) async fn request(server: Arc<Server>, request: Request<Incoming>, lane: Lane) -> Response<HostBody> {
    let req_id = server.request_id(request.headers().get(REQUEST_ID_HEADER));
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let light = matches!(
        (&method, path.as_str()),
        (&Method::GET, "/metrics" | "/admin/component") | (&Method::POST, "/admin/rollback" | "/admin/promote")
    );
    let answer = match (&method, path.as_str()) {
        _ if lane == Lane::Reserve && !light => Err(HostError::TooManyConnections),
        (&Method::GET, "/metrics") => Ok(metrics(&server).await),
        (&Method::GET, "/admin/component") => {
            let mut described = server.builds.describe();
            described["registry"] = server.registry.as_ref().map_or(serde_json::Value::Null, |r| serde_json::json!(r.view()));
            Ok(json_response(StatusCode::OK, full(described.to_string())))
        }
        (&Method::PUT, "/admin/component") => upload(&server, request).await,
        (&Method::POST, "/admin/rollback") => roll_back(&server, &request),
        (&Method::POST, "/admin/promote") => promote(&server, &request),
        (&Method::GET, "/openapi.json") => Ok(json_response(StatusCode::OK, full(ADMIN_OPENAPI_JSON))),
        (&Method::GET, _) => super::docs::serve(&path).ok_or(HostError::NotFound),
        _ => Err(HostError::NotFound),
    };
    answer.unwrap_or_else(|error| error.into_response(&path, &req_id))
}

/// `/metrics`, after asking the stable build for its breaker and quota (bounded by REQUEST_TIMEOUT).
async fn metrics(server: &Server) -> Response<HostBody> {
    let stable = server.builds.stable();
    match server.runtime.report(&stable.build).await {
        Ok(report) => report.apply_to(&server.metrics),
        Err(error) => {
            tracing::warn!(version = %stable.origin.version, error = %format!("{error:#}"), "the running build did not report its status")
        }
    }
    let mut response = Response::new(full(server.metrics.render()));
    response.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}

async fn upload(server: &Server, request: Request<Incoming>) -> Result<Response<HostBody>, HostError> {
    server.admin.check(&request)?;
    let noticed = Instant::now();
    let mode = match params(request.uri().query(), &["canary"])?.into_iter().next() {
        None => Mode::Swap,
        Some((_, value)) => Mode::Canary(canary_percent(&value)?),
    };
    let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let receiving = server.uploads.try_acquire().map_err(|_| HostError::UploadBusy)?;
    let candidate = receive(request.into_body(), declared, mode, noticed).await.map_err(|error| match error {
        UploadError::TooLarge => HostError::TooLarge(MAX_COMPONENT_BYTES),
        other => HostError::BadRequest(other.to_string()),
    })?;
    drop(receiving);
    // Checked to the end even if the client hangs up meanwhile: the record and the log say how it went.
    let builds = server.builds.clone();
    let record = tokio::spawn(async move { builds.submit(candidate).await })
        .await
        .map_err(|e| HostError::Internal(format!("the candidate's check failed: {e}")))?;
    outcome(record)
}

fn promote(server: &Server, request: &Request<Incoming>) -> Result<Response<HostBody>, HostError> {
    server.admin.check(request)?;
    let named = params(request.uri().query(), &["version"])?.into_iter().next().map(|(_, v)| v);
    let expect = named.as_deref().map_or(Expect::Current, Expect::Version);
    let record = server.builds.promote(expect, Source::Promote).map_err(|refused| HostError::Conflict(refused.to_string()))?;
    outcome(record)
}

fn roll_back(server: &Server, request: &Request<Incoming>) -> Result<Response<HostBody>, HostError> {
    server.admin.check(request)?;
    let named = params(request.uri().query(), &["version"])?.into_iter().next().map(|(_, v)| v);
    let record = server.builds.rollback(named.as_deref()).map_err(|refused| HostError::Conflict(refused.to_string()))?;
    outcome(record)
}

/// The query's parameters, percent-decoded; refused when a name is not one of `allowed` (exactly, case
/// included) or appears twice.
fn params(query: Option<&str>, allowed: &[&str]) -> Result<Vec<(String, String)>, HostError> {
    let mut seen: Vec<(String, String)> = Vec::new();
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if !allowed.contains(&name.as_ref()) {
            let accepted = if allowed.is_empty() { "none".to_owned() } else { allowed.join(", ") };
            return Err(HostError::BadRequest(format!("unknown query parameter {name:?} (accepted: {accepted}); nothing was changed")));
        }
        if seen.iter().any(|(n, _)| *n == name) {
            return Err(HostError::BadRequest(format!("query parameter {name:?} given twice; nothing was changed")));
        }
        seen.push((name.into_owned(), value.into_owned()));
    }
    Ok(seen)
}

/// `canary=P`: a whole percent from 1 to 99.
fn canary_percent(value: &str) -> Result<u8, HostError> {
    value.parse::<u8>().ok().filter(|p| (1..=99).contains(p)).ok_or_else(|| {
        HostError::BadRequest(format!("canary={value:?}: the share must be a whole percent from 1 to 99; nothing was changed"))
    })
}

fn outcome(record: SwapRecord) -> Result<Response<HostBody>, HostError> {
    match record.result {
        SwapResult::Ok | SwapResult::Unchanged | SwapResult::Canary | SwapResult::Rollback | SwapResult::AutoRollback => {
            Ok(json_response(StatusCode::OK, full(serde_json::to_string(&record).unwrap_or_default())))
        }
        SwapResult::Rejected => Err(HostError::BuildRejected(format!(
            "{} failed: {}; the running build keeps serving",
            record.step.unwrap_or("a check"),
            record.reason.unwrap_or_default()
        ))),
        SwapResult::Superseded => Err(HostError::Conflict("a newer change arrived before this one was checked; it was skipped".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(authorization: Option<&str>) -> Request<()> {
        let mut builder = Request::put("/admin/component");
        if let Some(value) = authorization {
            builder = builder.header(header::AUTHORIZATION, value);
        }
        builder.body(()).expect("request")
    }

    #[test]
    fn writes_need_the_configured_bearer_token_whatever_the_scheme_case() {
        let auth = AdminAuth::fixed(Token::Is("s3cret".into()));
        for right in ["Bearer s3cret", "bearer s3cret", "BEARER s3cret", "Bearer  s3cret"] {
            assert!(auth.check(&request(Some(right))).is_ok(), "{right}");
        }
        for wrong in [None, Some("Bearer nope"), Some("s3cret"), Some("Bearer s3cret "), Some("Basic s3cret"), Some("Bearers3cret")] {
            assert!(matches!(auth.check(&request(wrong)), Err(HostError::Unauthorized)), "{wrong:?}");
        }
    }

    #[test]
    fn without_a_token_writes_are_disabled_and_say_why() {
        let off = AdminAuth::fixed(Token::Off);
        assert!(matches!(off.check(&request(Some("Bearer anything"))), Err(HostError::AdminDisabled(why)) if why.contains("ADMIN_TOKEN")));
        let unreadable = AdminAuth::fixed(Token::Unreadable("ADMIN_TOKEN_FILE /x cannot be read: gone".into()));
        assert!(
            matches!(unreadable.check(&request(Some("Bearer x"))), Err(HostError::AdminDisabled(why)) if why.contains("/x cannot be read"))
        );
    }

    #[test]
    fn a_misspelt_or_encoded_key_is_refused_and_never_becomes_a_full_swap() {
        let canary = |query: &str| params(Some(query), &["canary"]).map(|p| p.into_iter().map(|(_, v)| v).next());
        assert_eq!(canary("canary=30").ok(), Some(Some("30".into())));
        assert_eq!(canary("ca%6Eary=10").ok(), Some(Some("10".into())), "a percent-encoded name is decoded, not guessed at");
        assert_eq!(canary("").ok(), Some(None));
        for refused in ["canary%3D10", "Canary=10", "canary=1&canary=2", "x=1&canary=5", "canary=5&dry-run"] {
            assert!(canary(refused).is_err(), "{refused} must be refused");
        }
    }

    #[test]
    fn canary_shares_are_whole_percents() {
        assert_eq!(canary_percent("30").ok(), Some(30));
        for bad in ["", "0", "100", "abc", "5.5", "-1"] {
            assert!(canary_percent(bad).is_err(), "{bad}");
        }
    }
}
