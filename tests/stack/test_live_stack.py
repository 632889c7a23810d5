"""The production path for real: the flow loads the demo store through an Iceberg REST catalog into
S3 (moto), dbt-trino builds every model on Trino, and the results are checked against the source
and against the same marts built by DuckDB.

One module-wide demo store and lakehouse; the tests run in file order (load -> compare -> change
batch -> schema change), each asserting one promise of the production path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
import trino
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort
from prefect.settings import PREFECT_API_URL, temporary_settings

from deployments.stack.config import StackConfig
from flows.demo.server import DemoServer, serve_demo
from flows.lakehouse.catalog import clear_catalog_cache, get_catalog
from flows.lakehouse.load import LoadMode, load_collection
from flows.orchestration.artifacts import (
    LOADS_ARTIFACT_KEY,
    MARTS_ARTIFACT_KEY,
    REPORT_ARTIFACT_KEY,
    SUMMARY_ARTIFACT_KEY,
)
from flows.report.charts import report_charts
from flows.report.datasets import read_report_data
from flows.report.render import HTML_NAME, headline
from flows.settings import ALL_COLLECTIONS, COLLECTION_TABLES, Settings, load_settings
from flows.transform.dbt_project import run_dbt
from tests.browser import PageErrors, screenshot
from tests.reliability.support import (
    assert_marts_invariants,
    assert_raw_equals_store,
    computed_values,
    store_snapshot,
)
from tests.stack.compare import difference, duckdb_table, trino_table

pytestmark = [pytest.mark.slow, pytest.mark.stack]

REPO_ROOT = Path(__file__).resolve().parents[2]
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "demo-password"


@dataclass
class StackRun:
    """The module's lakehouse on the stack: its environment, namespaces and demo source."""

    env: dict[str, str]
    demo: DemoServer
    lakehouse: Path
    raw: str
    staging: str
    marts: str

    def settings(self, **overrides: Any) -> Settings:
        values = {key.lower(): value for key, value in self.env.items() if key.isupper()}
        values.update(overrides)
        return load_settings(**values)

    def flow(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """`python flows/main.py ARGS` as `make run-stack` runs it (a real subprocess)."""
        return subprocess.run(
            [sys.executable, "flows/main.py", *args],
            env=self.env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def dbt(self, *args: str) -> Any:
        return run_dbt(self.settings(), list(args))

    def cursor(self) -> Any:
        connection = trino.dbapi.connect(
            host=self.env["TRINO_HOST"],
            port=int(self.env["TRINO_PORT"]),
            user="tests",
            catalog="iceberg",
        )
        return connection.cursor()

    def trino_marts(self) -> dict[str, tuple[list[str], list[tuple[Any, ...]]]]:
        cursor = self.cursor()
        cursor.execute(f'show tables from "{self.marts}"')
        names = sorted(row[0] for row in cursor.fetchall())
        return {name: trino_table(cursor, self.marts, name) for name in names}


# The instant every compared build describes (dbt var build_at / DBT_BUILD_AT): a cart's status
# and a customer's lifetime depend on it, so two builds minutes (or a midnight) apart would
# differ for no fault of either engine.
BUILD_AT = "2026-11-05T00:00:00Z"
BUILD_VARS = "{build_at: '" + BUILD_AT + "'}"


@pytest.fixture(scope="module")
def stack_run(
    live_stack: StackConfig, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StackRun]:
    """The small demo store loaded by the real flow on the stack, dbt built on Trino."""
    demo = serve_demo("small").start()
    prefix = "t" + uuid.uuid4().hex[:6]
    lakehouse = tmp_path_factory.mktemp("stack-lakehouse")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ICEBERG_", "S3_", "DBT_"))}
    env.update(live_stack.pipeline_environment())
    env.update(
        {
            "PAYLOAD_CMS_URL": demo.url,
            "PAYLOAD_EMAIL": ADMIN_EMAIL,
            "PAYLOAD_PASSWORD": ADMIN_PASSWORD,
            "LAKEHOUSE_DIR": str(lakehouse),
            "ICEBERG_NAMESPACE": f"{prefix}_ecommerce",
            "ICEBERG_STAGING_NAMESPACE": f"{prefix}_ecommerce_staging",
            "ICEBERG_MARTS_NAMESPACE": f"{prefix}_ecommerce_marts",
            "PAYLOAD_REQUEST_CONCURRENCY": "9",
            "LOAD_TASK_RETRY_DELAY_SECONDS": "1",
            # one build instant for every build compared (cart status, customer lifetime)
            "DBT_BUILD_AT": BUILD_AT,
        }
    )
    run = StackRun(
        env=env,
        demo=demo,
        lakehouse=lakehouse,
        raw=env["ICEBERG_NAMESPACE"],
        staging=env["ICEBERG_STAGING_NAMESPACE"],
        marts=env["ICEBERG_MARTS_NAMESPACE"],
    )
    try:
        result = run.flow()
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
        assert "trino --server" in result.stdout
        yield run
    finally:
        demo.stop()
        clear_catalog_cache()


def direct_settings(run: StackRun, config: StackConfig) -> Settings:
    """Settings for pyiceberg in this test process. Flow runs read the S3 keys from the stack's
    AwsCredentials block; here they are given explicitly."""
    return run.settings(
        s3_access_key_id=config.s3_access_key, s3_secret_access_key=config.s3_secret_key
    )


def test_every_collection_lands_in_s3_through_the_rest_catalog(
    stack_run: StackRun, live_stack: StackConfig
) -> None:
    catalog = get_catalog(direct_settings(stack_run, live_stack))
    for collection in ALL_COLLECTIONS:
        table = catalog.load_table(f"{stack_run.raw}.{COLLECTION_TABLES[collection]}")
        assert table.location().startswith(f"s3://{live_stack.warehouse_bucket}/"), collection
    documents = store_snapshot(stack_run.demo.store)
    computed = {c: computed_values(stack_run.demo, c) for c in documents}
    compared = assert_raw_equals_store(catalog, stack_run.raw, documents, computed=computed)
    assert compared == sum(len(docs) for docs in documents.values())


def test_prefect_aws_blocks_carry_the_s3_keys_and_the_results(
    stack_run: StackRun, live_stack: StackConfig
) -> None:
    """The flow run had no S3 key in its environment (the AwsCredentials block supplied it), and
    its task results went to the S3Bucket block's bucket."""
    import boto3

    assert "S3_ACCESS_KEY_ID" not in stack_run.env
    assert stack_run.env["AWS_CREDENTIALS_BLOCK"] == live_stack.aws_credentials_block
    s3 = boto3.client(
        "s3",
        endpoint_url=live_stack.s3_url,
        aws_access_key_id=live_stack.s3_access_key,
        aws_secret_access_key=live_stack.s3_secret_key,
        region_name=live_stack.s3_region,
    )
    results = s3.list_objects_v2(Bucket=live_stack.results_bucket).get("KeyCount", 0)
    assert results >= len(ALL_COLLECTIONS)  # at least one persisted load result per collection


def test_trino_reads_every_raw_table(stack_run: StackRun) -> None:
    cursor = stack_run.cursor()
    documents = store_snapshot(stack_run.demo.store)
    for collection, docs in documents.items():
        cursor.execute(f'select id from "{stack_run.raw}"."{COLLECTION_TABLES[collection]}"')
        ids = sorted(row[0] for row in cursor.fetchall())
        assert ids == sorted(doc["id"] for doc in docs), collection


def test_dbt_build_on_trino_passed_every_node(stack_run: StackRun) -> None:
    # Each flow run's dbt writes into its own target folder (dbt/target/runs/<flow run id>).
    runs = sorted(
        (stack_run.lakehouse / "dbt" / "target" / "runs").glob("*/run_results.json"),
        key=lambda path: path.stat().st_mtime,
    )
    assert runs, "the flow's dbt build wrote no run_results.json"
    results = json.loads(runs[0].read_text())  # the module's first run: the full build
    assert results["metadata"]["invocation_id"]
    statuses = {r["unique_id"]: r["status"] for r in results["results"]}
    kinds = {unique_id.split(".")[0] for unique_id in statuses}
    assert {"model", "seed", "test", "unit_test"} <= kinds
    assert len(statuses) >= 120
    failed = {
        node: status for node, status in statuses.items() if status not in {"success", "pass"}
    }
    assert not failed
    assert results["args"]["target"] == "trino"


def test_trino_marts_equal_duckdb_marts(
    stack_run: StackRun, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Same source data, two engines: every mart row for row, money exact."""
    local = load_settings(
        payload_cms_url=stack_run.demo.url,
        payload_email=ADMIN_EMAIL,
        payload_password=ADMIN_PASSWORD,
        lakehouse_dir=tmp_path_factory.mktemp("duckdb-reference"),
    )
    for collection in ALL_COLLECTIONS:
        load_collection(local, collection, LoadMode.FULL_REFRESH, None)
    run_dbt(local, ["build", "--vars", BUILD_VARS])
    trino_marts = stack_run.trino_marts()
    assert len(trino_marts) >= 12
    problems = {}
    for name, trino_rows in trino_marts.items():
        duck = duckdb_table(str(local.duckdb_path), local.iceberg_marts_namespace, name)
        problem = difference(duck, trino_rows)
        if problem:
            problems[name] = problem
    assert not problems, "\n".join(f"{k}: {v}" for k, v in problems.items())


def test_marts_read_back_through_pyiceberg_and_duckdb(
    stack_run: StackRun, live_stack: StackConfig
) -> None:
    """The Trino-built marts are Iceberg tables any engine reads: pyiceberg -> Arrow -> DuckDB,
    and they satisfy the marts' invariants against the source."""
    catalog = get_catalog(direct_settings(stack_run, live_stack))
    orders = catalog.load_table(f"{stack_run.marts}.fact_orders").scan().to_arrow()  # noqa: F841
    totals = duckdb.sql(  # reads the Arrow table `orders` by name
        "select count(*), sum(amount_usd) filter (where is_revenue_bearing) from orders"
    ).fetchone()
    cursor = stack_run.cursor()
    cursor.execute(
        "select count(*), sum(amount_usd) filter (where is_revenue_bearing) "
        f'from "{stack_run.marts}".fact_orders'
    )
    assert totals == tuple(cursor.fetchone())
    assert_marts_invariants(catalog, stack_run.marts, store_snapshot(stack_run.demo.store))


def test_report_renders_from_trino_marts(
    stack_run: StackRun, live_stack: StackConfig, browser: Any
) -> None:
    """The flow on the stack rendered the analytics report from the Trino marts; its numbers
    are Trino's, and every chart draws in a real browser."""
    html = stack_run.lakehouse / "report" / HTML_NAME
    assert html.exists(), "the flow on the stack rendered no report"
    data = read_report_data(direct_settings(stack_run, live_stack))
    assert data.engine == "Trino" and data.has_orders
    cursor = stack_run.cursor()
    cursor.execute(
        "select count(*), sum(case when is_revenue_bearing then amount_usd else 0 end) "
        f'from "{stack_run.marts}".fact_orders'
    )
    orders, revenue = cursor.fetchone()
    numbers = headline(data)
    assert (numbers["orders"], numbers["revenue_usd"]) == (orders, float(revenue))
    assert "from the marts on Trino" in html.read_text()
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = PageErrors()
    errors.watch(page)
    try:
        page.goto(html.as_uri(), wait_until="load")
        page.evaluate("() => window.chartsRendered.then(() => true)")
        screenshot(page, "report-trino")
        for chart in report_charts(data):
            marks = page.locator(f"#chart-{chart.key} svg g.role-mark > *").count()
            assert marks > 0, chart.key
        assert not errors.all, errors.all
    finally:
        page.close()


def test_prefect_ui_shows_the_runs_artifacts(
    stack_run: StackRun, live_stack: StackConfig, browser: Any
) -> None:
    """The flow run's page in the Prefect UI (the stack's server) lists our artifacts, and the
    report artifact shows its numbers and its two charts as images."""
    with (
        temporary_settings(updates={PREFECT_API_URL: live_stack.prefect_api_url}),
        get_client(sync_client=True) as client,
    ):
        artifact = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[REPORT_ARTIFACT_KEY])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )[0]
    ui = live_stack.prefect_api_url.removesuffix("/api")
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"{ui}/runs/flow-run/{artifact.flow_run_id}", wait_until="networkidle")
        page.get_by_text("Artifacts", exact=True).first.click()
        for key in (SUMMARY_ARTIFACT_KEY, LOADS_ARTIFACT_KEY, MARTS_ARTIFACT_KEY):
            page.get_by_text(key, exact=True).first.wait_for(timeout=30_000)
        page.get_by_text(REPORT_ARTIFACT_KEY, exact=True).first.wait_for(timeout=30_000)
        screenshot(page, "prefect-ui-flow-run-artifacts")
        page.goto(f"{ui}/artifacts/artifact/{artifact.id}", wait_until="networkidle")
        page.get_by_role("heading", name="Analytics report").wait_for(timeout=30_000)
        page.wait_for_function(
            "() => [...document.images].filter(i => i.src.startsWith('data:image/png')"
            " && i.naturalWidth > 0).length >= 2",
            timeout=30_000,
        )
        screenshot(page, "prefect-ui-report-artifact")
    finally:
        page.close()


