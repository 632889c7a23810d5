"""One Iceberg commit per collection load: upsert / full replace / reconcile + the cursor.

Why not `Table.upsert` or `delete` + `append`: `upsert` scans with a per-row OR filter, and
`delete` + `append` leave two snapshots. Here one transaction:

1. evolves the schema (new columns; int -> long, float -> double), or refuses with
   `SchemaEvolutionError` before anything is written;
2. reads only the `id`/`updated_at` columns of the current data files to find which files hold a
   replaced or deleted id (column pruning: cheap even at 10x volume);
3. rewrites only those files without the replaced/deleted rows, writes the new rows as new
   Parquet files, and swaps them in with a single `overwrite` snapshot (a plain `append`
   snapshot when nothing is replaced);
4. stores the cursor and the source's identity in the table properties and the snapshot
   summary, in the same commit (flows/lakehouse/identity.py).

Every commit asserts that `main` still points at the snapshot we read. If a concurrent writer won
the race (`CommitFailedException`) we reload and redo the whole write (bounded); rows older than
what the table already holds (the other writer read a newer version) are not written back.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import random
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import (
    CommitFailedException,
    NamespaceAlreadyExistsError,
    NoSuchNamespaceError,
    NoSuchTableError,
    TableAlreadyExistsError,
    ValidationException,
)
from pyiceberg.manifest import DataFile
from pyiceberg.schema import Schema
from pyiceberg.table import FileScanTask, Table, Transaction
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.types import DoubleType, FloatType, IntegerType, LongType

from flows.lakehouse.errors import CommitConflictError, SchemaEvolutionError
from flows.lakehouse.iceberg_internals import read_data_file, require_main_at, write_data_files
from flows.lakehouse.identity import SOURCE_PROPERTY, check_source
from flows.lakehouse.schema import (
    ICEBERG_TYPES,
    JSON_DOC,
    Kind,
    arrow_schema_for,
    conform,
    kind_of_iceberg_field,
    new_table_schema,
)
from flows.source.ids import DocId
from flows.source.paginator import Cursor

log = logging.getLogger(__name__)

CURSOR_PROPERTY = "payload.cursor"
LOAD_ID_PROPERTY = "payload.load-id"
MAX_COMMIT_ATTEMPTS = 6
# We retry conflicts ourselves, from a fresh read: pyiceberg's own retry would rebase the
# snapshot onto the winner's, which for an upsert could duplicate ids.
TABLE_PROPERTIES = {"commit.retry.num-retries": "0"}


@dataclass
class WritePlan:
    collection: str
    fields: list[tuple[str, Kind]]  # every column the data may carry, metadata included
    data: pa.Table | None  # deduplicated rows (None/empty: nothing read)
    load_id: str
    replace_all: bool = False  # full refresh
    reconcile_ids: set[DocId] | None = None  # reconcile: every id that exists upstream
    cursor_after: Cursor | None = None
    source: str | None = None  # the source's identity, recorded with the cursor


@dataclass
class WriteResult:
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    snapshot_id: int | None = None
    committed: bool = False
    cursor_before: Cursor | None = None
    cursor_after: Cursor | None = None
    attempts: int = 0
    skipped_stale: int = 0
    files_rewritten: int = 0
    extra: dict[str, float] = field(default_factory=dict)


def read_cursor(table: Table | None) -> Cursor | None:
    if table is None:
        return None
    value = table.properties.get(CURSOR_PROPERTY)
    return Cursor.decode(value) if value else None


def read_source(table: Table | None) -> str | None:
    """The identity of the source the table was loaded from (None: not recorded yet)."""
    return None if table is None else table.properties.get(SOURCE_PROPERTY)


def load_table(catalog: Catalog, identifier: str) -> Table | None:
    try:
        return catalog.load_table(identifier)
    except NoSuchTableError:
        return None


def load_or_create(catalog: Catalog, identifier: str, fields: list[tuple[str, Kind]]) -> Table:
    table = load_table(catalog, identifier)
    if table is not None:
        return table
    schema = new_table_schema(fields)
    try:
        return catalog.create_table(identifier, schema=schema, properties=TABLE_PROPERTIES)
    except TableAlreadyExistsError:  # a concurrent run created it first
        return catalog.load_table(identifier)
    except NoSuchNamespaceError:  # prepare_lakehouse was not called: create it now
        with contextlib.suppress(NamespaceAlreadyExistsError):
            catalog.create_namespace(identifier.rsplit(".", 1)[0])
        return catalog.create_table(identifier, schema=schema, properties=TABLE_PROPERTIES)


@dataclass
class _SchemaChanges:
    add: list[tuple[str, Kind]] = field(default_factory=list)
    widen: list[tuple[str, LongType | DoubleType]] = field(default_factory=list)
    retype: list[tuple[str, Kind]] = field(default_factory=list)  # full refresh: drop + add


def _schema_changes(
    schema: Schema, collection: str, fields: list[tuple[str, Kind]], retype: bool
) -> _SchemaChanges:
    changes = _SchemaChanges()
    for name, kind in fields:
        try:
            current = schema.find_field(name)
        except ValueError:
            changes.add.append((name, kind))
            continue
        current_kind = kind_of_iceberg_field(current)
        if current_kind is kind or {current_kind, kind} == {Kind.STRING, Kind.JSON}:
            if isinstance(current.field_type, IntegerType):
                changes.widen.append((name, LongType()))
            elif isinstance(current.field_type, FloatType):
                changes.widen.append((name, DoubleType()))
            continue
        if retype and name != "id":  # the identifier keeps its type (checked before reading)
            changes.retype.append((name, kind))
            continue
        raise SchemaEvolutionError(collection, name, str(current.field_type), kind.value)
    return changes


def evolve_schema(
    txn: Transaction, collection: str, fields: list[tuple[str, Kind]], retype: bool = False
) -> None:
    """Add new columns and widen where Iceberg allows; refuse anything else (nothing staged).

    `retype` (a full refresh, which replaces every row): a column whose type changed in a way
    Iceberg cannot widen (a legacy `long` that now holds fractions) is dropped and added again
    with the new type, in the same commit as the data: the recovery SchemaEvolutionError names.
    """
    changes = _schema_changes(txn.table_metadata.schema(), collection, fields, retype)
    if changes.retype:
        with txn.update_schema(allow_incompatible_changes=True) as update:
            for name, _ in changes.retype:
                update.delete_column(name)
    to_add = [*changes.add, *changes.retype]
    if not to_add and not changes.widen:
        return
    with txn.update_schema() as update:
        for name, kind in to_add:
            update.add_column(
                name, ICEBERG_TYPES[kind], doc=JSON_DOC if kind is Kind.JSON else None
            )
        for name, wider in changes.widen:
            update.update_column(name, field_type=wider)
    log.info(
        "%s: schema evolved (added %s, widened %s, retyped %s)",
        collection,
        [n for n, _ in changes.add],
        [n for n, _ in changes.widen],
        [f"{n} -> {k.value}" for n, k in changes.retype],
    )


@dataclass
class _FileKeys:
    task: FileScanTask
    ids: pa.Array
    updated_at: pa.Array


def _existing_keys(metadata: TableMetadata, table: Table) -> list[_FileKeys]:
    """`id` + `updated_at` of every current data file (column pruning keeps this cheap)."""
    if table.current_snapshot() is None:
        return []
    schema = metadata.schema()
    key_columns = [c for c in ("id", "updated_at") if c in schema.column_names]
    projected = schema.select(*key_columns)
    result = []
    for task in table.scan().plan_files():  # files do not depend on the (evolved) schema
        keys = read_data_file(metadata, table.io, projected, task)
        updated = (
            keys.column("updated_at").combine_chunks()
            if "updated_at" in keys.column_names
            else pa.nulls(len(keys), pa.timestamp("us", tz="UTC"))
        )
        result.append(_FileKeys(task, keys.column("id").combine_chunks(), updated))
    return result


def _drop_stale(data: pa.Table, files: list[_FileKeys]) -> tuple[pa.Table, int]:
    """Drop incoming rows older than the table's copy (a concurrent run wrote a newer one)."""
    if not files or len(data) == 0:
        return data, 0
    incoming_ids = data.column("id").combine_chunks()
    newest_old: dict[object, int | None] = {}
    for keys in files:
        mask = pc.is_in(keys.ids, value_set=incoming_ids)
        if not pc.any(mask).as_py():
            continue
        ids = pc.filter(keys.ids, mask).to_pylist()
        stamps = pc.cast(pc.filter(keys.updated_at, mask), pa.int64()).to_pylist()
        newest_old.update(zip(ids, stamps, strict=True))
    if not newest_old:
        return data, 0
    new_stamps = pc.cast(data.column("updated_at"), pa.int64()).to_pylist()
    keep = [
        (old := newest_old.get(doc_id)) is None or stamp is None or stamp >= old
        for doc_id, stamp in zip(incoming_ids.to_pylist(), new_stamps, strict=True)
    ]
    kept = data.filter(pa.array(keep))
    return kept, len(data) - len(kept)


