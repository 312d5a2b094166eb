# scalelab — every target works on a fresh clone with Python >= 3.11 and make.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# STAMP: the lab itself, what `make lab` needs; DEV: plus the test, lint and manifest tools.
STAMP  := $(VENV)/.installed
DEV    := $(VENV)/.installed-dev
QUEUES := $(VENV)/.installed-queues
DEV_EXTRAS := .[dev,queues]
SEED   ?= 1
JOBS   ?= 6
PORT   ?= 8765

.PHONY: help lock setup lab matrix serve suite test test-unit test-kind lint bench clean cluster-up cluster-down suite-kind
.DEFAULT_GOAL := help

# `make` alone: every target that has a `##` comment, with the comment.
help:  ## list the targets
	@awk -F ':.*## ' '/^[a-z][a-z-]*:.*## / { printf "  %-20s %s\n", $$1, $$2 }' $(MAKEFILE_LIST) \
	  | sed -e 's/\$$(PORT)/$(PORT)/; s/\$$(LOCK)/$(LOCK)/'

# --- installing -------------------------------------------------------------------
# Every install takes its versions from one lock (every extra resolved together, for
# Python >= 3.11 on any platform), used as constraints: what an install needs comes
# at the locked version. The installer is uv when it can be had — on PATH, or put once
# into UV_HOME by plain pip — else pip (INSTALLER=pip forces it). uv writes no
# bytecode; the lab's own modules and what they import are then compiled once, so no
# instance compiles them at every start.
LOCK       := requirements.lock
UV_VERSION ?= 0.13.9
UV_HOME    ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/scalelab/uv-$(UV_VERSION)
INSTALLER  ?= uv
LOCK_ARGS  := --quiet --universal --python-version 3.11 --all-extras \
              --custom-compile-command 'make lock' pyproject.toml -o $(LOCK)

# Prints the uv to use, or nothing (then pip is used).
FIND_UV = if [ "$(INSTALLER)" != uv ]; then :; \
  elif command -v uv >/dev/null 2>&1; then command -v uv; \
  elif [ -x "$(UV_HOME)/bin/uv" ]; then echo "$(UV_HOME)/bin/uv"; \
  elif tmp="$(UV_HOME).$$$$" && PIP_ROOT_USER_ACTION=ignore $(PYTHON) -m pip install -q --disable-pip-version-check \
         --target "$$tmp" "uv==$(UV_VERSION)" >&2 \
       && { mv -T "$$tmp" "$(UV_HOME)" 2>/dev/null || rm -rf "$$tmp"; } \
       && [ -x "$(UV_HOME)/bin/uv" ]; then echo "$(UV_HOME)/bin/uv"; \
  else rm -rf "$$tmp"; echo "make: uv cannot be had: installing with pip" >&2; fi

# $(call install,SPEC): SPEC (e.g. -e '.[dev]') into $(VENV), versions from the lock.
define install
@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "scalelab needs Python >= 3.11 (set PYTHON=...)")'
@uv=$$($(FIND_UV)); \
if [ -n "$$uv" ]; then \
  { test -x $(PY) || "$$uv" venv --quiet --clear --seed --python "$$($(PYTHON) -c 'import sys; print(sys.executable)')" $(VENV); } \
  && echo "uv pip install -c $(LOCK) $(1)" \
  && "$$uv" pip install --quiet --python $(PY) -c $(LOCK) $(1); \
else \
  { test -x $(PY) || $(PYTHON) -m venv $(VENV); } \
  && echo "pip install -c $(LOCK) $(1)" \
  && $(PY) -m pip install -q --disable-pip-version-check -c $(LOCK) $(1); \
fi
endef

$(STAMP): pyproject.toml $(LOCK)
	$(call install,-e .)
	@# APScheduler 4.0.0a6 (a pre-release) apart: it has APScheduler 3's import name.
	@uv=$$($(FIND_UV)); SCALELAB_UV="$$uv" $(PY) -m chaos.apscheduler4
	@env -u PYTHONDONTWRITEBYTECODE $(PY) -m bench.bytecode
	@touch $@

