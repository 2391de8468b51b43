#!/usr/bin/env bash
# Side by side on loopback, in one run: the host's native /health (baseline), the component through
# stock-host (reuse on and off), the same component under `wasmtime serve` (default flags and with its
# own instance reuse), cold misses through the simulator, swap latency, and host memory.
# Writes docs/benchmarks.md. Run through `make bench` (BENCH_SECONDS, BENCH_CONNECTIONS).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${BENCH_SECONDS:-10}
CONNECTIONS=${BENCH_CONNECTIONS:-16}
COMPONENT=target/wasm32-wasip2/release/stock_component.wasm
OUT=docs/benchmarks.md
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1==m {print $2}'; }

sim_port=$(free_port)
target/release/alphavantage-sim --addr "127.0.0.1:$sim_port" >/dev/null 2>&1 & pids+=($!)
wait_port "$sim_port"
upstream="http://127.0.0.1:$sim_port/query"

# host <name> [ENV=value...]: starts stock-host with default flags (LOG_LEVEL info, reuse on) plus overrides.
declare -A port admin pid
host() {
  local name=$1; shift
  port[$name]=$(free_port); admin[$name]=$(free_port)
  env BIND=127.0.0.1 PORT="${port[$name]}" ADMIN_PORT="${admin[$name]}" COMPONENT="$COMPONENT" APIKEY=bench-key \
    ALPHAVANTAGE_URL="$upstream" UPSTREAM_DAILY_QUOTA=0 LOG_FORMAT=json "$@" target/release/stock-host serve >/dev/null 2>&1 &
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
serve_port=$(free_port); reuse_port=$(free_port)
wasmtime serve --addr "127.0.0.1:$serve_port" -S cli -S keyvalue -S config -S config-var=apikey=bench-key \
  -S "config-var=alphavantage_url=$upstream" "$COMPONENT" >/dev/null 2>&1 & pids+=($!)
wasmtime serve --addr "127.0.0.1:$reuse_port" -O pooling-allocator --max-instance-reuse-count 1000 -S cli -S keyvalue -S config \
  -S config-var=apikey=bench-key -S "config-var=alphavantage_url=$upstream" "$COMPONENT" >/dev/null 2>&1 & pids+=($!)
wait_port "$serve_port"; wait_port "$reuse_port"
for name in reuse noreuse redis; do curl -sf "http://127.0.0.1:${port[$name]}/MSFT/7" >/dev/null; done   # later requests are HITs
rss_idle=$(rss_kb "${pid[reuse]}")

h() { echo "http://127.0.0.1:${port[$1]}$2"; }
# name | url | what it measures
scenarios=(
  "host native /health|$(h reuse /health)|HTTP stack and access log only, no WebAssembly (baseline)"
  "host /MSFT/7 cached, reuse on|$(h reuse /MSFT/7)|the default: reused instance, one keyvalue get, render"
  "host /MSFT/7 cached, reuse off|$(h noreuse /MSFT/7)|MAX_INSTANCE_REUSE=1: a fresh instance per request"
  "host /MSFT/7 cached, Redis|$(h redis /MSFT/7)|KV_URL=redis://...: the cached read through Redis (loopback)"
  "host /openapi.json, reuse on|$(h reuse /openapi.json)|a component route without upstream or cache"
  "wasmtime serve /openapi.json|http://127.0.0.1:$serve_port/openapi.json|the same component and route, default flags"
  "wasmtime serve /openapi.json, reuse|http://127.0.0.1:$reuse_port/openapi.json|-O pooling-allocator --max-instance-reuse-count 1000"
  "host /MSFT/7 cold miss|$(h cold /MSFT/7)|CACHE_TTL=0: single flight and an upstream call through the simulator"
)
sim_msft_calls() { curl -s "http://127.0.0.1:$sim_port/_sim/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["by_symbol"].get("MSFT", 0))'; }
rows=(); declare -A rps_of p99_of
baseline=""
for scenario in "${scenarios[@]}"; do
  IFS='|' read -r name url what <<<"$scenario"
  if [[ $name == *"cold miss"* ]]; then cached_calls=$(sim_msft_calls); fi
  wrk -t2 -c"$CONNECTIONS" -d1s "$url" >/dev/null 2>&1   # warm-up
  report=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency "$url")
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
swap_load=$(awk '/requests in|Non-2xx|Socket errors|Requests\/sec/' "$work/swap-wrk.txt" | tr -s ' ' | tr '\n' ';')
swaps_ok=$(metric "${admin[swap]}" 'stock_host_swaps_total{result="ok"}')

ratio() { python3 -c "print(f'{${rps_of[$1]} / ${rps_of[$2]}:.2f}')"; }
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
  echo "- cached \`/MSFT/7\` vs native \`/health\`: $(ratio 'host /MSFT/7 cached, reuse on' 'host native /health') (target 0.35)"
  echo "- host vs \`wasmtime serve\` (default flags) on \`/openapi.json\`: $(ratio 'host /openapi.json, reuse on' 'wasmtime serve /openapi.json')x (target 3x)"
  echo "- host vs \`wasmtime serve\` with its own reuse on \`/openapi.json\`: $(ratio 'host /openapi.json, reuse on' 'wasmtime serve /openapi.json, reuse')x"
  echo "- cached p99 / native p99 at $CONNECTIONS connections: ${p99_of['host /MSFT/7 cached, reuse on']} / ${p99_of['host native /health']} (target at most 3x)"
  echo "- reuse on vs off for cached \`/MSFT/7\`: $(ratio 'host /MSFT/7 cached, reuse on' 'host /MSFT/7 cached, reuse off')x"
  echo "- cached \`/MSFT/7\` through Redis vs in memory: $(ratio 'host /MSFT/7 cached, Redis' 'host /MSFT/7 cached, reuse on')"
  echo
  echo "## Also measured"
  echo
  echo "- instantiation (reuse off): $(python3 -c "print(f'{$inst_sum / max($inst_count, 1) * 1e6:.0f}')") us mean over $inst_count instantiations"
  echo "- instance reuse (reuse on): $reuses requests served by reused instances, $created instances created"
  echo "- upstream calls for MSFT: $cached_calls for the three cached hosts over all their scenarios (one each: the first request; the TTL never ran out), $cold_calls during the cold-miss run (CACHE_TTL=0: every request needs the upstream; single flight shares each call among the concurrent requests)"
  echo "- host RSS (reuse on): ${rss_idle} KB idle, ${rss_loaded} KB after its load"
  echo "- swap latency (ConfigMap \`..data\` rename to the new X-Component-Version answering): $swap_stats; $swaps_ok swaps ok"
  echo "- load during the swaps (\`wrk -t2 -c8\` on \`/MSFT/7\`): $swap_load"
} >"$OUT"
echo "wrote $OUT"
cat "$OUT" | sed -n '/## Ratios/,$p'
