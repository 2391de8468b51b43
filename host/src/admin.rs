//! The admin port's component endpoints: `GET /admin/component` (running build, canary, previous,
//! history), `PUT /admin/component[?canary=P]` (upload a build, or start it as a canary taking P % of
//! new requests; body = the component's bytes), `POST /admin/promote` and `POST /admin/rollback`.
//! Writes need `Authorization: Bearer <token>` (ADMIN_TOKEN or ADMIN_TOKEN_FILE, compared in constant
//! time); with neither configured they answer 403 and say why.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use subtle::ConstantTimeEq;

use crate::App;
use crate::body::{HostBody, full};
use crate::error::HostError;
use crate::swap::{self, Source, SwapRecord, SwapResult};

/// Largest component accepted by `PUT /admin/component` (a ConfigMap holds at most 1 MiB; ours is ~350 KB).
pub const MAX_COMPONENT_BYTES: usize = 32 * 1024 * 1024;

/// Where the admin token comes from; read per request so a rotated token file applies at once.
#[derive(Debug, Clone, Default)]
pub struct AdminAuth {
    /// ADMIN_TOKEN.
    pub token: Option<String>,
    /// ADMIN_TOKEN_FILE.
    pub token_file: Option<PathBuf>,
}

impl AdminAuth {
    fn expected(&self) -> Option<String> {
        if let Some(token) = self.token.as_ref().filter(|t| !t.is_empty()) {
            return Some(token.clone());
        }
        let path = self.token_file.as_ref()?;
        match std::fs::read_to_string(path) {
            Ok(text) => Some(text.trim().to_owned()).filter(|t| !t.is_empty()),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot read ADMIN_TOKEN_FILE; admin writes refused");
                None
            }
        }
    }

    /// Whether `request` may change the running build.
    pub fn check<B>(&self, request: &Request<B>) -> Result<(), HostError> {
        let expected = self.expected().ok_or(HostError::AdminDisabled)?;
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(HostError::Unauthorized)?;
        if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) { Ok(()) } else { Err(HostError::Unauthorized) }
    }
}

/// Routes `/admin/*`; `None` when the path is not one of these.
pub async fn route(app: &Arc<App>, request: Request<Incoming>) -> Option<Result<Response<HostBody>, HostError>> {
    let answer = match (request.method().clone(), request.uri().path()) {
        (http::Method::GET, "/admin/component") => Ok(describe(app)),
        (http::Method::PUT, "/admin/component") => upload(app, request).await,
        (http::Method::POST, "/admin/rollback") => roll_back(app, request).await,
        (http::Method::POST, "/admin/promote") => promote(app, request).await,
        _ => return None,
    };
    Some(answer)
}

fn describe(app: &Arc<App>) -> Response<HostBody> {
    let running = app.component();
    let (source, since) = app.swaps.running_source();
    let canary = app.canary.load_full().map(|c| {
        serde_json::json!({
            "version": c.build.version,
            "digest": c.build.digest,
            "percent": c.percent,
            "since": c.since_unix,
            "stable_stats": c.stable.snapshot(),
            "canary_stats": c.candidate.snapshot(),
        })
    });
    let doc = serde_json::json!({
        "running": {"version": running.version, "digest": running.digest, "source": source, "since": since},
        "canary": canary,
        "previous": app.swaps.previous().map(|p| p.version.clone()),
        "history": app.swaps.history(),
    });
    json(StatusCode::OK, doc.to_string())
}

async fn upload(app: &Arc<App>, request: Request<Incoming>) -> Result<Response<HostBody>, HostError> {
    app.admin_auth.check(&request)?;
    let noticed = Instant::now();
    let query = request.uri().query().map(str::to_owned);
    canary_percent(query.as_deref())?;
    let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_COMPONENT_BYTES) {
        return Err(HostError::TooLarge(MAX_COMPONENT_BYTES));
    }
    let body: Bytes = Limited::new(request.into_body(), MAX_COMPONENT_BYTES)
        .collect()
        .await
        .map_err(|_| HostError::TooLarge(MAX_COMPONENT_BYTES))?
        .to_bytes();
    match canary_percent(query.as_deref())? {
        Some(percent) => outcome(swap::start_canary(app, body, swap::Source::Admin, percent, noticed).await),
        None => outcome(swap::swap_bytes(app, body, Source::Admin, noticed).await),
    }
}

