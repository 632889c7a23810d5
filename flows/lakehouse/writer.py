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

from flows.lakehouse.errors import CommitConflictError, DeleteGuardError, SchemaEvolutionError
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
# The delete guard never refuses this many deletions (ordinary churn in a small table).
ALWAYS_DELETABLE = 10
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
    # The table's snapshot when the load began reading (None inside: the table was empty or
    # absent). Rows committed after it (by a concurrent run) are never deleted by this plan,
    # nor replaced by an older copy. None: no baseline, the table as the attempt reads it.
    baseline: Baseline | None = None
    # The delete guard: refuse to delete more than this share of the table's rows (1: off).
    max_delete_share: float = 1.0
    force_deletes: bool = False


@dataclass(frozen=True)
class Baseline:
    snapshot_id: int | None


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
    unchanged: int = 0  # re-read rows equal to the table's copy (same id and updated_at)
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


def _keys_table(files: list[_FileKeys], id_type: pa.DataType) -> pa.Table:
    """(id, updated_at as int64 microseconds) of every current row."""
    if not files:
        return pa.table({"id": pa.array([], id_type), "updated_at": pa.array([], pa.int64())})
    ids = pa.chunked_array([f.ids for f in files], type=id_type)
    stamps = pa.chunked_array([pc.cast(f.updated_at, pa.int64()) for f in files], pa.int64())
    return pa.table({"id": ids, "updated_at": stamps})


def _drop_stale(data: pa.Table, keys: pa.Table) -> tuple[pa.Table, int, int]:
    """Drop incoming rows that are older than the table's copy in `keys` (a concurrent run
    wrote a newer one) or the same version (same `updated_at`: a re-read, e.g. the cursor
    lookback). Returns (kept rows, stale, unchanged); rows without `updated_at` are kept."""
    if len(keys) == 0 or len(data) == 0:
        return data, 0, 0
    incoming = pa.table(
        {
            "id": data.column("id"),
            "new_at": pc.cast(data.column("updated_at"), pa.int64()),
            "_pos": pa.array(range(len(data)), pa.int64()),
        }
    )
    joined = incoming.join(keys.rename_columns(["id", "old_at"]), "id", join_type="left outer")
    new_at, old_at = joined.column("new_at"), joined.column("old_at")
    stale = pc.fill_null(pc.less(new_at, old_at), False)
    same = pc.fill_null(pc.equal(new_at, old_at), False)
    dropped = pc.filter(joined.column("_pos"), pc.or_(stale, same))
    if len(dropped) == 0:
        return data, 0, 0
    keep = pc.invert(pc.is_in(pa.array(range(len(data)), pa.int64()), value_set=dropped))
    stale_count = int(pc.sum(stale).as_py() or 0)
    return data.filter(keep), stale_count, len(dropped) - stale_count


def _snapshot_keys(table: Table, snapshot_id: int, id_type: pa.DataType) -> pa.Table | None:
    """(id, updated_at) of the rows of an older snapshot; None if it no longer exists."""
    if table.metadata.snapshot_by_id(snapshot_id) is None:
        return None
    columns = [c for c in ("id", "updated_at") if c in table.schema().column_names]
    rows = table.scan(snapshot_id=snapshot_id, selected_fields=tuple(columns)).to_arrow()
    stamps = (
        pc.cast(rows.column("updated_at"), pa.int64())
        if "updated_at" in rows.column_names
        else pa.nulls(len(rows), pa.int64())
    )
    return pa.table({"id": pc.cast(rows.column("id"), id_type), "updated_at": stamps})


