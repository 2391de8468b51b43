//! What `/query` answers, as a pure function of the query parameters and the current fault mode, so that every
//! upstream case can be tested without sockets.

use http::StatusCode;

use crate::data;
use crate::fault::FaultMode;
use crate::json::Json;
use crate::query::Params;

/// `Content-Type` of every Alpha Vantage answer.
pub const JSON: &str = "application/json";
/// `Content-Type` of the proxy-style error pages.
pub const HTML: &str = "text/html";
/// `Content-Type` of the simulator's own plain answers (404, 405).
pub const TEXT: &str = "text/plain";

/// The only function the simulator implements.
const TIME_SERIES_DAILY: &str = "TIME_SERIES_DAILY";
/// The public demo key, which only works for IBM.
const DEMO_KEY: &str = "demo";
/// The only symbol the demo key may ask for.
const DEMO_SYMBOL: &str = "IBM";
/// `outputsize` value that is premium-only on a free key.
const OUTPUT_SIZE_FULL: &str = "full";

/// Upstream's answer to an unknown or invalid symbol.
pub const INVALID_CALL: &str =
    "Invalid API call. Please retry or visit the documentation (https://www.alphavantage.co/documentation/) for TIME_SERIES_DAILY.";
/// Upstream's answer to a missing or invalid key.
pub const BAD_KEY: &str = "the parameter apikey is invalid or missing. Please claim your free API key on (https://www.alphavantage.co/support/#api-key). It should take less than 20 seconds.";
/// Upstream's answer to the demo key used on a symbol other than IBM.
pub const DEMO_ONLY: &str = "The **demo** API key is for demo purposes only. Please claim your free API key at (https://www.alphavantage.co/support/#api-key) to explore our full API offerings. It takes fewer than 20 seconds.";
/// Upstream's answer to a premium-only parameter (`outputsize=full`).
pub const PREMIUM: &str = "Thank you for using Alpha Vantage! This is a premium endpoint. You may subscribe to any of the premium plans at https://www.alphavantage.co/premium/ to instantly unlock all premium endpoints";
/// Upstream's older per-minute rate-limit wording.
pub const RATE_NOTE: &str = "Thank you for using Alpha Vantage! Our standard API call frequency is 5 calls per minute and 500 calls per day. Please visit https://www.alphavantage.co/premium/ if you would like to target a higher API call frequency.";
/// Upstream's daily rate-limit wording.
pub const DAILY_LIMIT: &str = "Thank you for using Alpha Vantage! Our standard API rate limit is 25 requests per day. Please subscribe to any of the premium plans at https://www.alphavantage.co/premium/ to instantly remove all daily rate limits.";

/// Page sent in `http-500` mode.
const HTML_500: &str = "<!DOCTYPE html>\n<html><head><title>500 Internal Server Error</title></head>\n<body><h1>Internal Server Error</h1><p>The server encountered an internal error and was unable to complete your request.</p></body></html>\n";
/// Page sent in `http-503` mode, as a reverse proxy would.
const HTML_503: &str = "<html>\n<head><title>503 Service Temporarily Unavailable</title></head>\n<body>\n<center><h1>503 Service Temporarily Unavailable</h1></center>\n<hr><center>nginx</center>\n</body>\n</html>\n";

/// A complete HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Status code.
    pub status: StatusCode,
    /// `Content-Type` header value.
    pub content_type: &'static str,
    /// Body text.
    pub body: String,
}

impl Reply {
    /// HTTP 200 JSON, the way upstream sends everything, errors included.
    pub fn json(body: String) -> Self {
        Self { status: StatusCode::OK, content_type: JSON, body }
    }

    /// HTTP 200 JSON object with a single string entry, e.g. `{"Error Message": "..."}`, pretty-printed as
    /// upstream does.
    fn message(key: &str, text: &str) -> Self {
        Self::json(Json::Obj(vec![(key.to_owned(), Json::str(text))]).render())
    }

    /// A plain-text answer from the simulator itself.
    pub fn text(status: StatusCode, body: &str) -> Self {
        Self { status, content_type: TEXT, body: format!("{body}\n") }
    }
}

/// How a `/query` request ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Send this answer.
    Reply(Reply),
    /// Never answer; keep the connection open.
    Hang,
    /// Drop the connection without an answer.
    Reset,
}

