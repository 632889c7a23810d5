"""What the local production-shaped stack is made of: versions, ports, folders, credentials.

Every value can be changed with a `STACK_*` environment variable (or `.env`), e.g.
`STACK_TRINO_PORT=8090 make stack-up`. The credentials are those of a throw-away local S3 server
(moto) and a local PostgreSQL with trust authentication on loopback: nothing here is a secret,
which is why the stack writes them into `.stack/stack.env` for the pipeline to read.
"""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]


class StackConfig(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="STACK_", env_file=".env", extra="ignore", case_sensitive=False
    )

    # Folders: state of this stack (configuration, data, logs, pids) and the download cache
    # shared by every clone on the machine, so a second clone never fetches Trino again.
    dir: Path = Field(default=REPO_ROOT / ".stack")
    cache_dir: Path = Field(default=Path.home() / ".cache" / "payload-lakehouse" / "stack")

    # Versions (Maven Central coordinates). Trino 476 is the last release published there.
    trino_version: str = "476"
    iceberg_rest_version: str = "1.10.1"
    java_home: Path | None = Field(
        default=None, description="A JDK >= 24 for Trino (default: JAVA_HOME or a known path)."
    )

    # Loopback ports.
    host: str = "127.0.0.1"
    s3_port: int = Field(default=9000, ge=1, le=65535)
    catalog_port: int = Field(default=8181, ge=1, le=65535)
    trino_port: int = Field(default=8080, ge=1, le=65535)
    postgres_port: int = Field(default=5433, ge=1, le=65535)
    prefect_port: int = Field(default=4200, ge=1, le=65535)

    # S3 (moto) and the warehouse on it.
    s3_access_key: str = "stack-access-key"
    s3_secret_key: str = "stack-secret-key"  # noqa: S105  # a local moto server's
    s3_region: str = "us-east-1"
    warehouse_bucket: str = "warehouse"
    results_bucket: str = "prefect-results"

    # Trino JVM heap and per-node query memory: small enough for a 2-core, 24 GB machine that
    # also runs the pipeline and the tests.
    trino_heap: str = "3G"
    trino_query_memory: str = "1500MB"

    # Prefect blocks registered on the stack's Prefect server (prefect-aws).
    aws_credentials_block: str = "stack-s3"
    results_block: str = "stack-results"

    # --- derived --------------------------------------------------------------------------
    @property
    def logs(self) -> Path:
        return self.dir / "logs"

    @property
    def run(self) -> Path:
        return self.dir / "run"

    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def etc(self) -> Path:
        return self.dir / "etc"

    @property
    def env_file(self) -> Path:
        return self.dir / "stack.env"

    def url(self, port: int) -> str:
        return f"http://{self.host}:{port}"

    @property
    def s3_url(self) -> str:
        return self.url(self.s3_port)

    @property
    def catalog_url(self) -> str:
        return self.url(self.catalog_port)

    @property
    def trino_url(self) -> str:
        return self.url(self.trino_port)

    @property
    def prefect_api_url(self) -> str:
        return self.url(self.prefect_port) + "/api"

    @property
    def warehouse(self) -> str:
        return f"s3://{self.warehouse_bucket}/lakehouse"

    @property
    def postgres_url(self) -> str:
        return f"postgresql+asyncpg://prefect@{self.host}:{self.postgres_port}/prefect"

    def pipeline_environment(self) -> dict[str, str]:
        """The pipeline's settings for this stack (flows/settings.py names): REST catalog,
        S3 warehouse, dbt on Trino, Prefect server with S3 result storage."""
        return {
            "ICEBERG_CATALOG_TYPE": "rest",
            "ICEBERG_CATALOG_URL": self.catalog_url,
            "ICEBERG_WAREHOUSE": self.warehouse,
            "S3_ENDPOINT": self.s3_url,
            "S3_REGION": self.s3_region,
            "S3_PATH_STYLE_ACCESS": "true",
            # The warehouse's S3 keys come from the prefect-aws AwsCredentials block.
            "AWS_CREDENTIALS_BLOCK": self.aws_credentials_block,
            "RESULTS_S3_BUCKET_BLOCK": self.results_block,
            "DBT_TARGET": "trino",
            "TRINO_HOST": self.host,
            "TRINO_PORT": str(self.trino_port),
            "TRINO_USER": "lakehouse",
            "TRINO_CATALOG": "iceberg",
            "PREFECT_API_URL": self.prefect_api_url,
            # Local state of the pipeline itself (dbt target path, logs) on this stack.
            "LAKEHOUSE_DIR": str(self.dir / "lakehouse"),
        }


def load_config() -> StackConfig:
    return StackConfig()


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def isolated_config(prefix: str) -> StackConfig:
    """A throw-away stack (tests, benchmarks): free loopback ports and a new folder in the
    system's temp directory (not a private 0700 one: as root, PostgreSQL runs as `postgres`,
    which must reach its data folder). The download cache stays the machine's."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o755)
    host = "127.0.0.1"
    return StackConfig(
        dir=folder,
        s3_port=_free_port(host),
        catalog_port=_free_port(host),
        trino_port=_free_port(host),
        postgres_port=_free_port(host),
        prefect_port=_free_port(host),
    )
