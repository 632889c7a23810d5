"""HTTP access to the Payload REST API: authentication, timeouts, retries, JSON validation.

`PayloadSession` is a `requests.Session` that dlt's `RESTClient` sends every request through, so
pagination stays in dlt while resilience lives here:
- exponential backoff with full jitter on connection errors, timeouts, 429 and 5xx, honouring
  `Retry-After` (capped by PAYLOAD_MAX_BACKOFF_SECONDS);
- a body that is not valid JSON (truncated, HTML error page...) is retried, never handed on;
- 401/403: with e-mail/password credentials we log in again once (Payload answers 403, not 401,
  for an expired token); if refused again, or with a static token/API key, `PayloadAuthError`.
"""

from __future__ import annotations

import base64
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import orjson
import requests
from requests.auth import AuthBase

from flows.settings import Settings
from flows.source.errors import (
    PayloadAuthError,
    PayloadResponseError,
    PayloadUnavailableError,
)

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
# Refresh a login token this long before its `exp`, so a page never leaves with a dying token.
TOKEN_EXPIRY_MARGIN_SECONDS = 60.0


def api_base_url(site_url: str) -> str:
    """PAYLOAD_CMS_URL is the site's base URL; accept it with or without the trailing `/api`."""
    base = site_url.rstrip("/")
    return base if base.endswith("/api") else f"{base}/api"


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 6
    backoff_seconds: float = 0.5
    max_backoff_seconds: float = 30.0
    timeout_seconds: float = 30.0

    def wait_seconds(self, attempt: int, retry_after: float | None) -> float:
        """Full jitter (AWS architecture blog): uniform in [0, min(cap, base * 2^attempt)].
        A server-provided Retry-After wins when larger, still capped."""
        ceiling = min(self.max_backoff_seconds, self.backoff_seconds * (2**attempt))
        wait = random.uniform(0.0, ceiling)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_backoff_seconds))
        return wait


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After is either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


# --- authentication ------------------------------------------------------------------------