/// `canary=P` from the query: 1..=99, or `None` without it.
fn canary_percent(query: Option<&str>) -> Result<Option<u8>, HostError> {
    // Any spelling of the key counts, so a typo never turns a canary into a full swap.
    let pairs = query.into_iter().flat_map(|q| q.split('&'));
    let Some(value) =
        pairs.map(|pair| pair.split_once('=').unwrap_or((pair, ""))).find(|(key, _)| key.eq_ignore_ascii_case("canary")).map(|(_, v)| v)
    else {
        return Ok(None);
    };
    value
        .parse::<u8>()
        .ok()
        .filter(|p| (1..=99).contains(p))
        .map(Some)
        .ok_or_else(|| HostError::BadRequest(format!("canary={value:?}: the share must be a whole percent from 1 to 99")))
}

async fn promote(app: &Arc<App>, request: Request<Incoming>) -> Result<Response<HostBody>, HostError> {
    app.admin_auth.check(&request)?;
    let record = swap::promote(app, Source::Promote).await.ok_or_else(|| HostError::Conflict("there is no canary to promote".into()))?;
    outcome(record)
}

async fn roll_back(app: &Arc<App>, request: Request<Incoming>) -> Result<Response<HostBody>, HostError> {
    app.admin_auth.check(&request)?;
    let record = swap::rollback(app).await.ok_or_else(|| HostError::Conflict("there is no previous build to roll back to".into()))?;
    outcome(record)
}

fn outcome(record: SwapRecord) -> Result<Response<HostBody>, HostError> {
    match record.result {
        SwapResult::Ok | SwapResult::Unchanged | SwapResult::Canary | SwapResult::Rollback | SwapResult::AutoRollback => {
            Ok(json(StatusCode::OK, serde_json::to_string(&record).unwrap_or_default()))
        }
        SwapResult::Rejected => Err(HostError::BuildRejected(format!(
            "{} failed: {}; the running build keeps serving",
            record.step.unwrap_or("a check"),
            record.reason.unwrap_or_default()
        ))),
        SwapResult::Superseded => Err(HostError::Conflict("a newer change arrived before this one was checked; it was skipped".into())),
    }
}

fn json(status: StatusCode, body: String) -> Response<HostBody> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
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
    fn writes_need_the_configured_bearer_token() {
        let auth = AdminAuth { token: Some("s3cret".into()), token_file: None };
        assert!(auth.check(&request(Some("Bearer s3cret"))).is_ok());
        for wrong in [None, Some("Bearer nope"), Some("s3cret"), Some("Bearer s3cret "), Some("Basic s3cret")] {
            assert!(matches!(auth.check(&request(wrong)), Err(HostError::Unauthorized)), "{wrong:?}");
        }
    }

    #[test]
    fn without_a_token_writes_are_disabled_and_say_so() {
        let auth = AdminAuth::default();
        assert!(matches!(auth.check(&request(Some("Bearer anything"))), Err(HostError::AdminDisabled)));
        let empty = AdminAuth { token: Some(String::new()), token_file: None };
        assert!(matches!(empty.check(&request(Some("Bearer "))), Err(HostError::AdminDisabled)), "an empty token is no token");
    }

    #[test]
    fn canary_shares_are_whole_percents_and_a_misspelt_key_is_not_a_full_swap() {
        for (query, want) in
            [(None, Ok(None)), (Some("canary=30"), Ok(Some(30))), (Some("x=1&Canary=5"), Ok(Some(5))), (Some("other=1"), Ok(None))]
        {
            assert_eq!(canary_percent(query).map_err(|e| e.to_string()), want.map_err(|e: String| e), "{query:?}");
        }
        for bad in ["canary", "canary=", "canary=0", "canary=100", "CANARY=abc"] {
            assert!(canary_percent(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_token_file_is_read_per_request() {
        let path = std::env::temp_dir().join(format!("stock-admin-token-{}", std::process::id()));
        std::fs::write(&path, "first\n").expect("write");
        let auth = AdminAuth { token: None, token_file: Some(path.clone()) };
        assert!(auth.check(&request(Some("Bearer first"))).is_ok());
        std::fs::write(&path, "second").expect("rotate");
        assert!(auth.check(&request(Some("Bearer first"))).is_err());
        assert!(auth.check(&request(Some("Bearer second"))).is_ok());
        let _ = std::fs::remove_file(path);
    }
}
