"""Benchmark: `dbt build` (every model, seed, data test and unit test) on the local target.

The raw tables are loaded first by the real extract/load (`flows.lakehouse.load`) from the demo
API (large preset; `quick=True`: small), into a temporary lakehouse. Then:
- `parse_seconds`: the first full parse of the project (dbt caches it: later runs re-parse
  only what changed);
- `build_seconds`: `dbt build` with the parse cached, as every scheduled run after the first
  (target: <= 30 s on the large preset), wall time of the whole invocation;
  `build_nodes_seconds`: dbt's own elapsed time for running the nodes (no start-up/parse);
- `cold_build_seconds`: the same build without a cached parse (`--no-partial-parse`; skipped
  when `quick`);
- `incremental_run_seconds`: after a change batch (1% of the store) and a reconcile load, an
  incremental `dbt run` of the marts;
- `slowest_models`: the three slowest models of the build, from run_results.json.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from flows.demo.changes import apply_change_batch
from flows.demo.generator import generate
from flows.demo.server import DemoServer
from flows.lakehouse.load import LoadMode, load_collection, prepare_lakehouse
from flows.settings import ALL_COLLECTIONS, Settings, load_settings
from flows.transform.dbt_project import dbt_environment, run_dbt

BUILD_TARGET_SECONDS = 30.0


def _load_all(settings: Settings, mode: LoadMode) -> float:
    started = time.perf_counter()
    for collection in ALL_COLLECTIONS:
        load_collection(settings, collection, mode)
    return time.perf_counter() - started


def _timed(settings: Settings, args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds of the whole invocation, dbt's own elapsed time for the nodes)."""
    started = time.perf_counter()
    result = run_dbt(settings, args, env=env)
    elapsed = float(getattr(result.result, "elapsed_time", 0.0) or 0.0)
    return time.perf_counter() - started, elapsed


def _slowest_models(target_path: Path, count: int = 3) -> list[dict[str, Any]]:
    results = json.loads((target_path / "run_results.json").read_text())["results"]
    models = [r for r in results if r["unique_id"].startswith("model.")]
    models.sort(key=lambda r: r["execution_time"], reverse=True)
    return [
        {"model": r["unique_id"].split(".")[-1], "seconds": round(r["execution_time"], 3)}
        for r in models[:count]
    ]


def _node_counts(target_path: Path) -> dict[str, int]:
    results = json.loads((target_path / "run_results.json").read_text())["results"]
    counts: dict[str, int] = {}
    for result in results:
        kind = result["unique_id"].split(".")[0]
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def run(quick: bool = False) -> dict[str, Any]:
    preset = "small" if quick else "large"
    dataset = generate(preset)
    store = dataset.store()
    with tempfile.TemporaryDirectory(prefix="bench-dbt-") as tmp, DemoServer(store) as server:
        settings = load_settings(
            lakehouse_dir=Path(tmp) / "lakehouse",
            payload_cms_url=server.url,
            payload_email="admin@example.com",
            payload_password="demo-password",  # noqa: S106  (the demo API's public default)
            dbt_target="local",
        )
        prepare_lakehouse(settings)
        load_seconds = _load_all(settings, LoadMode.FULL_REFRESH)
        env = dbt_environment(settings)
        target_path = Path(env["DBT_TARGET_PATH"])

        parse_seconds, _ = _timed(settings, ["parse"], env)
        build_seconds, build_nodes_seconds = _timed(settings, ["build"], env)
        slowest = _slowest_models(target_path)
        nodes = _node_counts(target_path)
        cold_build_seconds: float | None = None
        if not quick:  # the smoke test skips the second full build
            cold_build_seconds, _ = _timed(settings, ["build", "--no-partial-parse"], env)

        apply_change_batch(store, seed=7, fraction=0.01)
        _load_all(settings, LoadMode.RECONCILE)
        env = dbt_environment(settings)  # new snapshots -> new metadata locations
        incremental_seconds, _ = _timed(settings, ["run", "--select", "marts"], env)

    orders = len(dataset.collections["orders"])
    return {
        "preset": preset,
        "orders": orders,
        "documents": sum(len(docs) for docs in dataset.collections.values()),
        "raw_load_seconds": round(load_seconds, 3),
        "parse_seconds": round(parse_seconds, 3),
        "build_seconds": round(build_seconds, 3),
        "build_nodes_seconds": round(build_nodes_seconds, 3),
        "build_target_seconds": BUILD_TARGET_SECONDS,
        "build_within_target": build_seconds <= BUILD_TARGET_SECONDS,
        "cold_build_seconds": None if cold_build_seconds is None else round(cold_build_seconds, 3),
        "incremental_run_seconds": round(incremental_seconds, 3),
        "nodes": nodes,
        "slowest_models": slowest,
    }


if __name__ == "__main__":
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
