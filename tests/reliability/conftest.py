"""Fixtures of the reliability matrix, and its one-line summary at the end of the test output."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

from flows.demo.server import DemoServer
from flows.source.ids import IdType

from .harness import ADMIN_EMAIL, PAYLOAD_API_KEY, PAYLOAD_PASSWORD, LogCapture, Scenario
from .support import TALLY

TOTAL_SCENARIOS = 26  # 1-14 matrix, 15-19 writer races, 20-23 overlap, 24-26 ids and numbers
_outcomes: dict[int, list[str]] = {}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "scenario(number): a reliability-matrix scenario (1-26, see docs/proof.md)"
    )
    config.addinivalue_line(
        "markers", "id_type(type): the scenario's demo store has these ids (default: the tests')"
    )


@pytest.fixture(scope="session")
def matrix_client(prefect_api: str) -> Iterator[SyncPrefectClient]:
    with get_client(sync_client=True) as client:
        yield client


@pytest.fixture
def scenario(
    matrix_client: SyncPrefectClient,
    make_demo_server: Callable[..., DemoServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    logs: LogCapture,
    request: pytest.FixtureRequest,
) -> Iterator[Scenario]:
    """A fresh demo API (small preset, its own store) and a fresh lakehouse."""
    marker = request.node.get_closest_marker("id_type")
    id_type = {"id_type": IdType(marker.args[0])} if marker is not None else {}
    server = make_demo_server(
        admin_email=ADMIN_EMAIL,
        admin_password=PAYLOAD_PASSWORD,
        api_key=PAYLOAD_API_KEY,
        **id_type,
    )
    monkeypatch.chdir(tmp_path)
    state = Scenario(
        server=server,
        lakehouse=tmp_path / "lakehouse",
        client=matrix_client,
        monkeypatch=monkeypatch,
        workdir=tmp_path,
    )
    try:
        yield state
    finally:
        state.set_faults(None)
        killed = False
        for run in state.cli_runs:
            if run.process.poll() is None:
                run.process.kill()
                run.process.wait(timeout=30)
                killed = True
        if killed:
            # A killed run's lakehouse-writer slot stays taken in the harness's server (it runs
            # no lease repossessor): free it, or every later scenario would wait for it.
            matrix_client.update_global_concurrency_limit(
                state.settings().lakehouse_writer_limit,
                GlobalConcurrencyLimitUpdate(active_slots=0),
            )


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    """Every log record emitted during the test (any thread), for assertions and the scan."""
    capture = LogCapture().install()
    try:
        yield capture
    finally:
        capture.uninstall()


# --- the summary line ----------------------------------------------------------------------


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    number = _scenario_number(report)
    if number is None:
        return
    if report.when == "call" or report.outcome != "passed":
        passed = report.outcome == "passed" and not hasattr(report, "wasxfail")
        _outcomes.setdefault(number, []).append("passed" if passed else "failed")


def _scenario_number(report: pytest.TestReport) -> int | None:
    for name, value in report.user_properties:
        if name == "scenario":
            return int(str(value))
    return None


@pytest.fixture(autouse=True)
def _record_scenario(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("scenario")
    if marker is not None:
        request.node.user_properties.append(("scenario", marker.args[0]))


def summary_line() -> str | None:
    if not _outcomes:
        return None
    passed = sum(1 for results in _outcomes.values() if all(r == "passed" for r in results))
    return (
        f"reliability matrix: {passed}/{TOTAL_SCENARIOS} scenarios passed, "
        f"{TALLY.documents_compared} documents compared"
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    # After pytest's own final line, so the summary is the last line of the output.
    line = summary_line()
    reporter: Any = config.pluginmanager.get_plugin("terminalreporter")
    if line is not None and reporter is not None:
        reporter.write_line(line)
