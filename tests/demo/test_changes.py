"""Change batches: every kind of change happens through the Store, the summary is exactly what
changed, timestamps move past everything before, and a batch is deterministic."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from flows.demo.changes import (
    KINDS,
    ChangeSummary,
    add_field,
    apply_change_batch,
    change_field_type,
)
from flows.demo.generator import FIELD_ORDER, Dataset, generate
from flows.demo.store import Store, parse_timestamp

Snapshot = dict[str, dict[int, dict[str, Any]]]


@pytest.fixture(scope="module")
def small() -> Dataset:
    return generate("small", 1, 42)


def fresh_store(data: Dataset) -> Store:
    return Store(copy.deepcopy(data.collections), data.reference_time)


def snapshot(store: Store) -> Snapshot:
    return {name: copy.deepcopy(docs) for name, docs in store.collections.items()}


def max_updated_at(snap: Snapshot) -> str:
    return max(doc["updatedAt"] for docs in snap.values() for doc in docs.values())


@pytest.fixture
def batch(small: Dataset) -> tuple[Snapshot, Store, ChangeSummary]:
    store = fresh_store(small)
    before = snapshot(store)
    summary = apply_change_batch(store, seed=7, fraction=0.02)
    return before, store, summary


def test_every_kind_of_change_happens(batch: tuple[Snapshot, Store, ChangeSummary]) -> None:
    _, _, summary = batch
    for collection in ("users", "orders", "transactions", "carts"):
        assert summary.ids("created", collection), collection
    for collection in ("orders", "transactions"):
        assert summary.ids("updated", collection), collection
    assert summary.ids("updated", "products") or summary.ids("updated", "variants")
    for collection in ("products", "variants"):
        assert summary.ids("trashed", collection), collection
    for collection in ("carts", "orders", "transactions"):
        assert summary.ids("deleted", collection), collection


def test_summary_is_exactly_what_changed(batch: tuple[Snapshot, Store, ChangeSummary]) -> None:
    before, store, summary = batch
    previous_max = max_updated_at(before)
    for name, docs in store.collections.items():
        created, updated = set(summary.ids("created", name)), set(summary.ids("updated", name))
        trashed, deleted = set(summary.ids("trashed", name)), set(summary.ids("deleted", name))
        # an id is listed under one kind only
        assert len(created | updated | trashed | deleted) == (
            len(created) + len(updated) + len(trashed) + len(deleted)
        )
        for doc_id in deleted:
            assert doc_id in before[name] and doc_id not in docs
        for doc_id in created:
            assert doc_id not in before[name] and doc_id in docs
            assert docs[doc_id]["createdAt"] > previous_max
            assert tuple(docs[doc_id]) == FIELD_ORDER[name]  # Payload's key order
        for doc_id in trashed:
            assert before[name][doc_id]["deletedAt"] is None
            assert docs[doc_id]["deletedAt"] == docs[doc_id]["updatedAt"] > previous_max
        for doc_id in updated:
            assert docs[doc_id] != before[name][doc_id]
            assert docs[doc_id]["createdAt"] == before[name][doc_id]["createdAt"]
        for doc_id in updated | trashed | created:
            assert docs[doc_id]["updatedAt"] > previous_max
        # nothing else moved
        untouched = set(before[name]) - updated - trashed - deleted
        assert all(docs[doc_id] == before[name][doc_id] for doc_id in untouched), name
        assert set(docs) == untouched | updated | trashed | created
    listed = sum(len(summary.ids(kind, name)) for kind in KINDS for name in store.names())
    assert summary.total == listed > 0
    assert summary.started_at > previous_max
    assert summary.finished_at >= max(
        doc["updatedAt"] for docs in store.collections.values() for doc in docs.values()
    )
    json.dumps(summary.as_dict())  # the admin endpoint returns it as JSON


def test_batch_size_follows_fraction(small: Dataset) -> None:
    total_docs = sum(len(docs) for docs in small.collections.values())
    for fraction in (0.02, 0.1):
        summary = apply_change_batch(fresh_store(small), seed=3, fraction=fraction)
        assert 0.6 * fraction * total_docs <= summary.total <= 1.6 * fraction * total_docs
    with pytest.raises(ValueError, match="fraction"):
        apply_change_batch(fresh_store(small), seed=3, fraction=0)


def test_new_orders_are_priced_and_linked_like_a_checkout(
    batch: tuple[Snapshot, Store, ChangeSummary],
) -> None:
    before, store, summary = batch
    products, variants = before["products"], before["variants"]  # prices when ordered
    for order_id in summary.ids("created", "orders"):
        order = store.collections["orders"][order_id]
        assert order["status"] in ("processing", "cancelled")  # cancelled right away, sometimes
        lines = sum(
            item["quantity"]
            * (variants[item["variant"]] if item["variant"] else products[item["product"]])[
                "priceInUSD"
            ]
            for item in order["items"]
        )
        assert order["amount"] == lines
        for item in order["items"]:
            product = products[item["product"]]
            assert product["_status"] == "published" and product["deletedAt"] is None
        (transaction_id,) = order["transactions"]
        transaction = store.collections["transactions"][transaction_id]
        assert transaction["order"] == order_id
        assert transaction["amount"] == order["amount"]
        assert transaction["customer"] == order["customer"]
        assert transaction_id in summary.ids("created", "transactions")
        if transaction["cart"] is not None:
            cart = store.collections["carts"][transaction["cart"]]
            assert cart["purchasedAt"] is not None and cart["subtotal"] == order["amount"]
        if order["customer"] is not None:
            assert order["customer"] in store.collections["users"]


def test_existing_orders_keep_what_they_were_charged(
    batch: tuple[Snapshot, Store, ChangeSummary],
) -> None:
    before, store, summary = batch
    repriced = [
        doc_id
        for name in ("products", "variants")
        for doc_id in summary.ids("updated", name)
        if store.collections[name][doc_id]["priceInUSD"] != before[name][doc_id]["priceInUSD"]
    ]
    assert repriced
    for order_id, order in before["orders"].items():
        if order_id in store.collections["orders"]:
            assert store.collections["orders"][order_id]["amount"] == order["amount"]


def test_status_moves_and_refunds_are_consistent(
    batch: tuple[Snapshot, Store, ChangeSummary],
) -> None:
    before, store, summary = batch
    moves = set()
    for order_id in summary.ids("updated", "orders"):
        old, new = before["orders"][order_id]["status"], store.collections["orders"][order_id]
        moves.add((old, new["status"]))
        payments = {store.collections["transactions"][t]["status"] for t in new["transactions"]}
        if new["status"] == "refunded":
            assert "refunded" in payments
        if new["status"] == "completed":
            assert "pending" not in payments
    assert ("processing", "completed") in moves
    assert ("completed", "refunded") in moves
    assert moves <= {
        ("processing", "completed"),
        ("processing", "cancelled"),
        ("completed", "refunded"),
    }


def test_hard_deletes_take_what_belongs_together(
    batch: tuple[Snapshot, Store, ChangeSummary],
) -> None:
    before, store, summary = batch
    for order_id in summary.ids("deleted", "orders"):
        assert before["orders"][order_id]["status"] == "cancelled"
        for transaction_id in before["orders"][order_id]["transactions"]:
            assert transaction_id not in store.collections["transactions"]
    cutoff = parse_timestamp(summary.started_at).timestamp() - 7 * 86_400
    for cart_id in summary.ids("deleted", "carts"):
        cart = before["carts"][cart_id]
        assert cart["purchasedAt"] is None
        assert parse_timestamp(cart["createdAt"]).timestamp() < cutoff  # abandoned, not active


def test_batches_are_deterministic(small: Dataset) -> None:
    first, second = fresh_store(small), fresh_store(small)
    one = apply_change_batch(first, seed=11)
    two = apply_change_batch(second, seed=11)
    assert one == two
    assert json.dumps(first.collections) == json.dumps(second.collections)
    other = apply_change_batch(fresh_store(small), seed=12)
    assert other.as_dict() != one.as_dict()


def test_consecutive_batches_keep_moving_forward(small: Dataset) -> None:
    store = fresh_store(small)
    first = apply_change_batch(store, seed=1)
    second = apply_change_batch(store, seed=1)  # same seed, later clock: a different batch
    assert second.started_at > first.finished_at
    assert second.as_dict()["created"] != first.as_dict()["created"]
    for name in ("orders", "transactions", "carts", "users"):
        ids = sorted(store.collections[name])
        created = [parse_timestamp(store.collections[name][i]["createdAt"]) for i in ids]
        assert created == sorted(created), name  # ids still follow creation order


def test_add_field_reaches_every_document(small: Dataset) -> None:
    store = fresh_store(small)
    previous_max = max_updated_at(snapshot(store))
    ids = add_field(store, "products", "sku", lambda doc: f"SKU-{doc['id']:05d}")
    assert ids == sorted(store.collections["products"])
    for doc in store.iter_docs("products"):
        assert doc["sku"] == f"SKU-{doc['id']:05d}"
        assert doc["updatedAt"] > previous_max
    with pytest.raises(ValueError, match="unknown collection"):
        add_field(store, "nope", "x", lambda doc: 1)


def test_change_field_type_turns_some_values_into_strings(small: Dataset) -> None:
    store = fresh_store(small)
    before = snapshot(store)
    changed = change_field_type(store, "orders", "amount", every=3)
    orders = store.collections["orders"]
    assert changed and len(changed) == -(-len(orders) // 3)
    for order_id, order in orders.items():
        if order_id in changed:
            assert order["amount"] == str(before["orders"][order_id]["amount"])
            assert order["updatedAt"] > before["orders"][order_id]["updatedAt"]
        else:
            assert order == before["orders"][order_id]


def test_batches_step_around_malformed_and_retyped_documents(small: Dataset) -> None:
    """The demo server can inject malformed documents and change field types on purpose; a later
    change batch must neither crash on them nor touch them."""
    store = fresh_store(small)
    store.collections["carts"]["bad"] = {"id": "bad", "items": "not a list"}  # type: ignore[index]
    store.collections["orders"][99_999] = {"id": 99_999, "status": "cancelled", "transactions": 7}
    store.collections["variants"][99_999] = {"id": 99_999, "title": "no product"}
    retyped = change_field_type(store, "products", "priceInUSD", every=2)
    change_field_type(store, "variants", "priceInUSD", every=2)
    summary = apply_change_batch(store, seed=5, fraction=0.05)
    assert summary.ids("created", "orders")
    assert store.collections["carts"]["bad"] == {"id": "bad", "items": "not a list"}  # type: ignore[index]
    for order_id in summary.ids("created", "orders"):
        order = store.collections["orders"][order_id]
        assert isinstance(order["amount"], int)
        assert not {item["product"] for item in order["items"]} & set(retyped)
