"""The DuckDB build lock: a second holder waits, then fails clearly; the lock dies with its
holder (flows/transform/lock.py). Reliability scenario 23 runs two real builds at once."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from flows.settings import Settings, load_settings
from flows.transform.lock import DuckDBLockTimeoutError, duckdb_lock, lock_path


def test_a_second_build_waits_for_the_first(tmp_path: Path) -> None:
    settings = load_settings(lakehouse_dir=tmp_path)
    order: list[str] = []
    with duckdb_lock(settings):
        waiter = threading.Thread(target=lambda: _hold(settings, order))
        waiter.start()
        time.sleep(1.0)
        order.append("first done")
    waiter.join(timeout=10)
    assert order == ["first done", "second holds"]


def _hold(settings: Settings, order: list[str]) -> None:
    with duckdb_lock(settings, timeout_seconds=10):
        order.append("second holds")


def test_a_build_that_cannot_get_the_lock_fails_clearly(tmp_path: Path) -> None:
    settings = load_settings(lakehouse_dir=tmp_path)
    with duckdb_lock(settings):
        started = time.monotonic()
        with (
            pytest.raises(DuckDBLockTimeoutError) as raised,
            duckdb_lock(settings, timeout_seconds=1),
        ):
            pytest.fail("got a lock that another build holds")
        assert 1 <= time.monotonic() - started < 5
    message = str(raised.value)
    assert "DUCKDB_LOCK_TIMEOUT_SECONDS" in message and str(lock_path(settings)) in message
    assert "pid " in message  # who holds it


def test_the_lock_dies_with_its_holder(tmp_path: Path) -> None:
    settings = load_settings(lakehouse_dir=tmp_path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time, fcntl, os; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)",
            str(lock_path(settings)),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    with pytest.raises(DuckDBLockTimeoutError), duckdb_lock(settings, timeout_seconds=0.5):
        pass
    holder.kill()  # SIGKILL: no cleanup runs, the kernel drops the lock
    holder.wait(timeout=10)
    with duckdb_lock(settings, timeout_seconds=5):
        pass
