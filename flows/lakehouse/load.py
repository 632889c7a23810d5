"""Contract C: load one Payload collection into its raw Iceberg table, in one commit (or none).

Modes
- incremental (default): documents updated after the table's committed cursor (first run: since
  INITIAL_TIMESTAMP), upserted by id; the new cursor is committed with the data.
- full_refresh: every document (updated since INITIAL_TIMESTAMP; `since` is ignored, a partial
  read must not replace the table); the table's contents are replaced in one commit.
- reconcile: incremental + the list of every id upstream; rows whose id is gone (hard deletes)
  are removed in the same commit.
`since` turns incremental into a backfill from that instant (the cursor never moves backwards).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.table import Table

from flows.lakehouse import fault_hook
from flows.lakehouse.catalog import catalog_error, get_catalog, prepare_lakehouse
from flows.lakehouse.errors import (
    CatalogError,
    CommitConflictError,
    DeleteGuardError,
    SchemaEvolutionError,
    SourceMismatchError,
    is_transient,
)
from flows.lakehouse.identity import check_source, probe_source_identity
from flows.lakehouse.reader_check import check_full_reader
from flows.lakehouse.rejects import REJECTED_TABLE, check_ceiling, record_rejects, summarise
from flows.lakehouse.schema import (
    DocumentConverter,
    RejectedDocument,
    check_id_type,
    existing_kinds,
)
from flows.lakehouse.writer import (
    Baseline,
    WritePlan,
    WriteResult,
    load_table,
    read_cursor,
    read_source,
    write,
)
from flows.settings import Settings
from flows.source.errors import KeysetStalledError, PayloadError
from flows.source.ids import DocId
from flows.source.paginator import Cursor, last_valid_cursor
from flows.source.payload import PayloadClient, collection_resource, format_since, prefetched

__all__ = [
    "REJECTED_TABLE",
    "LoadMode",
    "LoadReport",
    "is_transient",
    "load_collection",
    "prepare_lakehouse",
    "table_state",
]

log = logging.getLogger(__name__)


class LoadMode(StrEnum):
    INCREMENTAL = "incremental"
    FULL_REFRESH = "full_refresh"
    RECONCILE = "reconcile"


@dataclass(frozen=True)
class LoadReport:
    collection: str
    table: str
    mode: str
    documents_read: int
    inserted: int
    updated: int
    deleted: int
    rejected: int
    cursor_before: str | None
    cursor_after: str | None
    snapshot_id: int | None
    committed: bool
    seconds: float
    # rejected / documents_read: alert on a rising rate below LOAD_MAX_REJECTED_SHARE
    rejected_share: float = 0.0
    source: str | None = None  # the identity of the Payload read (flows/lakehouse/identity.py)


def table_identifier(settings: Settings, collection: str) -> str:
    return f"{settings.iceberg_namespace}.{settings.table_name(collection)}"


def table_state(settings: Settings, collection: str) -> str:
    """Fingerprint of the table's current snapshot + cursor (Prefect cache key); "empty" if the
    table does not exist or has no data yet."""
    catalog = get_catalog(settings)
    try:
        table = catalog.load_table(table_identifier(settings, collection))
    except NoSuchTableError:
        return "empty"
    except Exception as error:
        raise catalog_error(settings, "read", error) from error
    snapshot = table.current_snapshot()
    cursor = read_cursor(table)
    if snapshot is None and cursor is None:
        return "empty"
    return f"{snapshot.snapshot_id if snapshot else 'none'}:{cursor.encode() if cursor else ''}"


def _new_load_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def _keep_newest(data: pa.Table) -> pa.Table:
    """A document updated during the read comes twice (the keyset read meets it again later):
    keep the last occurrence, which is the newest."""
    ids = data.column("id")
    if pc.count_distinct(ids).as_py() == len(data):
        return data
    positions = pa.array(range(len(data)), pa.int64())
    last = (
        pa.table({"id": ids, "_pos": positions})
        .group_by("id", use_threads=False)
        .aggregate([("_pos", "max")])
        .column("_pos_max")
    )
    return data.take(pc.take(last, pc.sort_indices(last)))  # positions, in read order


@dataclass
class _Extract:
    """What one read of a collection produced, before anything is written."""

    data: pa.Table | None = None
    rejected: list[RejectedDocument] = field(default_factory=list)
    documents_read: int = 0  # past the cursor (and added by a reconcile)
    reread: int = 0  # re-read in the cursor lookback window
    last_cursor: Cursor | None = None
    stalled: KeysetStalledError | None = None  # the read could not advance past a page


def _start_position(
    settings: Settings, mode: LoadMode, since: datetime | None, cursor_before: Cursor | None
) -> tuple[Cursor | None, str | None]:
    """(cursor, since) the read starts from."""
    if mode is LoadMode.FULL_REFRESH:
        # Replacing the table with a partial read would drop older rows: `since` is ignored.
        return None, format_since(settings.initial_timestamp)
    if since is not None or cursor_before is None:
        return None, format_since(since or settings.initial_timestamp)
    lookback = settings.load_cursor_lookback_seconds
    if lookback <= 0:
        return cursor_before, None
    # Payload stamps `updatedAt` before its transaction commits: a document stamped before
    # the cursor can become visible after it. Re-read a window behind the cursor (rows equal
    # to the table's copy are not rewritten; the cursor never moves backwards).
    stamp = _instant(cursor_before.updated_at)
    if stamp is None:
        return cursor_before, None
    start = max(stamp - timedelta(seconds=lookback), settings.initial_timestamp)
    return None, format_since(start)


def _lookback_part(docs: list[Any], seen_until: Cursor | None) -> tuple[list[Any], list[Any]]:
    """(documents at or before `seen_until`, the others): the first were judged when first
    read (the lookback re-reads them), so their rejects are neither recorded nor counted again.
    By `updatedAt` first: a document too malformed for a cursor (no integer id) is still placed."""
    if seen_until is None:
        return [], docs
    limit = _instant(seen_until.updated_at)
    seen: list[Any] = []
    new: list[Any] = []
    for doc in docs:
        stamp = _instant(doc.get("updatedAt")) if isinstance(doc, dict) else None
        doc_id = doc.get("id") if isinstance(doc, dict) else None
        later_tie = stamp == limit and _id_after(doc_id, seen_until.id)
        is_seen = stamp is not None and limit is not None and stamp <= limit and not later_tie
        (seen if is_seen else new).append(doc)
    return seen, new


def _id_after(doc_id: Any, cursor_id: Any) -> bool:
    """`doc_id` sorts after the cursor's id: both of one id type (integers, or ObjectId/UUID
    text, compared as Payload sorts them)."""
    return type(doc_id) is type(cursor_id) and bool(doc_id > cursor_id)


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _read_pages(
    load: _Load, client: PayloadClient, start: tuple[Cursor | None, str | None]
) -> _Extract:
    extract = _Extract()
    batches: list[pa.Table] = []
    seen_until = (
        load.cursor_before if start[0] is None and load.mode is not LoadMode.FULL_REFRESH else None
    )
    try:
        resource = collection_resource(client, load.collection, *start)
        for page in prefetched(resource):
            seen, new = _lookback_part(page.docs, seen_until)
            extract.documents_read += len(new)  # what the rejection ceiling judges
            extract.reread += len(seen)
            for docs in (seen, new) if seen else (new,):
                converted = load.converter.convert(docs, load.load_id, load.loaded_at)
                if len(converted.data):
                    batches.append(converted.data)
                if docs is new:
                    extract.rejected.extend(converted.rejected)
            page_cursor = last_valid_cursor(page.docs, load.converter.id_type)
            if page_cursor is not None and (
                extract.last_cursor is None or page_cursor > extract.last_cursor
            ):
                extract.last_cursor = page_cursor
    except Exception as error:
        cause = _unwrap_extract_error(error)
        if not isinstance(cause, KeysetStalledError):
            raise cause from None
        extract.stalled = cause  # judged with the rejects before anything is written
    if batches:
        extract.data = _keep_newest(pa.concat_tables(batches, promote_options="default"))
    return extract


@dataclass
class _Load:
    """One load of one collection: where it writes, and the table as it was when it began."""

    settings: Settings
    collection: str
    mode: LoadMode
    identifier: str
    catalog: Catalog
    table: Table | None  # None: not created yet
    converter: DocumentConverter
    load_id: str = field(default_factory=_new_load_id)
    loaded_at: int = field(default_factory=lambda: int(datetime.now(UTC).timestamp() * 1_000_000))
    started: float = field(default_factory=time.perf_counter)

    @property
    def cursor_before(self) -> Cursor | None:
        return read_cursor(self.table)


def _begin(settings: Settings, collection: str, mode: LoadMode) -> _Load:
    identifier = table_identifier(settings, collection)
    catalog = get_catalog(settings)
    table = _existing_table(catalog, settings, identifier)
    id_type = settings.payload_id_type
    if table is not None:
        check_id_type(collection, identifier, table.schema(), id_type)
    # A full refresh replaces every row: its columns take the contract's and this read's types
    # (the writer retypes a column that changed), so it is the way out of a type conflict.
    existing = None if table is None or mode is LoadMode.FULL_REFRESH else table.schema()
    converter = DocumentConverter.for_collection(
        collection, existing_kinds(existing) if existing is not None else None, id_type
    )
    return _Load(settings, collection, mode, identifier, catalog, table, converter)


def _refuse_rejections(load: _Load, extract: _Extract) -> None:
    """Above the rejection ceiling (or when the read could not advance): keep the rejects in
    `_rejected`, then fail without committing anything to the collection's table."""
    if not extract.rejected and extract.stalled is None:
        return
    summary = summarise(extract.rejected, extract.documents_read)
    ceiling = load.settings.load_max_rejected_share
    if not 0 < ceiling < summary.share and extract.stalled is None:
        return  # recorded just before the commit, with the good documents
    if extract.rejected:
        _record(load, extract)
    stopped = str(extract.stalled) if extract.stalled is not None else None
    check_ceiling(load.collection, load.identifier, summary, ceiling, stopped)
    assert extract.stalled is not None
    raise extract.stalled


