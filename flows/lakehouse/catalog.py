"""The Iceberg catalog from settings: embedded SQLite (default) or any Iceberg REST catalog.

- `sql`: SQLite file `LAKEHOUSE_DIR/catalog.db` (or the SQLAlchemy URL in ICEBERG_CATALOG_URL)
  and a warehouse folder `LAKEHOUSE_DIR/warehouse` (or ICEBERG_WAREHOUSE, e.g. `s3://bucket/wh`).
- `rest`: ICEBERG_CATALOG_URL + ICEBERG_WAREHOUSE, authenticated with OAuth2 client credentials
  (OIDC_CLIENT_ID/SECRET, OIDC_TOKEN_URL, OIDC_SCOPE; pyiceberg fetches and refreshes the token)
  or a static ICEBERG_TOKEN.
- S3-compatible storage: S3_ENDPOINT, keys, region, path-style addressing.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from pyiceberg.catalog import Catalog, load_catalog
from pyiceberg.exceptions import NamespaceAlreadyExistsError

from flows.lakehouse.errors import CatalogError
from flows.settings import CatalogType, Settings

log = logging.getLogger(__name__)

# One catalog object per configuration and process: opening one costs a connection / a token
# request, and pyiceberg catalogs are safe to share between threads.
_CATALOGS: dict[tuple[str, tuple[tuple[str, str], ...]], Catalog] = {}
_CACHE_LOCK = threading.Lock()


def catalog_properties(settings: Settings) -> dict[str, str]:
    """pyiceberg properties for the configured catalog (secrets included: never log these)."""
    props: dict[str, str] = {}
    if settings.iceberg_catalog_type is CatalogType.SQL:
        base = settings.lakehouse_path
        props["type"] = "sql"
        props["uri"] = settings.iceberg_catalog_url or f"sqlite:///{base / 'catalog.db'}"
        props["warehouse"] = settings.iceberg_warehouse or (base / "warehouse").as_uri()
        # SQLAlchemy + SQLite: create the catalog tables on first use.
        props["init_catalog_tables"] = "true"
    else:
        props["type"] = "rest"
        props["uri"] = settings.iceberg_catalog_url or ""
        if settings.iceberg_warehouse:
            props["warehouse"] = settings.iceberg_warehouse
        if settings.oidc_client_id and settings.oidc_client_secret is not None:
            secret = settings.oidc_client_secret.get_secret_value()
            props["credential"] = f"{settings.oidc_client_id}:{secret}"
            if settings.oidc_token_url:
                props["oauth2-server-uri"] = settings.oidc_token_url
            if settings.oidc_scope:
                props["scope"] = settings.oidc_scope
        elif settings.iceberg_token is not None:
            props["token"] = settings.iceberg_token.get_secret_value()
    if settings.s3_endpoint:
        props["s3.endpoint"] = settings.s3_endpoint
    if settings.s3_access_key_id is not None and settings.s3_secret_access_key is not None:
        props["s3.access-key-id"] = settings.s3_access_key_id.get_secret_value()
        props["s3.secret-access-key"] = settings.s3_secret_access_key.get_secret_value()
    if settings.s3_endpoint or settings.s3_access_key_id is not None:
        props["s3.region"] = settings.s3_region
        props["s3.force-virtual-addressing"] = str(not settings.s3_path_style_access).lower()
    return props


def describe_catalog(settings: Settings) -> str:
    """Where the catalog is, for error messages (no secrets)."""
    if settings.iceberg_catalog_type is CatalogType.SQL:
        where = settings.iceberg_catalog_url or str(settings.lakehouse_path / "catalog.db")
        if "@" in where:  # an SQLAlchemy URL may embed a password
            where = where.split("://", 1)[0] + "://***@" + where.rsplit("@", 1)[1]
        return f"sql catalog at {where}"
    return f"REST catalog at {settings.iceberg_catalog_url}"


def get_catalog(settings: Settings) -> Catalog:
    """Open the catalog; any failure becomes a `CatalogError` that says what to check."""
    props = catalog_properties(settings)
    if settings.iceberg_catalog_type is CatalogType.SQL and not settings.iceberg_catalog_url:
        settings.lakehouse_path.mkdir(parents=True, exist_ok=True)
        if not settings.iceberg_warehouse:
            (settings.lakehouse_path / "warehouse").mkdir(parents=True, exist_ok=True)
    key = (settings.iceberg_catalog_name, tuple(sorted(props.items())))
    with _CACHE_LOCK:
        cached = _CATALOGS.get(key)
    if cached is not None:
        return cached
    try:
        catalog = load_catalog(settings.iceberg_catalog_name, **props)
    except Exception as error:
        raise catalog_error(settings, "open", error) from error
    with _CACHE_LOCK:
        _CATALOGS[key] = catalog
    return catalog


def clear_catalog_cache() -> None:
    with _CACHE_LOCK:
        _CATALOGS.clear()


def catalog_error(settings: Settings, action: str, error: BaseException) -> CatalogError:
    hint = (
        "check ICEBERG_CATALOG_URL, ICEBERG_WAREHOUSE and the OIDC_* / ICEBERG_TOKEN credentials"
        if settings.iceberg_catalog_type is CatalogType.REST
        else "check LAKEHOUSE_DIR (writable?) or ICEBERG_CATALOG_URL / ICEBERG_WAREHOUSE"
    )
    # The exception text of HTTP/SQL clients may include URLs but not our secrets; keep its type
    # and first line only.
    first_line = str(error).splitlines()[0][:300] if str(error) else ""
    return CatalogError(
        f"could not {action} the {describe_catalog(settings)}: "
        f"{type(error).__name__}: {first_line} ({hint})"
    )


def ensure_namespace(catalog: Catalog, namespace: str) -> None:
    """Create the namespace unless it exists. Two processes creating it at once is fine: the
    loser sees NamespaceAlreadyExistsError, or on the SQL catalog an IntegrityError from the
    namespace-properties insert; either way the namespace exists afterwards."""
    try:
        catalog.create_namespace_if_not_exists(namespace)
    except NamespaceAlreadyExistsError:
        return
    except Exception:
        if (namespace,) not in {tuple(ns) for ns in catalog.list_namespaces()}:
            raise


def prepare_lakehouse(settings: Settings) -> Catalog:
    """Create the catalog (its SQLite tables) and the namespaces up front, once, before parallel
    loads start: concurrent first-time creation races on a fresh SQLite catalog."""
    catalog = get_catalog(settings)
    try:
        for namespace in (
            settings.iceberg_namespace,
            settings.iceberg_staging_namespace,
            settings.iceberg_marts_namespace,
        ):
            ensure_namespace(catalog, namespace)
    except Exception as error:
        raise catalog_error(settings, "prepare namespaces in", error) from error
    return catalog


def redacted(props: dict[str, Any]) -> dict[str, Any]:
    secret_keys = ("credential", "token", "s3.secret-access-key", "s3.access-key-id")
    return {k: ("***" if k in secret_keys else v) for k, v in props.items()}
