#!/usr/bin/env python3
"""Renders docs/dashboard.png: the main panels of docs/grafana-dashboard.json, drawn from real metrics.

    python3 scripts/render-dashboard.py [--seconds 30] [--out docs/dashboard.png]
    python3 scripts/render-dashboard.py --traffic http://127.0.0.1:8080 --admin http://127.0.0.1:9090 \
        --sim http://127.0.0.1:8081          (a host and simulator you already run)

Without --traffic/--admin/--sim it starts target/release/alphavantage-sim (80 ms upstream latency) and
target/release/stock-host on free loopback ports (CACHE_TTL=2s so misses keep coming, UPSTREAM_DAILY_QUOTA=100,
CIRCUIT_BREAKER_TIMEOUT=3s so the breaker's probes show in 30 s), and stops them at the end. Needs
`make build` (host, simulator, component) and wrk (`make bench` installs it).

Load: wrk on a few routes for --seconds (8 connections, each pausing 10 ms between requests); a third of the way in, a fault phase: the simulator answers HTTP 500
(`PUT /_sim/fault?mode=http-500&times=20`) while a second wrk asks for symbols nothing has cached yet, and the
phase ends (`mode=none`) at two thirds. /metrics is scraped every second throughout; the samples are kept in
target/obs-render/samples.jsonl. Panels, with the dashboard's queries computed over the scrapes: request rate
by status class, p50/p99 of the price routes, cache hit ratio, breaker state, upstream quota, upstream calls
by outcome.

matplotlib is pinned and installed on first use into a venv at target/obs-venv; the script re-runs itself
there. Not part of make test.
"""

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
VENV = os.path.join(ROOT, "target", "obs-venv")
# matplotlib and what it resolved to on Python 3.11 (2026-11): a venv that needs nothing newer stays the same.
REQUIREMENTS = """matplotlib==3.9.2
contourpy==1.3.3
cycler==0.12.1
fonttools==4.68.0
kiwisolver==1.5.1
numpy==2.4.6
packaging==26.4
pillow==13.0.0
pyparsing==3.3.3
python-dateutil==4.0.0
tzdata==2026.6
"""


