"""dbt through prefect-dbt: every dbt node becomes its own Prefect task run.

Retries follow prefect-dbt's recommendation for `PrefectDbtRunner` (its node tasks are not
retried or cached individually): retry the *flow* and, on a retry, invoke `dbt retry`, which
re-executes only the nodes that failed or were skipped in the previous invocation (from
`run_results.json`) with the previous selection.

Each dbt-build flow run has its own target path, `<lakehouse>/dbt/target/runs/<flow run id>`
(its retries share it), so `dbt retry` only ever reads results written by *this* run. When the
first attempt failed before dbt wrote any (e.g. the catalog or the DuckDB file was unavailable),
the retry runs the build again: reading an earlier run's all-success results instead would
retry zero nodes and report success without building anything. The newest RUNS_KEPT run
folders are kept; dbt's partial-parse cache is carried from one run folder to the next.
"""

from __future__ import annotations

import shutil
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect_dbt import PrefectDbtRunner, PrefectDbtSettings

from flows.orchestration.blocks import run_settings
from flows.settings import ALL_COLLECTIONS, COLLECTION_TABLES
from flows.transform.dbt_project import DBT_PROJECT_DIR, applied_environment, dbt_environment

FAILED_STATUSES = {"error", "fail", "runtime error"}
# Node types that build a relation, and how many of the slowest to report.
BUILDING_TYPES = {"model", "seed", "snapshot"}
SLOWEST_COUNT = 5
# Run folders kept under <target>/runs (the others are deleted), and dbt's parse cache file.
RUNS_KEPT = 5
PARTIAL_PARSE_FILE = "partial_parse.msgpack"


class DbtBuildError(RuntimeError):
    """dbt reported failed nodes (after the flow's retries, which run `dbt retry`)."""


def downstream_selector(collections: Sequence[str]) -> str | None:
    """dbt selection for a partial load: the models downstream of the loaded raw tables.

    None (build everything) when every collection was loaded. Source names are matched with a
    wildcard so the selector does not depend on the dbt source's name.
    """
    if not collections or set(collections) >= set(ALL_COLLECTIONS):
        return None
    return " ".join(f"source:*.{COLLECTION_TABLES[c]}+" for c in collections)


def _value(item: Any) -> str:
    return str(getattr(item, "value", item))


def summarise(
    result: Any, command: str, select: str | None, target: str, marts_schema: str | None = None
) -> dict[str, Any]:
    """What a dbt invocation did, from its dbtRunnerResult: counts per node status and per node
    type, the failed nodes, the slowest models (dbt's own timings: the node task runs' times in
    the Prefect UI are not the nodes' execution times, see docs/orchestration.md) and the mart
    tables it built."""
    node_results = getattr(getattr(result, "result", None), "results", None) or []
    statuses = Counter(_value(r.status) for r in node_results)
    by_type: dict[str, Counter[str]] = defaultdict(Counter)
    for r in node_results:
        by_type[_value(r.node.resource_type)][_value(r.status)] += 1
    failed = [r.node.unique_id for r in node_results if _value(r.status) in FAILED_STATUSES]
    building = [r for r in node_results if _value(r.node.resource_type) in BUILDING_TYPES]
    slowest = sorted(building, key=lambda r: float(r.execution_time or 0.0), reverse=True)
    marts = sorted(
        f"{r.node.schema}.{r.node.name}"
        for r in building
        if _value(r.node.resource_type) == "model"
        and r.node.schema == marts_schema
        and r.node.config.materialized not in {"view", "ephemeral"}
        and _value(r.status) == "success"
    )
    # warn-severity tests (e.g. customers_not_loaded): node -> number of offending rows
    warnings = {
        r.node.unique_id: int(getattr(r, "failures", 0) or 0)
        for r in node_results
        if _value(r.status) == "warn"
    }
    return {
        "command": command,
        "select": select,
        "target": target,
        "success": bool(result.success),
        "nodes": len(node_results),
        "statuses": dict(statuses),
        "by_type": {kind: dict(counts) for kind, counts in sorted(by_type.items())},
        "failed_nodes": failed,
        "slowest": [
            {
                "node": r.node.name,
                "type": _value(r.node.resource_type),
                "seconds": round(float(r.execution_time or 0.0), 2),
            }
            for r in slowest[:SLOWEST_COUNT]
        ],
        "marts": marts,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "warnings": warnings,
    }


def run_results_exist(target_path: Path) -> bool:
    return (target_path / "run_results.json").exists()


def run_target_path(base: Path, run_id: str) -> Path:
    """This run's dbt target folder under `base/runs`, created with the newest parse cache;
    older run folders beyond RUNS_KEPT are removed."""
    runs = base / "runs"
    path = runs / run_id
    if not path.exists():
        path.mkdir(parents=True)
        cache = base / PARTIAL_PARSE_FILE
        if cache.exists():
            shutil.copy2(cache, path / PARTIAL_PARSE_FILE)
    others = sorted(
        (p for p in runs.iterdir() if p.is_dir() and p != path),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for stale in others[RUNS_KEPT - 1 :]:
        shutil.rmtree(stale, ignore_errors=True)
    return path


def keep_parse_cache(run_path: Path, base: Path) -> None:
    """Hand this run's parse cache on to the next run (dbt re-parses only changed files)."""
    cache = run_path / PARTIAL_PARSE_FILE
    if cache.exists():
        shutil.copy2(cache, base / PARTIAL_PARSE_FILE)


def _run_name() -> str:
    """`dbt-build (local)`: a name that says what the subflow is, not a random one."""
    target = flow_run.parameters.get("dbt_target") or "default target"
    return f"dbt-build ({target})"


@flow(name="dbt-build", flow_run_name=_run_name, retries=1, retry_delay_seconds=5)
def dbt_build(select: str | None = None, dbt_target: str | None = None) -> dict[str, Any]:
    """`dbt build` (first attempt) or `dbt retry` (flow retries) on the configured target."""
    settings = run_settings(dbt_target=dbt_target) if dbt_target else run_settings()
    target = str(settings.dbt_target)
    logger = get_run_logger()
    environment = dbt_environment(settings)
    # dbt's artifacts live under LAKEHOUSE_DIR, one folder per dbt-build run: `dbt retry` reads
    # this run's previous attempt's run_results.json, never an earlier run's.
    base = Path(environment["DBT_TARGET_PATH"])
    target_path = run_target_path(base, str(flow_run.get_id() or "no-run-id"))
    environment["DBT_TARGET_PATH"] = str(target_path)
    dbt_settings = PrefectDbtSettings(
        project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR, target_path=target_path
    )
    retrying = flow_run.run_count > 1 and run_results_exist(target_path)
    if flow_run.run_count > 1 and not retrying:
        logger.info("The previous attempt left no run results: running the build again")
    if retrying:
        args, command = ["retry", "--target", target], "retry"
    else:
        args, command = ["build", "--target", target], "build"
        if select:
            args += ["--select", *select.split()]
    logger.info("dbt %s (target %s, selection %s)", command, target, select or "all")
    with applied_environment(environment):
        runner = PrefectDbtRunner(settings=dbt_settings, raise_on_failure=False)
        result = runner.invoke(args)
    keep_parse_cache(target_path, base)
    summary = summarise(result, command, select, target, settings.iceberg_marts_namespace)
    if not result.success:
        cause = getattr(result, "exception", None)
        detail = f": {cause}" if cause else ""
        failed = ", ".join(summary["failed_nodes"]) or "no node results"
        raise DbtBuildError(f"dbt {command} failed ({failed}){detail}")
    return summary
