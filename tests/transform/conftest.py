"""Fixtures for the dbt tests: a lakehouse loaded by the REAL extract/load from the demo API."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flows.demo.generator import Dataset
from flows.demo.server import DemoServer
from flows.demo.store import Store
from flows.lakehouse.load import LoadMode, LoadReport, load_collection, prepare_lakehouse
from flows.settings import ALL_COLLECTIONS, Settings, load_settings
from flows.transform.dbt_project import dbt_environment, open_duckdb, run_dbt

COMPILED = Path("compiled") / "payload_lakehouse"


@dataclass
class Lakehouse:
    settings: Settings
    server: DemoServer
    store: Store

    def load(self, mode: LoadMode) -> list[LoadReport]:
        return [load_collection(self.settings, c, mode) for c in ALL_COLLECTIONS]

    def documents(self) -> dict[str, list[dict[str, Any]]]:
        """The store's current documents (what the API serves)."""
        return {name: list(self.store.iter_docs(name)) for name in self.store.names()}

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with open_duckdb(self.settings) as connection:
            connection.execute("set TimeZone = 'UTC'")
            return connection.execute(sql).fetchall()


def demo_settings(lakehouse_dir: Path, server: DemoServer) -> Settings:
    return load_settings(
        lakehouse_dir=lakehouse_dir,
        payload_cms_url=server.url,
        payload_email="admin@example.com",
        payload_password="demo-password",
        dbt_target="local",
        payload_id_type=server.store.id_type,
    )


@pytest.fixture(scope="module")
def loaded_lakehouse(
    tmp_path_factory: pytest.TempPathFactory, demo_dataset_small: Dataset
) -> Iterator[Lakehouse]:
    """Small demo store (plus one customer who never ordered) served over HTTP (own Store:
    tests may change it), fully loaded into a fresh local lakehouse by flows.lakehouse.load."""
    store = demo_dataset_small.store()
    # The generator gives every customer an order; add a sign-up who never ordered, the one
    # kind of customer that must end up without a segment.
    store.create(
        "users",
        {
            "name": "Never Ordered",
            "roles": ["customer"],
            "email": "never.ordered@example.com",
            "collection": "users",
            "sessions": [],
        },
    )
    server = DemoServer(store, seed=42).start()
    try:
        settings = demo_settings(tmp_path_factory.mktemp("lakehouse"), server)
        prepare_lakehouse(settings)
        lakehouse = Lakehouse(settings, server, store)
        lakehouse.load(LoadMode.FULL_REFRESH)
        yield lakehouse
    finally:
        server.stop()


def compile_offline(settings: Settings, *extra: str) -> Path:
    """`dbt compile` with no warehouse connection; returns the compiled SQL folder."""
    env = dbt_environment(settings)
    run_dbt(settings, ["compile", "--no-populate-cache", "--no-introspect", *extra], env=env)
    return Path(env["DBT_TARGET_PATH"]) / COMPILED


@pytest.fixture(scope="session")
def trino_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return load_settings(
        lakehouse_dir=tmp_path_factory.mktemp("trino"),
        dbt_target="trino",
        trino_host="trino.invalid",  # nothing may connect
        trino_auth_method="jwt",
        trino_jwt_token="not-a-real-token",
        # No raw tables here: the compiled casts follow the tests' demo store id type.
        payload_id_type=os.environ.get("PAYLOAD_TEST_ID_TYPE") or "int",
    )


@pytest.fixture(scope="session")
def trino_compiled(trino_settings: Settings) -> Path:
    """The project compiled offline for the trino target (full-refresh branches)."""
    return compile_offline(trino_settings)
