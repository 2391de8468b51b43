#!/usr/bin/env bash
# Hot-swap demo on loopback: stock-host serves /MSFT/7 under load while the component is swapped back and
# forth, first through a Kubernetes-style ConfigMap volume (atomic `..data` symlink rename), then through
# `PUT /admin/component`; then one `POST /admin/rollback` and one rejected garbage upload. Prints each swap's
# latency (change to visible in X-Component-Version), the load's error count and the host's swap history.
# Usage: scripts/swap-demo.sh [SWAPS]   (default 6; LOAD=curl forces the curl loop instead of wrk)
#        PORT, ADMIN_PORT, SIM_PORT pick the ports (default: free ones), e.g. to watch it from a browser.
# Needs the release builds (make build): target/release/{stock-host,alphavantage-sim} and the component.
set -euo pipefail
cd "$(dirname "$0")/.."

SWAPS=${1:-${SWAPS:-6}}
LOAD=${LOAD:-$(command -v wrk >/dev/null && echo wrk || echo curl)}
LOAD_MAX_SECONDS=120     # the load stops itself after this, whatever happens
VISIBLE_WITHIN=15        # seconds a swap may take to show (the watcher's safety-net poll is 10 s)
HOST_BIN=target/release/stock-host
SIM_BIN=target/release/alphavantage-sim
RELEASE=target/wasm32-wasip2/release/stock_component.wasm
TOKEN="demo-$RANDOM$RANDOM"
for f in "$HOST_BIN" "$SIM_BIN" "$RELEASE"; do [[ -e $f ]] || { echo "missing $f (run make build)" >&2; exit 1; }; done

