"""The reliability matrix: the real flow against a misbehaving Payload, end to end.

Each scenario runs `flows.main` (the parent flow in-process, or the `python flows/main.py`
command line in a subprocess for the SIGKILL and concurrency scenarios) against the demo Payload
API with the scenario's faults or mutations, then compares every raw Iceberg table with the demo
store document by document (tests/reliability/support.py) and searches everything the scenario
printed, logged or stored in Prefect for secrets. Scenarios 6 and 12 also build the marts with
dbt and check their invariants; 13 and 14 are runs that must be refused (every document
malformed the same way; another store on the same lakehouse). docs/proof.md lists what this proves.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from flows.demo.server import DemoServer, malformed_id
from flows.demo.store import format_timestamp
from flows.lakehouse.schema import id_problem
from flows.orchestration.artifacts import LOADS_ARTIFACT_KEY
from flows.orchestration.tasks import PAYLOAD_API_TAG
from flows.settings import ALL_COLLECTIONS
from flows.source.ids import IdType

from .harness import (
    ADMIN_EMAIL,
    PAYLOAD_API_KEY,
    PAYLOAD_PASSWORD,
    LogCapture,
    Scenario,
    background,
    failure_message,
)
from .support import compare_collection, lakehouse_fingerprint, load_raw_table, rejected_rows

pytestmark = pytest.mark.slow

# Small pages: every collection is read in several pages, so faults and drift land mid-read.
FAULT_PAGE_SIZE = "25"


def build_marts_and_check(
    scenario: Scenario, documents: dict[str, list[dict[str, Any]]] | None = None
) -> None:
    """`dbt build` (all models and tests) through the flow, loading nothing (`collections=[]`),
    then the marts' invariants against the source documents."""
    state = scenario.run_flow(collections=[], run_dbt=True)
    assert state.is_completed(), failure_message(state)
    scenario.assert_marts(documents)


def injected(scenario: Scenario) -> dict[str, int]:
    return dict(scenario.server.stats()["faults"]["by_kind"])


def run_under_faults(scenario: Scenario, spec: str, **env: str) -> dict[str, int]:
    scenario.apply_env(PAYLOAD_PAGE_SIZE=FAULT_PAGE_SIZE, **env)
    scenario.set_faults(spec)
    state = scenario.run_flow()
    faults = injected(scenario)
    scenario.set_faults(None)
    assert state.is_completed(), failure_message(state)
    return faults


@pytest.mark.scenario(1)
def test_01_bursts_of_server_errors(scenario: Scenario, logs: LogCapture) -> None:
    faults = run_under_faults(scenario, "500:0.1x3,502:0.1x2,503:0.1x3,max=60")
    assert {"500", "502", "503"} <= set(faults), faults
    scenario.assert_raw_equals_source(computed=True)
    build_marts_and_check(scenario)
    scenario.assert_no_secrets(logs)

    # Negative control: the oracle sees a one-cent change and a vanished document.
    store = scenario.server.store
    order = next(iter(store.collections["orders"].values()))
    store.update("orders", order["id"], {"amount": order["amount"] + 1})
    gone = store.delete("carts", next(iter(store.collections["carts"])))["id"]
    docs = scenario.documents()
    namespace = scenario.settings().iceberg_namespace
    _, problems = compare_collection(scenario.catalog(), namespace, "orders", docs["orders"])
    assert any(f"id {order['id']}.amount" in p for p in problems), problems
    _, problems = compare_collection(scenario.catalog(), namespace, "carts", docs["carts"])
    assert any(f"ids [{gone!r}]" in p for p in problems), problems


@pytest.mark.scenario(2)
def test_02_rate_limit_storm_honours_retry_after(scenario: Scenario, logs: LogCapture) -> None:
    faults = run_under_faults(scenario, "429:0.2x3@1,max=30")
    assert faults.get("429", 0) >= 5, faults
    waits = [
        float(match.group(1))
        for message in logs.messages()
        if (match := re.search(r"HTTP 429; retry \d+ in ([\d.]+)s", message))
    ]
    assert waits, "no 429 retry was logged"
    assert min(waits) >= 1.0, f"a retry came before Retry-After (1 s): {sorted(waits)[:5]}"
    scenario.assert_raw_equals_source(computed=True)
    build_marts_and_check(scenario)
    scenario.assert_no_secrets(logs)


