//! The upstream's address: one parser for the configured `ALPHAVANTAGE_URL` and for every outgoing
//! request the egress policy checks, so the allowlist cannot disagree with itself.

/// `host:port` (host lower-case, port explicit) of an absolute http(s) URI.
pub fn authority_of(uri: &http::Uri) -> Option<String> {
    let default_port = match uri.scheme_str()? {
        "https" => 443,
        "http" => 80,
        _ => return None,
    };
    let authority = uri.authority()?;
    if authority.as_str().contains('@') || authority.host().is_empty() {
        return None;
    }
    let port = authority.port_u16().unwrap_or(default_port);
    Some(format!("{}:{port}", authority.host().to_ascii_lowercase()))
}

/// [`authority_of`] a URL given as text (`ALPHAVANTAGE_URL`).
pub fn authority_of_url(url: &str) -> Option<String> {
    authority_of(&url.parse::<http::Uri>().ok()?)
}

/// Checks `ALPHAVANTAGE_URL`: the host must be able to name the one authority the component may call.
pub fn parse_upstream_url(text: &str) -> Result<String, String> {
    authority_of_url(text)
        .map(|_| text.to_owned())
        .ok_or_else(|| "must be an http:// or https:// URL with a host, e.g. https://www.alphavantage.co/query".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_have_a_lower_case_host_and_an_explicit_port() {
        for (url, want) in [
            ("https://www.AlphaVantage.co/query", Some("www.alphavantage.co:443")),
            ("http://127.0.0.1:8081/query", Some("127.0.0.1:8081")),
            ("http://user@host/query", None),
            ("ftp://host/x", None),
            ("not a url", None),
        ] {
            assert_eq!(authority_of_url(url).as_deref(), want, "{url}");
        }
    }
}
