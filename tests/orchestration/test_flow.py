"""The payload-lakehouse flow on the demo source, against a Prefect test harness.

Real components throughout: the demo Payload API over HTTP (with fault injection), dlt/pyiceberg
loads into a local Iceberg catalog, dbt on DuckDB through prefect-dbt, Prefect's API for task
runs, artifacts and events.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.client.schemas.objects import TaskRun

from flows.demo.server import DemoServer
from flows.lakehouse.load import table_state
from flows.orchestration.artifacts import LOADS_ARTIFACT_KEY, SUMMARY_ARTIFACT_KEY
from flows.orchestration.events import COLLECTION_LOADED, DBT_LABEL, MARTS_BUILT, RAW_LOADED
from flows.settings import ALL_COLLECTIONS, COLLECTION_TABLES, load_settings

from .prefect_reads import (
    events_of,
    flow_run_id,
    subflow_runs_of,
    task_runs_of,
)

pytestmark = pytest.mark.slow

RunPipeline = Callable[..., tuple[Any, dict[str, str]]]
# The first request to orders fails with a 503 (the HTTP client does not retry in these tests),
# so the first attempt of the orders load task fails and Prefect retries it.
FIRST_ATTEMPT_FAULTS = "503:1.0:collection=orders,max=1"


def state_of(run: TaskRun) -> str:
    assert run.state is not None
    return str(run.state.name)


def load_runs(task_runs: list[TaskRun]) -> dict[str, list[TaskRun]]:
    """Load task runs by collection (a flow retry gives a collection several task runs)."""
    by_collection: dict[str, list[TaskRun]] = defaultdict(list)
    for run in task_runs:
        if run.name.startswith("load-"):
            by_collection[run.name.removeprefix("load-")].append(run)
    return by_collection


@pytest.fixture(scope="module")
def full_run(
    run_pipeline: RunPipeline, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Any, dict[str, str]]:
    """All nine collections + dbt, with the first attempt of the orders load failing."""
    lakehouse = tmp_path_factory.mktemp("lakehouse-full")
    return run_pipeline(lakehouse, faults=FIRST_ATTEMPT_FAULTS)


def test_flow_completes_despite_failed_first_attempts(full_run: tuple[Any, dict[str, str]]) -> None:
    state, _ = full_run
    assert state.is_completed(), state.message
    result = state.result()
    assert sorted(result["collections"]) == sorted(ALL_COLLECTIONS)
    assert result["dbt"]["success"] is True
    assert result["marts"], "the marts were not published to Iceberg"


def test_one_task_run_per_collection_and_retries(
    full_run: tuple[Any, dict[str, str]], client: SyncPrefectClient, demo: DemoServer
) -> None:
    state, env = full_run
    runs = load_runs(task_runs_of(client, flow_run_id(state)))
    assert sorted(runs) == sorted(ALL_COLLECTIONS)
    for collection, task_runs in runs.items():
        assert len(task_runs) == 1, collection
        (run,) = task_runs
        assert run.state is not None and run.state.is_completed(), collection
        assert "payload-api" in run.tags
        # orders failed once (demo 503) and was retried by Prefect; no other load was.
        expected_attempts = 2 if collection == "orders" else 1
        assert run.run_count == expected_attempts, collection
    # Each collection's table holds the demo's documents: retries did not duplicate rows.
    settings = load_settings(lakehouse_dir=env["LAKEHOUSE_DIR"])
    for collection in ALL_COLLECTIONS:
        assert table_state(settings, collection) != "empty", collection


def test_dbt_nodes_are_task_runs(
    full_run: tuple[Any, dict[str, str]], client: SyncPrefectClient
) -> None:
    state, _ = full_run
    (dbt_run,) = [run for run in subflow_runs_of(client, flow_run_id(state))]
    assert dbt_run.name and dbt_run.state is not None and dbt_run.state.is_completed()
    node_names = {run.name for run in task_runs_of(client, dbt_run.id)}
    assert "model fact_orders" in node_names
    assert any(name.startswith("model stg_") for name in node_names)
    assert any(name.startswith("test ") for name in node_names)


def test_artifacts_tell_the_run(
    full_run: tuple[Any, dict[str, str]], client: SyncPrefectClient, demo: DemoServer
) -> None:
    state, _ = full_run
    artifacts = client.read_artifacts(
        artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id(state)])
        )
    )
    by_key = {artifact.key: artifact for artifact in artifacts}
    table = by_key[LOADS_ARTIFACT_KEY]
    assert table.type == "table"
    rows = table.data if isinstance(table.data, list) else json.loads(str(table.data))
    by_collection = {row["collection"]: row for row in rows}
    assert sorted(by_collection) == sorted(ALL_COLLECTIONS)
    orders = by_collection["orders"]
    assert orders["documents read"] == demo.store.count("orders")
    assert orders["inserted"] == demo.store.count("orders")
    assert orders["cursor"].startswith("- -> ")
    summary = by_key[SUMMARY_ARTIFACT_KEY]
    assert summary.type == "markdown"
    markdown = str(summary.data)
    assert "## dbt build" in markdown and "## Headline numbers" in markdown
    assert "fact_orders" in markdown


def test_events_name_tables_and_counts(
    full_run: tuple[Any, dict[str, str]], client: SyncPrefectClient, demo: DemoServer
) -> None:
    state, _ = full_run
    run_id = flow_run_id(state)
    events = events_of(client, run_id, [COLLECTION_LOADED, RAW_LOADED, MARTS_BUILT], minimum=11)
    loaded = [event for event in events if event.event == COLLECTION_LOADED]
    assert sorted(event.resource.id for event in loaded) == sorted(
        f"iceberg.table.ecommerce.{table}" for table in COLLECTION_TABLES.values()
    )
    orders = next(e for e in loaded if e.resource.id == "iceberg.table.ecommerce.orders")
    assert orders.payload["documents_read"] == demo.store.count("orders")
    assert orders.payload["committed"] is True
    (raw,) = [event for event in events if event.event == RAW_LOADED]
    assert raw.resource.id == "iceberg.namespace.ecommerce"
    assert raw.resource[DBT_LABEL] == "running"
    assert sorted(raw.payload["collections"]) == sorted(ALL_COLLECTIONS)
    (marts,) = [event for event in events if event.event == MARTS_BUILT]
    assert marts.resource.id == "iceberg.namespace.ecommerce_marts"
    assert marts.payload["tables"]


def test_new_run_on_unchanged_tables_hits_the_cache(
    full_run: tuple[Any, dict[str, str]], run_pipeline: RunPipeline, client: SyncPrefectClient
) -> None:
    """The load cache key holds the table state *before* the load: the run after a load sees a
    new snapshot and reads the source (finding nothing new); the next one finds the table exactly
    as that run found it and reuses its result."""
    _, env = full_run
    lakehouse = Path(env["LAKEHOUSE_DIR"])
    small = ["categories", "variantTypes"]
    first, _ = run_pipeline(lakehouse, collections=small, run_dbt=False)
    second, _ = run_pipeline(lakehouse, collections=small, run_dbt=False)
    assert first.is_completed() and second.is_completed()
    first_runs = load_runs(task_runs_of(client, flow_run_id(first)))
    second_runs = load_runs(task_runs_of(client, flow_run_id(second)))
    for collection in small:
        assert state_of(first_runs[collection][0]) == "Completed"
        assert state_of(second_runs[collection][0]) == "Cached"


def test_flow_retry_skips_collections_already_loaded(
    run_pipeline: RunPipeline, client: SyncPrefectClient, tmp_path: Path
) -> None:
    """Attempt 1: carts fails after its task retries, orders and categories commit. The flow
    retry re-reads the *pre-load* table states (cached per flow run), so orders and categories
    hit the load cache and only carts is loaded again."""
    state, _env = run_pipeline(
        tmp_path / "lakehouse",
        env={"LOAD_TASK_RETRIES": "1"},
        faults="503:1.0:collection=carts,max=2",
        collections=["orders", "carts", "categories"],
        run_dbt=False,
        flow_retries=1,
    )
    assert state.is_completed(), state.message
    runs = load_runs(task_runs_of(client, flow_run_id(state)))
    states = {c: sorted(state_of(run) for run in task_runs) for c, task_runs in runs.items()}
    assert "Cached" in states["orders"] and "Cached" in states["categories"], states
    assert "Cached" not in states["carts"] and "Failed" in states["carts"], states
    assert "Completed" in states["carts"], states


def test_wrong_credentials_fail_at_once_and_skip_dbt(
    run_pipeline: RunPipeline, client: SyncPrefectClient, tmp_path: Path
) -> None:
    state, _env = run_pipeline(
        tmp_path / "lakehouse",
        env={"PAYLOAD_PASSWORD": "not-the-password", "LOAD_TASK_RETRIES": "3"},
        collections=["orders", "users"],
        run_dbt=True,
    )
    assert state.is_failed()
    message = state.message or ""
    assert "orders" in message and "users" in message and "PayloadAuthError" in message
    assert "not-the-password" not in message
    runs = load_runs(task_runs_of(client, flow_run_id(state)))
    for collection in ("orders", "users"):
        (run,) = runs[collection]
        assert run.run_count == 1, f"{collection} was retried after a 403/401"
    assert subflow_runs_of(client, flow_run_id(state)) == [], "dbt ran on an empty raw layer"


def test_partial_failure_keeps_other_loads_and_blocks_dbt(
    run_pipeline: RunPipeline, client: SyncPrefectClient, tmp_path: Path
) -> None:
    state, env = run_pipeline(
        tmp_path / "lakehouse",
        env={"LOAD_TASK_RETRIES": "1"},
        faults="503:1.0:collection=carts",
        collections=["carts", "categories"],
        run_dbt=True,
    )
    assert state.is_failed()
    message = state.message or ""
    assert "carts: PayloadUnavailableError" in message
    runs = load_runs(task_runs_of(client, flow_run_id(state)))
    assert runs["carts"][0].run_count == 2  # transient: retried, then given up
    assert state_of(runs["categories"][0]) == "Completed"
    settings = load_settings(lakehouse_dir=env["LAKEHOUSE_DIR"])
    assert table_state(settings, "categories") != "empty"  # not rolled back
    assert table_state(settings, "carts") == "empty"
    assert subflow_runs_of(client, flow_run_id(state)) == [], "dbt ran on a partial raw layer"
    (raw,) = events_of(client, flow_run_id(state), [RAW_LOADED], minimum=1)
    assert raw.resource[DBT_LABEL] == "blocked"
    assert raw.payload["failed"] == ["carts"]