@pytest.mark.scenario(3)
def test_03_connection_resets(scenario: Scenario, logs: LogCapture) -> None:
    faults = run_under_faults(scenario, "reset:0.1,cut:0.1,max=40")
    assert faults.get("reset", 0) >= 1 and faults.get("cut", 0) >= 1, faults
    scenario.assert_raw_equals_source(computed=True)
    build_marts_and_check(scenario)
    scenario.assert_no_secrets(logs)


@pytest.mark.scenario(4)
def test_04_truncated_json_bodies(scenario: Scenario, logs: LogCapture) -> None:
    # Authenticated with an API key this time (`users API-Key <key>`).
    scenario.apply_env(PAYLOAD_API_KEY=PAYLOAD_API_KEY, PAYLOAD_EMAIL=None, PAYLOAD_PASSWORD=None)
    faults = run_under_faults(scenario, "truncate:0.15,max=30")
    assert faults.get("truncate", 0) >= 3, faults
    # The comparison proves no half page was loaded: every cell equals the stored document.
    scenario.assert_raw_equals_source(computed=True)
    build_marts_and_check(scenario)
    scenario.assert_no_secrets(logs)


@pytest.mark.scenario(5)
def test_05_slow_responses_past_the_client_timeout(scenario: Scenario, logs: LogCapture) -> None:
    # Authenticated with a static token this time (PAYLOAD_CMS_TOKEN, a Payload JWT).
    token = scenario.server.admin_token()
    scenario.scanner.add(token)
    scenario.apply_env(PAYLOAD_CMS_TOKEN=token, PAYLOAD_EMAIL=None, PAYLOAD_PASSWORD=None)
    faults = run_under_faults(scenario, "latency:0.25@3.0,max=8", PAYLOAD_TIMEOUT_SECONDS="1.0")
    assert faults.get("latency", 0) >= 2, faults
    timeouts = [m for m in logs.messages() if "Timeout" in m]
    assert timeouts, "no request timed out: the scenario did not exercise the client timeout"
    scenario.assert_raw_equals_source(computed=True)
    build_marts_and_check(scenario)
    scenario.assert_no_secrets(logs)


@pytest.mark.scenario(6)
def test_06_changes_while_paging_then_reconcile(scenario: Scenario, logs: LogCapture) -> None:
    initial_ids = {c: {d["id"] for d in docs} for c, docs in scenario.documents().items()}
    scenario.apply_env(PAYLOAD_PAGE_SIZE=FAULT_PAGE_SIZE)
    # A change batch (creates, updates, refunds, trash, hard deletes) before every 3rd page.
    scenario.server._set_drift({"every_n_list_requests": 3, "fraction": 0.01, "seed": 7})
    state = scenario.run_flow()
    drift = scenario.server.stats()["drift"]
    scenario.server._set_drift({"every_n_list_requests": 0})
    assert state.is_completed(), failure_message(state)
    assert drift["batches_applied"] >= 5, drift
    final_ids = {c: {d["id"] for d in docs} for c, docs in scenario.documents().items()}
    assert any(initial_ids[c] - final_ids[c] for c in ALL_COLLECTIONS), "no hard delete happened"

    # Incremental runs cannot see hard deletes: the reconcile run removes them. Documents the
    # first run skipped would stay missing (the second run reads only past its cursor).
    state = scenario.run_flow(mode="reconcile")
    assert state.is_completed(), failure_message(state)
    scenario.assert_raw_equals_source()
    build_marts_and_check(scenario)
    scenario.assert_no_secrets(logs)


