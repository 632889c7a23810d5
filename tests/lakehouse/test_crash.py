"""Crash safety with a real process kill: SIGKILL the loader mid-load, rerun, exact equality."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pyiceberg.exceptions import NoSuchTableError

from flows.demo.changes import apply_change_batch
from flows.demo.server import DemoServer
from flows.lakehouse.catalog import clear_catalog_cache, get_catalog
from flows.lakehouse.load import table_identifier
from flows.settings import ALL_COLLECTIONS

from .conftest import assert_all_equal, prepared, settings_for

pytestmark = pytest.mark.slow

LOADER = """
import sys
from flows.lakehouse.load import LoadMode, load_collection
from flows.settings import ALL_COLLECTIONS, load_settings
settings = load_settings(
    payload_cms_url=sys.argv[1], lakehouse_dir=sys.argv[2], payload_page_size=20,
    payload_email="admin@example.com", payload_password="demo-password",
)
print("started", flush=True)
for collection in ALL_COLLECTIONS:
    load_collection(settings, collection, LoadMode(sys.argv[3]))
    print("loaded", collection, flush=True)
print("done", flush=True)
"""


def child_env() -> dict[str, str]:
    """Children compile their imports once into a private bytecode cache (the environment may
    set PYTHONDONTWRITEBYTECODE, which makes every child recompile dlt/pyiceberg/sqlalchemy)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "payload-lakehouse-pycache")
    env["PYTHONUNBUFFERED"] = "1"
    # The loader reads the demo store's id type (the tests' stores: PAYLOAD_TEST_ID_TYPE).
    env["PAYLOAD_ID_TYPE"] = os.environ.get("PAYLOAD_TEST_ID_TYPE") or "int"
    return env


def run_loader(
    url: str, lakehouse: Path, mode: str, kill_at: tuple[str, float] | None
) -> list[str]:
    """Run a load in a child process; with `kill_at=(line, seconds)`, SIGKILL it `seconds` after
    it printed `line` (e.g. "loaded orders": in the middle of the next collection)."""
    process = subprocess.Popen(
        [sys.executable, "-c", LOADER, url, str(lakehouse), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=child_env(),
    )
    assert process.stdout is not None
    lines = [process.stdout.readline().strip()]  # "started": imports done
    assert lines == ["started"], lines
    if kill_at is None:
        lines += [line.strip() for line in process.stdout]
        assert process.wait(timeout=300) == 0
        return lines
    marker, delay = kill_at
    while marker not in lines:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.strip())
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    lines += [line.strip() for line in process.stdout]
    return lines


def test_sigkill_mid_load_then_rerun_equals_source(
    make_demo_server: Callable[..., DemoServer], lakehouse_dir: Path
) -> None:
    server = make_demo_server()
    # Slow pages so that the kills land inside reads and commits of different collections.
    server.faults = "latency:0.5:delay=0.02,seed=5"
    settings = prepared(settings_for(server, lakehouse_dir))
    outputs = []
    kill_points = [("loaded orders", 0.3), ("loaded transactions", 0.2)]
    for kill_at in kill_points:
        outputs.append(run_loader(server.url, lakehouse_dir, "incremental", kill_at))
        assert "done" not in outputs[-1], "the loader finished before it was killed"
        clear_catalog_cache()
        for collection in ALL_COLLECTIONS:  # whatever landed is whole: no duplicate ids
            try:
                table = get_catalog(settings).load_table(table_identifier(settings, collection))
            except NoSuchTableError:  # not reached by the killed run yet
                continue
            ids = table.scan(selected_fields=("id",)).to_arrow().column("id").to_pylist()
            assert len(ids) == len(set(ids)), collection
        apply_change_batch(server.store, seed=len(outputs), fraction=0.02)
    # The second run resumed from what the first committed (cursor in the lakehouse).
    assert "loaded orders" in outputs[0] and "loaded transactions" in outputs[1]
    assert "loaded carts" not in outputs[0]
    server.faults = None
    run_loader(server.url, lakehouse_dir, "reconcile", None)
    clear_catalog_cache()
    assert_all_equal(settings, server)
