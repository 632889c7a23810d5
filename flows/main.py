"""The `payload-lakehouse` Prefect flow and its command line.

    python flows/main.py --help

The flow fans out one load task per Payload collection (extract + one atomic Iceberg commit
each), waits for them, runs `dbt build` through prefect-dbt (one task run per dbt node),
publishes the marts and reports: a table and a markdown artifact, and events. The same file is
the entrypoint of every deployment in prefect.yaml (`flows/main.py:payload_lakehouse`).

With no PAYLOAD_CMS_URL, the command line starts the built-in demo Payload API in a subprocess,
points the flow at it and stops it afterwards. No Prefect server is needed: without
PREFECT_API_URL, Prefect starts a temporary local one (ephemeral mode).
"""

from __future__ import annotations

import os

# Before Prefect is imported: its settings are read once. A fresh ephemeral database can take
# longer than Prefect's default to migrate on a small machine (~1 min on 2 busy cores), and
# dlt's and our own loggers should reach the flow run's logs in the UI.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "dlt,flows")

import argparse
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.futures import PrefectFuture, wait
from prefect.states import State
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import exponential_backoff

from flows.lakehouse.errors import RejectionCeilingError
from flows.lakehouse.load import LoadMode, LoadReport
from flows.orchestration.artifacts import (
    MartRow,
    mart_rows,
    previous_mart_counts,
    publish_load_table,
    publish_mart_table,
    publish_summary,
    summary_markdown,
)
from flows.orchestration.assets import raw_table_asset, raw_table_key, table_asset_key
from flows.orchestration.blocks import run_settings
from flows.orchestration.caching import (
    lakehouse_identifier,
    load_cache_options,
    result_storage,
    source_identifier,
)
from flows.orchestration.dbt import dbt_build, downstream_selector
from flows.orchestration.events import (
    DbtFollowUp,
    emit_marts_built,
    emit_raw_loaded,
)
from flows.orchestration.logs import keep_prefect_log_format
from flows.orchestration.retries import failure_exception
from flows.orchestration.tasks import (
    analytics_report_task,
    describe_marts_task,
    ensure_request_limit,
    headline_metrics_task,
    lakehouse_state,
    load_collection_task,
    prepare_lakehouse_task,
    publish_marts_task,
    source_freshness_task,
)
from flows.orchestration.writer_slot import lakehouse_writer
from flows.settings import (
    ALL_COLLECTIONS,
    COLLECTION_TABLES,
    ConfigError,
    DbtTarget,
    Settings,
    load_settings,
)
from flows.transform.dbt_project import applied_environment
from flows.transform.lock import duckdb_lock


class PipelineError(RuntimeError):
    """The run finished with failures; the message names each one and why (never a secret)."""


def failure_reason(state: State[Any]) -> str:
    """One line: the exception type and message of a failed task or subflow."""
    try:
        state.result(raise_on_failure=True)
    except BaseException as error:
        # Long enough for an actionable message (what failed, why, the ways out), still one line.
        return f"{type(error).__name__}: {error}".splitlines()[0][:1000]
    return state.message or state.name or "failed"


