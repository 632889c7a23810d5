"""Payload documents -> Arrow, typed per contract B, with schema evolution decided per column.

Column names are dlt's snake_case of the Payload keys. Types:
- timestamps (`createdAt`, `updatedAt`, `deletedAt`, `purchasedAt`, and any new `...At` field whose
  values all parse as ISO-8601) -> timestamptz (UTC, microseconds);
- integers where Payload guarantees them (integer ids and relationship ids at depth 0, cents,
  inventory) -> long; every other JSON number -> double (JavaScript has one number type: a field
  whose first values are whole may get a fraction later, so an unknown number is never `long`);
- ids and relationship ids of a store with string ids (`PAYLOAD_ID_TYPE` objectid / uuid) ->
  string;
- booleans -> boolean; strings -> string;
- objects and arrays -> compact JSON strings with Payload's original keys (a `json` column).

A value that cannot be read as its column's type either rejects the *document* (no id, an
unparsable timestamp or number, a fraction in a contract integer: data errors, sent to
`_rejected`) or, when it is a well-formed
value of another type (a float in a long column, a number in a string column), fails the load
with `SchemaEvolutionError` (a schema change Iceberg cannot widen). New Payload fields become new
columns; a new field that is null in every document of a load is not added until it has a value
(its type is unknown until then).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from dlt.common.normalizers.naming.snake_case import NamingConvention
from pyiceberg.schema import Schema
from pyiceberg.types import (
    BooleanType,
    DoubleType,
    FloatType,
    IcebergType,
    IntegerType,
    LongType,
    NestedField,
    StringType,
    TimestamptzType,
)

from flows.lakehouse.errors import IdTypeError, SchemaEvolutionError
from flows.source.ids import IdType, is_valid_id

JSON_DOC = "JSON-encoded Payload value"
LOADED_AT = "_loaded_at"
LOAD_ID = "_load_id"


class Kind(StrEnum):
    LONG = "long"
    DOUBLE = "double"
    BOOLEAN = "boolean"
    STRING = "string"
    TIMESTAMP = "timestamptz"
    JSON = "json"  # stored as an Iceberg string, marked by the field doc


ICEBERG_TYPES: dict[Kind, IcebergType] = {
    Kind.LONG: LongType(),
    Kind.DOUBLE: DoubleType(),
    Kind.BOOLEAN: BooleanType(),
    Kind.STRING: StringType(),
    Kind.TIMESTAMP: TimestamptzType(),
    Kind.JSON: StringType(),
}
ARROW_TYPES: dict[Kind, pa.DataType] = {
    Kind.LONG: pa.int64(),
    Kind.DOUBLE: pa.float64(),
    Kind.BOOLEAN: pa.bool_(),
    Kind.STRING: pa.large_string(),
    Kind.TIMESTAMP: pa.timestamp("us", tz="UTC"),
    Kind.JSON: pa.large_string(),
}

_COMMON = {"id": Kind.LONG, "createdAt": Kind.TIMESTAMP, "updatedAt": Kind.TIMESTAMP}
_TRASH = {"deletedAt": Kind.TIMESTAMP}
_ITEMS_ETC = {"items": Kind.JSON, "customer": Kind.LONG, "customerEmail": Kind.STRING}
_MONEY = {"amount": Kind.LONG, "currency": Kind.STRING, "status": Kind.STRING}

# Every field Payload's ecommerce plugin defines, so each column exists even while all-null.
KNOWN_FIELDS: dict[str, dict[str, Kind]] = {
    "orders": {
        **_COMMON,
        **_ITEMS_ETC,
        **_MONEY,
        "shippingAddress": Kind.JSON,
        "transactions": Kind.JSON,
    },
    "transactions": {
        **_COMMON,
        **_ITEMS_ETC,
        **_MONEY,
        "paymentMethod": Kind.STRING,
        "card": Kind.JSON,
        "paypal": Kind.JSON,
        "bankTransfer": Kind.JSON,
        "billingAddress": Kind.JSON,
        "order": Kind.LONG,
        "cart": Kind.LONG,
    },
    "carts": {
        **_COMMON,
        "items": Kind.JSON,
        "customer": Kind.LONG,
        "purchasedAt": Kind.TIMESTAMP,
        "subtotal": Kind.LONG,
        "currency": Kind.STRING,
        "status": Kind.STRING,
    },
    "products": {
        **_COMMON,
        **_TRASH,
        "title": Kind.STRING,
        "slug": Kind.STRING,
        "description": Kind.STRING,
        "categories": Kind.JSON,
        "inventory": Kind.LONG,
        "enableVariants": Kind.BOOLEAN,
        "variantTypes": Kind.JSON,
        "variants": Kind.JSON,
        "priceInUSDEnabled": Kind.BOOLEAN,
        "priceInUSD": Kind.LONG,
        "_status": Kind.STRING,
    },
    "variants": {
        **_COMMON,
        **_TRASH,
        "title": Kind.STRING,
        "product": Kind.LONG,
        "options": Kind.JSON,
        "inventory": Kind.LONG,
        "priceInUSDEnabled": Kind.BOOLEAN,
        "priceInUSD": Kind.LONG,
        "_status": Kind.STRING,
    },
    "categories": {**_COMMON, "title": Kind.STRING, "slug": Kind.STRING},
    "users": {
        **_COMMON,
        "name": Kind.STRING,
        "roles": Kind.JSON,
        "email": Kind.STRING,
        "collection": Kind.STRING,
        "sessions": Kind.JSON,
    },
    "variantTypes": {
        **_COMMON,
        **_TRASH,
        "label": Kind.STRING,
        "name": Kind.STRING,
        "options": Kind.JSON,
    },
    "variantOptions": {
        **_COMMON,
        **_TRASH,
        "_variantOptions_options_order": Kind.STRING,
        "variantType": Kind.LONG,
        "label": Kind.STRING,
        "value": Kind.STRING,
    },
}

# Relationship fields (ids of other documents at depth 0): typed like the store's ids.
RELATIONSHIP_KEYS = frozenset({"customer", "order", "cart", "product", "variantType"})


def known_fields(collection: str, id_type: IdType = IdType.INT) -> dict[str, Kind]:
    """The collection's contract columns, with ids and relationships typed by the id type."""
    fields = dict(KNOWN_FIELDS.get(collection, {"id": Kind.LONG}))
    if id_type.is_string:
        for key in fields.keys() & {"id", *RELATIONSHIP_KEYS}:
            fields[key] = Kind.STRING
    return fields


