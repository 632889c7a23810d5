"""Fixtures for the Prefect tests: one Prefect test harness per session, the demo Payload API,
and a helper that runs the real flow on the demo source with an isolated lakehouse."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import SyncPrefectClient, get_client

from flows.demo.server import DemoServer, serve_demo

ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "demo-password"


@pytest.fixture(scope="session")
def demo() -> Iterator[DemoServer]:
    server = serve_demo("small").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def client(prefect_api: str) -> Iterator[SyncPrefectClient]:
    with get_client(sync_client=True) as prefect_client:
        yield prefect_client


def pipeline_environment(demo: DemoServer, lakehouse: Path, **overrides: str) -> dict[str, str]:
    """Settings for a flow run against the demo API: fast retries, no HTTP-level retries (so a
    demo fault reaches Prefect's task retries), an isolated lakehouse."""
    return {
        "PAYLOAD_CMS_URL": demo.url,
        "PAYLOAD_EMAIL": ADMIN_EMAIL,
        "PAYLOAD_PASSWORD": ADMIN_PASSWORD,
        "PAYLOAD_MAX_RETRIES": "0",
        "PAYLOAD_BACKOFF_SECONDS": "0",
        "LAKEHOUSE_DIR": str(lakehouse),
        "LOAD_TASK_RETRIES": "2",
        "LOAD_TASK_RETRY_DELAY_SECONDS": "0.1",
        "PAYLOAD_REQUEST_CONCURRENCY": "9",
        **overrides,
    }


@pytest.fixture(scope="session")
def run_pipeline(prefect_api: str, demo: DemoServer) -> Callable[..., tuple[Any, dict[str, str]]]:
    """Run the real flow with the given env overrides; return (final state, env used)."""
    from flows.main import payload_lakehouse

    def run(
        lakehouse: Path, env: dict[str, str] | None = None, faults: str | None = None, **params: Any
    ) -> tuple[Any, dict[str, str]]:
        # This test process is long-lived and runs dlt outside flows too (as a process worker's
        # fresh flow-run subprocess never does): start each run with Prefect's plain format.
        from flows.orchestration.logs import keep_prefect_log_format

        keep_prefect_log_format()
        values = pipeline_environment(demo, lakehouse, **(env or {}))
        demo.faults = faults
        with pytest.MonkeyPatch.context() as patch:
            for name, value in values.items():
                patch.setenv(name, value)
            retries = params.pop("flow_retries", 0)
            flow = payload_lakehouse.with_options(retries=retries, retry_delay_seconds=0)
            state = flow(return_state=True, **params)
        demo.faults = None
        return state, values

    return run
