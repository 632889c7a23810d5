"""Errors raised while reading Payload. Messages say what to check and never carry a secret."""

from __future__ import annotations


class PayloadError(RuntimeError):
    """Base class for every error reading the Payload REST API."""


class PayloadAuthError(PayloadError):
    """401/403 that persists after the one re-login we allow: credentials are wrong or lack access.

    Never retried: retrying a refused credential only locks accounts and hides the cause.
    """


class PayloadUnavailableError(PayloadError):
    """Connection errors, timeouts, 429 or 5xx that outlasted every retry (transient in nature)."""


class PayloadResponseError(PayloadError):
    """The server answered, but not with a usable body (invalid/truncated JSON, unexpected shape,
    or a 4xx other than auth) after the retries."""


class IncompleteListingError(PayloadResponseError):
    """An id listing (reconcile) does not add up to Payload's own `totalDocs`: deleting what
    it did not list would delete documents that exist. Permanent; nothing is committed."""


class KeysetStalledError(PayloadResponseError):
    """A full page held no document with a usable (updatedAt, id) after the cursor: the keyset
    read cannot advance. The loader judges the page's documents (rejects) before failing."""
