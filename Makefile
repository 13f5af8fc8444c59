SHELL := /bin/bash
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: install lock test test-all demo bench clean

install: $(VENV)/.installed

# The exact versions of requirements-dev.lock, then the project itself without resolving again.
$(VENV)/.installed: pyproject.toml requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

## After changing dependencies in pyproject.toml: resolve both lock files again (uv).
lock: install
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --universal --python-version 3.11 --no-header --annotation-style line -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 --no-header --annotation-style line -o requirements-dev.lock

## The representative slice: everything but the long chaos and soak runs.
test: install
	. scripts/test-services.sh && _oms_services_ready && $(BIN)/pytest -m "not chaos and not soak and not fuzz" $(PYTEST_ARGS)

## Everything, chaos and soak runs included.
test-all: install
	. scripts/test-services.sh && _oms_services_ready && $(BIN)/pytest $(PYTEST_ARGS)

demo: install
	$(BIN)/oms-shipments demo

## Throughput, latency and memory against the raw limits (docs/benchmarks.md); not part of `make test`.
## BENCH_ARGS="--soak-minutes 10" for the soak figure.
BENCH_ARGS ?=
bench: install
	. scripts/test-services.sh && _oms_services_ready && $(BIN)/python -m benchmarks.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
