# scalelab — every target works on a fresh clone with Python >= 3.11 and make.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SEED   ?= 1

.PHONY: setup lab suite test test-unit test-kind lint bench clean cluster-up cluster-down suite-kind

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "scalelab needs Python >= 3.11 (set PYTHON=...)")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)  ## create .venv and install the lab into it

lab: $(STAMP)  ## run the catalogue on the local platform (quick settings) and print the table
	$(VENV)/bin/scalelab suite --quick --seed $(SEED)

suite: $(STAMP)  ## the full catalogue, longer runs
	$(VENV)/bin/scalelab suite --seed $(SEED)

test: $(STAMP)  ## unit + integration tests (real processes), offline manifest checks
	$(VENV)/bin/pytest -q

test-unit: $(STAMP)
	$(VENV)/bin/pytest -q tests/unit

lint: $(STAMP)
	$(VENV)/bin/ruff check services chaos experiments tests
	$(VENV)/bin/mypy

bench: $(STAMP)  ## measure what the lab costs (writes bench/results.json)
	$(PY) -m bench

clean:
	rm -rf $(VENV) results build *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
