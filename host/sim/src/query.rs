//! URL query strings: decoding `a=b&c=d` into parameters, and redacting the API key before a URL is logged.

/// Decoded query parameters, in the order given. Lookups return the first occurrence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

/// The parameter that carries the secret key; its value is never logged.
const APIKEY: &str = "apikey";

/// What the key's value is replaced with in logs.
const REDACTED: &str = "REDACTED";

impl Params {
    /// Parses a raw query string (without the leading `?`). Malformed escapes are kept literally.
    pub fn parse(query: &str) -> Self {
        let pairs = query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                (decode(name), decode(value))
            })
            .collect();
        Self { pairs }
    }

    /// The first value of `name`, if present (possibly empty).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Percent-decodes a query component, turning `+` into a space. Invalid escapes stay as they are; invalid UTF-8 is
/// replaced, which is fine for parameters that must be ASCII anyway.
fn decode(component: &str) -> String {
    let bytes = component.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The path and query of a request for logging, with every `apikey` value (name matched after decoding, ignoring
/// case) replaced by `REDACTED`.
pub fn redacted_target(path: &str, query: Option<&str>) -> String {
    let Some(query) = query else {
        return path.to_owned();
    };
    let redacted: Vec<String> = query
        .split('&')
        .map(|pair| {
            let name = pair.split_once('=').map_or(pair, |(name, _)| name);
            if decode(name).eq_ignore_ascii_case(APIKEY) { format!("{APIKEY}={REDACTED}") } else { pair.to_owned() }
        })
        .collect();
    format!("{path}?{}", redacted.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_decodes_parameters() {
        for (query, name, want) in [
            ("function=TIME_SERIES_DAILY&symbol=MSFT", "symbol", Some("MSFT")),
            ("symbol=BRK%2EB", "symbol", Some("BRK.B")),
            ("symbol=a+b", "symbol", Some("a b")),
            ("symbol=%zz", "symbol", Some("%zz")),
            ("symbol=%4", "symbol", Some("%4")),
            ("symbol=A&symbol=B", "symbol", Some("A")),
            ("apikey=&symbol=X", "apikey", Some("")),
            ("apikey", "apikey", Some("")),
            ("&&symbol=X&", "symbol", Some("X")),
            ("", "symbol", None),
            ("Symbol=X", "symbol", None),
        ] {
            assert_eq!(Params::parse(query).get(name), want, "{query}");
        }
    }

    #[test]
    fn redacts_the_key_everywhere() {
        for (path, query, want) in [
            ("/query", None, "/query"),
            ("/query", Some("function=F&apikey=SECRET&symbol=X"), "/query?function=F&apikey=REDACTED&symbol=X"),
            ("/query", Some("apikey=SECRET"), "/query?apikey=REDACTED"),
            ("/query", Some("APIKEY=s1&api%6Bey=s2"), "/query?apikey=REDACTED&apikey=REDACTED"),
            ("/query", Some("apikey"), "/query?apikey=REDACTED"),
            ("/x", Some("a=1"), "/x?a=1"),
        ] {
            let got = redacted_target(path, query);
            assert_eq!(got, want);
            assert!(!got.contains("SECRET") && !got.contains("s1") && !got.contains("s2"));
        }
    }
}
