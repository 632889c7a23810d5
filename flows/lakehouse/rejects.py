"""Rejected documents: the `_rejected` audit table and the rejection ceiling.

A document the loader cannot read (no id of the store's id type, no `updatedAt`, an unparsable
value, a fraction in an integer field) is kept in `<namespace>._rejected` with its reason and
original JSON. A few of them among good documents are data errors: the good ones load and the
cursor moves on. When most of a load is rejected the cause is systematic (ids of another type
than PAYLOAD_ID_TYPE, a field whose type changed, the wrong API), and loading the few survivors
while the run reports success would hide it: above
LOAD_MAX_REJECTED_SHARE the load fails with `RejectionCeilingError` instead, after the rejects
were recorded, before anything is committed to the collection's table.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

import pyarrow as pa
from pyiceberg.catalog import Catalog

from flows.lakehouse.errors import RejectionCeilingError
from flows.lakehouse.schema import (
    LOADED_AT,
    RejectedDocument,
    arrow_schema_for,
    conform,
    id_problem,
    rejected_schema,
)
from flows.lakehouse.writer import load_table
from flows.source.ids import IdType

log = logging.getLogger(__name__)

REJECTED_TABLE = "_rejected"
CEILING_SETTING = "LOAD_MAX_REJECTED_SHARE"

# What a systematic cause usually means, by the reason's cause (see schema.py).
_ID_HINT = (
    "the ids are not of the type PAYLOAD_ID_TYPE names: set it to the store's id type, `int` "
    "(SQLite, PostgreSQL serial), `objectid` (MongoDB) or `uuid` (PostgreSQL with "
    "`idType: 'uuid'`)"
)
_HINTS = {id_problem(id_type): _ID_HINT for id_type in IdType} | {
    "missing updatedAt": "every Payload collection needs timestamps (`timestamps: true`)",
    "not a JSON object": "is PAYLOAD_CMS_URL the Payload site's base URL?",
}


@dataclass(frozen=True)
class RejectionSummary:
    rejected: int
    read: int
    cause: str  # the most common cause
    cause_count: int
    example_id: str | None  # a document id with that cause, as Payload sent it

    @property
    def share(self) -> float:
        return self.rejected / self.read if self.read else 0.0

    @property
    def systematic(self) -> bool:
        """Every rejected document for the same reason (and more than one of them)."""
        return self.rejected > 1 and self.cause_count == self.rejected


def summarise(rejected: list[RejectedDocument], read: int) -> RejectionSummary:
    causes = Counter(r.cause for r in rejected)
    cause, count = causes.most_common(1)[0] if causes else ("", 0)
    example = next((r for r in rejected if r.cause == cause), None)
    return RejectionSummary(
        rejected=len(rejected),
        read=max(read, len(rejected)),
        cause=cause,
        cause_count=count,
        example_id=example.document_id if example else None,
    )


def check_ceiling(
    collection: str,
    table: str,
    summary: RejectionSummary,
    max_share: float,
    read_stopped: str | None = None,
) -> None:
    """Raise RejectionCeilingError when more than `max_share` of the load was rejected (0: off)."""
    if max_share <= 0 or summary.rejected == 0 or summary.share <= max_share:
        return
    example = f"id {summary.example_id!r}" if summary.example_id else "a document without an id"
    if summary.systematic:
        why = (
            f"every one for the same reason, a systematic cause rather than a few bad "
            f"documents: {summary.cause} (e.g. {example})"
        )
    else:
        why = (
            f"most often: {summary.cause} ({summary.cause_count} of {summary.rejected}, "
            f"e.g. {example})"
        )
    hint = _HINTS.get(summary.cause)
    stopped = f" The read stopped early: {read_stopped}." if read_stopped else ""
    message = (
        f"{collection}: {summary.rejected} of {summary.read} documents read were rejected "
        f"({summary.share:.0%}, above {CEILING_SETTING}={max_share:g}); {why}."
        + (f" Hint: {hint}." if hint else "")
        + stopped
        + f" Nothing was committed to {table} and its cursor did not move; the rejected "
        f"documents are kept in {table.rsplit('.', 1)[0]}.{REJECTED_TABLE}. Fix the source, or "
        f"raise {CEILING_SETTING} (0 disables the ceiling) to load the remaining documents."
    )
    raise RejectionCeilingError(
        message, collection=collection, rejected=summary.rejected, read=summary.read
    )


def record_rejects(
    catalog: Catalog,
    namespace: str,
    collection: str,
    rejected: list[RejectedDocument],
    load_id: str,
    loaded_at: int,
) -> None:
    """Append the load's rejected documents to `<namespace>._rejected` (its own commit)."""
    sample = rejected[0]
    log.warning(
        "%s: %d document(s) rejected, e.g. id=%s: %s (kept in %s.%s)",
        collection,
        len(rejected),
        sample.document_id,
        sample.reason,
        namespace,
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
    identifier = f"{namespace}.{REJECTED_TABLE}"
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
