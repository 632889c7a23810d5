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
    "DeleteGuardError",
    "IdTypeError",
    "LakehouseError",
    "PayloadAuthError",
    "PayloadError",
    "PayloadResponseError",
    "PayloadUnavailableError",
    "RejectionCeilingError",
    "SchemaEvolutionError",
    "SourceMismatchError",
    "is_transient",
]


class LakehouseError(RuntimeError):
    """Base class for errors writing the Iceberg lakehouse."""


class CatalogError(LakehouseError):
    """The Iceberg catalog (or its storage) is unreachable or misconfigured."""


class SchemaEvolutionError(LakehouseError):
    """A column's type changed in a way Iceberg cannot widen; nothing was committed.

    `contract`: the column is typed by the Payload contract (ids, cents, quantities, ...), so a
    full refresh would meet the same value again: the fix is in the source. Otherwise a full
    refresh works: it replaces every row and retypes the column to what the source sends now.
    """

    def __init__(
        self, collection: str, column: str, current: str, incoming: str, *, contract: bool = False
    ) -> None:
        self.collection = collection
        self.column = column
        self.current = current
        self.incoming = incoming
        self.contract = contract
        if contract:
            fix = (
                f"The Payload contract types {column!r} as {current}: fix the field (or the "
                "documents) in Payload, then rerun."
            )
        else:
            fix = (
                "To retype the column, run a full refresh (`python flows/main.py "
                "--full-refresh`, or mode full_refresh): it replaces every row and the column "
                "takes the type the source sends now."
            )
        super().__init__(
            f"collection {collection!r}: column {column!r} is {current} in the lakehouse but "
            f"the source now sends {incoming}; Iceberg cannot change {current} to {incoming} "
            f"(allowed: int -> long, float -> double). Nothing was committed and the cursor did "
            f"not move. {fix}"
        )


class IdTypeError(LakehouseError):
    """The table's ids are of another type than PAYLOAD_ID_TYPE (integers vs ObjectIds/UUIDs).
    Raised before anything is read; permanent: the setting or the table must change."""


class RejectionCeilingError(LakehouseError):
    """Too large a share of a load's documents was rejected: the cause is almost certainly
    systematic (the source's id type, a field's type, the wrong API), not a few bad documents.
    Nothing was committed to the collection's table and its cursor did not move; the rejected
    documents are in `_rejected`. Permanent: a retry reads the same documents again."""

    def __init__(self, message: str, *, collection: str, rejected: int, read: int) -> None:
        super().__init__(message)
        self.collection = collection
        self.rejected = rejected
        self.read = read

    @property
    def share(self) -> float:
        return self.rejected / self.read if self.read else 0.0


class SourceMismatchError(LakehouseError):
    """The table was loaded from another Payload than the configured one: an incremental load
    would mix two stores. Raised before anything is read; permanent until the operator chooses
    (full refresh, or another lakehouse)."""


class DeleteGuardError(LakehouseError):
    """A reconcile or full refresh would delete rows it cannot vouch for: more than
    LOAD_MAX_DELETE_SHARE of the table, an id listing that does not add up, or a credential
    that cannot read the whole collection. Nothing was committed; permanent (a retry reads the
    same)."""


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
