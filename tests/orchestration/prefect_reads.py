"""Reading a run's story back through the Prefect client (task runs, subflows, events)."""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterParentFlowRunId,
)
from prefect.client.schemas.objects import FlowRun, TaskRun
from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter
from prefect.events.schemas.events import ReceivedEvent


def flow_run_id(state: Any) -> UUID:
    return UUID(str(state.state_details.flow_run_id))


def task_runs_of(client: SyncPrefectClient, run_id: UUID, timeout: float = 60) -> list[TaskRun]:
    """A finished flow run's task runs, once the server has recorded all of them.

    Prefect 3 records task runs from events the client sends asynchronously, so right after a
    run some task runs may still be missing, unnamed or not yet final: poll until every one is
    final and two reads a second apart agree."""

    def read() -> list[TaskRun]:
        return client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])), limit=200
        )

    def view(runs: list[TaskRun]) -> set[tuple[Any, ...]]:
        return {(r.id, r.name, r.state.type if r.state else None) for r in runs}

    deadline = time.monotonic() + timeout
    runs = read()
    while time.monotonic() < deadline:
        time.sleep(1)
        again = read()
        settled = all(r.state is not None and r.state.is_final() for r in again)
        if settled and view(again) == view(runs):
            return again
        runs = again
    return runs


def subflow_runs_of(client: SyncPrefectClient, run_id: UUID) -> list[FlowRun]:
    return client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run_id])
        )
    )


def events_of(
    client: SyncPrefectClient, run_id: UUID, names: list[str], minimum: int, timeout: float = 60
) -> list[ReceivedEvent]:
    """Events related to a flow run (events reach the server asynchronously: poll)."""
    event_filter = EventFilter(
        event=EventNameFilter(name=names),
        related=EventRelatedFilter(id=[f"prefect.flow-run.{run_id}"]),
    )
    deadline = time.monotonic() + timeout
    while True:
        events = list(client.read_events(filter=event_filter, limit=50).events)
        if len(events) >= minimum or time.monotonic() > deadline:
            return events
        time.sleep(1)
