//! RFC 9457 problem documents: the one shape both the host and the component answer errors with.

/// Base of the `type` URI of every problem document.
pub const PROBLEM_BASE: &str = "https://stock-service.dev/problems/";
/// Media type of problem documents.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One problem occurrence, ready to render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProblemDoc<'a> {
    /// HTTP status.
    pub status: u16,
    /// Last segment of the `type` URI, e.g. `circuit-open`.
    pub slug: &'a str,
    /// Short, fixed summary of the problem type.
    pub title: &'a str,
    /// What happened in this occurrence (never a secret).
    pub detail: &'a str,
    /// The request path it happened at.
    pub instance: &'a str,
}

impl ProblemDoc<'_> {
    /// The JSON document: `type`, `title`, `status`, `detail`, `instance`.
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "type": format!("{PROBLEM_BASE}{}", self.slug),
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "instance": self.instance,
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_rfc9457_and_escape_their_text() {
        let doc = ProblemDoc {
            status: 502,
            slug: "bad-upstream-response",
            title: "Bad upstream response",
            detail: "got \"<html>\"",
            instance: "/MSFT/7",
        };
        let parsed: serde_json::Value = serde_json::from_str(&doc.to_json()).expect("valid JSON");
        assert_eq!(
            parsed,
            serde_json::json!({
                "type": "https://stock-service.dev/problems/bad-upstream-response",
                "title": "Bad upstream response",
                "status": 502,
                "detail": "got \"<html>\"",
                "instance": "/MSFT/7",
            })
        );
    }
}
