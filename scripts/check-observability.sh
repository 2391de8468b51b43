#!/usr/bin/env bash
# Checks the monitoring files offline (no Prometheus, no Grafana, no network):
#
#   scripts/check-observability.sh           (make observability-check; part of make test)
#   scripts/check-observability.sh --write   regenerate k8s/monitoring/prometheusrule.yaml from docs/alerts.yaml
#
# 1. docs/alerts.yaml: `promtool check rules`, then the unit tests `promtool test rules docs/alerts.test.yaml`.
# 2. Every runbook_url in docs/alerts.yaml is `file#anchor` with a file in this repository and a heading of
#    that file whose GitHub anchor is `anchor`.
# 3. k8s/monitoring/prometheusrule.yaml is docs/alerts.yaml wrapped in a monitoring.coreos.com/v1
#    PrometheusRule, byte for byte as this script renders it (docs/alerts.yaml is the one source; --write
#    regenerates it). With PyYAML importable, also parsed: spec.groups equal to the rule file's groups.
# 4. docs/grafana-dashboard.json: `python3 -m json.tool`; then its shape (schemaVersion, the DS_PROMETHEUS
#    input, the datasource/pod/instance variables, unique panel ids, every query on the templated datasource)
#    and every query expression (panel targets, annotations, variable queries) through PromQL's parser:
#    Grafana's variables are replaced with sample values and the expressions checked as recording rules by
#    `promtool check rules`.
# Which metric names the dashboard and the alerts use is checked against a live /metrics by the Rust test
# host/tests/all/observability.rs, not here.
# Needs promtool (Debian package prometheus; `make prereqs-debian`) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

ALERTS=docs/alerts.yaml
ALERT_TESTS=docs/alerts.test.yaml
RULE_CR=k8s/monitoring/prometheusrule.yaml
DASHBOARD=docs/grafana-dashboard.json

write=false
case "${1:-}" in
  --write) write=true ;;
  "") ;;
  *) echo "usage: $0 [--write]" >&2; exit 2 ;;
esac

for tool in promtool python3; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool is not installed (make prereqs-debian installs promtool)" >&2; exit 1; }
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

step() { echo "--- $*"; }

# The PrometheusRule for docs/alerts.yaml: a fixed header, then everything from `groups:` on, indented by two
# spaces under `spec:` (block scalars keep their relative indentation, so the text is the same YAML).
render_prometheusrule() {
  cat <<'EOF'
# GENERATED from docs/alerts.yaml by `scripts/check-observability.sh --write`: edit docs/alerts.yaml, then
# regenerate. `make observability-check` fails when this file and docs/alerts.yaml differ.
#
# The same alerting rules as a Prometheus Operator PrometheusRule (monitoring.coreos.com/v1). Not part of the
# kustomize overlays: the CRD is not in the schemas scripts/k8s-validate.sh validates against. Apply it where
# the operator runs:
#   kubectl apply -n <namespace> -f k8s/monitoring/prometheusrule.yaml
# Prometheus's ruleSelector must match these labels (kube-prometheus-stack: add `release: <helm release>`).
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: stock-host
  labels:
    app.kubernetes.io/name: stock-host
    app.kubernetes.io/component: monitoring
spec:
EOF
  sed -n '/^groups:/,$p' "$ALERTS" | sed 's/^./  &/'
}

# --- 1. rules and their unit tests ---------------------------------------------------------------------
step "promtool check rules $ALERTS"
promtool check rules "$ALERTS"
if [ "$(grep -c '^[^#[:space:]]' "$ALERTS")" != 1 ] || ! grep -q '^groups:' "$ALERTS"; then
  echo "FAIL: $ALERTS must have exactly one top-level key, groups: (the PrometheusRule is rendered from it)" >&2
  exit 1
fi
step "promtool test rules $ALERT_TESTS"
promtool test rules "$ALERT_TESTS"

# --- 2. runbook anchors ----------------------------------------------------------------------------------
step "runbook_url anchors"
python3 - "$ALERTS" <<'EOF'
import os, re, sys

def slug(heading):
    # GitHub's anchor: lower case, punctuation dropped (but - and _), spaces to dashes.
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")

text = open(sys.argv[1], encoding="utf-8").read()
urls = re.findall(r"^\s*runbook_url:\s*(\S+)\s*$", text, re.M)
alerts = re.findall(r"^\s*- alert:\s*(\S+)", text, re.M)
bad = []
if len(urls) != len(alerts):
    bad.append(f"{len(alerts)} alerts but {len(urls)} runbook_url annotations")
