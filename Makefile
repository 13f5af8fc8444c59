SHELL := /bin/bash
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: install lock test test-all demo bench lint format clean

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

## ruff (lint, and the format check) over the tree; mypy strict on contracts/ and shared/ (pyproject.toml).
LINT_PATHS ?= contracts shared services tests benchmarks
lint: install
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy

## Rewrites the tree in the formatter's style (ruff format) and applies ruff's safe fixes.
format: install
	$(BIN)/ruff format $(LINT_PATHS)
	$(BIN)/ruff check --fix $(LINT_PATHS)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
