"""prefect.yaml for real: the live stack's Prefect server (on PostgreSQL), the work pool,
`prefect deploy --all`, a process worker, a deployment run that completes, and a change event
that creates an `on-change` run.

Every process started here runs in its own process group and is stopped at the end (the worker
first: workers do not exit on SIGTERM once their server is gone).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from flows.demo.server import DemoServer

from .conftest import ADMIN_EMAIL, ADMIN_PASSWORD

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def stop_group(process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout)
    except ProcessLookupError:
        pass


def run(
    command: list[str], env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def prefect_server(live_stack: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The live stack's Prefect server (PostgreSQL-backed, as in production); yields the CLI
    environment with the stack's pipeline settings (REST catalog, S3 warehouse whose keys come
    from the stack's AwsCredentials block, S3Bucket result storage)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PREFECT_", "ICEBERG_", "S3_", "DBT_"))
        or key == "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
    }
    env.update(live_stack.pipeline_environment())
    env.update(
        {
            "PREFECT_HOME": str(tmp_path_factory.mktemp("prefect-client-home")),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PAYLOAD_LAKEHOUSE_ROOT": str(REPO_ROOT),
            "ICEBERG_NAMESPACE": "deploy_test_ecommerce",
            "DBT_TARGET": "trino",
        }
    )
    health = httpx.get(f"{env['PREFECT_API_URL']}/health", timeout=10)
    assert health.status_code == 200, health.text
    return env


def flow_runs_of(api: str, deployment: str) -> list[dict[str, Any]]:
    found = httpx.get(f"{api}/deployments/name/payload-lakehouse/{deployment}", timeout=10)
    found.raise_for_status()
    response = httpx.post(
        f"{api}/flow_runs/filter",
        json={"flow_runs": {"deployment_id": {"any_": [found.json()["id"]]}}},
        timeout=10,
    )
    response.raise_for_status()
    return list(response.json())


def assert_automations_are_named(api: str) -> None:
    """The Automations page: every trigger in prefect.yaml is an automation with the name and
    description written there (not `on-change__automation_1`, "A custom trigger")."""
    declared = {
        trigger["name"]: trigger["description"]
        for deployment in yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())["deployments"]
        for trigger in deployment.get("triggers", [])
    }
    assert len(declared) == 2
    response = httpx.post(f"{api}/automations/filter", json={}, timeout=10)
    response.raise_for_status()
    automations = {item["name"]: item for item in response.json()}
    assert set(automations) == set(declared), sorted(automations)
    for name, description in declared.items():
        assert "__automation_" not in name
        assert automations[name]["description"] == description
        assert len(description) > 100, name  # says what it matches and how it debounces


def test_deploy_run_and_trigger(
    prefect_server: dict[str, str], demo: DemoServer, tmp_path: Path
) -> None:
    env = prefect_server
    api = env["PREFECT_API_URL"]
    pool = run(
        [
            str(BIN / "prefect"),
            "work-pool",
            "create",
            "local-process",
            "--type",
            "process",
            "--base-job-template",
            "deployments/work-pools/process.json",
        ],
        env,
        timeout=120,
    )
    assert pool.returncode == 0, pool.stdout + pool.stderr
    deployed = run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all"], env, timeout=300)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    for name in ("daily", "on-change", "transform", "reconcile"):
        assert f"payload-lakehouse/{name}" in deployed.stdout
    assert_automations_are_named(api)

    # The worker's flow runs read the demo Payload API and write the stack's lakehouse (REST
    # catalog + S3, in their own namespace), with results in the stack's S3 bucket.
    worker_env = {
        **env,
        "PAYLOAD_CMS_URL": demo.url,
        "PAYLOAD_EMAIL": ADMIN_EMAIL,
        "PAYLOAD_PASSWORD": ADMIN_PASSWORD,
        "LAKEHOUSE_DIR": str(tmp_path / "lakehouse"),
        "PAYLOAD_REQUEST_CONCURRENCY": "9",
    }
    worker_log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [str(BIN / "prefect"), "worker", "start", "--pool", "local-process"],
        env=worker_env,
        cwd=REPO_ROOT,
        stdout=worker_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        daily = run(
            [
                str(BIN / "prefect"),
                "deployment",
                "run",
                "payload-lakehouse/daily",
                # dbt inside a flow run is covered by test_flow.py; here the deployment
                # mechanics are under test, so the run stays short.
                "--param",
                "run_dbt=false",
                "--watch",
                "--watch-timeout",
                "600",
            ],
            env,
            timeout=660,
        )
        runs = flow_runs_of(api, "daily")
        assert daily.returncode == 0, (
            daily.stdout + daily.stderr + (tmp_path / "worker.log").read_text()
        )
        manual = [r for r in runs if r["state"]["type"] != "SCHEDULED"]
        assert [r["state"]["type"] for r in manual] == ["COMPLETED"]

        # The cron schedules are live: the server's scheduler has queued upcoming runs.
        for name in ("daily", "reconcile"):
            deadline = time.monotonic() + 120
            upcoming: list[dict[str, Any]] = []
            while not upcoming and time.monotonic() < deadline:
                upcoming = [r for r in flow_runs_of(api, name) if r["state"]["type"] == "SCHEDULED"]
                time.sleep(2)
            assert upcoming, f"the scheduler created no run for the {name} cron schedule"

        emitted = run(
            [sys.executable, "-m", "flows.orchestration.relay", "emit", "orders", "--id", "1"],
            env,
            timeout=120,
        )
        assert emitted.returncode == 0, emitted.stdout + emitted.stderr
        deadline = time.monotonic() + 120
        triggered: list[dict[str, Any]] = []
        while not triggered and time.monotonic() < deadline:
            triggered = flow_runs_of(api, "on-change")
            time.sleep(2)
        assert len(triggered) == 1, "payload.collection.changed did not create an on-change run"
        parameters = triggered[0]["parameters"]
        assert parameters["collections"] == ["orders"]
        assert parameters["change_id"]
    finally:
        stop_group(worker)
        worker_log.close()
