"""The dbt glue (contract D) without running dbt: environment, raw table resolution, offline
DuckDB extensions."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pytest

from flows.demo.generator import Dataset
from flows.lakehouse.catalog import get_catalog
from flows.lakehouse.errors import CatalogError
from flows.settings import COLLECTION_TABLES, Settings, load_settings
from flows.transform.dbt_project import (
    DBT_PROJECT_DIR,
    applied_environment,
    dbt_environment,
    duckdb_config,
    publish_marts,
    raw_location_variable,
)
from tests.transform.raw_tables import write_raw_tables


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(lakehouse_dir=tmp_path / "lakehouse", dbt_target="local")


def test_project_dir_holds_project_and_profiles() -> None:
    assert (DBT_PROJECT_DIR / "dbt_project.yml").is_file()
    assert (DBT_PROJECT_DIR / "profiles.yml").is_file()


def test_local_environment_points_at_current_snapshots(
    settings: Settings, demo_dataset_small: Dataset
) -> None:
    write_raw_tables(settings, demo_dataset_small.collections, demo_dataset_small.reference_time)
    env = dbt_environment(settings)

    assert env["DBT_TARGET"] == "local"
    assert env["DBT_DUCKDB_PATH"] == str(settings.lakehouse_path / "lakehouse.duckdb")
    assert env["DBT_PROFILES_DIR"] == str(DBT_PROJECT_DIR)
    assert Path(env["DBT_TARGET_PATH"]).is_relative_to(settings.lakehouse_path)
    catalog = get_catalog(settings)
    for table in COLLECTION_TABLES.values():
        location = catalog.load_table(f"ecommerce.{table}").metadata_location
        assert env[raw_location_variable(table)] == f"iceberg_scan('{location}')"

    # The relation reads in place, offline, with the wheels' extensions only.
    with duckdb.connect(":memory:", config=duckdb_config(settings)) as connection:
        relation = env["DBT_RAW_ORDERS_LOCATION"]
        count = connection.sql(f"select count(*) from {relation}")
        assert count.fetchone() == (len(demo_dataset_small.collections["orders"]),)

    # A new commit moves the location: staging views then read the newest snapshot.
    orders = demo_dataset_small.collections["orders"][:10]
    write_raw_tables(
        settings,
        {**demo_dataset_small.collections, "orders": orders},
        demo_dataset_small.reference_time,
    )
    newer = dbt_environment(settings)
    assert newer["DBT_RAW_ORDERS_LOCATION"] != env["DBT_RAW_ORDERS_LOCATION"]
    with duckdb.connect(":memory:", config=duckdb_config(settings)) as connection:
        relation = newer["DBT_RAW_ORDERS_LOCATION"]
        count = connection.sql(f"select count(*) from {relation}")
        assert count.fetchone() == (10,)


def test_missing_raw_tables_are_named(settings: Settings) -> None:
    with pytest.raises(CatalogError, match=r"ecommerce\.orders.*load every collection"):
        dbt_environment(settings)


def test_trino_environment_and_publish_copy_nothing(tmp_path: Path) -> None:
    trino = load_settings(
        lakehouse_dir=tmp_path / "lakehouse",
        dbt_target="trino",
        trino_host="trino.example.com",
        trino_port=8443,
        trino_http_scheme="https",
        trino_auth_method="ldap",
        trino_user="analyst",
        trino_password="s3cret",
    )
    env = dbt_environment(trino)
    assert env["TRINO_HOST"] == "trino.example.com"
    assert env["TRINO_PORT"] == "8443"
    assert env["TRINO_HTTP_SCHEME"] == "https"
    assert env["TRINO_AUTH_METHOD"] == "ldap"
    assert env["TRINO_PASSWORD"] == "s3cret"
    assert "DBT_DUCKDB_PATH" not in env
    # Marts already are Iceberg tables on Trino: publishing lists them (none built yet here).
    assert publish_marts(trino) == []


def test_applied_environment_restores_previous_values() -> None:
    os.environ["PAYLOAD_LAKEHOUSE_TEST_VAR"] = "before"
    os.environ.pop("PAYLOAD_LAKEHOUSE_TEST_NEW", None)
    with applied_environment(
        {"PAYLOAD_LAKEHOUSE_TEST_VAR": "during", "PAYLOAD_LAKEHOUSE_TEST_NEW": "x"}
    ):
        assert os.environ["PAYLOAD_LAKEHOUSE_TEST_VAR"] == "during"
        assert os.environ["PAYLOAD_LAKEHOUSE_TEST_NEW"] == "x"
    assert os.environ.pop("PAYLOAD_LAKEHOUSE_TEST_VAR") == "before"
    assert "PAYLOAD_LAKEHOUSE_TEST_NEW" not in os.environ
