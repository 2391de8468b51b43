#!/usr/bin/env bash
# One-run A/B of host and component builds, alternated round by round on this machine's loopback: for each
# path, wrk's req/s and p99 and the host's own CPU per request (user + system time from /proc over the run,
# steadier than req/s on a shared 2-core machine). How docs/performance.md's lever figures were taken.
#
#   scripts/ab.sh ROUNDS "PATH..." NAME=HOST_BINARY:COMPONENT...
#   scripts/ab.sh 2 "/health /MSFT/7 /openapi.json" old=/tmp/old-host:old.wasm new=target/release/stock-host:target/wasm32-wasip2/release/stock_component.wasm
#
# AB_SECONDS (6) per path, AB_CONNECTIONS (16); AB_ENV adds settings to every host ("LOG_LEVEL=warn").
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
[ $# -ge 3 ] || { echo "usage: scripts/ab.sh ROUNDS \"PATH...\" NAME=HOST_BINARY:COMPONENT..." >&2; exit 2; }
rounds=$1; paths=$2; shift 2
seconds=${AB_SECONDS:-6}; connections=${AB_CONNECTIONS:-16}
(( rounds >= 1 && rounds <= 10 )) || { echo "ab: ROUNDS must be 1-10" >&2; exit 2; }
command -v wrk >/dev/null || { echo "ab: wrk is missing (make bench installs it)" >&2; exit 1; }
sim_port=$(free_port)
target/release/alphavantage-sim --addr "127.0.0.1:$sim_port" >/dev/null 2>&1 & pids+=($!)
wait_port "$sim_port"
ticks=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
for round in $(seq 1 "$rounds"); do
  for variant in "$@"; do
    name=${variant%%=*}; pair=${variant#*=}; binary=${pair%%:*}; component=${pair#*:}
    [ -x "$binary" ] && [ -f "$component" ] || { echo "ab: $variant: no such host binary or component" >&2; exit 1; }
    port=$(free_port); admin=$(free_port)
    # shellcheck disable=SC2086  # AB_ENV is a list of NAME=value words
    env BIND=127.0.0.1 PORT="$port" ADMIN_PORT="$admin" APIKEY=ab-key ALPHAVANTAGE_URL="http://127.0.0.1:$sim_port/query" \
      UPSTREAM_DAILY_QUOTA=0 COMPONENT="$component" LOG_FORMAT=json COMPONENT_CACHE_DIR="$work/cache" ${AB_ENV:-} \
      "$binary" serve >/dev/null 2>&1 &
    host_pid=$!; pids+=("$host_pid")
    wait_port "$port"
    curl -sf "http://127.0.0.1:$port/MSFT/7" >/dev/null   # the rest are HITs
    line="round $round $name"
    for path in $paths; do
      wrk -t2 -c"$connections" -d1s "http://127.0.0.1:$port$path" >/dev/null   # warm-up
      before=$(cpu_ticks "$host_pid")
      report=$(wrk -t2 -c"$connections" -d"${seconds}s" --latency "http://127.0.0.1:$port$path")
      after=$(cpu_ticks "$host_pid")
      requests=$(awk '/requests in/ {print $1}' <<<"$report")
      rps=$(awk '/Requests\/sec/ {printf "%d", $2}' <<<"$report")
      p99=$(awk '$1=="99%" {print $2}' <<<"$report")
      us=$(python3 -c "print(f'{($after - $before) / $ticks * 1e6 / max($requests, 1):.1f}')")
      line="$line | $path $rps req/s, host ${us} us CPU/request, p99 $p99"
    done
    echo "$line"
    kill "$host_pid"; wait "$host_pid" 2>/dev/null || true
  done
done
