//! Response bodies: the seed-compatible prices JSON, the breaker JSON and problem documents.

use std::fmt::Write;

use stock_shared::problem::ProblemDoc;

use super::decimal::Decimal;
use super::error::Problem;
use super::model::{Close, Symbol};

/// `{"symbol":..,"ndays":..,"prices":[{"date":..,"close":..}],"average":..}`; written by hand because every
/// piece is validated ASCII and decimals must print exactly.
pub fn prices_json(symbol: &Symbol, closes: &[Close], average: Decimal) -> String {
    let mut out = String::with_capacity(64 + closes.len() * 40);
    let _ = write!(out, r#"{{"symbol":"{}","ndays":{},"prices":["#, symbol.as_str(), closes.len());
    for (i, close) in closes.iter().enumerate() {
        let comma = if i == 0 { "" } else { "," };
        let _ = write!(out, r#"{comma}{{"date":"{}","close":{}}}"#, close.date.as_str(), close.close);
    }
    let _ = write!(out, r#"],"average":{average}}}"#);
    out
}

/// The RFC 9457 document for `problem` at `instance` (the request path).
pub fn problem_json(problem: &Problem, instance: &str) -> String {
    ProblemDoc { status: problem.status, slug: problem.slug, title: problem.title, detail: &problem.detail, instance }.to_json()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::Date;

    #[test]
    fn prices_body_matches_the_seed_format() {
        let closes: Vec<Close> = [("2026-11-19", "388.4700"), ("2026-11-20", "397.3100")]
            .iter()
            .map(|(d, c)| Close { date: Date::parse(d).expect("valid"), close: Decimal::parse(c).expect("valid") })
            .collect();
        let average = Decimal::mean(&closes.iter().map(|c| c.close).collect::<Vec<_>>()).expect("non-empty");
        let body = prices_json(&Symbol::parse("msft").expect("valid"), &closes, average);
        assert_eq!(
            body,
            r#"{"symbol":"MSFT","ndays":2,"prices":[{"date":"2026-11-19","close":388.47},{"date":"2026-11-20","close":397.31}],"average":392.89}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(&body).expect("valid JSON");
        assert_eq!(parsed["prices"][1]["close"], serde_json::json!(397.31));
    }

    #[test]
    fn problem_body_is_rfc9457_and_escapes_details() {
        let problem = Problem {
            status: 502,
            slug: "bad-upstream-response",
            title: "Bad upstream response",
            detail: "got \"<html>\"".into(),
            retry_after_secs: None,
        };
        let parsed: serde_json::Value = serde_json::from_str(&problem_json(&problem, "/MSFT/7")).expect("valid JSON");
        assert_eq!(parsed["type"], "https://stock-service.dev/problems/bad-upstream-response");
        assert_eq!(parsed["status"], 502);
        assert_eq!(parsed["detail"], "got \"<html>\"");
        assert_eq!(parsed["instance"], "/MSFT/7");
    }
}
