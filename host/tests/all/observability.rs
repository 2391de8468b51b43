//! The Grafana dashboard and the alert rules name only metrics the host exports: every `stock_*` name in
//! docs/grafana-dashboard.json (each query expression, then the whole file), docs/alerts.yaml and its
//! PrometheusRule twin must be a metric family a live host declares with `# TYPE` on /metrics
//! (`_bucket`, `_sum` and `_count` resolve to their histogram). Rule syntax, the rule unit tests and the
//! dashboard's PromQL syntax are checked by scripts/check-observability.sh (make observability-check).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::common::*;

/// Metric families the dashboard must show (docs/observability.md lists the panels).
const ON_THE_DASHBOARD: [&str; 22] = [
    "stock_api_requests_total",
    "stock_api_request_duration_seconds",
    "stock_api_cache_hits_total",
    "stock_api_cache_misses_total",
    "stock_api_cache_stale_total",
    "stock_api_circuit_breaker_state",
    "stock_api_upstream_quota_used",
    "stock_api_upstream_quota_limit",
    "stock_api_external_calls_total",
    "stock_host_component_info",
    "stock_host_swaps_total",
    "stock_host_swap_seconds",
    "stock_host_instantiation_seconds",
    "stock_host_instance_reuses_total",
    "stock_host_traps_total",
    "stock_host_request_timeouts_total",
    "stock_host_kv_fallback",
    "stock_host_kv_operations_total",
    "stock_host_open_connections",
    "stock_host_connections_shed_total",
    "stock_host_in_flight_requests",
    "stock_api_external_call_duration_seconds",
];

/// A file of this repository, by its path from the repository root.
fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("cannot read {}: {e}", full.display()))
}

/// Every `stock_...` identifier in `text` (one not preceded by an identifier character).
fn metric_names(text: &str) -> BTreeSet<String> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut names = BTreeSet::new();
    for (at, _) in text.match_indices("stock_") {
        // `job:stock_x` would be a recording rule's name, `my_stock_x` another name's tail.
        if text[..at].chars().next_back().is_some_and(|c| is_ident(c) || c == ':') {
            continue;
        }
        let end = text[at..].find(|c: char| !is_ident(c)).map_or(text.len(), |n| at + n);
        names.insert(text[at..end].to_owned());
    }
    names
}

/// Metric families declared in a Prometheus text exposition (`# TYPE <name> <type>`), with their types.
fn exported_families(exposition: &str) -> BTreeMap<String, String> {
    exposition
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .map(|(name, kind)| (name.to_owned(), kind.trim().to_owned()))
        .collect()
}

/// The family `name` refers to: itself, or the histogram (`_bucket`, `_sum`, `_count`) or summary (`_sum`,
/// `_count`) it is a series of.
fn family_of(name: &str, families: &BTreeMap<String, String>) -> Result<String, String> {
    if families.contains_key(name) {
        return Ok(name.to_owned());
    }
    const SERIES: [(&str, &[&str]); 3] =
        [("_bucket", &["histogram"]), ("_sum", &["histogram", "summary"]), ("_count", &["histogram", "summary"])];
    for (suffix, kinds) in SERIES {
        if let Some(family) = name.strip_suffix(suffix) {
            match families.get(family) {
                Some(kind) if kinds.contains(&kind.as_str()) => return Ok(family.to_owned()),
                Some(kind) => return Err(format!("{name}: {family} is a {kind}, it has no {suffix} series")),
                None => {}
            }
        }
    }
    Err(format!("{name}: no such metric family on /metrics"))
}