@flow(
    name="payload-lakehouse",
    description="Payload CMS -> Apache Iceberg (dlt) -> dbt marts, one task per collection.",
    task_runner=ThreadPoolTaskRunner(max_workers=9),  # type: ignore[arg-type]  # invariant generic
    validate_parameters=True,
)
def payload_lakehouse(
    collections: list[str] | None = None,
    mode: LoadMode = LoadMode.INCREMENTAL,
    since: datetime | None = None,
    run_dbt: bool = True,
    dbt_select: str | None = None,
    dbt_target: DbtTarget | None = None,
    allow_partial: bool = False,
    change_id: str | None = None,
    force_deletes: bool = False,
) -> dict[str, Any]:
    """Load Payload collections into Iceberg, then build the dbt marts.

    Args:
        collections: Payload collection slugs to load; None = PAYLOAD_COLLECTIONS (all nine by
            default); [] = load nothing (dbt only).
        mode: incremental (updatedAt cursor), full_refresh (rebuild the tables) or reconcile
            (also remove documents hard-deleted in Payload).
        since: backfill: load documents updated at or after this instant (incremental mode).
        run_dbt: run `dbt build` after the loads.
        dbt_select: dbt selection; None = everything after a full load, or the models
            downstream of the loaded tables after a partial one.
        dbt_target: local (DuckDB) or trino; None = DBT_TARGET.
        allow_partial: run dbt even if a collection failed to load.
        change_id: id of the change that triggered this run (e.g. the Payload event id); part of
            the load cache key, so a new change always reloads while a retry of the same run
            still skips what it already loaded.
        force_deletes: let a reconcile / full refresh delete more than LOAD_MAX_DELETE_SHARE.
    """
    keep_prefect_log_format()  # undo a dlt formatter left on Prefect's handler in this process
    overrides: dict[str, Any] = {"dbt_target": dbt_target} if dbt_target else {}
    overrides.update({"load_force_deletes": True} if force_deletes else {})
    settings = run_settings(**overrides)
    selected = selected_collections(settings, collections)
    # One writer at a time across every deployment and CLI run (flows/orchestration/writer_slot.py).
    with lakehouse_writer(settings):
        reports, failures, rejections = load_raw_layer(
            settings, selected, LoadMode(mode), since, change_id
        )
        plan = plan_dbt(run_dbt, selected, reports, failures, allow_partial)
        if selected:
            emit_raw_loaded(
                settings.iceberg_namespace,
                reports,
                sorted(failures),
                dbt=plan.follow_up,
                asset_keys={c: raw_table_key(settings, c) for c in selected},
            )
        publish_load_table(reports, failures, rejections)
        if plan.blocked:
            get_run_logger().warning("%s", plan.not_run)
        marts = MartsOutcome(not_run=plan.not_run)
        if plan.will_run:
            marts = build_marts(settings, selected, reports, dbt_select)
            if marts.failure:
                failures["dbt build"] = marts.failure
    return report_run(settings, str(mode), reports, failures, marts)


def report_run(
    settings: Settings,
    mode: str,
    reports: Sequence[LoadReport],
    failures: Mapping[str, str],
    marts: MartsOutcome,
) -> dict[str, Any]:
    """Publish the summary artifact; raise PipelineError naming every failure, else return the
    run's result."""
    publish_summary(
        summary_markdown(
            mode=mode,
            reports=reports,
            failures=failures,
            dbt_summary=marts.summary,
            dbt_not_run=marts.not_run,
            marts=marts.table,
            metrics=marts.metrics,
            settings=settings,
            report_line=marts.report_line,
        )
    )
    if failures:
        raise PipelineError(
            "payload-lakehouse failed: "
            + "; ".join(f"{name}: {reason}" for name, reason in failures.items())
            + ("" if reports else "; nothing was loaded")
        )
    return {
        "collections": [report.collection for report in reports],
        "documents_read": sum(report.documents_read for report in reports),
        "committed": [report.collection for report in reports if report.committed],
        "dbt": marts.summary,
        "marts": marts.names,
        "report": marts.report_path,
    }


def selected_collections(settings: Settings, collections: list[str] | None) -> list[str]:
    """The collections to load: the parameter, else PAYLOAD_COLLECTIONS; unknown slugs refused."""
    selected = list(settings.payload_collections if collections is None else collections)
    unknown = sorted(set(selected) - set(ALL_COLLECTIONS))
    if unknown:
        raise ConfigError(
            f"unknown collection(s) {unknown}; expected a subset of {', '.join(ALL_COLLECTIONS)}"
        )
    return selected


@dataclass(frozen=True)
class DbtPlan:
    will_run: bool
    blocked: bool  # dbt was wanted but a failed collection stops it
    follow_up: DbtFollowUp  # the raw.loaded event's label
    not_run: str | None  # why dbt does not run (a sentence for the summary)


def plan_dbt(
    run_dbt: bool,
    selected: Sequence[str],
    reports: Sequence[LoadReport],
    failures: Mapping[str, str],
    allow_partial: bool,
) -> DbtPlan:
    """Whether dbt runs after the loads, and if not, why."""
    wants = run_dbt and (bool(reports) or not selected)
    will_run = wants and (not failures or allow_partial)
    not_run: str | None = None
    if not run_dbt:
        not_run = "dbt was skipped: the run was started with run_dbt=false"
    elif not wants:
        not_run = "dbt did not run: nothing was loaded (every collection failed)"
    elif not will_run:
        not_run = (
            f"dbt did not run: the raw layer is partial ({', '.join(sorted(failures))} failed); "
            "allow_partial=true builds on it anyway"
        )
    follow_up: DbtFollowUp = (
        "running" if will_run else "blocked" if run_dbt and failures else "skipped"
    )
    return DbtPlan(will_run, wants and not will_run, follow_up, not_run)


