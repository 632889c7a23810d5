"""The payload-lakehouse flow on the demo source, against a Prefect test harness.

Real components throughout: the demo Payload API over HTTP (with fault injection), dlt/pyiceberg
loads into a local Iceberg catalog, dbt on DuckDB through prefect-dbt, Prefect's API for task
runs, artifacts and events.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import TaskRun
from prefect.client.schemas.sorting import LogSort
from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter

from flows.demo.server import DemoServer
from flows.lakehouse.catalog import get_catalog
from flows.lakehouse.load import table_identifier, table_state
from flows.orchestration.artifacts import (
    LOADS_ARTIFACT_KEY,
    MARTS_ARTIFACT_KEY,
    REPORT_ARTIFACT_KEY,
    SUMMARY_ARTIFACT_KEY,
    cursor_cell,
)
from flows.orchestration.assets import raw_table_key
from flows.orchestration.events import COLLECTION_LOADED, DBT_LABEL, MARTS_BUILT, RAW_LOADED
from flows.settings import ALL_COLLECTIONS, COLLECTION_TABLES, load_settings

from .conftest import ADMIN_PASSWORD
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


def artifacts_of(client: SyncPrefectClient, state: Any) -> dict[str, Any]:
    artifacts = client.read_artifacts(
        artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id(state)])
        )
    )
    return {artifact.key: artifact for artifact in artifacts}


def table_rows(artifact: Any) -> list[dict[str, Any]]:
    data = artifact.data
    return list(data if isinstance(data, list) else json.loads(str(data)))


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
    state, env = full_run
    by_key = artifacts_of(client, state)
    table = by_key[LOADS_ARTIFACT_KEY]
    assert table.type == "table"
    by_collection = {row["collection"]: row for row in table_rows(table)}
    assert sorted(by_collection) == sorted(ALL_COLLECTIONS)
    orders = by_collection["orders"]
    assert orders["read"] == f"{demo.store.count('orders'):,}"
    assert orders["inserted"] == f"{demo.store.count('orders'):,}"
    # First load: a "before" cell that says so (not a bare "-", which renders as a bullet),
    # and the "after" cell holding the committed cursor.
    settings = load_settings(lakehouse_dir=env["LAKEHOUSE_DIR"])
    catalog = get_catalog(settings)
    for collection, row in by_collection.items():
        table_ = catalog.load_table(table_identifier(settings, collection))
        cursor = table_.properties.get("payload.cursor") or ""
        assert row["cursor before"] == "none (first load)", row
        assert row["cursor after"][0].isdigit() and "|" not in row["cursor after"], row
        if cursor:
            assert row["cursor after"] == cursor_cell(cursor, ""), row
        snapshot = table_.current_snapshot()
        assert snapshot is not None and row["snapshot id"] == str(snapshot.snapshot_id)

    marts = by_key[MARTS_ARTIFACT_KEY]
    mart_names = {row["mart"] for row in table_rows(marts)}
    assert "ecommerce_marts.fact_orders" in mart_names
    assert "ecommerce_marts.rfm_segments" not in mart_names  # a seed, not a mart
    fact_orders = next(r for r in table_rows(marts) if r["mart"] == "ecommerce_marts.fact_orders")
    assert fact_orders["rows"] == f"{demo.store.count('orders'):,}"
    published = catalog.load_table("ecommerce_marts.fact_orders").current_snapshot()
    assert published is not None and fact_orders["snapshot id"] == str(published.snapshot_id)

    summary = by_key[SUMMARY_ARTIFACT_KEY]
    assert summary.type == "markdown"
    markdown = str(summary.data)
    for section in (
        "## Freshness of the raw tables",
        "## dbt",
        "## Marts",
        "## Headline numbers",
        "## Where the data is",
    ):
        assert section in markdown, section
    assert "Slowest (dbt's own timings):" in markdown and "Marts built at " in markdown
    dbt_section = markdown.split("## dbt")[1].split("##")[0]
    assert re.search(
        r"\d+ models and 1 seed built; [\d,]+ data tests and \d+ unit tests? passed", dbt_section
    ), dbt_section
    assert "revenue_orders" not in markdown and "Revenue (USD)" in markdown
    assert "rfm_segments" not in markdown.split("## Marts")[1]
    assert str(settings.duckdb_path) in markdown
    assert ADMIN_PASSWORD not in markdown

    # The analytics report: rendered after the marts, linked from the summary, and shown as
    # its own artifact with the headline numbers and the main charts inline.
    report_html = settings.report_path / "report.html"
    assert report_html.exists()
    assert f"**Analytics report** `{report_html}`" in markdown
    report = by_key[REPORT_ARTIFACT_KEY]
    assert report.type == "markdown"
    report_text = str(report.data)
    assert "# Analytics report" in report_text and report_html.as_uri() in report_text
    assert f"| {demo.store.count('orders'):,} (" in report_text  # the orders column
    assert report_text.count("](data:image/png;base64,") == 2


def test_task_runs_have_plain_names(
    full_run: tuple[Any, dict[str, str]], client: SyncPrefectClient
) -> None:
    """What the run graph shows: the story's steps, named after their task (no random suffix),
    one load per collection; no per-collection bookkeeping tasks."""
    state, _ = full_run
    (dbt_run,) = subflow_runs_of(client, flow_run_id(state))
    names = {
        run.name
        for run in task_runs_of(client, flow_run_id(state))
        if run.id != dbt_run.parent_task_run_id  # the subflow itself, shown as dbt-build (local)
    }
    steps = {
        "ensure-request-limit",
        "prepare-lakehouse",
        "note-table-versions",
        "publish-marts",
        "describe-marts",
        "headline-metrics",
        "analytics-report",
    }
    assert names == steps | {f"load-{c}" for c in ALL_COLLECTIONS}, names
    assert dbt_run.name == "dbt-build (local)"


# dlt's log format: `2026-12-03 12:21:03,660|[INFO]|5542|139974828213952|prefect.task_runs|...`
FOREIGN_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d[ T][\d:.,]+\|\[?[A-Z]+\]?\|")


def test_logs_carry_no_foreign_format(
    full_run: tuple[Any, dict[str, str]], client: SyncPrefectClient
) -> None:
    """Every log line of the run (and its dbt subflow) as the UI reads it: plain messages, after
    dlt has initialised its logger in this process (PREFECT_LOGGING_EXTRA_LOGGERS=dlt,flows)."""
    state, _ = full_run
    run_ids = [flow_run_id(state), *(run.id for run in subflow_runs_of(client, flow_run_id(state)))]
    logs = []
    offset = 0
    while True:
        page = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=run_ids)),
            limit=200,
            offset=offset,
            sort=LogSort.TIMESTAMP_ASC,
        )
        logs += page
        offset += len(page)
        if len(page) < 200:
            break
    assert len(logs) > 50, "the run's logs were not read back"
    loads = [log.message for log in logs if log.message.startswith("orders -> ")]
    assert loads and loads[0].startswith("orders -> ecommerce.orders: read 500,"), loads
    foreign = [log.message for log in logs if FOREIGN_PREFIX.match(log.message)]
    assert not foreign, (
        f"{len(foreign)} of {len(logs)} messages carry a foreign format: {foreign[:3]}"
    )


def js_number(value: Any) -> Any:
    """`value` as JavaScript's JSON.parse gives it back: every number is an IEEE double."""
    return json.loads(json.dumps(value), parse_int=float)


