"""The five services of the stack, each with how it is configured, started and health-checked:

| service  | what                                   | port (default) |
|----------|----------------------------------------|----------------|
| s3       | moto in server mode (S3 API, in memory) | 9000           |
| catalog  | Apache Iceberg REST catalog server (JDBC catalog on SQLite, S3FileIO) | 8181 |
| trino    | single-node Trino, Iceberg connector on the REST catalog + S3 | 8080 |
| postgres | PostgreSQL cluster in .stack/data/postgres | 5433       |
| prefect  | Prefect server on that PostgreSQL       | 4200           |
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from deployments.stack.config import StackConfig
from deployments.stack.install import (
    StackError,
    iceberg_rest_jar,
    postgres_bin,
    trino_home,
)
from deployments.stack.processes import ManagedProcess, port_open, require_free_port, wait_until

BIN = Path(sys.executable).parent
# S3 clients (AWS SDK v2 in Trino and the REST server) send checksums moto does not expect.
AWS_CHECKSUM_FLAGS = (
    "-Daws.requestChecksumCalculation=WHEN_REQUIRED",
    "-Daws.responseChecksumValidation=WHEN_REQUIRED",
)


@dataclass(frozen=True)
class Service:
    name: str
    port_variable: str
    start_timeout: float

    def port(self, config: StackConfig) -> int:
        return int(getattr(config, self.port_variable.removeprefix("STACK_").lower()))

    def process(self, config: StackConfig) -> ManagedProcess:
        return ManagedProcess(self.name, config.run, config.logs)


S3 = Service("s3", "STACK_S3_PORT", 60)
CATALOG = Service("catalog", "STACK_CATALOG_PORT", 120)
TRINO = Service("trino", "STACK_TRINO_PORT", 300)
POSTGRES = Service("postgres", "STACK_POSTGRES_PORT", 60)
PREFECT = Service("prefect", "STACK_PREFECT_PORT", 240)
SERVICES: tuple[Service, ...] = (S3, CATALOG, TRINO, POSTGRES, PREFECT)


def base_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}


# --- health ----------------------------------------------------------------------------------


def healthy(service: Service, config: StackConfig) -> bool:
    try:
        if service is S3:
            return httpx.get(config.s3_url + "/", timeout=2).status_code == 200
        if service is CATALOG:
            return httpx.get(config.catalog_url + "/v1/config", timeout=2).status_code == 200
        if service is TRINO:
            return trino_answers(config)
        if service is POSTGRES:
            return postgres_ready(config)
        if service is PREFECT:
            response = httpx.get(config.prefect_api_url + "/health", timeout=2)
            return response.status_code == 200
    except httpx.HTTPError:
        return False
    raise ValueError(service.name)


def trino_answers(config: StackConfig) -> bool:
    """Trino has finished starting and its Iceberg catalog (REST + S3) answers a query."""
    info = httpx.get(config.trino_url + "/v1/info", timeout=2)
    if info.status_code != 200 or info.json().get("starting", True):
        return False
    import trino

    connection = trino.dbapi.connect(
        host=config.host, port=config.trino_port, user="stack", catalog="iceberg"
    )
    try:
        cursor = connection.cursor()
        cursor.execute("show schemas from iceberg")
        cursor.fetchall()
    finally:
        connection.close()
    return True


# --- s3 (moto) -------------------------------------------------------------------------------


def start_s3(config: StackConfig) -> None:
    process = S3.process(config)
    process.start(
        [str(BIN / "moto_server"), "-H", config.host, "-p", str(config.s3_port)],
        env=base_env(),
        cwd=config.dir,
    )
    wait_until(lambda: healthy(S3, config), what="S3 (moto)", timeout=60, process=process)
    # moto keeps everything in memory: a fresh S3 means the catalog's pointers are gone too.
    shutil.rmtree(config.data / "catalog", ignore_errors=True)
    create_buckets(config)


def create_buckets(config: StackConfig) -> None:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=config.s3_url,
        aws_access_key_id=config.s3_access_key,
        aws_secret_access_key=config.s3_secret_key,
        region_name=config.s3_region,
    )
    existing = {bucket["Name"] for bucket in client.list_buckets().get("Buckets", [])}
    for bucket in (config.warehouse_bucket, config.results_bucket):
        if bucket not in existing:
            client.create_bucket(Bucket=bucket)


# --- Iceberg REST catalog --------------------------------------------------------------------


def start_catalog(config: StackConfig, java_home: Path) -> ManagedProcess:
    jar = iceberg_rest_jar(config)
    database = config.data / "catalog" / "catalog.db"
    database.parent.mkdir(parents=True, exist_ok=True)
    env = base_env()
    env.update(
        {
            # RESTCatalogServer turns CATALOG_A_B__C into catalog property a.b-c.
            "CATALOG_REST_PORT": str(config.catalog_port),
            "CATALOG_URI": f"jdbc:sqlite:file:{database}",
            "CATALOG_JDBC_USER": "catalog",
            "CATALOG_JDBC_PASSWORD": "catalog",
            "CATALOG_WAREHOUSE": config.warehouse,
            "CATALOG_IO__IMPL": "org.apache.iceberg.aws.s3.S3FileIO",
            "CATALOG_S3_ENDPOINT": config.s3_url,
            "CATALOG_S3_PATH__STYLE__ACCESS": "true",
            "CATALOG_S3_ACCESS__KEY__ID": config.s3_access_key,
            "CATALOG_S3_SECRET__ACCESS__KEY": config.s3_secret_key,
            "CATALOG_CLIENT_REGION": config.s3_region,
            "AWS_REGION": config.s3_region,
        }
    )
    process = CATALOG.process(config)
    java = str(java_home / "bin" / "java")
    process.start([java, "-Xmx1G", *AWS_CHECKSUM_FLAGS, "-jar", str(jar)], env=env, cwd=config.dir)
    return process


# --- Trino -----------------------------------------------------------------------------------


def write_trino_config(config: StackConfig) -> Path:
    etc = config.etc / "trino"
    (etc / "catalog").mkdir(parents=True, exist_ok=True)
    files = {
        "node.properties": [
            "node.environment=payload_lakehouse_stack",
            "node.id=payload-lakehouse-stack",
            f"node.data-dir={config.data / 'trino'}",
        ],
        "jvm.config": [
            "-server",
            f"-Xmx{config.trino_heap}",
            "-XX:+UseG1GC",
            "-XX:G1HeapRegionSize=32M",
            "-XX:+ExplicitGCInvokesConcurrent",
            "-XX:+ExitOnOutOfMemoryError",
            "-XX:-OmitStackTraceInFastThrow",
            "-XX:ReservedCodeCacheSize=256M",
            "-Djdk.attach.allowAttachSelf=true",
            "-Djdk.nio.maxCachedBufferSize=2000000",
            "-Dfile.encoding=UTF-8",
            "-XX:+EnableDynamicAgentLoading",
            *AWS_CHECKSUM_FLAGS,
        ],
        "config.properties": [
            "coordinator=true",
            "node-scheduler.include-coordinator=true",
            f"http-server.http.port={config.trino_port}",
            f"discovery.uri={config.trino_url}",
            f"query.max-memory={config.trino_query_memory}",
            f"query.max-memory-per-node={config.trino_query_memory}",
            # One machine, two cores: fewer threads per task, no spilling to other workers.
            "task.concurrency=2",
        ],
        "log.properties": ["io.trino=INFO"],
        "catalog/iceberg.properties": [
            "connector.name=iceberg",
            "iceberg.catalog.type=rest",
            f"iceberg.rest-catalog.uri={config.catalog_url}",
            "iceberg.file-format=PARQUET",
            # dbt-trino replaces views and renames tables: both through the REST catalog.
            "iceberg.rest-catalog.view-endpoints-enabled=true",
            "fs.native-s3.enabled=true",
            f"s3.endpoint={config.s3_url}",
            f"s3.region={config.s3_region}",
            "s3.path-style-access=true",
            f"s3.aws-access-key={config.s3_access_key}",
            f"s3.aws-secret-key={config.s3_secret_key}",
        ],
    }
    for name, lines in files.items():
        (etc / name).write_text("\n".join(lines) + "\n")
    return etc


def start_trino(config: StackConfig, java_home: Path) -> ManagedProcess:
    home = trino_home(config)
    etc = write_trino_config(config)
    env = base_env()
    env.update({"JAVA_HOME": str(java_home), "PATH": f"{java_home / 'bin'}:{env['PATH']}"})
    process = TRINO.process(config)
    process.start(
        [
            str(home / "bin" / "launcher"),
            "run",
            f"--etc-dir={etc}",
            f"--data-dir={config.data / 'trino'}",
        ],
        env=env,
        cwd=config.dir,
    )
    return process


# --- PostgreSQL ------------------------------------------------------------------------------


def as_postgres_user(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run its tools as the `postgres` user."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


def _owned(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")


def postgres_ready(config: StackConfig) -> bool:
    pg_isready = postgres_bin() / "pg_isready"
    result = subprocess.run(
        [str(pg_isready), "-q", "-h", config.host, "-p", str(config.postgres_port)],
        check=False,
    )
    return result.returncode == 0


def start_postgres(config: StackConfig) -> None:
    bin_dir = postgres_bin()
    data = config.data / "postgres"
    log = POSTGRES.process(config).log_file
    log.parent.mkdir(parents=True, exist_ok=True)
    log.touch()
    _owned(log)
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, exist_ok=True)
        _owned(data)
        if (
            os.geteuid() == 0
            and subprocess.run(
                ["runuser", "-u", "postgres", "--", "test", "-w", str(data)], check=False
            ).returncode
            != 0
        ):
            raise StackError(
                f"PostgreSQL runs as user `postgres`, which cannot reach {data}: choose a "
                "STACK_DIR whose parent folders others may enter (e.g. under the repository)"
            )
        _run_checked(
            as_postgres_user(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "prefect",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--no-instructions",
                ]
            ),
            "initdb",
        )
    options = f"-c listen_addresses={config.host} -p {config.postgres_port} -k ''"
    _run_checked(
        as_postgres_user(
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(log),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ]
        ),
        "pg_ctl start",
    )
    client = ["-h", config.host, "-p", str(config.postgres_port), "-U", "prefect"]
    exists = subprocess.run(
        [
            str(bin_dir / "psql"),
            *client,
            "-d",
            "postgres",
            "-tAc",
            "select 1 from pg_database where datname='prefect'",
        ],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    if exists != "1":
        _run_checked([str(bin_dir / "createdb"), *client, "prefect"], "createdb prefect")


def stop_postgres(config: StackConfig) -> bool:
    data = config.data / "postgres"
    if not (data / "postmaster.pid").exists():
        return False
    subprocess.run(
        as_postgres_user(
            [str(postgres_bin() / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]
        ),
        capture_output=True,
        check=False,
    )
    return True


def _run_checked(command: list[str], what: str, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if result.returncode != 0:
        raise StackError(f"{what} failed: {(result.stdout + result.stderr).strip()[-800:]}")


# --- Prefect ---------------------------------------------------------------------------------


def start_prefect(config: StackConfig) -> ManagedProcess:
    home = config.data / "prefect-home"
    home.mkdir(parents=True, exist_ok=True)
    env = base_env()
    env.update(
        {
            "PREFECT_HOME": str(home),
            "PREFECT_API_DATABASE_CONNECTION_URL": config.postgres_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_API_URL": config.prefect_api_url,
            "DO_NOT_TRACK": "1",
        }
    )
    process = PREFECT.process(config)
    process.start(
        [
            str(BIN / "prefect"),
            "server",
            "start",
            "--host",
            config.host,
            "--port",
            str(config.prefect_port),
        ],
        env=env,
        cwd=config.dir,
    )
    return process


def register_blocks(config: StackConfig) -> None:
    """prefect-aws blocks on the stack's server: the warehouse's S3 credentials
    (AwsCredentials) and the bucket for task results (S3Bucket)."""
    script = (
        "import sys\n"
        "from prefect_aws import AwsCredentials, S3Bucket\n"
        "from prefect_aws.client_parameters import AwsClientParameters\n"
        "key, secret, region, endpoint, creds, results, bucket = sys.argv[1:]\n"
        "credentials = AwsCredentials(aws_access_key_id=key, aws_secret_access_key=secret,\n"
        "    region_name=region,\n"
        "    aws_client_parameters=AwsClientParameters(endpoint_url=endpoint))\n"
        "credentials.save(creds, overwrite=True)\n"
        "S3Bucket(bucket_name=bucket, credentials=credentials).save(results, overwrite=True)\n"
    )
    env = base_env()
    env["PREFECT_API_URL"] = config.prefect_api_url
    env["PREFECT_HOME"] = str(config.data / "prefect-client-home")
    _run_checked(
        [
            sys.executable,
            "-c",
            script,
            config.s3_access_key,
            config.s3_secret_key,
            config.s3_region,
            config.s3_url,
            config.aws_credentials_block,
            config.results_block,
            config.results_bucket,
        ],
        "registering the prefect-aws blocks",
        env=env,
    )


# --- up / down -------------------------------------------------------------------------------


def check_ports(config: StackConfig, services: tuple[Service, ...]) -> None:
    for service in services:
        require_free_port(config.host, service.port(config), service.name, service.port_variable)


def status(config: StackConfig) -> dict[str, str]:
    report: dict[str, str] = {}
    for service in SERVICES:
        running = (
            (config.data / "postgres" / "postmaster.pid").exists()
            if service is POSTGRES
            else service.process(config).pid() is not None
        )
        port = service.port(config)
        if healthy(service, config):
            report[service.name] = f"healthy on {config.host}:{port}"
        elif running:
            report[service.name] = f"running, not healthy yet ({config.host}:{port})"
        elif port_open(config.host, port):
            report[service.name] = f"down; port {port} is taken by another process"
        else:
            report[service.name] = "down"
    return report
