"""Keyset pagination on (updatedAt, id): cannot skip a document, whatever changes mid-read.

Page-number pagination over a changing collection skips rows: delete one document of page 1 while
reading page 2 and every row shifts left by one. Here every request asks for page 1 of "documents
strictly after the last one I saw" in the total order (updatedAt, id):

    updatedAt > T  OR  (updatedAt = T AND id > ID)

so deletions, trashing and updates between requests cannot move an unseen document behind the
cursor. An updated document moves *ahead* of the cursor (its updatedAt grows) and is read again
later in the same run: the loader keeps the newest copy per id. Ties on updatedAt (bulk edits)
are ordered by id, so none is lost.

Ids are integers or strings (MongoDB ObjectIds, UUIDs; flows/source/ids.py): string ids are
compared as text, which is how Payload orders them (byte order of the ObjectId / UUID).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dlt.sources.helpers.rest_client.paginators import BasePaginator
from requests import Request, Response

from flows.source.errors import IncompleteListingError, KeysetStalledError, PayloadResponseError
from flows.source.ids import DocId, IdType, id_from_text, is_valid_id

WHERE_GT = "where[or][0][updatedAt][greater_than]"
WHERE_TIE_AT = "where[or][1][and][0][updatedAt][equals]"
WHERE_TIE_ID = "where[or][1][and][1][id][greater_than]"
WHERE_SINCE = "where[updatedAt][greater_than_equal]"
_CURSOR_KEYS = (WHERE_GT, WHERE_TIE_AT, WHERE_TIE_ID, WHERE_SINCE)


@dataclass(frozen=True, order=True)
class Cursor:
    """Position in the (updatedAt, id) order: the last document already read.

    `updated_at` is kept exactly as Payload sent it (ISO-8601 UTC with milliseconds), so the
    string sorts chronologically and goes back into `where` unchanged.
    """

    updated_at: str
    id: DocId  # one table's cursors all hold the same id type: they compare

    def encode(self) -> str:
        return f"{self.updated_at}|{self.id}"

    @classmethod
    def decode(cls, value: str) -> Cursor:
        updated_at, _, doc_id = value.rpartition("|")
        if not updated_at or not doc_id:
            raise ValueError(f"not a cursor: {value!r}")
        return cls(updated_at, id_from_text(doc_id))


def cursor_params(cursor: Cursor | None, since: str | None) -> dict[str, str]:
    """`where` parameters for "after `cursor`" (or "updated at/after `since`" on a first read)."""
    if cursor is not None:
        return {
            WHERE_GT: cursor.updated_at,
            WHERE_TIE_AT: cursor.updated_at,
            WHERE_TIE_ID: str(cursor.id),
        }
    if since is not None:
        return {WHERE_SINCE: since}
    return {}


def last_valid_cursor(docs: list[Any], id_type: IdType = IdType.INT) -> Cursor | None:
    """The cursor of the last document with a usable (updatedAt, id), scanning backwards.

    A malformed document (rejected later by the loader) must not stall the read: the cursor comes
    from the last well-formed one.
    """
    for doc in reversed(docs):
        if not isinstance(doc, dict):
            continue
        doc_id, updated_at = doc.get("id"), doc.get("updatedAt")
        if (
            is_valid_id(doc_id, id_type)
            and isinstance(updated_at, str)
            and _is_timestamp(updated_at)
        ):
            return Cursor(updated_at, doc_id)
    return None


def _is_timestamp(value: str) -> bool:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def is_last_page(body: dict[str, Any], docs: list[Any], page_size: int) -> bool:
    """Payload's `hasNextPage` decides; a page shorter than asked is the end only when the
    body does not say (a server that caps `limit` answers short pages with more to come)."""
    has_next = body.get("hasNextPage")
    if isinstance(has_next, bool):
        return not has_next
    return len(docs) < page_size


def check_complete(body: dict[str, Any], docs: list[Any]) -> None:
    """On the last page of a keyset listing, Payload's `totalDocs` counts the documents past
    the key, i.e. this page's: fewer documents than that means the listing lost some (a proxy
    that cut the page, a broken adapter), and every id it missed would look deleted."""
    total = body.get("totalDocs")
    if isinstance(total, int) and not isinstance(total, bool) and len(docs) < total:
        raise IncompleteListingError(
            f"the id listing's last page holds {len(docs)} documents, but Payload counts "
            f"{total} (totalDocs): the listing is incomplete, so nothing is deleted"
        )


class KeysetPaginator(BasePaginator):
    """dlt paginator: always page 1, the `where` clause moves; stop on a short page."""

    def __init__(
        self,
        page_size: int,
        cursor: Cursor | None = None,
        since: str | None = None,
        id_type: IdType = IdType.INT,
    ):
        super().__init__()
        self.page_size = page_size
        self.cursor = cursor
        self.since = since
        self.id_type = id_type
        self.pages = 0
        self.stalled: KeysetStalledError | None = None

    def init_request(self, request: Request) -> None:
        self._apply(request)

    def update_state(self, response: Response, data: list[Any] | None = None) -> None:
        body = response.json()
        if not isinstance(body, dict) or not isinstance(body.get("docs"), list):
            raise PayloadResponseError(
                f"{response.request.method} {str(response.url).split('?')[0]} did not return a "
                "Payload list ({docs: [...]}); is PAYLOAD_CMS_URL the site's base URL?"
            )
        docs: list[Any] = body["docs"]
        self.pages += 1
        if is_last_page(body, docs, self.page_size):
            self._has_next_page = False
            return
        cursor = last_valid_cursor(docs, self.id_type)
        if cursor is None or (self.cursor is not None and cursor <= self.cursor):
            # Stop here, but let this page through first: the loader rejects its documents
            # (and names why) before failing with this error (raised by the page iterator).
            self.stalled = KeysetStalledError(
                "a full page held no document with a valid id/updatedAt after the cursor: the "
                "keyset read cannot advance (is `sort=updatedAt,id` honoured by the server, "
                f"and are the ids {self.id_type.description}, as PAYLOAD_ID_TYPE="
                f"{self.id_type.value} says?)"
            )
            self._has_next_page = False
            return
        self.cursor = cursor

    def update_request(self, request: Request) -> None:
        self._apply(request)

    def _apply(self, request: Request) -> None:
        params = dict(request.params or {})
        for key in _CURSOR_KEYS:
            params.pop(key, None)
        params.update(cursor_params(self.cursor, self.since))
        params["page"] = "1"
        request.params = params


class IdPaginator(BasePaginator):
    """Keyset on id alone, for the reconcile read of every id (`select[id]=true`)."""

    def __init__(self, page_size: int, id_type: IdType = IdType.INT) -> None:
        super().__init__()
        self.page_size = page_size
        self.id_type = id_type
        self.last_id: DocId | None = None

    def init_request(self, request: Request) -> None:
        self._apply(request)

    def update_state(self, response: Response, data: list[Any] | None = None) -> None:
        body = response.json()
        if not isinstance(body, dict) or not isinstance(body.get("docs"), list):
            raise PayloadResponseError("the id listing did not return a Payload list")
        docs = body["docs"]
        ids = [
            d["id"] for d in docs if isinstance(d, dict) and is_valid_id(d.get("id"), self.id_type)
        ]
        if is_last_page(body, docs, self.page_size) or not ids:
            check_complete(body, docs)
            self._has_next_page = False
            return
        self.last_id = max(ids)

    def update_request(self, request: Request) -> None:
        self._apply(request)

    def _apply(self, request: Request) -> None:
        params = dict(request.params or {})
        params.pop("where[id][greater_than]", None)
        if self.last_id is not None:
            params["where[id][greater_than]"] = str(self.last_id)
        params["page"] = "1"
        request.params = params
