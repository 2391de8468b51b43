//! The floor of a `wasi:http@0.3` component call: `GET /_fixture/floor` answers `stock_shared::floor`'s
//! fixed 200, as the p2 fixture build does, reading nothing else. `make bench` serves it with
//! `wasmtime serve` beside the p2 floor, so the two protocols are compared on the same server.
#![cfg(target_arch = "wasm32")]

wit_bindgen::generate!({ path: "wit", world: "floor", generate_all });

use exports::wasi::http::handler::Guest;
use stock_shared::floor::{BODY, CONTENT_TYPE, PATH};
use wasi::http::types::{ErrorCode, Fields, Request, Response};

struct Floor;
export!(Floor);

impl Guest for Floor {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let path = request.get_path_with_query().unwrap_or_default();
        drop(request);
        if path != PATH {
            return Err(ErrorCode::InternalError(Some(format!("no route {path}"))));
        }
        let length = BODY.len().to_string().into_bytes();
        let headers = Fields::from_list(&[("content-type".into(), CONTENT_TYPE.into()), ("content-length".into(), length)])
            .map_err(|e| ErrorCode::InternalError(Some(format!("headers: {e:?}"))))?;
        let (mut body, contents) = wit_stream::new();
        let (trailers_sent, trailers) = wit_future::new(|| Ok(None));
        drop(trailers_sent);
        let (response, _transmitted) = Response::new(headers, Some(contents), trailers);
        // The body is written after the response is returned: a p3 handler hands over its stream first.
        wit_bindgen::spawn(async move {
            let _unwritten = body.write_all(BODY.as_bytes().to_vec()).await;
        });
        Ok(response)
    }
}
