"""Helpers for end-to-end load tests against the demo Payload API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import requests

from flows.demo.server import DemoServer
from flows.lakehouse.catalog import clear_catalog_cache, get_catalog, prepare_lakehouse
from flows.lakehouse.load import table_identifier
from flows.lakehouse.schema import (
    LOAD_ID,
    LOADED_AT,
    DocumentConverter,
    arrow_schema_for,
    conform,
    existing_kinds,
)
from flows.settings import ALL_COLLECTIONS, Settings, load_settings


def settings_for(server: DemoServer, lakehouse: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "payload_cms_url": server.url,
        "lakehouse_dir": lakehouse,
        "payload_email": "admin@example.com",
        "payload_password": "demo-password",
        "payload_page_size": 100,
        "payload_backoff_seconds": 0.01,
        "payload_max_backoff_seconds": 0.2,
        "payload_max_retries": 8,
        "payload_timeout_seconds": 10,
        "payload_id_type": server.store.id_type,
    }
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture
def lakehouse_dir(tmp_path: Path) -> Iterator[Path]:
    clear_catalog_cache()
    yield tmp_path / "lakehouse"
    clear_catalog_cache()


def source_documents(server: DemoServer, collection: str) -> list[dict]:
    """Every document straight from the API in one unpaginated request (limit=0), independent
    of the loader's keyset reads."""
    response = requests.get(
        f"{server.url}/api/{collection}",
        params={"limit": "0", "depth": "0", "trash": "true"},
        headers={"Authorization": f"JWT {server.admin_token()}"},
        timeout=60,
    )
    response.raise_for_status()
    return response.json()["docs"]


def table_rows(settings: Settings, collection: str) -> pa.Table:
    table = get_catalog(settings).load_table(table_identifier(settings, collection))
    return table.scan().to_arrow()


# Values Payload computes when reading, without bumping the document's updatedAt (join fields,
# the cart status derived from the clock): an incremental load cannot see them change; they are
# exact after a full load / full refresh, and dbt derives them from the base tables instead.
COMPUTED_ON_READ = {"products": {"variants"}, "varianttypes": {"options"}, "carts": {"status"}}


def assert_table_equals_source(
    settings: Settings, server: DemoServer, collection: str, *, computed_too: bool = False
) -> None:
    """Every column of every row equals the source document converted on its own."""
    table = get_catalog(settings).load_table(table_identifier(settings, collection))
    actual = table.scan().to_arrow()
    ids = actual.column("id").to_pylist()
    assert len(ids) == len(set(ids)), f"{collection}: duplicate ids in the table"
    docs = source_documents(server, collection)
    converter = DocumentConverter.for_collection(
        collection, existing_kinds(table.schema()), settings.payload_id_type
    )
    page = converter.convert(docs, "expected", 0)
    assert page.rejected == [], f"{collection}: source holds rejectable documents"
    target = arrow_schema_for(table.schema())
    expected = conform(page.data, target)
    drop = [LOADED_AT, LOAD_ID]
    if not computed_too:
        drop += sorted(COMPUTED_ON_READ.get(settings.table_name(collection), set()))
    expected = expected.drop_columns(drop).sort_by("id")
    actual = conform(actual, target).drop_columns(drop).sort_by("id")
    assert actual.column("id").to_pylist() == expected.column("id").to_pylist(), collection
    for name in expected.column_names:
        got, want = actual.column(name).to_pylist(), expected.column(name).to_pylist()
        if got != want:
            diffs = [(i, g, w) for i, (g, w) in enumerate(zip(got, want, strict=True)) if g != w]
            raise AssertionError(f"{collection}.{name}: {len(diffs)} rows differ, e.g. {diffs[:3]}")


def assert_all_equal(settings: Settings, server: DemoServer, *, computed_too: bool = False) -> None:
    for collection in ALL_COLLECTIONS:
        assert_table_equals_source(settings, server, collection, computed_too=computed_too)


def prepared(settings: Settings) -> Settings:
    prepare_lakehouse(settings)
    return settings