def id_kind(id_type: IdType) -> Kind:
    return Kind.STRING if id_type.is_string else Kind.LONG


_NAMING = NamingConvention()


@lru_cache(maxsize=4096)
def column_name(payload_key: str) -> str:
    """dlt's snake_case naming: customerEmail -> customer_email, priceInUSD -> price_in_usd."""
    return _NAMING.normalize_identifier(payload_key)


# --- value conversion ----------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MICROSECOND = timedelta(microseconds=1)


class Rejected(ValueError):  # noqa: N818  (a signal, not an error to report as such)
    """The document holds a value that cannot be read as data; it goes to `_rejected`.

    `cause` is the reason without the offending value ("unparsable number"): rejections are
    grouped by it, so a systematic cause is recognised even though every value differs."""

    def __init__(self, cause: str, value: Any) -> None:
        super().__init__(f"{cause} {value!r}")
        self.cause = cause


class TypeChange(ValueError):  # noqa: N818
    """A well-formed value of another type: a schema change (maybe incompatible)."""

    def __init__(self, incoming: Kind) -> None:
        super().__init__(incoming)
        self.incoming = incoming


def timestamp_micros(value: str) -> int:
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _ONE_MICROSECOND


def kind_of(value: Any) -> Kind:
    if isinstance(value, bool):
        return Kind.BOOLEAN
    if isinstance(value, int):
        return Kind.LONG
    if isinstance(value, float):
        return Kind.DOUBLE
    if isinstance(value, str):
        return Kind.STRING
    return Kind.JSON


