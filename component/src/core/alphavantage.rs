//! Alpha Vantage TIME_SERIES_DAILY: the request URL and the reading of its answers,
//! including the errors it sends as HTTP 200 bodies.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::decimal::Decimal;
use super::model::{Close, Date, Symbol};

/// Retry-After for the per-minute limit (`Note`).
pub const MINUTE_LIMIT_RETRY_SECS: u32 = 60;
/// Retry-After for the daily limit and other refusals (`Information`): try again in an hour.
pub const DAILY_LIMIT_RETRY_SECS: u32 = 3600;

/// What an answer from Alpha Vantage means when it is not a usable series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `"Error Message"` about the symbol: it does not exist upstream.
    UnknownSymbol,
    /// `"Error Message"` about the key: our configuration is wrong.
    InvalidKey,
    /// `"Note"` or `"Information"` about call limits.
    RateLimited {
        /// Seconds until trying again makes sense.
        retry_after_secs: u32,
    },
    /// `"Information"` that is not about limits (premium endpoint, demo key).
    Rejected,
    /// A non-2xx status, unreadable JSON, `{}` or a series without rows.
    Unusable(String),
}

#[derive(Deserialize)]
struct RawAnswer {
    #[serde(rename = "Error Message")]
    error_message: Option<String>,
    #[serde(rename = "Note")]
    note: Option<String>,
    #[serde(rename = "Information")]
    information: Option<String>,
    #[serde(rename = "Time Series (Daily)")]
    series: Option<BTreeMap<String, RawDay>>,
}

#[derive(Deserialize)]
struct RawDay {
    #[serde(rename = "4. close")]
    close: String,
}

