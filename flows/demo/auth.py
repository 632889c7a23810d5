"""Authentication and access control of the demo API, as Payload does it.

- Login mints a real HS256 JWT (`{id, collection, email, sid, iat, exp}`) signed with a secret
  generated per server; `Authorization: JWT <t>` and `Bearer <t>` are accepted. An expired,
  revoked, malformed or foreign token makes the request anonymous (Payload does not answer 401
  there: protected collections then answer 403).
- API keys: `Authorization: users API-Key <key>` authenticates as the admin user.
- Access: catalogue collections are public (published documents only for non-admins); orders,
  transactions, carts, users and addresses need an admin. A logged-in customer reads only their
  own orders, carts, addresses and user, never transactions.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

PROTECTED_COLLECTIONS = frozenset({"orders", "transactions", "carts", "users", "addresses"})
# Collections a customer may read, restricted to their own documents (field holding the owner).
CUSTOMER_OWNED = {"orders": "customer", "carts": "customer", "addresses": "customer", "users": "id"}
FORBIDDEN_BODY = {"errors": [{"message": "You are not allowed to perform this action."}]}
LOGIN_FAILED_BODY = {"errors": [{"message": "The email or password provided is incorrect."}]}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Principal:
    """Who is asking. `user` is the user's depth-0 document (None for anonymous)."""

    user: dict[str, Any] | None
    strategy: str | None = None  # "local-jwt" or "api-key"
    token: str | None = None
    exp: int | None = None
    is_admin: bool = field(init=False)

    def __post_init__(self) -> None:
        roles = (self.user or {}).get("roles") or []
        object.__setattr__(self, "is_admin", isinstance(roles, list) and "admin" in roles)

    @property
    def is_anonymous(self) -> bool:
        return self.user is None

    @property
    def user_id(self) -> Any:
        return self.user.get("id") if self.user else None


ANONYMOUS = Principal(user=None)


@dataclass
class Session:
    id: str
    user_id: Any
    created_at: float
    expires_at: float


@dataclass
class TokenAuthority:
    """Mints and verifies JWTs; keeps login sessions so tokens can be revoked."""

    ttl_seconds: int = 7200
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    sessions: dict[str, Session] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def mint(self, user: dict[str, Any], now: float | None = None) -> tuple[str, int, Session]:
        issued = int(now if now is not None else time.time())
        expires = issued + self.ttl_seconds
        session = Session(str(uuid.uuid4()), user.get("id"), issued, expires)
        with self.lock:
            self.sessions[session.id] = session
        header = {"alg": "HS256", "typ": "JWT"}
        payload = {
            "id": user.get("id"),
            "collection": "users",
            "email": user.get("email"),
            "sid": session.id,
            "iat": issued,
            "exp": expires,
        }
        signing_input = f"{_b64(orjson.dumps(header))}.{_b64(orjson.dumps(payload))}"
        signature = hmac.new(self.secret, signing_input.encode("ascii"), hashlib.sha256).digest()
        return f"{signing_input}.{_b64(signature)}", expires, session

    def verify(self, token: str, now: float | None = None) -> dict[str, Any] | None:
        """The token's claims if it is ours, unexpired and its session not revoked."""
        try:
            header_b64, payload_b64, signature_b64 = token.split(".")
            signing_input = f"{header_b64}.{payload_b64}".encode("ascii")
            expected = hmac.new(self.secret, signing_input, hashlib.sha256).digest()
            if not hmac.compare_digest(expected, _unb64(signature_b64)):
                return None
            if orjson.loads(_unb64(header_b64)).get("alg") != "HS256":
                return None
            claims: dict[str, Any] = orjson.loads(_unb64(payload_b64))
        except (ValueError, UnicodeError, orjson.JSONDecodeError):
            return None
        current = now if now is not None else time.time()
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp <= current:
            return None
        with self.lock:
            if claims.get("sid") not in self.sessions:
                return None
        return claims

    def revoke_all(self) -> int:
        with self.lock:
            count = len(self.sessions)
            self.sessions.clear()
            return count

    def sessions_of(self, user_id: Any) -> list[dict[str, str]]:
        from flows.demo.store import format_timestamp

        now = time.time()
        with self.lock:
            mine = [s for s in self.sessions.values() if s.user_id == user_id]
        out = []
        for session in sorted(mine, key=lambda s: s.created_at):
            if session.expires_at <= now:
                continue
            out.append(
                {
                    "id": session.id,
                    "createdAt": format_timestamp(_utc(session.created_at)),
                    "expiresAt": format_timestamp(_utc(session.expires_at)),
                }
            )
        return out


def _utc(epoch: float) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, tz=UTC)


def parse_authorization(header: str | None) -> tuple[str, str] | None:
    """("jwt", token) or ("api-key", key) from an Authorization header, else None."""
    if not header:
        return None
    text = header.strip()
    lowered = text.lower()
    for prefix in ("jwt ", "bearer "):
        if lowered.startswith(prefix):
            return ("jwt", text[len(prefix) :].strip())
    marker = " api-key "
    position = lowered.find(marker)
    if position > 0 and lowered[:position] == "users":
        return ("api-key", text[position + len(marker) :].strip())
    return None


def token_from_cookie(cookie_header: str | None) -> str | None:
    if not cookie_header:
        return None
    for part in cookie_header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == "payload-token" and value:
            return value
    return None


def can_list(principal: Principal, collection: str) -> bool:
    """Whether the principal may read the collection at all (else 403)."""
    if collection not in PROTECTED_COLLECTIONS or principal.is_admin:
        return True
    if principal.is_anonymous:
        return False
    return collection in CUSTOMER_OWNED