@pytest.mark.scenario(7)
def test_07_new_field_and_incompatible_type_change(scenario: Scenario, logs: LogCapture) -> None:
    assert scenario.run_flow().is_completed()
    server = scenario.server
    server._schema_change(
        {"collection": "orders", "action": "add_field", "field": "giftMessage", "value": "Merci!"}
    )
    server._schema_change(
        {"collection": "products", "action": "add_field", "field": "weightGrams", "value": 250}
    )
    state = scenario.run_flow(collections=["orders", "products"])
    assert state.is_completed(), failure_message(state)
    catalog = scenario.catalog()
    namespace = scenario.settings().iceberg_namespace
    orders = load_raw_table(catalog, namespace, "orders")
    products = load_raw_table(catalog, namespace, "products")
    assert orders is not None and products is not None
    assert str(orders.schema().find_field("gift_message").field_type) == "string"
    # A JSON number is `double` even while every value is whole (scenario 24).
    assert str(products.schema().find_field("weight_grams").field_type) == "double"
    scenario.assert_raw_equals_source()

    # variants.inventory turns into a string on every 2nd document: Iceberg cannot widen a long
    # to a string, so the variants load must fail clearly and commit nothing.
    before = scenario.documents()
    fingerprint = lakehouse_fingerprint(catalog, namespace)
    server._schema_change(
        {"collection": "variants", "action": "change_type", "field": "inventory", "to": "string"}
    )
    state = scenario.run_flow(collections=["variants", "orders"])
    assert not state.is_completed()
    message = failure_message(state)
    assert "SchemaEvolutionError" in message and "inventory" in message, message
    assert "variants" in message, message
    after = lakehouse_fingerprint(scenario.catalog(), namespace)
    assert after["variants"] == fingerprint["variants"], "variants: something was committed"
    scenario.assert_raw_equals_source({**scenario.documents(), "variants": before["variants"]})
    build_marts_and_check(scenario, {**scenario.documents(), "variants": before["variants"]})
    scenario.assert_no_secrets(logs)


def _raw_tables_with_data(scenario: Scenario) -> set[str]:
    catalog = scenario.catalog()
    namespace = scenario.settings().iceberg_namespace
    loaded = set()
    for collection in ALL_COLLECTIONS:
        table = load_raw_table(catalog, namespace, collection)
        if table is not None and table.current_snapshot() is not None:
            loaded.add(collection)
    return loaded


@pytest.mark.scenario(8)
def test_08_sigkill_during_a_load_then_rerun(scenario: Scenario, logs: LogCapture) -> None:
    # Slow the orders pages down so the kill lands while orders is being read, after other
    # collections have committed.
    scenario.apply_env(PAYLOAD_PAGE_SIZE=FAULT_PAGE_SIZE)
    scenario.set_faults("latency:1.0@0.4:collection=orders")
    run = scenario.start_cli("--skip-dbt", name="killed")
    deadline = time.monotonic() + 300
    loaded: set[str] = set()
    while time.monotonic() < deadline and run.process.poll() is None:
        loaded = _raw_tables_with_data(scenario)
        orders_requests = scenario.server.stats()["by_collection"].get("orders", 0)
        if loaded and "orders" not in loaded and orders_requests >= 3:
            break
        time.sleep(0.2)
    assert run.process.poll() is None, f"the run ended before the kill:\n{run.output[-3000:]}"
    os.killpg(run.process.pid, signal.SIGKILL)
    assert run.wait(timeout=60) == -signal.SIGKILL
    assert loaded and "orders" not in loaded, loaded
    scenario.set_faults(None)
    # The killed run's load tasks still hold their `payload-api` concurrency slots (300 s
    # leases). A `prefect server` frees them when the leases expire (its repossessor service);
    # the test harness's server runs no services, so free them now, as `prefect
    # concurrency-limit reset payload-api` would.
    scenario.client.reset_concurrency_limit_by_tag(PAYLOAD_API_TAG)
    # Likewise the killed run's lakehouse-writer slot (flows/orchestration/writer_slot.py).
    scenario.client.update_global_concurrency_limit(
        scenario.settings().lakehouse_writer_limit, GlobalConcurrencyLimitUpdate(active_slots=0)
    )

    rerun = scenario.start_cli("--skip-dbt", name="rerun")
    assert rerun.wait(timeout=600) == 0, rerun.output[-3000:]
    scenario.assert_raw_equals_source(computed=True)
    build_marts_and_check(scenario)
    scenario.assert_no_secrets(logs)


