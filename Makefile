# payload-lakehouse: every command installs what it needs into .venv first (uv, locked).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_BOOTSTRAP ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)

# Quiet, offline-friendly defaults for Prefect and dbt: no telemetry, no usage stats.
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 180
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1
export DBT_SEND_ANONYMOUS_USAGE_STATS ?= false
export PYTHONUNBUFFERED := 1
# Subprocesses (demo API, loader crash tests, dbt, deployments) re-import dlt, pyiceberg and
# Prefect: let them reuse bytecode compiled once at install instead of recompiling every time.
unexport PYTHONDONTWRITEBYTECODE
export UV_COMPILE_BYTECODE := 1

PRESET ?= small
PORT ?= 3000
COLLECTION ?= orders
PREFECT_PORT ?= 4200

.PHONY: help install run test test-fast test-string-ids lint format bench report demo-api clean server deploy worker change \
	stack-up stack-down stack-status run-stack

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

ID_TYPE ?= objectid
test-string-ids: install ## End-to-end, transform and reliability tests on a store with string ids (ID_TYPE=objectid|uuid)
	PAYLOAD_TEST_ID_TYPE=$(ID_TYPE) $(PY) -m pytest tests/lakehouse/test_load_e2e.py \
		tests/lakehouse/test_crash.py tests/reliability tests/transform $(PYTEST_ARGS)

lint: install ## ruff (lint + format check) and mypy
	$(VENV)/bin/ruff check flows tests deployments
	$(VENV)/bin/ruff format --check flows tests deployments
	$(VENV)/bin/mypy

format: install ## Apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix flows tests deployments
	$(VENV)/bin/ruff format flows tests deployments

report: install ## Render the analytics report (HTML + PNGs) from the marts already built
	$(PY) -m flows.report $(ARGS)

bench: install ## Run the benchmarks; writes bench-results.json
	$(PY) -m flows.bench $(ARGS)

demo-api: install ## Serve the demo Payload store (PRESET=small|medium|large PORT=3000)
	$(PY) -m flows.demo serve --preset $(PRESET) --port $(PORT) $(ARGS)

clean: ## Remove the local lakehouse, dbt output and caches (keeps .venv)
	rm -rf .lakehouse dbt/target dbt/logs .pytest_cache .mypy_cache .ruff_cache .bench
	find . -name __pycache__ -type d -prune -not -path './.venv/*' -exec rm -rf {} +

# --- Orchestration: a local Prefect server, deployments, a worker, change events ------------
# The repository root, for prefect.yaml's pull step (the worker runs flows from here).
export PAYLOAD_LAKEHOUSE_ROOT := $(CURDIR)
PREFECT_LOCAL_API := http://127.0.0.1:$(PREFECT_PORT)/api
WORK_POOL ?= local-process
# The global concurrency limit every run holds while it writes (LAKEHOUSE_WRITER_LIMIT).
WRITER_LIMIT ?= lakehouse-writer
# Environment of the worker's flow runs (Payload URL, credentials...): the demo API by default.
WORKER_ENV ?= deployments/env/local-demo.env

server: install ## Start a local Prefect server on 127.0.0.1:$(PREFECT_PORT) (UI + API)
	$(VENV)/bin/prefect server start --host 127.0.0.1 --port $(PREFECT_PORT)

deploy: install ## Create the work pool, every deployment in prefect.yaml and the lakehouse-writer limit
	PREFECT_API_URL=$(PREFECT_LOCAL_API) $(VENV)/bin/prefect work-pool inspect $(WORK_POOL) >/dev/null 2>&1 \
	  || PREFECT_API_URL=$(PREFECT_LOCAL_API) $(VENV)/bin/prefect work-pool create $(WORK_POOL) --type process \
	       --base-job-template deployments/work-pools/process.json
	PREFECT_API_URL=$(PREFECT_LOCAL_API) $(VENV)/bin/prefect --no-prompt deploy --all
# One writer at a time across every deployment (flows/orchestration/writer_slot.py).
	PREFECT_API_URL=$(PREFECT_LOCAL_API) $(VENV)/bin/prefect gcl inspect $(WRITER_LIMIT) >/dev/null 2>&1 \
	  || PREFECT_API_URL=$(PREFECT_LOCAL_API) $(VENV)/bin/prefect gcl create $(WRITER_LIMIT) --limit 1

worker: install ## Start a process worker for the local-process pool (env from $(WORKER_ENV))
	set -a; [ -f "$(WORKER_ENV)" ] && . "$(WORKER_ENV)"; set +a; \
	PREFECT_API_URL=$(PREFECT_LOCAL_API) $(VENV)/bin/prefect worker start --pool $(WORK_POOL)

change: install ## Emit payload.collection.changed for COLLECTION (default orders) -> an on-change run
	PREFECT_API_URL=$(PREFECT_LOCAL_API) $(PY) -m flows.orchestration.relay emit $(COLLECTION)

# --- The production-shaped stack on this machine: S3 (moto), Iceberg REST catalog, Trino, and
# a Prefect server on PostgreSQL (deployments/stack). Ports: STACK_*_PORT; logs: .stack/logs.
STACK_ENV := .stack/stack.env

stack-up: install ## Install (cached) and start the stack, wait until Trino answers queries
	$(PY) -m deployments.stack up

stack-down: install ## Stop every process stack-up started (the in-memory S3 data goes with it)
	$(PY) -m deployments.stack down

stack-status: install ## One line per stack service: healthy / running / down
	$(PY) -m deployments.stack status

run-stack: stack-up ## The pipeline on the stack: demo API -> REST catalog on S3 -> dbt on Trino
	set -a; . $(STACK_ENV); set +a; $(PY) flows/main.py $(ARGS)
