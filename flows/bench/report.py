"""Benchmark: rendering the analytics report from the marts (large preset; `quick`: small).

The raw tables are loaded by the real extract/load from the demo API and built by `dbt build`
into a temporary lakehouse; then the report is rendered three times:
- `read_seconds`: the report's queries on the marts (DuckDB), best of three;
- `render_seconds`: charts -> HTML page + one PNG per chart, best of three;
- `first_render_seconds`: the first full `build_report` in the process (includes building the
  inlined Vega bundle once);
- `html_bytes`, `png_bytes`: what the report weighs on disk.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from flows.demo.generator import generate
from flows.demo.server import DemoServer
from flows.demo.store import Store
from flows.lakehouse.load import LoadMode, load_collection, prepare_lakehouse
from flows.report.datasets import read_report_data
from flows.report.render import build_report, write_report
from flows.settings import ALL_COLLECTIONS, load_settings
from flows.transform.dbt_project import run_dbt


def run(quick: bool = False) -> dict[str, Any]:
    preset = "small" if quick else "large"
    dataset = generate(preset)
    store = Store(dataset.collections, dataset.reference_time)
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp, DemoServer(store) as server:
        settings = load_settings(
            lakehouse_dir=Path(tmp) / "lakehouse",
            payload_cms_url=server.url,
            payload_email="admin@example.com",
            payload_password="demo-password",  # noqa: S106  (the demo API's public default)
            dbt_target="local",
        )
        prepare_lakehouse(settings)
        for collection in ALL_COLLECTIONS:
            load_collection(settings, collection, LoadMode.FULL_REFRESH)
        run_dbt(settings, ["build"])

        started = time.perf_counter()
        report = build_report(settings)
        first = time.perf_counter() - started
        reads, renders = [], []
        for _ in range(3):
            started = time.perf_counter()
            data = read_report_data(settings)
            reads.append(time.perf_counter() - started)
            started = time.perf_counter()
            write_report(data, settings.report_path)
            renders.append(time.perf_counter() - started)
        return {
            "preset": preset,
            "orders": report.headline["orders"],
            "first_render_seconds": round(first, 3),
            "read_seconds": round(min(reads), 3),
            "render_seconds": round(min(renders), 3),
            "charts": len(report.images),
            "html_bytes": report.html_path.stat().st_size,
            "png_bytes": sum(path.stat().st_size for path in report.images.values()),
        }


if __name__ == "__main__":
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
