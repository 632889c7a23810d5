"""One dbt build at a time on a DuckDB file: an exclusive lock on `<duckdb file>.lock`.

The writer slot (flows/orchestration/writer_slot.py) serialises flow runs that share a Prefect
server; this lock also covers what it cannot see: `python -m flows.transform build` without
Prefect, runs on another Prefect server, LAKEHOUSE_WRITER_LIMIT left empty. DuckDB itself lets
only one process open a file for writing, so without the lock the second build fails halfway
with "Could not set lock on file". With it, the second build waits its turn
(DUCKDB_LOCK_TIMEOUT_SECONDS), then fails with `DuckDBLockTimeoutError` having touched nothing.

`flock` locks belong to the open file, so they also exclude a second build in the same process
(another thread), and the kernel releases them when the holder dies, even by SIGKILL.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from flows.settings import Settings

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5


class DuckDBLockTimeoutError(RuntimeError):
    """Another dbt build held the DuckDB file for longer than DUCKDB_LOCK_TIMEOUT_SECONDS."""


def lock_path(settings: Settings) -> Path:
    return settings.duckdb_path.with_name(settings.duckdb_path.name + ".lock")


@contextmanager
def duckdb_lock(settings: Settings, timeout_seconds: float | None = None) -> Iterator[None]:
    """Hold the DuckDB file's build lock for the block; wait for it first."""
    timeout = settings.duckdb_lock_timeout_seconds if timeout_seconds is None else timeout_seconds
    path = lock_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _acquire(descriptor, path, timeout)
        # Who holds it, for the message of a build that waits (never used for locking).
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"pid {os.getpid()} since {datetime.now(UTC):%H:%M:%S} UTC".encode())
        try:
            yield
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


def _acquire(descriptor: int, path: Path, timeout: float) -> None:
    started = time.monotonic()
    announced = False
    while True:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass
        else:
            if announced:
                log.info("got the DuckDB lock after %.1f s", time.monotonic() - started)
            return
        holder = _holder(path)
        if not announced:
            log.info("waiting for the DuckDB lock %s, held by another dbt build (%s)", path, holder)
            announced = True
        if time.monotonic() - started >= timeout:
            raise DuckDBLockTimeoutError(
                f"another dbt build ({holder}) held {path} for more than {timeout:g} s "
                "(DUCKDB_LOCK_TIMEOUT_SECONDS): this build did not start and changed nothing. "
                "Wait for it to finish, or raise DUCKDB_LOCK_TIMEOUT_SECONDS."
            )
        time.sleep(POLL_SECONDS)


def _holder(path: Path) -> str:
    try:
        return path.read_text(errors="replace").strip() or "unknown process"
    except OSError:
        return "unknown process"
