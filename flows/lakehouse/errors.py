"""Errors raised by the Iceberg side, plus the retry classifier used by the Prefect flow."""

from __future__ import annotations

from flows.source.errors import (
    PayloadAuthError,
    PayloadError,
    PayloadResponseError,
    PayloadUnavailableError,
)

__all__ = [
    "CatalogError",
    "LakehouseError",
    "PayloadAuthError",
    "PayloadError",
    "PayloadResponseError",
    "PayloadUnavailableError",
    "SchemaEvolutionError",
    "is_transient",
]


class LakehouseError(RuntimeError):
    """Base class for errors writing the Iceberg lakehouse."""


class CatalogError(LakehouseError):
    """The Iceberg catalog (or its storage) is unreachable or misconfigured."""


class SchemaEvolutionError(LakehouseError):
    """A column's type changed in a way Iceberg cannot widen; nothing was committed."""

    def __init__(self, collection: str, column: str, current: str, incoming: str) -> None:
        self.collection = collection
        self.column = column
        self.current = current
        self.incoming = incoming
        super().__init__(
            f"collection {collection!r}: column {column!r} is {current} in the lakehouse but "
            f"the source now sends {incoming}; Iceberg cannot change {current} to {incoming} "
            "(allowed: int -> long, float -> double). Nothing was committed. Either migrate the "
            "table (rename/drop the column) or run a full refresh after recreating it."
        )


class CommitConflictError(LakehouseError):
    """Concurrent writers kept winning the commit race after every bounded retry."""


def is_transient(exc: BaseException) -> bool:
    """True for failures a later retry may fix (network, overloaded server, commit races).

    Auth errors, bad bodies, schema conflicts and misconfiguration are permanent: retrying them
    only repeats the failure.
    """
    if isinstance(exc, PayloadUnavailableError | CommitConflictError):
        return True
    if isinstance(exc, CatalogError):
        # An unreachable catalog is transient; a misconfigured one is not. Both raise CatalogError,
        # the cause tells them apart.
        cause = exc.__cause__
        return isinstance(cause, ConnectionError | TimeoutError | OSError)
    return isinstance(exc, ConnectionError | TimeoutError)