@pytest.mark.scenario(9)
def test_09_two_runs_at_once_on_one_lakehouse(scenario: Scenario, logs: LogCapture) -> None:
    first = scenario.start_cli("--skip-dbt", name="first")
    second = scenario.start_cli("--skip-dbt", name="second")
    assert first.wait(timeout=600) == 0, first.output[-3000:]
    assert second.wait(timeout=600) == 0, second.output[-3000:]
    scenario.assert_raw_equals_source(computed=True)
    build_marts_and_check(scenario)
    scenario.assert_no_secrets(logs)


def _revoke_tokens_mid_run(stop: threading.Event, scenario: Scenario) -> None:
    """Revoke every issued token (as an expiry would) once 20 requests were served. Once only:
    two revocations a few milliseconds apart could hit a fresh re-login token, which the client
    rightly treats as refused credentials."""
    while not stop.wait(0.02):
        if scenario.server.stats()["requests"] >= 20:
            scenario.server.tokens.revoke_all()
            return


@pytest.mark.scenario(10)
def test_10_token_expires_mid_run(scenario: Scenario, logs: LogCapture) -> None:
    scenario.apply_env(PAYLOAD_PAGE_SIZE=FAULT_PAGE_SIZE)
    with background(_revoke_tokens_mid_run, scenario):
        state = scenario.run_flow()
    assert state.is_completed(), failure_message(state)
    stats = scenario.server.stats()
    assert stats["by_status"].get("403", 0) >= 1, stats["by_status"]
    relogins = [m for m in logs.messages() if "logging in again" in m]
    assert relogins, "no re-login was logged"
    scenario.assert_raw_equals_source(computed=True)
    build_marts_and_check(scenario)
    scenario.assert_no_secrets(logs)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.scenario(11)
def test_11_wrong_credentials_or_unreachable_catalog(scenario: Scenario, logs: LogCapture) -> None:
    assert scenario.run_flow().is_completed()
    loaded = scenario.documents()
    scenario.server._apply_changes({"seed": 3, "fraction": 0.02})  # something left to load
    namespace = scenario.settings().iceberg_namespace
    fingerprint = lakehouse_fingerprint(scenario.catalog(), namespace)

    # Wrong Payload credentials: refused at once (never retried), nothing committed.
    wrong_password = "wrong-RELIABILITY-password-31a7"
    scenario.scanner.add(wrong_password)
    scenario.apply_env(PAYLOAD_PASSWORD=wrong_password)
    state = scenario.run_flow()
    assert not state.is_completed()
    message = failure_message(state)
    assert "PayloadAuthError" in message and "PAYLOAD_PASSWORD" in message, message
    load_runs = [
        run
        for run in scenario.client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[scenario.flow_run_ids[-1]]))
        )
        if run.name.startswith("load-")
    ]
    assert load_runs and all(run.run_count == 1 for run in load_runs), [
        (run.name, run.run_count) for run in load_runs
    ]
    assert lakehouse_fingerprint(scenario.catalog(), namespace) == fingerprint
    scenario.apply_env(PAYLOAD_PASSWORD=PAYLOAD_PASSWORD)

    # An unreachable catalog (REST, OAuth2 client credentials): a clear error naming it.
    port = _free_port()  # nothing listens there
    scenario.apply_env(
        ICEBERG_CATALOG_TYPE="rest",
        ICEBERG_CATALOG_URL=f"http://127.0.0.1:{port}/catalog",
        ICEBERG_WAREHOUSE="reliability",
    )
    state = scenario.run_flow()
    assert not state.is_completed()
    message = failure_message(state)
    assert "CatalogError" in message and f"127.0.0.1:{port}" in message, message
    scenario.apply_env(ICEBERG_CATALOG_TYPE=None, ICEBERG_CATALOG_URL=None, ICEBERG_WAREHOUSE=None)

    # The tables, their snapshots and cursors are exactly as the first run left them.
    assert lakehouse_fingerprint(scenario.catalog(), namespace) == fingerprint
    scenario.assert_raw_equals_source(loaded)
    build_marts_and_check(scenario, loaded)
    scenario.assert_no_secrets(logs)


