"""TEST ONLY: deterministic fault points inside a load, for the reliability scenarios 15-19.

`LOAD_FAULT_HOOK=<point>:<collection>` (unset in production: every function here is a no-op):

- `pause-before-write`: the load of `<collection>` has read everything (pages, id listing) and
  stops just before its write: it creates `<LAKEHOUSE_DIR>/fault-hook/<collection>.paused` and
  waits (at most 10 minutes) until `<collection>.resume` exists there. A test commits another
  run meanwhile: a race that sleeps could only make likely, made certain.
- `kill-before-catalog-commit`: the process SIGKILLs itself after the catalog wrote the new
  metadata file of `<collection>`'s table and before it swaps the table's pointer to it (the
  SQL catalog; the REST catalog writes metadata on the server).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

from pyiceberg.catalog import Catalog

from flows.lakehouse.iceberg_internals import after_metadata_written
from flows.settings import Settings

log = logging.getLogger(__name__)

PAUSE_BEFORE_WRITE = "pause-before-write"
KILL_BEFORE_CATALOG_COMMIT = "kill-before-catalog-commit"
MAX_PAUSE_SECONDS = 600.0


def hook_dir(settings: Settings) -> Path:
    return settings.lakehouse_path / "fault-hook"


def _armed(settings: Settings, point: str, collection: str) -> bool:
    return settings.load_fault_hook == f"{point}:{collection}"


def before_write(settings: Settings, collection: str, catalog: Catalog) -> None:
    """Called by a load after reading and before writing `collection`."""
    if _armed(settings, KILL_BEFORE_CATALOG_COMMIT, collection):
        table_dir = f"/{settings.table_name(collection)}/metadata/"
        after_metadata_written(catalog, lambda path: _kill_if(table_dir in path, path))
    if not _armed(settings, PAUSE_BEFORE_WRITE, collection):
        return
    folder = hook_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    resume = folder / f"{collection}.resume"
    (folder / f"{collection}.paused").touch()
    log.warning("LOAD_FAULT_HOOK: %s paused before its write (test only)", collection)
    deadline = time.monotonic() + MAX_PAUSE_SECONDS
    while not resume.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def _kill_if(matches: bool, path: str) -> None:
    if matches:
        log.warning("LOAD_FAULT_HOOK: SIGKILL after writing %s (test only)", Path(path).name)
        logging.shutdown()
        os.kill(os.getpid(), signal.SIGKILL)
