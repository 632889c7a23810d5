"""The dlt source: one resource per Payload collection, read with keyset pagination.

Resources yield whole pages (`Page`), not single documents: the loader converts each page to
Arrow as soon as it arrives, so memory holds columns, not millions of dicts. The resources are
plain dlt resources: they can also be handed to `dlt.pipeline(...).run()` for other destinations.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from queue import Empty, Full, Queue
from typing import Any

import dlt
from dlt.common import logger as dlt_logger
from dlt.common.configuration import resolve_configuration
from dlt.common.configuration.specs.runtime_configuration import RuntimeConfiguration
from dlt.extract.resource import DltResource
from dlt.extract.source import DltSource
from dlt.sources.helpers.rest_client import RESTClient

from flows.settings import ConfigError, Settings
from flows.source.client import (
    AuthAwareSession,
    PayloadAuth,
    api_base_url,
    build_auth,
    build_session,
)
from flows.source.errors import PayloadResponseError
from flows.source.ids import DocId, is_valid_id
from flows.source.paginator import Cursor, IdPaginator, KeysetPaginator

log = logging.getLogger(__name__)

# Listing every id is cheap per document: use bigger pages than the document reads.
ID_PAGE_SIZE = 10_000
BY_ID_CHUNK = 100  # ids per `where[id][in]` request (keeps the URL short)


@lru_cache(maxsize=1)
def _runtime_configuration() -> RuntimeConfiguration:
    """dlt resolves its runtime config (providers, toml files) per RESTClient: do it once."""
    return resolve_configuration(RuntimeConfiguration())


def prefetched(pages: Iterable[Page], depth: int = 2) -> Iterator[Page]:
    """Read pages in a background thread, up to `depth` ahead, while the caller converts the
    current one: the server prepares page n+1 while we convert page n. Bounded, so memory stays
    O(depth pages). Errors of the reader are re-raised in the caller."""
    queue: Queue[tuple[str, Any]] = Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in pages:
                while not stop.is_set():
                    try:
                        queue.put(("page", item), timeout=0.1)
                        break
                    except Full:
                        continue
                if stop.is_set():
                    return
            queue.put(("end", None))
        except BaseException as error:  # handed to the consumer, which re-raises it
            queue.put(("error", error))

    reader = threading.Thread(target=produce, name="payload-page-reader", daemon=True)
    reader.start()
    try:
        while True:
            kind, item = queue.get()
            if kind == "end":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        while reader.is_alive():  # unblock a producer waiting on a full queue
            with contextlib.suppress(Empty):
                queue.get_nowait()
            reader.join(timeout=0.05)


def route_dlt_logs_to_logging() -> None:
    """dlt only logs once a pipeline initialised its logger; we iterate resources ourselves, so
    point dlt's logger at the standard `logging` tree (no handler: the caller's config applies,
    e.g. Prefect's run logger)."""
    if dlt_logger.LOGGER is None:
        dlt_logger.LOGGER = logging.getLogger("dlt")


def format_since(moment: datetime) -> str:
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass
class Page:
    """One page of documents as Payload returned them (not a list: dlt would flatten it)."""

    collection: str
    docs: list[dict[str, Any]]
    number: int


