"""One writer at a time on the lakehouse: a Prefect global concurrency limit with one slot.

Every run of the flow (the `daily`, `on-change`, `transform` and `reconcile` deployments, and
`python flows/main.py`) holds the slot of LAKEHOUSE_WRITER_LIMIT (default `lakehouse-writer`)
from its first catalog write to the last mart it publishes, so two runs never load the same
table or build into the same DuckDB file at once; a run that finds the slot taken waits
(LAKEHOUSE_WRITER_TIMEOUT_SECONDS, then fails clearly). The deployments' own
`concurrency_limit` only limits each deployment against itself.

`make deploy` creates the limit; a run creates it too when it is missing (the ephemeral server
of `make run`, a fresh server), so the guarantee never depends on a setup step. The slot is a
lease the client renews in the background: a run killed with SIGKILL frees it when the lease
expires (LEASE_SECONDS, by the server's repossessor service).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from uuid import UUID

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.client.schemas.objects import ConcurrencyLeaseHolder
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.runtime import flow_run

from flows.settings import Settings

WRITER_SLOTS = 1
LEASE_SECONDS = 300.0  # Prefect's default; renewed while the run is alive


class WriterSlotTimeoutError(RuntimeError):
    """The run waited LAKEHOUSE_WRITER_TIMEOUT_SECONDS for the writer slot; nothing was written."""


@task(
    name="ensure-writer-limit",
    task_run_name="ensure-writer-limit",
    cache_policy=NO_CACHE,
    persist_result=False,
)
def ensure_writer_limit(name: str) -> int:
    """Create the global concurrency limit `name` (1 slot) if it does not exist; return its
    limit. An existing limit is left as an operator configured it (a warning if it no longer
    means one writer at a time)."""
    logger = get_run_logger()
    with get_client(sync_client=True) as client:
        try:
            limit = client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=name, limit=WRITER_SLOTS, active=True)
                )
                logger.info("Created the global concurrency limit %r (1 slot)", name)
            except ObjectAlreadyExists:
                pass  # another run created it a moment ago
            return WRITER_SLOTS
    if limit.limit != WRITER_SLOTS or not limit.active:
        logger.warning(
            "Global concurrency limit %r has limit %d (active: %s): runs may write the "
            "lakehouse at once; set it back with `prefect gcl update %s --limit 1 --enable`",
            name,
            limit.limit,
            limit.active,
            name,
        )
    return int(limit.limit)


@contextmanager
def lakehouse_writer(settings: Settings) -> Iterator[None]:
    """Hold the writer slot for the duration of the block (wait for it first)."""
    logger = get_run_logger()
    name = settings.lakehouse_writer_limit
    if not name:
        logger.warning(
            "LAKEHOUSE_WRITER_LIMIT is empty: this run does not wait for other runs, which "
            "may load the same tables or build the same marts at the same time"
        )
        yield
        return
    ensure_writer_limit(name)
    run_id = flow_run.get_id()
    holder = ConcurrencyLeaseHolder(type="flow_run", id=UUID(run_id)) if run_id else None
    timeout = settings.lakehouse_writer_timeout_seconds
    logger.info("Waiting for the %r slot (one writer at a time on the lakehouse)", name)
    started = time.monotonic()
    acquired = False
    try:
        with concurrency(
            name,
            occupy=1,
            timeout_seconds=timeout,
            lease_duration=LEASE_SECONDS,
            strict=True,  # a missing limit must not mean "no limit"
            holder=holder,
        ):
            acquired = True
            logger.info("Holding the %r slot (waited %.1f s)", name, time.monotonic() - started)
            yield
    except TimeoutError:
        if acquired:
            raise
        raise WriterSlotTimeoutError(
            f"another run held the {name!r} slot for more than {timeout:g} s "
            "(LAKEHOUSE_WRITER_TIMEOUT_SECONDS); nothing was loaded or built. See who holds it "
            f"with `prefect gcl inspect {name}`; a killed run frees it within {LEASE_SECONDS:g} s"
        ) from None
