"""What the analytics report shows, as SQL over the marts, read through dbt's own engine.

The queries use only SQL that DuckDB (local target) and Trino (production) both accept, so the
report reads the very tables dbt built: `{marts}.fact_orders` and friends, never a copy. Each
dataset is a list of plain dicts (column -> value), ready for the charts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from flows.settings import DbtTarget, Settings

Rows = list[dict[str, Any]]
Query = Callable[[str], Rows]

# One entry per dataset: name -> SQL template ({marts} is the validated marts schema).
QUERIES: dict[str, str] = {
    "headline": """
        select
            count(*) as orders,
            sum(case when is_revenue_bearing then 1 else 0 end) as revenue_orders,
            sum(case when is_revenue_bearing then amount_usd else 0 end) as revenue_usd,
            count(distinct case when is_revenue_bearing then customer_id end) as customers,
            min(order_date) as first_order_date,
            max(order_date) as last_order_date
        from {marts}.fact_orders""",
    "monthly": """
        select
            date_trunc('month', order_date) as month,
            case when is_revenue_bearing then 'revenue-bearing'
                 when status in ('cancelled', 'refunded') then 'cancelled or refunded'
                 else 'other' end as kind,
            count(*) as orders,
            sum(amount_usd) as amount_usd
        from {marts}.fact_orders
        group by 1, 2
        order by 1, 2""",
    "cohorts": """
        select
            cohort_month,
            months_since_first_order,
            cohort_size,
            active_customers,
            retention_rate
        from {marts}.cohort_retention
        order by 1, 2""",
    "segments": """
        select
            rfm_segment as segment,
            count(*) as customers,
            avg(cast(recency_days as double)) as avg_recency_days,
            avg(cast(frequency as double)) as avg_frequency,
            sum(monetary_usd) as revenue_usd
        from {marts}.customer_rfm
        group by 1
        order by 5 desc, 1""",
    "top_products": """
        select
            coalesce(products.product_name, 'Unknown product') as product,
            sum(items.line_total_usd) as revenue_usd,
            sum(items.quantity) as units
        from {marts}.fact_order_items as items
        left join {marts}.dim_products as products on items.product_id = products.product_id
        where items.is_revenue_bearing
        group by 1
        order by 2 desc, 1
        limit 10""",
    "top_categories": """
        select
            coalesce(categories.category_name, 'Uncategorised') as category,
            sum(items.line_total_usd) as revenue_usd
        from {marts}.fact_order_items as items
        left join {marts}.bridge_product_categories as bridge
            on items.product_id = bridge.product_id and bridge.is_primary_category
        left join {marts}.dim_categories as categories
            on bridge.category_id = categories.category_id
        where items.is_revenue_bearing
        group by 1
        order by 2 desc, 1
        limit 10""",
    "payments": """
        select
            coalesce(payment_method, 'unknown') as payment_method,
            coalesce(status, 'unknown') as status,
            count(*) as transactions,
            sum(amount_usd) as amount_usd
        from {marts}.fact_transactions
        group by 1, 2
        order by 1, 2""",
    "carts": """
        select
            date_trunc('month', cart_date) as month,
            count(*) as carts,
            sum(case when status = 'abandoned' then 1 else 0 end) as abandoned
        from {marts}.fact_carts
        group by 1
        order by 1""",
}


@dataclass(frozen=True)
class ReportData:
    """Everything one report shows; `loaded_at` is the newest raw-table commit."""

    datasets: dict[str, Rows]
    engine: str
    loaded_at: datetime | None
    generated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __getitem__(self, name: str) -> Rows:
        return self.datasets[name]

    @property
    def has_orders(self) -> bool:
        return bool(self.datasets["headline"] and self.datasets["headline"][0]["orders"])


def plain(value: Any) -> Any:
    """JSON-friendly scalars: Decimal -> float, dates -> ISO strings (Vega-Lite parses them)."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return (
            value.date().isoformat() if value.time() == datetime.min.time() else value.isoformat()
        )
    if isinstance(value, date):
        return value.isoformat()
    return value


@contextlib.contextmanager
def marts_query(settings: Settings) -> Iterator[Query]:
    """A `query(sql) -> rows` on the engine dbt built the marts with (DuckDB or Trino)."""
    if settings.dbt_target is DbtTarget.LOCAL:
        from flows.transform.dbt_project import open_duckdb

        with open_duckdb(settings) as connection:
            yield lambda sql: _rows(connection.execute(sql))
        return
    from flows.transform.dbt_project import trino_connection

    connection = trino_connection(settings)
    try:
        cursor = connection.cursor()

        def query(sql: str) -> Rows:
            cursor.execute(sql)
            return _rows(cursor)

        yield query
    finally:
        connection.close()


def _rows(cursor: Any) -> Rows:
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, map(plain, row), strict=True)) for row in cursor.fetchall()]


def last_loaded_at(settings: Settings) -> datetime | None:
    """When the raw layer last changed: the newest current snapshot among the raw tables."""
    from flows.lakehouse.catalog import get_catalog
    from flows.lakehouse.load import table_identifier
    from flows.lakehouse.writer import load_table

    catalog = get_catalog(settings)
    stamps = []
    for collection in settings.payload_collections:
        table = load_table(catalog, table_identifier(settings, collection))
        snapshot = table.current_snapshot() if table is not None else None
        if snapshot is not None:
            stamps.append(snapshot.timestamp_ms)
    return datetime.fromtimestamp(max(stamps) / 1000, UTC) if stamps else None


def read_report_data(settings: Settings) -> ReportData:
    """Run every report query on the marts (one connection) and note when data was loaded."""
    schema = settings.iceberg_marts_namespace  # validated identifier (pattern in Settings)
    with marts_query(settings) as query:
        datasets = {name: query(sql.format(marts=schema)) for name, sql in QUERIES.items()}
    engine = "DuckDB" if settings.dbt_target is DbtTarget.LOCAL else "Trino"
    return ReportData(datasets=datasets, engine=engine, loaded_at=last_loaded_at(settings))
