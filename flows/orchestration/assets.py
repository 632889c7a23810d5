"""One name per table: the asset key prefect-dbt gives a dbt relation, used by our events too.

prefect-dbt 0.7.25 keys every dbt source, seed and model it reports as an asset
(`PrefectDbtRunner._create_asset_from_node`) by
`prefect_dbt.utilities.format_resource_id(manifest.metadata.adapter_type, node.relation_name)`:
the adapter type, `://`, then the relation name with its double quotes dropped and its dots
turned into slashes. Our relations are three-part names:

- local target (dbt-duckdb): `"<database>"."<schema>"."<table>"`, where the database is the
  DuckDB file's stem -> `duckdb://lakehouse/ecommerce/orders`;
- trino target (dbt-trino): `"<TRINO_CATALOG>"."<schema>"."<table>"` ->
  `trino://iceberg/ecommerce/orders`.

The raw tables are dbt sources in schema ICEBERG_NAMESPACE (staging/_staging__sources.yml) and
the marts are models in ICEBERG_MARTS_NAMESPACE, so calling prefect-dbt's own function with
the same relation name gives our load and publish events exactly the key of dbt's asset events,
and the lineage joins: raw table (loaded by dlt) -> staging -> marts.
"""

from __future__ import annotations

from prefect.assets import Asset, AssetProperties
from prefect_dbt.utilities import format_resource_id

from flows.settings import DbtTarget, Settings


def relation_name(settings: Settings, schema: str, table: str) -> str:
    """The relation name dbt's manifest holds for `<schema>.<table>` on the configured target."""
    if settings.dbt_target is DbtTarget.LOCAL:
        # dbt-duckdb names the database after the file (path stem) when none is configured.
        database = settings.duckdb_path.stem
    else:
        database = settings.trino_catalog
    return f'"{database}"."{schema}"."{table}"'


def adapter_type(settings: Settings) -> str:
    return "duckdb" if settings.dbt_target is DbtTarget.LOCAL else "trino"


def table_asset_key(settings: Settings, schema: str, table: str) -> str:
    """prefect-dbt's asset key for `<schema>.<table>`; `table` may be schema-qualified."""
    if "." in table:
        schema, table = table.split(".", 1)
    return format_resource_id(adapter_type(settings), relation_name(settings, schema, table))


def raw_table_key(settings: Settings, collection: str) -> str:
    return table_asset_key(settings, settings.iceberg_namespace, settings.table_name(collection))


def raw_table_asset(settings: Settings, collection: str) -> Asset:
    """The raw Iceberg table of a collection, as the asset the load task materializes."""
    table = settings.table_name(collection)
    return Asset(
        key=raw_table_key(settings, collection),
        properties=AssetProperties(
            name=f"{settings.iceberg_namespace}.{table}",
            description=f"Raw Iceberg table of the Payload collection `{collection}` "
            f"(loaded by dlt, incremental on updatedAt).",
        ),
    )
