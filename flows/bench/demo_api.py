"""Benchmark: read every collection of the demo API at `depth=0&limit=1000`.

The server runs in its own process (`DemoProcess`, as the pipeline uses it) and an httpx client
pages through all nine collections one page at a time, parsing every page with orjson. Reported:
documents/s for the first read after start (the figure compared with issue 2's target of 20,000
documents/s on the large preset), a second identical read, and a keyset read on (updatedAt, id)
as the incremental extract does. The server serialises every document once while starting
(counted in `server_startup_seconds`). The 1-minute load average is recorded: on a shared 2-core
machine other processes change the figures a lot.
"""

from __future__ import annotations

import os
import time
from typing import Any

import httpx
import orjson

from flows.demo.process import DemoProcess
from flows.settings import ALL_COLLECTIONS

TARGET_DOCS_PER_SECOND = 20_000
COLLECTIONS = ALL_COLLECTIONS


def read_everything(
    client: httpx.Client, keyset: bool = False, page_size: int = 1000
) -> tuple[int, int]:
    """(documents, bytes) read from every collection, by page number or by keyset on
    (updatedAt, id) as an incremental extract does."""
    documents = 0
    total_bytes = 0
    for collection in COLLECTIONS:
        page = 1
        last: dict[str, Any] | None = None
        while True:
            params: dict[str, Any] = {"depth": 0, "limit": page_size, "trash": "true"}
            if keyset:
                params["sort"] = "updatedAt,id"
                if last is not None:
                    params["where[or][0][updatedAt][greater_than]"] = last["updatedAt"]
                    params["where[or][1][and][0][updatedAt][equals]"] = last["updatedAt"]
                    params["where[or][1][and][1][id][greater_than]"] = last["id"]
            else:
                params["page"] = page
            response = client.get(f"/api/{collection}", params=params)
            response.raise_for_status()
            total_bytes += len(response.content)
            body = orjson.loads(response.content)
            documents += len(body["docs"])
            if not body["hasNextPage"]:
                break
            page += 1
            last = body["docs"][-1]
    return documents, total_bytes


def run(quick: bool = False) -> dict[str, Any]:
    preset = "small" if quick else "large"
    started = time.perf_counter()
    with DemoProcess(preset=preset) as server:
        startup = time.perf_counter() - started
        login = httpx.post(
            f"{server.url}/api/users/login",
            json={"email": "admin@example.com", "password": "demo-password"},
        )
        login.raise_for_status()
        headers = {"Authorization": f"JWT {login.json()['token']}"}
        passes: dict[str, dict[str, float]] = {}
        with httpx.Client(base_url=server.url, headers=headers, timeout=120) as client:
            for label, keyset in (("first", False), ("second", False), ("keyset", True)):
                began = time.perf_counter()
                documents, size = read_everything(client, keyset=keyset)
                seconds = time.perf_counter() - began
                passes[label] = {
                    "documents": documents,
                    "megabytes": round(size / 1e6, 2),
                    "seconds": round(seconds, 3),
                    "docs_per_second": round(documents / seconds, 1),
                }
    first = passes["first"]["docs_per_second"]
    return {
        "preset": preset,
        "request": "depth=0&limit=1000&trash=true, all nine collections, one client",
        "server_startup_seconds": round(startup, 2),
        "passes": passes,
        "docs_per_second": first,
        "target_docs_per_second": TARGET_DOCS_PER_SECOND,
        "meets_target": first >= TARGET_DOCS_PER_SECOND,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
