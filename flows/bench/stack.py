"""Benchmark: the production-shaped stack (deployments/stack) against the embedded default.

A fresh stack in a temporary folder on free ports (the download cache is the machine's):
- `stack_start_seconds`: `up` from nothing to Trino answering queries (`install_seconds` of it:
  checking / fetching / unpacking the Java artifacts; near 0 on a warm cache);
- `end_to_end_seconds`: `python flows/main.py` on the stack (demo API -> REST catalog on S3 ->
  dbt build on Trino -> marts), wall time of the CLI;
- `dbt_build_seconds`: `dbt build --full-refresh` of every node on the same raw data, on Trino
  (dbt-trino) and on DuckDB (local target, the same documents loaded into a local lakehouse),
  and their ratio.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

from flows.demo.server import serve_demo
from flows.lakehouse.catalog import clear_catalog_cache
from flows.lakehouse.load import LoadMode, load_collection
from flows.settings import ALL_COLLECTIONS, REPO_ROOT, load_settings
from flows.transform.dbt_project import run_dbt

ADMIN = {"payload_email": "admin@example.com", "payload_password": "demo-password"}


def _timed_build(settings: Any) -> float:
    started = time.perf_counter()
    run_dbt(settings, ["build", "--full-refresh"])
    return time.perf_counter() - started


def run(quick: bool = False) -> dict[str, Any]:
    from deployments.stack.__main__ import down, up
    from deployments.stack.config import isolated_config

    preset = "small" if quick else "large"
    config = isolated_config("bench-stack-")
    stack_dir = config.dir
    demo = serve_demo(preset).start()
    try:
        started = time.perf_counter()
        timings = up(config)
        stack_start = time.perf_counter() - started

        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(config.pipeline_environment())
        env.update(
            {
                "PAYLOAD_CMS_URL": demo.url,
                "PAYLOAD_EMAIL": ADMIN["payload_email"],
                "PAYLOAD_PASSWORD": ADMIN["payload_password"],
                "PAYLOAD_REQUEST_CONCURRENCY": "9",
                "PREFECT_HOME": str(stack_dir / "client-home"),
            }
        )
        started = time.perf_counter()
        cli = subprocess.run(
            [sys.executable, "flows/main.py"],
            env=env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=3600,
        )
        end_to_end = time.perf_counter() - started
        if cli.returncode != 0:
            raise RuntimeError(
                f"flow on the stack failed: {cli.stdout[-2000:]}{cli.stderr[-2000:]}"
            )

        trino_settings = load_settings(
            **{k.lower(): v for k, v in env.items() if k.isupper()},
            s3_access_key_id=config.s3_access_key,
            s3_secret_access_key=config.s3_secret_key,
        )
        trino_build = _timed_build(trino_settings)

        local = load_settings(
            payload_cms_url=demo.url, lakehouse_dir=stack_dir / "duckdb-lakehouse", **ADMIN
        )
        for collection in ALL_COLLECTIONS:
            load_collection(local, collection, LoadMode.FULL_REFRESH, None)
        duckdb_build = _timed_build(local)
    finally:
        demo.stop()
        down(config)
        clear_catalog_cache()
    return {
        "preset": preset,
        "stack_start_seconds": round(stack_start, 3),
        "install_seconds": round(timings.get("install_s", 0.0), 3),
        "end_to_end_seconds": round(end_to_end, 3),
        "dbt_build_seconds": {
            "trino": round(trino_build, 3),
            "duckdb": round(duckdb_build, 3),
            "trino_over_duckdb": round(trino_build / duckdb_build, 2) if duckdb_build else None,
        },
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
