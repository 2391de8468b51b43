#!/usr/bin/env bash
# Opens BASE_URL/docs in Debian's headless Chromium with every other host blocked, and checks that
# Scalar's API reference rendered the operations of docs/openapi.json without anything leaving the
# service's host. Takes a screenshot (default target/docs-page.png).
#
#   scripts/check-docs-page.sh BASE_URL [SCREENSHOT]      e.g. scripts/check-docs-page.sh http://127.0.0.1:8080
#   scripts/check-docs-page.sh --local [SCREENSHOT]       without the host: the page from docs/api-docs.md, the
#                                                         bundle from target/docs-assets (make docs-assets) and
#                                                         docs/openapi.json, served by python3 -m http.server
#
# Blocking: DNS for every name but BASE_URL's host maps to ~NOTFOUND, and every request that is not to
# BASE_URL's host or loopback goes through a proxy on a dead loopback port, so it fails. The page's own
# Content-Security-Policy blocks other origins too. The check fails on any request the page itself tried
# to send elsewhere (from Chromium's netlog), on any CSP violation or uncaught error in the console, on a
# missing operation summary/path or title, and on UI that would call out (Ask AI, client.scalar.com
# button, fonts.scalar.com). Chromium's own background requests (update checks...) are blocked and only
# counted. Needs `apt-get install -y chromium` (or CHROMIUM=/path/to/chromium) and python3.
# Env: DOCS_CHECK_BUDGET_MS (virtual time budget, default 20000), DOCS_CHECK_TIMEOUT (seconds, 120),
# DOCS_CHECK_ARTIFACTS=DIR keeps the DOM dump, chromium's log and the netlog there.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "check-docs-page: FAIL: $*" >&2; exit 1; }
[ $# -ge 1 ] && [ $# -le 2 ] || { echo "usage: $0 BASE_URL|--local [SCREENSHOT]" >&2; exit 2; }
BASE=${1%/}
SHOT=${2:-target/docs-page.png}
server_pid=
work=$(mktemp -d)
keep() {
  [ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true
  if [ -n "${DOCS_CHECK_ARTIFACTS:-}" ]; then mkdir -p "$DOCS_CHECK_ARTIFACTS" && cp "$work"/*.* "$DOCS_CHECK_ARTIFACTS"/ 2>/dev/null || true; fi
  rm -rf "$work"
}
trap keep EXIT

if [ "$BASE" = --local ]; then
  bundle=target/docs-assets/scalar.standalone.js
  [ -f "$bundle" ] || die "$bundle is missing: run make docs-assets (scripts/docs-assets.sh) first"
  mkdir -p "$work/site/docs"
  cp "$bundle" "$work/site/docs/scalar.standalone.js"
  cp docs/openapi.json "$work/site/openapi.json"
  python3 - docs/api-docs.md "$work/site/docs/index.html" <<'PY' || die "no html code block in docs/api-docs.md"
import re, sys
blocks = re.findall(r"^```html\n(.*?)^```", open(sys.argv[1]).read(), flags=re.S | re.M)
if not blocks:
    sys.exit(1)
open(sys.argv[2], "w").write(blocks[0])
PY
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
  python3 -m http.server --bind 127.0.0.1 --directory "$work/site" "$port" >"$work/http-server.log" 2>&1 &
  server_pid=$!
  python3 - "$port" <<'PY' || die "python3 -m http.server did not start on 127.0.0.1:$port"
import socket, sys, time
for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
PY
  BASE=http://127.0.0.1:$port
  echo "check-docs-page: serving the page of docs/api-docs.md, $bundle and docs/openapi.json on $BASE" >&2
fi
SPEC=docs/openapi.json
CHROMIUM=${CHROMIUM:-chromium}
BUDGET_MS=${DOCS_CHECK_BUDGET_MS:-20000}
TIMEOUT=${DOCS_CHECK_TIMEOUT:-120}

command -v "$CHROMIUM" >/dev/null || die "'$CHROMIUM' not found; install it with: apt-get install -y chromium"
[ -f "$SPEC" ] || die "$SPEC not found"
host=$(python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); assert p.scheme in ("http", "https") and p.hostname; print(p.hostname)' "$BASE" 2>/dev/null) \
  || die "BASE_URL must look like http://127.0.0.1:8080 (got '$BASE')"
# A loopback port nothing listens on: the proxy every blocked request is sent to.
dead_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')

mkdir -p "$(dirname "$SHOT")"
rm -f "$SHOT"

start=$(date +%s.%N)
set +e
timeout "$TIMEOUT" "$CHROMIUM" \
  --headless=new --no-sandbox --disable-gpu --hide-scrollbars \
  --user-data-dir="$work/profile" --no-first-run --no-default-browser-check \
  --disable-background-networking --disable-component-update --disable-sync --disable-default-apps \
  --disable-domain-reliability --disable-client-side-phishing-detection \
  --disable-features=AutofillServerCommunication,Translate,OptimizationHints,MediaRouter \
  --force-webrtc-ip-handling-policy=disable_non_proxied_udp \
  --host-resolver-rules="MAP * ~NOTFOUND , EXCLUDE $host" \
  --proxy-server="http://127.0.0.1:$dead_port" --proxy-bypass-list="$host;127.0.0.1;localhost;[::1]" \
  --enable-logging=stderr --v=0 --log-net-log="$work/netlog.json" \
  --virtual-time-budget="$BUDGET_MS" --run-all-compositor-stages-before-draw \
  --window-size=1280,1600 --screenshot="$SHOT" --dump-dom \
  "$BASE/docs" >"$work/dom.html" 2>"$work/chromium.log"
rc=$?
set -e
elapsed=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$start" "$(date +%s.%N)")
if [ "$rc" -ne 0 ]; then
  tail -n 20 "$work/chromium.log" >&2
  [ "$rc" -eq 124 ] && die "chromium did not finish within ${TIMEOUT}s"
  die "chromium exited with $rc after ${elapsed}s"
fi

python3 - "$BASE" "$host" "$SPEC" "$work/dom.html" "$work/chromium.log" "$work/netlog.json" "$SHOT" "$elapsed" <<'PY'
import html, json, os, re, sys, urllib.parse

base, host, spec_path, dom_path, log_path, netlog_path, shot, elapsed = sys.argv[1:]
problems = []

# What must be on the page: the title, every operation summary and every path of docs/openapi.json.
spec = json.load(open(spec_path))
expected = [spec["info"]["title"]]
for path, item in spec["paths"].items():
    expected.append(path)
    for method, op in item.items():
        if isinstance(op, dict) and op.get("summary"):
            expected.append(op["summary"])

dom = open(dom_path, encoding="utf-8", errors="replace").read()
body = re.sub(r"<(head|script|style)\b.*?</\1>", " ", dom, flags=re.S | re.I)
text = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body)))
missing = [e for e in expected if e not in text]
if missing:
    problems.append(f"the API reference did not render {len(missing)} of {len(expected)} expected texts "
                    f"(title, operation summaries, paths) of {spec_path}, e.g. " + "; ".join(missing[:4]))

# UI that would send the document or the reader elsewhere must be configured away.
for needle, what in [("fonts.scalar.com", "default fonts from fonts.scalar.com (withDefaultFonts)"),
                     ("client.scalar.com", "the 'Open API Client' button (hideClientButton)"),
                     ("proxy.scalar.com", "Scalar's proxy (proxyUrl)")]:
    if needle in dom:
        problems.append(f"the page still contains {what}")
for needle, what in [("Ask AI", "the Ask AI agent (agent.disabled)"),
                     ("Developer Tools", "the developer toolbar with share/SDK upload (showDeveloperTools)")]:
    if needle in text:
        problems.append(f"the page still shows {what}")

# Console: CSP violations are requests the page tried to send to other origins.
console = [l for l in open(log_path, errors="replace") if ":CONSOLE" in l]
for l in console:
    if "Content Security Policy" in l or "Uncaught" in l:
        problems.append("console: " + l.strip()[:400])

# Netlog: every URL request the page (not Chromium itself) started must stay on BASE_URL's host.
raw = open(netlog_path, errors="replace").read()
try:
    netlog = json.loads(raw)
except json.JSONDecodeError:  # chromium was cut short: close the events list
    netlog = json.loads(raw.rstrip().rstrip(",") + "]}")
types = {v: k for k, v in netlog["constants"]["logEventTypes"].items()}
errors = {v: k for k, v in netlog["constants"].get("netError", {}).items()}
requests = {}  # netlog source id -> {url, by_page, status, error}
for ev in netlog["events"]:
    p, t = ev.get("params", {}), types.get(ev["type"])
    r = requests.setdefault(ev["source"]["id"], {"url": None, "by_page": False, "status": None, "error": None})
    if t == "URL_REQUEST_START_JOB" and p.get("url"):
        r["url"] = r["url"] or p["url"]  # the first one; a redirect starts another job on the same source
        r["by_page"] |= p.get("initiator", "not an origin") != "not an origin" or p.get("request_type") == "main frame"
    elif t == "HTTP_TRANSACTION_READ_RESPONSE_HEADERS" and p.get("headers"):
        r["status"] = p["headers"][0]
    if isinstance(p.get("net_error"), int) and p["net_error"] < 0:
        r["error"] = errors.get(p["net_error"], p["net_error"])
local = {host, "127.0.0.1", "localhost", "::1", "[::1]"}
is_local = lambda url: (lambda h: h in local or h.startswith("127."))(urllib.parse.urlsplit(url).hostname or "")
page = [r for r in requests.values() if r["url"] and r["by_page"]]
own = [r for r in requests.values() if r["url"] and not r["by_page"] and not is_local(r["url"])]
outside = {}
for r in page:
    if not is_local(r["url"]):
        outside.setdefault(r["url"], []).append(r)
for url, rs in sorted(outside.items()):
    answered = [r["status"] for r in rs if r["status"]]
    errs = sorted({str(r["error"]) for r in rs if r["error"]} - {"ERR_CACHE_MISS"}) or ["no answer"]
    fate = f"NOT BLOCKED, answered {answered[0]}" if answered else "blocked: " + ", ".join(errs)
    problems.append(f"the page tried to reach {url[:200]} ({fate})")
for r in own:
    if r["status"] is not None:
        problems.append(f"blocking failed: chromium itself reached {r['url'][:200]} ({r['status']})")
for path in ("/docs", "/docs/scalar.standalone.js", "/openapi.json"):
    hits = [r for r in page if is_local(r["url"]) and urllib.parse.urlsplit(r["url"]).path.rstrip("/") == path]
    if not hits:
        problems.append(f"the page never requested {base}{path}")
    elif not any(r["status"] and re.match(r"HTTP/\S+ [23]\d\d", r["status"]) for r in hits):
        problems.append(f"{base}{path} answered " + ", ".join(str(r["status"] or r["error"]) for r in hits))
page_urls = [r["url"] for r in page]

if not os.path.exists(shot) or os.path.getsize(shot) == 0:
    problems.append(f"no screenshot was written to {shot}")

if problems:
    print(f"check-docs-page: FAIL: {base}/docs ({elapsed}s in chromium):", file=sys.stderr)
    for p in problems:
        print("  - " + p, file=sys.stderr)
    sys.exit(1)
ops = sum(1 for item in spec["paths"].values() for m, op in item.items() if isinstance(op, dict))
print(f"check-docs-page: OK: {base}/docs rendered {len(spec['paths'])} paths / {ops} operations of {spec_path}; "
      f"{len(set(page_urls))} page requests, none left {host} (chromium's own {len(own)} background requests blocked); "
      f"no CSP violation; screenshot {shot}; chromium {elapsed}s")
PY