$(DEV): $(STAMP)
	$(call install,-e '$(DEV_EXTRAS)')
	@touch $@

# The task queues of the fixes matrix (what `make matrix` runs beside the lab's own).
$(QUEUES): $(STAMP)
	$(call install,-e '.[queues]')
	@touch $@

# pyproject.toml changed: resolve again, keeping every locked version that still fits.
$(LOCK): pyproject.toml
	@uv=$$($(FIND_UV)); if [ -n "$$uv" ]; then \
	  echo "make: pyproject.toml is newer than $(LOCK): updating the lock (commit it)"; \
	  "$$uv" pip compile $(LOCK_ARGS) && touch $(LOCK); \
	else echo "make: $(LOCK) is older than pyproject.toml and uv cannot be had:" \
	  "new dependencies are installed unpinned" >&2; fi

lock:  ## resolve every dependency again at its newest allowed version (writes $(LOCK))
	@uv=$$($(FIND_UV)); test -n "$$uv" || { echo "make lock: needs uv" >&2; exit 2; }; \
	"$$uv" pip compile --upgrade $(LOCK_ARGS)

setup: $(DEV)  ## create .venv and install the lab and its development tools into it

lab: $(STAMP)  ## run the catalogue on the local platform (quick settings, JOBS at a time)
	$(VENV)/bin/scalelab suite --quick --seed $(SEED) --jobs $(JOBS)

# Its own target: dozens of runs (one of them 70 s long), minutes even JOBS at a time,
# past what `make lab` may take.
matrix: $(QUEUES)  ## the fixes matrix: each scheduling mechanism under each fault (quick)
	$(VENV)/bin/scalelab matrix --quick --seed $(SEED) --jobs $(JOBS)

serve: $(STAMP)  ## browse results/ at http://127.0.0.1:$(PORT)/ (read-only, until Ctrl-C)
	$(VENV)/bin/scalelab serve --results results --port $(PORT)

suite: $(STAMP)  ## the full catalogue, longer runs, one at a time
	$(VENV)/bin/scalelab suite --seed $(SEED)

# Tests run side by side (pytest-xdist): most of their time is spent waiting on real
# processes, so more workers than cores pays; an idle worker takes queued tests from
# a busy one (worksteal), so no long run waits at the end behind another. pytest
# caches its rewritten test modules only where bytecode may be written.
TEST_JOBS ?= 6
test: $(DEV)  ## unit + integration tests (real processes), offline manifest checks
	env -u PYTHONDONTWRITEBYTECODE $(VENV)/bin/pytest -q -n $(TEST_JOBS) --dist worksteal --durations=10

test-unit: $(DEV)  ## the pure tests only (seconds)
	$(VENV)/bin/pytest -q tests/unit

lint: $(DEV)  ## ruff + mypy (strict)
	$(VENV)/bin/ruff check services chaos experiments tests bench k8s/node
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy k8s/node/node.py k8s/node/localnode  # a script and its package, not installed

bench: $(DEV)  ## measure what the lab costs (writes bench/results.json)
	$(PY) -m bench

clean:  ## remove .venv, results/ and the tools' caches
	rm -rf $(VENV) results build *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis

# --- the kind path ----------------------------------------------------------------
KIND_CLUSTER ?= scalelab
# KUBE_CONTEXT=scalelab-local: the same tests and suite on the local node (below).
KUBE_CONTEXT ?= kind-$(KIND_CLUSTER)
# The tag the overlays name (k8s/overlays/kind), so not a setting: a different tag
# here would build an image no pod runs.
IMAGE        := scalelab:dev
BASE_IMAGE   ?= python:3.11-slim-bookworm
OVERLAY      ?= kind
LAB_DEPLOYMENTS := redis-ledger redis-broker api worker beat
SETTINGS_CM  := configmap/scalelab-settings

