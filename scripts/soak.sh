#!/usr/bin/env bash
# Soak: steady load on stock-host while the simulated upstream flaps through its fault modes.
# Reports requests, statuses, upstream calls and RSS at start and end; fails when RSS grows past the
# stated bound or any answer is a 500 (a 5xx other than the documented 502/503/504 is a bug).
# Loopback only, bounded in time. Run through `make soak` (SOAK_SECONDS, default 300).
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_TOTAL=${SOAK_SECONDS:-300}
FLAP_EVERY=${SOAK_FLAP_SECONDS:-10}
RSS_GROWTH_LIMIT_KB=${SOAK_RSS_GROWTH_KB:-32768}
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

sim_port=$(free_port); host_port=$(free_port); admin_port=$(free_port)
target/release/alphavantage-sim --addr "127.0.0.1:$sim_port" >/dev/null 2>&1 & pids+=($!)
wait_port "$sim_port"
BIND=127.0.0.1 PORT=$host_port ADMIN_PORT=$admin_port APIKEY=soak-key LOG_LEVEL=warn CACHE_TTL=2s UPSTREAM_TIMEOUT=2s \
  REQUEST_TIMEOUT=5s UPSTREAM_DAILY_QUOTA=0 CIRCUIT_BREAKER_TIMEOUT=5s ALPHAVANTAGE_URL="http://127.0.0.1:$sim_port/query" \
  target/release/stock-host serve >"$work/host.log" 2>&1 & host_pid=$!; pids+=($host_pid)
wait_port "$host_port"

# Every known symbol, a spread of windows, some unknown symbols and bad input.
cat >"$work/paths.lua" <<'LUA'
local paths = {}
for _, s in ipairs({"MSFT","AAPL","IBM","GOOGL","AMZN","NVDA","TSLA","META","BRK.B","SPY","QQQ"}) do
  for _, d in ipairs({"1","7","30","100"}) do table.insert(paths, "/" .. s .. "/" .. d) end
end
for _, p in ipairs({"/NOSUCH/3","/ZZZZ","/bad$/1","/MSFT/0","/circuit-breaker","/ready"}) do table.insert(paths, p) end
request = function() return wrk.format("GET", paths[math.random(#paths)]) end
LUA

for path in /MSFT/7 /AAPL/7 /IBM/7; do curl -s -o /dev/null "http://127.0.0.1:$host_port$path"; done
rss_start=$(rss_kb "$host_pid")
echo "soak: ${SECONDS_TOTAL}s of load, upstream flapping every ${FLAP_EVERY}s; host RSS at start ${rss_start} KB"

wrk -t2 -c16 -d"${SECONDS_TOTAL}s" -s "$work/paths.lua" "http://127.0.0.1:$host_port" >"$work/wrk.txt" 2>&1 & wrk_pid=$!
modes=(none http-500 latency reset none malformed note none hang empty-series none http-503 information none)
deadline=$((SECONDS + SECONDS_TOTAL))
i=0
while kill -0 "$wrk_pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
  mode=${modes[$((i % ${#modes[@]}))]}
  curl -s -o /dev/null -X PUT "http://127.0.0.1:$sim_port/_sim/fault?mode=$mode&latency_ms=300" || true
  i=$((i + 1))
  sleep "$FLAP_EVERY"
done
wait "$wrk_pid" || true
curl -s -o /dev/null -X PUT "http://127.0.0.1:$sim_port/_sim/fault?mode=none" || true
rss_end=$(rss_kb "$host_pid")

metrics=$(curl -s "http://127.0.0.1:$admin_port/metrics")
requests=$(awk '/^Requests\/sec/ {print $2}' "$work/wrk.txt")
total=$(awk '/requests in/ {print $1}' "$work/wrk.txt")
calls=$(curl -s "http://127.0.0.1:$sim_port/_sim/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["calls"])')
echo
echo "requests: $total ($requests/s); upstream calls: $calls; fault modes cycled: $i"
echo "answers by status (stock_api_requests_total, summed over routes):"
echo "$metrics" | python3 -c '
import re, sys, collections
by = collections.Counter()
for line in sys.stdin:
    m = re.match(r"stock_api_requests_total\{.*status=\"(\d+)\".*\} (\d+)", line)
    if m: by[m.group(1)] += int(m.group(2))
for status, n in sorted(by.items()): print(f"  {status}: {n}")
'
echo "$metrics" | grep -E '^stock_(api_cache_(hits|misses|stale)_total|host_traps_total|host_request_timeouts_total|api_external_calls_total)' | sed 's/^/  /'
growth=$((rss_end - rss_start))
echo "host RSS: start ${rss_start} KB, end ${rss_end} KB, growth ${growth} KB (bound ${RSS_GROWTH_LIMIT_KB} KB)"
fail=0
if [ "$growth" -gt "$RSS_GROWTH_LIMIT_KB" ]; then echo "FAIL: RSS grew past the bound"; fail=1; fi
if echo "$metrics" | grep -qE '^stock_api_requests_total\{.*status="500"'; then echo "FAIL: 500 answers during the soak"; fail=1; fi
[ "$fail" = 0 ] && echo "soak: ok"
exit "$fail"
