#!/usr/bin/env bash
# Side-by-side throughput on loopback: stock-host vs `wasmtime serve` on the same component, with the
# host's native /health as the baseline. Writes docs/benchmarks.md. Run through `make bench`.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${BENCH_SECONDS:-10}
CONNECTIONS=${BENCH_CONNECTIONS:-16}
COMPONENT=target/wasm32-wasip2/release/stock_component.wasm
OUT=docs/benchmarks.md
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 200); do curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0; sleep 0.1; done; echo "port $1 never answered" >&2; exit 1; }

sim_port=$(free_port); host_port=$(free_port); admin_port=$(free_port); serve_port=$(free_port)
target/release/alphavantage-sim --addr "127.0.0.1:$sim_port" >/dev/null 2>&1 & pids+=($!)
wait_port "$sim_port" || true
BIND=127.0.0.1 PORT=$host_port ADMIN_PORT=$admin_port COMPONENT=$COMPONENT APIKEY=bench-key LOG_LEVEL=warn \
  ALPHAVANTAGE_URL="http://127.0.0.1:$sim_port/query" target/release/stock-host serve >/dev/null 2>&1 & pids+=($!)
wasmtime serve --addr "127.0.0.1:$serve_port" -S cli -S keyvalue -S config -S config-var=apikey=bench-key \
  -S "config-var=alphavantage_url=http://127.0.0.1:$sim_port/query" "$COMPONENT" >/dev/null 2>&1 & pids+=($!)
wait_port "$host_port"; wait_port "$serve_port"
curl -sf "http://127.0.0.1:$host_port/MSFT/7" >/dev/null   # fill the cache: later requests are HITs

# name | url | what it measures
scenarios=(
  "host native /health|http://127.0.0.1:$host_port/health|HTTP stack only, no WebAssembly (baseline)"
  "host /MSFT/7 (cache HIT)|http://127.0.0.1:$host_port/MSFT/7|instance per request, one keyvalue get, render"
  "host /circuit-breaker|http://127.0.0.1:$host_port/circuit-breaker|instance per request, two keyvalue gets"
  "wasmtime serve /circuit-breaker|http://127.0.0.1:$serve_port/circuit-breaker|same component and route under the stock CLI"
)
rows=()
baseline=""
for scenario in "${scenarios[@]}"; do
  IFS='|' read -r name url what <<<"$scenario"
  wrk -t2 -c"$CONNECTIONS" -d1s "$url" >/dev/null 2>&1   # warm-up
  report=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency "$url")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$report")
  p50=$(awk '$1=="50%" {print $2}' <<<"$report")
  p99=$(awk '$1=="99%" {print $2}' <<<"$report")
  errors=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$report" | tr '\n' ' ')
  baseline=${baseline:-$rps}
  ratio=$(python3 -c "print(f'{$rps / $baseline:.3f}')")
  echo "$name: $rps req/s (p50 $p50, p99 $p99) ratio $ratio ${errors}"
  rows+=("| $name | $what | $rps | $p50 | $p99 | $ratio |")
done

{
  echo "# Benchmarks"
  echo
  echo "Written by \`make bench\` (\`scripts/bench.sh\`). Absolute numbers on a shared 2-core machine are noisy;"
  echo "read the ratios, which come from one run of all scenarios side by side."
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "- machine: $(nproc) cores, $(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | sed 's/^ *//'), $(uname -sr)"
  echo "- command: \`wrk -t2 -c$CONNECTIONS -d${DURATION}s --latency URL\` per scenario after a 1 s warm-up, loopback only"
  echo "- builds: release host (\`target/release/stock-host\`, LOG_LEVEL=warn), $(wasmtime --version), component $(stat -c %s "$COMPONENT") bytes"
  echo
  echo "| scenario | what it measures | req/s | p50 | p99 | ratio to baseline |"
  echo "|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "Both WebAssembly servers create a fresh instance per request, so the component scenarios cost about the"
  echo "same: instantiation and the per-request store dominate, not the cache read. Instance reuse is the next lever."
} >"$OUT"
echo "wrote $OUT"
