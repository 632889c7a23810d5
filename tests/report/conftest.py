"""A lakehouse with built marts for the report tests: the small demo store loaded by the real
extract/load and built by the real dbt (DuckDB), at a pinned build instant."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.demo.generator import Dataset
from flows.demo.server import DemoServer
from flows.demo.store import Store
from flows.lakehouse.load import LoadMode, load_collection, prepare_lakehouse
from flows.settings import ALL_COLLECTIONS, Settings, load_settings
from flows.transform.dbt_project import run_dbt

BUILD_VARS = "{build_at: '2026-11-05T00:00:00Z'}"


@pytest.fixture(scope="module")
def built_marts(
    tmp_path_factory: pytest.TempPathFactory, demo_dataset_small: Dataset
) -> Iterator[Settings]:
    store = Store(demo_dataset_small.collections, demo_dataset_small.reference_time)
    server = DemoServer(store, seed=42).start()
    try:
        lakehouse: Path = tmp_path_factory.mktemp("report-lakehouse")
        settings = load_settings(
            lakehouse_dir=lakehouse,
            payload_cms_url=server.url,
            payload_email="admin@example.com",
            payload_password="demo-password",
            dbt_target="local",
        )
        prepare_lakehouse(settings)
        for collection in ALL_COLLECTIONS:
            load_collection(settings, collection, LoadMode.FULL_REFRESH)
        run_dbt(settings, ["build", "--vars", BUILD_VARS])
        yield settings
    finally:
        server.stop()