@dataclass
class PayloadClient:
    """dlt's RESTClient bound to our session, auth and the API base URL."""

    settings: Settings
    base_url: str
    session: AuthAwareSession
    auth: PayloadAuth
    rest: RESTClient = field(init=False)

    def __post_init__(self) -> None:
        self.rest = RESTClient(
            base_url=self.base_url,
            auth=self.auth,
            session=self.session,
            data_selector="docs",
            config=_runtime_configuration(),
        )

    @classmethod
    def from_settings(cls, settings: Settings, site_url: str | None = None) -> PayloadClient:
        url = site_url or (str(settings.payload_cms_url) if settings.payload_cms_url else None)
        if not url:
            raise ConfigError(
                "PAYLOAD_CMS_URL is not set: point it at your Payload site, or run through "
                "flows/main.py, which starts the built-in demo API and sets it"
            )
        route_dlt_logs_to_logging()
        base = api_base_url(url)
        session = build_session(settings)
        return cls(settings, base, session, build_auth(settings, session, base))

    def close(self) -> None:
        self.session.close()

    def iter_pages(
        self, collection: str, cursor: Cursor | None = None, since: str | None = None
    ) -> Iterator[Page]:
        """Every document updated after `cursor` (or at/after `since`), oldest first, by page."""
        page_size = self.settings.payload_page_size
        id_type = self.settings.payload_id_type
        paginator = KeysetPaginator(page_size, cursor=cursor, since=since, id_type=id_type)
        params = {
            "limit": str(page_size),
            "depth": str(self.settings.payload_depth),
            "sort": "updatedAt,id",
            "trash": "true",
        }
        # An explicit (empty) response hook list: status handling lives in PayloadSession.
        for number, page in enumerate(
            self.rest.paginate(
                f"/{collection}", params=params, paginator=paginator, hooks={"response": []}
            ),
            start=1,
        ):
            yield Page(collection, list(page), number)
        if paginator.stalled is not None:
            raise paginator.stalled

    def documents_by_id(self, collection: str, ids: list[Any]) -> list[dict[str, Any]]:
        """The documents with these ids (trashed ones included), rendered as the keyset read
        renders them; for reconcile, which adds documents missing from the table."""
        docs: list[dict[str, Any]] = []
        for start in range(0, len(ids), BY_ID_CHUNK):
            chunk = ids[start : start + BY_ID_CHUNK]
            params = {
                "limit": str(len(chunk)),
                "depth": str(self.settings.payload_depth),
                "sort": "id",
                "trash": "true",
                "where[id][in]": ",".join(str(doc_id) for doc_id in chunk),
            }
            response = self.session.get(
                f"{self.base_url}/{collection}", params=params, auth=self.auth
            )
            body = response.json()
            if not isinstance(body, dict) or not isinstance(body.get("docs"), list):
                raise PayloadResponseError(f"reading {collection} by id did not return a list")
            docs.extend(body["docs"])
        return docs

    def all_ids(self, collection: str) -> set[DocId]:
        """Every id currently in the collection, trashed ones included (for reconcile)."""
        params = {
            "limit": str(ID_PAGE_SIZE),
            "depth": "0",
            "sort": "id",
            "trash": "true",
            "select[id]": "true",
        }
        id_type = self.settings.payload_id_type
        ids: set[DocId] = set()
        pages = self.rest.paginate(
            f"/{collection}",
            params=params,
            paginator=IdPaginator(ID_PAGE_SIZE, id_type),
            hooks={"response": []},
        )
        unusable: list[Any] = []
        for page in pages:
            for doc in page:
                doc_id = doc.get("id") if isinstance(doc, dict) else None
                if is_valid_id(doc_id, id_type):
                    ids.add(doc_id)
                else:
                    unusable.append(doc_id)
        if unusable:
            # Reconcile deletes every row whose id is not listed: an id it cannot read would
            # look deleted. Refuse instead of deleting rows that still exist upstream.
            raise PayloadResponseError(
                f"listing the ids of {collection} returned {len(unusable)} id(s) that are not "
                f"{id_type.description} (PAYLOAD_ID_TYPE={id_type.value}), e.g. "
                f"{unusable[0]!r}: reconcile cannot tell which documents were deleted"
            )
        return ids


def collection_resource(
    client: PayloadClient,
    collection: str,
    cursor: Cursor | None = None,
    since: str | None = None,
) -> DltResource:
    """A dlt resource yielding the collection's changed documents page by page."""

    def pages() -> Iterator[Page]:
        yield from client.iter_pages(collection, cursor=cursor, since=since)

    return dlt.resource(
        pages,
        name=collection,
        primary_key="id",
        write_disposition="merge",
        max_table_nesting=0,  # nested values stay JSON: a shrinking list leaves no stale rows
    )


def payload_source(
    client: PayloadClient,
    collections: list[str],
    cursors: dict[str, Cursor | None] | None = None,
    since: str | None = None,
) -> DltSource:
    """All configured collections as one dlt source (one resource each)."""
    cursors = cursors or {}

    @dlt.source(name="payload", max_table_nesting=0)
    def source() -> list[DltResource]:
        return [collection_resource(client, c, cursors.get(c), since) for c in collections]

    return source()