class PayloadAuth(AuthBase):
    """Base: sets the Authorization header. `can_refresh` tells the session whether a 401/403 is
    worth one re-login."""

    describe = "no credentials"
    can_refresh = False

    def header(self) -> str | None:
        return None

    def refresh(self) -> None:
        """Obtain fresh credentials (only meaningful for login-based auth)."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        value = self.header()
        if value is not None:
            request.headers["Authorization"] = value
        return request


class AnonymousAuth(PayloadAuth):
    pass


class TokenAuth(PayloadAuth):
    describe = "PAYLOAD_CMS_TOKEN"

    def __init__(self, token: str) -> None:
        self._token = token

    def header(self) -> str:
        return f"JWT {self._token}"


class ApiKeyAuth(PayloadAuth):
    describe = "PAYLOAD_API_KEY"

    def __init__(self, auth_collection: str, api_key: str) -> None:
        self._value = f"{auth_collection} API-Key {api_key}"

    def header(self) -> str:
        return self._value


def jwt_expiry(token: str) -> float | None:
    """The `exp` claim of a JWT (no signature check: we only need to know when to refresh)."""
    try:
        payload = token.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        exp = orjson.loads(base64.urlsafe_b64decode(payload)).get("exp")
    except (IndexError, ValueError, AttributeError, orjson.JSONDecodeError):
        return None
    return float(exp) if isinstance(exp, int | float) else None


class LoginAuth(PayloadAuth):
    """E-mail + password: POST /api/<auth collection>/login, then `JWT <token>` until `exp`."""

    describe = "PAYLOAD_EMAIL/PAYLOAD_PASSWORD"
    can_refresh = True

    def __init__(
        self, login: Callable[[], tuple[str, float | None]], clock: Callable[[], float] = time.time
    ) -> None:
        self._login = login
        self._clock = clock
        self._token: str | None = None
        self._expires_at: float | None = None
        self._lock = threading.Lock()
        self.logins = 0

    def refresh(self) -> None:
        with self._lock:
            self._do_login()

    def _do_login(self) -> None:
        token, exp = self._login()
        self._token = token
        self._expires_at = jwt_expiry(token) or exp
        self.logins += 1

    def header(self) -> str:
        with self._lock:
            expired = (
                self._expires_at is not None
                and self._clock() >= self._expires_at - TOKEN_EXPIRY_MARGIN_SECONDS
            )
            if self._token is None or expired:
                self._do_login()
            return f"JWT {self._token}"


# --- the resilient session -----------------------------------------------------------------


class PayloadSession(requests.Session):
    """Every request dlt's RESTClient sends goes through `send`: retries, auth refresh, JSON check.

    A successful response has its parsed body cached, so `response.json()` (called by dlt) does
    not parse the payload a second time.
    """

    def __init__(self, policy: RetryPolicy, sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__()
        self.policy = policy
        self._sleep = sleep
        self.headers["Accept"] = "application/json"
        self.retries = 0  # observable in tests and benchmarks

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.policy.timeout_seconds)
        auth = getattr(request, "_payload_auth", None)
        refreshed = False
        attempt = 0
        what = f"{request.method} {_safe_path(request.url)}"
        while True:
            problem: str
            retry_after: float | None = None
            bad_body = False
            try:
                response = super().send(request, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as error:
                problem = f"{type(error).__name__}"
            except requests.exceptions.ChunkedEncodingError as error:  # truncated body
                problem = f"truncated response ({type(error).__name__})"
                bad_body = True
            else:
                status = response.status_code
                if status in (401, 403):
                    if auth is not None and auth.can_refresh and not refreshed:
                        refreshed = True
                        log.info("%s answered %s: logging in again once", what, status)
                        auth.refresh()
                        auth(request)
                        continue
                    raise PayloadAuthError(_auth_message(status, what, auth))
                if status in RETRYABLE_STATUS:
                    problem = f"HTTP {status}"
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
                elif status >= 400:
                    raise PayloadResponseError(
                        f"{what} answered HTTP {status}: {_error_text(response)}"
                    )
                else:
                    try:
                        parsed = orjson.loads(response.content)
                    except (orjson.JSONDecodeError, requests.RequestException) as error:
                        problem = f"invalid JSON body ({error.__class__.__name__})"
                        bad_body = True
                    else:
                        response.json = lambda *_a, _p=parsed, **_k: _p  # type: ignore[method-assign]
                        return response
            if attempt >= self.policy.max_retries:
                error_type = PayloadResponseError if bad_body else PayloadUnavailableError
                raise error_type(
                    f"{what} failed after {attempt + 1} attempts (last: {problem}); check that "
                    "PAYLOAD_CMS_URL is reachable and healthy, or raise PAYLOAD_MAX_RETRIES / "
                    "PAYLOAD_TIMEOUT_SECONDS"
                )
            wait = self.policy.wait_seconds(attempt, retry_after)
            log.warning("%s: %s; retry %d in %.2fs", what, problem, attempt + 1, wait)
            attempt += 1
            self.retries += 1
            self._sleep(wait)


def _safe_path(url: str | None) -> str:
    """The URL path without the query string (keeps logs short; never holds secrets)."""
    return (url or "").split("?", 1)[0]


def _error_text(response: requests.Response) -> str:
    try:
        body = orjson.loads(response.content)
        errors = body.get("errors") if isinstance(body, dict) else None
        if errors:
            return "; ".join(str(e.get("message", e)) for e in errors if isinstance(e, dict))
        if isinstance(body, dict) and "message" in body:
            return str(body["message"])
    except (orjson.JSONDecodeError, ValueError):
        pass
    return response.text[:200]


def _auth_message(status: int, what: str, auth: PayloadAuth | None) -> str:
    used = auth.describe if auth is not None else "no credentials"
    return (
        f"{what} was refused with HTTP {status} using {used}. Payload answers 403 for a missing, "
        "expired or insufficient credential: set PAYLOAD_CMS_TOKEN, PAYLOAD_API_KEY or "
        "PAYLOAD_EMAIL/PAYLOAD_PASSWORD for a user allowed to read this collection "
        "(an admin for orders, transactions, carts and users)."
    )


class AuthAwareSession(PayloadSession):
    """Remembers the auth object on the prepared request, so `send` can refresh and re-apply it."""

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        prepared = super().prepare_request(request)
        auth = request.auth or self.auth
        if isinstance(auth, PayloadAuth):
            prepared._payload_auth = auth  # type: ignore[attr-defined]
        return prepared


def build_auth(settings: Settings, session: PayloadSession, base_url: str) -> PayloadAuth:
    """Pick the credential from settings: token, else API key, else e-mail + password."""
    if settings.payload_cms_token is not None:
        return TokenAuth(settings.payload_cms_token.get_secret_value())
    if settings.payload_api_key is not None:
        return ApiKeyAuth(
            settings.payload_auth_collection, settings.payload_api_key.get_secret_value()
        )
    if settings.payload_email and settings.payload_password is not None:
        email = settings.payload_email
        password = settings.payload_password.get_secret_value()
        login_url = f"{base_url}/{settings.payload_auth_collection}/login"

        def login() -> tuple[str, float | None]:
            request = requests.Request(
                "POST", login_url, json={"email": email, "password": password}
            )
            prepared = session.prepare_request(request)
            try:
                response = session.send(prepared)
            except PayloadAuthError:
                raise PayloadAuthError(
                    f"login to {_safe_path(login_url)} was refused: check PAYLOAD_EMAIL and "
                    "PAYLOAD_PASSWORD (and PAYLOAD_AUTH_COLLECTION)"
                ) from None
            body = response.json()
            token = body.get("token") if isinstance(body, dict) else None
            if not isinstance(token, str) or not token:
                raise PayloadResponseError(f"login to {_safe_path(login_url)} returned no token")
            exp = body.get("exp")
            return token, float(exp) if isinstance(exp, int | float) else None

        return LoginAuth(login)
    return AnonymousAuth()


def build_session(settings: Settings) -> AuthAwareSession:
    policy = RetryPolicy(
        max_retries=settings.payload_max_retries,
        backoff_seconds=settings.payload_backoff_seconds,
        max_backoff_seconds=settings.payload_max_backoff_seconds,
        timeout_seconds=settings.payload_timeout_seconds,
    )
    return AuthAwareSession(policy)
