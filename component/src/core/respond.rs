//! From (method, path) to a complete HTTP reply: status, headers and body. Errors become problems here.

use std::borrow::Cow;

use stock_shared::cache_status;
use stock_shared::problem::PROBLEM_JSON;

use super::config::Settings;
use super::env::Env;
use super::error::Error;
use super::render::problem_json;
use super::route::{Route, route};
use super::service::{CacheStatus, breaker_json, breaker_report, prices_body};

/// The OpenAPI 3.1 document of this API.
pub const OPENAPI_JSON: &str = include_str!("../../../docs/openapi.json");

/// A reply ready to be written by the HTTP adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Headers, names lower-case.
    pub headers: Vec<(&'static str, String)>,
    /// Body (dropped by the adapter for HEAD); the OpenAPI document is served from the build's bytes, not copied.
    pub body: Cow<'static, str>,
}

/// Answers one request; `settings` is an error when the configuration is unusable.
pub fn respond(env: &impl Env, settings: &Result<Settings, Error>, method: &str, path: &str) -> Reply {
    let instance = path.split('?').next().unwrap_or(path);
    match answer(env, settings, method, path) {
        Ok(reply) => reply,
        Err(error) => problem_reply(env, &error, instance),
    }
}

fn answer(env: &impl Env, settings: &Result<Settings, Error>, method: &str, path: &str) -> Result<Reply, Error> {
    let json = |body: Cow<'static, str>| Reply { status: 200, headers: vec![("content-type", "application/json".into())], body };
    match route(method, path)? {
        Route::Health => Ok(json(Cow::Borrowed(r#"{"status":"ok"}"#))),
        Route::Ready => Ok(json(Cow::Borrowed(r#"{"status":"ready"}"#))),
        Route::OpenApi => Ok(json(Cow::Borrowed(OPENAPI_JSON))),
        Route::CircuitBreaker => {
            let settings = settings.as_ref().map_err(Clone::clone)?;
            let mut reply = json(breaker_json(&breaker_report(env, settings)).into());
            reply.headers.push(("cache-control", "no-store".into()));
            Ok(reply)
        }
        Route::Prices { symbol, days } => {
            let settings = settings.as_ref().map_err(Clone::clone)?;
            let symbol = symbol.unwrap_or_else(|| settings.default_symbol.clone());
            let prices = prices_body(env, settings, &symbol, days.unwrap_or(settings.default_days))?;
            let ttl_secs = settings.cache_ttl_ms / 1000;
            let cache_control = match prices.cache {
                CacheStatus::Stale => "no-cache".to_owned(),
                _ => format!("public, max-age={}", ttl_secs.saturating_sub(prices.age_secs)),
            };
            let mut reply = json(prices.body.into());
            reply.headers.extend([
                (cache_status::HEADER, prices.cache.as_str().to_owned()),
                ("age", prices.age_secs.to_string()),
                ("cache-control", cache_control),
            ]);
            Ok(reply)
        }
    }
}

fn problem_reply(env: &impl Env, error: &Error, instance: &str) -> Reply {
    let problem = error.problem();
    if problem.status >= 500 {
        env.log(&format!("request failed path={instance} status={} problem={} detail={:?}", problem.status, problem.slug, problem.detail));
    }
    let mut headers = vec![("content-type", PROBLEM_JSON.to_owned()), ("cache-control", "no-store".to_owned())];
    if let Some(retry) = problem.retry_after_secs {
        headers.push(("retry-after", retry.to_string()));
    }
    if problem.status == 405 {
        headers.push(("allow", "GET, HEAD".to_owned()));
    }
    Reply { status: problem.status, headers, body: problem_json(&problem, instance).into() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::ConfigError;
    use crate::core::env::fake::FakeEnv;

    fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
        reply.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    fn settings() -> Result<Settings, Error> {
        let mut s = Settings::from_lookup(|_| None).expect("defaults");
        s.apikey = "k".into();
        s.upstream_url = "http://127.0.0.1:9/query".into();
        Ok(s)
    }

    #[test]
    fn prices_carry_cache_headers() {
        let env = FakeEnv::default();
        env.now.set(1_000_000);
        *env.default_answer.borrow_mut() = Some(FakeEnv::ok(r#"{"Time Series (Daily)": {"2026-11-20": {"4. close": "1.5"}}}"#));
        let reply = respond(&env, &settings(), "GET", "/msft/1");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, r#"{"symbol":"MSFT","ndays":1,"prices":[{"date":"2026-11-20","close":1.5}],"average":1.5}"#);
        assert_eq!(header(&reply, "x-cache"), Some("MISS"));
        assert_eq!(header(&reply, "age"), Some("0"));
        assert_eq!(header(&reply, "cache-control"), Some("public, max-age=300"));
        env.now.set(1_061_000);
        let again = respond(&env, &settings(), "GET", "/");
        assert_eq!((header(&again, "x-cache"), header(&again, "age")), (Some("HIT"), Some("61")));
        assert_eq!(header(&again, "cache-control"), Some("public, max-age=239"));
    }

    #[test]
    fn errors_are_problems_with_their_headers() {
        let env = FakeEnv::default();
        let post = respond(&env, &settings(), "POST", "/MSFT/7?x=1");
        assert_eq!((post.status, header(&post, "allow")), (405, Some("GET, HEAD")));
        assert_eq!(header(&post, "content-type"), Some("application/problem+json"));
        let doc: serde_json::Value = serde_json::from_str(&post.body).expect("json");
        assert_eq!(doc["instance"], "/MSFT/7");
        let bad = respond(&env, &settings(), "GET", "/MSFT/0");
        assert_eq!(bad.status, 400);
        let broken: Result<Settings, Error> = Err(Error::Config(ConfigError { key: "ndays", reason: "bad".into() }));
        let misconfigured = respond(&env, &broken, "GET", "/MSFT");
        assert_eq!((misconfigured.status, header(&misconfigured, "retry-after")), (503, Some("60")));
        assert!(misconfigured.body.contains("ndays"));
        assert_eq!(respond(&env, &broken, "GET", "/health").status, 200, "liveness does not depend on config");
    }

    #[test]
    fn openapi_document_describes_every_route_and_every_problem_type() {
        let env = FakeEnv::default();
        let reply = respond(&env, &settings(), "GET", "/openapi.json");
        let doc: serde_json::Value = serde_json::from_str(&reply.body).expect("json");
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().expect("paths");
        for path in ["/", "/{symbol}", "/{symbol}/{days}", "/health", "/ready", "/circuit-breaker", "/openapi.json"] {
            assert!(paths.contains_key(path), "openapi.json lacks {path}");
            assert!(route("GET", &path.replace("{symbol}", "MSFT").replace("{days}", "7")).is_ok(), "{path} is documented but not routed");
        }
        let config = crate::core::config::ConfigError { key: "ndays", reason: "x".into() };
        for error in [
            Error::InvalidSymbol("$".into()),
            Error::InvalidDays("0".into()),
            Error::InvalidPath,
            Error::MethodNotAllowed("POST".into()),
            Error::UnknownSymbol("X".into()),
            Error::BadUpstream("x".into()),
            Error::RateLimited { retry_after_secs: 1 },
            Error::UpstreamMisconfigured { retry_after_secs: 1 },
            Error::Config(config),
            Error::CircuitOpen { retry_after_secs: 1 },
            Error::QuotaExhausted { quota: 25, retry_after_secs: 1 },
            Error::UpstreamTimeout(1),
        ] {
            let slug = error.problem().slug;
            assert!(reply.body.contains(slug), "openapi.json never names problem type {slug}");
        }
    }
}
