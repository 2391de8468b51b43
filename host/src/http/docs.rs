//! `GET /docs`: Scalar's interactive reference for `/openapi.json`, every asset served by the service
//! itself (the bundle is embedded at build time, pinned and checksummed by `make docs-assets`), with
//! everything that would send the document off the machine configured away (see docs/api-docs.md).

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::body::{HostBody, full};

/// The page.
const PAGE: &str = include_str!("docs.html");
/// Scalar's standalone bundle (Scalar 1.44.15, from the PyPI wheel flask-openapi3-scalar 1.44.15).
const SCALAR_JS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/scalar.standalone.js"));
/// Path of the bundle, referenced by the page.
pub const SCALAR_PATH: &str = "/docs/scalar.standalone.js";

/// The answer for a host-served docs path, or `None` when `path` is not one.
pub fn serve(path: &str) -> Option<Response<HostBody>> {
    let (body, content_type, cache) = match path.trim_end_matches('/') {
        "/docs" => (Bytes::from_static(PAGE.as_bytes()), "text/html; charset=utf-8", "no-cache"),
        SCALAR_PATH => (Bytes::from_static(SCALAR_JS), "text/javascript; charset=utf-8", "public, max-age=86400"),
        _ => return None,
    };
    let mut response = Response::new(full(body));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    // The page may load only what this service serves.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'",
        ),
    );
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_same_origin_assets() {
        assert!(PAGE.contains(SCALAR_PATH) && PAGE.contains("/openapi.json"));
        for outside in ["http://", "https://", "cdn.", "//fonts"] {
            assert!(!PAGE.contains(outside), "the page references {outside}");
        }
        assert!(SCALAR_JS.len() > 1_000_000, "the real bundle is embedded");
        assert!(serve("/docs").is_some() && serve(SCALAR_PATH).is_some() && serve("/docs/other").is_none());
    }
}
