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
from typing import Any

import pytest
from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

from flows.demo.store import Document
from flows.lakehouse.fault_hook import hook_dir
from flows.lakehouse.load import LoadMode, load_collection

from .harness import (
    ADMIN_EMAIL,
    PAYLOAD_PASSWORD,
    CliRun,
    LogCapture,
    Scenario,
    failure_message,
)
from .support import lakehouse_fingerprint, load_raw_table
from .test_matrix import _load_runs, build_marts_and_check

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


def _table_ids(scenario: Scenario, collection: str) -> set[Any]:
    table = load_raw_table(scenario.catalog(), scenario.settings().iceberg_namespace, collection)
    assert table is not None
    return set(table.scan(selected_fields=("id",)).to_arrow().column("id").to_pylist())


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


@pytest.mark.scenario(16)
def test_16_a_document_committed_late_behind_the_cursor(
    scenario: Scenario, logs: LogCapture
) -> None:
    assert scenario.run_flow().is_completed()
    server = scenario.server
    # Committed late, 60 s behind documents already read: inside the cursor lookback.
    within = server._late_commit({"collection": "orders", "behind_seconds": 60})
    state = scenario.run_flow(collections=["orders"])
    assert state.is_completed(), failure_message(state)
    assert within["id"] in _table_ids(scenario, "orders"), "the late commit was skipped"
    # Committed two hours late, behind the lookback too: the reconcile adds it.
    beyond = server._late_commit({"collection": "orders", "behind_seconds": 7200})
    assert scenario.run_flow(collections=["orders"]).is_completed()
    assert beyond["id"] not in _table_ids(scenario, "orders")  # past the lookback window
    state = scenario.run_flow(mode="reconcile")
    assert state.is_completed(), failure_message(state)
    assert beyond["id"] in _table_ids(scenario, "orders"), "reconcile did not add it"
    scenario.assert_raw_equals_source()
    build_marts_and_check(scenario)
    scenario.assert_no_secrets(logs)


def _refused(scenario: Scenario, state: Any, *needles: str) -> str:
    if state.is_completed():
        rows = {c: len(_table_ids(scenario, c)) for c in ("orders", "users", "carts")}
        store = {c: scenario.server.store.count(c) for c in rows}
        raise AssertionError(f"the run was not refused: rows {rows}, source {store}")
    message = failure_message(state)
    for needle in needles:
        assert needle in message, message
    return message


@pytest.mark.scenario(17)
def test_17_a_credential_that_sees_less_cannot_delete(scenario: Scenario, logs: LogCapture) -> None:
    assert scenario.run_flow().is_completed()
    namespace = scenario.settings().iceberg_namespace
    fingerprint = lakehouse_fingerprint(scenario.catalog(), namespace)
    store = scenario.server.store
    customer = next(
        o["customer"] for o in store.collections["orders"].values() if o.get("customer")
    )
    # A customer's token: Payload answers 200 with their own orders and user only.
    token = scenario.server.user_token(customer)
    scenario.scanner.add(token)
    scenario.apply_env(PAYLOAD_CMS_TOKEN=token, PAYLOAD_EMAIL=None, PAYLOAD_PASSWORD=None)
    for mode in ("reconcile", "full_refresh"):
        state = scenario.run_flow(mode=mode, collections=["orders", "users"])
        _refused(
            scenario, state, "DeleteGuardError", "not an admin", "Nothing was read or committed"
        )
    assert lakehouse_fingerprint(scenario.catalog(), namespace) == fingerprint
    assert all(run.run_count == 1 for run in _load_runs(scenario)), "a refused load was retried"

    scenario.apply_env(
        PAYLOAD_CMS_TOKEN=None, PAYLOAD_EMAIL=ADMIN_EMAIL, PAYLOAD_PASSWORD=PAYLOAD_PASSWORD
    )
    state = scenario.run_flow(mode="reconcile")
    assert state.is_completed(), failure_message(state)
    scenario.assert_raw_equals_source(computed=True)
    build_marts_and_check(scenario)
    scenario.assert_no_secrets(logs)


@pytest.mark.scenario(18)
def test_18_a_short_id_listing_or_a_mass_deletion_is_refused(
    scenario: Scenario, logs: LogCapture
) -> None:
    assert scenario.run_flow().is_completed()
    namespace = scenario.settings().iceberg_namespace
    fingerprint = lakehouse_fingerprint(scenario.catalog(), namespace)
    # (a) Every orders page comes back cut in half, `totalDocs` and `hasNextPage` intact. The
    # share guard is off, so the listing check alone must refuse.
    scenario.apply_env(LOAD_MAX_DELETE_SHARE="1")
    scenario.set_faults("short:1.0:collection=orders")
    state = scenario.run_flow(mode="reconcile", collections=["orders"])
    scenario.set_faults(None)
    _refused(scenario, state, "IncompleteListingError", "totalDocs", "nothing is deleted")
    assert lakehouse_fingerprint(scenario.catalog(), namespace) == fingerprint

    # (b) A third of the carts really deleted upstream: above LOAD_MAX_DELETE_SHARE (0.2).
    scenario.apply_env(LOAD_MAX_DELETE_SHARE="0.2")  # the default (None would not unset it)
    store = scenario.server.store
    carts = sorted(store.collections["carts"])
    for cart_id in carts[: len(carts) // 3]:
        store.delete("carts", cart_id)
    assert len(carts) // 3 > 10, "too few carts for the share guard to apply"
    state = scenario.run_flow(mode="reconcile", collections=["carts"])
    _refused(scenario, state, "DeleteGuardError", "LOAD_MAX_DELETE_SHARE=0.2", "--force-deletes")
    assert lakehouse_fingerprint(scenario.catalog(), namespace) == fingerprint
    assert all(run.run_count == 1 for run in _load_runs(scenario)), "a refused load was retried"
    state = scenario.run_flow(mode="reconcile", collections=["carts"], force_deletes=True)
    assert state.is_completed(), failure_message(state)
    scenario.assert_raw_equals_source(computed=True)
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
    assert len(list(metadata_dir.glob("*.metadata.json"))) > len(before.metadata.metadata_log) + 1
    # The killed run's load task still holds its `payload-api` slot (see scenario 8).
    from flows.orchestration.tasks import PAYLOAD_API_TAG

    scenario.client.reset_concurrency_limit_by_tag(PAYLOAD_API_TAG)
    # Likewise its lakehouse-writer slot: a `prefect server` repossesses the expired lease, the
    # test harness's server runs no services (see scenario 8).
    scenario.client.update_global_concurrency_limit(
        scenario.settings().lakehouse_writer_limit, GlobalConcurrencyLimitUpdate(active_slots=0)
    )
    rerun = scenario.start_cli("--skip-dbt", name="rerun-after-commit-kill")
    assert rerun.wait(timeout=600) == 0, rerun.output[-3000:]
    scenario.assert_raw_equals_source(computed=True)
    build_marts_and_check(scenario)
    scenario.assert_no_secrets(logs)