def _to_long(value: Any) -> int | None:
    """A `long` column that is not a contract integer (a table typed by older versions): a
    fraction is a type change (the writer says how to retype the column)."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        raise TypeChange(Kind.DOUBLE)
    raise _number_problem(value)


def _to_contract_long(value: Any) -> int | None:
    """A field Payload guarantees to be whole (cents, quantities, integer ids): a fraction is a
    bad document, rejected, never a reason to stop the collection."""
    if isinstance(value, float) and not value.is_integer():
        raise Rejected("fraction in an integer field", value)
    return _to_long(value)


def _number_problem(value: Any) -> Exception:
    """A number column got something else: a numeric string or a bool is the field's type
    changing in Payload (a schema change); any other string is a bad value (reject the doc)."""
    if isinstance(value, bool):
        return TypeChange(Kind.BOOLEAN)
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return Rejected("unparsable number", value)
        return TypeChange(Kind.STRING)
    return TypeChange(Kind.JSON)


def _to_double(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise _number_problem(value)


def _to_bool(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, dict | list):
        raise TypeChange(Kind.JSON)
    raise Rejected("not a boolean", value)


def _to_string(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise TypeChange(kind_of(value))


def _to_timestamp(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise Rejected("unparsable timestamp", value)
    try:
        return timestamp_micros(value)
    except ValueError:
        raise Rejected("unparsable timestamp", value) from None


def _to_json(value: Any) -> str | None:
    if value is None:
        return None
    return orjson.dumps(value).decode()


CONVERTERS: dict[Kind, Callable[[Any], Any]] = {
    Kind.LONG: _to_long,
    Kind.DOUBLE: _to_double,
    Kind.BOOLEAN: _to_bool,
    Kind.STRING: _to_string,
    Kind.TIMESTAMP: _to_timestamp,
    Kind.JSON: _to_json,
}


def infer_kind(key: str, values: Iterable[Any]) -> Kind | None:
    """Type of a new field from its non-null values; None when all are null."""
    kinds = {kind_of(v) for v in values if v is not None}
    if not kinds:
        return None
    if kinds == {Kind.STRING} and key.endswith("At"):
        try:
            for value in values:
                if value is not None:
                    timestamp_micros(value)
        except ValueError:
            return Kind.STRING
        return Kind.TIMESTAMP
    if kinds <= {Kind.LONG, Kind.DOUBLE}:
        return Kind.DOUBLE  # a JSON number: whole so far does not mean whole forever
    if len(kinds) == 1:
        return kinds.pop()
    return Kind.JSON  # mixed types: keep every value, losslessly, as JSON


# --- columns of one collection -------------------------------------------------------------


@dataclass
class Column:
    payload_key: str
    name: str
    kind: Kind
    contract_integer: bool = False  # a `long` Payload guarantees: fractions reject the document


def kind_of_iceberg_field(nested: NestedField) -> Kind:
    """Our kind for an existing table column (JSON columns carry a marker in their doc)."""
    field_type = nested.field_type
    if isinstance(field_type, StringType):
        return Kind.JSON if (nested.doc or "").startswith("JSON") else Kind.STRING
    if isinstance(field_type, LongType | IntegerType):
        return Kind.LONG
    if isinstance(field_type, DoubleType | FloatType):
        return Kind.DOUBLE
    if isinstance(field_type, BooleanType):
        return Kind.BOOLEAN
    if isinstance(field_type, TimestamptzType):
        return Kind.TIMESTAMP
    return Kind.JSON


@dataclass
class RejectedDocument:
    document_id: str | None
    reason: str
    document: str
    cause: str = ""  # the reason without the value, for grouping (defaults to the reason)

    def __post_init__(self) -> None:
        self.cause = self.cause or self.reason


@dataclass
class ConvertedPage:
    data: pa.Table
    rejected: list[RejectedDocument]


@dataclass
class DocumentConverter:
    """Converts pages of one collection to Arrow, growing its column set as new fields appear.

    `columns` starts from the table's existing columns plus the collection's known fields; the
    writer later reconciles it with the table schema (adding columns, widening, or refusing).
    """

    collection: str
    columns: dict[str, Column] = field(default_factory=dict)  # payload key -> column
    id_type: IdType = IdType.INT

    @classmethod
    def for_collection(
        cls,
        collection: str,
        existing: dict[str, Kind] | None = None,
        id_type: IdType = IdType.INT,
    ) -> DocumentConverter:
        """`existing`: the table's column kinds, kept (the writer widens or refuses). A full
        refresh passes none: it rewrites every row, so the columns take the contract's and this
        read's types (the writer retypes a column whose type changed)."""
        converter = cls(collection, id_type=id_type)
        existing = existing or {}
        by_name: dict[str, Column] = {}
        for key, kind in known_fields(collection, id_type).items():
            name = column_name(key)
            # An existing column keeps its type (e.g. an old `int`), the writer widens it.
            by_name[name] = Column(key, name, existing.get(name, kind), kind is Kind.LONG)
        converter.columns = {c.payload_key: c for c in by_name.values()}
        converter._existing = existing
        converter._contract = frozenset(known_fields(collection, id_type))
        return converter

    _existing: dict[str, Kind] = field(default_factory=dict)
    _contract: frozenset[str] = frozenset()

    def _column_for_new_key(self, key: str, docs: list[dict[str, Any]]) -> Column | None:
        name = column_name(key)
        if name in (LOADED_AT, LOAD_ID):
            return None
        known = self._existing.get(name)
        kind = known or infer_kind(key, [d.get(key) for d in docs if isinstance(d, dict)])
        if kind is None:
            return None
        return Column(key, name, kind)

    def convert(self, docs: list[Any], load_id: str, loaded_at_micros: int) -> ConvertedPage:
        # New fields first, so every document of this page is read with the same columns.
        seen_keys: set[str] = set()
        for doc in docs:
            if isinstance(doc, dict):
                seen_keys.update(doc.keys())
        for key in seen_keys - self.columns.keys():
            column = self._column_for_new_key(key, docs)
            if column is not None:
                self.columns[key] = column

        id_type = self.id_type
        good = [d for d in docs if _has_key_fields(d, id_type)]
        rejected = [
            _rejection(d, _key_problem(d, id_type)) for d in docs if not _has_key_fields(d, id_type)
        ]
        bad_rows: dict[int, tuple[str, str]] = {}  # row -> (reason, cause)
        arrays: dict[str, pa.Array] = {}
        for column in self.columns.values():
            key = column.payload_key
            values = [d.get(key) for d in good]
            try:
                arrays[column.name] = fast_array(values, column.kind)
            except _SlowPath:
                arrays[column.name] = self._checked_array(column, values, bad_rows)
        if bad_rows:
            keep = pa.array([i not in bad_rows for i in range(len(good))])
            arrays = {name: pc.filter(array, keep) for name, array in arrays.items()}
            rejected += [_rejection(good[i], *why) for i, why in sorted(bad_rows.items())]
        count = len(good) - len(bad_rows)
        arrays[LOADED_AT] = pa.array([loaded_at_micros] * count, type=ARROW_TYPES[Kind.TIMESTAMP])
        arrays[LOAD_ID] = pa.array([load_id] * count, type=pa.large_string())
        return ConvertedPage(pa.table(arrays), rejected)

    def _checked_array(
        self, column: Column, values: list[Any], bad_rows: dict[int, tuple[str, str]]
    ) -> pa.Array:
        """Value-by-value conversion: finds the documents to reject and the type changes."""
        convert = CONVERTERS[column.kind]
        if column.kind is Kind.LONG and column.contract_integer:
            convert = _to_contract_long
        out: list[Any] = []
        for index, value in enumerate(values):
            try:
                out.append(convert(value))
            except Rejected as why:
                key = column.payload_key
                bad_rows.setdefault(index, (f"{key}: {why}", f"{key}: {why.cause}"))
                out.append(None)
            except TypeChange as change:
                raise SchemaEvolutionError(
                    self.collection,
                    column.name,
                    column.kind.value,
                    change.incoming.value,
                    contract=column.contract_integer or column.payload_key in self._contract,
                ) from None
        return pa.array(out, type=ARROW_TYPES[column.kind])

    def iceberg_fields(self) -> list[tuple[str, Kind]]:
        """(column, kind) of every data column, metadata columns last."""
        cols = [(c.name, c.kind) for c in self.columns.values()]
        return [*cols, (LOADED_AT, Kind.TIMESTAMP), (LOAD_ID, Kind.STRING)]


