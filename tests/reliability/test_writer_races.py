"""Reliability scenarios 15-19: writes that race, commit late, see less, or die in the commit.

Like tests/reliability/test_matrix.py, each runs the real command line or flow against the demo
Payload API and ends with raw == source document by document (and the marts' invariants where
the scenario changes what the marts read). Races are made certain, not likely, by the test-only
`LOAD_FAULT_HOOK` (flows/lakehouse/fault_hook.py): a load pauses between its planning and its
write, or SIGKILLs itself inside the catalog commit.
"""

from __future__ import annotations

import copy
import signal
import time
import uuid
from pathlib import Path

import pytest

from flows.demo.store import Document
from flows.lakehouse.fault_hook import hook_dir
from flows.lakehouse.load import LoadMode, load_collection

from .harness import CliRun, LogCapture, Scenario
from .support import load_raw_table
from .test_matrix import build_marts_and_check

pytestmark = pytest.mark.slow


def _new_order(scenario: Scenario) -> Document:
    """A new order shaped like an existing one (same customer, items and amount)."""
    store = scenario.server.store
    template = copy.deepcopy(next(iter(store.collections["orders"].values())))
    for key in ("id", "createdAt", "updatedAt"):
        template.pop(key, None)
    for item in template.get("items") or []:
        item["id"] = uuid.uuid4().hex[:24]  # array row ids are unique across orders
    return store.create("orders", template)


def _start_paused(scenario: Scenario, mode_flag: str, collection: str) -> tuple[CliRun, Path]:
    """`python flows/main.py <mode> --collections <c>` that stops just before its write; returns
    the run and the file that resumes it."""
    folder = hook_dir(scenario.settings())
    for leftover in folder.glob(f"{collection}.*") if folder.exists() else []:
        leftover.unlink()
    run = scenario.start_cli(
        mode_flag,
        "--collections",
        collection,
        "--skip-dbt",
        name=f"paused{mode_flag}",
        LOAD_FAULT_HOOK=f"pause-before-write:{collection}",
    )
    paused = folder / f"{collection}.paused"
    deadline = time.monotonic() + 300
    while not paused.exists():
        assert run.process.poll() is None, f"the run ended before pausing:\n{run.output[-3000:]}"
        assert time.monotonic() < deadline, "the run never reached its write"
        time.sleep(0.1)
    return run, folder / f"{collection}.resume"


@pytest.mark.scenario(15)
@pytest.mark.parametrize("mode_flag", ["--reconcile", "--full-refresh"])
def test_15_reconcile_or_full_refresh_racing_an_incremental_run(
    scenario: Scenario, logs: LogCapture, mode_flag: str
) -> None:
    state = scenario.run_flow()
    assert state.is_completed()
    store = scenario.server.store
    # The reconcile (or full refresh) has listed every id / read every order, then waits.
    run, resume = _start_paused(scenario, mode_flag, "orders")
    # Meanwhile an on-change run loads a new order and a newer copy of an existing one.
    created = _new_order(scenario)
    existing = next(iter(store.collections["orders"].values()))
    changed = store.update("orders", existing["id"], {"amount": existing["amount"] + 100})
    report = load_collection(scenario.settings(), "orders", LoadMode.INCREMENTAL)
    assert report.committed and report.inserted == 1 and report.updated == 1, report
    resume.touch()
    assert run.wait(timeout=300) == 0, run.output[-3000:]
    table = load_raw_table(scenario.catalog(), scenario.settings().iceberg_namespace, "orders")
    assert table is not None
    rows = {row["id"]: row for row in table.scan().to_arrow().to_pylist()}
    problems = []
    if created["id"] not in rows:
        problems.append(f"deleted order {created['id']}, loaded meanwhile")
    elif rows[changed["id"]]["amount"] != changed["amount"]:
        problems.append(f"rolled order {changed['id']} back to its older copy")
    assert not problems, f"{mode_flag}: {problems}"
    scenario.assert_raw_equals_source()
    build_marts_and_check(scenario)
    scenario.assert_no_secrets(logs)


@pytest.mark.scenario(19)
def test_19_sigkill_inside_the_catalog_commit_then_rerun(
    scenario: Scenario, logs: LogCapture
) -> None:
    state = scenario.run_flow()
    assert state.is_completed()
    store = scenario.server.store
    for doc in list(store.collections["orders"].values())[:20]:  # something to commit
        store.update("orders", doc["id"], {"amount": doc["amount"] + 1})
    _new_order(scenario)
    before = load_raw_table(scenario.catalog(), scenario.settings().iceberg_namespace, "orders")
    assert before is not None
    killed = scenario.start_cli(
        "--collections",
        "orders",
        "--skip-dbt",
        name="killed-in-commit",
        LOAD_FAULT_HOOK="kill-before-catalog-commit:orders",
    )
    assert killed.wait(timeout=300) == -signal.SIGKILL, killed.output[-3000:]
    after = load_raw_table(scenario.catalog(), scenario.settings().iceberg_namespace, "orders")
    assert after is not None
    # The new metadata file was written, but the catalog still points at the old one.
    assert after.metadata_location == before.metadata_location
    metadata_dir = Path(before.metadata_location.removeprefix("file://")).parent
    assert len(list(metadata_dir.glob("*.metadata.json"))) > len(before.metadata_log) + 1
    # The killed run's load task still holds its `payload-api` slot (see scenario 8).
    from flows.orchestration.tasks import PAYLOAD_API_TAG

    scenario.client.reset_concurrency_limit_by_tag(PAYLOAD_API_TAG)
    rerun = scenario.start_cli("--skip-dbt", name="rerun-after-commit-kill")
    assert rerun.wait(timeout=600) == 0, rerun.output[-3000:]
    scenario.assert_raw_equals_source(computed=True)
    build_marts_and_check(scenario)
    scenario.assert_no_secrets(logs)
