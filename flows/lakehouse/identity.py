"""Which Payload a raw table was loaded from, recorded next to its cursor.

An incremental load reads "documents updated after the cursor". Pointed at a *different* store,
it would upsert that store's newest documents onto the old store's rows: a raw layer mixing two
stores. So every commit records the source's identity in the table properties
(`payload.source`, the same commit as the cursor), and an incremental or reconcile load whose
configured source differs stops before reading (`SourceMismatchError`). A full refresh replaces
the table and records the new identity. A table with no identity (written before this existed)
adopts the current one on its next commit.

The identity is never a secret: credentials are not part of it (changing only the credentials is
the same source), and a URL's `user:password@` is dropped.
- A real Payload: `payload <normalised PAYLOAD_CMS_URL>` (scheme and host lower case, default
  port, `user:password@`, query, trailing `/` and `/api` removed).
- The built-in demo API: `demo store (preset=..., scale=..., seed=...)` from its public
  `/api/_demo/identity` endpoint. Not the URL: `make run` starts it on a new port every time,
  and the same generated store on another port is the same source.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from flows.lakehouse.errors import SourceMismatchError
from flows.source.client import PayloadSession, api_base_url
from flows.source.errors import PayloadAuthError, PayloadResponseError

log = logging.getLogger(__name__)

SOURCE_PROPERTY = "payload.source"
DEMO_IDENTITY_ROUTE = "_demo/identity"  # under the API base; real Payload answers 404
_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalise_url(url: str) -> str:
    """The site's base URL in one canonical spelling, without credentials."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port
    netloc = host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    path = parts.path.rstrip("/")
    path = path.removesuffix("/api").rstrip("/")
    return urlunsplit((scheme, netloc, path, "", ""))


def demo_store_identity(body: Any) -> str | None:
    """`demo store (preset=..., scale=..., seed=...)` from the demo API's identity body."""
    if not isinstance(body, dict) or body.get("kind") != "payload-lakehouse-demo":
        return None
    try:
        preset, scale, seed = str(body["preset"]), int(body["scale"]), int(body["seed"])
    except (KeyError, TypeError, ValueError):
        return None
    # The same store with other ids is another store (ids differ); int keeps the old identity.
    id_type = body.get("idType", "int")
    ids = "" if id_type == "int" else f", ids={id_type}"
    return f"demo store (preset={preset}, scale={scale}, seed={seed}{ids})"


def probe_source_identity(session: PayloadSession, site_url: str) -> str:
    """The identity of the Payload at `site_url` (one request to the demo identity route).

    A real Payload answers that route with 404 (or refuses it): its identity is its URL. An
    unreachable source raises PayloadUnavailableError, as reading it would.
    """
    url = normalise_url(site_url)
    try:
        response = session.get(f"{api_base_url(url)}/{DEMO_IDENTITY_ROUTE}")
        store = demo_store_identity(response.json())
    except (PayloadResponseError, PayloadAuthError):
        store = None
    return store or f"payload {url}"


def check_source(collection: str, table: str, recorded: str | None, current: str) -> None:
    """Refuse an incremental/reconcile load onto a table loaded from another source."""
    if recorded is None or recorded == current:
        return
    raise SourceMismatchError(
        f"{collection}: {table} was loaded from {recorded}, but the configured source is "
        f"{current}. Loading it incrementally would mix two stores in one table, so nothing was "
        "read or committed. Either rebuild the lakehouse from the new source with a full "
        "refresh (`python flows/main.py --full-refresh`, flow parameter mode=full_refresh), or "
        "keep the two apart: point LAKEHOUSE_DIR (or ICEBERG_NAMESPACE) at another lakehouse "
        "for this source, or PAYLOAD_CMS_URL back at the original one."
    )
