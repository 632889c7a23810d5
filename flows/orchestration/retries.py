"""Which failures Prefect retries: only transient ones (contract C's `is_transient`).

A 401/403, a bad setting or an incompatible schema change fails the task at once: retrying
would only repeat the same error (and, for credentials, risk locking an account).
"""

from __future__ import annotations

from typing import Any

from prefect.client.schemas.objects import State, TaskRun

from flows.lakehouse.errors import is_transient


def failure_exception(state: State[Any]) -> BaseException | None:
    """The exception a Failed task state carries, without re-raising it."""
    if isinstance(state.data, BaseException):
        return state.data
    try:
        result = state.result(raise_on_failure=False)
    except Exception as error:  # result unreadable: treat the read error as the cause
        return error
    return result if isinstance(result, BaseException) else None


def retry_if_transient(task: Any, task_run: TaskRun, state: State[Any]) -> bool:
    """`retry_condition_fn` for the load tasks: retry only when the error is transient."""
    error = failure_exception(state)
    return error is not None and is_transient(error)