def test_snapshot_ids_survive_javascript(
    full_run: tuple[Any, dict[str, str]], client: SyncPrefectClient
) -> None:
    state, env = full_run
    settings = load_settings(lakehouse_dir=env["LAKEHOUSE_DIR"])
    catalog = get_catalog(settings)
    events = events_of(
        client, flow_run_id(state), [COLLECTION_LOADED, RAW_LOADED, MARTS_BUILT], minimum=11
    )
    seen = 0

    def check(path: str, value: Any, parsed: Any) -> None:
        nonlocal seen
        if isinstance(value, dict):
            for key in value:
                check(f"{path}.{key}", value[key], parsed[key])
        elif isinstance(value, list):
            for index, item in enumerate(value):
                check(f"{path}[{index}]", item, parsed[index])
        elif isinstance(value, int) and not isinstance(value, bool):
            assert float(value) == value and int(parsed) == value, f"{path} = {value}"
        if "snapshot" in path and value is not None and not isinstance(value, dict):
            seen += 1
            assert isinstance(parsed, str) and parsed == str(value), f"{path} = {value!r}"

    for event in events:
        check(event.event, event.payload, js_number(event.payload))
    loaded = [e for e in events if e.event == COLLECTION_LOADED]
    for event in loaded:
        collection = event.resource["payload.collection"]
        snapshot = catalog.load_table(table_identifier(settings, collection)).current_snapshot()
        assert snapshot is not None
        assert js_number(event.payload)["snapshot_id"] == str(snapshot.snapshot_id)
    assert seen >= len(ALL_COLLECTIONS) * 2, "no snapshot id was checked"


