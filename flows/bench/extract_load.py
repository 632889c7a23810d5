"""Benchmark: Payload REST -> dlt -> Iceberg (the extract/load stage).

Large preset (~50,000 documents), demo API in its own process (`DemoProcess`), local SQLite
catalog in a temporary folder, default settings (page size 1000, depth 0). Measures:
- the download-only lower bound: the same keyset pages, fetched and JSON-parsed, nothing else;
- a full load of the nine collections (sequential, and fanned out over 4 threads as the Prefect
  flow does), compared with 15 s and with 2x the download bound;
- an incremental run after 1% of the documents changed (target 3 s) and a no-change run (2 s);
- peak memory (ru_maxrss of a fresh loader process) at scale 1 and scale 10 (< 1.5 GB,
  sub-linear).
The server is warmed up once before timing (its first read of a collection builds caches), so
download and load are compared on the same warm server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from flows.demo.process import DemoProcess
from flows.lakehouse.catalog import clear_catalog_cache, prepare_lakehouse
from flows.lakehouse.load import LoadMode, LoadReport, load_collection
from flows.settings import ALL_COLLECTIONS, Settings, load_settings
from flows.source.payload import PayloadClient

FULL_LOAD_TARGET_S = 15.0
INCREMENTAL_TARGET_S = 3.0
NO_CHANGE_TARGET_S = 2.0
PEAK_MEMORY_TARGET_MB = 1536.0
FAN_OUT = 4

_MEMORY_PROBE = """
import json, resource, sys, time
from flows.lakehouse.catalog import prepare_lakehouse
from flows.lakehouse.load import load_collection
from flows.settings import ALL_COLLECTIONS, load_settings
settings = load_settings(payload_cms_url=sys.argv[1], lakehouse_dir=sys.argv[2],
                         payload_email="admin@example.com", payload_password="demo-password")