class _SlowPath(Exception):  # noqa: N818
    """The vectorised conversion does not apply: check value by value."""


_INFERRED_OK: dict[Kind, tuple[pa.DataType, ...]] = {
    Kind.LONG: (pa.int64(), pa.null()),
    Kind.DOUBLE: (pa.float64(), pa.int64(), pa.null()),
    Kind.BOOLEAN: (pa.bool_(), pa.null()),
    Kind.STRING: (pa.string(), pa.null()),
    Kind.TIMESTAMP: (pa.string(), pa.null()),
}


def fast_array(values: list[Any], kind: Kind) -> pa.Array:
    """Vectorised conversion of well-typed values; raises _SlowPath on anything unusual.

    Relies on Arrow's type inference (an int column that holds a float or a bool does not infer
    as int64), never on Arrow's lenient casts (which would truncate 1.5 to 1).
    """
    if kind is Kind.JSON:
        dumps = orjson.dumps
        return pa.array(
            [None if v is None else dumps(v).decode() for v in values], type=pa.large_string()
        )
    try:
        inferred = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        raise _SlowPath from None
    if inferred.type not in _INFERRED_OK[kind]:
        raise _SlowPath
    try:
        return inferred.cast(ARROW_TYPES[kind])
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise _SlowPath from None


