//! Reserved paths: matched before `/{symbol}`, so no symbol can shadow them.

/// Liveness (answered by the host itself; the component answers it too under `wasmtime serve`).
pub const HEALTH: &str = "health";
/// Readiness: a component is loaded and answers; never calls upstream.
pub const READY: &str = "ready";
/// The breaker state as JSON.
pub const CIRCUIT_BREAKER: &str = "circuit-breaker";
/// The OpenAPI document.
pub const OPENAPI: &str = "openapi.json";
/// Interactive API docs: the host serves the Scalar page here (reserved, so no symbol takes it).
pub const DOCS: &str = "docs";

/// Metrics live on the admin port; reserved so a stray scrape of the traffic port costs no upstream call.
pub const METRICS: &str = "metrics";
/// Browsers ask for it on their own.
pub const FAVICON: &str = "favicon.ico";
/// Crawlers ask for it on their own.
pub const ROBOTS: &str = "robots.txt";
/// Prefix of RFC 8615 well-known URIs (`/.well-known/...`).
pub const WELL_KNOWN: &str = ".well-known";

/// Every reserved path segment.
pub const RESERVED: [&str; 9] = [HEALTH, READY, CIRCUIT_BREAKER, OPENAPI, DOCS, METRICS, FAVICON, ROBOTS, WELL_KNOWN];

/// The reserved segment `path` names (leading and trailing `/` ignored, query ignored), if any.
pub fn reserved(path: &str) -> Option<&'static str> {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    if trimmed == WELL_KNOWN || trimmed.starts_with(".well-known/") {
        return Some(WELL_KNOWN);
    }
    // The docs page's own assets live under it (`/docs/scalar.standalone.js`).
    if trimmed.starts_with("docs/") {
        return Some(DOCS);
    }
    RESERVED.into_iter().find(|name| *name == trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_paths_are_found_with_or_without_slashes_and_queries() {
        for (path, want) in [
            ("/health", Some(HEALTH)),
            ("/ready/", Some(READY)),
            ("circuit-breaker", Some(CIRCUIT_BREAKER)),
            ("/openapi.json?x=1", Some(OPENAPI)),
            ("/docs", Some(DOCS)),
            ("/docs/scalar.standalone.js", Some(DOCS)),
            ("/metrics", Some(METRICS)),
            ("/favicon.ico", Some(FAVICON)),
            ("/robots.txt", Some(ROBOTS)),
            ("/.well-known/security.txt", Some(WELL_KNOWN)),
            ("/.well-known", Some(WELL_KNOWN)),
            ("/", None),
            ("/MSFT", None),
            ("/health/x", None),
            ("/HEALTH", None),
        ] {
            assert_eq!(reserved(path), want, "{path}");
        }
    }
}