@pytest.mark.scenario(12)
def test_12_malformed_documents_among_good_ones(scenario: Scenario, logs: LogCapture) -> None:
    store = scenario.server.store
    order = dict(next(iter(store.collections["orders"].values())))
    transaction = dict(next(iter(store.collections["transactions"].values())))
    for doc in (order, transaction):
        doc.pop("id")
        doc["updatedAt"] = format_timestamp(store.now)
    order["amount"] = "twelve dollars"  # not a number of cents
    transaction["createdAt"] = "sometime last week"  # not an instant
    bad_order = scenario.server._inject({"collection": "orders", "document": order})["id"]
    bad_transaction = scenario.server._inject(
        {"collection": "transactions", "document": transaction}
    )["id"]

    state = scenario.run_flow()
    assert state.is_completed(), failure_message(state)
    rejected = {"orders": {bad_order}, "transactions": {bad_transaction}}
    scenario.assert_raw_equals_source(computed=True, rejected=rejected)
    documents = scenario.documents()
    documents["orders"] = [d for d in documents["orders"] if d["id"] != bad_order]
    documents["transactions"] = [d for d in documents["transactions"] if d["id"] != bad_transaction]
    build_marts_and_check(scenario, documents)
    scenario.assert_no_secrets(logs)


def _load_runs(scenario: Scenario) -> list[Any]:
    """The load task runs of the scenario's last flow run."""
    return [
        run
        for run in scenario.client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[scenario.flow_run_ids[-1]]))
        )
        if run.name.startswith("load-")
    ]


def _loads_artifact(scenario: Scenario) -> list[dict[str, Any]]:
    """The rows of the last flow run's table artifact (one per collection)."""
    artifacts = scenario.client.read_artifacts(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[scenario.flow_run_ids[-1]]))
    )
    data = next(a.data for a in artifacts if a.key == LOADS_ARTIFACT_KEY)
    rows: list[dict[str, Any]] = json.loads(data) if isinstance(data, str) else data
    return rows


def _published_marts(scenario: Scenario) -> list[Any]:
    return list(scenario.catalog().list_tables(scenario.settings().iceberg_marts_namespace))


