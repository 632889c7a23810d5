"""Single-commit writes on a real (SQLite) Iceberg catalog: upsert, replace, reconcile, cursor,
schema evolution, conflicts. Synthetic documents shaped like the captured Payload responses."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pyiceberg.catalog import Catalog

import flows.lakehouse.writer as writer_module
from flows.lakehouse.catalog import clear_catalog_cache, prepare_lakehouse
from flows.lakehouse.errors import SchemaEvolutionError
from flows.lakehouse.schema import DocumentConverter, existing_kinds
from flows.lakehouse.writer import CURSOR_PROPERTY, Baseline, WritePlan, read_cursor, write
from flows.settings import Settings, load_settings
from flows.source.paginator import Cursor

IDENT = "ecommerce.orders"


def order(doc_id: int, minute: int, amount: int = 1000, **extra: object) -> dict:
    stamp = f"2026-11-01T10:{minute:02d}:00.000Z"
    return {
        "id": doc_id,
        "items": [{"id": f"{doc_id:024x}", "product": 1, "variant": None, "quantity": 1}],
        "customer": None,
        "customerEmail": f"c{doc_id}@example.com",
        "status": "processing",
        "amount": amount,
        "currency": "USD",
        "updatedAt": stamp,
        "createdAt": stamp,
        **extra,
    }


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    clear_catalog_cache()
    yield load_settings(lakehouse_dir=tmp_path / "lh")
    clear_catalog_cache()


@pytest.fixture
def catalog(settings: Settings) -> Catalog:
    return prepare_lakehouse(settings)


def plan_for(
    catalog: Catalog, docs: list[dict], *, replace_all: bool = False, alive: set[int] | None = None
) -> WritePlan:
    table = writer_module.load_table(catalog, IDENT)
    converter = DocumentConverter.for_collection(
        "orders", existing_kinds(table.schema()) if table else None
    )
    data = converter.convert(docs, "load", 0).data if docs else None
    last = max((Cursor(d["updatedAt"], d["id"]) for d in docs), default=None)
    return WritePlan(
        collection="orders",
        fields=converter.iceberg_fields(),
        data=data,
        load_id="load",
        replace_all=replace_all,
        reconcile_ids=alive,
        cursor_after=last,
    )


def rows(catalog: Catalog) -> dict[int, dict]:
    table = catalog.load_table(IDENT)
    return {r["id"]: r for r in table.scan().to_arrow().to_pylist()}


def snapshot_id(catalog: Catalog) -> int | None:
    snapshot = catalog.load_table(IDENT).current_snapshot()
    return snapshot.snapshot_id if snapshot else None


def test_upsert_is_one_commit_with_cursor(catalog: Catalog) -> None:
    first = write(catalog, IDENT, plan_for(catalog, [order(i, i) for i in range(1, 6)]))
    assert (first.inserted, first.updated, first.committed) == (5, 0, True)
    table = catalog.load_table(IDENT)
    snapshots_before = len(table.snapshots())

    second = write(catalog, IDENT, plan_for(catalog, [order(2, 10, amount=5), order(9, 11)]))
    assert (second.inserted, second.updated, second.deleted) == (1, 1, 0)
    table = catalog.load_table(IDENT)
    assert len(table.snapshots()) == snapshots_before + 1  # exactly one snapshot per load
    assert table.properties[CURSOR_PROPERTY] == "2026-11-01T10:11:00.000Z|9"
    snapshot = table.current_snapshot()
    assert snapshot is not None and snapshot.summary is not None
    assert snapshot.summary["payload.cursor"] == "2026-11-01T10:11:00.000Z|9"
    current = rows(catalog)
    assert sorted(current) == [1, 2, 3, 4, 5, 9]
    assert current[2]["amount"] == 5


def test_nothing_to_write_commits_nothing(catalog: Catalog) -> None:
    write(catalog, IDENT, plan_for(catalog, [order(1, 1)]))
    snapshot = snapshot_id(catalog)
    result = write(catalog, IDENT, plan_for(catalog, []))
    assert not result.committed
    assert snapshot_id(catalog) == snapshot


def test_stale_rows_never_overwrite_newer_ones(catalog: Catalog) -> None:
    write(catalog, IDENT, plan_for(catalog, [order(1, 30, amount=2)]))
    result = write(catalog, IDENT, plan_for(catalog, [order(1, 5, amount=1)]))
    assert result.skipped_stale == 1
    assert rows(catalog)[1]["amount"] == 2
    # and the cursor never moves backwards
    assert read_cursor(catalog.load_table(IDENT)) == Cursor("2026-11-01T10:30:00.000Z", 1)


def test_full_refresh_replaces_contents(catalog: Catalog) -> None:
    write(catalog, IDENT, plan_for(catalog, [order(i, i) for i in range(1, 6)]))
    result = write(
        catalog, IDENT, plan_for(catalog, [order(2, 40), order(7, 41)], replace_all=True)
    )
    assert (result.inserted, result.updated, result.deleted) == (1, 1, 4)
    assert sorted(rows(catalog)) == [2, 7]


def test_reconcile_removes_ids_gone_upstream_in_the_same_commit(catalog: Catalog) -> None:
    write(catalog, IDENT, plan_for(catalog, [order(i, i) for i in range(1, 6)]))
    before = len(catalog.load_table(IDENT).snapshots())
    result = write(catalog, IDENT, plan_for(catalog, [order(6, 20)], alive={1, 2, 4, 6}))
    assert (result.inserted, result.deleted) == (1, 2)
    assert sorted(rows(catalog)) == [1, 2, 4, 6]
    assert len(catalog.load_table(IDENT).snapshots()) == before + 1


def test_reconcile_spares_rows_committed_after_its_baseline(catalog: Catalog) -> None:
    write(catalog, IDENT, plan_for(catalog, [order(1, 1), order(2, 2)]))
    baseline = Baseline(snapshot_id(catalog))  # the reconcile starts: it will list {1}
    write(catalog, IDENT, plan_for(catalog, [order(3, 3)]))  # a concurrent run commits id 3
    plan = plan_for(catalog, [], alive={1})
    plan.baseline = baseline
    result = write(catalog, IDENT, plan)
    assert result.deleted == 1
    assert sorted(rows(catalog)) == [1, 3]  # 2 is gone upstream; 3 was not listed, but is new


def test_full_refresh_keeps_newer_rows_a_concurrent_run_committed(catalog: Catalog) -> None:
    write(catalog, IDENT, plan_for(catalog, [order(1, 1), order(2, 2), order(4, 4)]))
    baseline = Baseline(snapshot_id(catalog))  # the full refresh reads 1 (old copy) and 2
    write(catalog, IDENT, plan_for(catalog, [order(1, 30, amount=5), order(3, 31)]))
    plan = plan_for(catalog, [order(1, 1), order(2, 2)], replace_all=True)
    plan.baseline = baseline
    result = write(catalog, IDENT, plan)
    current = rows(catalog)
    assert sorted(current) == [1, 2, 3]  # 4 was not read again: deleted; 3 is newer: kept
    assert current[1]["amount"] == 5  # the newer copy is not rolled back
    assert (result.deleted, result.skipped_stale) == (1, 1)


def test_a_baseline_of_an_absent_table_deletes_nothing(catalog: Catalog) -> None:
    write(catalog, IDENT, plan_for(catalog, [order(1, 1)]))  # committed after the load began
    plan = plan_for(catalog, [order(2, 2)], replace_all=True)
    plan.baseline = Baseline(None)
    write(catalog, IDENT, plan)
    assert sorted(rows(catalog)) == [1, 2]


def test_schema_evolution_adds_columns_in_the_same_commit(catalog: Catalog) -> None:
    write(catalog, IDENT, plan_for(catalog, [order(1, 1)]))
    write(catalog, IDENT, plan_for(catalog, [order(2, 2, giftWrap=True, giftNote={"to": "A"})]))
    table = catalog.load_table(IDENT)
    assert "gift_wrap" in table.schema().column_names
    current = rows(catalog)
    assert current[1]["gift_wrap"] is None
    assert current[2]["gift_wrap"] is True
    assert current[2]["gift_note"] == '{"to":"A"}'


def test_incompatible_change_commits_nothing(catalog: Catalog) -> None:
    write(catalog, IDENT, plan_for(catalog, [order(1, 1, giftNote="hello")]))
    snapshot = snapshot_id(catalog)
    converter = DocumentConverter.for_collection(
        "orders", existing_kinds(catalog.load_table(IDENT).schema())
    )
    with pytest.raises(SchemaEvolutionError, match="gift_note"):
        converter.convert([order(2, 2, giftNote=5)], "l", 0)
    # A plan that declares the column with another type is refused by the writer too.
    plan = plan_for(catalog, [order(3, 3)])
    plan.fields = [(n, k if n != "amount" else k.__class__("boolean")) for n, k in plan.fields]
    with pytest.raises(SchemaEvolutionError, match="amount"):
        write(catalog, IDENT, plan)
    assert snapshot_id(catalog) == snapshot


def test_commit_conflict_is_retried_without_duplicates(
    catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(catalog, IDENT, plan_for(catalog, [order(1, 1)]))
    competitor = plan_for(catalog, [order(2, 2)])
    original = writer_module.evolve_schema
    calls = {"n": 0}

    def racing_evolve(txn: Any, collection: str, fields: Any, retype: bool = False) -> None:
        calls["n"] += 1
        if calls["n"] == 1:  # another worker commits between our read and our commit
            write(catalog, IDENT, competitor)
        return original(txn, collection, fields, retype)

    monkeypatch.setattr(writer_module, "evolve_schema", racing_evolve)
    result = write(catalog, IDENT, plan_for(catalog, [order(1, 5, amount=7), order(3, 6)]))
    assert result.attempts == 2 and result.committed
    current = rows(catalog)
    assert sorted(current) == [1, 2, 3]
    assert current[1]["amount"] == 7
    ids = catalog.load_table(IDENT).scan().to_arrow().column("id").to_pylist()
    assert len(ids) == len(set(ids))


def test_rewrites_only_affected_files(catalog: Catalog) -> None:
    write(catalog, IDENT, plan_for(catalog, [order(i, i) for i in range(1, 4)]))
    write(catalog, IDENT, plan_for(catalog, [order(i, 10 + i) for i in range(4, 7)]))
    result = write(catalog, IDENT, plan_for(catalog, [order(5, 30, amount=1)]))
    assert result.files_rewritten == 1  # the file with ids 4..6 only; ids 1..3 untouched
    table = catalog.load_table(IDENT)
    assert pa.compute.sum(table.scan().to_arrow().column("amount")).as_py() == 5 * 1000 + 1
