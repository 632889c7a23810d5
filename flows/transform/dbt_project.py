"""Glue between the settings, the dbt project in `dbt/` and the lakehouse (contract D).

- `dbt_environment(settings)`: the environment variables `dbt/profiles.yml` and the sources read.
  On the local target it also installs DuckDB's iceberg/avro extensions from the
  `duckdb-extension-*` wheels (never from the internet) and resolves each raw table's *current*
  `metadata.json` from the Iceberg catalog, so staging views read the newest snapshot in place.
- `run_dbt(settings, args)`: dbt's programmatic runner with that environment (tests, benches,
  the CLI without Prefect; the Prefect flow uses prefect-dbt's runner with the same environment).
- `publish_marts(settings)`: local target: copies the marts from DuckDB into the Iceberg namespace
  ICEBERG_MARTS_NAMESPACE (one commit per table, contents replaced), so any Iceberg engine reads
  them. On Trino the marts already are Iceberg tables: nothing to publish.
- `headline_metrics(settings)`: orders, revenue and customers by segment, read from the marts.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import logging
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError
from pyiceberg.types import StringType

from flows.lakehouse.catalog import catalog_error, ensure_namespace, get_catalog
from flows.lakehouse.errors import CatalogError
from flows.settings import COLLECTION_TABLES, REPO_ROOT, DbtTarget, Settings
from flows.transform.lock import duckdb_lock

log = logging.getLogger(__name__)

DBT_PROJECT_DIR: Path = REPO_ROOT / "dbt"
RAW_TABLES: tuple[str, ...] = tuple(COLLECTION_TABLES.values())
DUCKDB_EXTENSIONS: tuple[str, ...] = ("avro", "iceberg")  # iceberg needs avro


class DbtRunError(RuntimeError):
    """A dbt command failed; the message names the command and the failing nodes."""


# --- environment ---------------------------------------------------------------------------


def raw_location_variable(table: str) -> str:
    """Env var holding the DuckDB relation of one raw table (read by the source definitions)."""
    return f"DBT_RAW_{table.upper()}_LOCATION"


def duckdb_extension_dir(settings: Settings) -> Path:
    return settings.lakehouse_path / "duckdb_extensions"


def duckdb_config(settings: Settings) -> dict[str, Any]:
    """DuckDB connection options that never download anything."""
    return {
        "extension_directory": str(duckdb_extension_dir(settings)),
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": True,
    }


def install_duckdb_extensions(settings: Settings) -> Path:
    """Install the iceberg and avro extensions from their PyPI wheels into the lakehouse's
    extension directory (idempotent, offline). DuckDB then autoloads them on use."""
    directory = duckdb_extension_dir(settings)
    version = duckdb.__version__
    with duckdb.connect(":memory:", config=duckdb_config(settings)) as connection:
        installed = {
            row[0]
            for row in connection.sql(
                "select extension_name from duckdb_extensions() where installed"
            ).fetchall()
        }
        for name in DUCKDB_EXTENSIONS:
            if name in installed:
                continue
            module = importlib.import_module(f"duckdb_extension_{name}")
            wheel_file = (
                Path(str(module.__file__)).parent
                / "extensions"
                / f"v{version}"
                / f"{name}.duckdb_extension"
            )
            if not wheel_file.exists():
                raise RuntimeError(
                    f"DuckDB extension {name} for duckdb {version} not found at {wheel_file}: "
                    f"install duckdb-extension-{name}=={version}"
                )
            connection.execute(f"INSTALL '{wheel_file}'")
    return directory


def raw_table_locations(settings: Settings) -> dict[str, str]:
    """Current metadata.json of every raw table, from the catalog (raises if one is missing)."""
    catalog = get_catalog(settings)
    locations: dict[str, str] = {}
    missing: list[str] = []
    for table in RAW_TABLES:
        identifier = f"{settings.iceberg_namespace}.{table}"
        try:
            locations[table] = catalog.load_table(identifier).metadata_location
        except NoSuchTableError:
            missing.append(identifier)
        except Exception as error:
            raise catalog_error(settings, f"load table {identifier} from", error) from error
    if missing:
        raise CatalogError(
            f"raw table(s) {', '.join(missing)} not found in the catalog: load every collection "
            "(PAYLOAD_COLLECTIONS) before running dbt"
        )
    return locations


def raw_id_type(settings: Settings) -> str:
    """`string` or `int`: the type of the raw tables' ids (the `id` column of the orders table),
    which the dbt models cast every id and relationship to (dbt/macros/payload_id.sql). Before
    the first load: PAYLOAD_ID_TYPE."""
    identifier = f"{settings.iceberg_namespace}.{COLLECTION_TABLES['orders']}"
    try:
        id_field = get_catalog(settings).load_table(identifier).schema().find_field("id")
    except (NoSuchTableError, NoSuchNamespaceError):
        return "string" if settings.payload_id_type.is_string else "int"
    except Exception as error:
        raise catalog_error(settings, f"load table {identifier} from", error) from error
    return "string" if isinstance(id_field.field_type, StringType) else "int"


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def dbt_environment(settings: Settings) -> dict[str, str]:
    """Environment variables for `dbt/profiles.yml` and the sources (contract D).

    Contains the Trino password / JWT when set: pass it to the dbt process, never log it."""
    env: dict[str, str] = {
        "DBT_TARGET": settings.dbt_target.value,
        "DBT_PROFILES_DIR": str(DBT_PROJECT_DIR),
        "DBT_PROJECT_DIR": str(DBT_PROJECT_DIR),
        # per-lakehouse dbt artifacts: two lakehouses never share a partial-parse cache
        "DBT_TARGET_PATH": str(settings.lakehouse_path / "dbt" / "target"),
        "DBT_LOG_PATH": str(settings.lakehouse_path / "dbt" / "logs"),
        "LAKEHOUSE_DIR": str(settings.lakehouse_path),
        "ICEBERG_NAMESPACE": settings.iceberg_namespace,
        "DBT_STAGING_SCHEMA": settings.iceberg_staging_namespace,
        "DBT_MARTS_SCHEMA": settings.iceberg_marts_namespace,
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "TRINO_HOST": settings.trino_host,
        "TRINO_PORT": str(settings.trino_port),
        "TRINO_USER": settings.trino_user,
        "TRINO_CATALOG": settings.trino_catalog,
        "TRINO_HTTP_SCHEME": settings.trino_http_scheme,
        "TRINO_AUTH_METHOD": settings.trino_auth_method,
        "DBT_PAYLOAD_ID_TYPE": raw_id_type(settings),
    }
    if settings.trino_password is not None:
        env["TRINO_PASSWORD"] = settings.trino_password.get_secret_value()
    if settings.trino_jwt_token is not None:
        env["TRINO_JWT_TOKEN"] = settings.trino_jwt_token.get_secret_value()
    if settings.dbt_target is DbtTarget.LOCAL:
        settings.lakehouse_path.mkdir(parents=True, exist_ok=True)
        env["DBT_DUCKDB_PATH"] = str(settings.duckdb_path)
        env["DBT_DUCKDB_EXTENSION_DIR"] = str(install_duckdb_extensions(settings))
        for table, location in raw_table_locations(settings).items():
            env[raw_location_variable(table)] = f"iceberg_scan({_sql_string(location)})"
    return env


@contextlib.contextmanager
def applied_environment(env: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of the block, then restore the old values."""
    previous = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# --- running dbt without Prefect -----------------------------------------------------------


