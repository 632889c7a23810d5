"""Test-session environment: quiet, offline-friendly Prefect and dbt, shared fixtures."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="prefect-home-"))
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
# As the entry point and the work pool set it: dlt's and our loggers reach the run logs (and the
# tests see what the UI would show).
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "dlt,flows")


# --- Demo Payload API fixtures (flows/demo) -------------------------------------------------
from collections.abc import Callable
from typing import Any

import pytest

from flows.demo.generator import Dataset, generate
from flows.demo.server import DemoServer
from flows.demo.store import Store
from flows.source.ids import IdType

DEMO_SMALL = ("small", 1, 42)
# The id type of the demo stores the end-to-end, transform and reliability tests load:
# PAYLOAD_TEST_ID_TYPE=objectid|uuid runs them against a store with string ids
# (`make test-string-ids`).
TEST_ID_TYPE = IdType(os.environ.get("PAYLOAD_TEST_ID_TYPE") or IdType.INT.value)


@pytest.fixture(scope="session")
def demo_dataset_small() -> Dataset:
    """The small preset (seed 42), ids of TEST_ID_TYPE. Documents are shared: read-only."""
    return generate(*DEMO_SMALL, TEST_ID_TYPE)


def _store_for(dataset: Dataset) -> Store:
    # A fresh Store per server: servers never see each other's changes.
    return dataset.store()


@pytest.fixture(scope="session")
def demo_server(demo_dataset_small: Dataset) -> Iterator[DemoServer]:
    """One started demo API over the small preset for the whole session. Read-only use: do
    not change its data, faults or tokens (use `make_demo_server` for that)."""
    server = DemoServer(_store_for(demo_dataset_small), seed=42, store_identity=DEMO_SMALL).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def demo_admin_token(demo_server: DemoServer) -> str:
    return demo_server.admin_token()


@pytest.fixture
def make_demo_server(
    demo_dataset_small: Dataset,
) -> Iterator[Callable[..., DemoServer]]:
    """Factory: `make_demo_server(preset="small", scale=1, seed=42, id_type=TEST_ID_TYPE,
    **DemoServer kwargs)` returns a started server with its own Store; all are stopped at
    teardown."""
    servers: list[DemoServer] = []

    def factory(
        preset: str = "small",
        scale: int = 1,
        seed: int = 42,
        id_type: IdType = TEST_ID_TYPE,
        **kwargs: Any,
    ) -> DemoServer:
        if (preset, scale, seed, id_type) == (*DEMO_SMALL, demo_dataset_small.id_type):
            dataset = demo_dataset_small
        else:
            dataset = generate(preset, scale, seed, id_type)
        kwargs.setdefault("store_identity", (preset, scale, seed))
        server = DemoServer(_store_for(dataset), seed=seed, **kwargs).start()
        servers.append(server)
        return server

    try:
        yield factory
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """One temporary Prefect server + database for the whole test session (the Prefect flow
    tests and the reliability matrix share it; it starts in ~20-30 s). Yields the API URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield str(PREFECT_API_URL.value())


# --- The production-shaped stack (deployments/stack), shared by the live tests --------------
@pytest.fixture(scope="session")
def live_stack() -> Iterator[Any]:
    """A fresh stack for this test session: S3 (moto), the Iceberg REST catalog, Trino and a
    Prefect server on PostgreSQL, on free loopback ports, state in a temporary folder (the
    download cache is the machine's, so only a cold machine downloads). Never skipped: if the
    stack cannot start, every test that needs it fails with the reason."""
    import shutil

    from deployments.stack.__main__ import down, up
    from deployments.stack.config import isolated_config
    from deployments.stack.install import StackError

    config = isolated_config("payload-lakehouse-stack-")
    stack_dir = config.dir
    try:
        try:
            timings = up(config)
        except StackError as error:
            pytest.fail(f"the live stack did not start: {error}", pytrace=False)
        print(f"\nlive stack up: {timings}")
        yield config
    finally:
        down(config)
        # `down` leaves nothing running: no service answers, no recorded process is alive.
        from deployments.stack.services import status

        left = {name: state for name, state in status(config).items() if state != "down"}
        shutil.rmtree(stack_dir, ignore_errors=True)
        assert not left, f"stack-down left services running: {left}"


# --- A real browser (Debian chromium + Playwright), shared by the browser tests ----------------
@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless chromium for the session (installed with apt-get if missing)."""
    from playwright.sync_api import sync_playwright

    from tests.browser import ensure_chromium

    executable = ensure_chromium()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox"]
        )
        try:
            yield chromium
        finally:
            chromium.close()
