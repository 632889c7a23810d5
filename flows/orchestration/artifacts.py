"""The run's story in the Prefect UI: a table of the loads and a markdown summary."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.lakehouse.load import LoadReport

LOADS_ARTIFACT_KEY = "payload-lakehouse-loads"
SUMMARY_ARTIFACT_KEY = "payload-lakehouse-summary"


def load_rows(reports: Sequence[LoadReport], failures: Mapping[str, str]) -> list[dict[str, Any]]:
    """One row per collection: counts, cursor movement, time; failures with their cause."""
    rows: list[dict[str, Any]] = [
        {
            "collection": report.collection,
            "status": "loaded" if report.committed else "no change",
            "documents read": report.documents_read,
            "inserted": report.inserted,
            "updated": report.updated,
            "deleted": report.deleted,
            "rejected": report.rejected,
            "cursor": f"{report.cursor_before or '-'} -> {report.cursor_after or '-'}",
            "seconds": round(report.seconds, 2),
        }
        for report in reports
    ]
    rows.extend(
        {
            "collection": collection,
            "status": f"FAILED: {reason}",
            "documents read": None,
            "inserted": None,
            "updated": None,
            "deleted": None,
            "rejected": None,
            "cursor": None,
            "seconds": None,
        }
        for collection, reason in failures.items()
    )
    return rows


def publish_load_table(reports: Sequence[LoadReport], failures: Mapping[str, str]) -> None:
    create_table_artifact(
        table=load_rows(reports, failures),
        key=LOADS_ARTIFACT_KEY,
        description="Payload -> Iceberg: one row per collection loaded by this run",
    )


def summary_markdown(
    *,
    mode: str,
    reports: Sequence[LoadReport],
    failures: Mapping[str, str],
    dbt_summary: Mapping[str, Any] | None,
    marts: Sequence[str],
    metrics: Mapping[str, Any] | None,
) -> str:
    lines = ["# Payload -> Iceberg lakehouse run", ""]
    lines.append(
        f"**Mode** `{mode}` · **collections loaded** {len(reports)}"
        f" · **failed** {len(failures)}"
        f" · **documents read** {sum(r.documents_read for r in reports):,}"
        f" · **rejected** {sum(r.rejected for r in reports):,}"
    )
    if failures:
        lines += ["", "## Failed collections", ""]
        lines += [f"- `{collection}`: {reason}" for collection, reason in failures.items()]
    lines += ["", "## dbt build", ""]
    if dbt_summary is None:
        lines.append("dbt was not run.")
    else:
        lines.append(
            f"`dbt {dbt_summary.get('command', 'build')}` selection "
            f"`{dbt_summary.get('select') or 'all'}` on target `{dbt_summary.get('target')}`: "
            + ", ".join(f"{count} {status}" for status, count in dbt_summary["statuses"].items())
        )
        for node, count in (dbt_summary.get("warnings") or {}).items():
            lines.append(f"- warning: `{node}` ({count} rows)")
        if dbt_summary.get("failed_nodes"):
            lines += [f"- failed: `{node}`" for node in dbt_summary["failed_nodes"]]
    if marts:
        lines += ["", "## Published marts", ""]
        lines += [f"- `{table}`" for table in marts]
    if metrics:
        lines += ["", "## Headline numbers", "", "| metric | value |", "|---|---|"]
        lines += [f"| {name} | {_format_metric(value)} |" for name, value in metrics.items()]
    return "\n".join(lines) + "\n"


def _format_metric(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{key}: {_format_metric(item)}" for key, item in value.items())
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def publish_summary(markdown: str) -> None:
    create_markdown_artifact(
        markdown=markdown,
        key=SUMMARY_ARTIFACT_KEY,
        description="dbt build summary and headline numbers",
    )
