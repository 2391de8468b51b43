//! The `wasi:http/incoming-handler` export: method and path in, [`Reply`] out.

use super::Component;
use super::env::WasiEnv;
use super::exports::wasi::http::incoming_handler::Guest;
use super::wasi::http::types::{Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam};
use super::wasi::io::streams::OutputStream;
use crate::core::respond::{Reply, respond};
use stock_shared::wasi_io::BLOCKING_WRITE_MAX;

impl Guest for Component {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let method = method_name(&request.method());
        let path = request.path_with_query().unwrap_or_else(|| "/".into());
        drop(request);
        #[cfg(feature = "fixture")]
        misbehave(&path);
        #[cfg(feature = "fixture")]
        let reply = if let Some(reply) = super::fixture::control(&path) {
            reply
        } else if path == stock_shared::floor::PATH {
            // The floor of a component call (`make bench`): no keyvalue, no configuration, a fixed small body.
            use stock_shared::floor::{BODY, CONTENT_TYPE};
            crate::core::respond::Reply { status: 200, headers: vec![("content-type", CONTENT_TYPE.into())], body: BODY.into() }
        } else if path.starts_with("/_fixture/fail") {
            crate::core::respond::Reply {
                status: 500,
                headers: vec![("content-type", "text/plain".into())],
                body: "fixture: failing on purpose".into(),
            }
        } else {
            super::config::with_settings(|settings| respond(&WasiEnv::default(), settings, &method, &path))
        };
        #[cfg(not(feature = "fixture"))]
        let reply = super::config::with_settings(|settings| respond(&WasiEnv::default(), settings, &method, &path));
        if let Err(why) = send(reply, method == "HEAD", response_out) {
            eprintln!("cannot write response: {why}");
        }
    }
}

/// Test-fixture builds only: requests that trap, spin or exhaust memory on purpose
/// (`/_fixture/fail` answers a plain 500 instead, for canary judgment; `/_fixture/floor` a fixed 200).
#[cfg(feature = "fixture")]
fn misbehave(path: &str) {
    match path {
        "/_fixture/trap" => panic!("fixture: trapping on purpose"),
        "/_fixture/spin" => loop {
            std::hint::black_box(());
        },
        "/_fixture/grow" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        _ => {}
    }
}

fn method_name(method: &Method) -> String {
    match method {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Connect => "CONNECT",
        Method::Options => "OPTIONS",
        Method::Trace => "TRACE",
        Method::Patch => "PATCH",
        Method::Other(other) => other.as_str(),
    }
    .to_owned()
}

fn send(reply: Reply, head_only: bool, response_out: ResponseOutparam) -> Result<(), String> {
    let mut entries: Vec<(String, Vec<u8>)> =
        reply.headers.into_iter().map(|(name, value)| (name.to_owned(), value.into_bytes())).collect();
    // wasi:http holds a body to its declared length, and a HEAD answer has no body: declaring the GET's
    // length would make finishing the empty body fail (HttpResponseBodySize).
    if !head_only {
        entries.push(("content-length".into(), reply.body.len().to_string().into_bytes()));
    }
    let headers = Fields::from_list(&entries).map_err(|e| format!("headers: {e:?}"))?;
    let response = OutgoingResponse::new(headers);
    // A new response is 200 already: one host call fewer on every successful answer.
    if reply.status != 200 {
        response.set_status_code(reply.status).map_err(|()| format!("status {}", reply.status))?;
    }
    let body = response.body().map_err(|()| "body already taken".to_owned())?;
    ResponseOutparam::set(response_out, Ok(response));
    if !head_only {
        let stream = body.write().map_err(|()| "body stream already taken".to_owned())?;
        write_all(&stream, reply.body.as_bytes())?;
    }
    OutgoingBody::finish(body, None).map_err(|e| format!("finish: {e:?}"))
}

/// Writes `bytes` in as few host calls as the stream allows: a small body in one `blocking-write-and-flush`
/// (which takes at most 4096 bytes), a larger one (the OpenAPI document) in writes as large as `check-write`
/// permits, then one flush, instead of one call per 4096 bytes.
fn write_all(stream: &OutputStream, bytes: &[u8]) -> Result<(), String> {
    if bytes.len() <= BLOCKING_WRITE_MAX {
        return stream.blocking_write_and_flush(bytes).map_err(|e| format!("write: {e:?}"));
    }
    let mut rest = bytes;
    while !rest.is_empty() {
        let permitted = stream.check_write().map_err(|e| format!("check-write: {e:?}"))?;
        if permitted == 0 {
            stream.subscribe().block();
            continue;
        }
        let (now, later) = rest.split_at(usize::try_from(permitted).unwrap_or(usize::MAX).min(rest.len()));
        stream.write(now).map_err(|e| format!("write: {e:?}"))?;
        rest = later;
    }
    stream.blocking_flush().map_err(|e| format!("flush: {e:?}"))
}
