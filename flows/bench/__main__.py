"""`make bench`: run every benchmark module and write one JSON report.

Each module in this package exposes `run(quick: bool = False) -> dict[str, Any]` and measures one
stage of the path (demo API -> extract/load -> dbt -> end to end). Figures depend on the machine, so
the report records the machine next to them; comparisons are ratios taken within the same run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Order follows the data's path.
MODULES: tuple[str, ...] = (
    "demo_api",
    "extract_load",
    "dbt_build",
    "report",
    "end_to_end",
    "stack",
)


def _machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }


def _flatten(prefix: str, value: Any, rows: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, rows)
    elif isinstance(value, float):
        rows.append((prefix, f"{value:,.3f}"))
    else:
        rows.append((prefix, str(value)))


def _print_table(report: dict[str, Any]) -> None:
    rows: list[tuple[str, str]] = []
    _flatten("", report["results"], rows)
    width = max((len(name) for name, _ in rows), default=10)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small preset smoke run (seconds)")
    parser.add_argument(
        "--only", nargs="*", choices=MODULES, help="run only these benchmark modules"
    )
    parser.add_argument("--output", type=Path, default=Path("bench-results.json"))
    args = parser.parse_args(argv)

    selected = args.only or list(MODULES)
    report: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(),
        "quick": args.quick,
        "machine": _machine(),
        "results": {},
    }
    failed = False
    for name in selected:
        try:
            module = importlib.import_module(f"flows.bench.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"flows.bench.{name}":
                raise
            report["results"][name] = {"status": "not available"}
            continue
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        try:
            figures = module.run(quick=args.quick)
            report["results"][name] = {**figures, "bench_seconds": time.perf_counter() - started}
        except Exception as error:  # a failing benchmark is reported, the others still run
            failed = True
            traceback.print_exc()
            report["results"][name] = {"status": "failed", "error": repr(error)}

    args.output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print()
    _print_table(report)
    print(f"\nreport written to {args.output}")
    json.dump(report, sys.stdout, default=str)
    print()
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
