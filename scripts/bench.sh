#!/usr/bin/env bash
# Side by side on loopback, in one run: the host's native /health (baseline), the component through
# stock-host (reuse on and off), the same component under `wasmtime serve` (default flags and with its
# own instance reuse), cold misses through the simulator, swap latency, host memory, and with builds from a
# local registry: start to /ready (cold and warm caches) and tag-move-to-live latency.
# Writes docs/benchmarks.md. Run through `make bench` (BENCH_SECONDS, BENCH_CONNECTIONS).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${BENCH_SECONDS:-10}
CONNECTIONS=${BENCH_CONNECTIONS:-16}
COMPONENT=target/wasm32-wasip2/release/stock_component.wasm
# The test-only build (make fixture): its /_fixture/floor answers a fixed 200 with no keyvalue and no configuration read,
# the floor of one component call on this stack.
FIXTURE=target/fixtures/stock_component_fixture.wasm
[ -f "$FIXTURE" ] || { echo "bench: $FIXTURE is missing: make fixture" >&2; exit 1; }
# The smallest wasi:http@0.3 service (make floor-p3): the same floor through the p3 handler, under `wasmtime serve`.
FLOOR_P3=target/fixtures/stock_floor_p3.wasm
[ -f "$FLOOR_P3" ] || { echo "bench: $FLOOR_P3 is missing: make floor-p3" >&2; exit 1; }
OUT=docs/benchmarks.md
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1==m {print $2}'; }

sim_port=$(free_port)
target/release/alphavantage-sim --addr "127.0.0.1:$sim_port" >/dev/null 2>&1 & pids+=($!)
wait_port "$sim_port"
upstream="http://127.0.0.1:$sim_port/query"

# host <name> [ENV=value...]: starts stock-host with default flags (LOG_LEVEL info, reuse on) plus overrides.
# COMPONENT_CACHE_DIR is in $work, so no run reads or fills ~/.cache/stock-host (each run starts cold).
host_env=(BIND=127.0.0.1 COMPONENT="$COMPONENT" APIKEY=bench-key ALPHAVANTAGE_URL="$upstream" UPSTREAM_DAILY_QUOTA=0
  LOG_FORMAT=json COMPONENT_CACHE_DIR="$work/cache")
declare -A port admin pid
host() {
  local name=$1; shift
  port[$name]=$(free_port); admin[$name]=$(free_port)
  env "${host_env[@]}" PORT="${port[$name]}" ADMIN_PORT="${admin[$name]}" "$@" target/release/stock-host serve >/dev/null 2>&1 &
  pid[$name]=$!; pids+=($!)
  wait_port "${port[$name]}"
}
host reuse
host noreuse MAX_INSTANCE_REUSE=1
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 & pids+=($!)
wait_redis() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$redis_port") 2>/dev/null && return 0; sleep 0.1; done; echo "redis never answered" >&2; exit 1; }
wait_redis
host redis KV_URL="redis://127.0.0.1:$redis_port"
host cold CACHE_TTL=0 NEGATIVE_CACHE_TTL=0
host warn LOG_LEVEL=warn
host wide   # the 128-connection runs, so the reuse host's memory figures stay comparable between runs
host floor COMPONENT="$FIXTURE"
host floorwarn COMPONENT="$FIXTURE" LOG_LEVEL=warn
serve_port=$(free_port); reuse_port=$(free_port)
wasmtime serve --addr "127.0.0.1:$serve_port" -S cli -S keyvalue -S config -S config-var=apikey=bench-key \
  -S "config-var=alphavantage_url=$upstream" "$COMPONENT" >/dev/null 2>&1 & pids+=($!)
wasmtime serve --addr "127.0.0.1:$reuse_port" -O pooling-allocator --max-instance-reuse-count 1000 -S cli -S keyvalue -S config \
  -S config-var=apikey=bench-key -S "config-var=alphavantage_url=$upstream" "$COMPONENT" >/dev/null 2>&1 & pids+=($!)
