"""Reliability scenarios 24-26: JSON numbers and string ids (issue 11, defects 4 and 5).

24: a new number field whose first values are all whole, later with fractions, loads both times.
25: a fraction in a contract integer (cents) rejects only those documents; a `long` column left
    by an older version is retyped by the full refresh the error suggests.
26: a store with MongoDB ObjectId ids: full load under page drift (creates, updates, trash, hard
    deletes between pages), reconcile, raw == source and the marts' invariants.

Same harness as test_matrix.py: the real flow against the demo API, raw tables compared with
the store document by document, everything captured searched for secrets.
"""

from __future__ import annotations

from typing import Any

import pytest
from pyiceberg.types import DoubleType, LongType, StringType

from flows.settings import ALL_COLLECTIONS
from flows.source.ids import IdType, is_valid_id

from .harness import LogCapture, Scenario, failure_message
from .support import lakehouse_fingerprint, load_raw_table, rejected_rows
from .test_matrix import FAULT_PAGE_SIZE, build_marts_and_check

pytestmark = pytest.mark.slow


def schema_change(scenario: Scenario, **change: Any) -> list[Any]:
    """POST /api/_demo/schema (in-process): returns the ids it changed."""
    return list(scenario.server._schema_change(change)["ids"])


def column_type(scenario: Scenario, collection: str, column: str) -> Any:
    table = load_raw_table(scenario.catalog(), scenario.settings().iceberg_namespace, collection)
    assert table is not None
    return table.schema().find_field(column).field_type


@pytest.mark.scenario(24)
def test_24_a_number_field_starts_whole_then_gets_fractions(
    scenario: Scenario, logs: LogCapture
) -> None:
    assert scenario.run_flow().is_completed()
    # A new Payload number field; every value so far is whole (JavaScript has one number type).
    schema_change(
        scenario, collection="products", action="add_field", field="weightKg", copy_from="inventory"
    )
    state = scenario.run_flow()
    assert state.is_completed(), failure_message(state)
    assert isinstance(column_type(scenario, "products", "weight_kg"), DoubleType)
    scenario.assert_raw_equals_source()

    # Later some values get a fraction: the next loads go on, every value exact.
    changed = schema_change(
        scenario,
        collection="products",
        action="change_type",
        field="weightKg",
        to="fraction",
        every=3,
    )
    assert changed
    state = scenario.run_flow()
    assert state.is_completed(), failure_message(state)
    products = scenario.documents()["products"]
    assert any(isinstance(d.get("weightKg"), float) for d in products)
    scenario.assert_raw_equals_source(computed=True)
    build_marts_and_check(scenario)
    scenario.assert_no_secrets(logs)


@pytest.mark.scenario(25)
def test_25_a_fraction_in_cents_is_rejected_and_a_legacy_long_column_is_retyped(
    scenario: Scenario, logs: LogCapture
) -> None:
    store = scenario.server.store
    # (a) A contract integer (cents) has a fraction on every 10th order: those orders are
    # rejected with a clear reason, every other document loads.
    changed = schema_change(
        scenario, collection="orders", action="change_type", field="amount", to="fraction", every=10
    )
    assert changed
    state = scenario.run_flow()
    assert state.is_completed(), failure_message(state)
    namespace = scenario.settings().iceberg_namespace
    kept = [r for r in rejected_rows(scenario.catalog(), namespace) if r["collection"] == "orders"]
    assert {r["document_id"] for r in kept} == {str(d) for d in changed}
    for row in kept:
        amount = store.get("orders", _id_of(row["document_id"], changed))["amount"]
        assert row["reason"] == f"amount: fraction in an integer field {amount!r}", row
    scenario.assert_raw_equals_source(rejected={"orders": set(changed)})

    # Fixed in Payload (whole cents again): the next run loads them.
    for doc_id in changed:
        store.update("orders", doc_id, {"amount": int(store.get("orders", doc_id)["amount"])})
    state = scenario.run_flow()
    assert state.is_completed(), failure_message(state)
    scenario.assert_raw_equals_source()

    # (b) A table typed by an older version: a new whole-number field became `long`.
    catalog = scenario.catalog()
    table = catalog.load_table(f"{namespace}.products")
    with table.update_schema() as update:
        update.add_column("rating", LongType())
    schema_change(scenario, collection="products", action="add_field", field="rating", value=4)
    schema_change(
        scenario, collection="products", action="change_type", field="rating", to="fraction"
    )
    fingerprint = lakehouse_fingerprint(scenario.catalog(), namespace)
    # (A change id, as on-change runs pass: the products table is as the previous run left it,
    # and within LOAD_CACHE_MINUTES a run without one would reuse that run's cached load.)
    state = scenario.run_flow(collections=["products"], change_id="rating-fractions")
    assert not state.is_completed()
    message = failure_message(state)
    assert "SchemaEvolutionError" in message and "'rating' is long" in message, message
    assert "--full-refresh" in message, message
    assert lakehouse_fingerprint(scenario.catalog(), namespace) == fingerprint
    # The suggested recovery works: a full refresh retypes the column and loads every value.
    state = scenario.run_flow(collections=["products"], mode="full_refresh")
    assert state.is_completed(), failure_message(state)
    assert isinstance(column_type(scenario, "products", "rating"), DoubleType)
    scenario.assert_raw_equals_source(computed=True)
    state = scenario.run_flow()  # and incremental runs go on from there
    assert state.is_completed(), failure_message(state)
    build_marts_and_check(scenario)
    scenario.assert_no_secrets(logs)


def _id_of(text: str, ids: list[Any]) -> Any:
    return next(doc_id for doc_id in ids if str(doc_id) == text)


@pytest.mark.scenario(26)
@pytest.mark.id_type(IdType.OBJECTID)
def test_26_objectid_store_end_to_end(scenario: Scenario, logs: LogCapture) -> None:
    store = scenario.server.store
    assert store.id_type is IdType.OBJECTID
    assert all(
        is_valid_id(i, IdType.OBJECTID) for c in ALL_COLLECTIONS for i in store.collections[c]
    )
    initial_ids = {c: {d["id"] for d in docs} for c, docs in scenario.documents().items()}
    scenario.apply_env(PAYLOAD_PAGE_SIZE=FAULT_PAGE_SIZE)
    # Change batches (creates with new ObjectIds, updates, refunds, trash, hard deletes) before
    # every 3rd page: the keyset cursor must advance on (updatedAt, ObjectId) without skipping.
    scenario.server._set_drift({"every_n_list_requests": 3, "fraction": 0.01, "seed": 7})
    state = scenario.run_flow()
    drift = scenario.server.stats()["drift"]
    scenario.server._set_drift({"every_n_list_requests": 0})
    assert state.is_completed(), failure_message(state)
    assert drift["batches_applied"] >= 5, drift
    final_ids = {c: {d["id"] for d in docs} for c, docs in scenario.documents().items()}
    assert any(initial_ids[c] - final_ids[c] for c in ALL_COLLECTIONS), "no hard delete happened"
    assert any(final_ids[c] - initial_ids[c] for c in ALL_COLLECTIONS), "nothing was created"

    state = scenario.run_flow(mode="reconcile")
    assert state.is_completed(), failure_message(state)
    scenario.assert_raw_equals_source()
    for collection, column in (("orders", "id"), ("orders", "customer"), ("variants", "product")):
        assert isinstance(column_type(scenario, collection, column), StringType)
    assert not rejected_rows(scenario.catalog(), scenario.settings().iceberg_namespace)
    build_marts_and_check(scenario)
    scenario.assert_no_secrets(logs)
