//! Scrubbing the API key from text that is about to be logged or answered.

/// Text that replaces a secret.
pub const REDACTED: &str = "REDACTED";

/// Replaces the value of every `apikey=` parameter in `text` (a URL or a log line).
pub fn query_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("apikey=") {
        let start = at + "apikey=".len();
        out.push_str(&rest[..start]);
        out.push_str(REDACTED);
        let end = rest[start..].find(|c: char| c == '&' || c.is_whitespace() || c == '"').map_or(rest.len(), |i| start + i);
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_apikey_value_is_replaced_and_nothing_else() {
        for (input, want) in [
            ("GET /query?function=X&apikey=s3cret&symbol=MSFT", "GET /query?function=X&apikey=REDACTED&symbol=MSFT"),
            ("url=h/q?apikey=abc", "url=h/q?apikey=REDACTED"),
            ("a apikey=one b apikey=two", "a apikey=REDACTED b apikey=REDACTED"),
            (r#"{"u":"q?apikey=k"}"#, r#"{"u":"q?apikey=REDACTED"}"#),
            ("no secret here", "no secret here"),
            ("apikey=", "apikey=REDACTED"),
        ] {
            assert_eq!(query_secrets(input), want, "{input}");
        }
    }
}