/// The answer to `GET /query` with `params` while `fault` is in force.
///
/// Faults take precedence over everything, including validation of the parameters.
pub fn answer_query(params: &Params, fault: FaultMode) -> Outcome {
    let reply = match fault {
        FaultMode::None | FaultMode::Latency => answer_upstream(params),
        FaultMode::Http500 => Reply { status: StatusCode::INTERNAL_SERVER_ERROR, content_type: HTML, body: HTML_500.into() },
        FaultMode::Http503 => Reply { status: StatusCode::SERVICE_UNAVAILABLE, content_type: HTML, body: HTML_503.into() },
        FaultMode::Hang => return Outcome::Hang,
        FaultMode::Reset => return Outcome::Reset,
        FaultMode::Malformed => Reply::json(truncated_document(params)),
        FaultMode::Empty => Reply::json("{}".into()),
        FaultMode::EmptySeries => Reply::json(data::daily_document(&echoed_symbol(params), &[])),
        FaultMode::Note => Reply::message("Note", RATE_NOTE),
        FaultMode::Information => Reply::message("Information", DAILY_LIMIT),
        FaultMode::BadKey => Reply::message("Error Message", BAD_KEY),
    };
    Outcome::Reply(reply)
}

/// What the real upstream would send for these parameters.
fn answer_upstream(params: &Params) -> Reply {
    let apikey = params.get("apikey").unwrap_or_default();
    let function = params.get("function").unwrap_or_default();
    let symbol = params.get("symbol").unwrap_or_default();
    if apikey.is_empty() {
        return Reply::message("Error Message", BAD_KEY);
    }
    if function != TIME_SERIES_DAILY {
        return Reply::message("Error Message", &format!("This API function ({function}) does not exist."));
    }
    if apikey == DEMO_KEY && !symbol.eq_ignore_ascii_case(DEMO_SYMBOL) {
        return Reply::message("Information", DEMO_ONLY);
    }
    if params.get("outputsize").is_some_and(|size| size.eq_ignore_ascii_case(OUTPUT_SIZE_FULL)) {
        return Reply::message("Information", PREMIUM);
    }
    match data::known_symbol(symbol) {
        Some(known) => Reply::json(data::daily_document(known, &data::daily_bars(known))),
        None => Reply::message("Error Message", INVALID_CALL),
    }
}

/// The `symbol` parameter upper-cased, as upstream echoes it.
fn echoed_symbol(params: &Params) -> String {
    params.get("symbol").unwrap_or_default().to_ascii_uppercase()
}

