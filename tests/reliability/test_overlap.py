"""Reliability scenarios 20-23: runs that overlap, a dbt retry with nothing to retry from, the
load cache after an edit, and two dbt builds at once on one DuckDB file (issue 10, defects 4-6
and 7b). Same harness and oracle as test_matrix.py: each ends with raw = source document by
document and, where the scenario builds marts, the marts' invariants. docs/proof.md lists them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterParentTaskRunId,
    FlowRunFilterStartTime,
)
from prefect.settings import PREFECT_API_URL

from flows.settings import REPO_ROOT

from .harness import CliRun, LogCapture, Scenario, child_environment, failure_message
from .support import REVENUE_STATUSES, read_mart

pytestmark = pytest.mark.slow


def start_command(scenario: Scenario, args: list[str], name: str, **env: str) -> CliRun:
    """`python ARGS` in the scenario's environment (like `Scenario.start_cli`, any module)."""
    child_env = child_environment({**os.environ, **scenario.env, **env})
    child_env["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
    log_path = scenario.workdir / f"{name}-{len(scenario.cli_runs)}.log"
    with log_path.open("w") as handle:
        process = subprocess.Popen(
            [sys.executable, *args],
            cwd=scenario.workdir,
            env=child_env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    run = CliRun([sys.executable, *args], process, log_path)
    scenario.cli_runs.append(run)
    return run


def pipeline_runs_since(scenario: Scenario, since: datetime) -> list[Any]:
    """The parent `payload-lakehouse` flow runs started after `since` (not the dbt subflows)."""
    runs = scenario.client.read_flow_runs(
        flow_filter=FlowFilter(name=FlowFilterName(any_=["payload-lakehouse"])),
        flow_run_filter=FlowRunFilter(
            start_time=FlowRunFilterStartTime(after_=since),  # type: ignore[arg-type]
            parent_task_run_id=FlowRunFilterParentTaskRunId(is_null_=True),
        ),
        limit=50,
    )
    return list(runs)


def writing_window(scenario: Scenario, flow_run_id: UUID) -> tuple[datetime, datetime, int]:
    """(first start, last end, task runs) over the tasks of a run that touch the lakehouse:
    preparing it, the loads, the dbt subflow, publishing and describing the marts."""
    task_runs = scenario.client.read_task_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])), limit=200
    )
    writing = [
        run
        for run in task_runs
        if not run.name.startswith(("ensure-", "probe-")) and run.start_time and run.end_time
    ]
    assert writing, f"flow run {flow_run_id} has no finished task run"
    start = min(run.start_time for run in writing if run.start_time)
    end = max(run.end_time for run in writing if run.end_time)
    return start, end, len(writing)


def touch(scenario: Scenario, *collections: str, count: int = 3) -> None:
    """Edit a few documents of each collection (a new `updatedAt`): something to load. No hard
    deletes: an incremental run cannot see those (reconcile's job, scenario 6)."""
    store = scenario.server.store
    for collection in collections:
        for doc_id in list(store.collections[collection])[:count]:
            store.update(collection, doc_id, {})


def cancel_a_paid_order(scenario: Scenario) -> Any:
    """Cancel one revenue-bearing order: the revenue the marts report must change."""
    store = scenario.server.store
    order = next(o for o in store.collections["orders"].values() if o["status"] in REVENUE_STATUSES)
    store.update("orders", order["id"], {"status": "cancelled"})
    return order["id"]  # an int, or an ObjectId / UUID string: the store's id type


def fact_order(scenario: Scenario, order_id: Any) -> list[dict[str, Any]]:
    rows = read_mart(scenario.catalog(), scenario.settings().iceberg_marts_namespace, "fact_orders")
    return [row for row in rows if row["order_id"] == order_id]


