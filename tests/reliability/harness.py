"""One reliability scenario: a demo Payload API, a fresh lakehouse, the real flow, and everything
the run printed, logged or stored in Prefect, so it can be searched for secrets afterwards.

The flow runs either in-process (`flows.main.payload_lakehouse`, against the session's Prefect
test harness) or as the real command line `python flows/main.py` in a subprocess (SIGKILL and
concurrency scenarios), pointed at the same Prefect API so its runs, logs and artifacts can be
read back too.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import pytest
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterStartTime,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.logging.handlers import APILogHandler
from prefect.settings import PREFECT_API_URL
from pyiceberg.catalog import Catalog

from flows.demo.server import DemoServer
from flows.demo.store import Document
from flows.lakehouse.catalog import clear_catalog_cache, get_catalog
from flows.settings import REPO_ROOT, Settings, load_settings

from .support import (
    TALLY,
    SecretScanner,
    assert_marts_invariants,
    assert_raw_equals_store,
    computed_values,
    store_snapshot,
)

# Distinctive fake secrets: if any of them shows up in a log line, an artifact or an exception
# text, the scan finds it. The Payload password is the demo server's real admin password.
ADMIN_EMAIL = "admin@example.com"
PAYLOAD_PASSWORD = "pw-RELIABILITY-payload-4f9c2e71"
PAYLOAD_API_KEY = "apikey-RELIABILITY-payload-8b1d5a03"
OIDC_CLIENT_SECRET = "oidc-RELIABILITY-secret-2c7e9f44"
S3_ACCESS_KEY_ID = "AKIARELIABILITY7Q2W"
S3_SECRET_ACCESS_KEY = "s3-RELIABILITY-secret-key-9d3f1b6a"
TRINO_PASSWORD = "trino-RELIABILITY-pw-5e8a0c27"

# Every variable the settings read that a developer's shell might carry into the test: cleared,
# so each scenario sees only what it sets.
SETTINGS_VARIABLES = (
    "PAYLOAD_CMS_URL",
    "PAYLOAD_ID_TYPE",
    "DEMO_ID_TYPE",
    "PAYLOAD_CMS_TOKEN",
    "PAYLOAD_API_KEY",
    "PAYLOAD_EMAIL",
    "PAYLOAD_PASSWORD",
    "PAYLOAD_COLLECTIONS",
    "PAYLOAD_PAGE_CONCURRENCY",
    "INITIAL_TIMESTAMP",
    "ICEBERG_CATALOG_TYPE",
    "ICEBERG_CATALOG_URL",
    "ICEBERG_WAREHOUSE",
    "ICEBERG_TOKEN",
    "OIDC_TOKEN_URL",
    "OIDC_SCOPE",
    "S3_ENDPOINT",
    "RESULTS_S3_BUCKET_BLOCK",
    "DBT_TARGET",
    "TRINO_JWT_TOKEN",
    "DEMO_PRESET",
    "DEMO_SCALE",
)


def child_environment(base: Mapping[str, str]) -> dict[str, str]:
    """A subprocess environment that compiles imports once into a shared bytecode cache (the
    environment may set PYTHONDONTWRITEBYTECODE, which makes every child recompile the stack)."""
    env = {k: v for k, v in base.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "payload-lakehouse-pycache")
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class CliRun:
    command: list[str]
    process: subprocess.Popen[str]
    log_path: Path
    started: float = field(default_factory=time.monotonic)

    def wait(self, timeout: float = 600) -> int:
        return self.process.wait(timeout=timeout)

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class Scenario:
    """The state of one scenario; built by the `scenario` fixture."""

    server: DemoServer
    lakehouse: Path
    client: SyncPrefectClient
    monkeypatch: pytest.MonkeyPatch
    workdir: Path
    scanner: SecretScanner = field(default_factory=SecretScanner)
    env: dict[str, str] = field(default_factory=dict)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    flow_run_ids: list[UUID] = field(default_factory=list)
    exception_texts: list[str] = field(default_factory=list)
    cli_runs: list[CliRun] = field(default_factory=list)
    documents_compared: int = 0

    def __post_init__(self) -> None:
        self.env = {
            "PAYLOAD_CMS_URL": self.server.url,
            "PAYLOAD_ID_TYPE": self.server.store.id_type.value,
            "PAYLOAD_EMAIL": ADMIN_EMAIL,
            "PAYLOAD_PASSWORD": PAYLOAD_PASSWORD,
            "LAKEHOUSE_DIR": str(self.lakehouse),
            # several pages per collection, so faults and drift land mid-read
            "PAYLOAD_PAGE_SIZE": "100",
            "PAYLOAD_MAX_RETRIES": "8",
            "PAYLOAD_BACKOFF_SECONDS": "0.05",
            "PAYLOAD_MAX_BACKOFF_SECONDS": "2",
            "PAYLOAD_TIMEOUT_SECONDS": "10",
            "LOAD_TASK_RETRIES": "2",
            "LOAD_TASK_RETRY_DELAY_SECONDS": "0.2",
            "PAYLOAD_REQUEST_CONCURRENCY": "9",
            # a scenario never waits hours for another run's writer slot
            "LAKEHOUSE_WRITER_TIMEOUT_SECONDS": "600",
            # present but unused by the embedded catalog: they must never be printed either
            "OIDC_CLIENT_ID": "reliability-client",
            "OIDC_CLIENT_SECRET": OIDC_CLIENT_SECRET,
            "S3_ACCESS_KEY_ID": S3_ACCESS_KEY_ID,
            "S3_SECRET_ACCESS_KEY": S3_SECRET_ACCESS_KEY,
            "TRINO_PASSWORD": TRINO_PASSWORD,
        }
        self.scanner.add(
            PAYLOAD_PASSWORD,
            PAYLOAD_API_KEY,
            OIDC_CLIENT_SECRET,
            S3_ACCESS_KEY_ID,
            S3_SECRET_ACCESS_KEY,
            TRINO_PASSWORD,
        )
        for name in SETTINGS_VARIABLES:
            self.monkeypatch.delenv(name, raising=False)
        self.apply_env()

    # --- configuration ------------------------------------------------------------------------
    def apply_env(self, **overrides: str | None) -> None:
        """Set (or with None, remove) settings variables for the following runs."""
        for name, value in overrides.items():
            if value is None:
                self.env.pop(name, None)
            else:
                self.env[name] = value
        for name in (*SETTINGS_VARIABLES, *self.env):
            if name in self.env:
                self.monkeypatch.setenv(name, self.env[name])
            else:
                self.monkeypatch.delenv(name, raising=False)

    def settings(self) -> Settings:
        return load_settings(lakehouse_dir=self.lakehouse)

    def catalog(self) -> Catalog:
        clear_catalog_cache()
        return get_catalog(self.settings())

    def set_faults(self, spec: str | None) -> None:
        self.server.faults = spec

    # --- running the flow -------------------------------------------------------------------
    def run_flow(self, **params: Any) -> Any:
        """The real parent flow, in-process; returns its final state (never raises)."""
        from flows.main import payload_lakehouse

        params.setdefault("run_dbt", False)
        clear_catalog_cache()
        state = payload_lakehouse(return_state=True, **params)
        self.flow_run_ids.append(UUID(str(state.state_details.flow_run_id)))
        if not state.is_completed():
            self.exception_texts.append(exception_text(state))
        return state

    def start_cli(self, *args: str, name: str = "cli", **env: str) -> CliRun:
        """`python flows/main.py ARGS` in a subprocess, on the session's Prefect API."""
        command = [sys.executable, str(REPO_ROOT / "flows" / "main.py"), *args]
        child_env = child_environment({**os.environ, **self.env, **env})
        child_env["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
        log_path = self.workdir / f"{name}-{len(self.cli_runs)}.log"
        handle = log_path.open("w")
        process = subprocess.Popen(
            command,
            cwd=self.workdir,
            env=child_env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        handle.close()
        run = CliRun(command, process, log_path)
        self.cli_runs.append(run)
        return run

    # --- checks -----------------------------------------------------------------------------
    def documents(self) -> dict[str, list[Document]]:
        return store_snapshot(self.server.store)

    def assert_raw_equals_source(
        self,
        documents: Mapping[str, list[Document]] | None = None,
        *,
        computed: bool = False,
        rejected: Mapping[str, set[int]] | None = None,
    ) -> int:
        """Every raw table equals the demo store (faults and drift must be off)."""
        self.set_faults(None)
        docs = dict(documents) if documents is not None else self.documents()
        computed_fields = {c: computed_values(self.server, c) for c in docs} if computed else None
        count = assert_raw_equals_store(
            self.catalog(),
            self.settings().iceberg_namespace,
            docs,
            computed=computed_fields,
            rejected=rejected,
        )
        self.documents_compared += count
        return count

    def assert_marts(self, documents: Mapping[str, list[Document]] | None = None) -> dict[str, Any]:
        settings = self.settings()
        return assert_marts_invariants(
            self.catalog(), settings.iceberg_marts_namespace, documents or self.documents()
        )

    def captured_texts(self, logs: LogCapture) -> dict[str, str]:
        """Everything the scenario produced: log records (with tracebacks), subprocess output,
        the failed states' exceptions, and the Prefect runs' logs, state messages, artifacts
        and parameters read back through the API."""
        APILogHandler().flush()
        texts: dict[str, str] = {"log records": logs.text()}
        for index, text in enumerate(self.exception_texts):
            texts[f"exception {index}"] = text
        for run in self.cli_runs:
            texts[f"subprocess {run.log_path.name}"] = run.output
        texts.update(self.prefect_texts())
        return texts

    def prefect_texts(self) -> dict[str, str]:
        runs = self.client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                start_time=FlowRunFilterStartTime(after_=self.started_at)  # type: ignore[arg-type]
            ),
            limit=200,
        )
        ids = sorted({*self.flow_run_ids, *(run.id for run in runs)}, key=str)
        texts: dict[str, str] = {}
        if not ids:
            return texts
        flow_runs = self.client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)), limit=200
        )
        texts["prefect flow runs"] = "\n".join(
            f"{run.name} {run.state.message if run.state else ''} "
            + orjson.dumps(run.parameters, default=str).decode()
            for run in flow_runs
        )
        task_runs = self.client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)), limit=200
        )
        texts["prefect task runs"] = "\n".join(
            f"{run.name} {run.state.message if run.state else ''}" for run in task_runs
        )
        logs: list[str] = []
        offset = 0
        while True:
            page = self.client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)),
                limit=200,
                offset=offset,
            )
            logs += [f"{entry.name} {entry.message}" for entry in page]
            if len(page) < 200:
                break
            offset += 200
        texts["prefect logs"] = "\n".join(logs)
        artifacts = self.client.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids))
        )
        texts["prefect artifacts"] = "\n".join(
            f"{a.key} {a.description or ''} "
            + (a.data if isinstance(a.data, str) else orjson.dumps(a.data, default=str).decode())
            for a in artifacts
        )
        return texts

    def assert_no_secrets(self, logs: LogCapture) -> dict[str, int]:
        texts = self.captured_texts(logs)
        assert logs.records, "no log record was captured: the scan would be vacuous"
        searched = self.scanner.assert_clean(texts)
        assert texts["prefect logs"], "no Prefect log was read back: the scan would be vacuous"
        assert texts["prefect artifacts"], "no Prefect artifact was read back"
        return {"characters": searched, "sources": len(texts)}


