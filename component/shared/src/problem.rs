//! RFC 9457 problem documents: the one shape both the host and the component answer errors with.

/// Base of the `type` URI of every problem document.
pub const PROBLEM_BASE: &str = "https://stock-service.dev/problems/";
/// Media type of problem documents.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Every problem type the service answers with: (slug, HTTP status, who answers it). The one list:
/// the code of both sides, the README's table and `docs/openapi.json` are tested against it.
pub const TYPES: [(&str, u16, Owner); 27] = [
    ("invalid-symbol", 400, Owner::Component),
    ("invalid-days", 400, Owner::Component),
    ("invalid-path", 400, Owner::Component),
    ("not-found", 404, Owner::Component),
    ("method-not-allowed", 405, Owner::Component),
    ("unknown-symbol", 404, Owner::Component),
    ("bad-upstream-response", 502, Owner::Component),
    ("upstream-rate-limited", 503, Owner::Component),
    ("upstream-misconfigured", 503, Owner::Component),
    ("service-misconfigured", 503, Owner::Component),
    ("upstream-quota-exhausted", 503, Owner::Component),
    ("circuit-open", 503, Owner::Component),
    ("upstream-timeout", 504, Owner::Component),
    ("upstream-call-refused", 503, Owner::Component),
    ("component-trap", 500, Owner::Host),
    ("request-timeout", 504, Owner::Host),
    ("overloaded", 503, Owner::Host),
    ("not-ready", 503, Owner::Host),
    ("invalid-path", 400, Owner::Host),
    ("not-found", 404, Owner::Host),
    ("internal-error", 500, Owner::Host),
    ("admin-disabled", 403, Owner::Host),
    ("unauthorized", 401, Owner::Host),
    ("component-too-large", 413, Owner::Host),
    ("build-rejected", 422, Owner::Host),
    ("swap-conflict", 409, Owner::Host),
    ("invalid-admin-request", 400, Owner::Host),
];

/// Which side answers a problem type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The component build.
    Component,
    /// `stock-host` itself.
    Host,
}

/// Whether `slug` with `status` is in [`TYPES`] for `owner`.
pub fn is_known(slug: &str, status: u16, owner: Owner) -> bool {
    TYPES.iter().any(|(s, st, o)| *s == slug && *st == status && *o == owner)
}

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

    fn repo_file(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn backticked_slugs(text: &str) -> std::collections::BTreeSet<String> {
        text.split('`')
            .skip(1)
            .step_by(2)
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn the_readme_table_lists_exactly_the_problem_types() {
        let readme = repo_file("README.md");
        let table: String = readme.lines().filter(|l| l.starts_with("| 4") || l.starts_with("| 5")).collect::<Vec<_>>().join("\n");
        let listed = backticked_slugs(&table);
        let known: std::collections::BTreeSet<String> = TYPES.iter().map(|(s, _, _)| s.to_string()).collect();
        assert_eq!(listed, known, "README.md's problem table and problem::TYPES disagree");
        for (slug, status, _) in TYPES {
            assert!(
                table.lines().any(|l| l.starts_with(&format!("| {status} |")) && l.contains(&format!("`{slug}`"))),
                "{slug} not under {status}"
            );
        }
    }

    #[test]
    fn the_openapi_document_names_every_problem_type() {
        let openapi = repo_file("docs/openapi.json");
        for (slug, _, _) in TYPES {
            assert!(openapi.contains(slug), "docs/openapi.json never names {slug}");
        }
    }

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