@pytest.mark.scenario(20)
def test_20_two_cli_runs_do_not_interleave(scenario: Scenario, logs: LogCapture) -> None:
    # A full load and build first (dbt reads every raw table; a partial build needs the rest),
    # then two runs with different collections start together, each loading its collections
    # and building the marts downstream of them.
    assert scenario.run_flow(run_dbt=True).is_completed()
    touch(scenario, "orders", "transactions", "carts", "products", "variants", "users")
    cancel_a_paid_order(scenario)  # the marts must change too
    since = datetime.now(UTC)
    first = scenario.start_cli("--collections", "orders,transactions,carts", name="first")
    second = scenario.start_cli("--collections", "products,variants,users", name="second")
    assert first.wait(timeout=900) == 0, first.output[-3000:]
    assert second.wait(timeout=900) == 0, second.output[-3000:]

    runs = pipeline_runs_since(scenario, since)
    assert len(runs) == 2, [run.name for run in runs]
    windows = sorted(writing_window(scenario, run.id) for run in runs)
    (start_a, end_a, tasks_a), (start_b, end_b, tasks_b) = windows
    print(
        f"scenario 20: run A wrote {start_a:%H:%M:%S.%f}-{end_a:%H:%M:%S.%f} ({tasks_a} tasks), "
        f"run B {start_b:%H:%M:%S.%f}-{end_b:%H:%M:%S.%f} ({tasks_b} tasks)"
    )
    assert end_a <= start_b, (
        f"the runs' writes interleaved: A {start_a}..{end_a}, B {start_b}..{end_b}"
    )
    assert any("lakehouse-writer" in run.output for run in (first, second)), "no slot logged"
    scenario.assert_raw_equals_source(computed=True)
    scenario.assert_marts()  # the second run's published marts, built on everything
    scenario.assert_no_secrets(logs)


@pytest.mark.scenario(21)
def test_21_dbt_retry_after_a_failure_before_run_results(
    scenario: Scenario, logs: LogCapture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An earlier run built the marts: its run_results.json (every node a success) is on disk.
    state = scenario.run_flow(run_dbt=True)
    assert state.is_completed(), failure_message(state)
    touch(scenario, "orders", "users")
    cancelled = cancel_a_paid_order(scenario)  # revenue changes: stale marts would show it

    # The next run's first dbt attempt fails before dbt writes any result (the catalog did not
    # answer while the dbt environment was resolved); the flow's retry then runs.
    import flows.orchestration.dbt as dbt_module

    real_environment = dbt_module.dbt_environment
    calls = {"count": 0}

    def failing_once(settings: Any) -> dict[str, str]:
        calls["count"] += 1
        if calls["count"] == 1:
            raise RuntimeError("injected: the catalog did not answer (first dbt attempt)")
        return real_environment(settings)

    monkeypatch.setattr(dbt_module, "dbt_environment", failing_once)
    state = scenario.run_flow(run_dbt=True)
    monkeypatch.setattr(dbt_module, "dbt_environment", real_environment)
    assert state.is_completed(), failure_message(state)
    assert calls["count"] >= 2, "the fault was not injected"
    summary = state.result()["dbt"]
    print(
        f"scenario 21: the retried attempt ran `dbt {summary['command']}`, {summary['nodes']} nodes"
    )
    assert summary["nodes"] > 0 and summary["statuses"].get("success", 0) > 0, summary
    assert not any(row["is_revenue_bearing"] for row in fact_order(scenario, cancelled))
    # The marts this run published (and announced with marts.built) reflect the new source.
    scenario.assert_raw_equals_source()
    scenario.assert_marts()
    scenario.assert_no_secrets(logs)


def _load_states(scenario: Scenario) -> dict[str, str]:
    """load-<collection> -> state name, for the scenario's last flow run."""
    task_runs = scenario.client.read_task_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[scenario.flow_run_ids[-1]]))
    )
    return {
        run.name: (run.state.name if run.state else "?")
        for run in task_runs
        if run.name.startswith("load-")
    }


