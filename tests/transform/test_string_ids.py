"""The marts with string ids (MongoDB ObjectIds, PostgreSQL UUIDs): the same store as the oracle
tests, relabelled by the demo generator, written as raw tables with the loader's converter,
built by the real `dbt build`; the independent oracle must match exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flows.demo.generator import generate
from flows.demo.store import Store
from flows.settings import load_settings
from flows.source.ids import IdType
from flows.transform.dbt_project import dbt_environment, open_duckdb, run_dbt
from tests.transform.raw_tables import write_raw_tables
from tests.transform.test_dbt_build import assert_marts_match_oracle

pytestmark = pytest.mark.slow


class _Lakehouse:
    """What the oracle comparison reads: the documents and the marts."""

    def __init__(self, settings: Any, store: Store) -> None:
        self.settings = settings
        self.store = store

    def documents(self) -> dict[str, list[dict[str, Any]]]:
        return {name: list(self.store.iter_docs(name)) for name in self.store.names()}

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with open_duckdb(self.settings) as connection:
            connection.execute("set TimeZone = 'UTC'")
            return connection.execute(sql).fetchall()


@pytest.mark.parametrize("id_type", [IdType.OBJECTID, IdType.UUID])
def test_marts_match_the_oracle_with_string_ids(tmp_path: Path, id_type: IdType) -> None:
    dataset = generate("small", 1, 42, id_type)
    settings = load_settings(
        lakehouse_dir=tmp_path / "lakehouse", dbt_target="local", payload_id_type=id_type
    )
    write_raw_tables(settings, dataset.collections, dataset.reference_time)
    assert dbt_environment(settings)["DBT_PAYLOAD_ID_TYPE"] == "string"
    result = run_dbt(settings, ["build"])
    statuses = {str(r.status) for r in result.result.results}
    assert statuses <= {"success", "pass"}, statuses
    lakehouse = _Lakehouse(settings, dataset.store())
    types = dict(
        lakehouse.query(
            "select column_name, data_type from information_schema.columns "
            "where table_name = 'fact_orders' and column_name in ('order_id', 'customer_id')"
        )
    )
    assert types == {"order_id": "VARCHAR", "customer_id": "VARCHAR"}
    assert_marts_match_oracle(lakehouse)  # type: ignore[arg-type]
