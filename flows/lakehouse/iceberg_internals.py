"""Every use of pyiceberg's private API, in one place (pyiceberg 0.12).

The writer needs three things pyiceberg's public API does not offer at the speed we measured
(docs/extract-load.md, *Why private pyiceberg*):

- `require_main_at`: a transaction that fails if `main` moved since we read it, even when the
  commit only sets properties (the public snapshot producers add this check only to snapshots);
- `read_data_file`: the rows of ONE data file (to learn which file holds which id, and to
  rewrite only the files that hold a replaced or deleted row);
- `write_data_files`: Arrow rows -> Parquet data files, not yet committed, so the files we
  rewrite and the files we add go into ONE `overwrite` snapshot.

And one for a test-only fault point (flows/lakehouse/fault_hook.py): `after_metadata_written`,
a callback between a catalog's writing of the new metadata file and its pointer swap.

`tests/lakehouse/test_iceberg_internals.py` pins each behaviour: a pyiceberg upgrade that
changes one fails there first, not in a load.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from typing import Any

import pyarrow as pa
from pyiceberg.catalog import Catalog, MetastoreCatalog
from pyiceberg.expressions import AlwaysTrue
from pyiceberg.io import FileIO
from pyiceberg.io.pyarrow import ArrowScan, _dataframe_to_data_files
from pyiceberg.manifest import DataFile
from pyiceberg.schema import Schema
from pyiceberg.table import FileScanTask, Transaction
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.update import AssertRefSnapshotId


def require_main_at(txn: Transaction, snapshot_id: int | None) -> None:
    """Stage the requirement "`main` still points at `snapshot_id`" (None: no snapshot yet)."""
    requirement = AssertRefSnapshotId.model_validate({"ref": "main", "snapshot-id": snapshot_id})
    txn._apply((), (requirement,))


def read_data_file(
    metadata: TableMetadata, io: FileIO, projected: Schema, task: FileScanTask
) -> pa.Table:
    """The rows of one data file, projected on `projected` (by field id: columns added after
    the file was written read as nulls)."""
    return ArrowScan(metadata, io, projected, AlwaysTrue()).to_table([task])


def write_data_files(
    metadata: TableMetadata,
    io: FileIO,
    data: pa.Table,
    write_uuid: uuid.UUID,
    counter: itertools.count[int],
) -> list[DataFile]:
    """Write `data` (already conformed to the table's Arrow schema) as new Parquet data files
    named `<counter>-<write_uuid>`; nothing is committed."""
    if len(data) == 0:
        return []
    return list(
        _dataframe_to_data_files(
            table_metadata=metadata, df=data, io=io, write_uuid=write_uuid, counter=counter
        )
    )


def after_metadata_written(catalog: Catalog, callback: Callable[[str], None]) -> bool:
    """Make `catalog` call `callback(metadata_path)` after it writes a table's new metadata file
    and before it points the table at it (`MetastoreCatalog._write_metadata`, which the SQL
    catalog's `commit_table` calls before its UPDATE). False: not such a catalog (REST)."""
    if not isinstance(catalog, MetastoreCatalog):
        return False
    original = catalog._write_metadata

    def write_then_call(metadata: TableMetadata, io: FileIO, metadata_path: str) -> Any:
        original(metadata, io, metadata_path)
        callback(metadata_path)

    setattr(catalog, "_write_metadata", write_then_call)  # noqa: B010  # an instance override
    return True