def run_dbt(
    settings: Settings,
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    raise_on_failure: bool = True,
) -> Any:
    """Run one dbt command in-process (dbt's `dbtRunner`) with `dbt_environment(settings)`.

    Returns the `dbtRunnerResult`; raises `DbtRunError` naming the failed nodes unless
    `raise_on_failure` is false."""
    from dbt.cli.main import dbtRunner

    command = [*args, "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)]
    # One build at a time on the DuckDB file (flows/transform/lock.py); Trino has no such file.
    local = settings.dbt_target is DbtTarget.LOCAL
    with duckdb_lock(settings) if local else contextlib.nullcontext():
        # Resolved under the lock: the raw tables' current metadata, not the pre-wait one.
        environment = dict(env) if env is not None else dbt_environment(settings)
        with applied_environment(environment):
            try:
                result = dbtRunner().invoke(command)
            finally:
                release_dbt_duckdb()
    if raise_on_failure and not result.success:
        raise DbtRunError(f"dbt {' '.join(args)} failed: {_failure_summary(result)}")
    return result


def _failure_summary(result: Any) -> str:
    if result.exception is not None:
        return f"{type(result.exception).__name__}: {result.exception}"
    failed = []
    for node_result in getattr(result.result, "results", None) or []:
        status = str(getattr(node_result, "status", ""))
        if status.lower() in {"error", "fail", "runtime error"}:
            name = getattr(getattr(node_result, "node", None), "unique_id", "?")
            message = (getattr(node_result, "message", "") or "").splitlines()[:1]
            failed.append(f"{name} ({status}{': ' + message[0] if message else ''})")
    return "; ".join(failed) or "see the dbt log"


# --- publishing marts to Iceberg -----------------------------------------------------------


def release_dbt_duckdb() -> None:
    """Drop the DuckDB database dbt-duckdb keeps open in this process after an in-process run
    (dbtRunner, prefect-dbt), so the file can be opened again with another configuration."""
    connections = sys.modules.get("dbt.adapters.duckdb.connections")
    if connections is not None:
        connections.DuckDBConnectionManager.close_all_connections()
        gc.collect()


def open_duckdb(settings: Settings) -> duckdb.DuckDBPyConnection:
    if not settings.duckdb_path.exists():
        raise FileNotFoundError(
            f"DuckDB file {settings.duckdb_path} does not exist: run `dbt build` first"
        )
    release_dbt_duckdb()
    try:
        return duckdb.connect(
            str(settings.duckdb_path), read_only=True, config=duckdb_config(settings)
        )
    except duckdb.ConnectionException:
        # Still open in this process (e.g. held by a live dbt adapter): share that instance,
        # which needs the very configuration dbt-duckdb opened it with.
        return duckdb.connect(
            str(settings.duckdb_path), read_only=False, config=duckdb_config(settings)
        )


def seed_names() -> set[str]:
    """The dbt seeds (lookup tables such as `rfm_segments`): they live in the marts schema but
    are inputs of the marts, not marts."""
    return {path.stem for path in (DBT_PROJECT_DIR / "seeds").glob("*.csv")}


def mart_tables(connection: duckdb.DuckDBPyConnection, schema: str) -> list[str]:
    """The mart tables dbt built in `schema` (seeds excluded)."""
    seeds = seed_names()
    rows = connection.execute(
        "select table_name from information_schema.tables "
        "where table_schema = ? and table_type = 'BASE TABLE' order by table_name",
        [schema],
    ).fetchall()
    return [row[0] for row in rows if row[0] not in seeds]


def _iceberg_friendly(table: pa.Table) -> pa.Table:
    """Arrow types pyiceberg writes: plain strings, microsecond timestamps."""
    fields = []
    for field in table.schema:
        data_type = field.type
        if pa.types.is_string_view(data_type) or pa.types.is_large_string(data_type):
            data_type = pa.string()
        elif pa.types.is_timestamp(data_type) and data_type.unit != "us":
            data_type = pa.timestamp("us", tz=data_type.tz)
        fields.append(pa.field(field.name, data_type, nullable=True))
    return table.cast(pa.schema(fields))


def publish_marts(settings: Settings) -> list[str]:
    """Copy every mart table from the DuckDB file into the Iceberg namespace
    ICEBERG_MARTS_NAMESPACE: one commit per table, replacing its contents (schema evolved by
    name). Returns the Iceberg identifiers. Trino target: dbt-trino built the marts as Iceberg
    tables in that namespace already; nothing is copied, the identifiers are listed."""
    namespace = settings.iceberg_marts_namespace
    catalog = get_catalog(settings)
    if settings.dbt_target is not DbtTarget.LOCAL:
        try:
            listed = catalog.list_tables(namespace)
        except NoSuchNamespaceError:
            return []  # dbt has not built the marts yet
        except Exception as error:
            raise catalog_error(settings, f"list the marts in {namespace} of", error) from error
        return sorted(".".join(identifier) for identifier in listed)
    ensure_namespace(catalog, namespace)
    published: list[str] = []
    with open_duckdb(settings) as connection:
        for table_name in mart_tables(connection, namespace):
            data = _iceberg_friendly(
                # identifiers: a validated setting and names read from information_schema
                connection.sql(f'select * from "{namespace}"."{table_name}"').to_arrow_table()  # noqa: S608
            )
            identifier = f"{namespace}.{table_name}"
            _replace_table(catalog, identifier, data)
            published.append(identifier)
    log.info("published %d marts to Iceberg namespace %s", len(published), namespace)
    return published


def _replace_table(catalog: Any, identifier: str, data: pa.Table) -> None:
    try:
        table = catalog.load_table(identifier)
    except NoSuchTableError:
        table = catalog.create_table(identifier, schema=data.schema)
        table.append(data)  # one commit
        return
    try:
        with table.transaction() as transaction:  # schema change + overwrite: one commit
            with transaction.update_schema() as update:
                update.union_by_name(data.schema)
            transaction.overwrite(data)
    except ValueError:
        # An incompatible type change (e.g. a column turned from number to text): the mart is
        # derived data, so recreate it rather than fail.
        catalog.drop_table(identifier)
        catalog.create_table(identifier, schema=data.schema).append(data)


# --- headline metrics ----------------------------------------------------------------------


def headline_metrics(settings: Settings) -> dict[str, Any]:
    """Orders, revenue (USD) and customers by segment from the marts, JSON-serialisable."""
    schema = settings.iceberg_marts_namespace  # validated identifier (pattern in Settings)
    queries = {
        "orders": f"""
            select
                count(*),
                sum(case when is_revenue_bearing then 1 else 0 end),
                sum(case when is_revenue_bearing then amount_usd else 0 end),
                min(order_date),
                max(order_date)
            from {schema}.fact_orders""",  # noqa: S608
        "customers": f"""
            select
                count(*),
                sum(case when orders_placed > 0 then 1 else 0 end),
                sum(case when total_orders > 0 then 1 else 0 end)
            from {schema}.dim_customers""",  # noqa: S608
        "segments": f"""
            select customer_segment, count(*)
            from {schema}.dim_customers
            where customer_segment is not null
            group by 1
            order by 2 desc, 1""",  # noqa: S608
    }
    with _metrics_cursor(settings) as run:
        orders_row = run(queries["orders"])[0]
        customers_row = run(queries["customers"])[0]
        segment_rows = run(queries["segments"])
    revenue = orders_row[2] if orders_row[2] is not None else Decimal(0)
    return {
        "orders": int(orders_row[0] or 0),
        "revenue_orders": int(orders_row[1] or 0),
        "revenue_usd": float(Decimal(revenue).quantize(Decimal("0.01"))),
        "first_order_date": str(orders_row[3]) if orders_row[3] is not None else None,
        "last_order_date": str(orders_row[4]) if orders_row[4] is not None else None,
        "customers": int(customers_row[0] or 0),
        "customers_with_orders": int(customers_row[1] or 0),  # any status: = segmented
        "customers_with_revenue": int(customers_row[2] or 0),
        "customers_by_segment": {str(name): int(count) for name, count in segment_rows},
    }


@contextlib.contextmanager
def _metrics_cursor(settings: Settings) -> Iterator[Any]:
    if settings.dbt_target is DbtTarget.LOCAL:
        with open_duckdb(settings) as connection:
            yield lambda sql: connection.execute(sql).fetchall()
        return
    connection = trino_connection(settings)
    try:
        cursor = connection.cursor()

        def run(sql: str) -> list[Any]:
            cursor.execute(sql)
            return list(cursor.fetchall())

        yield run
    finally:
        connection.close()


def trino_connection(settings: Settings) -> Any:
    """A Trino DB-API connection from the TRINO_* settings (auth none / ldap / jwt / oauth)."""
    import trino

    auth: Any = None
    if settings.trino_auth_method == "ldap":
        password = settings.trino_password.get_secret_value() if settings.trino_password else ""
        auth = trino.auth.BasicAuthentication(settings.trino_user, password)
    elif settings.trino_auth_method == "jwt":
        token = settings.trino_jwt_token.get_secret_value() if settings.trino_jwt_token else ""
        auth = trino.auth.JWTAuthentication(token)
    elif settings.trino_auth_method == "oauth":
        auth = trino.auth.OAuth2Authentication()
    return trino.dbapi.connect(
        host=settings.trino_host,
        port=settings.trino_port,
        user=settings.trino_user,
        catalog=settings.trino_catalog,
        http_scheme=settings.trino_http_scheme,
        auth=auth,
    )
