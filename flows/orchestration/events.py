"""Prefect events the pipeline emits, and the one it reacts to.

A table's resource id is its asset key, the very key prefect-dbt gives the same table in its
asset events (flows/orchestration/assets.py: `duckdb://lakehouse/ecommerce/orders` on the local
target, `trino://iceberg/ecommerce/orders` on Trino), so a load, the dbt nodes that read its
table and the marts they build link up in the event feed and in the asset lineage.

- `payload.lakehouse.collection.loaded`: resource = the raw table's asset key, one per collection
  load, payload = the load counts.
- `payload.lakehouse.raw.loaded`: resource `iceberg.namespace.<namespace>`, once per run after the
  loads; label `payload.lakehouse.dbt` = `running` (dbt follows in the same run), `skipped` (the
  run was asked not to run dbt: the `transform` deployment triggers on that) or `blocked` (a
  collection failed, so dbt does not build on the partial raw layer).
- `payload.lakehouse.marts.built`: resource `iceberg.namespace.<marts namespace>` after dbt,
  related to each mart's asset key.
- `payload.collection.changed` (consumed): resource `payload.collection.<slug>` with label
  `payload.collection` = the slug; sent by Payload's hook (Cloud webhook) or by the relay.

Iceberg snapshot ids are 64-bit and routinely above 2**53: as JSON numbers, the UI (JavaScript
doubles) would show them rounded. They always go out as strings (`json_safe`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any, Literal

from prefect.events import emit_event

from flows.lakehouse.load import LoadReport

COLLECTION_LOADED = "payload.lakehouse.collection.loaded"
RAW_LOADED = "payload.lakehouse.raw.loaded"
MARTS_BUILT = "payload.lakehouse.marts.built"
COLLECTION_CHANGED = "payload.collection.changed"
DBT_LABEL = "payload.lakehouse.dbt"
# What follows a raw load: dbt in the same run, nothing by request, or nothing (partial layer).
DbtFollowUp = Literal["running", "skipped", "blocked"]
# The largest integer a JavaScript number (an IEEE double) holds exactly.
MAX_SAFE_INTEGER = 2**53 - 1


def json_safe(value: Any) -> Any:
    """`value` with every integer a JavaScript double cannot hold exactly turned into a string."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value) if abs(value) > MAX_SAFE_INTEGER else value
    if isinstance(value, Mapping):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def report_payload(report: LoadReport) -> dict[str, Any]:
    """A load report for an event or artifact: the snapshot id always as a string (an
    identifier, never arithmetic; a string whatever its size, so its type does not vary)."""
    payload = asdict(report)
    payload["snapshot_id"] = None if report.snapshot_id is None else str(report.snapshot_id)
    return payload


def namespace_resource_id(namespace: str) -> str:
    return f"iceberg.namespace.{namespace}"


def collection_resource(collection: str) -> dict[str, str]:
    return {
        "prefect.resource.id": f"payload.collection.{collection}",
        "prefect.resource.name": collection,
        "payload.collection": collection,
    }


def emit_collection_loaded(asset_key: str, report: LoadReport) -> None:
    emit_event(
        event=COLLECTION_LOADED,
        resource={
            "prefect.resource.id": asset_key,
            "prefect.resource.name": report.table,
            "payload.collection": report.collection,
        },
        payload=report_payload(report),
    )


def emit_raw_loaded(
    namespace: str,
    reports: Sequence[LoadReport],
    failed: Sequence[str],
    dbt: DbtFollowUp,
    asset_keys: Mapping[str, str],
) -> None:
    """`asset_keys`: the raw table's asset key per collection."""
    emit_event(
        event=RAW_LOADED,
        resource={
            "prefect.resource.id": namespace_resource_id(namespace),
            "prefect.resource.name": namespace,
            DBT_LABEL: dbt,
        },
        related=[
            {
                "prefect.resource.id": asset_keys[report.collection],
                "prefect.resource.role": "table",
                "prefect.resource.name": report.table,
            }
            for report in reports
        ],
        payload={
            "collections": [report.collection for report in reports],
            "failed": list(failed),
            "documents_read": sum(report.documents_read for report in reports),
            "committed": [report.collection for report in reports if report.committed],
            "snapshot_ids": {
                report.collection: None if report.snapshot_id is None else str(report.snapshot_id)
                for report in reports
            },
        },
    )


def emit_marts_built(
    namespace: str, asset_keys: Mapping[str, str], summary: Mapping[str, Any]
) -> None:
    """`asset_keys`: mart (`<namespace>.<table>`) -> its asset key."""
    emit_event(
        event=MARTS_BUILT,
        resource={
            "prefect.resource.id": namespace_resource_id(namespace),
            "prefect.resource.name": namespace,
        },
        related=[
            {
                "prefect.resource.id": key,
                "prefect.resource.role": "table",
                "prefect.resource.name": table,
            }
            for table, key in asset_keys.items()
        ],
        payload=json_safe({"tables": list(asset_keys), **summary}),
    )


def emit_collection_changed(collection: str, details: dict[str, Any] | None = None) -> None:
    """What Payload's afterChange hook reports (via the relay or `make change`)."""
    emit_event(
        event=COLLECTION_CHANGED, resource=collection_resource(collection), payload=details or {}
    )