class LogCapture(logging.Handler):
    """Every log record of the process while installed: on the root logger and on the loggers
    that may not propagate to it (Prefect's), with `flows` and `dlt` lowered to INFO."""

    LOGGERS = ("", "prefect", "flows", "dlt")

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._seen: set[int] = set()
        self._levels: dict[str, int] = {}
        self.formatter_ = logging.Formatter("%(name)s %(levelname)s %(message)s")

    def emit(self, record: logging.LogRecord) -> None:
        if id(record) not in self._seen:
            self._seen.add(id(record))
            self.records.append(record)

    def install(self) -> LogCapture:
        for name in self.LOGGERS:
            logger = logging.getLogger(name)
            logger.addHandler(self)
            self._levels[name] = logger.level
            if name in ("flows", "dlt") or logger.level > logging.INFO:
                logger.setLevel(logging.INFO)
        return self

    def uninstall(self) -> None:
        for name in self.LOGGERS:
            logger = logging.getLogger(name)
            logger.removeHandler(self)
            logger.setLevel(self._levels.get(name, logging.NOTSET))

    def messages(self) -> list[str]:
        return [record.getMessage() for record in list(self.records)]

    def text(self) -> str:
        # format() includes the traceback of records logged with an exception
        return "\n".join(self.formatter_.format(record) for record in list(self.records))


def exception_text(state: Any) -> str:
    """The failed state's message and its exception with the full traceback."""
    try:
        state.result(raise_on_failure=True)
    except BaseException as error:
        return (state.message or "") + "\n" + "".join(traceback.format_exception(error))
    return state.message or ""


def failure_message(state: Any) -> str:
    try:
        state.result(raise_on_failure=True)
    except BaseException as error:
        return f"{type(error).__name__}: {error}"
    return ""


@contextmanager
def background(target: Any, *args: Any) -> Iterator[None]:
    """Run `target(stop_event, *args)` in a thread for the duration of the block."""
    import threading

    stop = threading.Event()
    thread = threading.Thread(target=target, args=(stop, *args), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)


__all__ = ["TALLY", "LogCapture", "Scenario", "background", "exception_text", "failure_message"]