prepare_lakehouse(settings)
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
started = time.perf_counter()
documents = sum(load_collection(settings, c).documents_read for c in ALL_COLLECTIONS)
print(json.dumps({"documents": documents, "seconds": time.perf_counter() - started,
                  "baseline_mb": baseline,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _settings(url: str, lakehouse: Path) -> Settings:
    return load_settings(
        payload_cms_url=url,
        lakehouse_dir=lakehouse,
        payload_email="admin@example.com",
        payload_password="demo-password",  # noqa: S106  (the demo API's documented default)
    )


def _download_only(settings: Settings) -> tuple[float, int]:
    client = PayloadClient.from_settings(settings)
    started = time.perf_counter()
    documents = 0
    for collection in ALL_COLLECTIONS:
        for page in client.iter_pages(collection, since="1970-01-01T00:00:00.000Z"):
            documents += len(page.docs)
    client.close()
    return time.perf_counter() - started, documents


def _load_all(settings: Settings, mode: LoadMode, parallel: bool) -> tuple[float, list[LoadReport]]:
    started = time.perf_counter()
    if parallel:
        with ThreadPoolExecutor(FAN_OUT) as pool:
            reports = list(pool.map(lambda c: load_collection(settings, c, mode), ALL_COLLECTIONS))
    else:
        reports = [load_collection(settings, c, mode) for c in ALL_COLLECTIONS]
    return time.perf_counter() - started, reports


def _memory(preset: str, scale: int) -> dict[str, Any]:
    with DemoProcess(preset, scale=scale) as demo, tempfile.TemporaryDirectory() as folder:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        out = subprocess.run(
            [sys.executable, "-c", _MEMORY_PROBE, demo.url, folder],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        ).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result["scale"] = scale
    return result


def run(quick: bool = False) -> dict[str, Any]:
    preset = "small" if quick else "large"
    results: dict[str, Any] = {"preset": preset, "page_size": 1000, "depth": 0}
    with DemoProcess(preset, scale=1) as demo, tempfile.TemporaryDirectory() as folder:
        clear_catalog_cache()
        settings = _settings(demo.url, Path(folder) / "lakehouse")
        prepare_lakehouse(settings)
        warm_s, documents = _download_only(settings)
        download_s, _ = _download_only(settings)
        results["documents"] = documents
        results["server_warm_up_s"] = round(warm_s, 3)
        results["download_only_s"] = round(download_s, 3)

        full_s, reports = _load_all(settings, LoadMode.INCREMENTAL, parallel=False)
        assert sum(r.documents_read for r in reports) == documents
        results["full_load_sequential_s"] = round(full_s, 3)
        results["full_load_sequential_docs_per_s"] = round(documents / full_s)

        # Same full load, fanned out as the Prefect flow does, into a fresh lakehouse.
        clear_catalog_cache()
        fanned = _settings(demo.url, Path(folder) / "lakehouse-fanout")
        prepare_lakehouse(fanned)
        fan_s, _ = _load_all(fanned, LoadMode.INCREMENTAL, parallel=True)
        results[f"full_load_fan_out_{FAN_OUT}_s"] = round(fan_s, 3)
        best_full = min(full_s, fan_s)
        results["full_load"] = {
            "seconds": round(best_full, 3),
            "target_s": FULL_LOAD_TARGET_S,
            "ratio_to_download_only": round(best_full / download_s, 2),
            "target_ratio": 2.0,
            "meets_targets": best_full <= FULL_LOAD_TARGET_S and best_full <= 2 * download_s,
        }

        changed = httpx.post(
            f"{demo.url}/api/_demo/changes",
            json={"fraction": 0.01, "seed": 99},
            headers={"Authorization": f"JWT {_admin_token(demo.url)}"},
            timeout=60,
        ).json()
        changes = sum(
            len(ids)
            for kind in ("created", "updated", "trashed")
            for ids in changed.get(kind, {}).values()
        )
        # Both lakehouses hold the same data: measure the same change set read one collection
        # at a time and fanned out as the Prefect flow runs it.
        inc_s, inc_reports = _load_all(settings, LoadMode.INCREMENTAL, parallel=False)
        fan_inc_s, fan_inc_reports = _load_all(fanned, LoadMode.INCREMENTAL, parallel=True)
        assert sum(r.documents_read for r in fan_inc_reports) == sum(
            r.documents_read for r in inc_reports
        )
        best_inc = min(inc_s, fan_inc_s)
        results["incremental_1pct"] = {
            "seconds": round(best_inc, 3),
            "sequential_s": round(inc_s, 3),
            f"fan_out_{FAN_OUT}_s": round(fan_inc_s, 3),
            "documents_changed_upstream": changes,
            "documents_read": sum(r.documents_read for r in inc_reports),
            "target_s": INCREMENTAL_TARGET_S,
            "meets_target": best_inc <= INCREMENTAL_TARGET_S,
        }
        rec_s, rec_reports = _load_all(settings, LoadMode.RECONCILE, parallel=False)
        results["reconcile_s"] = round(rec_s, 3)
        results["reconcile_deleted"] = sum(r.deleted for r in rec_reports)
        none_s, none_reports = _load_all(settings, LoadMode.INCREMENTAL, parallel=False)
        results["no_change"] = {
            "seconds": round(none_s, 3),
            "commits": sum(r.committed for r in none_reports),
            "target_s": NO_CHANGE_TARGET_S,
            "meets_target": none_s <= NO_CHANGE_TARGET_S,
        }
        fan_none_s, _ = _load_all(settings, LoadMode.INCREMENTAL, parallel=True)
        results[f"no_change_fan_out_{FAN_OUT}_s"] = round(fan_none_s, 3)

    scales = (1, 2) if quick else (1, 10)
    memory = [_memory(preset, scale) for scale in scales]
    growth = memory[1]["peak_mb"] / memory[0]["peak_mb"]
    results["peak_memory"] = {
        "runs": memory,
        "target_mb": PEAK_MEMORY_TARGET_MB,
        "growth_factor": round(growth, 2),
        "scale_factor": scales[1] / scales[0],
        "meets_target": memory[-1]["peak_mb"] < PEAK_MEMORY_TARGET_MB and growth < scales[1],
    }
    return results


def _admin_token(url: str) -> str:
    response = httpx.post(
        f"{url}/api/users/login",
        json={"email": "admin@example.com", "password": "demo-password"},
        timeout=30,
    )
    response.raise_for_status()
    token: str = response.json()["token"]
    return token


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