@dataclass
class _TableState:
    """What one attempt read: the table as of one snapshot, and the transaction staged on it
    (schema evolved, `main` required to still point at that snapshot)."""

    table: Table
    snapshot_id: int | None
    txn: Transaction
    metadata: TableMetadata  # the transaction's (evolved) metadata, computed once
    files: list[_FileKeys]
    cursor_before: Cursor | None
    source_before: str | None


def _read_table(catalog: Catalog, identifier: str, plan: WritePlan) -> _TableState:
    """Step 1, read: load the table, check its source, stage the schema, read the keys."""
    table = load_or_create(catalog, identifier, plan.fields)
    if plan.source is not None and not plan.replace_all:
        # Checked before reading too; again here, in case another run switched it meanwhile.
        check_source(plan.collection, identifier, read_source(table), plan.source)
    snapshot = table.current_snapshot()
    snapshot_id = snapshot.snapshot_id if snapshot else None
    txn = table.transaction()
    # Optimistic concurrency: the commit fails if anyone committed since we loaded the table.
    require_main_at(txn, snapshot_id)
    evolve_schema(txn, plan.collection, plan.fields, retype=plan.replace_all)
    # `txn.table_metadata` re-applies every staged update (deep copies): read it once.
    metadata = txn.table_metadata
    return _TableState(
        table=table,
        snapshot_id=snapshot_id,
        txn=txn,
        metadata=metadata,
        files=_existing_keys(metadata, table),
        cursor_before=read_cursor(table),
        source_before=read_source(table),
    )