def _record(load: _Load, extract: _Extract) -> None:
    settings = load.settings
    try:
        record_rejects(
            load.catalog,
            settings.iceberg_namespace,
            load.collection,
            extract.rejected,
            load.load_id,
            load.loaded_at,
        )
    except Exception as error:
        where = f"record the rejects of {load.identifier} in"
        raise catalog_error(settings, where, error) from error


@dataclass
class _Read:
    """Everything read from Payload for one load."""

    source: str  # the identity of the Payload read
    extract: _Extract
    alive_ids: set[DocId] | None  # reconcile: every id upstream


def _read_source(load: _Load, since: datetime | None) -> _Read:
    """Read the collection (and for a reconcile every id), refusing too many rejects."""
    client = PayloadClient.from_settings(load.settings)
    try:
        source = probe_source_identity(client.session, client.base_url)
        if load.mode is not LoadMode.FULL_REFRESH:  # a full refresh replaces the table
            check_source(load.collection, load.identifier, read_source(load.table), source)
        if load.mode is not LoadMode.INCREMENTAL:  # it deletes what it does not see
            auth = load.settings.payload_auth_collection
            check_full_reader(client, auth, load.collection, load.mode)
        start = _start_position(load.settings, load.mode, since, load.cursor_before)
        extract = _read_pages(load, client, start)
        _refuse_rejections(load, extract)
        alive = None
        if load.mode is LoadMode.RECONCILE:
            alive = _all_ids(client, load.collection)
            _add_missing(client, load, extract, alive)
    finally:
        client.close()
    return _Read(source, extract, alive)