/// Every query string in the dashboard with where it is: `expr` of panel targets (rows included) and
/// annotations, and the variables' `query`/`definition`.
fn dashboard_queries(value: &serde_json::Value, at: &str, out: &mut Vec<(String, String)>) {
    match value {
        serde_json::Value::Object(map) => {
            let here = match map.get("title").and_then(|t| t.as_str()) {
                Some(title) => format!("{at} ({title:?})"),
                None => at.to_owned(),
            };
            for (key, child) in map {
                match (key.as_str(), child) {
                    ("expr" | "query" | "definition", serde_json::Value::String(text)) => out.push((format!("{here}.{key}"), text.clone())),
                    _ => dashboard_queries(child, &format!("{here}.{key}"), out),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                dashboard_queries(item, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// The names in `text` that are not exported families (or their series), one line each.
fn unknown_names(text: &str, families: &BTreeMap<String, String>) -> Vec<String> {
    metric_names(text).iter().filter_map(|name| family_of(name, families).err()).collect()
}

#[test]
fn the_dashboard_and_the_alerts_name_only_exported_metrics() {
    let sim = Sim::start();
    let host = Host::with_sim(&sim, "a-long-key", &[]);
    // A miss, a hit, a 404 and the probes: every labelled family has a series (an empty one is not exported).
    for (path, status) in [("/MSFT/7", 200), ("/MSFT/7", 200), ("/IBM/3", 200), ("/NOSUCH/2", 404), ("/health", 200), ("/ready", 200)] {
        assert_eq!(get(host.addr, path).status, status, "{path}");
    }
    let exposition = host.metrics();
    let families = exported_families(&exposition);
    assert!(families.len() >= ON_THE_DASHBOARD.len(), "too few families on /metrics:\n{exposition}");

    // The dashboard: each query, named by where it is.
    let dashboard_text = repo_file("docs/grafana-dashboard.json");
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard_text).expect("docs/grafana-dashboard.json is JSON");
    let mut queries = Vec::new();
    dashboard_queries(&dashboard, "dashboard", &mut queries);
    let panel_targets = queries.iter().filter(|(at, _)| at.contains(".targets[") && at.ends_with(".expr")).count();
    assert!(panel_targets >= 20, "only {panel_targets} panel target expressions found: {queries:#?}");
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    for (at, query) in &queries {
        let names = metric_names(query);
        if at.ends_with(".expr") && names.is_empty() {
            problems.push(format!("{at}: names no stock_* metric: {query}"));
        }
        for name in names {
            match family_of(&name, &families) {
                Ok(family) => {
                    used.insert(family);
                }
                Err(why) => problems.push(format!("{at}: {why}")),
            }
        }
    }
    // Then every other mention (titles, descriptions).
    problems.extend(unknown_names(&dashboard_text, &families).into_iter().map(|why| format!("docs/grafana-dashboard.json: {why}")));
    for family in ON_THE_DASHBOARD {
        if !used.contains(family) {
            problems.push(format!("docs/grafana-dashboard.json: no query shows {family}"));
        }
    }

    // The alert rules, and the PrometheusRule rendered from them: the whole text.
    for path in ["docs/alerts.yaml", "k8s/monitoring/prometheusrule.yaml"] {
        let text = repo_file(path);
        let names = metric_names(&text);
        assert!(names.len() >= 10, "{path}: only {} stock_* names found: {names:?}", names.len());
        problems.extend(unknown_names(&text, &families).into_iter().map(|why| format!("{path}: {why}")));
    }

    assert!(
        problems.is_empty(),
        "metric names that a live host does not export:\n  {}\nfamilies on /metrics: {:?}",
        problems.join("\n  "),
        families.keys().collect::<Vec<_>>()
    );
}

#[test]
fn names_resolve_to_families_and_unknown_ones_are_reported() {
    let families = exported_families(
        "# HELP stock_api_request_duration_seconds x\n# TYPE stock_api_request_duration_seconds histogram\n\
         # TYPE stock_api_requests_total counter\n# TYPE stock_host_kv_fallback gauge\n",
    );
    let found = metric_names(
        r#"sum(rate(stock_api_request_duration_seconds_bucket{route=~"/x"}[5m])) / my_stock_thing
           + stock_api_requests_total - stock_host_kv_fallbak + stock_api_requests_total_count + job:stock_x:rate5m
           (see stock_api_requests_total: a counter)"#,
    );
    assert_eq!(
        found.iter().map(String::as_str).collect::<Vec<_>>(),
        [
            "stock_api_request_duration_seconds_bucket",
            "stock_api_requests_total",
            "stock_api_requests_total_count",
            "stock_host_kv_fallbak"
        ],
        "identifiers only, not the tail of another name"
    );
    assert_eq!(family_of("stock_api_request_duration_seconds_bucket", &families).as_deref(), Ok("stock_api_request_duration_seconds"));
    assert_eq!(family_of("stock_api_request_duration_seconds_count", &families).as_deref(), Ok("stock_api_request_duration_seconds"));
    assert_eq!(family_of("stock_host_kv_fallback", &families).as_deref(), Ok("stock_host_kv_fallback"));
    assert!(family_of("stock_host_kv_fallbak", &families).is_err(), "a misspelt name");
    assert!(family_of("stock_api_requests_total_count", &families).is_err(), "a counter has no _count series");
    assert!(family_of("stock_api_requests", &families).is_err(), "a prefix is not a family");
}
