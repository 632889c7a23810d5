"""In-memory document store behind the demo Payload API.

Documents are held exactly as Payload returns them at `depth=0` (camelCase keys, relationship
ids, ISO-8601 UTC timestamps with milliseconds, money in integer cents). The generator fills
the store; change batches mutate it through the methods below, which keep `updatedAt`,
`createdAt`, `deletedAt` and ids consistent the way Payload does. The HTTP layer reads it.

The store has its own clock: it starts at the dataset's reference instant and every mutation
advances it, so timestamps are deterministic for a seed and always move forward.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from flows.source.ids import DocId, IdType, is_valid_id

Document = dict[str, Any]

# Collections with Payload's trash (soft delete) enabled, and with drafts (`_status`).
TRASH_ENABLED = frozenset({"products", "variants", "variantTypes", "variantOptions"})
DRAFTS_ENABLED = frozenset({"products", "variants"})


def format_timestamp(moment: datetime) -> str:
    """Payload's timestamp format: `2026-11-21T21:24:05.574Z`."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_timestamp(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class Store:
    """Thread-safe collections of documents keyed by id, with a monotonic clock.

    `id_type`: the ids the store hands out (integers, or ObjectIds / UUIDs derived from `seed`,
    see flows/demo/idmap.py); `data` must already carry ids of that type."""

    def __init__(
        self,
        data: Mapping[str, list[Document]],
        now: datetime,
        id_type: IdType = IdType.INT,
        seed: int = 42,
    ) -> None:
        self.lock = threading.RLock()
        self.id_type = id_type
        self.seed = seed
        self.collections: dict[str, dict[Any, Document]] = {
            name: {doc["id"]: doc for doc in docs} for name, docs in data.items()
        }
        # The number of the next document per collection (its id, for integer ids).
        self._next_ids = {
            name: (max(docs, default=0) if id_type is IdType.INT else len(docs)) + 1
            for name, docs in self.collections.items()
        }
        self._clock = now.astimezone(UTC)
        # Bumped on every mutation of a collection; readers use it to invalidate caches.
        self.versions: dict[str, int] = dict.fromkeys(self.collections, 0)

    # --- clock ------------------------------------------------------------------------------
    def tick(self, step: timedelta = timedelta(milliseconds=1)) -> str:
        """Advance the clock and return the new instant in Payload's format."""
        with self.lock:
            self._clock += step
            return format_timestamp(self._clock)

    @property
    def now(self) -> datetime:
        return self._clock

    # --- reads ------------------------------------------------------------------------------
    def names(self) -> list[str]:
        return list(self.collections)

    def is_id(self, value: Any) -> bool:
        """A well-formed id of this store (not one of the malformed documents tests inject)."""
        return is_valid_id(value, self.id_type)

    def _new_id(self, collection: str, created_at: str) -> DocId:
        number = self._next_ids.get(collection, 1)
        self._next_ids[collection] = number + 1
        if self.id_type is IdType.INT:
            return number
        from flows.demo.idmap import demo_id  # idmap reads the query schemas, which import us

        doc_id = demo_id(self.id_type, self.seed, collection, number, created_at)
        while doc_id in self.collections.get(collection, {}):  # the counter wrapped: next one
            doc_id = demo_id(self.id_type, self.seed, collection, self._next_ids[collection], None)
            self._next_ids[collection] += 1
        return doc_id

    def get(self, collection: str, doc_id: DocId) -> Document | None:
        return self.collections[collection].get(doc_id)

    def iter_docs(self, collection: str) -> Iterator[Document]:
        return iter(self.collections[collection].values())

    def count(self, collection: str) -> int:
        return len(self.collections[collection])

    # --- writes -----------------------------------------------------------------------------
    def _touch(self, collection: str) -> None:
        self.versions[collection] += 1

    def create(self, collection: str, fields: Document, at: str | None = None) -> Document:
        """Insert a new document; assigns id, createdAt and updatedAt like Payload."""
        with self.lock:
            stamp = at or self.tick()
            doc_id = self._new_id(collection, stamp)
            doc: Document = {"id": doc_id, **copy.deepcopy(fields)}
            doc["createdAt"] = stamp
            doc["updatedAt"] = stamp
            if collection in TRASH_ENABLED:
                doc.setdefault("deletedAt", None)
            self.collections[collection][doc_id] = doc
            self._touch(collection)
            return doc

    def insert_raw(self, collection: str, doc: Document) -> Document:
        """Store a document exactly as given (no validation, no timestamps): for tests that need
        malformed documents among good ones. An id is assigned only if the document has none."""
        with self.lock:
            docs = self.collections.setdefault(collection, {})
            self.versions.setdefault(collection, 0)
            doc_id = doc.get("id")
            if not self.is_id(doc_id):
                # Keyed by a fresh id; a malformed `id` in the document itself stays as given.
                doc_id = self._new_id(collection, format_timestamp(self._clock))
                doc = {"id": doc_id, **doc}
            elif isinstance(doc_id, int):
                self._next_ids[collection] = max(self._next_ids.get(collection, 1), doc_id + 1)
            docs[doc_id] = doc
            self._touch(collection)
            return doc

    def update(self, collection: str, doc_id: DocId, changes: Document) -> Document:
        """Apply field changes and bump `updatedAt`. Documents are replaced, never mutated in
        place, so a reader holding the old dict keeps a consistent snapshot."""
        with self.lock:
            current = self.collections[collection][doc_id]
            doc = {**current, **copy.deepcopy(changes), "updatedAt": self.tick()}
            self.collections[collection][doc_id] = doc
            self._touch(collection)
            return doc

    def trash(self, collection: str, doc_id: DocId) -> Document:
        """Soft delete: Payload sets `deletedAt` (and `updatedAt`) to the same instant."""
        if collection not in TRASH_ENABLED:
            raise ValueError(f"collection {collection!r} has no trash")
        with self.lock:
            stamp = self.tick()
            current = self.collections[collection][doc_id]
            doc = {**current, "deletedAt": stamp, "updatedAt": stamp}
            self.collections[collection][doc_id] = doc
            self._touch(collection)
            return doc

    def delete(self, collection: str, doc_id: DocId) -> Document:
        """Hard delete: the document is gone; nothing in `updatedAt` shows it."""
        with self.lock:
            doc = self.collections[collection].pop(doc_id)
            self._touch(collection)
            return doc
