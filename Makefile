# payload-lakehouse: every command installs what it needs into .venv first (uv, locked).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_BOOTSTRAP ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)

# Quiet, offline-friendly defaults for Prefect and dbt (see ../shared/STACK_NOTES.md).
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 180
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1
export DBT_SEND_ANONYMOUS_USAGE_STATS ?= false
export PYTHONUNBUFFERED := 1

PRESET ?= small
PORT ?= 3000
COLLECTION ?= orders
PREFECT_PORT ?= 4200

.PHONY: help install run test test-fast lint format bench demo-api clean server deploy worker change

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.tools/bin/uv:
	$(PYTHON_BOOTSTRAP) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --all-groups
	@touch $@

install: $(VENV)/.synced ## Create .venv from uv.lock (runs automatically)

run: install ## Run the whole pipeline end to end on the embedded default (demo API, local Iceberg, DuckDB)
	$(PY) flows/main.py $(ARGS)

test: install ## Run the full test suite
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: install ## Run the tests not marked slow
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: install ## ruff (lint + format check) and mypy
	$(VENV)/bin/ruff check flows tests
	$(VENV)/bin/ruff format --check flows tests
	$(VENV)/bin/mypy

format: install ## Apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix flows tests
	$(VENV)/bin/ruff format flows tests

bench: install ## Run the benchmarks; writes bench-results.json
	$(PY) -m flows.bench $(ARGS)

demo-api: install ## Serve the demo Payload store (PRESET=small|medium|large PORT=3000)
	$(PY) -m flows.demo serve --preset $(PRESET) --port $(PORT) $(ARGS)

clean: ## Remove the local lakehouse, dbt output and caches (keeps .venv)
	rm -rf .lakehouse dbt/target dbt/logs .pytest_cache .mypy_cache .ruff_cache .bench
	find . -name __pycache__ -type d -prune -not -path './.venv/*' -exec rm -rf {} +
