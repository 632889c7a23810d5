"""Pins the private pyiceberg behaviour flows/lakehouse/iceberg_internals.py relies on, on a real
SQLite catalog: a pyiceberg upgrade that changes any of it fails here first."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.types import LongType, NestedField, StringType

from flows.lakehouse.catalog import clear_catalog_cache, prepare_lakehouse
from flows.lakehouse.iceberg_internals import (
    after_metadata_written,
    read_data_file,
    require_main_at,
    write_data_files,
)
from flows.settings import load_settings

SCHEMA = Schema(
    NestedField(1, "id", LongType(), required=True),
    NestedField(2, "name", StringType(), required=False),
    identifier_field_ids=[1],
)
ARROW = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("name", pa.string())])


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    clear_catalog_cache()
    yield prepare_lakehouse(load_settings(lakehouse_dir=tmp_path / "lh"))
    clear_catalog_cache()


def rows(ids: list[int]) -> pa.Table:
    return pa.table({"id": ids, "name": [f"n{i}" for i in ids]}, schema=ARROW)


def new_table(catalog: Catalog) -> Table:
    return catalog.create_table("ecommerce.pinned", schema=SCHEMA)


def test_write_data_files_writes_uncommitted_parquet_that_append_data_file_commits(
    catalog: Catalog,
) -> None:
    table = new_table(catalog)
    write_uuid = uuid.uuid4()
    files = write_data_files(
        table.metadata, table.io, rows([1, 2, 3]), write_uuid, itertools.count()
    )
    assert len(files) == 1 and files[0].record_count == 3
    assert str(write_uuid) in files[0].file_path
    assert catalog.load_table("ecommerce.pinned").current_snapshot() is None  # nothing committed
    assert write_data_files(table.metadata, table.io, rows([]), write_uuid, itertools.count()) == []

    txn = table.transaction()
    with txn.update_snapshot().fast_append() as update:
        update.append_data_file(files[0])
    txn.commit_transaction()
    assert sorted(catalog.load_table("ecommerce.pinned").scan().to_arrow()["id"].to_pylist()) == [
        1,
        2,
        3,
    ]


def test_read_data_file_reads_one_file_projected_by_field_id(catalog: Catalog) -> None:
    table = new_table(catalog)
    table.append(rows([1, 2]))
    table.append(rows([3]))
    table = catalog.load_table("ecommerce.pinned")
    with table.update_schema() as update:  # a column added after the files were written
        update.add_column("extra", StringType())
    table = catalog.load_table("ecommerce.pinned")
    tasks = sorted(table.scan().plan_files(), key=lambda t: t.file.record_count)
    one = read_data_file(table.metadata, table.io, table.schema().select("id"), tasks[0])
    assert one.column_names == ["id"] and one["id"].to_pylist() == [3]
    full = read_data_file(table.metadata, table.io, table.schema(), tasks[1])
    assert full.column_names == ["id", "name", "extra"]
    assert full["id"].to_pylist() == [1, 2] and full["extra"].to_pylist() == [None, None]


def test_require_main_at_fails_a_properties_only_commit_after_a_concurrent_one(
    catalog: Catalog,
) -> None:
    table = new_table(catalog)
    table.append(rows([1]))
    stale = catalog.load_table("ecommerce.pinned")
    snapshot = stale.current_snapshot()
    assert snapshot is not None
    catalog.load_table("ecommerce.pinned").append(rows([2]))  # a concurrent writer wins

    txn = stale.transaction()
    require_main_at(txn, snapshot.snapshot_id)
    txn.set_properties({"payload.cursor": "x"})  # no snapshot: only our requirement guards it
    with pytest.raises(CommitFailedException):
        txn.commit_transaction()
    assert "payload.cursor" not in catalog.load_table("ecommerce.pinned").properties

    fresh = catalog.load_table("ecommerce.pinned")
    current = fresh.current_snapshot()
    txn = fresh.transaction()
    require_main_at(txn, current.snapshot_id if current else None)
    txn.set_properties({"payload.cursor": "y"})
    txn.commit_transaction()
    assert catalog.load_table("ecommerce.pinned").properties["payload.cursor"] == "y"


def test_require_main_at_none_fails_once_the_table_has_a_snapshot(catalog: Catalog) -> None:
    table = new_table(catalog)
    catalog.load_table("ecommerce.pinned").append(rows([1]))
    txn = table.transaction()
    require_main_at(txn, None)
    txn.set_properties({"k": "v"})
    with pytest.raises(CommitFailedException):
        txn.commit_transaction()


def test_after_metadata_written_runs_between_the_metadata_file_and_the_pointer_swap(
    catalog: Catalog,
) -> None:
    table = new_table(catalog)
    before = catalog.load_table("ecommerce.pinned").metadata_location
    seen: list[tuple[str, bool]] = []

    class StopError(Exception):
        pass

    def stop(path: str) -> None:
        seen.append((path, Path(path.removeprefix("file://")).exists()))
        raise StopError  # as a SIGKILL would: the catalog never swaps its pointer

    assert after_metadata_written(catalog, stop)
    with pytest.raises(StopError):
        table.append(rows([1]))
    assert len(seen) == 1 and seen[0][1], seen  # the new metadata file was written ...
    assert seen[0][0] != before
    reloaded = catalog.load_table("ecommerce.pinned")
    assert reloaded.metadata_location == before  # ... but the table still points at the old one
    assert reloaded.current_snapshot() is None