work=$(mktemp -d "${TMPDIR:-/tmp}/swap-demo.XXXXXX")
pids=()
cleanup() {
  touch "$work/stop"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 300); do curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0; sleep 0.1; done
  echo "nothing answers on port $1; logs in $work" >&2; tail -n 20 "$work"/*.log >&2; exit 1
}
version_of() { sha256sum "$1" | cut -c1-12; }   # what the host reports: first 12 hex of sha256
now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }
served_version() { curl -s -o /dev/null -D - "http://127.0.0.1:$host_port/MSFT/7" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-component-version" {print $2}'; }
admin() { curl -s -H "Authorization: Bearer $TOKEN" "$@"; }

# A second valid build: the release bytes plus a WebAssembly custom section (id 0, LEB128 size, name),
# as with_custom_section in host/tests/all/common.rs does. Same code, different digest.
python3 - "$RELEASE" "$work/marked.wasm" <<'EOF'
import sys
def leb(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        if n == 0:
            return bytes(out + bytes([byte]))
        out.append(byte | 0x80)
name = b"swap-demo-build"
payload = leb(len(name)) + name + b"demo build marker"
data = open(sys.argv[1], "rb").read()
open(sys.argv[2], "wb").write(data + b"\x00" + leb(len(payload)) + payload)
EOF
cp "$RELEASE" "$work/release.wasm"
builds=("$work/release.wasm" "$work/marked.wasm")
versions=("$(version_of "${builds[0]}")" "$(version_of "${builds[1]}")")

# A directory laid out like a mounted ConfigMap: component.wasm -> ..data/component.wasm, ..data -> ..<timestamp>.
# publish() does what the kubelet does: write a new timestamped dir, point ..data_tmp at it, rename it onto
# ..data (one atomic rename(2)), then remove the old timestamped dir.
volume="$work/volume"; mkdir "$volume"; generation=0
publish() {
  local old new
  old=$(readlink "$volume/..data" 2>/dev/null || true)
  generation=$((generation + 1)); new="..$(date -u +%Y_%m_%d_%H_%M_%S).$generation"
  mkdir "$volume/$new"; cp "$1" "$volume/$new/component.wasm"
  ln -sfn "$new" "$volume/..data_tmp"; mv -T "$volume/..data_tmp" "$volume/..data"
  [[ -z $old ]] || rm -rf "${volume:?}/$old"
}
publish "${builds[0]}"; ln -s ..data/component.wasm "$volume/component.wasm"

sim_port=${SIM_PORT:-$(free_port)}; host_port=${PORT:-$(free_port)}; admin_port=${ADMIN_PORT:-$(free_port)}
for p in "$sim_port" "$host_port" "$admin_port"; do
  [[ $p =~ ^[0-9]+$ ]] && ((p >= 1 && p <= 65535)) || { echo "swap-demo: ports must be 1-65535 (got $p)" >&2; exit 2; }
done
[[ $(printf '%s\n' "$sim_port" "$host_port" "$admin_port" | sort -u | wc -l) == 3 ]] ||
  { echo "swap-demo: PORT, ADMIN_PORT and SIM_PORT must differ" >&2; exit 2; }
"$SIM_BIN" --addr "127.0.0.1:$sim_port" >"$work/sim.log" 2>&1 & pids+=($!)
wait_port "$sim_port"
BIND=127.0.0.1 PORT=$host_port ADMIN_PORT=$admin_port COMPONENT="$volume/component.wasm" APIKEY=demo-key \
  ALPHAVANTAGE_URL="http://127.0.0.1:$sim_port/query" ADMIN_TOKEN=$TOKEN LOG_FORMAT=text LOG_LEVEL=info \
  "$HOST_BIN" serve >"$work/host.log" 2>&1 & pids+=($!)
wait_port "$host_port"; wait_port "$admin_port"
curl -sf -o /dev/null "http://127.0.0.1:$host_port/MSFT/7"   # one upstream call; the load then reads the cache
echo "stock-host on :$host_port (admin :$admin_port), COMPONENT=$volume/component.wasm"
echo "builds: release ${versions[0]}, marked ${versions[1]}; running $(served_version); load: $LOAD"

# Load for the whole demo. wrk prints its totals when it gets SIGINT; the curl loop counts non-200 answers.
url="http://127.0.0.1:$host_port/MSFT/7"
if [[ $LOAD == wrk ]]; then
  wrk -t1 -c4 -d"${LOAD_MAX_SECONDS}s" "$url" >"$work/load.txt" 2>&1 & load_pid=$!
else
  ( end=$((SECONDS + LOAD_MAX_SECONDS)); ok=0; bad=0
    while [[ ! -e $work/stop && $SECONDS -lt $end ]]; do
      code=$(curl -s -o /dev/null -m 10 -w '%{http_code}' "$url" || true)
      if [[ $code == 200 ]]; then ok=$((ok + 1)); else bad=$((bad + 1)); echo "load: answer $code" >&2; fi
    done
    echo "$ok $bad" >"$work/load.txt" ) & load_pid=$!
fi
pids+=("$load_pid")
sleep 1

wait_for_version() {   # $1 = wanted version, $2 = start time; prints seconds until /MSFT/7 answers with it
  local deadline=$((SECONDS + VISIBLE_WITHIN))
  until [[ $(served_version) == "$1" ]]; do
    (( SECONDS < deadline )) || { echo "version $1 not visible after ${VISIBLE_WITHIN}s" >&2; tail -n 5 "$work/host.log" >&2; exit 1; }
    sleep 0.02
  done
  since "$2"
}

seen=("$(served_version)"); latencies=()
for i in $(seq 1 "$SWAPS"); do
  want=${versions[i % 2]}; file=${builds[i % 2]}; started=$(now)
  if (( i <= SWAPS / 2 )); then how="ConfigMap ..data rename"; publish "$file"
  else how="PUT /admin/component"
    code=$(admin -o "$work/put.json" -w '%{http_code}' -X PUT --data-binary @"$file" "http://127.0.0.1:$admin_port/admin/component")
    [[ $code == 200 ]] || { echo "upload answered $code: $(cat "$work/put.json")" >&2; exit 1; }
  fi
  took=$(wait_for_version "$want" "$started"); latencies+=("$took"); seen+=("$want")
  printf 'swap %d   via %-24s -> %s visible after %ss\n' "$i" "$how" "$want" "$took"
done

started=$(now)
admin -o "$work/rollback.json" -X POST "http://127.0.0.1:$admin_port/admin/rollback"
[[ $(<"$work/rollback.json") =~ \"version\":\"([0-9a-f]+)\" ]] || { echo "rollback failed: $(<"$work/rollback.json")" >&2; exit 1; }
back=${BASH_REMATCH[1]}
took=$(wait_for_version "$back" "$started")
printf 'rollback via %-24s -> %s visible after %ss\n' "POST /admin/rollback" "$back" "$took"
seen+=("$back")

printf '\0asm this is not a component' >"$work/garbage.wasm"
code=$(admin -o "$work/garbage.json" -w '%{http_code}' -X PUT --data-binary @"$work/garbage.wasm" "http://127.0.0.1:$admin_port/admin/component")
echo "garbage upload answered $code: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("detail"))' "$work/garbage.json")"
[[ $code == 422 ]] || { echo "expected 422" >&2; exit 1; }
echo "after the rejection /MSFT/7 still answers from $(served_version) ($(curl -s -o /dev/null -w '%{http_code}' "$url"))"
sleep 1

# Stop the load and count its errors.
touch "$work/stop"; kill -INT "$load_pid" 2>/dev/null || true; wait "$load_pid" || true
if [[ $LOAD == wrk ]]; then
  requests=$(awk '/requests in/ {print $1}' "$work/load.txt")
  non2xx=$(awk -F': ' '/Non-2xx/ {print $2}' "$work/load.txt"); non2xx=${non2xx:-0}
  socket=$(awk '/Socket errors/ {gsub(",", ""); print $4 + $6 + $8 + $10}' "$work/load.txt"); socket=${socket:-0}
  errors=$((non2xx + socket)); load_summary="wrk: $requests requests, $non2xx non-2xx, $socket socket errors"
else
  read -r ok errors <"$work/load.txt"; load_summary="curl loop: $ok answers 200, $errors errors"
fi

echo; echo "== summary =="
printf 'versions seen:  %s' "${seen[0]}"; printf ' -> %s' "${seen[@]:1}"; echo
echo "swap latencies: ${latencies[*]} s (change to visible in X-Component-Version, client side)"
echo "load:           $load_summary  => errors: $errors"
echo "host log:       $(grep -c 'component build is live' "$work/host.log") x 'component build is live'," \
  "$(grep -c 'component build rejected' "$work/host.log") x 'component build rejected; the running build keeps serving'"
echo "metrics:"; curl -s "http://127.0.0.1:$admin_port/metrics" | grep -E '^stock_host_(swaps_total|swap_seconds_(sum|count)|component_info)' | sed 's/^/  /'
echo "GET /admin/component (history: source, version, result, seconds from change to done):"
curl -s "http://127.0.0.1:$admin_port/admin/component" >"$work/state.json"
python3 - "$work/state.json" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
run, prev = doc["running"], doc["previous"]   # previous: null, or {version, digest, source, reference, since}
print(f"  running {run['version']} (source {run['source']}), previous {prev['version'] if prev else '-'}")
for h in doc["history"]:
    why = f"  [{h['step']}: {h['reason']}]" if h["step"] else ""
    print(f"  {h['source']:<9} {h['version'] or '-':<13} {h['result']:<10} {h['seconds']:.3f}s{why}")
EOF
(( errors == 0 )) || { echo "FAIL: $errors requests failed during the swaps" >&2; exit 1; }
