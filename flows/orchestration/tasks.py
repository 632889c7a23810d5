"""The Prefect tasks of the pipeline: small, typed, each one step of the story.

Tasks receive only non-secret values (collection slugs, modes, identifiers) and rebuild the
typed `Settings` from the environment themselves: secrets stay out of task parameters, cache
keys and the Prefect database.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from prefect import get_run_logger, task
from prefect.assets import Asset, add_asset_metadata, materialize
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.context import AssetContext
from prefect.tasks import MaterializingTask, exponential_backoff

from flows.lakehouse.catalog import get_catalog
from flows.lakehouse.load import (
    LoadMode,
    LoadReport,
    prepare_lakehouse,
    table_state,
)
from flows.lakehouse.load import load_collection as _load
from flows.orchestration.artifacts import publish_report
from flows.orchestration.blocks import run_settings
from flows.orchestration.caching import LOAD_CACHE_POLICY, STATE_CACHE_POLICY
from flows.orchestration.events import emit_collection_loaded, report_payload
from flows.orchestration.logs import keep_prefect_log_format
from flows.orchestration.retries import retry_if_transient
from flows.report.render import build_report
from flows.transform.dbt_project import headline_metrics, publish_marts

# Every load task carries this tag; a tag concurrency limit on it caps simultaneous requests.
PAYLOAD_API_TAG = "payload-api"


# Every task run is named after its task (`task_run_name`): without one, Prefect appends a
# random suffix (`prepare-lakehouse-4f2`), which tells a reader nothing.


@task(
    name="ensure-request-limit",
    task_run_name="ensure-request-limit",
    cache_policy=NO_CACHE,
    persist_result=False,
)
def ensure_request_limit(limit: int, tag: str = PAYLOAD_API_TAG) -> int:
    """Create or update the tag concurrency limit (upsert), so it follows the setting.

    One load task is one sequential keyset reader of the Payload API (one request in flight), so
    capping running `payload-api` tasks caps simultaneous requests.
    """
    with get_client(sync_client=True) as client:
        client.create_concurrency_limit(tag=tag, concurrency_limit=limit)
    get_run_logger().info("Tag concurrency limit %r = %d running load tasks", tag, limit)
    return limit


@task(
    name="prepare-lakehouse",
    task_run_name="prepare-lakehouse",
    cache_policy=NO_CACHE,
    persist_result=False,
)
def prepare_lakehouse_task() -> None:
    """Create the catalog and namespaces before the parallel loads (avoids creation races)."""
    prepare_lakehouse(run_settings())


@task(
    name="note-table-versions",
    task_run_name="note-table-versions",
    cache_policy=STATE_CACHE_POLICY,
    persist_result=True,
)
def lakehouse_state(collections: Sequence[str], lakehouse: str) -> dict[str, str]:
    """Each table's snapshot/cursor fingerprint as this flow run first saw it, by collection.

    One task for all the tables (a few catalog reads): its only purpose is the load tasks' cache
    key. Cached per flow run: a retry of the same run gets the *pre-load* versions back, which
    keeps the load cache keys stable across retries (see flows/orchestration/caching.py).
    """
    settings = run_settings()
    return {collection: table_state(settings, collection) for collection in collections}


def load_collection(
    collection: str,
    mode: LoadMode,
    since: datetime | None,
    table_state: str,
    source: str,
    lakehouse: str,
    asset_key: str,
    change_id: str | None = None,
) -> LoadReport:
    """Extract one Payload collection and commit it to its Iceberg table (one atomic commit).

    `table_state`, `source`, `lakehouse` and `change_id` are not needed to load: they are part of
    the cache key (same pre-load state of the same table from the same source -> same result).
    `asset_key` names the raw table as dbt's asset events do (flows/orchestration/assets.py).
    """
    keep_prefect_log_format()  # before dlt initialises its logger in this process
    settings = run_settings()
    logger = get_run_logger()
    report = _load(settings, collection, mode, since)
    logger.info(
        "%s -> %s: read %s, inserted %s, updated %s, deleted %s, rejected %s, "
        "cursor %s -> %s in %.1f s%s",
        collection,
        report.table,
        f"{report.documents_read:,}",
        f"{report.inserted:,}",
        f"{report.updated:,}",
        f"{report.deleted:,}",
        f"{report.rejected:,}",
        report.cursor_before or "(first load)",
        report.cursor_after or "(none)",
        report.seconds,
        "" if report.committed else " (nothing to commit)",
    )
    if AssetContext.get() is not None:
        # Shown on the asset's materialization in the UI (snapshot id as a string: see events).
        add_asset_metadata(asset_key, report_payload(report))
    emit_collection_loaded(asset_key, report)
    return report


def load_collection_task(asset: Asset) -> MaterializingTask[..., LoadReport]:
    """The load task of one collection: it materializes that collection's raw-table asset.

    A factory because a task's assets are fixed per task: one task per collection, all with the
    same function, name and options (and so the same cache behaviour).
    """
    return materialize(
        asset,
        by="dlt",
        name="load-collection",
        task_run_name="load-{collection}",
        tags=[PAYLOAD_API_TAG],
        retries=3,
        retry_delay_seconds=exponential_backoff(backoff_factor=10),
        retry_jitter_factor=0.5,
        retry_condition_fn=retry_if_transient,
        cache_policy=LOAD_CACHE_POLICY,
        persist_result=True,
    )(load_collection)


@task(
    name="publish-marts",
    task_run_name="publish-marts",
    cache_policy=NO_CACHE,
    persist_result=False,
)
def publish_marts_task(dbt_target: str) -> list[str]:
    """Copy the built marts into the Iceberg marts namespace (local target)."""
    return publish_marts(run_settings(dbt_target=dbt_target))


@task(
    name="headline-metrics",
    task_run_name="headline-metrics",
    cache_policy=NO_CACHE,
    persist_result=False,
)
def headline_metrics_task(dbt_target: str) -> dict[str, Any]:
    """Orders, revenue and customers by segment, read from the marts for the summary artifact."""
    return headline_metrics(run_settings(dbt_target=dbt_target))


@task(
    name="analytics-report",
    task_run_name="analytics-report",
    cache_policy=NO_CACHE,
    persist_result=False,
)
def analytics_report_task(dbt_target: str) -> str:
    """Render the analytics report from the marts and show it as an artifact; returns the
    path of the HTML page."""
    report = build_report(run_settings(dbt_target=dbt_target))
    publish_report(report)
    return str(report.html_path)


@task(
    name="describe-marts",
    task_run_name="describe-marts",
    cache_policy=NO_CACHE,
    persist_result=False,
)
def describe_marts_task(dbt_target: str, marts: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Row count, Iceberg snapshot id and commit time of each mart (`<namespace>.<table>`).

    Read from the Iceberg catalog, which holds the marts on both targets (published copies on
    the local target, dbt-trino's own tables on Trino): no query engine needed.
    """
    catalog = get_catalog(run_settings(dbt_target=dbt_target))
    described: dict[str, dict[str, Any]] = {}
    for identifier in marts:
        snapshot = catalog.load_table(identifier).current_snapshot()
        if snapshot is None:
            described[identifier] = {"rows": 0, "snapshot_id": None, "committed_at": None}
            continue
        total = snapshot.summary.get("total-records") if snapshot.summary else None
        described[identifier] = {
            "rows": int(total or 0),
            "snapshot_id": str(snapshot.snapshot_id),
            "committed_at": snapshot.timestamp_ms,
        }
    return described
