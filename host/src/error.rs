//! Host failures and the one function that turns them into RFC 9457 problem responses.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use stock_shared::problem::{PROBLEM_JSON, ProblemDoc};

use crate::body::{HostBody, full};

/// What can go wrong in the host itself.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The component trapped (panic, unreachable, out of memory).
    #[error("the component failed while handling the request")]
    Trap(String),
    /// The whole-request deadline passed.
    #[error("the request took longer than {0} ms")]
    Deadline(u128),
    /// Every instance slot stayed busy for the whole deadline.
    #[error("all component instances are busy")]
    Overloaded,
    /// MAX_CONNECTIONS connections were open (answered on the raw socket, then closed).
    #[error("too many open connections; retry shortly")]
    TooManyConnections,
    /// Another upload is being received; one at a time.
    #[error("another component upload is being received; retry when it has finished")]
    UploadBusy,
    /// Shutting down, or no component answers.
    #[error("{0}")]
    NotReady(String),
    /// The request target is not a path (authority-form `host:port`, asterisk-form `*`).
    #[error("the request target must be a path such as /MSFT/7")]
    NotAPath,
    /// Admin writes are off: no token is configured.
    #[error("admin writes are disabled: {0}")]
    AdminDisabled(String),
    /// Missing or wrong bearer token.
    #[error("a valid `Authorization: Bearer <token>` is required")]
    Unauthorized,
    /// The uploaded component is larger than the host accepts.
    #[error("component uploads are limited to {0} bytes")]
    TooLarge(usize),
    /// A candidate build failed a check; the running build keeps serving.
    #[error("{0}")]
    BuildRejected(String),
    /// An admin request with a value that cannot be used.
    #[error("{0}")]
    BadRequest(String),
    /// The change could not be made in the current state (nothing to roll back to, superseded).
    #[error("{0}")]
    Conflict(String),
    /// No route on the admin port.
    #[error("nothing is served at this path")]
    NotFound,
    /// Anything else that should not happen.
    #[error("internal error")]
    Internal(String),
}

impl HostError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str, Option<u32>) {
        match self {
            Self::Trap(_) => (StatusCode::INTERNAL_SERVER_ERROR, "component-trap", "Component failure", None),
            Self::Deadline(_) => (StatusCode::GATEWAY_TIMEOUT, "request-timeout", "Request deadline exceeded", None),
            Self::Overloaded | Self::TooManyConnections | Self::UploadBusy => {
                (StatusCode::SERVICE_UNAVAILABLE, "overloaded", "Overloaded", Some(1))
            }
            Self::NotReady(_) => (StatusCode::SERVICE_UNAVAILABLE, "not-ready", "Not ready", Some(1)),
            Self::NotAPath => (StatusCode::BAD_REQUEST, "invalid-path", "Invalid path", None),
            Self::AdminDisabled(_) => (StatusCode::FORBIDDEN, "admin-disabled", "Admin writes disabled", None),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized", None),
            Self::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "component-too-large", "Component too large", None),
            Self::BuildRejected(_) => (StatusCode::UNPROCESSABLE_ENTITY, "build-rejected", "Build rejected", None),
            Self::Conflict(_) => (StatusCode::CONFLICT, "swap-conflict", "Swap conflict", None),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "invalid-admin-request", "Invalid admin request", None),
            Self::NotFound => (StatusCode::NOT_FOUND, "not-found", "Not found", None),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal-error", "Internal error", None),
        }
    }

    /// The problem document for this error at `instance`.
    fn problem_json(&self, instance: &str) -> String {
        let (status, slug, title, _) = self.parts();
        let detail = self.to_string();
        ProblemDoc { status: status.as_u16(), slug, title, detail: &detail, instance }.to_json()
    }

    /// The status line's code and reason, the header lines (each ending CRLF) and the body, for an
    /// answer written straight to a socket (a shed connection, where no HTTP server runs).
    pub fn raw_response(&self, instance: &str) -> (String, String, String) {
        let (status, _, _, retry_after) = self.parts();
        let mut head = format!("content-type: {PROBLEM_JSON}\r\ncache-control: no-store\r\n");
        if let Some(seconds) = retry_after {
            head.push_str(&format!("retry-after: {seconds}\r\n"));
        }
        let line = format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or(""));
        (line, head, self.problem_json(instance))
    }

    /// The problem response for this error at `instance`; logs it once.
    pub fn into_response(self, instance: &str, req_id: &str) -> Response<HostBody> {
        let (status, slug, _, retry_after) = self.parts();
        let cause = match &self {
            Self::Trap(cause) | Self::Internal(cause) => cause.as_str(),
            _ => "",
        };
        match self {
            // Expected while shutting down or starting: not an operator's concern.
            Self::NotReady(_) => tracing::debug!(req_id, status = status.as_u16(), problem = slug, detail = %self, "not ready"),
            _ if status.is_server_error() => {
                tracing::warn!(req_id, status = status.as_u16(), problem = slug, cause, "request failed in the host")
            }
            _ => {}
        }
        let body = self.problem_json(instance);
        let mut response = Response::new(full(Bytes::from(body)));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(seconds) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_host_problem_is_in_the_one_list() {
        for error in [
            HostError::Trap("x".into()),
            HostError::Deadline(1),
            HostError::Overloaded,
            HostError::TooManyConnections,
            HostError::UploadBusy,
            HostError::NotReady("x".into()),
            HostError::NotAPath,
            HostError::AdminDisabled("x".into()),
            HostError::Unauthorized,
            HostError::TooLarge(1),
            HostError::BuildRejected("x".into()),
            HostError::Conflict("x".into()),
            HostError::BadRequest("x".into()),
            HostError::NotFound,
            HostError::Internal("x".into()),
        ] {
            let (status, slug, _, _) = error.parts();
            assert!(
                stock_shared::problem::is_known(slug, status.as_u16(), stock_shared::problem::Owner::Host),
                "{slug} is not in problem::TYPES"
            );
        }
    }
}
