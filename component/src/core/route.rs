//! Request routing: reserved paths first, then `/`, `/{symbol}`, `/{symbol}/{days}`.

use stock_shared::routes;

use super::error::Error;
use super::model::{Symbol, parse_days};

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Liveness of the component itself (the host answers its own `/health` first).
    Health,
    /// Readiness: the component is loaded and answers; never calls upstream.
    Ready,
    /// Breaker state as JSON.
    CircuitBreaker,
    /// The OpenAPI document.
    OpenApi,
    /// Closing prices; `None` means "use the configured default".
    Prices {
        /// Requested symbol.
        symbol: Option<Symbol>,
        /// Requested days.
        days: Option<u32>,
    },
}

/// Routes `method` and `path_with_query`; only GET and HEAD exist.
pub fn route(method: &str, path_with_query: &str) -> Result<Route, Error> {
    if method != "GET" && method != "HEAD" {
        return Err(Error::MethodNotAllowed(method.chars().take(16).collect()));
    }
    match routes::reserved(path_with_query) {
        Some(routes::HEALTH) => return Ok(Route::Health),
        Some(routes::READY) => return Ok(Route::Ready),
        Some(routes::CIRCUIT_BREAKER) => return Ok(Route::CircuitBreaker),
        Some(routes::OPENAPI) => return Ok(Route::OpenApi),
        Some(routes::METRICS) => return Err(Error::NotFound("/metrics (metrics are served on the admin port, 9090 by default)".into())),
        Some(elsewhere) => return Err(Error::NotFound(format!("/{elsewhere}"))),
        None => {}
    }
    let path = path_with_query.split(['?', '#']).next().unwrap_or("");
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    let mut segments = trimmed.split('/');
    let (symbol, days) = (segments.next().filter(|s| !s.is_empty()), segments.next());
    if segments.next().is_some() {
        return Err(Error::InvalidPath);
    }
    let symbol = symbol.map(|s| Symbol::parse(s).ok_or_else(|| Error::InvalidSymbol(s.chars().take(32).collect()))).transpose()?;
    let days = days.map(|d| parse_days(d).ok_or_else(|| Error::InvalidDays(d.chars().take(32).collect()))).transpose()?;
    if symbol.is_none() && days.is_some() {
        return Err(Error::InvalidPath);
    }
    Ok(Route::Prices { symbol, days })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prices(symbol: Option<&str>, days: Option<u32>) -> Result<Route, Error> {
        Ok(Route::Prices { symbol: symbol.map(|s| Symbol::parse(s).expect("valid")), days })
    }

    #[test]
    fn routes_and_errors() {
        for (method, path, want) in [
            ("GET", "/", prices(None, None)),
            ("GET", "", prices(None, None)),
            ("GET", "/msft", prices(Some("MSFT"), None)),
            ("GET", "/msft/", prices(Some("MSFT"), None)),
            ("HEAD", "/MSFT/7", prices(Some("MSFT"), Some(7))),
            ("GET", "/BRK.B/100?x=1", prices(Some("BRK.B"), Some(100))),
            ("GET", "/health", Ok(Route::Health)),
            ("GET", "/ready", Ok(Route::Ready)),
            ("GET", "/circuit-breaker", Ok(Route::CircuitBreaker)),
            ("GET", "/openapi.json", Ok(Route::OpenApi)),
            ("GET", "/docs", Err(Error::NotFound("/docs".into()))),
            ("GET", "/robots.txt", Err(Error::NotFound("/robots.txt".into()))),
            ("GET", "/favicon.ico", Err(Error::NotFound("/favicon.ico".into()))),
            ("GET", "/.well-known/security.txt", Err(Error::NotFound("/.well-known".into()))),
            ("GET", "/MSFT/0", Err(Error::InvalidDays("0".into()))),
            ("GET", "/MSFT/101", Err(Error::InvalidDays("101".into()))),
            ("GET", "/MSFT/abc", Err(Error::InvalidDays("abc".into()))),
            ("GET", "/MSFT/", prices(Some("MSFT"), None)),
            ("GET", "/MSFT//", Err(Error::InvalidDays("".into()))),
            ("GET", "/TOOLONGSYMBOL/7", Err(Error::InvalidSymbol("TOOLONGSYMBOL".into()))),
            ("GET", "/MS$FT", Err(Error::InvalidSymbol("MS$FT".into()))),
            ("GET", "/MSFT/7/extra", Err(Error::InvalidPath)),
            ("GET", "//7", Err(Error::InvalidPath)),
            ("POST", "/MSFT/7", Err(Error::MethodNotAllowed("POST".into()))),
            ("DELETE", "/health", Err(Error::MethodNotAllowed("DELETE".into()))),
        ] {
            assert_eq!(route(method, path), want, "{method} {path}");
        }
    }
}
