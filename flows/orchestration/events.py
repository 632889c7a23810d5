"""Prefect events the pipeline emits, and the one it reacts to.

Resource ids name what changed, so automations and deployment triggers can match on them:
- `payload.lakehouse.collection.loaded`: resource `iceberg.table.<namespace>.<table>`, one per
  collection per run, payload = the load counts.
- `payload.lakehouse.raw.loaded`: resource `iceberg.namespace.<namespace>`, once per run after the
  loads; label `payload.lakehouse.dbt` = `running` (dbt follows in the same run), `skipped` (the
  run was asked not to run dbt: the `transform` deployment triggers on that) or `blocked` (a
  collection failed, so dbt does not build on the partial raw layer).
- `payload.lakehouse.marts.built`: resource `iceberg.namespace.<marts namespace>` after dbt.
- `payload.collection.changed` (consumed): resource `payload.collection.<slug>` with label
  `payload.collection` = the slug; sent by Payload's hook (Cloud webhook) or by the relay.
"""

from __future__ import annotations

from collections.abc import Sequence
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


def table_resource_id(namespace: str, table: str) -> str:
    """`iceberg.table.<namespace>.<table>`; `table` may already be namespace-qualified."""
    qualified = table if "." in table else f"{namespace}.{table}"
    return f"iceberg.table.{qualified}"


def namespace_resource_id(namespace: str) -> str:
    return f"iceberg.namespace.{namespace}"


def collection_resource(collection: str) -> dict[str, str]:
    return {
        "prefect.resource.id": f"payload.collection.{collection}",
        "prefect.resource.name": collection,
        "payload.collection": collection,
    }


def emit_collection_loaded(namespace: str, report: LoadReport) -> None:
    emit_event(
        event=COLLECTION_LOADED,
        resource={
            "prefect.resource.id": table_resource_id(namespace, report.table),
            "prefect.resource.name": table_resource_id(namespace, report.table).removeprefix(
                "iceberg.table."
            ),
            "payload.collection": report.collection,
        },
        payload=asdict(report),
    )


def emit_raw_loaded(
    namespace: str, reports: Sequence[LoadReport], failed: Sequence[str], dbt: DbtFollowUp
) -> None:
    emit_event(
        event=RAW_LOADED,
        resource={
            "prefect.resource.id": namespace_resource_id(namespace),
            "prefect.resource.name": namespace,
            DBT_LABEL: dbt,
        },
        related=[
            {
                "prefect.resource.id": table_resource_id(namespace, report.table),
                "prefect.resource.role": "table",
            }
            for report in reports
        ],
        payload={
            "collections": [report.collection for report in reports],
            "failed": list(failed),
            "documents_read": sum(report.documents_read for report in reports),
            "committed": [report.collection for report in reports if report.committed],
        },
    )


def emit_marts_built(namespace: str, tables: Sequence[str], summary: dict[str, Any]) -> None:
    emit_event(
        event=MARTS_BUILT,
        resource={
            "prefect.resource.id": namespace_resource_id(namespace),
            "prefect.resource.name": namespace,
        },
        related=[
            {"prefect.resource.id": f"iceberg.table.{table}", "prefect.resource.role": "table"}
            for table in tables
        ],
        payload={"tables": list(tables), **summary},
    )


def emit_collection_changed(collection: str, details: dict[str, Any] | None = None) -> None:
    """What Payload's afterChange hook reports (via the relay or `make change`)."""
    emit_event(
        event=COLLECTION_CHANGED, resource=collection_resource(collection), payload=details or {}
    )
