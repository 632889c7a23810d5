"""The loader's two guards, against the demo API and real Iceberg tables:

- the rejection ceiling (issue 16): a load whose documents are mostly rejected fails loudly,
  keeps the rejects in `_rejected`, commits nothing and keeps its cursor;
- the source identity (issue 17): a table remembers which Payload it was loaded from, and an
  incremental or reconcile load from another one stops before reading.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flows.demo.changes import apply_change_batch
from flows.demo.server import DemoServer
from flows.lakehouse.catalog import get_catalog
from flows.lakehouse.errors import RejectionCeilingError, SourceMismatchError, is_transient
from flows.lakehouse.identity import SOURCE_PROPERTY, normalise_url
from flows.lakehouse.load import LoadMode, load_collection, table_identifier, table_state
from flows.settings import Settings
from flows.source.errors import KeysetStalledError, PayloadResponseError

from .conftest import assert_table_equals_source, prepared, settings_for

MakeServer = Callable[..., DemoServer]
SMALL_42 = "demo store (preset=small, scale=1, seed=42)"


def fingerprint(settings: Settings, collection: str) -> tuple[Any, ...]:
    """Metadata file, snapshot and properties (cursor, source): equal = nothing committed."""
    table = get_catalog(settings).load_table(table_identifier(settings, collection))
    snapshot = table.current_snapshot()
    return (
        table.metadata_location,
        snapshot.snapshot_id if snapshot else None,
        tuple(sorted(table.properties.items())),
    )


def rejected_rows(settings: Settings, collection: str) -> list[dict[str, Any]]:
    table = get_catalog(settings).load_table(f"{settings.iceberg_namespace}._rejected")
    return [r for r in table.scan().to_arrow().to_pylist() if r["collection"] == collection]


def requests_to(server: DemoServer, collection: str) -> int:
    return int(server.stats()["by_collection"].get(collection, 0))


# --- rejection ceiling -------------------------------------------------------------------------


def test_systematically_malformed_load_fails_after_keeping_the_rejects(
    make_demo_server: MakeServer, lakehouse_dir: Path
) -> None:
    server = make_demo_server()
    settings = prepared(settings_for(server, lakehouse_dir))
    load_collection(settings, "orders")
    apply_change_batch(server.store, seed=5, fraction=0.03)
    before = fingerprint(settings, "orders")
    server.faults = "malform:1:collection=orders"  # every id a UUID string, as with idType uuid

    with pytest.raises(RejectionCeilingError) as raised:
        load_collection(settings, "orders")
    error = raised.value
    message = str(error)
    assert not is_transient(error)
    assert error.collection == "orders" and error.share == 1.0 and error.rejected > 0
    assert message.startswith(f"orders: {error.rejected} of {error.rejected} documents")
    assert "(100%, above LOAD_MAX_REJECTED_SHARE=0.5)" in message
    assert "same reason, a systematic cause" in message
    assert "missing or non-integer id" in message
    rows = rejected_rows(settings, "orders")
    assert len(rows) == error.rejected
    assert f"id {rows[0]['document_id']!r}" in message  # an example id, as Payload sent it
    assert len(rows[0]["document_id"]) == 36  # a UUID
    assert fingerprint(settings, "orders") == before  # nothing committed, cursor unchanged

    server.faults = None
    # The same changes load once the source is fixed (reconcile: the batch hard-deleted some).
    assert load_collection(settings, "orders", LoadMode.RECONCILE).committed
    assert_table_equals_source(settings, server, "orders")


def test_a_read_that_cannot_advance_reports_the_rejects_not_just_the_keyset(
    make_demo_server: MakeServer, lakehouse_dir: Path
) -> None:
    # 500 orders, pages of 100: the first page has no integer id, so the keyset cannot move on.
    server = make_demo_server()
    server.faults = "malform:1:collection=orders"
    settings = prepared(settings_for(server, lakehouse_dir))
    with pytest.raises(RejectionCeilingError, match="The read stopped early") as raised:
        load_collection(settings, "orders")
    assert raised.value.rejected == 100 and raised.value.read == 100
    assert len(rejected_rows(settings, "orders")) == 100
    assert table_state(settings, "orders") == "empty"

    # With the ceiling off, the read still cannot advance: it fails, rejects kept again.
    no_ceiling = settings_for(server, lakehouse_dir, load_max_rejected_share=0)
    with pytest.raises(KeysetStalledError) as stalled:
        load_collection(no_ceiling, "orders")
    assert not is_transient(stalled.value)
    assert len(rejected_rows(settings, "orders")) == 200
    assert table_state(settings, "orders") == "empty"


def test_below_the_ceiling_or_with_it_off_the_good_documents_load(
    make_demo_server: MakeServer, lakehouse_dir: Path
) -> None:
    server = make_demo_server()
    settings = prepared(settings_for(server, lakehouse_dir, load_max_rejected_share=0))
    server.faults = "malform:1:collection=categories"  # 8 documents, one page
    report = load_collection(settings, "categories")
    assert (report.rejected, report.rejected_share, report.inserted) == (8, 1.0, 0)

    # Reconcile must not take unreadable ids for deleted documents.
    server.faults = None
    load_collection(settings, "categories", LoadMode.FULL_REFRESH)
    before = fingerprint(settings, "categories")
    server.faults = "malform:1:collection=categories"
    with pytest.raises(PayloadResponseError, match="not an integer"):
        load_collection(settings, "categories", LoadMode.RECONCILE)
    assert fingerprint(settings, "categories") == before


# --- source identity ---------------------------------------------------------------------------


def test_url_normalisation_drops_credentials_and_spelling() -> None:
    assert normalise_url("HTTPS://user:secret@Shop.Example.com:443/api/") == (
        "https://shop.example.com"
    )
    assert normalise_url("http://127.0.0.1:3000/") == "http://127.0.0.1:3000"
    assert normalise_url("https://example.com/shop/api") == "https://example.com/shop"


def test_another_store_is_refused_before_reading_then_full_refresh_switches(
    make_demo_server: MakeServer, lakehouse_dir: Path
) -> None:
    first = make_demo_server()
    settings = prepared(settings_for(first, lakehouse_dir))
    report = load_collection(settings, "orders")
    assert report.source == SMALL_42
    table = get_catalog(settings).load_table(table_identifier(settings, "orders"))
    assert table.properties[SOURCE_PROPERTY] == SMALL_42
    summary = table.current_snapshot().summary  # type: ignore[union-attr]
    assert summary is not None and summary[SOURCE_PROPERTY] == SMALL_42
    before = fingerprint(settings, "orders")

    second = make_demo_server(seed=7)
    other = settings_for(second, lakehouse_dir)
    for mode in (LoadMode.INCREMENTAL, LoadMode.RECONCILE):
        with pytest.raises(SourceMismatchError) as raised:
            load_collection(other, "orders", mode)
        message = str(raised.value)
        assert SMALL_42 in message and "seed=7" in message
        assert "--full-refresh" in message and "LAKEHOUSE_DIR" in message
        assert "demo-password" not in message
        assert not is_transient(raised.value)
    assert requests_to(second, "orders") == 0  # stopped before reading
    assert fingerprint(settings, "orders") == before

    report = load_collection(other, "orders", LoadMode.FULL_REFRESH)
    assert report.committed and report.source == "demo store (preset=small, scale=1, seed=7)"
    assert_table_equals_source(other, second, "orders")
    apply_change_batch(second.store, seed=3, fraction=0.02)
    assert load_collection(other, "orders", LoadMode.RECONCILE).committed  # from the new source
    assert_table_equals_source(other, second, "orders")
    with pytest.raises(SourceMismatchError):
        load_collection(settings, "orders")  # and now the first store is the other one


def test_credentials_are_not_part_of_the_identity_and_old_tables_adopt_it(
    make_demo_server: MakeServer, lakehouse_dir: Path
) -> None:
    server = make_demo_server(api_key="guard-test-api-key")
    settings = prepared(settings_for(server, lakehouse_dir))
    load_collection(settings, "orders")
    # A table written before identities were recorded: the property is absent.
    table = get_catalog(settings).load_table(table_identifier(settings, "orders"))
    table.transaction().remove_properties(SOURCE_PROPERTY).commit_transaction()

    apply_change_batch(server.store, seed=2, fraction=0.02)
    by_key = settings_for(
        server,
        lakehouse_dir,
        payload_email=None,
        payload_password=None,
        payload_api_key="guard-test-api-key",
    )
    assert load_collection(by_key, "orders").committed  # same source, other credentials
    table = get_catalog(settings).load_table(table_identifier(settings, "orders"))
    assert table.properties[SOURCE_PROPERTY] == SMALL_42  # adopted on this commit
    assert "guard-test-api-key" not in str(table.properties)


def test_a_payload_without_the_demo_route_is_identified_by_its_url(
    make_demo_server: MakeServer, lakehouse_dir: Path
) -> None:
    # Under a path prefix the demo API answers 404 for everything, as Payload does for
    # /api/_demo/identity: the identity falls back to the normalised URL.
    from flows.lakehouse.identity import probe_source_identity
    from flows.source.client import build_session

    server = make_demo_server()
    settings = settings_for(server, lakehouse_dir)
    session = build_session(settings)
    try:
        assert probe_source_identity(session, f"{server.url}/shop/api/") == (
            f"payload {server.url}/shop"
        )
        assert probe_source_identity(session, server.url) == SMALL_42
    finally:
        session.close()
