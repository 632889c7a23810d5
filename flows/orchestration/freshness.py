"""What Payload says changed since a table's cursor: one cheap request per collection, part of
the load cache key (flows/orchestration/caching.py).

Without it, a run within LOAD_CACHE_MINUTES that found a table in the state an earlier run
left it in reused that run's result without asking Payload, so "Run now" right after an edit
loaded nothing. Now a cached load is reused only when the source answers exactly as it did for
that load: `limit=1&sort=-updatedAt` gives the number of matching documents (`totalDocs`) and
the newest one. Incremental loads ask for documents updated after the cursor ("nothing newer"
is the common answer); full refresh and reconcile ask about the whole collection, so a created
or hard-deleted document changes the answer too. When the source cannot answer, the token is
unique: the load runs (and retries on its own). A table recorded as loaded from another source
is not probed (its incremental load refuses to read that source at all).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from pyiceberg.exceptions import NoSuchTableError

from flows.lakehouse.catalog import get_catalog
from flows.lakehouse.identity import SOURCE_PROPERTY
from flows.lakehouse.load import LoadMode
from flows.settings import Settings
from flows.source.payload import PayloadClient, format_since


def cursor_updated_at(table_state: str) -> str | None:
    """The cursor's `updatedAt` in a table fingerprint (`flows.lakehouse.load.table_state`:
    "empty" or "<snapshot id>:<updatedAt>|<id>"); None when there is none."""
    _, separator, cursor = table_state.partition(":")
    updated_at = cursor.rpartition("|")[0] if separator else ""
    return updated_at or None


def freshness_params(
    mode: LoadMode, table_state: str, lookback_seconds: float = 0.0
) -> dict[str, str]:
    """The probe's query. Incremental: what the load itself would read, i.e. updated after the
    cursor minus LOAD_CURSOR_LOOKBACK_SECONDS, so a late commit behind the cursor changes the
    answer too."""
    params = {"limit": "1", "depth": "0", "sort": "-updatedAt", "trash": "true"}
    since = cursor_updated_at(table_state)
    if mode is LoadMode.INCREMENTAL and since is not None:
        moment = datetime.fromisoformat(since.replace("Z", "+00:00"))
        params["where[updatedAt][greater_than]"] = format_since(
            moment - timedelta(seconds=lookback_seconds)
        )
    return params


def freshness_token(client: PayloadClient, collection: str, params: Mapping[str, str]) -> str:
    """One request; "<n> matching, newest <id>@<updatedAt>" (or "none matching")."""
    body = client.rest.get(f"/{collection}", params=dict(params), hooks={"response": []}).json()
    total = int(body.get("totalDocs", 0)) if isinstance(body, dict) else 0
    docs = body.get("docs") if isinstance(body, dict) else None
    newest = docs[0] if isinstance(docs, list) and docs and isinstance(docs[0], dict) else {}
    scope = params.get("where[updatedAt][greater_than]")
    what = f"after {scope}" if scope else "in all"
    if total == 0:
        return f"none {what}"
    return f"{total} {what}, newest {newest.get('id')}@{newest.get('updatedAt')}"


def recorded_source(settings: Settings, collection: str) -> str | None:
    """The source identity the table's last commit recorded (None: no table, or none recorded)."""
    identifier = f"{settings.iceberg_namespace}.{settings.table_name(collection)}"
    try:
        return get_catalog(settings).load_table(identifier).properties.get(SOURCE_PROPERTY)
    except NoSuchTableError:
        return None


def source_freshness(
    settings: Settings,
    mode: LoadMode,
    source: str,
    table_states: Mapping[str, str],
    collections: Sequence[str],
) -> dict[str, str]:
    """collection -> freshness token (a unique one for a collection the source did not answer
    for, so its load is never skipped)."""
    tokens: dict[str, str] = {}
    # No request retries: an unanswered probe only means "load it", and the load retries.
    client = PayloadClient.from_settings(settings.model_copy(update={"payload_max_retries": 0}))
    try:
        for collection in collections:
            recorded = recorded_source(settings, collection)
            if mode is not LoadMode.FULL_REFRESH and recorded not in (None, source):
                tokens[collection] = f"loaded from another source: {recorded}"
                continue
            params = freshness_params(
                mode, table_states[collection], settings.load_cursor_lookback_seconds
            )
            try:
                tokens[collection] = freshness_token(client, collection, params)
            except Exception as error:  # any failure means "load it": never skip on a guess
                tokens[collection] = f"unknown ({type(error).__name__}) {uuid.uuid4()}"
    finally:
        client.close()
    return tokens
