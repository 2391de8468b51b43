//! The `/_sim/*` control endpoints the test harness uses to switch faults and read counters. All answers are JSON.

use http::StatusCode;
use serde::Serialize;

use crate::fault::FaultMode;
use crate::query::Params;
use crate::route::{JSON, Reply};
use crate::state::SimState;

/// Longest latency that may be configured, 10 minutes (the same bound as `--latency-ms`).
pub const MAX_LATENCY_MS: u64 = 600_000;

/// A validated `PUT /_sim/fault` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRequest {
    /// The mode to switch to.
    pub mode: FaultMode,
    /// New latency, if given.
    pub latency_ms: Option<u64>,
    /// Number of `/query` calls the setting applies to, if limited.
    pub times: Option<u32>,
}

/// Body of a 400 answer.
#[derive(Debug, Serialize)]
struct BadRequest {
    error: String,
    modes: Vec<&'static str>,
}

/// Validates the parameters of `PUT /_sim/fault?mode=M[&latency_ms=MS][&times=N]`; the error is a one-line message.
pub fn parse_fault_request(params: &Params) -> Result<FaultRequest, String> {
    let mode = params.get("mode").ok_or_else(|| "missing parameter mode".to_owned())?.parse::<FaultMode>().map_err(|e| e.to_string())?;
    let latency_ms = params
        .get("latency_ms")
        .map(|raw| match raw.parse::<u64>() {
            Ok(ms) if ms <= MAX_LATENCY_MS => Ok(ms),
            _ => Err(format!("latency_ms must be an integer from 0 to {MAX_LATENCY_MS}, got {raw:?}")),
        })
        .transpose()?;
    let times = params
        .get("times")
        .map(|raw| match raw.parse::<u32>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(format!("times must be a positive integer, got {raw:?}")),
        })
        .transpose()?;
    Ok(FaultRequest { mode, latency_ms, times })
}

/// Serializes `value` as an HTTP JSON answer.
fn json_reply(status: StatusCode, value: &impl Serialize) -> Reply {
    match serde_json::to_string(value) {
        Ok(body) => Reply { status, content_type: JSON, body },
        Err(e) => Reply::text(StatusCode::INTERNAL_SERVER_ERROR, &format!("cannot serialize answer: {e}")),
    }
}

/// `PUT /_sim/fault`: switches the fault and answers the new settings, or 400 listing the modes.
pub async fn put_fault(state: &SimState, params: &Params) -> Reply {
    match parse_fault_request(params) {
        Ok(request) => {
            let view = state.set_fault(request.mode, request.latency_ms, request.times).await;
            json_reply(StatusCode::OK, &view)
        }
        Err(error) => json_reply(StatusCode::BAD_REQUEST, &BadRequest { error, modes: FaultMode::names() }),
    }
}

/// `GET /_sim/stats`: counters and current settings.
pub async fn get_stats(state: &SimState) -> Reply {
    json_reply(StatusCode::OK, &state.stats().await)
}

/// `POST /_sim/reset`: mode `none`, latency 0, counters zero; answers the new settings.
pub async fn post_reset(state: &SimState) -> Reply {
    json_reply(StatusCode::OK, &state.reset().await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fault_requests() {
        for (query, want) in [
            ("mode=hang", Ok((FaultMode::Hang, None, None))),
            ("mode=latency&latency_ms=200", Ok((FaultMode::Latency, Some(200), None))),
            ("mode=http-503&times=3&latency_ms=0", Ok((FaultMode::Http503, Some(0), Some(3)))),
            ("mode=bogus", Err("unknown fault mode")),
            ("latency_ms=5", Err("missing parameter mode")),
            ("mode=none&latency_ms=-1", Err("latency_ms must be")),
            ("mode=none&latency_ms=600001", Err("latency_ms must be")),
            ("mode=none&times=0", Err("times must be")),
            ("mode=none&times=x", Err("times must be")),
        ] {
            let got = parse_fault_request(&Params::parse(query));
            match (got, want) {
                (Ok(got), Ok((mode, latency_ms, times))) => {
                    assert_eq!(got, FaultRequest { mode, latency_ms, times }, "{query}")
                }
                (Err(got), Err(prefix)) => assert!(got.starts_with(prefix), "{query}: {got}"),
                (got, want) => panic!("{query}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[tokio::test]
    async fn control_answers_are_json() {
        let state = SimState::new(FaultMode::None, 0);
        for (query, status, want) in [
            ("mode=hang&latency_ms=200&times=2", StatusCode::OK, r#"{"fault":"hang","latency_ms":200,"times_remaining":2}"#),
            ("mode=none", StatusCode::OK, r#"{"fault":"none","latency_ms":200,"times_remaining":null}"#),
        ] {
            let reply = put_fault(&state, &Params::parse(query)).await;
            assert_eq!((reply.status, reply.content_type, reply.body.as_str()), (status, JSON, want), "{query}");
        }
        let bad = put_fault(&state, &Params::parse("mode=nope")).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        let body: serde_json::Value = serde_json::from_str(&bad.body).expect("JSON");
        assert_eq!(body["modes"].as_array().map(Vec::len), Some(FaultMode::ALL.len()));

        state.record_call(Some("msft"), None).await;
        let stats = get_stats(&state).await;
        assert_eq!(stats.body, r#"{"calls":1,"by_symbol":{"MSFT":1},"fault":"none","latency_ms":200}"#);
        let reset = post_reset(&state).await;
        assert_eq!(reset.body, r#"{"fault":"none","latency_ms":0,"times_remaining":null}"#);
        assert_eq!(get_stats(&state).await.body, r#"{"calls":0,"by_symbol":{},"fault":"none","latency_ms":0}"#);
    }
}