def _concurrent_ids(
    plan: WritePlan, state: _TableState, keys: pa.Table, id_type: pa.DataType
) -> pa.Array:
    """Ids whose current row was committed after the plan's baseline, by another run: absent
    from the baseline snapshot, or there with another `updated_at`."""
    baseline = plan.baseline
    if baseline is None or baseline.snapshot_id == state.snapshot_id or len(keys) == 0:
        return pa.array([], id_type)
    seen = (
        _snapshot_keys(state.table, baseline.snapshot_id, id_type)
        if baseline.snapshot_id is not None
        else None
    )
    if seen is None:  # empty when the load began (or expired since): every row is newer
        return keys.column("id").combine_chunks()
    seen = seen.rename_columns(["id", "seen_at"]).append_column(
        "_seen", pa.array([True] * len(seen), pa.bool_())
    )
    joined = keys.join(seen, "id", join_type="left outer")
    now_at, seen_at = joined.column("updated_at"), joined.column("seen_at")
    same_stamp = pc.coalesce(
        pc.equal(now_at, seen_at), pc.and_(pc.is_null(now_at), pc.is_null(seen_at))
    )
    same = pc.and_(pc.is_valid(joined.column("_seen")), same_stamp)
    return pc.filter(joined.column("id"), pc.invert(same)).combine_chunks()


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


def _not_in(values: pa.Array, excluded: pa.Array) -> pa.Array:
    return pc.filter(values, pc.invert(pc.is_in(values, value_set=excluded)))


def _plan_changes(
    plan: WritePlan, state: _TableState, target: pa.Schema, result: WriteResult
) -> _Changes:
    """Step 2, plan: the rows to write and the ids whose current row must go: replaced ones,
    plus those gone upstream (reconcile) or not read (full refresh). A row a concurrent run
    committed after this load began (`plan.baseline`) is never removed unless this plan brings
    a copy at least as new."""
    id_type = target.field("id").type
    empty = pa.table({"id": pa.array([], id_type)})
    data = conform(plan.data if plan.data is not None else empty, target)
    keys = _keys_table(state.files, id_type)
    existing_ids = keys.column("id").combine_chunks()
    concurrent = _concurrent_ids(plan, state, keys, id_type)
    # A full refresh replaces what it read over, except rows committed after it began.
    compared = keys.filter(pc.is_in(keys.column("id"), value_set=concurrent))
    data, result.skipped_stale, result.unchanged = _drop_stale(
        data, compared if plan.replace_all else keys
    )
    gone = pa.array([], id_type)
    if plan.replace_all:  # every row this load saw, and did not read again
        gone = _not_in(_not_in(existing_ids, concurrent), data.column("id").combine_chunks())
        gone = gone.unique()
    elif plan.reconcile_ids is not None:
        alive = pa.array(sorted(plan.reconcile_ids), id_type)
        gone = _not_in(_not_in(existing_ids, alive), concurrent).unique()
        # A row read earlier in this run whose document vanished upstream since: not written.
        data = data.filter(pc.is_in(data.column("id"), value_set=alive))
    incoming_ids = data.column("id").combine_chunks()
    in_table = pc.is_in(incoming_ids, value_set=existing_ids)
    updated = int(pc.sum(in_table).as_py() or 0)
    remove_ids = pa.concat_arrays([pc.filter(incoming_ids, in_table), gone]).unique()
    return _Changes(data, remove_ids, len(data) - updated, updated, len(gone))


def _guard_deletions(
    identifier: str, plan: WritePlan, changes: _Changes, rows: int, source_before: str | None
) -> None:
    """Refuse (before anything is written) to delete more than `plan.max_delete_share` of the
    table: a read that saw only part of the collection would look like mass deletion."""
    # A full refresh onto another Payload (SourceMismatchError's way out) replaces the table on
    # purpose: the old store's rows are meant to go.
    switches_source = plan.replace_all and source_before not in (None, plan.source)
    if (
        plan.force_deletes
        or switches_source
        or changes.deleted == 0
        or changes.deleted <= plan.max_delete_share * rows
    ):
        return
    mode = "full refresh" if plan.replace_all else "reconcile"
    raise DeleteGuardError(
        f"{identifier}: this {mode} would delete {changes.deleted} of its {rows} rows "
        f"({changes.deleted / rows:.0%}), more than LOAD_MAX_DELETE_SHARE="
        f"{plan.max_delete_share:g}. Nothing was committed. If Payload really lost those "
        "documents, rerun with --force-deletes (or LOAD_FORCE_DELETES=true); otherwise check "
        "that the credential can read the whole collection."
    )


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
    changes = _plan_changes(plan, state, arrow_schema_for(state.metadata.schema()), result)
    rows = sum(len(f.ids) for f in state.files)
    _guard_deletions(identifier, plan, changes, rows, state.source_before)
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