def _add_missing(client: PayloadClient, load: _Load, extract: _Extract, alive: set[DocId]) -> None:
    """Reconcile also adds: documents upstream that neither the table nor this read holds
    (committed late, behind the cursor and its lookback) are fetched by id and loaded."""
    held = set(extract.data.column("id").to_pylist()) if extract.data is not None else set()
    if load.table is not None and load.table.current_snapshot() is not None:
        ids = load.table.scan(selected_fields=("id",)).to_arrow().column("id").to_pylist()
        held.update(ids)
    missing = sorted(alive - held)
    if not missing:
        return
    log.warning(
        "%s: %d documents upstream are missing from the table: loading them (e.g. ids %s)",
        load.collection,
        len(missing),
        missing[:5],
    )
    docs = client.documents_by_id(load.collection, missing)
    converted = load.converter.convert(docs, load.load_id, load.loaded_at)
    extract.documents_read += len(docs)
    extract.rejected.extend(converted.rejected)
    if len(converted.data):
        batches = [extract.data, converted.data] if extract.data is not None else [converted.data]
        extract.data = _keep_newest(pa.concat_tables(batches, promote_options="default"))


def _write(load: _Load, read: _Read) -> WriteResult:
    """Keep the rejects, then commit the documents and the cursor in one commit."""
    if read.extract.rejected:
        _record(load, read.extract)
    fault_hook.before_write(load.settings, load.collection, load.catalog)  # test only
    plan = WritePlan(
        collection=load.collection,
        fields=load.converter.iceberg_fields(),
        data=read.extract.data,
        load_id=load.load_id,
        replace_all=load.mode is LoadMode.FULL_REFRESH,
        reconcile_ids=read.alive_ids,
        cursor_after=read.extract.last_cursor,
        source=read.source,
        baseline=_baseline(load.table),
        max_delete_share=load.settings.load_max_delete_share,
        force_deletes=load.settings.load_force_deletes,
    )
    try:
        return write(load.catalog, load.identifier, plan)
    except (SchemaEvolutionError, CommitConflictError, SourceMismatchError, DeleteGuardError):
        raise
    except Exception as error:
        raise catalog_error(load.settings, f"write {load.identifier} to", error) from error