@dataclass
class MartsOutcome:
    summary: dict[str, Any] | None = None
    names: list[str] = field(default_factory=list)
    table: list[MartRow] = field(default_factory=list)
    metrics: dict[str, Any] | None = None
    failure: str | None = None
    not_run: str | None = None
    report_path: str | None = None  # the analytics report's HTML page
    report_line: str | None = None  # where the report is, or why it was not rendered


def build_marts(
    settings: Settings,
    selected: Sequence[str],
    reports: Sequence[LoadReport],
    dbt_select: str | None,
) -> MartsOutcome:
    """`dbt build`, then (local target) publish the marts, describe them, emit marts.built.

    On the local target the whole step holds the DuckDB file's lock (flows/transform/lock.py),
    which also keeps out builds that do not go through this flow's writer slot."""
    loaded = [report.collection for report in reports]
    select = dbt_select if dbt_select else (downstream_selector(loaded) if selected else None)
    target = str(settings.dbt_target)
    local = settings.dbt_target is DbtTarget.LOCAL
    with duckdb_lock(settings) if local else nullcontext():
        dbt_state = dbt_build(select=select, dbt_target=target, return_state=True)
        if not dbt_state.is_completed():
            reason = failure_reason(dbt_state)
            return MartsOutcome(failure=reason, not_run=f"dbt failed: {reason}")
        summary: dict[str, Any] = dbt_state.result()
        # Local target: the marts are copied into Iceberg; on Trino dbt built them there.
        published = publish_marts_task(target)
        names = published or list(summary.get("marts", []))
        previous = previous_mart_counts()
        table = mart_rows(describe_marts_task(target, names), previous)
        publish_mart_table(table)
        metrics = headline_metrics_task(target)
    emit_marts_built(
        settings.iceberg_marts_namespace,
        {mart: table_asset_key(settings, *mart.split(".", 1)) for mart in names},
        {
            **{k: summary[k] for k in ("command", "select", "target", "nodes")},
            "statuses": summary["statuses"],
            "snapshot_ids": {row.mart: row.snapshot_id for row in table},
            "rows": {row.mart: row.rows for row in table},
        },
    )
    report_path, report_line = render_report(settings)
    return MartsOutcome(
        summary=summary,
        names=names,
        table=table,
        metrics=metrics,
        report_path=report_path,
        report_line=report_line,
    )


def render_report(settings: Settings) -> tuple[str | None, str | None]:
    """Render the analytics report after the marts: (its path, a line for the summary). The
    marts are already published, so a report that fails to render is a warning, not a failed
    run; the summary says why."""
    if not settings.report_enabled:
        return None, "not rendered (REPORT_ENABLED=false)"
    state = analytics_report_task(str(settings.dbt_target), return_state=True)
    if state.is_completed():
        path: str = state.result()
        return path, f"`{path}`"
    reason = failure_reason(state)
    get_run_logger().warning("the analytics report was not rendered: %s", reason)
    return None, f"not rendered: {reason}"


def load_raw_layer(
    settings: Settings,
    collections: Sequence[str],
    mode: LoadMode,
    since: datetime | None,
    change_id: str | None,
) -> tuple[list[LoadReport], dict[str, str], dict[str, tuple[int, float]]]:
    """Fan out one load task per collection and wait; each one commits on its own.

    Returns the reports, the failures (collection -> reason) and, for loads refused by the
    rejection ceiling, their (rejected, share) for the artifact."""
    if not collections:
        return [], {}, {}
    ensure_request_limit(settings.payload_request_concurrency)
    prepare_lakehouse_task()

    lakehouse = lakehouse_identifier(settings)
    storage = result_storage(settings)
    storage_options: dict[str, Any] = {"result_storage": storage} if storage else {}
    load_options: dict[str, Any] = {
        "retries": settings.load_task_retries,
        "retry_delay_seconds": exponential_backoff(settings.load_task_retry_delay_seconds),
        **load_cache_options(settings),
        **storage_options,
    }
    # One identity request to the source for all collections (part of the cache key).
    source = source_identifier(settings, probe=True)
    versions = lakehouse_state.with_options(**storage_options)(collections, lakehouse)
    # A cached load is reused only if Payload still answers as it did (one request each).
    freshness = source_freshness_task(collections, mode, source, versions)
    # One task per collection, each materializing its raw table's asset (the key dbt's asset
    # events use for the same table), all running in parallel on the thread pool.
    loads = [
        load_collection_task(raw_table_asset(settings, collection))
        .with_options(**load_options)
        .submit(
            collection=collection,
            mode=mode,
            since=since,
            table_state=versions[collection],
            source=source,
            lakehouse=lakehouse,
            asset_key=raw_table_key(settings, collection),
            change_id=change_id,
            force_deletes=settings.load_force_deletes,
            freshness=freshness[collection],
        )
        for collection in collections
    ]
    wait(loads)
    return load_outcomes(collections, loads)