def test_incremental_run_on_trino_equals_a_full_refresh(stack_run: StackRun) -> None:
    """After a change batch, the incremental flow run (delete+insert facts, post-hook deletes)
    leaves exactly the marts a full refresh on Trino builds."""
    summary = stack_run.demo._apply_changes({"seed": 7, "fraction": 0.03})
    assert summary
    result = stack_run.flow()
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    incremental = stack_run.trino_marts()
    stack_run.dbt("build", "--full-refresh", "--vars", BUILD_VARS)
    refreshed = stack_run.trino_marts()
    assert sorted(incremental) == sorted(refreshed)
    problems = {
        name: problem
        for name in refreshed
        if (problem := difference(incremental[name], refreshed[name]))
    }
    assert not problems, "\n".join(f"{k}: {v}" for k, v in problems.items())


def test_a_new_payload_field_becomes_a_column_trino_sees(stack_run: StackRun) -> None:
    changed = stack_run.demo._schema_change(
        {"collection": "products", "action": "add_field", "field": "launchSeason", "value": "fall"}
    )
    assert changed["ids"]
    result = stack_run.flow("--collections", "products", "--skip-dbt")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    cursor = stack_run.cursor()
    cursor.execute(f'describe "{stack_run.raw}".products')
    assert "launch_season" in {row[0] for row in cursor.fetchall()}
    cursor.execute(
        f"select count(*) from \"{stack_run.raw}\".products where launch_season = 'fall'"
    )
    assert cursor.fetchone()[0] == len(changed["ids"])