@pytest.mark.scenario(22)
def test_22_an_edit_within_the_cache_window_lands(scenario: Scenario, logs: LogCapture) -> None:
    # Within LOAD_CACHE_MINUTES (10 by default): a load, a run that finds nothing new (its
    # results are cached for that table state), then an edit in Payload and a run with no
    # change_id ("Run now" right after an edit).
    assert scenario.run_flow().is_completed()
    assert scenario.run_flow().is_completed()
    store = scenario.server.store
    order_id = next(iter(store.collections["orders"]))
    store.update("orders", order_id, {"currency": "USD"})

    state = scenario.run_flow()
    assert state.is_completed(), failure_message(state)
    loads = _load_states(scenario)
    print(f"scenario 22: after the edit, load task states: {loads}")
    assert loads["load-orders"] == "Completed", loads
    scenario.assert_raw_equals_source(computed=True)

    # Nothing changed since: the cache still saves the reads (the probe says nothing is newer).
    # The run right after a commit reads (a table state not seen before); the next one skips.
    for _ in range(2):
        state = scenario.run_flow()
        assert state.is_completed(), failure_message(state)
    loads = _load_states(scenario)
    assert set(loads.values()) == {"Cached"}, loads
    scenario.assert_raw_equals_source(computed=True)
    scenario.assert_no_secrets(logs)


@pytest.mark.scenario(23)
def test_23_two_dbt_builds_at_once_on_one_duckdb_file(scenario: Scenario, logs: LogCapture) -> None:
    assert scenario.run_flow().is_completed()
    # A dbt-only flow run, and once its dbt build has begun, a dbt build without Prefect
    # (`python -m flows.transform build`, as a developer or a cron job would run it), on the
    # same DuckDB file.
    flow_run = start_command(
        scenario, [str(REPO_ROOT / "flows" / "main.py"), "--collections", ""], name="flow-dbt"
    )
    deadline = time.monotonic() + 300
    while "dbt build (target local" not in flow_run.output and flow_run.process.poll() is None:
        assert time.monotonic() < deadline, flow_run.output[-3000:]
        time.sleep(0.2)
    plain = start_command(scenario, ["-m", "flows.transform", "build"], name="plain-dbt")
    assert plain.wait(timeout=900) == 0, plain.output[-3000:]
    assert flow_run.wait(timeout=900) == 0, flow_run.output[-3000:]
    waited = [
        run.log_path.name
        for run in (plain, flow_run)
        if "waiting for the DuckDB lock" in run.output
    ]
    print(f"scenario 23: waited for the lock: {waited}")
    for run in (plain, flow_run):
        # DuckDB's own refusal: one build failing halfway (then, before per-run target paths,
        # "retried" from the other build's run_results.json: zero nodes, reported a success).
        assert "Could not set lock on file" not in run.output, run.output[-3000:]
    assert waited, "the two builds did not overlap: the scenario proved nothing"

    # A build that cannot get the lock in time fails clearly and leaves the file alone.
    from flows.transform.lock import duckdb_lock

    settings = scenario.settings()
    before = settings.duckdb_path.stat().st_mtime_ns
    started = time.monotonic()
    with duckdb_lock(settings, timeout_seconds=5):
        refused = start_command(
            scenario,
            ["-m", "flows.transform", "build"],
            name="refused-dbt",
            DUCKDB_LOCK_TIMEOUT_SECONDS="2",
        )
        assert refused.wait(timeout=600) == 1, refused.output[-3000:]
    print(f"scenario 23: the refused build ended after {time.monotonic() - started:.1f}s")
    assert "DuckDBLockTimeout" in refused.output, refused.output[-2000:]
    assert "DUCKDB_LOCK_TIMEOUT_SECONDS" in refused.output, refused.output[-2000:]
    assert settings.duckdb_path.stat().st_mtime_ns == before, "the refused build wrote"

    scenario.assert_raw_equals_source(computed=True)
    scenario.assert_marts()  # published by the flow run, on an intact DuckDB file
    scenario.assert_no_secrets(logs)