floor_port=$(free_port)
wasmtime serve --addr "127.0.0.1:$floor_port" -O pooling-allocator --max-instance-reuse-count 1000 -S cli -S keyvalue -S config \
  -S config-var=apikey=bench-key -S "config-var=alphavantage_url=$upstream" "$FIXTURE" >/dev/null 2>&1 & pids+=($!)
# -S cli: Rust's std on wasm32-wasip2 imports wasi:cli@0.2 (environment); wasmtime serve picks the p3 handler itself and
# reuses an instance for up to 16 requests at once (its p3 default), here for 1000 requests like the p2 floor.
p3_floor_port=$(free_port)
wasmtime serve --addr "127.0.0.1:$p3_floor_port" -O pooling-allocator --max-instance-reuse-count 1000 -S cli "$FLOOR_P3" >/dev/null 2>&1 & pids+=($!)
wait_port "$serve_port"; wait_port "$reuse_port"; wait_port "$floor_port"; wait_port "$p3_floor_port"
for url in "http://127.0.0.1:$floor_port/_fixture/floor" "http://127.0.0.1:$p3_floor_port/_fixture/floor"; do
  [ "$(curl -s "$url")" = ok ] || { echo "bench: $url does not answer ok" >&2; exit 1; }
done
for name in reuse noreuse redis warn wide; do curl -sf "http://127.0.0.1:${port[$name]}/MSFT/7" >/dev/null; done   # later requests are HITs
rss_idle=$(rss_kb "${pid[reuse]}")

