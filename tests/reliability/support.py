"""The reliability matrix's oracle: raw tables vs. the demo store, marts invariants, secret scan.

Written against the contracts (docs/extract-load.md, docs/transform.md), not with
the loader's own converter: an expected row is computed here from the stored Payload document
alone, so a bug in the loader's typing cannot hide itself by also being in the expectation.

- `assert_raw_equals_store`: every raw Iceberg table holds exactly the store's documents (no
  missing id, no extra id, no duplicate), every column of every row equals the document's value
  read with contract B's typing (timestamps as UTC instants, ids/cents as long, booleans, strings,
  nested values as JSON with Payload's keys), every known column exists with its contract type,
  load metadata is set, and malformed documents sit in `_rejected` instead.
- `assert_marts_invariants`: the published marts agree with the store on revenue, customer
  segments, month-0 retention and order line totals.
- `SecretScanner`: finds any secret value (or any JWT) in captured text.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
from dlt.common.normalizers.naming.snake_case import NamingConvention
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.schema import Schema
from pyiceberg.table import Table
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

from flows.demo.generator import FIELD_ORDER
from flows.demo.server import DemoServer
from flows.demo.store import Document, Store
from flows.settings import ALL_COLLECTIONS, COLLECTION_TABLES

# --- contract B, written out -----------------------------------------------------------------

TIMESTAMP_COLUMNS = frozenset({"created_at", "updated_at", "deleted_at", "purchased_at"})
LONG_COLUMNS = frozenset(
    {
        "id",
        "customer",
        "order",
        "cart",
        "product",
        "variant_type",
        "amount",
        "subtotal",
        "price_in_usd",
        "inventory",
    }
)
BOOLEAN_COLUMNS = frozenset({"enable_variants", "price_in_usd_enabled"})
STRING_COLUMNS = frozenset(
    {
        "status",
        "currency",
        "customer_email",
        "payment_method",
        "title",
        "slug",
        "description",
        "name",
        "email",
        "label",
        "value",
        "_status",
        "collection",
        "_variant_options_options_order",
    }
)
JSON_COLUMNS = frozenset(
    {
        "items",
        "shipping_address",
        "billing_address",
        "transactions",
        "card",
        "paypal",
        "bank_transfer",
        "categories",
        "variant_types",
        "variants",
        "options",
        "roles",
        "sessions",
    }
)
LOADED_AT, LOAD_ID = "_loaded_at", "_load_id"
REJECTED_TABLE = "_rejected"

# Values Payload computes on read (not stored, never bump updatedAt): join fields and the cart
# status. They are compared only when asked (`computed=True`: no store change since the load).
COMPUTED_ON_READ: dict[str, tuple[str, ...]] = {
    "products": ("variants",),
    "variantTypes": ("options",),
    "carts": ("status",),
}

_NAMING = NamingConvention()


def column_name(payload_key: str) -> str:
    """Contract B's naming: dlt's snake_case of the Payload key."""
    return str(_NAMING.normalize_identifier(payload_key))


# Ids and relationship ids: `long` in a store with integer ids, `string` with ObjectIds / UUIDs.
ID_COLUMNS = frozenset({"id", "customer", "order", "cart", "product", "variant_type"})


def contract_kind(column: str, string_ids: bool = False) -> str | None:
    """The contract type of a column, or None for a column contract B does not name."""
    if column in TIMESTAMP_COLUMNS or column == LOADED_AT:
        return "timestamptz"
    if string_ids and column in ID_COLUMNS:
        return "string"
    if column in LONG_COLUMNS:
        return "long"
    if column in BOOLEAN_COLUMNS:
        return "boolean"
    if column in JSON_COLUMNS:
        return "json"
    if column in STRING_COLUMNS or column == LOAD_ID:
        return "string"
    return None


def known_columns(collection: str) -> list[str]:
    """Every column contract B promises for a collection, even while all its values are null."""
    keys = [*FIELD_ORDER[collection], *COMPUTED_ON_READ.get(collection, ())]
    return [column_name(key) for key in keys]


_ICEBERG_OF_KIND: dict[str, tuple[type[IcebergType], ...]] = {
    "timestamptz": (TimestamptzType,),
    "long": (LongType,),
    "boolean": (BooleanType,),
    "json": (StringType,),
    "string": (StringType,),
}


# --- documents compared (for the session summary) --------------------------------------------


@dataclass
class Tally:
    documents_compared: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, count: int) -> None:
        with self.lock:
            self.documents_compared += count


TALLY = Tally()


# --- the store side --------------------------------------------------------------------------


def store_snapshot(
    store: Store, collections: Iterable[str] = ALL_COLLECTIONS
) -> dict[str, list[Document]]:
    """The store's documents right now. Documents are replaced (never mutated) on every change,
    so holding the dicts is a consistent snapshot."""
    with store.lock:
        return {name: list(store.collections.get(name, {}).values()) for name in collections}


def computed_values(server: DemoServer, collection: str) -> dict[int, dict[str, Any]]:
    """The computed-on-read fields of every document, as the API renders them now (admin, depth 0,
    trash included, one unpaginated request). Call with faults off."""
    fields = COMPUTED_ON_READ.get(collection, ())
    if not fields:
        return {}
    response = httpx.get(
        f"{server.url}/api/{collection}",
        params={"limit": "0", "depth": "0", "trash": "true"},
        headers={"Authorization": f"JWT {server.admin_token()}"},
        timeout=60,
    )
    response.raise_for_status()
    return {
        doc["id"]: {key: doc.get(key) for key in fields}
        for doc in response.json()["docs"]
        if isinstance(doc.get("id"), int | str)
    }


# --- value comparison ------------------------------------------------------------------------


def _parse_instant(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def cell_matches(expected: Any, actual: Any, nested: NestedField) -> bool:
    """Does the loaded cell hold the document's value, read with the column's contract type?"""
    if expected is None:
        return actual is None
    if actual is None:
        return False
    column_type = nested.field_type
    json_column = nested.name in JSON_COLUMNS or isinstance(expected, dict | list)
    if isinstance(column_type, TimestamptzType):
        if not isinstance(expected, str) or not isinstance(actual, datetime):
            return False
        return actual.astimezone(UTC) == _parse_instant(expected)
    if isinstance(column_type, LongType | IntegerType):
        return (
            _is_number(expected)
            and float(expected).is_integer()
            and isinstance(actual, int)
            and actual == expected
        )
    if isinstance(column_type, DoubleType | FloatType):
        return _is_number(expected) and isinstance(actual, float) and actual == float(expected)
    if isinstance(column_type, BooleanType):
        return isinstance(expected, bool) and actual is expected
    if isinstance(column_type, StringType):
        if not isinstance(actual, str):
            return False
        if json_column:
            try:
                return bool(json.loads(actual) == expected)
            except ValueError:
                return False
        return isinstance(expected, str) and actual == expected
    return bool(actual == expected)


# --- the lakehouse side ----------------------------------------------------------------------


def load_raw_table(catalog: Catalog, namespace: str, collection: str) -> Table | None:
    try:
        return catalog.load_table(f"{namespace}.{COLLECTION_TABLES[collection]}")
    except NoSuchTableError:
        return None


def table_fingerprint(catalog: Catalog, namespace: str, collection: str) -> tuple[Any, ...]:
    """Metadata file, snapshot, snapshot summary, table properties and schema size of a raw
    table: equal before and after means nothing was committed and the cursor did not move."""
    table = load_raw_table(catalog, namespace, collection)
    if table is None:
        return ("absent",)
    snapshot = table.current_snapshot()
    summary = dict(snapshot.summary.additional_properties) if snapshot and snapshot.summary else {}
    return (
        table.metadata_location,
        snapshot.snapshot_id if snapshot else None,
        len(table.metadata.snapshots),
        tuple(sorted(summary.items())),
        tuple(sorted(table.properties.items())),  # the loader's cursor lives here too
        len(table.schema().fields),
    )


def lakehouse_fingerprint(catalog: Catalog, namespace: str) -> dict[str, tuple[Any, ...]]:
    return {c: table_fingerprint(catalog, namespace, c) for c in ALL_COLLECTIONS}


@dataclass
class Mismatch:
    collection: str
    problems: list[str]


def _check_schema(
    collection: str, schema: Schema, problems: list[str], string_ids: bool = False
) -> None:
    by_name = {nested.name: nested for nested in schema.fields}
    for column in [*known_columns(collection), LOADED_AT, LOAD_ID]:
        nested = by_name.get(column)
        if nested is None:
            problems.append(f"known column {column!r} is missing")
            continue
        kind = contract_kind(column, string_ids)
        if kind is not None and not isinstance(nested.field_type, _ICEBERG_OF_KIND[kind]):
            problems.append(f"column {column!r} is {nested.field_type}, contract B says {kind}")
    id_field = by_name.get("id")
    if id_field is not None:
        if not id_field.required:
            problems.append("`id` is not required")
        if id_field.field_id not in schema.identifier_field_ids:
            problems.append("`id` is not the identifier field")


def compare_collection(
    catalog: Catalog,
    namespace: str,
    collection: str,
    documents: Sequence[Document],
    *,
    computed: Mapping[int, Mapping[str, Any]] | None = None,
    rejected_ids: Iterable[int] = (),
    max_examples: int = 5,
) -> tuple[int, list[str]]:
    """Compare one raw table with `documents`; returns (documents compared, problems)."""
    problems: list[str] = []
    table = load_raw_table(catalog, namespace, collection)
    rejected = set(rejected_ids)
    expected_docs = {doc["id"]: doc for doc in documents if doc.get("id") not in rejected}
    if table is None:
        if expected_docs:
            problems.append(f"table missing, {len(expected_docs)} documents expected")
        return 0, problems
    string_ids = any(isinstance(doc_id, str) for doc_id in expected_docs)
    _check_schema(collection, table.schema(), problems, string_ids)
    rows = table.scan().to_arrow().to_pylist()
    ids = [row.get("id") for row in rows]
    duplicates = [doc_id for doc_id, n in Counter(ids).items() if n > 1]
    if duplicates:
        problems.append(
            f"{len(duplicates)} duplicate ids, e.g. {sorted(duplicates)[:max_examples]}"
        )
    missing = sorted(set(expected_docs) - set(ids))
    extra = sorted(set(ids) - set(expected_docs))
    if missing:
        problems.append(f"{len(missing)} documents missing, e.g. ids {missing[:max_examples]}")
    if extra:
        problems.append(f"{len(extra)} rows not in the source, e.g. ids {extra[:max_examples]}")

    fields = [f for f in table.schema().fields if f.name not in (LOADED_AT, LOAD_ID)]
    skip_computed = set() if computed is not None else set(COMPUTED_ON_READ.get(collection, ()))
    differences: list[str] = []
    compared = 0
    for row in rows:
        doc = expected_docs.get(row.get("id"))
        if doc is None:
            continue
        compared += 1
        if row.get(LOADED_AT) is None or not row.get(LOAD_ID):
            differences.append(f"id {doc['id']}: load metadata not set")
        expected = dict(doc)
        if computed is not None:
            expected.update(computed.get(doc["id"], {}))
        by_column: dict[str, Any] = {}
        for key, value in expected.items():
            if key in skip_computed:
                continue
            by_column[column_name(key)] = value
        columns = {f.name for f in fields}
        for name, value in by_column.items():
            if name not in columns and value is not None:
                differences.append(f"id {doc['id']}: field for column {name!r} not loaded")
        for nested in fields:
            if nested.name in {column_name(k) for k in skip_computed}:
                continue
            want = by_column.get(nested.name)
            got = row.get(nested.name)
            if not cell_matches(want, got, nested):
                differences.append(f"id {doc['id']}.{nested.name}: expected {want!r}, got {got!r}")
    if differences:
        problems.append(
            f"{len(differences)} cell differences, e.g. " + "; ".join(differences[:max_examples])
        )
    return compared, problems


def rejected_rows(catalog: Catalog, namespace: str) -> list[dict[str, Any]]:
    try:
        table = catalog.load_table(f"{namespace}.{REJECTED_TABLE}")
    except NoSuchTableError:
        return []
    return table.scan().to_arrow().to_pylist()


def assert_raw_equals_store(
    catalog: Catalog,
    namespace: str,
    documents: Mapping[str, Sequence[Document]],
    *,
    computed: Mapping[str, Mapping[int, Mapping[str, Any]]] | None = None,
    rejected: Mapping[str, Iterable[int]] | None = None,
) -> int:
    """Every raw table equals its documents (see module docstring); returns documents compared.

    `documents`: collection -> the source documents the table must hold (usually the live store;
    a snapshot for a collection whose load is expected to have failed). `rejected`: collection ->
    ids of malformed documents that must be in `_rejected` and not in the table.
    """
    rejected_sets: dict[str, set[int]] = {c: set(ids) for c, ids in (rejected or {}).items()}
    total = 0
    failures: list[Mismatch] = []
    for collection, docs in documents.items():
        compared, problems = compare_collection(
            catalog,
            namespace,
            collection,
            docs,
            computed=None if computed is None else computed.get(collection, {}),
            rejected_ids=rejected_sets.get(collection, ()),
        )
        total += compared
        if problems:
            failures.append(Mismatch(collection, problems))
    if any(rejected_sets.values()):
        problems = _check_rejected(catalog, namespace, documents, rejected_sets)
        if problems:
            failures.append(Mismatch(REJECTED_TABLE, problems))
    TALLY.add(total)
    if failures:
        lines = [f"{m.collection}: {p}" for m in failures for p in m.problems]
        raise AssertionError("raw tables differ from the source:\n  " + "\n  ".join(lines))
    return total


def _check_rejected(
    catalog: Catalog,
    namespace: str,
    documents: Mapping[str, Sequence[Document]],
    rejected: Mapping[str, set[int]],
) -> list[str]:
    rows = rejected_rows(catalog, namespace)
    problems = []
    for collection, ids in rejected.items():
        by_id = {d["id"]: d for d in documents.get(collection, ()) if d.get("id") in ids}
        for doc_id in sorted(ids):
            matches = [
                r
                for r in rows
                if r.get("collection") == collection and r.get("document_id") == str(doc_id)
            ]
            if not matches:
                problems.append(f"{collection} id {doc_id} is not in {REJECTED_TABLE}")
                continue
            row = matches[-1]
            if not row.get("reason") or row.get(LOADED_AT) is None or not row.get(LOAD_ID):
                problems.append(f"{collection} id {doc_id}: reason or load metadata missing")
            try:
                kept = json.loads(row.get("document") or "null")
            except ValueError:
                kept = None
            if kept != by_id.get(doc_id):
                problems.append(
                    f"{collection} id {doc_id}: the rejected row does not hold the document"
                )
    return problems


# --- marts invariants ------------------------------------------------------------------------

# docs/transform.md: an order is revenue-bearing when its status is processing or completed.
REVENUE_STATUSES = frozenset({"processing", "completed"})
_CENT = Decimal("0.01")


def _cents(value: Any) -> int:
    return int((Decimal(str(value)) / _CENT).to_integral_value())


def _month(instant: str) -> str:
    return _parse_instant(instant).strftime("%Y-%m")


def read_mart(catalog: Catalog, namespace: str, name: str) -> list[dict[str, Any]]:
    return catalog.load_table(f"{namespace}.{name}").scan().to_arrow().to_pylist()


def assert_marts_invariants(
    catalog: Catalog, marts_namespace: str, documents: Mapping[str, Sequence[Document]]
) -> dict[str, Any]:
    """The published marts agree with the source documents (the raw layer, proven equal to them):

    - revenue: fact_orders' revenue-bearing amount equals the sum of the source's revenue-bearing
      order amounts, order by order (and every order is in fact_orders once);
    - every registered customer is in dim_customers exactly once; those with at least one
      order (any status) have a segment, the others none;
    - cohort month 0 retains 100% of the cohort, and the cohorts are the months of each
      customer's first revenue-bearing order;
    - an order's lines add up to its amount exactly, one line per item.
    """
    orders = list(documents["orders"])
    users = list(documents["users"])
    problems: list[str] = []

    fact_orders = read_mart(catalog, marts_namespace, "fact_orders")
    by_order = {row["order_id"]: row for row in fact_orders}
    if len(by_order) != len(fact_orders):
        problems.append("fact_orders has duplicate order ids")
    if set(by_order) != {o["id"] for o in orders}:
        missing = sorted({o["id"] for o in orders} - set(by_order))[:5]
        extra = sorted(set(by_order) - {o["id"] for o in orders})[:5]
        problems.append(
            f"fact_orders ids differ from the source (missing {missing}, extra {extra})"
        )
    expected_revenue = sum(o["amount"] for o in orders if o.get("status") in REVENUE_STATUSES)
    mart_revenue = sum(_cents(r["amount_usd"]) for r in fact_orders if r["is_revenue_bearing"])
    if mart_revenue != expected_revenue:
        problems.append(
            f"revenue {mart_revenue} cents in fact_orders != {expected_revenue} in source"
        )
    for order in orders:
        row = by_order.get(order["id"])
        if row is None:
            continue
        if _cents(row["amount_usd"]) != order["amount"]:
            problems.append(f"order {order['id']}: amount {row['amount_usd']} != {order['amount']}")
        if bool(row["is_revenue_bearing"]) != (order.get("status") in REVENUE_STATUSES):
            problems.append(f"order {order['id']}: is_revenue_bearing wrong for {order['status']}")

    customers = {u["id"] for u in users if "customer" in (u.get("roles") or [])}
    first_order: dict[int, tuple[str, int]] = {}
    for order in orders:
        customer = order.get("customer")
        if (
            isinstance(customer, int | str)
            and order.get("status") in REVENUE_STATUSES
            and customer in customers
        ):
            key = (order["createdAt"], order["id"])
            if customer not in first_order or _parse_instant(key[0]) < _parse_instant(
                first_order[customer][0]
            ):
                first_order[customer] = key
    dim_customers = read_mart(catalog, marts_namespace, "dim_customers")
    rows_per_customer = Counter(row["customer_id"] for row in dim_customers)
    if any(n != 1 for n in rows_per_customer.values()):
        problems.append("dim_customers has a customer more than once")
    if set(rows_per_customer) != customers:
        problems.append("dim_customers' customers differ from the source's registered customers")
    # docs/transform.md: every customer with at least one order (any status) has exactly one
    # segment (R/F/M count revenue-bearing orders only); customers who never ordered have none.
    ordering: set[int] = {o["customer"] for o in orders if o.get("customer") in customers}
    segmented = {row["customer_id"] for row in dim_customers if row["customer_segment"]}
    if segmented != ordering:
        problems.append(
            f"customers with a segment ({len(segmented)}) != customers with an order "
            f"({len(ordering)}); e.g. {sorted(segmented ^ ordering)[:5]}"
        )

    retention = read_mart(catalog, marts_namespace, "cohort_retention")
    month_zero = [row for row in retention if row["months_since_first_order"] == 0]
    for row in month_zero:
        if row["active_customers"] != row["cohort_size"] or float(row["retention_rate"]) != 1.0:
            problems.append(f"cohort {row['cohort_month']}: month-0 retention is not 100%")
    expected_cohorts = Counter(_month(instant) for instant, _ in first_order.values())
    mart_cohorts = {str(row["cohort_month"])[:7]: row["cohort_size"] for row in month_zero}
    if mart_cohorts != dict(expected_cohorts):
        problems.append("cohort sizes at month 0 differ from first revenue-bearing order months")

    items = read_mart(catalog, marts_namespace, "fact_order_items")
    line_cents: dict[int, int] = defaultdict(int)
    line_count: Counter[int] = Counter()
    for item in items:
        line_cents[item["order_id"]] += _cents(item["line_total_usd"])
        line_count[item["order_id"]] += 1
    for order in orders:
        expected_lines = len(order.get("items") or [])
        if line_count.get(order["id"], 0) != expected_lines:
            problems.append(
                f"order {order['id']}: {line_count.get(order['id'], 0)} lines, "
                f"{expected_lines} items in the source"
            )
        elif expected_lines and line_cents[order["id"]] != order["amount"]:
            problems.append(
                f"order {order['id']}: lines add up to {line_cents[order['id']]} cents, "
                f"amount is {order['amount']}"
            )
    if problems:
        raise AssertionError("marts invariants broken:\n  " + "\n  ".join(problems[:20]))
    return {
        "orders": len(orders),
        "revenue_cents": expected_revenue,
        "segmented_customers": len(segmented),
        "cohorts": len(month_zero),
        "order_lines": len(items),
    }


# --- secrets ---------------------------------------------------------------------------------

# Any JWT (header.payload.signature, base64url JSON): Payload tokens, OAuth2 access tokens.
JWT_PATTERN = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{10,}")


@dataclass
class SecretScanner:
    """Collects secret values and searches captured text for any of them (or for any JWT)."""

    secrets: set[str] = field(default_factory=set)

    def add(self, *values: str | None) -> None:
        for value in values:
            if value and len(value) >= 6:  # shorter values would match ordinary words
                self.secrets.add(value)

    def findings(self, texts: Mapping[str, str]) -> list[str]:
        found = []
        for source, text in texts.items():
            for secret in self.secrets:
                if secret in text:
                    found.append(f"{source}: contains a secret ({secret[:3]}...)")
            for match in JWT_PATTERN.finditer(text):
                found.append(f"{source}: contains a JWT ({match.group(0)[:12]}...)")
        return found

    def assert_clean(self, texts: Mapping[str, str]) -> int:
        """Raise if any text holds a secret; returns the number of characters searched."""
        found = self.findings(texts)
        assert not found, "secrets leaked:\n  " + "\n  ".join(sorted(set(found))[:20])
        return sum(len(text) for text in texts.values())