for url in urls:
    path, _, anchor = url.strip("\"'").partition("#")
    if not anchor or not os.path.isfile(path):
        bad.append(f"{url}: not <file in this repository>#<anchor>")
        continue
    headings = [slug(m) for m in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", open(path, encoding="utf-8").read(), re.M)]
    if anchor not in headings:
        bad.append(f"{url}: no heading of {path} has the anchor #{anchor}")
for b in bad:
    print("FAIL:", b, file=sys.stderr)
if bad:
    sys.exit(1)
print(f"{len(urls)} runbook links resolve")
EOF

# --- 3. the PrometheusRule -------------------------------------------------------------------------------
step "$RULE_CR is $ALERTS as a PrometheusRule"
render_prometheusrule > "$tmp/prometheusrule.yaml"
if $write; then
  mkdir -p "$(dirname "$RULE_CR")"
  cp "$tmp/prometheusrule.yaml" "$RULE_CR"
  echo "wrote $RULE_CR"
elif ! diff -u "$RULE_CR" "$tmp/prometheusrule.yaml"; then
  echo "FAIL: $RULE_CR differs from what $ALERTS renders (above); run scripts/check-observability.sh --write" >&2
  exit 1
fi
if python3 -c 'import yaml' 2>/dev/null; then
  python3 - "$ALERTS" "$RULE_CR" <<'EOF'
import sys, yaml
rules = yaml.safe_load(open(sys.argv[1], encoding="utf-8"))
cr = yaml.safe_load(open(sys.argv[2], encoding="utf-8"))
assert cr["apiVersion"] == "monitoring.coreos.com/v1" and cr["kind"] == "PrometheusRule", "not a PrometheusRule"
assert cr["metadata"]["name"], "no metadata.name"
assert set(cr["spec"]) == {"groups"}, f"spec has {sorted(cr['spec'])}, want only groups"
assert cr["spec"]["groups"] == rules["groups"], "spec.groups differs from the rule file's groups"
n = sum(len(g["rules"]) for g in rules["groups"])
print(f"same {len(rules['groups'])} groups and {n} rules (parsed)")
EOF
else
  echo "SKIP: PyYAML not importable, the PrometheusRule was compared as text only"
fi

# --- 4. the dashboard ------------------------------------------------------------------------------------
step "python3 -m json.tool $DASHBOARD"
python3 -m json.tool "$DASHBOARD" >/dev/null
step "dashboard shape and PromQL"
python3 - "$DASHBOARD" "$tmp/dashboard-rules.json" <<'EOF'
import json, re, sys

dash = json.load(open(sys.argv[1], encoding="utf-8"))
bad = []
def need(cond, what):
    if not cond:
        bad.append(what)

need(isinstance(dash.get("schemaVersion"), int) and dash["schemaVersion"] >= 36, "schemaVersion missing or below 36")
need(dash.get("id") is None, '"id" must be null so an import creates the dashboard')
need(bool(dash.get("uid")) and bool(dash.get("title")), "uid and title are required")
need(any(i.get("name") == "DS_PROMETHEUS" and i.get("pluginId") == "prometheus" for i in dash.get("__inputs", [])),
     "no DS_PROMETHEUS datasource input in __inputs")
variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
need(variables.get("datasource", {}).get("type") == "datasource" and variables["datasource"].get("query") == "prometheus",
     "no templated datasource variable `datasource` of type prometheus")
need("${DS_PROMETHEUS}" in json.dumps(variables.get("datasource", {})), "the datasource variable does not default to ${DS_PROMETHEUS}")
for name in ("pod", "instance"):
    need(name in variables, f"no ${name} variable")

def walk_panels(panels):
    for p in panels:
        yield p
        yield from walk_panels(p.get("panels", []))

ids = set()
exprs = []  # (where, expr)
for p in walk_panels(dash.get("panels", [])):
    where = f"panel {p.get('id')} {p.get('title')!r}"
    need(isinstance(p.get("id"), int) and p["id"] not in ids, f"{where}: missing or duplicate id")
    ids.add(p.get("id"))
    need({"x", "y", "w", "h"} <= set(p.get("gridPos", {})), f"{where}: no gridPos")
    if p.get("type") == "row":
        continue
    targets = p.get("targets", [])
    need(targets, f"{where}: no targets")
    need(p.get("datasource", {}).get("uid") == "${datasource}", f"{where}: datasource is not ${{datasource}}")
    refs = [t.get("refId") for t in targets]
    need(len(refs) == len(set(refs)), f"{where}: duplicate refId")
    for t in targets:
        need(t.get("datasource", {}).get("uid") == "${datasource}", f"{where} {t.get('refId')}: datasource is not ${{datasource}}")
        need(bool(t.get("expr", "").strip()), f"{where} {t.get('refId')}: empty expr")
        exprs.append((f"{where} {t.get('refId')}", t.get("expr", "")))
for a in dash.get("annotations", {}).get("list", []):
    if a.get("expr"):
        need(a.get("datasource", {}).get("uid") == "${datasource}", f"annotation {a.get('name')!r}: datasource is not ${{datasource}}")
        exprs.append((f"annotation {a.get('name')!r}", a["expr"]))
for name, v in variables.items():
    if v.get("type") == "query":
        query = v.get("query")
        query = query.get("query", "") if isinstance(query, dict) else query or ""
        m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", query)
        need(m is not None, f"variable {name}: query is not label_values(<selector>, <label>): {query!r}")
        if m:
            exprs.append((f"variable {name}", m.group(1)))

# Grafana's interval variables become durations, dashboard variables a regex (they are only used in =~ matchers).
def concrete(expr):
    expr = re.sub(r"\$__(rate_interval|interval|range)\b", "5m", expr)
    return re.sub(r"\$\{?\w+\}?", ".*", expr)

rules = [{"record": f"dashboard:check_{i}", "expr": concrete(e)} for i, (_, e) in enumerate(exprs)]
json.dump({"groups": [{"name": "dashboard-queries", "rules": rules}]}, open(sys.argv[2], "w"), indent=1)
with open(sys.argv[2] + ".where", "w") as f:
    for i, (where, e) in enumerate(exprs):
        f.write(f"dashboard:check_{i}\t{where}\t{e}\n")
for b in bad:
    print("FAIL:", b, file=sys.stderr)
if bad:
    sys.exit(1)
print(f"{len(ids)} panels, {len(exprs)} query expressions")
EOF
if ! promtool check rules "$tmp/dashboard-rules.json" >"$tmp/promtool.out" 2>&1; then
  cat "$tmp/promtool.out" >&2
  echo "FAIL: a dashboard query does not parse; the rule names map to panels as follows:" >&2
  cut -f1,2 "$tmp/dashboard-rules.json.where" >&2
  exit 1
fi
echo "every dashboard query parses"

echo "observability checks passed"
