"""Cache policies and result storage for the load tasks.

Why two tasks: Prefect computes a task's cache key *before* the task runs, and a load
changes the table's snapshot. A key on "the table's snapshot right now" would therefore never
match on a retry (the first attempt already moved the snapshot). Instead:

1. `lakehouse_state(collections)` (task `note-table-versions`) reads each table's fingerprint
   (snapshot id + cursor) and is cached on INPUTS + RUN_ID: within one flow run, including its
   retries, it returns the state each table had *before* this run loaded it.
2. `load-<collection>` (`load_collection(..., table_state=<that fingerprint>)`) is cached on its
   INPUTS
   (collection, mode, since, table state, source and lakehouse identifiers, change id) plus its
   source code, with an expiration.

So a retried flow run skips the collections it already loaded (same run id -> same pre-load
state -> same load key -> cached), and a new run within the expiration skips a collection whose
table is still exactly as the previous run left it. Secrets never enter a key: the tasks get
only non-secret identifiers and rebuild `Settings` from the environment.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from prefect.cache_policies import INPUTS, NO_CACHE, RUN_ID, TASK_SOURCE, CachePolicy

from flows.lakehouse.identity import normalise_url, probe_source_identity
from flows.settings import Settings
from flows.source.client import build_session
from flows.source.errors import PayloadError

# Pre-load table state: stable across retries of the same flow run, fresh in a new run.
STATE_CACHE_POLICY: CachePolicy = INPUTS + RUN_ID
# A load: same inputs (incl. the pre-load table state) and same code -> same result.
LOAD_CACHE_POLICY: CachePolicy = INPUTS + TASK_SOURCE


def load_cache_options(settings: Settings) -> dict[str, Any]:
    """`Task.with_options` keywords for the load task's cache (LOAD_CACHE_MINUTES; 0 = off)."""
    if settings.load_cache_minutes <= 0:
        return {"cache_policy": NO_CACHE}
    return {
        "cache_policy": LOAD_CACHE_POLICY,
        "cache_expiration": timedelta(minutes=settings.load_cache_minutes),
    }


def result_storage(settings: Settings) -> str | None:
    """Where task results (and cache keys) are persisted.

    None = Prefect's default local storage (PREFECT_LOCAL_STORAGE_PATH, under PREFECT_HOME).
    With RESULTS_S3_BUCKET_BLOCK set, a prefect-aws `S3Bucket` block slug, so that workers on
    different machines share results and cache hits.
    """
    if settings.results_s3_bucket_block:
        return f"s3-bucket/{settings.results_s3_bucket_block}"
    return None


def source_identifier(settings: Settings, probe: bool = False) -> str:
    """A non-secret name for the Payload source, part of the load cache key.

    With `probe`, the identity the loader records with each table (flows/lakehouse/identity.py:
    one request): another store behind the same URL (a demo API restarted with another preset)
    must not reuse a cached load. Without it, or if the source cannot be reached, the normalised
    URL (the load then fails or probes again itself)."""
    if not settings.payload_cms_url:
        return "demo"
    url = normalise_url(str(settings.payload_cms_url))
    if not probe:
        return f"payload {url}"
    try:
        # No retries: a cache key is not worth waiting for; the load itself retries.
        session = build_session(settings.model_copy(update={"payload_max_retries": 0}))
        try:
            return probe_source_identity(session, url)
        finally:
            session.close()
    except PayloadError:
        return f"payload {url}"


def lakehouse_identifier(settings: Settings) -> str:
    """A non-secret name for the target lakehouse (catalog + namespace), part of cache keys."""
    catalog = settings.iceberg_catalog_url or str(settings.lakehouse_path)
    catalog = without_credentials(catalog)
    return f"{settings.iceberg_catalog_type}:{catalog}#{settings.iceberg_namespace}"


def without_credentials(url: str) -> str:
    """Drop `user:password@` from a URL (an SQLAlchemy catalog URL may carry a password)."""
    parts = urlsplit(url)
    if not parts.netloc or "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