def load_outcomes(
    collections: Sequence[str], loads: Sequence[PrefectFuture[LoadReport]]
) -> tuple[list[LoadReport], dict[str, str], dict[str, tuple[int, float]]]:
    """The reports of the loads that completed, the failures' reasons and the rejections."""
    reports: list[LoadReport] = []
    failures: dict[str, str] = {}
    rejections: dict[str, tuple[int, float]] = {}
    for collection, future in zip(collections, loads, strict=True):
        if future.state.is_completed():
            reports.append(future.result())
            continue
        failures[collection] = failure_reason(future.state)
        error = failure_exception(future.state)
        if isinstance(error, RejectionCeilingError):
            rejections[collection] = (error.rejected, round(error.share, 4))
    return reports, failures, rejections


# --- Command line ----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python flows/main.py",
        description="Load Payload CMS collections into Apache Iceberg and build the dbt marts "
        "(the payload-lakehouse Prefect flow). With no PAYLOAD_CMS_URL, the built-in demo "
        "Payload API is started and used.",
    )
    parser.add_argument(
        "--collections",
        type=_collections_arg,
        default=None,
        help="comma-separated collection slugs (default: PAYLOAD_COLLECTIONS, i.e. all nine: "
        + ",".join(ALL_COLLECTIONS)
        + ")",
    )
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument(
        "--full-refresh", action="store_true", help="reload every document, rebuilding the tables"
    )
    modes.add_argument(
        "--reconcile",
        action="store_true",
        help="incremental load plus removal of documents hard-deleted in Payload",
    )
    parser.add_argument(
        "--since",
        type=_datetime_arg,
        default=None,
        help="backfill: load documents updated at or after this ISO-8601 instant",
    )
    parser.add_argument("--skip-dbt", action="store_true", help="load only; do not run dbt")
    parser.add_argument(
        "--target",
        choices=[target.value for target in DbtTarget],
        default=None,
        help="dbt target (default: DBT_TARGET, local = DuckDB)",
    )
    parser.add_argument(
        "--select",
        default=None,
        help="dbt selection, e.g. 'fact_orders+' (default: all, or downstream of the loaded "
        "collections when --collections is a subset)",
    )
    parser.add_argument(
        "--force-deletes",
        action="store_true",
        help="let a reconcile / full refresh delete more than LOAD_MAX_DELETE_SHARE of a table",
    )
    parser.add_argument(
        "--allow-partial",
        action="store_true",
        help="run dbt even if a collection failed to load",
    )
    parser.add_argument(
        "--preset",
        choices=["small", "medium", "large"],
        default=None,
        help="demo API data size when no PAYLOAD_CMS_URL is set (default: DEMO_PRESET, small)",
    )
    return parser.parse_args(argv)


def _collections_arg(value: str) -> list[str]:
    slugs = [part.strip() for part in value.split(",") if part.strip()]
    unknown = [slug for slug in slugs if slug not in COLLECTION_TABLES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown collection(s) {', '.join(unknown)}; choose from {', '.join(ALL_COLLECTIONS)}"
        )
    return slugs