def load_collection(
    settings: Settings,
    collection: str,
    mode: LoadMode = LoadMode.INCREMENTAL,
    since: datetime | None = None,
) -> LoadReport:
    """Read `collection` from Payload and commit it to its Iceberg table in one commit (or none).

    Raises PayloadAuthError / PayloadUnavailableError / PayloadResponseError (source),
    SourceMismatchError (the table was loaded from another Payload; raised before reading),
    RejectionCeilingError (too many documents rejected), SchemaEvolutionError, CatalogError;
    in every case nothing is committed to the table.
    """
    load = _begin(settings, collection, LoadMode(mode))
    read = _read_source(load, since)
    if _unchanged(load, read.extract):
        # Nothing changed upstream: no commit, and no second catalog round trip.
        return _unchanged_report(load, read)
    result = _write(load, read)
    return _committed_report(load, read, result)


def _baseline(table: Table | None) -> Baseline:
    """The table as this load found it before reading: what its deletions may touch."""
    snapshot = table.current_snapshot() if table is not None else None
    return Baseline(snapshot.snapshot_id if snapshot else None)


def _existing_table(catalog: Catalog, settings: Settings, identifier: str) -> Table | None:
    try:
        return load_table(catalog, identifier)
    except Exception as error:
        raise catalog_error(settings, "read", error) from error


def _unchanged(load: _Load, extract: _Extract) -> bool:
    """An incremental read of an existing table found nothing new: no document, no reject,
    the cursor where it was."""
    cursor_before = load.cursor_before
    return (
        load.mode is LoadMode.INCREMENTAL
        and load.table is not None
        and extract.data is None
        and not extract.rejected
        and (extract.last_cursor is None or extract.last_cursor == cursor_before)
    )


def _all_ids(client: PayloadClient, collection: str) -> set[DocId]:
    try:
        return client.all_ids(collection)
    except Exception as error:
        raise _unwrap_extract_error(error) from None


def _committed_report(load: _Load, read: _Read, result: WriteResult) -> LoadReport:
    extract = read.extract
    count = extract.documents_read
    cursor_before = load.cursor_before
    report = LoadReport(
        collection=load.collection,
        table=load.identifier,
        mode=load.mode.value,
        documents_read=count,
        inserted=result.inserted,
        updated=result.updated,
        deleted=result.deleted,
        rejected=len(extract.rejected),
        cursor_before=cursor_before.encode() if cursor_before else None,
        cursor_after=result.cursor_after.encode() if result.cursor_after else None,
        snapshot_id=result.snapshot_id,
        committed=result.committed,
        seconds=round(time.perf_counter() - load.started, 3),
        rejected_share=round(len(extract.rejected) / count, 4) if count else 0.0,
        source=read.source,
    )
    log.info(
        "%s -> %s (%s): read %d, +%d ~%d -%d, rejected %d (%.1f%%), committed=%s in %.2fs",
        load.collection,
        load.identifier,
        load.mode.value,
        count,
        report.inserted,
        report.updated,
        report.deleted,
        report.rejected,
        100 * report.rejected_share,
        report.committed,
        report.seconds,
    )
    return report


def _unchanged_report(load: _Load, read: _Read) -> LoadReport:
    cursor = load.cursor_before.encode() if load.cursor_before else None
    snapshot = load.table.current_snapshot() if load.table is not None else None
    return LoadReport(
        collection=load.collection,
        table=load.identifier,
        mode=load.mode.value,
        documents_read=read.extract.documents_read,
        inserted=0,
        updated=0,
        deleted=0,
        rejected=0,
        cursor_before=cursor,
        cursor_after=cursor,
        snapshot_id=snapshot.snapshot_id if snapshot else None,
        committed=False,
        seconds=round(time.perf_counter() - load.started, 3),
        source=read.source,
    )


def _unwrap_extract_error(error: Exception) -> Exception:
    """dlt wraps exceptions raised inside a resource (ResourceExtractionError): surface ours."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, PayloadError | SchemaEvolutionError | CatalogError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return error
