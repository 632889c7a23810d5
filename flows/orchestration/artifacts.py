"""The run's story in the Prefect UI: the loads, the marts and a summary a data engineer can read
at a glance (freshness, row counts, snapshots, dbt's slowest models, where the data is).

The UI renders table cells and markdown as markdown: a cell never starts with `-`, `*` or `#`
(it would become a bullet or a heading), never holds a `|`, and stays short enough that the
table fits a screen. Counts carry thousands separators; Iceberg snapshot ids are strings (64-bit
ids do not survive JavaScript's doubles).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort

from flows.lakehouse.load import LoadReport
from flows.orchestration.caching import without_credentials
from flows.report.render import Report, instant
from flows.settings import CatalogType, DbtTarget, Settings

LOADS_ARTIFACT_KEY = "payload-lakehouse-loads"
MARTS_ARTIFACT_KEY = "payload-lakehouse-marts"
SUMMARY_ARTIFACT_KEY = "payload-lakehouse-summary"
REPORT_ARTIFACT_KEY = "payload-lakehouse-report"

# Headline metrics (flows.transform.dbt_project.headline_metrics) as a reader names them.
METRIC_LABELS = {
    "orders": "Orders",
    "revenue_orders": "Revenue-bearing orders (paid, completed)",
    "revenue_usd": "Revenue (USD)",
    "first_order_date": "First order",
    "last_order_date": "Last order",
    "customers": "Customers",
    "customers_with_orders": "Customers with an order",
    "customers_with_revenue": "Customers with revenue",
    "customers_by_segment": "Customers by RFM segment",
}
# dbt's node types and statuses in words.
NODE_TYPE_WORDS = {
    "model": ("model", "models"),
    "seed": ("seed", "seeds"),
    "snapshot": ("snapshot", "snapshots"),
    "test": ("data test", "data tests"),
    "unit_test": ("unit test", "unit tests"),
}
STATUS_WORDS = {
    "success": "built",
    "pass": "passed",
    "fail": "FAILED",
    "error": "ERROR",
    "runtime error": "ERROR",
    "warn": "warned",
    "skipped": "skipped",
}


# --- formatting ------------------------------------------------------------------------------


def count(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def cursor_cell(encoded: str | None, missing: str) -> str:
    """`2026-11-30T12:00:00.000Z|3000` -> `2026-11-30 12:00:00 UTC, id 3000` (`missing` if None)."""
    if not encoded:
        return missing
    updated_at, _, doc_id = encoded.rpartition("|")
    return f"{_instant(updated_at)}, id {doc_id}" if updated_at else encoded


def _instant(iso: str) -> str:
    try:
        parsed = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    return f"{parsed.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def cursor_time(encoded: str | None) -> datetime | None:
    """The `updatedAt` instant of an encoded cursor (the newest document loaded)."""
    if not encoded:
        return None
    updated_at = encoded.rpartition("|")[0]
    try:
        return datetime.fromisoformat(updated_at.replace("Z", "+00:00"))
    except ValueError:
        return None


def age(since: datetime | None, now: datetime) -> str:
    """`3 d 4 h`, `2 h 5 min`, `40 s`: how long ago, coarse enough to read at a glance."""
    if since is None:
        return "n/a"
    seconds = max(int((now - since).total_seconds()), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min"
    return f"{seconds} s"


def _change(now: int, before: int | None) -> str:
    if before is None:
        return "new"
    delta = now - before
    return "no change" if delta == 0 else f"{delta:+,}"


# --- the loads table -------------------------------------------------------------------------


def load_rows(
    reports: Sequence[LoadReport],
    failures: Mapping[str, str],
    rejections: Mapping[str, tuple[int, float]] | None = None,
) -> list[dict[str, Any]]:
    """One row per collection: counts, rejected share, time, cursor before and after, the new
    snapshot; failures with their cause (and, for a load refused by the rejection ceiling, its
    rejects).

    Seconds sit before the cursors so that they stay on screen; the cursors are one column each.
    """
    rejections = rejections or {}
    rows: list[dict[str, Any]] = [
        {
            "collection": report.collection,
            "status": "loaded" if report.committed else "no change",
            "read": count(report.documents_read),
            "inserted": count(report.inserted),
            "updated": count(report.updated),
            "deleted": count(report.deleted),
            "rejected": count(report.rejected),
            "rejected share": f"{report.rejected_share:.2%}",
            "seconds": f"{report.seconds:,.1f}",
            "cursor before": cursor_cell(report.cursor_before, "none (first load)"),
            "cursor after": cursor_cell(report.cursor_after, "none (no documents)"),
            "snapshot id": "" if report.snapshot_id is None else str(report.snapshot_id),
        }
        for report in reports
    ]
    rows.extend(
        {
            "collection": collection,
            "status": f"FAILED: {reason}",
            "read": "",
            "inserted": "",
            "updated": "",
            "deleted": "",
            "rejected": (count(rejections[collection][0]) if collection in rejections else ""),
            "rejected share": (
                f"{rejections[collection][1]:.2%}" if collection in rejections else ""
            ),
            "seconds": "",
            "cursor before": "",
            "cursor after": "",
            "snapshot id": "",
        }
        for collection, reason in failures.items()
    )
    return rows


def publish_load_table(
    reports: Sequence[LoadReport],
    failures: Mapping[str, str],
    rejections: Mapping[str, tuple[int, float]] | None = None,
) -> None:
    create_table_artifact(
        table=load_rows(reports, failures, rejections),
        key=LOADS_ARTIFACT_KEY,
        description="Payload -> Iceberg: one row per collection loaded by this run "
        "(cursor = newest updatedAt and id loaded)",
    )


# --- the marts table -------------------------------------------------------------------------


@dataclass(frozen=True)
class MartRow:
    mart: str
    rows: int
    before: int | None  # row count in the previous run's marts artifact
    snapshot_id: str | None


def previous_mart_counts() -> dict[str, int]:
    """Row counts per mart from the latest `payload-lakehouse-marts` artifact (the previous run
    on this Prefect server), read before this run publishes its own."""
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[MARTS_ARTIFACT_KEY])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    latest = found[0] if found else None
    if latest is None or latest.data is None:
        return {}
    data = latest.data if isinstance(latest.data, list) else json.loads(str(latest.data))
    counts: dict[str, int] = {}
    for row in data:
        try:
            counts[str(row["mart"])] = int(str(row["rows"]).replace(",", ""))
        except (KeyError, TypeError, ValueError):
            continue
    return counts


def mart_rows(
    described: Mapping[str, Mapping[str, Any]], previous: Mapping[str, int]
) -> list[MartRow]:
    return [
        MartRow(
            mart=mart,
            rows=int(info["rows"]),
            before=previous.get(mart),
            snapshot_id=info.get("snapshot_id"),
        )
        for mart, info in sorted(described.items())
    ]


def publish_mart_table(rows: Sequence[MartRow]) -> None:
    create_table_artifact(
        table=[
            {
                "mart": row.mart,
                "rows": count(row.rows),
                "change since last run": _change(row.rows, row.before),
                "snapshot id": row.snapshot_id or "",
            }
            for row in rows
        ],
        key=MARTS_ARTIFACT_KEY,
        description="dbt marts: rows, change since the previous run, Iceberg snapshot",
    )


# --- the summary -----------------------------------------------------------------------------


def location_lines(settings: Settings) -> list[str]:
    """Where the data is and how to query it; URLs without credentials, never a secret."""
    if settings.iceberg_catalog_type is CatalogType.SQL:
        uri = settings.iceberg_catalog_url or f"sqlite:///{settings.lakehouse_path / 'catalog.db'}"
    else:
        uri = settings.iceberg_catalog_url or ""
    lines = [
        f"- **Iceberg catalog** `{settings.iceberg_catalog_name}` "
        f"({settings.iceberg_catalog_type}): `{without_credentials(uri)}`",
        f"- **Namespaces** raw `{settings.iceberg_namespace}`, staging "
        f"`{settings.iceberg_staging_namespace}`, marts `{settings.iceberg_marts_namespace}`",
    ]
    if settings.dbt_target is DbtTarget.LOCAL:
        lines.append(
            f"- **Query** DuckDB file `{settings.duckdb_path}`: "
            f"`duckdb -readonly {settings.duckdb_path}`"
        )
    else:
        # Display text, not executed; the names are validated settings.
        example = f"select * from {settings.trino_catalog}.{settings.iceberg_marts_namespace}"  # noqa: S608
        lines.append(
            f"- **Query** Trino `{settings.trino_http_scheme}://{settings.trino_host}:"
            f"{settings.trino_port}`, catalog `{settings.trino_catalog}` "
            f"(`{example}.fact_orders`)"
        )
    return lines


def dbt_result_line(dbt_summary: Mapping[str, Any]) -> str:
    """`25 models and 1 seed built; 100 data tests and 12 unit tests passed; 1 data test warned`."""
    by_type: Mapping[str, Mapping[str, int]] = dbt_summary.get("by_type") or {}
    by_status: dict[str, list[str]] = {}
    for kind, statuses in by_type.items():
        if kind == "operation":  # dbt's on-run-start hook (registers the raw tables): plumbing
            continue
        singular, plural = NODE_TYPE_WORDS.get(kind, (kind, kind + "s"))
        for status, number in statuses.items():
            noun = singular if number == 1 else plural
            by_status.setdefault(status, []).append(f"{number:,} {noun}")
    if not by_status:  # a summary without per-type counts
        return ", ".join(
            f"{number:,} {STATUS_WORDS.get(status, status)}"
            for status, number in dbt_summary.get("statuses", {}).items()
        )
    parts = []
    for status, phrases in by_status.items():
        listed = (
            phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
        )
        parts.append(f"{listed} {STATUS_WORDS.get(status, status)}")
    return "; ".join(parts)


def summary_markdown(
    *,
    mode: str,
    reports: Sequence[LoadReport],
    failures: Mapping[str, str],
    dbt_summary: Mapping[str, Any] | None,
    dbt_not_run: str | None,
    marts: Sequence[MartRow],
    metrics: Mapping[str, Any] | None,
    settings: Settings,
    report_line: str | None = None,
    now: datetime | None = None,
) -> str:
    """The run at a glance. `dbt_not_run`: a sentence saying why dbt did not run or failed;
    `report_line`: where the analytics report is, or why it was not rendered."""
    now = now or datetime.now(UTC)
    lines = ["# Payload -> Iceberg lakehouse run", ""]
    read = sum(r.documents_read for r in reports)
    rejected = sum(r.rejected for r in reports)
    lines.append(
        f"**Mode** {mode} · **collections loaded** {len(reports)}"
        f" · **failed** {len(failures)}"
        f" · **documents read** {read:,}"
        f" · **rejected** {rejected:,} ({rejected / read if read else 0:.1%})"
    )
    if failures:
        lines += ["", "## Failed", ""]
        lines += [f"- **{name}**: {reason}" for name, reason in failures.items()]

    if reports:
        lines += [
            "",
            "## Freshness of the raw tables",
            "",
            "| raw table | newest updatedAt loaded | age | Iceberg snapshot |",
            "|---|---|---|---|",
        ]
        for report in sorted(reports, key=lambda r: r.table):
            newest = cursor_time(report.cursor_after)
            lines.append(
                f"| {report.table} "
                f"| {_instant(newest.isoformat()) if newest else 'no documents'} "
                f"| {age(newest, now)} | {report.snapshot_id or 'none'} |"
            )

    lines += ["", "## dbt", ""]
    if dbt_summary is None:
        lines.append(f"{dbt_not_run or 'dbt did not run'}.")
    else:
        lines.append(
            f"dbt {dbt_summary.get('command', 'build')} of "
            f"{dbt_summary.get('select') or 'every model'} on {dbt_summary.get('target')}: "
            + dbt_result_line(dbt_summary)
            + "."
        )
        if reports and not any(report.committed for report in reports):
            lines.append(
                "Nothing changed in the raw tables since the last run; dbt ran anyway (the flow "
                "always builds after a load; incremental models keep that cheap)."
            )
        if dbt_summary.get("finished_at"):
            finished = _instant(str(dbt_summary["finished_at"]))
            lines.append(f"Marts built at {finished}.")
        for node, count in (dbt_summary.get("warnings") or {}).items():
            lines.append(f"- warning: `{node}` ({count} rows)")
        if dbt_summary.get("failed_nodes"):
            lines += ["", *[f"- failed: {node}" for node in dbt_summary["failed_nodes"]]]
        slowest = dbt_summary.get("slowest") or []
        if slowest:
            lines += [
                "",
                "Slowest (dbt's own timings):",
                "",
                "| node | seconds |",
                "|---|---|",
            ]
            lines += [
                f"| {node['type']} {node['node']} | {node['seconds']:.2f} |" for node in slowest
            ]

    if marts:
        lines += [
            "",
            "## Marts",
            "",
            "| mart | rows | change since last run | Iceberg snapshot |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {row.mart} | {row.rows:,} | {_change(row.rows, row.before)} "
            f"| {row.snapshot_id or 'none'} |"
            for row in marts
        ]
    if metrics:
        lines += ["", "## Headline numbers", "", "| metric | value |", "|---|---|"]
        lines += [
            f"| {METRIC_LABELS.get(name, name.replace('_', ' ').capitalize())} "
            f"| {_format_metric(value)} |"
            for name, value in metrics.items()
        ]
    lines += ["", "## Where the data is", "", *location_lines(settings)]
    if report_line:
        lines.append(f"- **Analytics report** {report_line}")
    return "\n".join(lines) + "\n"


def _format_metric(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{key}: {_format_metric(item)}" for key, item in value.items())
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    if value is None:
        return "n/a"
    return str(value)


def publish_summary(markdown: str) -> None:
    create_markdown_artifact(
        markdown=markdown,
        key=SUMMARY_ARTIFACT_KEY,
        description="The run at a glance: freshness, dbt, marts, headline numbers, locations",
    )


def report_markdown(report: Report) -> str:
    """The analytics report in a Prefect artifact: headline numbers, where the full report
    is, and the main charts as inline images."""
    numbers = report.headline
    if report.empty:
        lines = ["# Analytics report", "", "No data yet: the marts hold no orders."]
    else:
        average = numbers["average_order_usd"]
        lines = [
            "# Analytics report",
            "",
            "| revenue | orders | average order | customers | orders placed | last loaded |",
            "|---:|---:|---:|---:|---|---|",
            f"| ${numbers['revenue_usd']:,.2f} | {numbers['orders']:,} "
            f"({numbers['revenue_orders']:,} revenue-bearing) | "
            f"{'n/a' if average is None else f'${average:,.2f}'} | {numbers['customers']:,} | "
            f"{numbers['first_order_date']} to {numbers['last_order_date']} | "
            f"{instant(numbers['loaded_at'])} |",
        ]
    lines += [
        "",
        f"Full report (all charts, opens offline): [{report.html_path.name}]"
        f"({report.html_path.as_uri()}) in `{report.html_path.parent}`",
        f"(rendered from the marts on {numbers['engine']} in {report.seconds:.1f} s).",
    ]
    for key, image in report.thumbnails.items():
        encoded = base64.b64encode(image).decode("ascii")
        lines += ["", f"![{key}](data:image/png;base64,{encoded})"]
    return "\n".join(lines) + "\n"


def publish_report(report: Report) -> None:
    create_markdown_artifact(
        markdown=report_markdown(report),
        key=REPORT_ARTIFACT_KEY,
        description="Analytics report: headline numbers, main charts, link to the full page",
    )
