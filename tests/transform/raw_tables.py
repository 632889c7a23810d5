"""Write contract-B raw tables straight from documents (no HTTP), with the loader's own
document converter. Used by the fast dbt unit/oracle tests; the end-to-end tests go through the
real demo API and `flows.lakehouse.load.load_collection`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pyiceberg.exceptions import NoSuchTableError

from flows.lakehouse.catalog import prepare_lakehouse
from flows.lakehouse.schema import (
    DocumentConverter,
    arrow_schema_for,
    conform,
    new_table_schema,
)
from flows.settings import COLLECTION_TABLES, Settings
from flows.source.ids import IdType, is_valid_id

CART_ACTIVE_WINDOW = timedelta(days=7)


def with_cart_status(carts: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """Payload computes a cart's status on read; the loader stores what the API returned."""
    out = []
    for cart in carts:
        created = datetime.fromisoformat(cart["createdAt"].replace("Z", "+00:00"))
        if cart.get("purchasedAt"):
            status = "purchased"
        elif now - created < CART_ACTIVE_WINDOW:
            status = "active"
        else:
            status = "abandoned"
        out.append({**cart, "status": status})
    return out


def id_type_of(collections: Mapping[str, list[dict[str, Any]]]) -> IdType:
    """The id type of fixture documents (from the first order's id)."""
    first = next(iter(collections.get("orders", [])), {}).get("id")
    return next((t for t in IdType if is_valid_id(first, t)), IdType.INT)


def write_raw_tables(
    settings: Settings,
    collections: Mapping[str, list[dict[str, Any]]],
    now: datetime,
) -> None:
    """Replace every raw table with the given documents (one overwrite commit per table)."""
    catalog = prepare_lakehouse(settings)
    id_type = id_type_of(collections)
    loaded_at = int((now - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))
    for collection, table_name in COLLECTION_TABLES.items():
        docs = list(collections.get(collection, []))
        if collection == "carts":
            docs = with_cart_status(docs, now)
        converter = DocumentConverter.for_collection(collection, id_type=id_type)
        page = converter.convert(docs, load_id="fixture", loaded_at_micros=loaded_at)
        assert not page.rejected, page.rejected[:3]
        identifier = f"{settings.iceberg_namespace}.{table_name}"
        try:
            table = catalog.load_table(identifier)
        except NoSuchTableError:
            table = catalog.create_table(identifier, new_table_schema(converter.iceberg_fields()))
        data = conform(page.data, arrow_schema_for(table.schema()))
        table.overwrite(data)
