"""prefect.yaml for real: the live stack's Prefect server (on PostgreSQL), the work pool,
`prefect deploy --all`, a process worker, a deployment run that completes, and a change event
that creates an `on-change` run.

Every process started here runs in its own process group and is stopped at the end (the worker
first: workers do not exit on SIGTERM once their server is gone).
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from flows.demo.server import DemoServer
from flows.lakehouse.catalog import clear_catalog_cache, get_catalog
from flows.settings import load_settings
from tests.reliability.support import assert_raw_equals_store, store_snapshot

from .conftest import ADMIN_EMAIL, ADMIN_PASSWORD

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
WRITER_LIMIT = "lakehouse-writer"  # LAKEHOUSE_WRITER_LIMIT's default, as `make deploy` creates it
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


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


@pytest.fixture(scope="module")
def deployed(prefect_server: dict[str, str]) -> dict[str, str]:
    """What `make deploy` does: the work pool, every deployment, the lakehouse-writer limit."""
    env = prefect_server
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
    limit = run(
        [str(BIN / "prefect"), "gcl", "create", WRITER_LIMIT, "--limit", "1"], env, timeout=120
    )
    assert limit.returncode == 0, limit.stdout + limit.stderr
    return env


def start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [str(BIN / "prefect"), "worker", "start", "--pool", "local-process"],
            env=env,
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def test_deploy_run_and_trigger(deployed: dict[str, str], demo: DemoServer, tmp_path: Path) -> None:
    env = deployed
    api = env["PREFECT_API_URL"]
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
    worker = start_worker(worker_env, tmp_path / "worker.log")
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


def create_run(api: str, deployment: str, parameters: dict[str, Any]) -> str:
    found = httpx.get(f"{api}/deployments/name/payload-lakehouse/{deployment}", timeout=10)
    found.raise_for_status()
    response = httpx.post(
        f"{api}/deployments/{found.json()['id']}/create_flow_run",
        json={"parameters": parameters},
        timeout=10,
    )
    response.raise_for_status()
    return str(response.json()["id"])


def writing_window(api: str, flow_run_id: str) -> tuple[datetime, datetime]:
    """First start and last end of the run's task runs that touch the lakehouse."""
    response = httpx.post(
        f"{api}/task_runs/filter",
        json={"flow_runs": {"id": {"any_": [flow_run_id]}}, "limit": 200},
        timeout=10,
    )
    response.raise_for_status()
    runs = [
        r
        for r in response.json()
        if not r["name"].startswith(("ensure-", "probe-")) and r["start_time"] and r["end_time"]
    ]
    assert runs, f"flow run {flow_run_id} ran no task"
    starts = [datetime.fromisoformat(r["start_time"]) for r in runs]
    ends = [datetime.fromisoformat(r["end_time"]) for r in runs]
    return min(starts), max(ends)


def test_three_deployments_triggered_together_write_one_at_a_time(
    deployed: dict[str, str], live_stack: Any, demo: DemoServer, tmp_path: Path
) -> None:
    """daily, on-change and reconcile, created at the same instant: each deployment is limited
    only against itself, so only the lakehouse-writer limit keeps them apart. Their writing
    windows (first to last task run) must not overlap, and the lakehouse equals the source."""
    env = deployed
    api = env["PREFECT_API_URL"]
    namespace = "overlap_test_ecommerce"
    worker_env = {
        **env,
        "PAYLOAD_CMS_URL": demo.url,
        "PAYLOAD_EMAIL": ADMIN_EMAIL,
        "PAYLOAD_PASSWORD": ADMIN_PASSWORD,
        "LAKEHOUSE_DIR": str(tmp_path / "lakehouse"),
        "PAYLOAD_REQUEST_CONCURRENCY": "9",
        "ICEBERG_NAMESPACE": namespace,
    }
    worker = start_worker(worker_env, tmp_path / "worker.log")
    try:
        # Loads only: the overlap under test is the writes; dbt on Trino is test_live_stack's.
        ids = {
            create_run(api, "daily", {"run_dbt": False}): "daily",
            create_run(
                api, "on-change", {"collections": ["orders"], "run_dbt": False}
            ): "on-change",
            create_run(api, "reconcile", {"run_dbt": False}): "reconcile",
        }
        deadline = time.monotonic() + 900
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            response = httpx.post(
                f"{api}/flow_runs/filter", json={"flow_runs": {"id": {"any_": list(ids)}}}
            )
            response.raise_for_status()
            states = {r["id"]: r["state"]["type"] for r in response.json()}
            if len(states) == 3 and set(states.values()) <= TERMINAL:
                break
            time.sleep(3)
        worker_output = (tmp_path / "worker.log").read_text(errors="replace")[-4000:]
        assert set(states.values()) == {"COMPLETED"}, (states, worker_output)
    finally:
        stop_group(worker)

    windows = sorted((*writing_window(api, run_id), ids[run_id]) for run_id in ids)
    print(
        "\n".join(
            f"{name}: {start:%H:%M:%S.%f} .. {end:%H:%M:%S.%f}" for start, end, name in windows
        )
    )
    for (_, end, name), (start, _, following) in itertools.pairwise(windows):
        assert end <= start, f"{name} was still writing when {following} started: {windows}"

    settings = load_settings(
        iceberg_catalog_type="rest",
        iceberg_catalog_url=env["ICEBERG_CATALOG_URL"],
        iceberg_warehouse=env["ICEBERG_WAREHOUSE"],
        s3_endpoint=env["S3_ENDPOINT"],
        s3_access_key_id=live_stack.s3_access_key,
        s3_secret_access_key=live_stack.s3_secret_key,
        iceberg_namespace=namespace,
        lakehouse_dir=tmp_path / "lakehouse",
    )
    clear_catalog_cache()
    compared = assert_raw_equals_store(get_catalog(settings), namespace, store_snapshot(demo.store))
    assert compared == sum(len(docs) for docs in store_snapshot(demo.store).values())