cluster-up:  ## kind cluster + image + the lab (OVERLAY=kind|scheduler-leader|beat-redbeat|...)
	@missing=""; for tool in docker kind kubectl; do \
	  command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	  if [ -n "$$missing" ]; then \
	    echo "cluster-up: missing:$$missing (install them; see docs/kubernetes.md)" >&2; exit 2; fi
	@docker info >/dev/null 2>&1 || { echo "cluster-up: no docker daemon reachable" >&2; exit 2; }
	@kind get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)' \
	  || kind create cluster --name $(KIND_CLUSTER) --config k8s/kind-config.yaml --wait 120s
	@# No provenance attestation: with Docker's containerd image store it turns the
	@# image into an index whose attestation `kind load` cannot import
	@# ("ctr: content digest ... not found", kubernetes-sigs/kind#3795).
	docker build --provenance=false -f services/Dockerfile --build-arg BASE=$(BASE_IMAGE) -t $(IMAGE) .
	kind load docker-image $(IMAGE) --name $(KIND_CLUSTER)
	@# Client-side apply removes only keys it applied itself: settings the harness
	@# wrote would outlive a new OVERLAY. Empty them first, so the overlay's are all.
	@if kubectl --context $(KUBE_CONTEXT) -n scalelab get $(SETTINGS_CM) >/dev/null 2>&1; then \
	  kubectl --context $(KUBE_CONTEXT) -n scalelab patch $(SETTINGS_CM) --type=json \
	    -p '[{"op": "add", "path": "/data", "value": {}}]'; fi
	kubectl --context $(KUBE_CONTEXT) apply -k k8s/overlays/$(OVERLAY)
	@# Same tag, new image: restart so running pods pick up what was just loaded.
	kubectl --context $(KUBE_CONTEXT) -n scalelab rollout restart deployment/api deployment/worker deployment/beat
	@for d in $(LAB_DEPLOYMENTS); do \
	  kubectl --context $(KUBE_CONTEXT) -n scalelab rollout status deployment/$$d --timeout=180s || exit 1; done

cluster-down:  ## delete the kind cluster (and everything in it)
	kind delete cluster --name $(KIND_CLUSTER)

test-kind: $(DEV)  ## the cluster tests (after cluster-up); they skip, saying why, without a cluster (fail with SCALELAB_REQUIRE_CLUSTER=1)
	KUBE_CONTEXT=$(KUBE_CONTEXT) $(VENV)/bin/pytest -m kind tests/kind tests/platform -v

suite-kind: $(STAMP)  ## the experiment catalogue against the kind cluster
	$(VENV)/bin/scalelab suite --quick --platform kubernetes --context $(KUBE_CONTEXT) --results results/kind

# --- the local node: Kubernetes built from source, no kind (k8s/node/) ---------------
# The project's own check of its kind path on a machine without kind or a registry:
#   make node-binaries                (once per machine and release; long, see README)
#   make cluster-up-local             (the node + the lab, context scalelab-local;
#                                      NODES=2: a second node in its own network namespace)
#   KUBE_CONTEXT=scalelab-local make test-kind suite-kind
#   make cluster-down-local
.PHONY: node-binaries cluster-up-local cluster-down-local test-node
NODE := $(PYTHON) k8s/node/node.py
NODES ?= 1

node-binaries:  ## build the local node's Kubernetes, CoreDNS and pause binaries into their cache
	nice -n 19 ionice -c3 k8s/node/build.sh

cluster-up-local:  ## a cluster on this machine (root; cached binaries) with the lab (OVERLAY=..., NODES=1|2)
	IMAGE=$(IMAGE) $(NODE) up --overlay $(OVERLAY) --nodes $(NODES)

cluster-down-local:  ## stop the local node(s): no process, mount, namespace, veth, route, rule or ipset stays
	$(NODE) down

test-node: $(DEV)  ## the local node's own tests: bring-up from an empty image cache, two nodes and node loss, a clean down
	SCALELAB_NODE_TESTS=1 $(VENV)/bin/pytest tests/node -v
