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
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NoSuchTableError

from flows.lakehouse.catalog import catalog_error, get_catalog, prepare_lakehouse
from flows.lakehouse.errors import (
    CatalogError,
    CommitConflictError,
    SchemaEvolutionError,
    is_transient,
)
from flows.lakehouse.schema import (
    LOADED_AT,
    DocumentConverter,
    RejectedDocument,
    arrow_schema_for,
    conform,
    existing_kinds,
    rejected_schema,
)
from flows.lakehouse.writer import WritePlan, load_table, read_cursor, write
from flows.settings import Settings
from flows.source.errors import PayloadError
from flows.source.paginator import Cursor, last_valid_cursor
from flows.source.payload import PayloadClient, collection_resource, format_since, prefetched

__all__ = [
    "LoadMode",
    "LoadReport",
    "is_transient",
    "load_collection",
    "prepare_lakehouse",
    "table_state",
]

log = logging.getLogger(__name__)

REJECTED_TABLE = "_rejected"


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


def _record_rejects(
    catalog: Catalog,
    settings: Settings,
    collection: str,
    rejected: list[RejectedDocument],
    load_id: str,
    loaded_at: int,
) -> None:
    sample = rejected[0]
    log.warning(
        "%s: %d document(s) rejected, e.g. id=%s: %s (kept in %s.%s)",
        collection,
        len(rejected),
        sample.document_id,
        sample.reason,
        settings.iceberg_namespace,
        REJECTED_TABLE,
    )
    rows = pa.table(
        {
            "collection": [collection] * len(rejected),
            "document_id": [r.document_id for r in rejected],
            "reason": [r.reason for r in rejected],
            "document": [r.document for r in rejected],
            "_load_id": [load_id] * len(rejected),
            LOADED_AT: pa.array([loaded_at] * len(rejected), pa.timestamp("us", tz="UTC")),
        }
    )
    identifier = f"{settings.iceberg_namespace}.{REJECTED_TABLE}"
    for attempt in range(5):
        table = load_table(catalog, identifier)
        if table is None:
            try:
                table = catalog.create_table(identifier, schema=rejected_schema())
            except Exception:  # created concurrently
                table = catalog.load_table(identifier)
        try:
            table.append(conform(rows, arrow_schema_for(table.schema())))
            return
        except Exception as error:
            if attempt == 4 or "CommitFailed" not in type(error).__name__:
                raise


def load_collection(
    settings: Settings,
    collection: str,
    mode: LoadMode = LoadMode.INCREMENTAL,
    since: datetime | None = None,
) -> LoadReport:
    """Read `collection` from Payload and commit it to its Iceberg table in one commit (or none).

    Raises PayloadAuthError / PayloadUnavailableError / PayloadResponseError (source),
    SchemaEvolutionError, CatalogError; in every case nothing is committed to the table.
    """
    started = time.perf_counter()
    mode = LoadMode(mode)
    identifier = table_identifier(settings, collection)
    load_id = _new_load_id()
    loaded_at = int(datetime.now(UTC).timestamp() * 1_000_000)

    catalog = get_catalog(settings)
    try:
        table = load_table(catalog, identifier)
    except Exception as error:
        raise catalog_error(settings, "read", error) from error
    cursor_before = read_cursor(table)
    converter = DocumentConverter.for_collection(
        collection, existing_kinds(table.schema()) if table is not None else None
    )

    start_cursor: Cursor | None = None
    start_since: str | None = None
    if mode is LoadMode.FULL_REFRESH:
        # Replacing the table with a partial read would drop older rows: `since` is ignored.
        start_since = format_since(settings.initial_timestamp)
    elif since is not None or cursor_before is None:
        start_since = format_since(since or settings.initial_timestamp)
    else:
        start_cursor = cursor_before

    client = PayloadClient.from_settings(settings)
    batches: list[pa.Table] = []
    rejected: list[RejectedDocument] = []
    documents_read = 0
    last_cursor: Cursor | None = None
    try:
        resource = collection_resource(client, collection, start_cursor, start_since)
        for page in prefetched(resource):
            documents_read += len(page.docs)
            converted = converter.convert(page.docs, load_id, loaded_at)
            if len(converted.data):
                batches.append(converted.data)
            rejected.extend(converted.rejected)
            page_cursor = last_valid_cursor(page.docs)
            if page_cursor is not None and (last_cursor is None or page_cursor > last_cursor):
                last_cursor = page_cursor
        alive_ids = client.all_ids(collection) if mode is LoadMode.RECONCILE else None
    except Exception as error:
        raise _unwrap_extract_error(error) from None
    finally:
        client.close()

    data = pa.concat_tables(batches, promote_options="default") if batches else None
    batches.clear()
    if data is not None:
        data = _keep_newest(data)

    if (
        mode is LoadMode.INCREMENTAL
        and table is not None
        and data is None
        and not rejected
        and (last_cursor is None or last_cursor == cursor_before)
    ):
        # Nothing changed upstream: no commit, and no second catalog round trip.
        snapshot = table.current_snapshot()
        return _report(
            collection,
            identifier,
            mode,
            documents_read,
            cursor_before,
            started,
            snapshot_id=snapshot.snapshot_id if snapshot else None,
        )

    try:
        if rejected:
            _record_rejects(catalog, settings, collection, rejected, load_id, loaded_at)
        result = write(
            catalog,
            identifier,
            WritePlan(
                collection=collection,
                fields=converter.iceberg_fields(),
                data=data,
                load_id=load_id,
                replace_all=mode is LoadMode.FULL_REFRESH,
                reconcile_ids=alive_ids,
                cursor_after=last_cursor,
            ),
        )
    except (SchemaEvolutionError, CommitConflictError):
        raise
    except Exception as error:
        raise catalog_error(settings, f"write {identifier} to", error) from error

    report = LoadReport(
        collection=collection,
        table=identifier,
        mode=mode.value,
        documents_read=documents_read,
        inserted=result.inserted,
        updated=result.updated,
        deleted=result.deleted,
        rejected=len(rejected),
        cursor_before=cursor_before.encode() if cursor_before else None,
        cursor_after=result.cursor_after.encode() if result.cursor_after else None,
        snapshot_id=result.snapshot_id,
        committed=result.committed,
        seconds=round(time.perf_counter() - started, 3),
    )
    log.info(
        "%s -> %s (%s): read %d, +%d ~%d -%d, rejected %d, committed=%s in %.2fs",
        collection,
        identifier,
        mode.value,
        documents_read,
        report.inserted,
        report.updated,
        report.deleted,
        report.rejected,
        report.committed,
        report.seconds,
    )
    return report


def _report(
    collection: str,
    identifier: str,
    mode: LoadMode,
    documents_read: int,
    cursor_before: Cursor | None,
    started: float,
    snapshot_id: int | None,
) -> LoadReport:
    cursor = cursor_before.encode() if cursor_before else None
    return LoadReport(
        collection=collection,
        table=identifier,
        mode=mode.value,
        documents_read=documents_read,
        inserted=0,
        updated=0,
        deleted=0,
        rejected=0,
        cursor_before=cursor,
        cursor_after=cursor,
        snapshot_id=snapshot_id,
        committed=False,
        seconds=round(time.perf_counter() - started, 3),
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