/// The full query URL for `symbol`; `base` is the endpoint (e.g. `https://www.alphavantage.co/query`).
pub fn query_url(base: &str, symbol: &Symbol, apikey: &str) -> String {
    let joiner = if base.contains('?') { '&' } else { '?' };
    format!("{base}{joiner}function=TIME_SERIES_DAILY&symbol={}&apikey={}", percent_encode(symbol.as_str()), percent_encode(apikey))
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Reads an answer: the closes oldest first, or why there are none.
pub fn parse_answer(status: u16, body: &[u8]) -> Result<Vec<Close>, Refusal> {
    if !(200..300).contains(&status) {
        return Err(Refusal::Unusable(format!("upstream answered HTTP {status}")));
    }
    let answer: RawAnswer =
        serde_json::from_slice(body).map_err(|e| Refusal::Unusable(format!("upstream answer is not the expected JSON: {e}")))?;
    if let Some(message) = answer.error_message {
        return Err(classify_error_message(&message));
    }
    if let Some(note) = answer.note {
        return Err(classify_information(&note, MINUTE_LIMIT_RETRY_SECS));
    }
    if let Some(information) = answer.information {
        return Err(classify_information(&information, DAILY_LIMIT_RETRY_SECS));
    }
    let rows = answer.series.ok_or_else(|| Refusal::Unusable("upstream answer has no daily time series".into()))?;
    if rows.is_empty() {
        return Err(Refusal::Unusable("upstream time series is empty".into()));
    }
    // BTreeMap orders `YYYY-MM-DD` keys chronologically, whatever order the document used.
    rows.into_iter()
        .map(|(date, day)| {
            let date = Date::parse(&date).ok_or_else(|| Refusal::Unusable(format!("bad date {date:?} in upstream series")))?;
            let close = Decimal::parse(&day.close).map_err(|e| Refusal::Unusable(format!("bad close for {}: {e}", date.as_str())))?;
            Ok(Close { date, close })
        })
        .collect()
}

fn classify_error_message(message: &str) -> Refusal {
    if message.to_ascii_lowercase().contains("apikey") { Refusal::InvalidKey } else { Refusal::UnknownSymbol }
}

fn classify_information(message: &str, retry_after_secs: u32) -> Refusal {
    let lower = message.to_ascii_lowercase();
    let about_limits = ["rate limit", "call frequency", "requests per day", "calls per"].iter().any(|p| lower.contains(p));
    if about_limits { Refusal::RateLimited { retry_after_secs } } else { Refusal::Rejected }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stock_shared::redact::query_secrets as redact;

    const SUCCESS: &str = r#"{
        "Meta Data": {"1. Information": "Daily Prices (open, high, low, close) and Volumes", "2. Symbol": "MSFT"},
        "Time Series (Daily)": {
            "2026-11-20": {"1. open": "415.1000", "2. high": "418.9900", "3. low": "414.0200", "4. close": "417.4600", "5. volume": "18394421"},
            "2026-11-18": {"1. open": "1", "2. high": "1", "3. low": "1", "4. close": "410.0000", "5. volume": "1"},
            "2026-11-19": {"1. open": "1", "2. high": "1", "3. low": "1", "4. close": "412.5050", "5. volume": "1"}
        }
    }"#;

    #[test]
    fn success_is_read_in_chronological_order_whatever_the_key_order() {
        let closes = parse_answer(200, SUCCESS.as_bytes()).expect("valid series");
        let got: Vec<(String, String)> = closes.iter().map(|c| (c.date.as_str().to_owned(), c.close.to_string())).collect();
        let want = [("2026-11-18", "410"), ("2026-11-19", "412.505"), ("2026-11-20", "417.46")];
        assert_eq!(got, want.map(|(d, c)| (d.to_owned(), c.to_owned())));
    }

    #[test]
    fn refusals_sent_as_http_200_are_recognised() {
        for (body, want) in [
            (
                r#"{"Error Message": "Invalid API call. Please retry or visit the documentation (https://www.alphavantage.co/documentation/) for TIME_SERIES_DAILY."}"#,
                Refusal::UnknownSymbol,
            ),
            (r#"{"Error Message": "the parameter apikey is invalid or missing. Please claim your free API key"}"#, Refusal::InvalidKey),
            (
                r#"{"Note": "Thank you for using Alpha Vantage! Our standard API call frequency is 5 calls per minute and 500 calls per day."}"#,
                Refusal::RateLimited { retry_after_secs: 60 },
            ),
            (
                r#"{"Information": "Thank you for using Alpha Vantage! Our standard API rate limit is 25 requests per day."}"#,
                Refusal::RateLimited { retry_after_secs: 3600 },
            ),
            (r#"{"Information": "Thank you for using Alpha Vantage! This is a premium endpoint."}"#, Refusal::Rejected),
            (r#"{"Information": "The **demo** API key is for demo purposes only."}"#, Refusal::Rejected),
        ] {
            assert_eq!(parse_answer(200, body.as_bytes()), Err(want), "body {body}");
        }
    }

    #[test]
    fn unusable_answers_are_told_apart_from_refusals() {
        for (status, body) in [
            (200, "{}"),
            (200, r#"{"Meta Data": {}, "Time Series (Daily)": {}}"#),
            (200, r#"{"Meta Data": {}, "Time Series (Dai"#),
            (200, "<html>bad gateway</html>"),
            (200, ""),
            (200, r#"{"Time Series (Daily)": {"2026-11-20": {"4. close": "abc"}}}"#),
            (200, r#"{"Time Series (Daily)": {"yesterday": {"4. close": "1.0"}}}"#),
            (200, r#"{"Time Series (Daily)": {"2026-11-20": {"1. open": "1.0"}}}"#),
            (200, r#"{"Time Series (Daily)": {"2026-11-20": {"4. close": 1.5}}}"#),
            (503, SUCCESS),
            (500, "<html>oops</html>"),
        ] {
            assert!(matches!(parse_answer(status, body.as_bytes()), Err(Refusal::Unusable(_))), "status {status} body {body}");
        }
    }

    #[test]
    fn query_url_encodes_and_redaction_hides_the_key() {
        let symbol = Symbol::parse("brk.b").expect("valid");
        let url = query_url("http://127.0.0.1:9/query", &symbol, "s3cr&t=");
        assert_eq!(url, "http://127.0.0.1:9/query?function=TIME_SERIES_DAILY&symbol=BRK.B&apikey=s3cr%26t%3D");
        assert_eq!(redact(&url), "http://127.0.0.1:9/query?function=TIME_SERIES_DAILY&symbol=BRK.B&apikey=REDACTED");
        assert_eq!(query_url("http://h/q?x=1", &symbol, "k"), "http://h/q?x=1&function=TIME_SERIES_DAILY&symbol=BRK.B&apikey=k");
        assert_eq!(redact("http://h/q?apikey=abc&symbol=X"), "http://h/q?apikey=REDACTED&symbol=X");
        assert_eq!(redact("http://h/q"), "http://h/q");
    }
}