def _has_key_fields(doc: Any, id_type: IdType = IdType.INT) -> bool:
    if not isinstance(doc, dict):
        return False
    return is_valid_id(doc.get("id"), id_type) and isinstance(doc.get("updatedAt"), str)


def id_problem(id_type: IdType) -> str:
    """The rejection reason of a document whose id is not of the store's id type."""
    if id_type is IdType.INT:
        return "missing or non-integer id"
    return f"missing id or not {id_type.description}"


def _key_problem(doc: Any, id_type: IdType = IdType.INT) -> str:
    if not isinstance(doc, dict):
        return "not a JSON object"
    if not is_valid_id(doc.get("id"), id_type):
        return id_problem(id_type)
    return "missing updatedAt"


def _rejection(doc: Any, reason: str, cause: str = "") -> RejectedDocument:
    doc_id = doc.get("id") if isinstance(doc, dict) else None
    return RejectedDocument(
        document_id=None if doc_id is None else str(doc_id),
        reason=reason,
        document=orjson.dumps(doc, default=str).decode(),
        cause=cause,
    )


def new_table_schema(fields: list[tuple[str, Kind]]) -> Schema:
    """A fresh Iceberg schema: `id` first, required, the identifier field."""
    nested: list[NestedField] = []
    ordered = sorted(fields, key=lambda f: f[0] != "id")
    for field_id, (name, kind) in enumerate(ordered, start=1):
        nested.append(
            NestedField(
                field_id=field_id,
                name=name,
                field_type=ICEBERG_TYPES[kind],
                required=name == "id",
                doc=JSON_DOC if kind is Kind.JSON else None,
            )
        )
    return Schema(*nested, identifier_field_ids=[1])


def check_id_type(collection: str, identifier: str, schema: Schema, id_type: IdType) -> None:
    """Refuse a table whose `id` column is not of PAYLOAD_ID_TYPE's kind (nothing read yet)."""
    try:
        current = kind_of_iceberg_field(schema.find_field("id"))
    except ValueError:
        return
    if current is id_kind(id_type):
        return
    raise IdTypeError(
        f"{collection}: {identifier} holds {current.value} ids but PAYLOAD_ID_TYPE="
        f"{id_type.value} means {id_kind(id_type).value} ids. If PAYLOAD_ID_TYPE is wrong, set "
        "it to the store's id type (int, objectid or uuid). If the store really changed id "
        "type, its documents are other documents: drop the raw tables (or use another "
        "ICEBERG_NAMESPACE / LAKEHOUSE_DIR) and load again. Nothing was read or committed."
    )


def existing_kinds(schema: Schema) -> dict[str, Kind]:
    return {f.name: kind_of_iceberg_field(f) for f in schema.fields}


def arrow_schema_for(schema: Schema) -> pa.Schema:
    """The Arrow schema data must have to be written into an Iceberg table of `schema`."""
    fields = []
    for nested in schema.fields:
        kind = kind_of_iceberg_field(nested)
        arrow_type = ARROW_TYPES[kind]
        if isinstance(nested.field_type, IntegerType):
            arrow_type = pa.int32()
        elif isinstance(nested.field_type, FloatType):
            arrow_type = pa.float32()
        fields.append(pa.field(nested.name, arrow_type, nullable=not nested.required))
    return pa.schema(fields)


def conform(data: pa.Table, target: pa.Schema) -> pa.Table:
    """Reorder/complete `data` to `target`: missing columns become nulls, types are cast."""
    arrays = []
    for target_field in target:
        if target_field.name in data.column_names:
            arrays.append(data.column(target_field.name).cast(target_field.type))
        else:
            arrays.append(pa.nulls(len(data), type=target_field.type))
    return pa.Table.from_arrays(arrays, schema=target)


REJECTED_FIELDS: list[tuple[str, Kind]] = [
    ("collection", Kind.STRING),
    ("document_id", Kind.STRING),
    ("reason", Kind.STRING),
    ("document", Kind.STRING),
    (LOAD_ID, Kind.STRING),
    (LOADED_AT, Kind.TIMESTAMP),
]


def rejected_schema() -> Schema:
    return Schema(
        *[
            NestedField(i, name, ICEBERG_TYPES[kind], required=False)
            for i, (name, kind) in enumerate(REJECTED_FIELDS, start=1)
        ]
    )
