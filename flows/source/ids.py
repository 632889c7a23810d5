"""Payload document id types: integers (SQLite / PostgreSQL serial), MongoDB ObjectIds, UUIDs.

Payload's id type is a property of the store's database adapter, not of a document. It is
configured (`PAYLOAD_ID_TYPE`), never guessed from the data: a store whose ids are all malformed
must be refused, not taken for another kind of store.

String ids are compared as text. That is Payload's own order for both string kinds: MongoDB
compares ObjectIds byte by byte and PostgreSQL compares UUIDs byte by byte, which is the order
of their lowercase hex text (captured in tests/fixtures/payload-api-postgres-uuid). Both
adapters send lowercase; an id in another case is not accepted, so cursors stay comparable.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, TypeGuard

DocId = int | str

_OBJECTID = re.compile(r"[0-9a-f]{24}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# The longest decimal text of a 64-bit id; an ObjectId (24 characters) is always longer.
_MAX_INT_DIGITS = 19


class IdType(StrEnum):
    INT = "int"
    OBJECTID = "objectid"
    UUID = "uuid"

    @property
    def is_string(self) -> bool:
        return self is not IdType.INT

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self]


_DESCRIPTIONS = {
    IdType.INT: "an integer",
    IdType.OBJECTID: "a MongoDB ObjectId (24 lowercase hex characters)",
    IdType.UUID: "a UUID (lowercase 8-4-4-4-12 hex)",
}


def is_valid_id(value: Any, id_type: IdType) -> TypeGuard[DocId]:
    """Whether `value` is a document id of the store's id type (as Payload sends it)."""
    if id_type is IdType.INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if not isinstance(value, str):
        return False
    pattern = _OBJECTID if id_type is IdType.OBJECTID else _UUID
    return pattern.fullmatch(value) is not None


def id_from_text(text: str) -> DocId:
    """An id written as text (a stored cursor): integers back to int, string ids unchanged.

    Unambiguous: an integer id has at most 19 digits, an ObjectId 24 characters, a UUID dashes."""
    if text.isdigit() and len(text) <= _MAX_INT_DIGITS:
        return int(text)
    return text