@dataclass
class _Changes:
    """What one attempt will do to the table: rows to write, ids whose current row goes."""

    data: pa.Table
    remove_ids: pa.Array
    inserted: int
    updated: int
    deleted: int


def _all_ids(files: list[_FileKeys], id_type: pa.DataType) -> pa.Array:
    if not files:
        return pa.array([], id_type)
    return pa.chunked_array([f.ids for f in files], type=id_type).combine_chunks()


def _plan_changes(
    plan: WritePlan, target: pa.Schema, files: list[_FileKeys], result: WriteResult
) -> _Changes:
    """Step 2, plan: the rows to write and the ids whose current row must go (replaced ones,
    plus the ids gone upstream for a reconcile, plus every other row for a full refresh)."""
    id_type = target.field("id").type
    empty = pa.table({"id": pa.array([], id_type)})
    data = conform(plan.data if plan.data is not None else empty, target)
    existing_ids = _all_ids(files, id_type)
    if not plan.replace_all:
        data, result.skipped_stale = _drop_stale(data, files)
    gone = pa.array([], id_type)
    if plan.reconcile_ids is not None and not plan.replace_all:
        alive = pa.array(sorted(plan.reconcile_ids), id_type)
        gone = pc.filter(existing_ids, pc.invert(pc.is_in(existing_ids, value_set=alive))).unique()
        # A row read earlier in this run whose document vanished upstream since: not written.
        data = data.filter(pc.is_in(data.column("id"), value_set=alive))
    incoming_ids = data.column("id").combine_chunks()
    in_table = pc.is_in(incoming_ids, value_set=existing_ids)
    updated = int(pc.sum(in_table).as_py() or 0)
    if plan.replace_all:
        vanished = pc.invert(pc.is_in(existing_ids, value_set=incoming_ids))
        return _Changes(
            data, existing_ids, len(data) - updated, updated, int(pc.sum(vanished).as_py() or 0)
        )
    replaced = pc.filter(incoming_ids, in_table)
    remove_ids = pa.concat_arrays([replaced, gone]).unique()
    return _Changes(data, remove_ids, len(data) - updated, updated, len(gone))


def _needs_commit(
    plan: WritePlan, state: _TableState, changes: _Changes, cursor_after: Cursor | None
) -> bool:
    """Nothing to write, the cursor where it was and the same source: no commit at all."""
    source_changed = plan.source is not None and plan.source != state.source_before
    return (
        len(changes.data) > 0
        or len(changes.remove_ids) > 0
        or cursor_after != state.cursor_before
        or source_changed
    )


def _rewrite_files(
    state: _TableState, changes: _Changes, commit_uuid: uuid.UUID, result: WriteResult
) -> tuple[list[DataFile], list[DataFile]]:
    """Step 3, rewrite: (removed, added) data files. A file holding a removed id is rewritten
    without it; the new rows go into new files. Nothing is committed yet."""
    metadata, io = state.metadata, state.table.io
    target = arrow_schema_for(metadata.schema())
    counter = itertools.count(0)
    removed: list[DataFile] = []
    added: list[DataFile] = []
    remove_ids = changes.remove_ids
    for keys in state.files if len(remove_ids) else []:
        hits = int(pc.sum(pc.is_in(keys.ids, value_set=remove_ids)).as_py() or 0)
        if hits == 0:
            continue
        removed.append(keys.task.file)
        if hits < len(keys.ids):
            rows = read_data_file(metadata, io, metadata.schema(), keys.task)
            kept = rows.filter(pc.invert(pc.is_in(rows.column("id"), value_set=remove_ids)))
            added += write_data_files(metadata, io, conform(kept, target), commit_uuid, counter)
            result.files_rewritten += 1
    added += write_data_files(metadata, io, changes.data, commit_uuid, counter)
    return removed, added


