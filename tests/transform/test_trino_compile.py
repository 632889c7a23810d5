"""The `trino` target without a Trino server: dbt parses and compiles offline (incremental
models guarded), and every compiled statement is valid Trino SQL for sqlglot."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlglot
from sqlglot.errors import ParseError

from flows.settings import Settings
from flows.transform.dbt_project import dbt_environment
from tests.transform.conftest import compile_offline

pytestmark = pytest.mark.slow


def trino_parse_errors(compiled_dir: Path) -> tuple[int, list[str]]:
    files = sorted(compiled_dir.rglob("*.sql"))
    errors = []
    for path in files:
        try:
            statements = sqlglot.parse(path.read_text(), read="trino")
        except ParseError as error:
            errors.append(f"{path.relative_to(compiled_dir)}: {error}")
            continue
        if not any(statement is not None for statement in statements):
            errors.append(f"{path.relative_to(compiled_dir)}: empty")
    return len(files), errors


def test_environment_for_trino_needs_no_catalog(trino_settings: Settings) -> None:
    env = dbt_environment(trino_settings)
    assert env["DBT_TARGET"] == "trino"
    assert env["TRINO_CATALOG"] == "iceberg"
    assert env["TRINO_AUTH_METHOD"] == "jwt"
    assert env["TRINO_JWT_TOKEN"] == "not-a-real-token"
    assert not any(name.startswith("DBT_RAW_") for name in env)


def test_compiles_offline_to_valid_trino_sql(trino_compiled: Path) -> None:
    compiled = trino_compiled
    count, errors = trino_parse_errors(compiled)
    assert count >= 25 + 80  # every model and data test
    assert errors == []

    orders = (compiled / "models" / "marts" / "core" / "fact_orders.sql").read_text()
    assert '"iceberg"."ecommerce_staging"."stg_orders"' in orders
    assert "max(this_table.updated_at)" not in orders  # full-refresh branch offline
    items = (compiled / "models" / "staging" / "stg_order_items.sql").read_text()
    assert "cross join unnest(cast(json_parse(" in items
    assert '"iceberg"."ecommerce"."orders"' in items
    dim_date = (compiled / "models" / "marts" / "core" / "dim_date.sql").read_text()
    assert "format_datetime(" in dim_date and "sequence(" in dim_date


def test_incremental_branches_compile_to_valid_trino_sql(trino_settings: Settings) -> None:
    compiled = compile_offline(
        trino_settings, "--select", "marts", "--vars", "{assume_incremental: true}"
    )
    _, errors = trino_parse_errors(compiled / "models" / "marts")
    assert errors == []
    orders = (compiled / "models" / "marts" / "core" / "fact_orders.sql").read_text()
    assert "coalesce(max(this_table.updated_at)" in orders
    assert 'from "iceberg"."ecommerce_marts"."fact_orders" as this_table' in orders
    items = (compiled / "models" / "marts" / "core" / "fact_order_items.sql").read_text()
    assert "has_dangling_reference" in items and "changed_orders" in items
    # one watermark per source (orders, products, variants), never one spanning them
    for source in ("order", "product", "variant"):
        assert f"max(this_table.{source}_updated_at)" in items, source
