"""All configuration in one typed object, read from the environment and `.env`.

Variable names follow the ones users of existing Payload -> Iceberg pipelines already know
(PAYLOAD_CMS_URL, ICEBERG_CATALOG_URL, OIDC_CLIENT_ID, TRINO_HOST, ...). Every variable is
documented in `.env.example`. Secrets are `SecretStr`, so they never show up in a repr or log.
Modules receive the settings (or the values they need) as arguments; only entry points call
`get_settings()`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AnyHttpUrl,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from flows.source.ids import IdType

REPO_ROOT = Path(__file__).resolve().parent.parent

# Payload collection slug -> raw Iceberg table name (lower case, as Trino/Iceberg users expect).
COLLECTION_TABLES: dict[str, str] = {
    "orders": "orders",
    "transactions": "transactions",
    "carts": "carts",
    "products": "products",
    "variants": "variants",
    "categories": "categories",
    "users": "users",
    "variantTypes": "varianttypes",
    "variantOptions": "variantoptions",
}
ALL_COLLECTIONS: tuple[str, ...] = tuple(COLLECTION_TABLES)


class CatalogType(StrEnum):
    SQL = "sql"
    REST = "rest"


class DbtTarget(StrEnum):
    LOCAL = "local"
    TRINO = "trino"


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names the variable and what is expected."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        hide_input_in_errors=True,  # never echo a bad value back: it may be a secret
    )

    # --- Source: Payload CMS ---------------------------------------------------------------
    payload_cms_url: AnyHttpUrl | None = Field(
        default=None,
        description="Base URL of the Payload CMS (e.g. https://shop.example.com). "
        "Unset: the built-in demo API is started and used.",
    )
    payload_cms_token: SecretStr | None = Field(
        default=None, description="A Payload JWT, sent as `Authorization: JWT <token>`."
    )
    payload_api_key: SecretStr | None = Field(
        default=None, description="A Payload API key, sent as `<collection> API-Key <key>`."
    )
    payload_email: str | None = Field(
        default=None, description="Login e-mail (re-login on expiry)."
    )
    payload_password: SecretStr | None = Field(default=None, description="Login password.")
    payload_auth_collection: str = Field(
        default="users", description="The auth-enabled collection used to log in / for API keys."
    )
    payload_collections: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(ALL_COLLECTIONS),
        description="Comma-separated collection slugs to load.",
    )
    payload_page_size: int = Field(default=1000, ge=1, le=10_000, description="`limit` per page.")
    payload_depth: int = Field(
        default=0,
        description=(
            "Payload `depth`: must be 0 (relationships as ids; dbt joins them). A populated "
            "relationship (depth > 0) would arrive as an object where the raw tables and the "
            "marts expect an id, so other values are refused at start."
        ),
    )
    payload_id_type: IdType = Field(
        default=IdType.INT,
        description=(
            "The store's document id type, from its database adapter: `int` (SQLite, "
            "PostgreSQL serial ids), `objectid` (MongoDB), `uuid` (PostgreSQL `idType: 'uuid'`). "
            "Ids and relationship columns are typed by it; documents with another id are "
            "rejected. Unset with the built-in demo API: DEMO_ID_TYPE."
        ),
    )
    payload_timeout_seconds: float = Field(default=30.0, gt=0, description="Per-request timeout.")
    payload_max_retries: int = Field(default=6, ge=0, le=50, description="Retries per request.")
    payload_backoff_seconds: float = Field(
        default=0.5, ge=0, description="Base of the exponential backoff between retries."
    )
    payload_max_backoff_seconds: float = Field(
        default=30.0, gt=0, description="Cap of one backoff wait (and of an honoured Retry-After)."
    )
    initial_timestamp: datetime = Field(
        default=datetime(1970, 1, 1, tzinfo=UTC),
        description="First incremental run loads documents updated at or after this instant.",
    )

    # --- Lakehouse: Apache Iceberg ---------------------------------------------------------
    lakehouse_dir: Path = Field(
        default=Path(".lakehouse"),
        description="Local folder for the embedded catalog, warehouse and DuckDB file.",
    )
    iceberg_catalog_type: CatalogType = Field(default=CatalogType.SQL)
    iceberg_catalog_name: str = Field(default="lakehouse")
    iceberg_catalog_url: str | None = Field(
        default=None,
        description="REST catalog URL (e.g. http://lakekeeper:8181/catalog) or, for `sql`, an "
        "SQLAlchemy URL (default: SQLite under LAKEHOUSE_DIR).",
    )
    iceberg_warehouse: str | None = Field(
        default=None,
        description="Warehouse name (REST) or location (sql; default: LAKEHOUSE_DIR/warehouse).",
    )
    iceberg_namespace: str = Field(default="ecommerce", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    iceberg_staging_namespace: str = Field(
        default="ecommerce_staging", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$"
    )
    iceberg_marts_namespace: str = Field(
        default="ecommerce_marts", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$"
    )
    oidc_client_id: str | None = Field(default=None, description="OAuth2 client id (REST).")
    oidc_client_secret: SecretStr | None = Field(default=None, description="OAuth2 secret.")
    oidc_token_url: str | None = Field(
        default=None, description="OAuth2 token endpoint (default: the catalog's /v1/oauth/tokens)."
    )
    oidc_scope: str | None = Field(default=None, description="OAuth2 scope, e.g. lakekeeper.")
    iceberg_token: SecretStr | None = Field(default=None, description="Static bearer token (REST).")

    # S3-compatible object storage for the warehouse (MinIO, S3, ...).
    s3_endpoint: str | None = Field(default=None, description="e.g. http://minio:9000")
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_region: str = "us-east-1"
    s3_path_style_access: bool = True
    aws_credentials_block: str | None = Field(
        default=None,
        description="Name of a prefect-aws AwsCredentials block with the warehouse's S3 keys "
        "(and endpoint), used by flow runs when S3_ACCESS_KEY_ID is not set.",
    )

    # --- Transform: dbt --------------------------------------------------------------------
    dbt_target: DbtTarget = Field(default=DbtTarget.LOCAL)
    trino_host: str = "localhost"
    trino_port: int = Field(default=8080, ge=1, le=65535)
    trino_user: str = "trino"
    trino_password: SecretStr | None = None
    trino_catalog: str = "iceberg"
    trino_http_scheme: Literal["http", "https"] = "http"
    trino_auth_method: Literal["none", "ldap", "jwt", "oauth"] = "none"
    trino_jwt_token: SecretStr | None = None

    # --- Report ----------------------------------------------------------------------------
    report_enabled: bool = Field(
        default=True, description="Render the analytics report after the marts are built."
    )
    report_dir: Path | None = Field(
        default=None, description="Folder of the analytics report (default LAKEHOUSE_DIR/report)."
    )

    # --- Demo API (the embedded source) ----------------------------------------------------
    demo_preset: Literal["small", "medium", "large"] = "small"
    demo_scale: int = Field(default=1, ge=1, le=1000)
    demo_seed: int = 42
    demo_id_type: IdType = Field(
        default=IdType.INT, description="Id type of the built-in demo API (`--id-type`)."
    )
    demo_admin_email: str = "admin@example.com"
    demo_admin_password: SecretStr = SecretStr("demo-password")

    # --- Orchestration: Prefect ------------------------------------------------------------
    payload_request_concurrency: int = Field(
        default=4, ge=1, description="Global cap of simultaneous Payload requests (Prefect tag)."
    )
    results_s3_bucket_block: str | None = Field(
        default=None, description="Name of a prefect-aws S3Bucket block for result persistence."
    )
    load_task_retries: int = Field(
        default=3, ge=0, le=20, description="Prefect retries of one collection's load task."
    )
    load_task_retry_delay_seconds: float = Field(
        default=10.0, ge=0, description="Base of the exponential backoff between task retries."
    )
    load_max_rejected_share: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="A collection load fails (commits nothing, cursor unchanged) when more than "
        "this share of the documents it read was rejected; 0 disables the ceiling.",
    )
    load_cache_minutes: float = Field(
        default=10.0,
        ge=0,
        description="How long a completed collection load is reused by a retried or new run "
        "for the same table state (Prefect cache expiration).",
    )
    load_cursor_lookback_seconds: float = Field(
        default=300.0,
        ge=0,
        description="An incremental load re-reads documents updated up to this many seconds "
        "before its cursor: Payload stamps `updatedAt` before its transaction commits, so a "
        "document can appear with a stamp behind the cursor. Re-reads are idempotent.",
    )
    load_max_delete_share: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="A reconcile or full refresh refuses (commits nothing) to delete more than "
        "this share of a table's rows, unless LOAD_FORCE_DELETES / --force-deletes; 1 disables.",
    )
    load_force_deletes: bool = Field(
        default=False, description="Allow deletions above LOAD_MAX_DELETE_SHARE (one run)."
    )
    load_fault_hook: str | None = Field(
        default=None,
        pattern=r"^(pause-before-write|kill-before-catalog-commit):[A-Za-z]+$",
        description="TEST ONLY (reliability scenarios 15-19): `<point>:<collection>`, see "
        "flows/lakehouse/fault_hook.py. Never set it in production.",
    )
    lakehouse_writer_limit: str = Field(
        default="lakehouse-writer",
        pattern=r"^[A-Za-z0-9_.:-]*$",
        description="Prefect global concurrency limit (1 slot) every run holds while it loads "
        "and builds the marts, so runs of any deployment or the CLI never write at once; "
        "created if missing. Empty = no limit (runs may overlap).",
    )
    lakehouse_writer_timeout_seconds: float = Field(
        default=6 * 3600.0,
        gt=0,
        description="How long a run waits for the lakehouse-writer slot before it fails.",
    )
    duckdb_lock_timeout_seconds: float = Field(
        default=1800.0,
        gt=0,
        description="How long a local dbt build waits for another build on the same DuckDB "
        "file (a file lock next to it) before it fails.",
    )

    @field_validator("payload_depth")
    @classmethod
    def _depth_zero(cls, value: int) -> int:
        if value != 0:
            raise ValueError(
                f"PAYLOAD_DEPTH={value} is not supported: the pipeline reads relationships as "
                "ids (depth 0) and joins them in dbt; a populated relationship (an object) "
                "cannot be stored in an id column. Unset PAYLOAD_DEPTH or set it to 0."
            )
        return value

    @field_validator("payload_collections", mode="before")
    @classmethod
    def _split_collections(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("payload_collections")
    @classmethod
    def _known_collections(cls, value: list[str]) -> list[str]:
        unknown = [c for c in value if c not in COLLECTION_TABLES]
        if unknown:
            raise ValueError(
                f"unknown collection(s) {unknown}; expected a comma-separated subset of "
                f"{', '.join(ALL_COLLECTIONS)}"
            )
        if not value:
            raise ValueError("at least one collection is required")
        return value

    @field_validator("initial_timestamp")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.iceberg_catalog_type is CatalogType.REST and not self.iceberg_catalog_url:
            raise ValueError(
                "ICEBERG_CATALOG_URL is required when ICEBERG_CATALOG_TYPE=rest "
                "(e.g. http://lakekeeper:8181/catalog)"
            )
        if bool(self.oidc_client_id) != bool(self.oidc_client_secret):
            raise ValueError("OIDC_CLIENT_ID and OIDC_CLIENT_SECRET must be set together")
        if bool(self.payload_email) != bool(self.payload_password):
            raise ValueError("PAYLOAD_EMAIL and PAYLOAD_PASSWORD must be set together")
        if bool(self.s3_access_key_id) != bool(self.s3_secret_access_key):
            raise ValueError("S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY must be set together")
        return self

    # --- Derived values ---------------------------------------------------------------------
    @property
    def uses_demo_api(self) -> bool:
        return self.payload_cms_url is None

    @property
    def lakehouse_path(self) -> Path:
        path = self.lakehouse_dir
        return path if path.is_absolute() else (Path.cwd() / path).resolve()

    @property
    def duckdb_path(self) -> Path:
        return self.lakehouse_path / "lakehouse.duckdb"

    @property
    def report_path(self) -> Path:
        """Folder of the analytics report (REPORT_DIR, default LAKEHOUSE_DIR/report)."""
        if self.report_dir is None:
            return self.lakehouse_path / "report"
        return self.report_dir if self.report_dir.is_absolute() else Path.cwd() / self.report_dir

    def table_name(self, collection: str) -> str:
        return COLLECTION_TABLES[collection]


def _explain(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        loc = [str(part) for part in item["loc"]]
        variable = loc[0].upper() if loc else "settings"
        lines.append(f"  {variable}: {item['msg']}")
    return "Invalid configuration (check your environment or .env):\n" + "\n".join(lines)


def load_settings(**overrides: object) -> Settings:
    """Build settings from env/.env plus explicit overrides; raise ConfigError on bad values."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        raise ConfigError(_explain(error)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