def asset_events(client: SyncPrefectClient, run_ids: list[Any]) -> list[Any]:
    event_filter = EventFilter(
        event=EventNameFilter(prefix=["prefect.asset.materialization."]),
        related=EventRelatedFilter(id=[f"prefect.flow-run.{run_id}" for run_id in run_ids]),
    )
    page = client.read_events(filter=event_filter, limit=50)
    events = list(page.events)
    while page.next_page:
        page = client.read_events_page(str(page.next_page))
        events += page.events
    return events


def test_load_and_dbt_name_a_table_alike(
    full_run: tuple[Any, dict[str, str]], client: SyncPrefectClient
) -> None:
    """The raw table a load writes and the dbt source that reads it are one asset, and so are
    the marts dbt builds and the ones the flow reports: the lineage joins."""
    state, env = full_run
    settings = load_settings(lakehouse_dir=env["LAKEHOUSE_DIR"])
    (dbt_run,) = subflow_runs_of(client, flow_run_id(state))
    events = events_of(client, flow_run_id(state), [COLLECTION_LOADED, MARTS_BUILT], minimum=10)
    dbt_events = asset_events(client, [dbt_run.id])
    # What prefect-dbt reported: the assets it built and the upstream assets they read.
    dbt_built = {e.resource.id for e in dbt_events}
    dbt_read = {r.id for e in dbt_events for r in e.related if r.role == "asset"}
    load_ids = {e.resource.id for e in events if e.event == COLLECTION_LOADED}
    assert load_ids == {raw_table_key(settings, c) for c in ALL_COLLECTIONS}
    assert load_ids <= dbt_read, sorted(load_ids - dbt_read)
    (marts,) = [e for e in events if e.event == MARTS_BUILT]
    mart_ids = {r.id for r in marts.related if r.role == "table"}
    assert "duckdb://lakehouse/ecommerce_marts/fact_orders" in mart_ids
    assert mart_ids <= dbt_built, sorted(mart_ids - dbt_built)
    # The load tasks materialize their raw table's asset under the very same key.
    load_assets = {
        e.resource.id
        for e in asset_events(client, [flow_run_id(state)])
        if any(r.id == "dlt" for r in e.related)
    }
    assert load_assets == load_ids


def test_events_name_tables_and_counts(
    full_run: tuple[Any, dict[str, str]], client: SyncPrefectClient, demo: DemoServer
) -> None:
    state, _ = full_run
    run_id = flow_run_id(state)
    events = events_of(client, run_id, [COLLECTION_LOADED, RAW_LOADED, MARTS_BUILT], minimum=11)
    loaded = [event for event in events if event.event == COLLECTION_LOADED]
    assert sorted(event.resource.id for event in loaded) == sorted(
        f"duckdb://lakehouse/ecommerce/{table}" for table in COLLECTION_TABLES.values()
    )
    orders = next(e for e in loaded if e.resource.id == "duckdb://lakehouse/ecommerce/orders")
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
    # A rerun's loads table: "before" and "after" cursors each in their own cell, both shown.
    rows = {
        row["collection"]: row
        for row in table_rows(artifacts_of(client, first)[LOADS_ARTIFACT_KEY])
    }
    for collection in small:
        row = rows[collection]
        assert row["status"] == "no change"
        assert row["cursor before"][0].isdigit() and ", id " in row["cursor before"], row
        assert row["cursor before"] == row["cursor after"], row
    summary = str(artifacts_of(client, first)[SUMMARY_ARTIFACT_KEY].data)
    assert "dbt was skipped: the run was started with run_dbt=false." in summary


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
    summary = str(artifacts_of(client, state)[SUMMARY_ARTIFACT_KEY].data)
    assert "dbt did not run: the raw layer is partial (carts failed)" in summary
    assert raw.payload["failed"] == ["carts"]