def _datetime_arg(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 instant: {value!r}") from error
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@contextmanager
def payload_source(settings: Settings, preset: str | None) -> Iterator[str]:
    """Yield a description of the source; start the demo API when no Payload is configured.

    The demo runs in a subprocess (no GIL contention with the loads). The flow's tasks read
    their settings from the environment, so the demo's URL and admin login are put there.
    """
    if not settings.uses_demo_api:
        yield str(settings.payload_cms_url)
        return
    from flows.demo.process import DemoProcess

    chosen = preset or settings.demo_preset
    print(f"No PAYLOAD_CMS_URL set: starting the demo Payload API (preset {chosen}) ...")
    demo_env = {
        "PAYLOAD_CMS_URL": "",
        "PAYLOAD_EMAIL": settings.demo_admin_email,
        "PAYLOAD_PASSWORD": settings.demo_admin_password.get_secret_value(),
        # The loader expects the demo's id type (DEMO_ID_TYPE).
        "PAYLOAD_ID_TYPE": settings.demo_id_type.value,
    }
    # Demo credentials only (DEMO_ADMIN_*), so passing them as arguments exposes nothing real.
    login = (
        "--admin-email",
        demo_env["PAYLOAD_EMAIL"],
        "--admin-password",
        demo_env["PAYLOAD_PASSWORD"],
    )
    with DemoProcess(
        chosen,
        settings.demo_scale,
        settings.demo_seed,
        id_type=settings.demo_id_type.value,
        extra_args=login,
    ) as demo:
        demo_env["PAYLOAD_CMS_URL"] = demo.url
        with applied_environment(demo_env):
            yield f"demo Payload API at {demo.url} (preset {chosen}, stopped after the run)"


def print_results(settings: Settings, result: dict[str, Any]) -> None:
    lakehouse = settings.lakehouse_path
    print()
    print("Done.")
    print(
        f"  loaded      {len(result['collections'])} collections, "
        f"{result['documents_read']:,} documents read"
    )
    print(f"  lakehouse   {lakehouse}")
    print(
        f"  iceberg     namespaces {settings.iceberg_namespace} (raw), "
        f"{settings.iceberg_marts_namespace} (marts)"
    )
    if result["marts"]:
        print(f"  marts       {', '.join(result['marts'])}")
    if result.get("report"):
        print(f"  report      {result['report']}  (open it in a browser; `make report` redraws it)")
    if settings.dbt_target is DbtTarget.TRINO and result["dbt"]:
        # Printed, not executed; catalog and namespace are validated settings.
        query = f"select * from {settings.iceberg_marts_namespace}.fact_orders limit 5"  # noqa: S608
        print(
            f"  trino       {settings.trino_http_scheme}://{settings.trino_host}:"
            f"{settings.trino_port}, catalog {settings.trino_catalog}"
        )
        print()
        print("Try a query with the trino client (.stack/bin/trino on the local stack):")
        print(
            f"  trino --server {settings.trino_http_scheme}://{settings.trino_host}:"
            f'{settings.trino_port} --catalog {settings.trino_catalog} --execute "{query}"'
        )
    if settings.dbt_target is DbtTarget.LOCAL and result["dbt"]:
        duckdb_file = settings.duckdb_path
        print(f"  duckdb      {duckdb_file}")
        print()
        print("Try a query (duckdb CLI, or the Python package from .venv):")
        # Printed, not executed; the namespace is validated as an identifier by Settings.
        query = f"select * from {settings.iceberg_marts_namespace}.fact_orders limit 5"  # noqa: S608
        print(f'  duckdb -readonly {duckdb_file} "{query}"')
        print(
            f"  .venv/bin/python -c \"import duckdb; duckdb.connect('{duckdb_file}', "
            f"read_only=True).sql('{query}').show()\""
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = load_settings(**({"dbt_target": args.target} if args.target else {}))
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    mode = (
        LoadMode.FULL_REFRESH
        if args.full_refresh
        else LoadMode.RECONCILE
        if args.reconcile
        else LoadMode.INCREMENTAL
    )
    with payload_source(settings, args.preset) as source:
        print(f"Source: {source}")
        state = payload_lakehouse(
            collections=args.collections,
            mode=mode,
            since=args.since,
            run_dbt=not args.skip_dbt,
            dbt_select=args.select,
            dbt_target=DbtTarget(args.target) if args.target else None,
            allow_partial=args.allow_partial,
            force_deletes=args.force_deletes,
            return_state=True,
        )
    if not state.is_completed():
        print(f"\nRun failed: {failure_reason(state)}", file=sys.stderr)
        return 1
    print_results(settings, state.result())
    return 0


if __name__ == "__main__":
    sys.exit(main())