@pytest.mark.scenario(13)
def test_13_every_document_malformed_the_same_way(scenario: Scenario, logs: LogCapture) -> None:
    assert scenario.run_flow().is_completed()
    loaded = scenario.documents()
    store = scenario.server.store
    changed = [doc["id"] for doc in list(store.collections["orders"].values())[:7]]
    for doc_id in changed:  # something to load for orders, nothing elsewhere
        store.update("orders", doc_id, {"currency": "USD"})
    namespace = scenario.settings().iceberg_namespace
    fingerprint = lakehouse_fingerprint(scenario.catalog(), namespace)

    # The orders API now serves every id as a UUID (a Payload with `idType: 'uuid'`).
    scenario.set_faults("malform:1:collection=orders")
    started = time.monotonic()
    state = scenario.run_flow(run_dbt=True)
    elapsed = time.monotonic() - started
    scenario.set_faults(None)
    assert not state.is_completed()
    message = failure_message(state)
    assert "RejectionCeilingError: orders: 7 of 7 documents read were rejected" in message
    assert "(100%, above LOAD_MAX_REJECTED_SHARE=0.5)" in message, message
    assert "same reason, a systematic cause" in message, message
    reason = id_problem(store.id_type)  # "missing or non-integer id" in an integer-id store
    example = malformed_id("orders", changed[0], store.id_type)
    assert f"{reason} (e.g. id '{example}')" in message, message
    print(f"scenario 13: the refused run took {elapsed:.1f}s")
    assert elapsed < 45, f"the refused run took {elapsed:.1f}s"
    assert all(run.run_count == 1 for run in _load_runs(scenario)), "a load task was retried"

    # Nothing committed to orders, its cursor unchanged; the rejects are kept with their JSON.
    after = lakehouse_fingerprint(scenario.catalog(), namespace)
    assert after == fingerprint, "a table or cursor changed"
    kept = [r for r in rejected_rows(scenario.catalog(), namespace) if r["collection"] == "orders"]
    expected = {malformed_id("orders", d, store.id_type): store.get("orders", d) for d in changed}
    assert {r["document_id"] for r in kept} == set(expected)
    for row in kept:
        assert row["reason"] == reason
        original = {**expected[row["document_id"]], "id": row["document_id"]}
        assert json.loads(row["document"]) == original
    # dbt did not run on the partial raw layer: no marts; the artifact carries the rejects.
    assert _published_marts(scenario) == []
    orders_row = next(r for r in _loads_artifact(scenario) if r["collection"] == "orders")
    assert (orders_row["rejected"], orders_row["rejected share"]) == ("7", "100.00%"), orders_row
    assert orders_row["status"].startswith("FAILED: RejectionCeilingError")
    scenario.assert_raw_equals_source({**scenario.documents(), "orders": loaded["orders"]})

    # Once the source serves integer ids again, the same changes load.
    state = scenario.run_flow()
    assert state.is_completed(), failure_message(state)
    scenario.assert_raw_equals_source(computed=True)
    scenario.assert_no_secrets(logs)


@pytest.mark.scenario(14)
def test_14_another_store_on_the_same_lakehouse(
    scenario: Scenario, logs: LogCapture, make_demo_server: Callable[..., DemoServer]
) -> None:
    assert scenario.run_flow().is_completed()
    namespace = scenario.settings().iceberg_namespace
    fingerprint = lakehouse_fingerprint(scenario.catalog(), namespace)
    ids = (
        ""
        if scenario.server.store.id_type is IdType.INT
        else f", ids={scenario.server.store.id_type.value}"
    )
    first = f"demo store (preset=small, scale=1, seed=42{ids})"
    assert all(f[4] and ("payload.source", first) in f[4] for f in fingerprint.values())

    # Another store, same lakehouse: same preset, another seed (same id ranges: a silent mix).
    second = make_demo_server(
        seed=7, admin_email=ADMIN_EMAIL, admin_password=PAYLOAD_PASSWORD, api_key=PAYLOAD_API_KEY
    )
    scenario.server = second
    scenario.apply_env(PAYLOAD_CMS_URL=second.url)
    started = time.monotonic()
    state = scenario.run_flow(run_dbt=True)
    elapsed = time.monotonic() - started
    assert not state.is_completed()
    message = failure_message(state)
    assert "SourceMismatchError" in message, message
    assert f"was loaded from {first}, but the configured source is demo store " in message
    assert "seed=7" in message and "--full-refresh" in message and "LAKEHOUSE_DIR" in message
    print(f"scenario 14: the refused run took {elapsed:.1f}s")
    assert elapsed < 45, f"the refused run took {elapsed:.1f}s"
    assert all(run.run_count == 1 for run in _load_runs(scenario)), "a load task was retried"
    assert second.stats()["by_collection"] == {}, "the second store was read"
    assert lakehouse_fingerprint(scenario.catalog(), namespace) == fingerprint
    assert _published_marts(scenario) == []

    state = scenario.run_flow(mode="full_refresh")
    assert state.is_completed(), failure_message(state)
    scenario.assert_raw_equals_source(computed=True)  # every table equals the second store
    for collection, print_ in lakehouse_fingerprint(scenario.catalog(), namespace).items():
        assert ("payload.source", f"demo store (preset=small, scale=1, seed=7{ids})") in print_[
            4
        ], collection
    scenario.assert_no_secrets(logs)
