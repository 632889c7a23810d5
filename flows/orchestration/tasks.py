"""The Prefect tasks of the pipeline: small, typed, each one step of the story.

Tasks receive only non-secret values (collection slugs, modes, identifiers) and rebuild the
typed `Settings` from the environment themselves: secrets stay out of task parameters, cache
keys and the Prefect database.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.tasks import exponential_backoff

from flows.lakehouse.load import (
    LoadMode,
    LoadReport,
    load_collection,
    prepare_lakehouse,
    table_state,
)
from flows.orchestration.blocks import run_settings
from flows.orchestration.caching import LOAD_CACHE_POLICY, STATE_CACHE_POLICY
from flows.orchestration.events import emit_collection_loaded
from flows.orchestration.retries import retry_if_transient
from flows.transform.dbt_project import headline_metrics, publish_marts

# Every load task carries this tag; a tag concurrency limit on it caps simultaneous requests.
PAYLOAD_API_TAG = "payload-api"


@task(name="ensure-request-limit", cache_policy=NO_CACHE, persist_result=False)
def ensure_request_limit(limit: int, tag: str = PAYLOAD_API_TAG) -> int:
    """Create or update the tag concurrency limit (upsert), so it follows the setting.

    One load task is one sequential keyset reader of the Payload API (one request in flight), so
    capping running `payload-api` tasks caps simultaneous requests.
    """
    with get_client(sync_client=True) as client:
        client.create_concurrency_limit(tag=tag, concurrency_limit=limit)
    get_run_logger().info("Tag concurrency limit %r = %d running load tasks", tag, limit)
    return limit


@task(name="prepare-lakehouse", cache_policy=NO_CACHE, persist_result=False)
def prepare_lakehouse_task() -> None:
    """Create the catalog and namespaces before the parallel loads (avoids creation races)."""
    prepare_lakehouse(run_settings())


@task(
    name="lakehouse-state",
    task_run_name="state-{collection}",
    cache_policy=STATE_CACHE_POLICY,
    persist_result=True,
)
def lakehouse_state(collection: str, lakehouse: str) -> str:
    """The table's snapshot/cursor fingerprint as this flow run first saw it.

    Cached per flow run: a retry of the same run gets the *pre-load* state back, which keeps the
    load task's cache key stable across retries (see flows/orchestration/caching.py).
    """
    return table_state(run_settings(), collection)


@task(
    name="load-collection",
    task_run_name="load-{collection}",
    tags=[PAYLOAD_API_TAG],
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=10),
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_if_transient,
    cache_policy=LOAD_CACHE_POLICY,
    persist_result=True,
)
def load_collection_task(
    collection: str,
    mode: LoadMode,
    since: datetime | None,
    table_state: str,
    source: str,
    lakehouse: str,
    change_id: str | None = None,
) -> LoadReport:
    """Extract one Payload collection and commit it to its Iceberg table (one atomic commit).

    `table_state`, `source`, `lakehouse` and `change_id` are not needed to load: they are part of
    the cache key (same pre-load state of the same table from the same source -> same result).
    """
    settings = run_settings()
    logger = get_run_logger()
    report = load_collection(settings, collection, mode, since)
    logger.info(
        "%s -> %s: read %d, inserted %d, updated %d, deleted %d, rejected %d, cursor %s -> %s "
        "in %.1fs%s",
        collection,
        report.table,
        report.documents_read,
        report.inserted,
        report.updated,
        report.deleted,
        report.rejected,
        report.cursor_before,
        report.cursor_after,
        report.seconds,
        "" if report.committed else " (nothing to commit)",
    )
    emit_collection_loaded(settings.iceberg_namespace, report)
    return report


@task(name="publish-marts", cache_policy=NO_CACHE, persist_result=False)
def publish_marts_task(dbt_target: str) -> list[str]:
    """Copy the built marts into the Iceberg marts namespace (local target)."""
    return publish_marts(run_settings(dbt_target=dbt_target))


@task(name="headline-metrics", cache_policy=NO_CACHE, persist_result=False)
def headline_metrics_task(dbt_target: str) -> dict[str, Any]:
    """Orders, revenue and customers by segment, read from the marts for the summary artifact."""
    return headline_metrics(run_settings(dbt_target=dbt_target))
