"""String ids for the demo store: MongoDB-style ObjectIds or PostgreSQL-style UUIDs.

The generator builds every store with integer ids; `relabel` then gives each document the id a
Payload on MongoDB (`objectid`) or on PostgreSQL with `idType: 'uuid'` (`uuid`) would have, and
rewrites every relationship (per `query.SCHEMAS`, including `items[].product` / `variant`) to
match. Ids are deterministic for a seed:
- objectid: 4 bytes of the creation second, 5 bytes fixed per (seed, collection) and a 3-byte
  counter, like MongoDB's own (so they sort roughly by creation time, as real ones do);
- uuid: version-4 shaped, from a hash of (seed, collection, number): random order, as real
  UUIDv4 ids are (`sort=id` is not creation order).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from typing import Any

from flows.demo.query import SCHEMAS, Field
from flows.demo.store import Document, parse_timestamp
from flows.source.ids import DocId, IdType


def demo_id(
    id_type: IdType, seed: int, collection: str, number: int, created_at: str | None
) -> DocId:
    """The id of the `number`-th document (1-based) of `collection`."""
    if id_type is IdType.INT:
        return number
    if id_type is IdType.OBJECTID:
        seconds = int(parse_timestamp(created_at).timestamp()) if created_at else 0
        machine = hashlib.sha256(f"{seed}/{collection}".encode()).hexdigest()[:10]
        return f"{seconds & 0xFFFFFFFF:08x}{machine}{number & 0xFFFFFF:06x}"
    digest = hashlib.sha256(f"{seed}/{collection}/{number}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def relabel(
    collections: Mapping[str, list[Document]], id_type: IdType, seed: int
) -> dict[str, list[Document]]:
    """The same documents with string ids and matching relationships (new dicts)."""
    if id_type is IdType.INT:
        return {name: list(docs) for name, docs in collections.items()}
    mapping: dict[str, dict[Any, DocId]] = {}
    for name, docs in collections.items():
        mapping[name] = {
            doc["id"]: demo_id(id_type, seed, name, doc["id"], doc.get("createdAt")) for doc in docs
        }

    def target_id(target: str, value: Any) -> Any:
        if not isinstance(value, int) or isinstance(value, bool):
            return value  # null (or anything odd) stays as it is
        known = mapping.get(target, {})
        # A reference to a document that is not in the store (deleted): still a valid id.
        return known.get(value) or demo_id(id_type, seed, target, value, None)

    def field_value(spec: Field, value: Any) -> Any:
        if spec.type == "relationship" and spec.target:
            target = spec.target
            if spec.many and isinstance(value, list):
                return [target_id(target, v) for v in value]
            return target_id(target, value)
        if spec.type == "array" and isinstance(value, list):
            return [row_value(spec.fields, row) for row in value]
        return value

    def row_value(fields: Mapping[str, Field], row: Any) -> Any:
        if not isinstance(row, dict):
            return row
        return {key: field_value(fields[key], v) if key in fields else v for key, v in row.items()}

    relabelled: dict[str, list[Document]] = {}
    for name, docs in collections.items():
        fields = SCHEMAS.get(name, {})
        relabelled[name] = [
            {**row_value(fields, doc), "id": mapping[name][doc["id"]]} for doc in docs
        ]
    return relabelled
