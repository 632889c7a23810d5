"""End to end against the demo Payload API: equality, incremental, reconcile, drift, faults,
schema evolution, auth expiry. Real HTTP server, real Iceberg tables (SQLite catalog)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from flows.demo.changes import apply_change_batch
from flows.demo.faults import TRANSPORT_FAULT_KINDS
from flows.demo.idmap import demo_id
from flows.demo.server import DemoServer
from flows.demo.store import parse_timestamp
from flows.lakehouse.catalog import get_catalog
from flows.lakehouse.errors import SchemaEvolutionError
from flows.lakehouse.load import LoadMode, load_collection, table_identifier, table_state
from flows.settings import ALL_COLLECTIONS, Settings
from flows.source.errors import PayloadAuthError
from flows.source.paginator import Cursor

from .conftest import assert_all_equal, assert_table_equals_source, prepared, settings_for

pytestmark = pytest.mark.slow

MakeServer = Callable[..., DemoServer]


def load_all(settings: Settings, mode: LoadMode = LoadMode.INCREMENTAL) -> dict:
    return {c: load_collection(settings, c, mode) for c in ALL_COLLECTIONS}


def admin_post(server: DemoServer, path: str, body: dict) -> dict:
    response = requests.post(
        f"{server.url}/api/_demo/{path}",
        json=body,
        headers={"Authorization": f"JWT {server.admin_token()}"},
        timeout=30,
    )
    response.raise_for_status()
    return response.json()


def test_full_load_incremental_reconcile_idempotence(
    make_demo_server: MakeServer, lakehouse_dir: Path
) -> None:
    server = make_demo_server()
    settings = prepared(settings_for(server, lakehouse_dir))

    reports = load_all(settings)
    assert all(r.committed for r in reports.values())
    assert reports["orders"].inserted == server.store.count("orders")
    assert_all_equal(settings, server, computed_too=True)

    # A rerun with no change commits nothing and keeps every table's state.
    states = {c: table_state(settings, c) for c in ALL_COLLECTIONS}
    again = load_all(settings)
    assert not any(r.committed for r in again.values())
    assert all(r.documents_read == 0 for r in again.values())
    assert states == {c: table_state(settings, c) for c in ALL_COLLECTIONS}

    # Creates, updates, trash and hard deletes upstream.
    summary = apply_change_batch(server.store, seed=7, fraction=0.05)
    assert any(summary.deleted.values()) and any(summary.trashed.values())
    incremental = load_all(settings)
    assert incremental["orders"].inserted == len(summary.created.get("orders", []))
    for collection in ALL_COLLECTIONS:
        if summary.updated.get(collection) or summary.trashed.get(collection):
            assert incremental[collection].updated > 0, collection
    # Trashed documents are loaded with deleted_at set.
    for collection, ids in summary.trashed.items():
        rows = get_catalog(settings).load_table(table_identifier(settings, collection))
        trashed = {
            r["id"]: r["deleted_at"]
            for r in rows.scan(selected_fields=("id", "deleted_at")).to_arrow().to_pylist()
        }
        assert all(trashed[i] is not None for i in ids)

    # Hard deletes are only visible to reconcile, which removes them in the same commit.
    reconciled = {c: load_collection(settings, c, LoadMode.RECONCILE) for c in ALL_COLLECTIONS}
    for collection, ids in summary.deleted.items():
        if ids:
            assert reconciled[collection].deleted == len(ids), collection
    assert_all_equal(settings, server)

    # Idempotence: a full refresh of an up-to-date table leaves exactly the same contents.
    refreshed = load_collection(settings, "orders", LoadMode.FULL_REFRESH)
    assert refreshed.committed and refreshed.inserted == 0 and refreshed.deleted == 0
    assert_table_equals_source(settings, server, "orders", computed_too=True)
    load_collection(settings, "products", LoadMode.FULL_REFRESH)
    assert_table_equals_source(settings, server, "products", computed_too=True)

    # A brand-new worker resumes from the lakehouse alone (cursor lives in the table).
    cursor = get_catalog(settings).load_table(table_identifier(settings, "orders")).properties
    assert Cursor.decode(cursor["payload.cursor"]).id in server.store.collections["orders"]


def test_page_drift_loses_nothing(make_demo_server: MakeServer, lakehouse_dir: Path) -> None:
    server = make_demo_server()
    settings = prepared(settings_for(server, lakehouse_dir, payload_page_size=25))
    # First loads under drift: documents already read get updated and come again later.
    # A change batch (creates, updates, trash, deletes) lands every 2nd list request.
    admin_post(server, "drift", {"every_n_list_requests": 2, "fraction": 0.02, "seed": 3})
    for collection in ("orders", "products", "carts"):
        report = load_collection(settings, collection, LoadMode.RECONCILE)
        cursor = Cursor.decode(report.cursor_after or "")
        admin_post(server, "drift", {"every_n_list_requests": 0})
        # Everything upstream at or before the committed cursor must be in the table as is.
        table = get_catalog(settings).load_table(table_identifier(settings, collection))
        loaded = {
            r["id"]: r["updated_at"]
            for r in table.scan(selected_fields=("id", "updated_at")).to_arrow().to_pylist()
        }
        behind = [
            d
            for d in server.store.iter_docs(collection)
            if (d["updatedAt"], d["id"]) <= (cursor.updated_at, cursor.id)
        ]
        missing = [d["id"] for d in behind if d["id"] not in loaded]
        assert missing == [], f"{collection}: skipped by the drifting read: {missing[:10]}"
        # ... and in its final version: a document updated mid-read is read again, the newest
        # copy wins.
        stale = [d["id"] for d in behind if loaded[d["id"]] != parse_timestamp(d["updatedAt"])]
        assert stale == [], f"{collection}: older copies kept: {stale[:10]}"
        admin_post(server, "drift", {"every_n_list_requests": 2, "fraction": 0.02, "seed": 5})
    admin_post(server, "drift", {"every_n_list_requests": 0})
    for collection in ALL_COLLECTIONS:
        load_collection(settings, collection, LoadMode.RECONCILE)
    assert_all_equal(settings, server)


@pytest.mark.parametrize("kind", TRANSPORT_FAULT_KINDS)
def test_every_fault_kind_converges_to_equality(
    kind: str, make_demo_server: MakeServer, lakehouse_dir: Path
) -> None:
    option = {"latency": ":delay=0.05", "429": ":retry_after=0"}.get(kind, "")
    server = make_demo_server()
    server.faults = f"{kind}:0.25{option},seed=11"
    settings = prepared(settings_for(server, lakehouse_dir, payload_page_size=50))
    collections = ("orders", "variants", "users")  # ~30 pages: several faults of the kind each
    for collection in collections:
        load_collection(settings, collection)
    stats = server.stats()
    server.faults = None
    assert stats["faults"]["by_kind"].get(kind, 0) > 0, "no fault was injected"
    for collection in collections:
        assert_table_equals_source(settings, server, collection, computed_too=True)


def test_schema_evolution_new_field_and_incompatible_change(
    make_demo_server: MakeServer, lakehouse_dir: Path
) -> None:
    server = make_demo_server()
    settings = prepared(settings_for(server, lakehouse_dir))
    load_collection(settings, "products")
    admin_post(
        server,
        "schema",
        {
            "collection": "products",
            "action": "add_field",
            "field": "giftWrapAvailable",
            "value": True,
        },
    )
    report = load_collection(settings, "products")
    assert report.committed
    table = get_catalog(settings).load_table(table_identifier(settings, "products"))
    assert "gift_wrap_available" in table.schema().column_names
    assert_table_equals_source(settings, server, "products")

    before = table_state(settings, "products")
    admin_post(
        server,
        "schema",
        {"collection": "products", "action": "change_type", "field": "priceInUSD", "to": "string"},
    )
    with pytest.raises(SchemaEvolutionError, match="price_in_usd"):
        load_collection(settings, "products")
    assert table_state(settings, "products") == before  # nothing committed


def test_rejected_documents_are_recorded_and_do_not_block_the_cursor(
    make_demo_server: MakeServer, lakehouse_dir: Path
) -> None:
    server = make_demo_server()
    settings = prepared(settings_for(server, lakehouse_dir))
    load_collection(settings, "categories")
    stamp = server.store.tick()
    # A well-formed id of the store's type (9001, or an ObjectId / UUID): rejected for its date.
    bad_id = demo_id(server.store.id_type, 99, "categories", 9001, stamp)
    admin_post(
        server,
        "inject",
        {
            "collection": "categories",
            "document": {
                "id": bad_id,
                "title": "Bad",
                "slug": "bad",
                "createdAt": "not-a-date",
                "updatedAt": stamp,
            },
        },
    )
    # One bad document alone in a load is 100% of it: above the default rejection ceiling (see
    # tests/lakehouse/test_guards.py). With the ceiling off, the cursor moves past it.
    settings = settings_for(server, lakehouse_dir, load_max_rejected_share=0)
    report = load_collection(settings, "categories")
    assert report.rejected == 1 and report.rejected_share == 1.0
    assert report.cursor_after and report.cursor_after.endswith(f"|{bad_id}")
    rejected = get_catalog(settings).load_table(f"{settings.iceberg_namespace}._rejected")
    rows = rejected.scan().to_arrow().to_pylist()
    assert rows[0]["document_id"] == str(bad_id) and "createdAt" in rows[0]["reason"]
    assert load_collection(settings, "categories").documents_read == 0


def test_token_revocation_relogs_in_and_bad_password_fails_clearly(
    make_demo_server: MakeServer, lakehouse_dir: Path
) -> None:
    server = make_demo_server()
    settings = prepared(settings_for(server, lakehouse_dir))
    load_collection(settings, "orders")
    admin_post(server, "revoke-tokens", {})
    apply_change_batch(server.store, seed=1, fraction=0.02)
    assert load_collection(settings, "orders").committed
    bad = settings_for(server, lakehouse_dir, payload_password="wrong")
    with pytest.raises(PayloadAuthError, match="PAYLOAD_PASSWORD"):
        load_collection(bad, "orders")
    anonymous = settings_for(server, lakehouse_dir, payload_email=None, payload_password=None)
    with pytest.raises(PayloadAuthError, match="403"):
        load_collection(anonymous, "orders")