/// A success document cut in half: what a connection dropped mid-body looks like once a client has buffered it.
fn truncated_document(params: &Params) -> String {
    let symbol = data::known_symbol(params.get("symbol").unwrap_or_default()).unwrap_or("MSFT");
    let mut document = data::daily_document(symbol, &data::daily_bars(symbol));
    // The document is ASCII, so any index is a char boundary; `floor_char_boundary` keeps that true regardless.
    let cut = document.floor_char_boundary(document.len() / 2);
    document.truncate(cut);
    document
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn query(params: &str, fault: FaultMode) -> Outcome {
        answer_query(&Params::parse(params), fault)
    }

    fn reply(params: &str, fault: FaultMode) -> Reply {
        match query(params, fault) {
            Outcome::Reply(reply) => reply,
            other => panic!("{params} {fault}: expected a reply, got {other:?}"),
        }
    }

    const OK: &str = "function=TIME_SERIES_DAILY&symbol=MSFT&apikey=k";

    #[test]
    fn upstream_error_cases_are_http_200_json() {
        for (params, key, want) in [
            ("function=TIME_SERIES_DAILY&symbol=XYZ&apikey=k", "Error Message", INVALID_CALL.to_owned()),
            ("function=TIME_SERIES_DAILY&apikey=k", "Error Message", INVALID_CALL.to_owned()),
            ("function=TIME_SERIES_DAILY&symbol=MSFT", "Error Message", BAD_KEY.to_owned()),
            ("function=TIME_SERIES_DAILY&symbol=MSFT&apikey=", "Error Message", BAD_KEY.to_owned()),
            ("function=TIME_SERIES_DAILY&symbol=MSFT&apikey=demo", "Information", DEMO_ONLY.to_owned()),
            ("function=TIME_SERIES_DAILY&symbol=XYZ&apikey=demo", "Information", DEMO_ONLY.to_owned()),
            ("function=TIME_SERIES_DAILY&symbol=MSFT&apikey=k&outputsize=full", "Information", PREMIUM.to_owned()),
            (
                "function=TIME_SERIES_WEEKLY&symbol=MSFT&apikey=k",
                "Error Message",
                "This API function (TIME_SERIES_WEEKLY) does not exist.".to_owned(),
            ),
            ("symbol=MSFT&apikey=k", "Error Message", "This API function () does not exist.".to_owned()),
        ] {
            let got = reply(params, FaultMode::None);
            assert_eq!((got.status, got.content_type), (StatusCode::OK, JSON), "{params}");
            let doc: Value = serde_json::from_str(&got.body).expect("JSON body");
            assert_eq!(doc, serde_json::json!({ key: want }), "{params}");
        }
    }

    #[test]
    fn known_symbols_succeed_in_any_case() {
        for (params, symbol) in [
            (OK, "MSFT"),
            ("function=TIME_SERIES_DAILY&symbol=brk.b&apikey=k", "BRK.B"),
            ("function=TIME_SERIES_DAILY&symbol=ibm&apikey=demo", "IBM"),
            ("function=TIME_SERIES_DAILY&symbol=SPY&apikey=k&outputsize=compact", "SPY"),
        ] {
            for fault in [FaultMode::None, FaultMode::Latency] {
                let got = reply(params, fault);
                assert_eq!((got.status, got.content_type), (StatusCode::OK, JSON));
                let doc: Value = serde_json::from_str(&got.body).expect("JSON body");
                assert_eq!(doc["Meta Data"]["2. Symbol"], symbol, "{params}");
                assert_eq!(doc["Time Series (Daily)"].as_object().map(|s| s.len()), Some(100));
            }
        }
    }

    #[test]
    fn faults_override_the_answer() {
        for (fault, status, content_type, key, text) in [
            (FaultMode::Empty, StatusCode::OK, JSON, None, None),
            (FaultMode::Note, StatusCode::OK, JSON, Some("Note"), Some(RATE_NOTE)),
            (FaultMode::Information, StatusCode::OK, JSON, Some("Information"), Some(DAILY_LIMIT)),
            (FaultMode::BadKey, StatusCode::OK, JSON, Some("Error Message"), Some(BAD_KEY)),
            (FaultMode::Http500, StatusCode::INTERNAL_SERVER_ERROR, HTML, None, None),
            (FaultMode::Http503, StatusCode::SERVICE_UNAVAILABLE, HTML, None, None),
        ] {
            let got = reply(OK, fault);
            assert_eq!((got.status, got.content_type), (status, content_type), "{fault}");
            match (key, text) {
                (Some(key), Some(text)) => {
                    let doc: Value = serde_json::from_str(&got.body).expect("JSON body");
                    assert_eq!(doc, serde_json::json!({ key: text }), "{fault}");
                }
                _ if content_type == JSON => assert_eq!(got.body, "{}"),
                _ => assert!(got.body.contains(&status.as_u16().to_string()), "{fault}: {}", got.body),
            }
        }
    }

    #[test]
    fn hang_and_reset_do_not_answer() {
        for (fault, want) in [(FaultMode::Hang, Outcome::Hang), (FaultMode::Reset, Outcome::Reset)] {
            assert_eq!(query(OK, fault), want);
            assert_eq!(query("", fault), want, "faults apply whatever the parameters");
        }
    }

    #[test]
    fn malformed_is_json_typed_but_does_not_parse() {
        for params in [OK, "symbol=unknown", ""] {
            let got = reply(params, FaultMode::Malformed);
            assert_eq!((got.status, got.content_type), (StatusCode::OK, JSON));
            assert!(got.body.starts_with('{'));
            assert!(serde_json::from_str::<Value>(&got.body).is_err(), "{params}");
        }
    }

    #[test]
    fn empty_series_has_meta_data_and_no_rows() {
        for (params, symbol) in [(OK, "MSFT"), ("symbol=aapl", "AAPL")] {
            let got = reply(params, FaultMode::EmptySeries);
            let doc: Value = serde_json::from_str(&got.body).expect("JSON body");
            assert_eq!(doc["Meta Data"]["2. Symbol"], symbol);
            assert_eq!(doc["Time Series (Daily)"], serde_json::json!({}));
        }
    }
}