def _commit(
    state: _TableState,
    plan: WritePlan,
    cursor_after: Cursor | None,
    files: tuple[list[DataFile], list[DataFile]],
    commit_uuid: uuid.UUID,
) -> int | None:
    """Step 4, commit: swap the files in ONE snapshot (`overwrite` if any file goes, else a
    plain append) with the cursor and source in its summary and the table properties."""
    removed, added = files
    properties = {LOAD_ID_PROPERTY: plan.load_id}
    if cursor_after is not None:
        properties[CURSOR_PROPERTY] = cursor_after.encode()
    if plan.source is not None:
        properties[SOURCE_PROPERTY] = plan.source
    txn = state.txn
    if removed or added:
        producer = txn.update_snapshot(snapshot_properties=properties)
        update = producer.overwrite(commit_uuid) if removed else producer.fast_append()
        with update:
            for data_file in removed:
                update.delete_data_file(data_file)
            for data_file in added:
                update.append_data_file(data_file)
    txn.set_properties({**properties, **TABLE_PROPERTIES})
    if cursor_after is None and state.cursor_before is not None:
        txn.remove_properties(CURSOR_PROPERTY)  # a full refresh that read nothing
    snapshot = txn.commit_transaction().current_snapshot()
    return snapshot.snapshot_id if snapshot else None


def _attempt(
    catalog: Catalog, identifier: str, plan: WritePlan, result: WriteResult
) -> WriteResult:
    """One try at the commit: read, plan, rewrite, commit (a lost race raises from commit)."""
    state = _read_table(catalog, identifier, plan)
    result.cursor_before = state.cursor_before
    changes = _plan_changes(plan, arrow_schema_for(state.metadata.schema()), state.files, result)
    result.cursor_after = _cursor_after(plan, state.cursor_before)
    result.snapshot_id = state.snapshot_id
    if not _needs_commit(plan, state, changes, result.cursor_after):
        return result
    commit_uuid = uuid.uuid4()
    files = _rewrite_files(state, changes, commit_uuid, result)
    result.snapshot_id = _commit(state, plan, result.cursor_after, files, commit_uuid)
    result.committed = True
    result.inserted, result.updated = changes.inserted, changes.updated
    result.deleted = changes.deleted
    return result


def _cursor_after(plan: WritePlan, cursor_before: Cursor | None) -> Cursor | None:
    """The cursor to commit. An upsert never moves it backwards (backfills, races). A full
    refresh replaces the table with exactly what it read, so its cursor is its own read's, even
    if older: a source with older documents (after a switch of source), or a concurrent run's
    newer rows this replace dropped, are then read again by the next incremental run."""
    if plan.replace_all:
        return plan.cursor_after
    if cursor_before is not None and (
        plan.cursor_after is None or plan.cursor_after < cursor_before
    ):
        return cursor_before
    return plan.cursor_after


def write(catalog: Catalog, identifier: str, plan: WritePlan) -> WriteResult:
    """Apply `plan` in one commit, retrying (bounded) when a concurrent writer wins the race."""
    for attempt in range(1, MAX_COMMIT_ATTEMPTS + 1):
        result = WriteResult(attempts=attempt)
        try:
            return _attempt(catalog, identifier, plan, result)
        except (CommitFailedException, ValidationException) as conflict:
            if attempt == MAX_COMMIT_ATTEMPTS:
                raise CommitConflictError(
                    f"{identifier}: {attempt} commit attempts lost to concurrent writers; "
                    "nothing was committed by this run (retry later)"
                ) from conflict
            wait = random.uniform(0.05, 0.2 * attempt)
            log.warning("%s: commit conflict (%s); retrying in %.2fs", identifier, conflict, wait)
            time.sleep(wait)
    raise AssertionError("unreachable")


def append_rows(
    catalog: Catalog, identifier: str, rows: pa.Table, schema_fields: Iterable[tuple[str, Kind]]
) -> None:
    """Plain append with conflict retries (the `_rejected` audit table)."""
    fields = list(schema_fields)
    for attempt in range(1, MAX_COMMIT_ATTEMPTS + 1):
        table = load_or_create(catalog, identifier, fields)
        try:
            table.append(conform(rows, arrow_schema_for(table.schema())))
            return
        except CommitFailedException:
            if attempt == MAX_COMMIT_ATTEMPTS:
                raise
            time.sleep(random.uniform(0.05, 0.2 * attempt))