h() { echo "http://127.0.0.1:${port[$1]}$2"; }
# name | url | what it measures [| connections, when not $CONNECTIONS]
scenarios=(
  "host native /health|$(h reuse /health)|HTTP stack and access log only, no WebAssembly (baseline)"
  "host /MSFT/7 cached, reuse on|$(h reuse /MSFT/7)|the default: reused instance, one keyvalue get, render"
  "host native /health, 128 connections|$(h wide /health)|the baseline at 128 connections (p99)|128"
  "host /MSFT/7 cached, 128 connections|$(h wide /MSFT/7)|the default cached read at 128 connections (p99)|128"
  "host native /health, LOG_LEVEL warn|$(h warn /health)|the baseline without the access log line|"
  "host /MSFT/7 cached, LOG_LEVEL warn|$(h warn /MSFT/7)|the cached read without the access log line|"
  "host /MSFT/7 cached, reuse off|$(h noreuse /MSFT/7)|MAX_INSTANCE_REUSE=1: a fresh instance per request"
  "host /MSFT/7 cached, Redis|$(h redis /MSFT/7)|KV_URL=redis://...: the cached read through Redis (loopback)"
  "host /openapi.json, reuse on|$(h reuse /openapi.json)|a component route without upstream or cache"
  "wasmtime serve /openapi.json|http://127.0.0.1:$serve_port/openapi.json|the same component and route, default flags"
  "wasmtime serve /openapi.json, reuse|http://127.0.0.1:$reuse_port/openapi.json|-O pooling-allocator --max-instance-reuse-count 1000"
  "host floor|$(h floor /_fixture/floor)|the floor: a component call that reads nothing and answers a fixed 200 (test-only build)"
  "host floor, LOG_LEVEL warn|$(h floorwarn /_fixture/floor)|the floor without the access log line"
  "wasmtime serve floor, reuse|http://127.0.0.1:$floor_port/_fixture/floor|the same floor under wasmtime serve with its own reuse"
  "wasmtime serve p3 floor, reuse|http://127.0.0.1:$p3_floor_port/_fixture/floor|the floor as a wasi:http@0.3 service (component/floor-p3) under wasmtime serve, reuse 1000, 16 at once"
  "host /MSFT/7 cold miss|$(h cold /MSFT/7)|CACHE_TTL=0: single flight and an upstream call through the simulator"
)
sim_msft_calls() { curl -s "http://127.0.0.1:$sim_port/_sim/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["by_symbol"].get("MSFT", 0))'; }
rows=(); declare -A rps_of p99_of
baseline=""
for scenario in "${scenarios[@]}"; do
  IFS='|' read -r name url what connections <<<"$scenario"
  connections=${connections:-$CONNECTIONS}
  if [[ $name == *"cold miss"* ]]; then cached_calls=$(sim_msft_calls); fi
  wrk -t2 -c"$connections" -d1s "$url" >/dev/null 2>&1   # warm-up
  report=$(wrk -t2 -c"$connections" -d"${DURATION}s" --latency "$url")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$report")
  p50=$(awk '$1=="50%" {print $2}' <<<"$report")
  p99=$(awk '$1=="99%" {print $2}' <<<"$report")
  errors=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$report" | tr '\n' ' ')
  baseline=${baseline:-$rps}
  ratio=$(python3 -c "print(f'{$rps / $baseline:.3f}')")
  rps_of[$name]=$rps; p99_of[$name]=$p99
  echo "$name: $rps req/s (p50 $p50, p99 $p99) ratio $ratio ${errors}"
  rows+=("| $name | $what | $rps | $p50 | $p99 | $ratio | ${errors:-none} |")
done
rss_loaded=$(rss_kb "${pid[reuse]}")
inst_sum=$(metric "${admin[noreuse]}" stock_host_instantiation_seconds_sum); inst_count=$(metric "${admin[noreuse]}" stock_host_instantiation_seconds_count)
reuses=$(metric "${admin[reuse]}" stock_host_instance_reuses_total); created=$(metric "${admin[reuse]}" stock_host_instantiation_seconds_count)
cold_calls=$(( $(sim_msft_calls) - cached_calls ))

# Swap latency: ten ConfigMap-style ..data swaps between two builds while wrk loads the host.
vol="$work/volume"; mkdir -p "$vol"
python3 - "$COMPONENT" "$work/marked.wasm" <<'PY'
import sys
data = open(sys.argv[1], "rb").read()
name = b"stock-bench-build"; payload = bytes([len(name)]) + name + b"bench marker"
open(sys.argv[2], "wb").write(data + b"\x00" + bytes([len(payload)]) + payload)
PY
publish() { local gen=$1 src=$2; mkdir -p "$vol/..$gen"; cp "$src" "$vol/..$gen/component.wasm"; ln -sfn "..$gen" "$vol/..data_tmp"; mv -T "$vol/..data_tmp" "$vol/..data"; }
publish 0 "$COMPONENT"; ln -s ..data/component.wasm "$vol/component.wasm"
host swap COMPONENT="$vol/component.wasm"
version_of() { sha256sum "$1" | cut -c1-12; }
wrk -t2 -c8 -d60s "$(h swap /MSFT/7)" >"$work/swap-wrk.txt" 2>&1 & wrk_pid=$!
latencies=()
for i in $(seq 1 10); do
  src=$([ $((i % 2)) = 1 ] && echo "$work/marked.wasm" || echo "$COMPONENT"); want=$(version_of "$src")
  start=$(date +%s.%N); publish "$i" "$src"
  for _ in $(seq 1 500); do
    [ "$(curl -s -o /dev/null -D - "$(h swap /health)" | awk 'tolower($1)=="x-component-version:" {print $2}' | tr -d '\r')" = "$want" ] && break
    sleep 0.01
  done
  latencies+=("$(python3 -c "import time; print(f'{time.time() - $start:.3f}')")")
done
kill -INT "$wrk_pid" 2>/dev/null || true; wait "$wrk_pid" 2>/dev/null || true
swap_stats=$(printf '%s\n' "${latencies[@]}" | sort -n | python3 -c 'import sys; v=[float(x) for x in sys.stdin]; print(f"p50 {v[len(v)//2]:.3f} s, max {v[-1]:.3f} s over {len(v)} swaps")')
swap_load=$(awk '/requests in/ {req = $1; dur = $4; sub(/,$/, "", dur)} /Requests\/sec/ {rps = $2}
  /Non-2xx/ {non2xx = $NF} /Socket errors/ {sub(/^ +/, ""); socket = $0}
  END {printf "%s requests in %s (%s req/s); non-2xx answers: %s; %s", req, dur, rps, non2xx == "" ? "none" : non2xx, socket == "" ? "no socket errors" : socket}' \
  "$work/swap-wrk.txt")
swaps_ok=$(metric "${admin[swap]}" 'stock_host_swaps_total{result="ok"}')

# From a registry: Debian's docker-registry on loopback (storage in $work) holding the release build and the
# marked build as two tags; tag `live` points at the release build.
reg_port=$(free_port); registry="127.0.0.1:$reg_port"; repo="$registry/stock/component"
mkdir -p "$work/registry"
cat >"$work/registry/config.yml" <<YAML
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $work/registry/data}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$reg_port}
YAML
start_registry() { docker-registry serve "$work/registry/config.yml" >>"$work/registry/log" 2>&1 & reg_pid=$!; pids+=($!); wait_port "$reg_port"; }
stop_registry() { kill "$reg_pid"; wait "$reg_pid" 2>/dev/null || true; }
start_registry
push() { COMPONENT_INSECURE_REGISTRIES="$registry" target/release/stock-host push "$1" "oci://$repo:$2"; }
move_live() { skopeo copy --quiet --src-tls-verify=false --dest-tls-verify=false "docker://$repo@$1" "docker://$repo:live"; }
release_digest=$(push "$COMPONENT" release); marked_digest=$(push "$work/marked.wasm" marked)
move_live "$release_digest"
from_registry=(COMPONENT="oci://$repo:live" COMPONENT_INSECURE_REGISTRIES="$registry")
fail() { echo "bench: FAILED: $*" >&2; exit 1; }
# p50 and max (seconds, 3 places) of the numbers on stdin: "p50 max n"
p50_max() { sort -n | python3 -c 'import sys; v=[float(x) for x in sys.stdin]; print(f"{v[len(v)//2]:.3f} {v[-1]:.3f} {len(v)}")'; }