def ensure_venv():
    """Re-executes this script under target/obs-venv, creating it (pinned) when needed."""
    python = os.path.join(VENV, "bin", "python")
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV):
        return
    marker = os.path.join(VENV, "requirements.txt")
    if not (os.path.exists(python) and os.path.exists(marker) and open(marker).read() == REQUIREMENTS):
        print(f"installing matplotlib into {os.path.relpath(VENV, ROOT)} (pinned)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write(REQUIREMENTS)
        env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
        subprocess.run([python, "-m", "pip", "install", "-q", "-r", f.name], check=True, env=env)
        os.unlink(f.name)
        with open(marker, "w") as out:
            out.write(REQUIREMENTS)
    os.execv(python, [python, os.path.abspath(__file__)] + sys.argv[1:])


# --- Prometheus text --------------------------------------------------------------------------------------

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text):
    """{(name, ((label, value), ...)): value} for every sample line."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if m:
            labels = tuple(sorted(LABEL.findall(m.group(2) or "")))
            out[(m.group(1), labels)] = float(m.group(3))
    return out


def total(sample, name, **match):
    """Sum of `name` over the series whose labels match (a value, or a callable)."""
    s = 0.0
    for (n, labels), v in sample.items():
        if n != name:
            continue
        d = dict(labels)
        if all((want(d.get(k)) if callable(want) else d.get(k) == want) for k, want in match.items()):
            s += v
    return s


def quantile(q, buckets):
    """histogram_quantile over {le: cumulative count} (the same linear interpolation as Prometheus)."""
    les = sorted(buckets, key=float)
    if not les or buckets[les[-1]] <= 0:
        return None
    rank = q * buckets[les[-1]]
    prev_le, prev_count = 0.0, 0.0
    for le in les:
        count = buckets[le]
        if count >= rank:
            if le == "+Inf":
                return prev_le
            upper = float(le)
            if count == prev_count:
                return upper
            return prev_le + (upper - prev_le) * (rank - prev_count) / (count - prev_count)
        prev_le, prev_count = float(le), count
    return prev_le


# --- processes and load -----------------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, within=60):
    deadline = time.time() + within
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.status
        except Exception:
            if time.time() > deadline:
                raise SystemExit(f"{url} does not answer after {within} s")
            time.sleep(0.1)


def http(method, url):
    req = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.read().decode()


def wrk_script(paths, directory, name, delay_ms):
    """A wrk Lua script cycling through `paths`, each connection pausing `delay_ms` between requests (wrk has
    no rate option; the pause keeps the rate near what a service sees, so misses are a visible share of p99)."""
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write("local paths = {" + ", ".join(json.dumps(p) for p in paths) + "}\n")
        f.write("local i = math.random(#paths)\n")
        f.write("request = function()\n  i = i % #paths + 1\n  return wrk.format(\"GET\", paths[i])\nend\n")
        f.write(f"delay = function()\n  return {delay_ms}\nend\n")
    return path


def start_services(tmp):
    sim_bin = os.path.join(ROOT, "target/release/alphavantage-sim")
    host_bin = os.path.join(ROOT, "target/release/stock-host")
    component = os.path.join(ROOT, "target/wasm32-wasip2/release/stock_component.wasm")
    for path in (sim_bin, host_bin, component):
        if not os.path.exists(path):
            raise SystemExit(f"{os.path.relpath(path, ROOT)} is missing: run `make build` first")
    sim_port, port, admin_port = free_port(), free_port(), free_port()
    sim = subprocess.Popen([sim_bin, "--addr", f"127.0.0.1:{sim_port}", "--latency-ms", "80"],
                           stdout=open(os.path.join(tmp, "sim.log"), "w"), stderr=subprocess.STDOUT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KV_", "APIKEY", "CACHE_", "UPSTREAM_", "CIRCUIT_"))}
    env.update(PORT=str(port), ADMIN_PORT=str(admin_port), BIND="127.0.0.1", APIKEY="render-dashboard-key",
               ALPHAVANTAGE_URL=f"http://127.0.0.1:{sim_port}/query", COMPONENT=component, LOG_LEVEL="warn",
               CACHE_TTL="2s", UPSTREAM_DAILY_QUOTA="100", CIRCUIT_BREAKER_TIMEOUT="3s")
    host = subprocess.Popen([host_bin, "serve"], env=env, stdout=open(os.path.join(tmp, "host.log"), "w"), stderr=subprocess.STDOUT)
    traffic, admin, sim_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin_port}", f"http://127.0.0.1:{sim_port}"
    wait_http(sim_url + "/_sim/stats")
    wait_http(traffic + "/health")
    return [host, sim], traffic, admin, sim_url


def run_load(args, traffic, admin, sim, workdir):
    """Runs the load plan, scraping every second; returns [(seconds since start, parsed sample)], fault window."""
    steady = ["/MSFT/7", "/AAPL/3", "/IBM/10", "/GOOGL/5", "/NVDA", "/MSFT/30", "/NOSUCH/3", "/health"]
    fresh = ["/TSLA/4", "/META/2", "/SPY/6", "/QQQ/8", "/AMZN/3", "/BRK.B/5"]  # nothing has cached these yet
    main_lua = wrk_script(steady, workdir, "steady.lua", 10)
    fresh_lua = wrk_script(fresh, workdir, "fresh.lua", 20)
    seconds = args.seconds
    fault_at, fault_end = round(seconds / 3), round(2 * seconds / 3)
    samples = []
    log = open(os.path.join(workdir, "wrk.log"), "w")
    start = time.time()
    main = subprocess.Popen(["wrk", "-t2", "-c8", f"-d{seconds}s", "--latency", "-s", main_lua, traffic], stdout=log, stderr=log)
    second = None
    tick = 0
    while True:
        now = time.time() - start
        if second is None and now >= fault_at:
            print(f"t={now:.0f}s fault: {http('PUT', sim + '/_sim/fault?mode=http-500&times=20').strip()}", file=sys.stderr)
            second = subprocess.Popen(["wrk", "-t1", "-c2", f"-d{fault_end - fault_at}s", "-s", fresh_lua, traffic], stdout=log, stderr=log)
        if second is not None and now >= fault_end and fault_end > 0:
            print(f"t={now:.0f}s fault over: {http('PUT', sim + '/_sim/fault?mode=none').strip()}", file=sys.stderr)
            fault_end = -1
        text = http("GET", admin + "/metrics")
        samples.append((time.time() - start, parse(text)))
        if main.poll() is not None and now > seconds + 2:
            break
        tick += 1
        time.sleep(max(0.0, start + tick - time.time()))
    main.wait()
    if second is not None:
        second.wait()
    log.close()
    return samples, (fault_at, round(2 * seconds / 3))


# --- the panels --------------------------------------------------------------------------------------------

def series(samples, window, fn):
    """fn(previous sample, current sample, seconds between) over a sliding window of `window` scrapes."""
    xs, ys = [], []
    for i in range(window, len(samples)):
        (t0, a), (t1, b) = samples[i - window], samples[i]
        xs.append(t1)
        ys.append(fn(a, b, t1 - t0))
    return xs, ys


def plot(samples, fault, out, args):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "axes.titleweight": "bold", "axes.grid": True,
                         "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False})
    fig, axes = plt.subplots(3, 2, figsize=(13, 10.5), sharex=True)
    fig.suptitle("stock-host: main panels of docs/grafana-dashboard.json, from real /metrics scrapes\n"
                 f"wrk on loopback for {args.seconds} s, 80 ms upstream; shaded: simulator fault phase "
                 "(HTTP 500, times=20, plus requests for uncached symbols)", fontsize=11)
    rate = lambda name, **m: (lambda a, b, dt: max(0.0, total(b, name, **m) - total(a, name, **m)) / dt)

    ax = axes[0][0]
    for cls, color in (("2", "tab:green"), ("4", "tab:orange"), ("5", "tab:red")):
        xs, ys = series(samples, 2, rate("stock_api_requests_total", status=lambda s, c=cls: (s or "").startswith(c)))
        ax.plot(xs, ys, label=f"{cls}xx", color=color)
    ax.set_title("Request rate by status, 2 s window (stock_api_requests_total)")
    ax.set_ylabel("requests/s")
    ax.set_yscale("symlog", linthresh=10)
    ax.legend(loc="upper left", ncols=3)

    ax = axes[0][1]
    price = lambda r: (r or "").startswith("/{symbol}")

    def q(level):
        def fn(a, b, dt):
            les = {dict(l)["le"] for (n, l) in b if n == "stock_api_request_duration_seconds_bucket"}
            buckets = {le: total(b, "stock_api_request_duration_seconds_bucket", route=price, le=le)
                       - total(a, "stock_api_request_duration_seconds_bucket", route=price, le=le) for le in les}
            v = quantile(level, buckets)
            return None if v is None else v * 1000
        return fn
    for level, color in ((0.99, "tab:purple"), (0.5, "tab:blue")):
        xs, ys = series(samples, 5, q(level))
        ax.plot(xs, ys, label=f"p{int(level * 100)}", color=color)
    ax.axhline(2500, color="tab:red", ls="--", lw=1, label="alert: p99 > 2.5 s")
    ax.set_title("Latency of price routes, 5 s window (stock_api_request_duration_seconds)")
    ax.set_ylabel("ms")
    ax.set_yscale("log")
    ax.legend(loc="upper left", ncols=3)

    ax = axes[1][0]

    def ratio(part):
        def fn(a, b, dt):
            d = {n: total(b, n) - total(a, n) for n in ("stock_api_cache_hits_total", "stock_api_cache_misses_total", "stock_api_cache_stale_total")}
            all_ = sum(d.values())
            return d[part] / all_ if all_ > 0 else None
        return fn
    for part, label, color in (("stock_api_cache_hits_total", "hit ratio", "tab:green"), ("stock_api_cache_stale_total", "stale ratio", "tab:orange"),
                               ("stock_api_cache_misses_total", "miss ratio", "tab:gray")):
        xs, ys = series(samples, 3, ratio(part))
        ax.plot(xs, ys, label=label, color=color)
    ax.set_title("Cache: hits / (hits + misses + stale), 3 s window")
    ax.set_ylim(-0.02, 1.02)
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.legend(loc="center left")

    ax = axes[1][1]
    xs = [t for t, _ in samples]
    ax.step(xs, [total(s, "stock_api_circuit_breaker_state") for _, s in samples], where="post", color="tab:red")
    ax.set_yticks([0, 1, 2], ["closed", "open", "half-open"])
    ax.set_ylim(-0.2, 2.2)
    ax.set_title("Circuit breaker (stock_api_circuit_breaker_state)")

    ax = axes[2][0]
    used = [total(s, "stock_api_upstream_quota_used") for _, s in samples]
    limit = [total(s, "stock_api_upstream_quota_limit") for _, s in samples]
    ax.plot(xs, used, label="used today", color="tab:blue")
    ax.plot(xs, limit, label="limit", color="tab:red", ls="--")
    ax.plot(xs, [0.8 * v for v in limit], label="alert: 80% of limit", color="tab:orange", ls=":")
    ax.set_title("Upstream quota (stock_api_upstream_quota_used / _limit)")
    ax.set_ylabel("calls")
    ax.set_xlabel("seconds")
    ax.legend(loc="upper left")

    ax = axes[2][1]
    for outcome, color in (("ok", "tab:green"), ("http_error", "tab:red"), ("timeout", "tab:purple"), ("error", "tab:brown")):
        xs2, ys2 = series(samples, 2, rate("stock_api_external_calls_total", outcome=outcome))
        ax.plot(xs2, ys2, label=outcome, color=color)
    ax.set_title("Upstream calls by outcome, 2 s window (stock_api_external_calls_total)")
    ax.set_ylabel("calls/s")
    ax.set_xlabel("seconds")
    ax.legend(loc="upper left", ncols=4)

    for row in axes:
        for ax in row:
            ax.axvspan(fault[0], fault[1], color="tab:red", alpha=0.08, lw=0)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    print(f"wrote {os.path.relpath(out, ROOT)}", file=sys.stderr)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=30, help="length of the load (default 30)")
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "dashboard.png"))
    parser.add_argument("--traffic", help="a running host's traffic URL (with --admin and --sim)")
    parser.add_argument("--admin", help="its admin URL (/metrics)")
    parser.add_argument("--sim", help="the simulator it calls (for the fault phase)")
    args = parser.parse_args()
    if args.seconds < 9:
        parser.error("--seconds must be at least 9")
    if any((args.traffic, args.admin, args.sim)) and not all((args.traffic, args.admin, args.sim)):
        parser.error("--traffic, --admin and --sim go together")
    ensure_venv()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk; make bench installs it)")
    workdir = os.path.join(ROOT, "target", "obs-render")
    os.makedirs(workdir, exist_ok=True)
    procs = []
    try:
        if args.traffic:
            traffic, admin, sim = args.traffic.rstrip("/"), args.admin.rstrip("/"), args.sim.rstrip("/")
        else:
            procs, traffic, admin, sim = start_services(workdir)
        samples, fault = run_load(args, traffic, admin, sim, workdir)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
    with open(os.path.join(workdir, "samples.jsonl"), "w") as f:
        for t, s in samples:
            f.write(json.dumps({"t": round(t, 3), "samples": {f"{n}{dict(l)}": v for (n, l), v in s.items()}}) + "\n")
    plot(samples, fault, args.out, args)


if __name__ == "__main__":
    main()