# start_to_ready <checks> [ENV=value...]: starts stock-host (a fresh cache directory first when $fresh_dir is
# set), appends to `ready_s` the seconds from the spawn to the first 200 from /ready on the traffic port
# (polled with curl every ~10 ms), checks each "metric=value" of <checks> on the admin port (an absent
# series counts as 0), and stops it.
start_to_ready() {
  local checks=$1; shift
  local p a t0 hp code="" check name want got
  [ -z "${fresh_dir:-}" ] || rm -rf "$fresh_dir"
  p=$(free_port); a=$(free_port)
  t0=$(date +%s%N)
  env "${host_env[@]}" PORT="$p" ADMIN_PORT="$a" "$@" target/release/stock-host serve >"$work/start.log" 2>&1 & hp=$!; pids+=($!)
  until [ "$code" = 200 ]; do
    kill -0 "$hp" 2>/dev/null || { cat "$work/start.log" >&2; fail "stock-host exited before /ready ($*)"; }
    [ $(( $(date +%s%N) - t0 )) -lt 60000000000 ] || fail "no 200 from /ready within 60 s ($*)"
    sleep 0.01
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$p/ready" || true)
  done
  ready_s+=("$(python3 -c "print(f'{($(date +%s%N) - $t0) / 1e9:.3f}')")")
  for check in $checks; do
    name=${check%=*}; want=${check##*=}; got=$(metric "$a" "$name"); got=${got:-0}
    [ "$got" = "$want" ] || { cat "$work/start.log" >&2; fail "start-to-ready: $name is $got, not $want ($*)"; }
  done
  kill "$hp"; wait "$hp" 2>/dev/null || true
}
hit='stock_host_compiled_cache_total{result="hit"}'; miss='stock_host_compiled_cache_total{result="miss"}'
pulled='stock_host_registry_pulls_total{result="pulled"}'; cached='stock_host_registry_pulls_total{result="cached"}'
from_cache=stock_host_component_from_cache
# start_case <name> <what> <checks> [ENV=value...]: five starts; one row of the table, the median kept by name.
start_rows=(); declare -A start_p50
start_case() {
  local name=$1 what=$2 checks=$3; shift 3
  local p50 max n
  ready_s=()
  for _ in 1 2 3 4 5; do start_to_ready "$checks" "$@"; done
  read -r p50 max n < <(printf '%s\n' "${ready_s[@]}" | p50_max)
  start_p50[$name]=$p50
  echo "start to /ready, $name: median $p50 s, max $max s over $n starts (${ready_s[*]})"
  start_rows+=("| $name | $what | $p50 | $max | $(sed -E 's/stock_host_compiled_cache_total\{result="([a-z]+)"\}/compiled \1/g;
    s/stock_host_registry_pulls_total\{result="([a-z]+)"\}/pulls \1/g; s/stock_host_//g; s/=([0-9]+) /=\1, /g' <<<"$checks") |")
}
warm_up() { ready_s=(); start_to_ready "" "$@"; }   # one unmeasured start that fills a cache directory

# Cold: an empty cache directory on every start (the binary refuses an empty COMPONENT_CACHE_DIR, so the cache
# cannot be switched off from the environment); the compiled code is written after Cranelift, as in production.
fresh_dir="$work/cache-file-cold" start_case "file, empty cache" "Cranelift compiles on every start (the cache directory removed before each)" \
  "$hit=0 $miss=1" COMPONENT_CACHE_DIR="$work/cache-file-cold"
warm_up COMPONENT_CACHE_DIR="$work/cache-file"
start_case "file, warm cache" "the compiled code of this digest from COMPONENT_CACHE_DIR/compiled/" "$hit=1 $miss=0" \
  COMPONENT_CACHE_DIR="$work/cache-file"
fresh_dir="$work/cache-cold" start_case "registry, empty cache" "HEAD, manifest and blob downloaded, then compiled (the cache directory removed before each start)" \
  "$pulled=1 $cached=0 $hit=0 $miss=1" "${from_registry[@]}" COMPONENT_CACHE_DIR="$work/cache-cold"
warm_up "${from_registry[@]}" COMPONENT_CACHE_DIR="$work/cache-registry"
start_case "registry, warm cache" "blob and compiled code cached: nothing downloaded but the tag's HEAD" "$pulled=0 $cached=1 $hit=1 $miss=0" \
  "${from_registry[@]}" COMPONENT_CACHE_DIR="$work/cache-registry"
stop_registry
start_case "registry, warm cache, registry down" "connection refused: the last live digest served from the cache" "$from_cache=1 $pulled=0 $hit=1 $miss=0" \
  "${from_registry[@]}" COMPONENT_CACHE_DIR="$work/cache-registry"
start_registry
start_ratio() { python3 -c "print(f'{${start_p50[$1]} / ${start_p50[$2]}:.${3:-1}f}')"; }

# Tag move to live: a host on oci://...:live polling every second, wrk on it, the tag moved six times between
# the two digests; timed from `skopeo copy` returning to /health answering the new X-Component-Version.
# A random 0.2-1.2 s pause before each move spreads the moves over the poll's phase.
poll_interval=1s
host move "${from_registry[@]}" COMPONENT_POLL_INTERVAL="$poll_interval" COMPONENT_CACHE_DIR="$work/cache-move"
curl -sf "$(h move /MSFT/7)" >/dev/null
wrk -t2 -c8 -d120s "$(h move /MSFT/7)" >"$work/move-wrk.txt" 2>&1 & wrk_pid=$!
move_latencies=(); move_notes=()
for i in 1 2 3 4 5 6; do
  if [ $((i % 2)) = 1 ]; then digest=$marked_digest; want=$(version_of "$work/marked.wasm"); else digest=$release_digest; want=$(version_of "$COMPONENT"); fi
  sleep "$(python3 -c 'import random; print(f"{random.uniform(0.2, 1.2):.3f}")')"
  move_live "$digest"; start=$(date +%s%N); seen=""
  until [ "$seen" = "$want" ]; do
    [ $(( $(date +%s%N) - start )) -lt 30000000000 ] || fail "tag move $i: $want never answered on /health within 30 s"
    sleep 0.01
    seen=$(curl -s -o /dev/null -D - "$(h move /health)" | awk 'tolower($1)=="x-component-version:" {print $2}' | tr -d '\r')
  done
  move_latencies+=("$(python3 -c "print(f'{($(date +%s%N) - $start) / 1e9:.3f}')")")
  move_notes+=("${move_latencies[-1]} s ($([ "$i" = 1 ] && echo "first sight of the marked build" || echo "known digest"))")
done
kill -INT "$wrk_pid" 2>/dev/null || true; wait "$wrk_pid" 2>/dev/null || true
read -r move_p50 move_max move_n < <(printf '%s\n' "${move_latencies[@]}" | p50_max)
move_known_mean=$(printf '%s\n' "${move_latencies[@]:1}" | python3 -c 'import sys; v=[float(x) for x in sys.stdin]; print(f"{sum(v)/len(v):.3f}")')
move_load=$(awk '/requests in|Requests\/sec/' "$work/move-wrk.txt" | tr -s ' ' | sed 's/^ //' | paste -sd ';' | sed 's/;/; /g')
move_errors=$(awk '/Non-2xx|Socket errors/' "$work/move-wrk.txt" | tr -s ' ' | sed 's/^ //' | tr '\n' ';')
move_swaps=$(metric "${admin[move]}" 'stock_host_swaps_total{result="ok"}')
move_pulls="$(metric "${admin[move]}" "$pulled") pulled, $(metric "${admin[move]}" "$cached") from the blob cache"
move_compiled="$(metric "${admin[move]}" "$miss") misses, $(metric "${admin[move]}" "$hit") hits"
move_swap_mean=$(python3 -c "print(f'{$(metric "${admin[move]}" stock_host_swap_seconds_sum) / max($(metric "${admin[move]}" stock_host_swap_seconds_count), 1):.3f}')")
echo "tag move to live: p50 $move_p50 s, max $move_max s over $move_n moves (${move_latencies[*]}); wrk errors: ${move_errors:-none}"
[ -z "$move_errors" ] || { cat "$work/move-wrk.txt" >&2; fail "wrk saw errors while the tag moved: $move_errors"; }
[ "$move_swaps" = 6 ] || fail "stock_host_swaps_total{result=\"ok\"} is $move_swaps after 6 tag moves, not 6"
# What the text below says: Cranelift ran at the start and for the first move only (no lookup for a known digest).
[ "$(metric "${admin[move]}" "$miss")/$(metric "${admin[move]}" "$hit")" = 2/0 ] ||
  fail "compiled-code cache lookups during the tag moves: $move_compiled, not 2 misses (the start, the first move) and 0 hits"

ratio() { python3 -c "print(f'{${rps_of[$1]} / ${rps_of[$2]}:.2f}')"; }
# wrk prints latencies with their unit (us, ms, s).
p99_ratio() { python3 - "${p99_of[$1]}" "${p99_of[$2]}" <<'PY'
import re, sys
def seconds(text):
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[unit]
print(f"{seconds(sys.argv[1]) / seconds(sys.argv[2]):.2f}")
PY
}
{
  echo "# Benchmarks"
  echo
  echo "Written by \`make bench\` (\`scripts/bench.sh\`). Absolute numbers on a shared 2-core machine are noisy;"
  echo "read the ratios, which come from one run of all scenarios side by side (wrk shares the 2 cores)."
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "- machine: $(nproc) cores, $(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | sed 's/^ *//'), $(uname -sr)"
  echo "- command: \`wrk -t2 -c$CONNECTIONS -d${DURATION}s --latency URL\` per scenario after a 1 s warm-up, loopback only"
  echo "- builds: release \`stock-host\` with default flags (LOG_LEVEL info: one JSON access line per request; instance reuse on),"
  echo "  $(wasmtime --version), component $(stat -c %s "$COMPONENT") bytes"
  echo
  echo "| scenario | what it measures | req/s | p50 | p99 | ratio to baseline | errors |"
  echo "|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "## Ratios and targets"
  echo
  echo "- cached \`/MSFT/7\` vs native \`/health\`: $(ratio 'host /MSFT/7 cached, reuse on' 'host native /health') at LOG_LEVEL info (target 0.65), $(ratio 'host /MSFT/7 cached, LOG_LEVEL warn' 'host native /health, LOG_LEVEL warn') at LOG_LEVEL warn (target 0.5)"
  echo "- host vs \`wasmtime serve\` (default flags) on \`/openapi.json\`: $(ratio 'host /openapi.json, reuse on' 'wasmtime serve /openapi.json')x (target 3x)"
  echo "- host vs \`wasmtime serve\` with its own reuse on \`/openapi.json\`: $(ratio 'host /openapi.json, reuse on' 'wasmtime serve /openapi.json, reuse')x (target 1.5x)"
  echo "- cached p99 / native p99: ${p99_of['host /MSFT/7 cached, reuse on']} / ${p99_of['host native /health']} = $(p99_ratio 'host /MSFT/7 cached, reuse on' 'host native /health')x at $CONNECTIONS connections, ${p99_of['host /MSFT/7 cached, 128 connections']} / ${p99_of['host native /health, 128 connections']} = $(p99_ratio 'host /MSFT/7 cached, 128 connections' 'host native /health, 128 connections')x at 128 (target at most 1.5x)"
  echo "- reuse on vs off for cached \`/MSFT/7\`: $(ratio 'host /MSFT/7 cached, reuse on' 'host /MSFT/7 cached, reuse off')x"
  echo "- cached \`/MSFT/7\` through Redis vs in memory: $(ratio 'host /MSFT/7 cached, Redis' 'host /MSFT/7 cached, reuse on')"
  echo "- the floor (a component call that reads nothing) vs native \`/health\`: $(ratio 'host floor' 'host native /health') at LOG_LEVEL info, $(ratio 'host floor, LOG_LEVEL warn' 'host native /health, LOG_LEVEL warn') at warn; cached \`/MSFT/7\` vs the floor: $(ratio 'host /MSFT/7 cached, reuse on' 'host floor') at info, $(ratio 'host /MSFT/7 cached, LOG_LEVEL warn' 'host floor, LOG_LEVEL warn') at warn; the host's floor vs \`wasmtime serve\`'s with reuse: $(ratio 'host floor' 'wasmtime serve floor, reuse')x"
  echo "- \`wasi:http@0.3\` vs p2, the same floor under \`wasmtime serve\` with reuse: $(ratio 'wasmtime serve p3 floor, reuse' 'wasmtime serve floor, reuse')x"
  echo
  echo "## Also measured"
  echo
  echo "- instantiation (reuse off): $(python3 -c "print(f'{$inst_sum / max($inst_count, 1) * 1e6:.0f}')") us mean over $inst_count instantiations"
  echo "- instance reuse (reuse on): $reuses requests served by reused instances, $created instances created ($(python3 -c "print(f'{$created / max($reuses + $created, 1) * 100000:.0f}')") per 100k requests)"
  echo "- upstream calls for MSFT: $cached_calls for the three cached hosts over all their scenarios (one each: the first request; the TTL never ran out), $cold_calls during the cold-miss run (CACHE_TTL=0: every request needs the upstream; single flight shares each call among the concurrent requests)"
  echo "- host RSS (reuse on): ${rss_idle} KB idle, ${rss_loaded} KB after its load"
  echo "- swap latency (ConfigMap \`..data\` rename to the new X-Component-Version answering): $swap_stats; $swaps_ok swaps ok"
  echo "- load during the swaps (\`wrk -t2 -c8\` on \`/MSFT/7\`): $swap_load"
  echo
  echo "## Start and rollout from a registry"
  echo
  echo "Debian's \`docker-registry\` ($(docker-registry --version | awk '{print $NF}')) on loopback holds two builds as two tags, published with"
  echo "\`stock-host push\`: the release component and the marked build (the same component with a custom section appended:"
  echo "another digest, the same code). \`skopeo copy\` ($(skopeo --version | awk '{print $NF}')) points the tag \`live\` at one of them."
  echo
  echo "### Start to /ready"
  echo
  echo "From spawning \`stock-host serve\` to the first 200 from \`/ready\` on the traffic port, polled with curl every ~10 ms"
  echo "(so the figures include up to ~20 ms of polling), five starts per case. After each start the run checks that the"
  echo "metrics say what the case claims and fails otherwise (last column; \`compiled\` is"
  echo "\`stock_host_compiled_cache_total{result}\`, \`pulls\` is \`stock_host_registry_pulls_total{result}\`)."
  echo
  echo "| case | what happens | median s | max s | checked on every start |"
  echo "|---|---|---|---|---|"
  printf '%s\n' "${start_rows[@]}"
  echo
  echo "- cold / warm: a file build starts $(start_ratio 'file, empty cache' 'file, warm cache')x faster with its compiled code cached, a registry build"
  echo "  $(start_ratio 'registry, empty cache' 'registry, warm cache')x faster with blob and compiled code cached (empty cache / warm cache medians). With the registry"
  echo "  down, a warm start takes $(start_ratio 'registry, warm cache, registry down' 'registry, warm cache' 2)x the time of one with it up (a refused connection, then the last live digest from the cache)."
  echo
  echo "### Tag move to live"
  echo
  echo "- a host on \`oci://.../stock/component:live\` with \`COMPONENT_POLL_INTERVAL=$poll_interval\`, \`wrk -t2 -c8\` on \`/MSFT/7\` throughout; the tag"
  echo "  moved $move_n times, alternately to the marked and the release digest, after a random 0.2-1.2 s pause each; timed from"
  echo "  \`skopeo copy\` returning to \`/health\` answering the new \`X-Component-Version\` (polled every ~10 ms)"
  echo "- tag move to live: p50 $move_p50 s, max $move_max s over $move_n moves; in order: $(IFS=';'; echo "${move_notes[*]}" | sed 's/;/, /g')"
  echo "- the poll interval bounds it: a move waits for the next poll (0 to $poll_interval, half of it on average), then the pull"
  echo "  and the swap, so expect about interval/2 + pull + compile. Compile is skipped for a digest seen before: the builds room"
  echo "  keeps the previous build compiled, so only the first move (a digest this host had never run) compiled. The host's own"
  echo "  part, from the poll that saw the move to the new build live (\`stock_host_swap_seconds\`), was $move_swap_mean s on average (the first move's compile included)."
  echo "  The moves to a known digest took $move_known_mean s on average (expected: half the interval plus a few tens of ms of swap). Six moves"
  echo "  sample a wait spread evenly over the interval, so p50 and max move by a few hundred ms from run to run"
  echo "- $move_swaps swaps ok; pulls (the start's included): $move_pulls; compiled-code cache lookups: $move_compiled (checked:"
  echo "  the start and the first move compiled, no move looked up a known digest)"
  echo "- load during the moves (\`wrk -t2 -c8\` on \`/MSFT/7\`): $move_load; errors: ${move_errors:-none}"
} >"$OUT"
echo "wrote $OUT"
cat "$OUT" | sed -n '/## Ratios/,$p'
