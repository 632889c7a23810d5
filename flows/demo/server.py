"""The demo Payload CMS 3 REST API: an HTTP server over the in-memory `Store`.

Stdlib `ThreadingHTTPServer` speaking HTTP/1.1 (keep-alive, Content-Length on every response),
so fault injection controls every byte on the wire. Responses follow the captured Payload 3.90
contract (tests/fixtures/payload-api); docs/demo-api.md lists the routes and rules.

Speed: depth-0 documents are serialised once and their JSON bytes cached (keyed by document
identity: the store replaces a dict on every change); sorted views are cached per collection
version; pages are built by joining cached bytes.
"""

from __future__ import annotations

import contextlib
import gc
import socket
import struct
import sys
import threading
import time
import traceback
import uuid
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson

from flows.demo import auth
from flows.demo.auth import ANONYMOUS, Principal, TokenAuthority
from flows.demo.faults import Fault, FaultInjector, FaultPlan, truncated
from flows.demo.query import (
    BASE_FIELDS,
    JOIN_LIMIT,
    JOIN_PLACEMENT,
    SCHEMAS,
    Field,
    InternalQueryError,
    ListParams,
    QueryError,
    compile_where,
    infer_field,
    keyset_after,
    list_params,
    lower_bound,
    paginate,
    parse_params,
    select_fields,
    sort_documents,
    where_uses_array,
)
from flows.demo.store import DRAFTS_ENABLED, TRASH_ENABLED, Document, Store, format_timestamp
from flows.source.ids import IdType

SOMETHING_WENT_WRONG = {"errors": [{"message": "Something went wrong."}]}
NOT_FOUND = {"errors": [{"message": "Not Found"}]}
ABANDONED_AFTER = timedelta(hours=24)
REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}

Audience = str  # "admin", "public" or "customer:<id>"


def cart_status(cart: Document, abandoned_before: str) -> str:
    """Payload ecommerce's computed cart status: `purchased` once purchasedAt is set, else
    `abandoned` when not updated for 24 h (by the store clock), else `active`."""
    if cart.get("purchasedAt"):
        return "purchased"
    updated = cart.get("updatedAt")
    if isinstance(updated, str) and updated <= abandoned_before:
        return "abandoned"
    return "active"


@dataclass
class Response:
    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "application/json"


def json_response(status: int, data: Any, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(status, orjson.dumps(data), headers or [])


def malformed_id(collection: str | None, doc_id: Any, id_type: IdType = IdType.INT) -> str:
    """The id the `malform` fault serves for a document (stable across requests): a UUID, the
    id of another kind of store; in a UUID store the same UUID in upper case (Payload sends
    lowercase, so it is not an id of that store either)."""
    wrong = str(uuid.uuid5(uuid.NAMESPACE_URL, f"demo/{collection}/{doc_id}"))
    return wrong.upper() if id_type is IdType.UUID else wrong


def malformed(response: Response, collection: str | None, id_type: IdType) -> Response:
    """The `malform` fault: every document of a list response gets a UUID string as its id
    (derived from the real id, so a document keeps the same UUID across requests)."""
    if response.status != 200:
        return response
    body = orjson.loads(response.body)
    docs = body.get("docs") if isinstance(body, dict) else None
    if not isinstance(docs, list):
        return response
    for doc in docs:
        if isinstance(doc, dict) and "id" in doc:
            doc["id"] = malformed_id(collection, doc["id"], id_type)
    return json_response(200, body, response.headers)


def shortened(response: Response) -> Response:
    """The `short` fault: a list response keeps only the first half of its documents; its
    `totalDocs` and `hasNextPage` still describe the whole page."""
    if response.status != 200:
        return response
    body = orjson.loads(response.body)
    docs = body.get("docs") if isinstance(body, dict) else None
    if not isinstance(docs, list):
        return response
    body["docs"] = docs[: len(docs) // 2]
    return json_response(200, body, response.headers)


@dataclass
class DriftConfig:
    every_n_list_requests: int = 0
    fraction: float = 0.01
    collection: str | None = None
    seed: int = 0
    list_requests: int = 0
    batches_applied: int = 0


class Reader:
    """Query execution and rendering over a Store, with caches keyed by store versions."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.extra_fields: dict[str, dict[str, Field]] = {}
        self._lock = threading.Lock()
        self._snapshots: dict[tuple[Any, ...], list[Document]] = {}
        self._filtered: OrderedDict[tuple[Any, ...], tuple[list[Document], list[Document]]] = (
            OrderedDict()
        )
        self._bytes: dict[tuple[str, str], dict[Any, tuple[Document, Any, bytes]]] = {}
        self._joins: dict[tuple[Any, ...], dict[Any, list[Document]]] = {}
        self._carts: dict[Any, tuple[Document, str, Document]] = {}
        self._inferred: dict[tuple[str, int], dict[str, Field]] = {}
        self._keys: dict[tuple[int, str], tuple[list[Document], list[Any] | None]] = {}

    # --- schema -----------------------------------------------------------------------------
    def schema(self, collection: str, with_inferred: bool = False) -> dict[str, Field]:
        merged = {**BASE_FIELDS, **SCHEMAS.get(collection, {})}
        merged.update(self.extra_fields.get(collection, {}))
        if with_inferred:
            merged = {**self._inferred_fields(collection), **merged}
        return merged

    def _inferred_fields(self, collection: str) -> dict[str, Field]:
        """Fields seen in documents but not in the schema (e.g. added by a schema change)."""
        key = (collection, self.store.versions.get(collection, 0))
        cached = self._inferred.get(key)
        if cached is not None:
            return cached
        with self.store.lock:
            docs = list(self.store.collections[collection].values())
        known = self.schema(collection)
        values: dict[str, list[Any]] = {}
        for doc in docs:
            for name, value in doc.items():
                if name not in known:
                    values.setdefault(name, []).append(value)
        inferred = {name: infer_field(found) for name, found in values.items()}
        self._inferred = {key: inferred}
        return inferred

    def compile(self, collection: str, where: Any) -> Callable[[Document], bool] | None:
        try:
            return compile_where(self.schema(collection), where, self.lookup)
        except QueryError:
            # Maybe a field added at runtime: retry with fields inferred from the documents.
            return compile_where(self.schema(collection, with_inferred=True), where, self.lookup)

    # --- rows -------------------------------------------------------------------------------
    def lookup(self, collection: str, doc_id: Any) -> Document | None:
        if collection not in self.store.collections:
            return None
        try:
            doc = self.store.collections[collection].get(doc_id)
        except TypeError:
            return None
        return self.row(collection, doc) if doc is not None else None

    def _abandoned_before(self) -> str:
        return format_timestamp(self.store.now - ABANDONED_AFTER)

    def row(self, collection: str, doc: Document, abandoned_before: str | None = None) -> Document:
        """The document as queried and rendered: carts get their computed status."""
        if collection != "carts":
            return doc
        status = cart_status(doc, abandoned_before or self._abandoned_before())
        cached = self._carts.get(doc.get("id"))
        if cached is not None and cached[0] is doc and cached[1] == status:
            return cached[2]
        augmented = {key: value for key, value in doc.items() if key != "status"}
        augmented["status"] = status
        self._carts[doc.get("id")] = (doc, status, augmented)
        return augmented

    def sorted_rows(
        self, collection: str, sort: tuple[str, ...], trash: bool, admin: bool
    ) -> list[Document]:
        with self.store.lock:
            version = self.store.versions.get(collection, 0)
            clock = self.store.now if collection == "carts" else None
            key = (collection, version, clock, sort, trash, admin)
            cached = self._snapshots.get(key)
            if cached is not None:
                return cached
            docs = list(self.store.collections[collection].values())
        abandoned_before = self._abandoned_before()
        rows = [self.row(collection, doc, abandoned_before) for doc in docs]
        if collection in TRASH_ENABLED and not trash:
            rows = [row for row in rows if row.get("deletedAt") is None]
        if collection in DRAFTS_ENABLED and not admin:
            rows = [row for row in rows if row.get("_status", "published") != "draft"]
        schema = self.schema(collection)
        if any(item.lstrip("-").split(".")[0] not in schema for item in sort):
            schema = self.schema(collection, with_inferred=True)  # a field added at runtime
        ordered = sort_documents(rows, schema, sort)
        with self._lock:
            # Keep only current-version snapshots: memory stays bounded under drift.
            stale = [k for k in self._snapshots if k[0] == collection and k[1:3] != key[1:3]]
            for old in stale:
                del self._snapshots[old]
            self._snapshots[key] = ordered
        return ordered

    def query_rows(
        self, collection: str, params: ListParams, principal: Principal
    ) -> list[Document]:
        predicate = self.compile(collection, params.where)
        rows = self.sorted_rows(collection, params.sort, params.trash, principal.is_admin)
        owner_field = None
        if not principal.is_admin and collection in auth.CUSTOMER_OWNED:
            owner_field = auth.CUSTOMER_OWNED[collection]
        if predicate is None and owner_field is None:
            return rows
        cache_key = (
            id(rows),
            orjson.dumps(params.where, option=orjson.OPT_SORT_KEYS),
            principal.user_id if owner_field else None,
        )
        with self._lock:
            hit = self._filtered.get(cache_key)
            if hit is not None and hit[0] is rows:
                return hit[1]
        selected = rows
        keyset = keyset_after(self.schema(collection), params.where, params.sort)
        pair_keys = self._pair_keys(rows, params.sort) if keyset is not None else None
        if keyset is not None and pair_keys is not None:
            try:
                selected = rows[bisect_right(pair_keys, keyset) :]
                predicate = None  # the slice is exactly the matches
            except TypeError:
                selected = rows
        if predicate is not None and params.sort and not params.sort[0].startswith("-"):
            # Sorted ascending by a field the where bounds from below: skip what cannot match.
            bound = lower_bound(self.schema(collection), params.where, params.sort[0])
            keys = self._sort_keys(rows, params.sort[0]) if bound is not None else None
            if keys is not None:
                try:
                    selected = rows[bisect_left(keys, bound) :]
                except TypeError:
                    selected = rows
        if owner_field is not None:
            user_id = principal.user_id
            selected = [row for row in selected if row.get(owner_field) == user_id]
        if predicate is not None:
            selected = [row for row in selected if predicate(row)]
        with self._lock:
            self._filtered[cache_key] = (rows, selected)
            while len(self._filtered) > 64:
                self._filtered.popitem(last=False)
        return selected

    def _pair_keys(self, rows: list[Document], sort: tuple[str, ...]) -> list[Any] | None:
        """(A, B) along rows sorted by `A,B`, if each is of one kind (for keyset search)."""
        first = self._sort_keys(rows, sort[0])
        second = self._sort_keys(rows, sort[1])
        if first is None or second is None:
            return None
        cache_key = (id(rows), ",".join(sort))
        with self._lock:
            hit = self._keys.get(cache_key)
        if hit is not None and hit[0] is rows:
            return hit[1]
        pairs: list[Any] = list(zip(first, second, strict=True))
        with self._lock:
            self._keys[cache_key] = (rows, pairs)
        return pairs

    def _sort_keys(self, rows: list[Document], field_name: str) -> list[Any] | None:
        """The (non-decreasing) values of `field_name` along `rows`, if all of one kind."""
        cache_key = (id(rows), field_name)
        with self._lock:
            hit = self._keys.get(cache_key)
        if hit is not None and hit[0] is rows:
            return hit[1]
        keys = [row.get(field_name) for row in rows]
        kinds = {type(value) for value in keys}
        usable = keys if kinds == {str} or (kinds and kinds <= {int, float}) else None
        with self._lock:
            if len(self._keys) > 32:
                self._keys.clear()
            self._keys[cache_key] = (rows, usable)
        return usable

    def visible(self, collection: str, row: Document, trash: bool, principal: Principal) -> bool:
        if collection in TRASH_ENABLED and not trash and row.get("deletedAt") is not None:
            return False
        if (
            collection in DRAFTS_ENABLED
            and not principal.is_admin
            and row.get("_status", "published") == "draft"
        ):
            return False
        owner_field = auth.CUSTOMER_OWNED.get(collection)
        if not principal.is_admin and owner_field and collection in auth.PROTECTED_COLLECTIONS:
            return row.get(owner_field) == principal.user_id
        return True

    # --- joins ------------------------------------------------------------------------------
    def join_children(self, collection: str, name: str, parent_id: Any, admin: bool) -> list[Any]:
        spec = SCHEMAS[collection][name]
        target, on = spec.target or "", spec.on or ""
        if target not in self.store.collections:
            return []
        key = (target, on, self.store.versions.get(target, 0), admin)
        index = self._joins.get(key)
        if index is None:
            with self.store.lock:
                docs = list(self.store.collections[target].values())
            docs = [d for d in docs if d.get("deletedAt") is None]
            if not admin and target in DRAFTS_ENABLED:
                docs = [d for d in docs if d.get("_status", "published") != "draft"]
            if target == "variantOptions":
                order = ("_variantOptions_options_order", "id")
            else:
                order = ("-createdAt", "-id")
            built: dict[Any, list[Document]] = {}
            for doc in sort_documents(docs, self.schema(target), order):
                owner = doc.get(on)
                try:
                    built.setdefault(owner, []).append(doc)
                except TypeError:  # malformed (unhashable) reference
                    continue
            with self._lock:
                self._joins = {k: v for k, v in self._joins.items() if k[:2] != key[:2]}
                self._joins[key] = built
            index = built
        try:
            return index.get(parent_id, [])
        except TypeError:
            return []

    def join_version(self, collection: str) -> Any:
        targets = [SCHEMAS[c][n].target for (c, n) in JOIN_PLACEMENT if c == collection]
        return tuple(self.store.versions.get(t or "", 0) for t in targets)

    # --- rendering --------------------------------------------------------------------------
    def render(self, collection: str, row: Document, depth: int, principal: Principal) -> Document:
        """The document as Payload returns it at `depth` for this principal."""
        if (
            depth == 0
            and collection not in _JOINED
            and (principal.is_admin or collection != "orders")
        ):
            return row  # nothing computed or hidden: the stored depth-0 document as is
        schema = SCHEMAS.get(collection, {})
        admin = principal.is_admin
        join_names = _JOIN_NAMES.get(collection, ())
        anchors = _JOIN_ANCHORS.get(collection, {})
        out: Document = {}
        for key, value in row.items():
            if key in join_names:
                out[key] = self._join_value(collection, key, row.get("id"), depth, principal)
                continue
            spec = schema.get(key)
            if spec is not None and depth > 0:
                value = self._populate_field(spec, value, depth, principal)
            out[key] = value
            for name in anchors.get(key, ()):
                if name not in row:
                    out[name] = self._join_value(collection, name, row.get("id"), depth, principal)
        if not admin and collection == "orders" and "transactions" in out:
            del out["transactions"]  # field-level access: customers do not see transactions
        return out

    def _join_value(
        self,
        collection: str,
        name: str,
        parent_id: Any,
        depth: int,
        principal: Principal,
    ) -> dict[str, Any]:
        children = self.join_children(collection, name, parent_id, principal.is_admin)
        target = SCHEMAS[collection][name].target or ""
        first = children[:JOIN_LIMIT]
        docs: list[Any]
        if depth > 0:
            docs = [self.render(target, self.row(target, c), depth - 1, principal) for c in first]
        else:
            docs = [child.get("id") for child in first]
        return {"docs": docs, "hasNextPage": len(children) > JOIN_LIMIT}

    def _populate_field(self, spec: Field, value: Any, depth: int, principal: Principal) -> Any:
        if spec.type == "relationship" and spec.target:
            if spec.many and isinstance(value, list):
                return [self._populate(spec.target, item, depth, principal) for item in value]
            return self._populate(spec.target, value, depth, principal)
        if spec.type == "array" and isinstance(value, list):
            rows = []
            for item in value:
                if not isinstance(item, dict):
                    rows.append(item)
                    continue
                rows.append(
                    {
                        k: (
                            self._populate_field(spec.fields[k], v, depth, principal)
                            if k in spec.fields
                            else v
                        )
                        for k, v in item.items()
                    }
                )
            return rows
        return value

    def _populate(self, target: str, value: Any, depth: int, principal: Principal) -> Any:
        if value is None or isinstance(value, dict):
            return value
        if not auth.can_list(principal, target):
            return value
        doc = self.lookup(target, value)
        if doc is None or not self.visible(target, doc, False, principal):
            return None  # trashed, unpublished or deleted: Payload populates null
        return self.render(target, doc, depth - 1, principal)

    def depth0_bytes(self, collection: str, row: Document, principal: Principal) -> bytes:
        """Cached JSON of a depth-0 document (admin and public audiences)."""
        if not principal.is_admin and collection in auth.PROTECTED_COLLECTIONS:
            return orjson.dumps(self.render(collection, row, 0, principal))
        audience = "admin" if principal.is_admin else "public"
        cache = self._bytes.get((collection, audience))
        if cache is None:
            cache = self._bytes.setdefault((collection, audience), {})
        dependency = self.join_version(collection) if collection in _JOINED else None
        doc_id = row.get("id")
        try:
            entry = cache.get(doc_id)
        except TypeError:
            return orjson.dumps(self.render(collection, row, 0, principal))
        if entry is not None and entry[0] is row and entry[1] == dependency:
            return entry[2]
        encoded = orjson.dumps(self.render(collection, row, 0, principal))
        cache[doc_id] = (row, dependency, encoded)
        return encoded

    def encode_docs(
        self,
        collection: str,
        rows: list[Document],
        depth: int,
        select: Any,
        principal: Principal,
    ) -> bytes:
        if depth == 0 and select is None:
            parts = [self.depth0_bytes(collection, row, principal) for row in rows]
        else:
            parts = []
            for row in rows:
                rendered = self.render(collection, row, depth, principal)
                if select is not None:
                    rendered = select_fields(rendered, select)
                parts.append(orjson.dumps(rendered))
        return b"[" + b",".join(parts) + b"]"


_JOINED = frozenset(collection for (collection, _name) in JOIN_PLACEMENT)
_JOIN_NAMES: dict[str, frozenset[str]] = {
    c: frozenset(n for (c2, n) in JOIN_PLACEMENT if c2 == c) for c in _JOINED
}
_JOIN_ANCHORS: dict[str, dict[str, tuple[str, ...]]] = {
    c: {
        a: tuple(n for (c2, n), a2 in JOIN_PLACEMENT.items() if c2 == c and a2 == a)
        for (c3, _n), a in JOIN_PLACEMENT.items()
        if c3 == c
    }
    for c in _JOINED
}


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    demo: DemoServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "payload-demo"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = 300  # idle keep-alive connections are closed after this many seconds
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.demo._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.demo._track(self.connection, False)

    def do_GET(self) -> None:
        self.server.demo._dispatch(self, "GET")

    def do_POST(self) -> None:
        self.server.demo._dispatch(self, "POST")

    def do_PATCH(self) -> None:
        self.server.demo._dispatch(self, "PATCH")

    def do_PUT(self) -> None:
        self.server.demo._dispatch(self, "PUT")

    def do_DELETE(self) -> None:
        self.server.demo._dispatch(self, "DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.demo.verbose:
            super().log_message(format, *args)


class DemoServer:
    """Payload-compatible REST API over `store`; see module and docs/demo-api.md."""

    def __init__(
        self,
        store: Store,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        admin_email: str = "admin@example.com",
        admin_password: str = "demo-password",  # noqa: S107 (documented demo default)
        api_key: str | None = None,
        faults: FaultPlan | str | None = None,
        token_ttl_seconds: int = 7200,
        seed: int = 42,
        verbose: bool = False,
        store_identity: tuple[str, int, int] | None = None,
    ) -> None:
        self.store = store
        # (preset, scale, seed) of the generated store, served by /api/_demo/identity: which
        # store this is, whatever port it runs on (the loader records it with each table).
        self.store_identity = store_identity
        self.host = host
        self.port = port
        self.admin_email = admin_email
        self.admin_password = admin_password
        self.api_key = api_key
        self.seed = seed
        self.verbose = verbose
        self.tokens = TokenAuthority(ttl_seconds=token_ttl_seconds)
        self.injector = FaultInjector()
        self.faults = faults
        self.reader = Reader(store)
        self.drift = DriftConfig(seed=seed)
        self._admin_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._stats: dict[str, Any] = {"requests": 0, "by_status": {}, "by_collection": {}}
        self._connections: set[socket.socket] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._admin_user_id = self._ensure_admin_user()

    # --- lifecycle --------------------------------------------------------------------------
    def start(self) -> DemoServer:
        if self._httpd is not None:
            return self
        httpd = _HTTPServer((self.host, self.port), _Handler)
        httpd.demo = self
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        for connection in list(self._connections):
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> DemoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _track(self, connection: socket.socket, alive: bool) -> None:
        with self._stats_lock:
            if alive:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    @property
    def url(self) -> str:
        host = self.host if self.host not in ("0.0.0.0", "") else "127.0.0.1"
        return f"http://{host}:{self.port}"

    # --- faults -----------------------------------------------------------------------------
    @property
    def faults(self) -> FaultPlan:
        return self.injector.plan

    @faults.setter
    def faults(self, plan: FaultPlan | str | None) -> None:
        if plan is None:
            plan = FaultPlan(seed=self.seed)
        elif isinstance(plan, str):
            plan = FaultPlan.parse(plan, seed=self.seed)
        self.injector.set_plan(plan)

    # --- auth -------------------------------------------------------------------------------
    def _ensure_admin_user(self) -> Any:
        """The admin is a user document like in Payload; created if the dataset lacks one."""
        users = self.store.collections.setdefault("users", {})
        self.store.versions.setdefault("users", 0)
        wanted = self.admin_email.lower()
        for doc in list(users.values()):
            if str(doc.get("email", "")).lower() == wanted:
                return doc["id"]
        admin = self.store.create(
            "users",
            {
                "name": "Store Admin",
                "roles": ["admin"],
                "email": self.admin_email,
                "collection": "users",
                "sessions": [],
            },
        )
        # Keep Payload's key order (timestamps before email).
        ordered = {
            "id": admin["id"],
            "name": admin["name"],
            "roles": admin["roles"],
            "updatedAt": admin["updatedAt"],
            "createdAt": admin["createdAt"],
            "email": admin["email"],
            "collection": "users",
            "sessions": [],
        }
        with self.store.lock:
            users[admin["id"]] = ordered
        return admin["id"]

    def prewarm(self) -> int:
        """Serialise every document at depth 0 for the admin audience up front (the cache an
        extract reads from), so the first full read is as fast as later ones. Returns the count."""
        user = self._user(self._admin_user_id)
        principal = Principal(user=user, strategy="local-jwt")
        warmed = 0
        for collection in self.store.names():
            if collection not in self.store.collections:
                continue
            rows = self.reader.sorted_rows(collection, ("-createdAt",), True, principal.is_admin)
            for row in rows:
                self.reader.depth0_bytes(collection, row, principal)
            warmed += len(rows)
        gc.collect()
        gc.freeze()  # the cache is long-lived too
        return warmed

    def _user(self, user_id: Any) -> Document | None:
        return self.store.get("users", user_id) if "users" in self.store.collections else None

    def admin_token(self) -> str:
        """A fresh admin JWT (as `POST /api/users/login` would return)."""
        user = self._user(self._admin_user_id)
        assert user is not None
        return self.tokens.mint(user)[0]

    def user_token(self, user_id: int) -> str:
        """A JWT for any user (e.g. a customer), for access-control tests."""
        user = self._user(user_id)
        if user is None:
            raise KeyError(f"no user {user_id}")
        return self.tokens.mint(user)[0]

    def _principal(self, handler: BaseHTTPRequestHandler) -> Principal:
        parsed = auth.parse_authorization(handler.headers.get("Authorization"))
        token = None
        if parsed is not None and parsed[0] == "api-key":
            if self.api_key and parsed[1] == self.api_key:
                user = self._user(self._admin_user_id)
                return Principal(user=user, strategy="api-key") if user else ANONYMOUS
            return ANONYMOUS
        if parsed is not None:
            token = parsed[1]
        else:
            token = auth.token_from_cookie(handler.headers.get("Cookie"))
        if not token:
            return ANONYMOUS
        claims = self.tokens.verify(token)
        if claims is None:
            return ANONYMOUS
        user = self._user(claims.get("id"))
        if user is None:
            return ANONYMOUS
        return Principal(user=user, strategy="local-jwt", token=token, exp=claims.get("exp"))

    def _user_view(self, user: Document, strategy: str) -> Document:
        view = {k: v for k, v in user.items() if k not in ("sessions", "collection", "_strategy")}
        view["sessions"] = self.tokens.sessions_of(user.get("id"))
        view["collection"] = "users"
        view["_strategy"] = strategy
        return view

    # --- dispatch ---------------------------------------------------------------------------
    def _dispatch(self, handler: _Handler, method: str) -> None:
        body = b""
        try:
            length = int(handler.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
            handler.close_connection = True  # cannot find the next request: drop the connection
        if length > 0:
            body = handler.rfile.read(length)
        split = urlsplit(handler.path)
        path = unquote(split.path).rstrip("/") or "/"
        segments = [s for s in path.split("/") if s]
        fault: Fault | None = None
        try:
            if len(segments) >= 2 and segments[:2] == ["api", "_demo"]:
                response = self._admin_route(handler, method, segments[2:], body)
            else:
                collection = segments[1] if len(segments) >= 2 and segments[0] == "api" else None
                fault = self.injector.decide(path, collection)
                if fault is not None and fault.kind == "reset":
                    self._count(None, "reset")
                    self._reset(handler)
                    return
                if fault is not None and fault.kind == "latency":
                    time.sleep(fault.rule.delay)
                    fault = None
                if fault is not None and fault.kind in ("500", "502", "503", "429"):
                    response = self._fault_response(fault)
                else:
                    response = self._route(handler, method, segments, path, split.query, body)
                if fault is not None and fault.kind == "malform":
                    response, fault = malformed(response, collection, self.store.id_type), None
                if fault is not None and fault.kind == "short":
                    response, fault = shortened(response), None
                self._count(collection, response.status)
        except Exception:
            traceback.print_exc(file=sys.stderr)
            response = json_response(500, SOMETHING_WENT_WRONG)
        self._send(handler, response, fault)

    def _fault_response(self, fault: Fault) -> Response:
        if fault.kind == "429":
            return json_response(
                429,
                {"errors": [{"message": "Too many requests, please try again later."}]},
                [("Retry-After", str(fault.rule.retry_after))],
            )
        if fault.kind == "500":
            return json_response(500, SOMETHING_WENT_WRONG)
        reason = REASONS[int(fault.kind)]
        html = f"<html><head><title>{fault.kind} {reason}</title></head><body><center><h1>"
        html += f"{fault.kind} {reason}</h1></center><hr><center>nginx</center></body></html>\n"
        return Response(int(fault.kind), html.encode(), content_type="text/html")

    def _send(self, handler: _Handler, response: Response, fault: Fault | None) -> None:
        body = response.body
        declared = len(body)
        if fault is not None and fault.kind == "truncate" and response.status == 200:
            body = truncated(body)
            declared = len(body)
        elif fault is not None and fault.kind == "cut":
            body = body[: max(0, len(body) // 2)]
        lines = [
            f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'OK')}",
            f"Content-Type: {response.content_type}; charset=utf-8",
            f"Content-Length: {declared}",
            f"Date: {handler.date_time_string()}",
        ]
        lines.extend(f"{name}: {value}" for name, value in response.headers)
        if handler.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            handler.wfile.write(head + body)
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True
            return
        if self.verbose:
            handler.log_request(response.status, declared)
        if fault is not None and fault.kind == "cut":
            # Close cleanly after part of the body: the client sees the stream end before
            # Content-Length bytes arrived (an RST could discard the partial body instead).
            handler.close_connection = True
            with contextlib.suppress(OSError):
                handler.connection.shutdown(socket.SHUT_WR)

    def _reset(self, handler: _Handler) -> None:
        """Abort the connection with a TCP RST (SO_LINGER 0), as a crashed proxy would."""
        handler.close_connection = True
        try:
            handler.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            handler.connection.close()
        except OSError:
            pass

    def _count(self, collection: str | None, status: int | str) -> None:
        with self._stats_lock:
            stats = self._stats
            stats["requests"] += 1
            key = str(status)
            stats["by_status"][key] = stats["by_status"].get(key, 0) + 1
            if collection:
                stats["by_collection"][collection] = stats["by_collection"].get(collection, 0) + 1

    # --- Payload routes ---------------------------------------------------------------------
    def _route(
        self,
        handler: _Handler,
        method: str,
        segments: list[str],
        path: str,
        query: str,
        body: bytes,
    ) -> Response:
        not_found = json_response(404, {"message": f'Route not found "{path}"'})
        if len(segments) < 2 or segments[0] != "api":
            return not_found
        collection = segments[1]
        principal = self._principal(handler)
        if collection == "users" and len(segments) == 3 and segments[2] in ("login", "logout"):
            if method != "POST":
                return not_found
            return self._login(body) if segments[2] == "login" else self._logout(principal)
        if collection == "users" and len(segments) == 3 and segments[2] == "me":
            return self._me(principal) if method == "GET" else not_found
        if collection not in self.store.collections or len(segments) > 3:
            return not_found
        if method != "GET":
            if principal.is_anonymous:
                return json_response(403, auth.FORBIDDEN_BODY)
            message = "The demo API is read-only: change data with the /api/_demo endpoints."
            return json_response(405, {"errors": [{"message": message}]})
        if not auth.can_list(principal, collection):
            return json_response(403, auth.FORBIDDEN_BODY)
        params = parse_params(query)
        try:
            if len(segments) == 2:
                return self._list(collection, params, principal)
            if segments[2] == "count":
                return self._count_docs(collection, params, principal)
            return self._by_id(collection, segments[2], params, principal)
        except QueryError as exc:
            return json_response(400, exc.body())
        except InternalQueryError:
            return json_response(500, SOMETHING_WENT_WRONG)

    def _maybe_drift(self, collection: str) -> None:
        drift = self.drift
        if drift.every_n_list_requests <= 0:
            return
        if drift.collection is not None and drift.collection != collection:
            return
        with self._admin_lock:
            drift.list_requests += 1
            if drift.list_requests % drift.every_n_list_requests != 0:
                return
            from flows.demo.changes import apply_change_batch

            apply_change_batch(self.store, drift.seed + drift.batches_applied, drift.fraction)
            drift.batches_applied += 1

    def _list(self, collection: str, params: dict[str, Any], principal: Principal) -> Response:
        self._maybe_drift(collection)
        query = list_params(params)
        rows = self.reader.query_rows(collection, query, principal)
        schema = self.reader.schema(collection)
        envelope = paginate(len(rows), query, where_uses_array(schema, query.where))
        start, stop = envelope.pop("_slice")
        docs = self.reader.encode_docs(
            collection, rows[start:stop], query.depth, query.select, principal
        )
        rest = orjson.dumps(envelope)
        return Response(200, b'{"docs":' + docs + b"," + rest[1:])

    def _count_docs(
        self, collection: str, params: dict[str, Any], principal: Principal
    ) -> Response:
        query = list_params({**params, "sort": "id"})
        rows = self.reader.query_rows(collection, query, principal)
        return json_response(200, {"totalDocs": len(rows)})

    def _by_id(
        self, collection: str, raw_id: str, params: dict[str, Any], principal: Principal
    ) -> Response:
        try:
            doc_id: Any = int(raw_id)
        except ValueError:
            doc_id = raw_id
        query = list_params(params)
        row = self.reader.lookup(collection, doc_id)
        if row is None or not self.reader.visible(collection, row, query.trash, principal):
            return json_response(404, NOT_FOUND)
        rendered = self.reader.render(collection, row, query.depth, principal)
        if query.select is not None:
            rendered = select_fields(rendered, query.select)
        return json_response(200, rendered)

    def _login(self, body: bytes) -> Response:
        try:
            data = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError:
            data = {}
        if not isinstance(data, dict) or not data.get("email") or not data.get("password"):
            return json_response(400, {"errors": [{"message": "Missing email or password."}]})
        user = self._user(self._admin_user_id)
        email_ok = str(data["email"]).lower() == self.admin_email.lower()
        if user is None or not email_ok or data["password"] != self.admin_password:
            return json_response(401, auth.LOGIN_FAILED_BODY)
        token, exp, _session = self.tokens.mint(user)
        cookie_expiry = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(exp))
        cookie = f"payload-token={token}; Expires={cookie_expiry}; Path=/; HttpOnly; SameSite=Lax"
        payload = {
            "message": "Authentication Passed",
            "exp": exp,
            "token": token,
            "user": self._user_view(user, "local-jwt"),
        }
        return json_response(200, payload, [("Set-Cookie", cookie)])

    def _logout(self, principal: Principal) -> Response:
        if principal.token:
            claims = self.tokens.verify(principal.token) or {}
            with self.tokens.lock:
                self.tokens.sessions.pop(claims.get("sid", ""), None)
            return json_response(200, {"message": "Logout successful."})
        return json_response(400, {"errors": [{"message": "No User"}]})

    def _me(self, principal: Principal) -> Response:
        if principal.user is None:
            return json_response(200, {"user": None, "message": "Account"})
        strategy = principal.strategy or "local-jwt"
        payload: dict[str, Any] = {
            "user": self._user_view(principal.user, strategy),
            "collection": "users",
            "strategy": strategy,
        }
        if principal.token:
            payload["exp"] = principal.exp
            payload["token"] = principal.token
        payload["message"] = "Account"
        return json_response(200, payload)

    # --- admin / test endpoints -------------------------------------------------------------
    def _admin_route(
        self, handler: _Handler, method: str, rest: list[str], body: bytes
    ) -> Response:
        if rest == ["health"]:
            return json_response(200, {"status": "ok"})
        if rest == ["identity"] and method == "GET":  # public: names the store, holds no secret
            return json_response(200, self.identity())
        principal = self._principal(handler)
        if not principal.is_admin:
            return json_response(403, auth.FORBIDDEN_BODY)
        try:
            data = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError:
            return json_response(400, {"errors": [{"message": "Body must be JSON."}]})
        if not isinstance(data, dict):
            return json_response(400, {"errors": [{"message": "Body must be a JSON object."}]})
        name = "/".join(rest)
        try:
            if name == "stats" and method == "GET":
                return json_response(200, self.stats())
            if name == "faults" and method == "GET":
                return json_response(200, self.faults.to_json())
            if method != "POST":
                return json_response(404, {"message": f'Route not found "/api/_demo/{name}"'})
            with self._admin_lock:
                if name == "faults":
                    self.faults = FaultPlan.from_json(data, default_seed=self.seed)
                    return json_response(200, self.faults.to_json())
                if name == "changes":
                    return json_response(200, self._apply_changes(data))
                if name == "drift":
                    return json_response(200, self._set_drift(data))
                if name == "revoke-tokens":
                    return json_response(200, {"revoked": self.tokens.revoke_all()})
                if name == "inject":
                    return json_response(200, self._inject(data))
                if name == "schema":
                    return json_response(200, self._schema_change(data))
                if name == "late-commit":
                    return json_response(200, self._late_commit(data))
        except (KeyError, ValueError, TypeError) as exc:
            message = f"Bad request for /api/_demo/{name}: {exc}"
            return json_response(400, {"errors": [{"message": message}]})
        return json_response(404, {"message": f'Route not found "/api/_demo/{name}"'})

    def identity(self) -> dict[str, Any]:
        """Which generated store this server holds (not its URL: the same store may run on any
        port). A store not built by `serve_demo` (tests) reports its seed only."""
        preset, scale, seed = self.store_identity or ("custom", 1, self.seed)
        return {
            "kind": "payload-lakehouse-demo",
            "preset": preset,
            "scale": scale,
            "seed": seed,
            "idType": self.store.id_type.value,
        }

    def stats(self) -> dict[str, Any]:
        with self._stats_lock:
            stats = orjson.loads(orjson.dumps(self._stats))
        stats["faults"] = self.injector.stats()
        stats["drift"] = {
            "every_n_list_requests": self.drift.every_n_list_requests,
            "list_requests": self.drift.list_requests,
            "batches_applied": self.drift.batches_applied,
        }
        stats["documents"] = {name: self.store.count(name) for name in self.store.names()}
        stats["store_now"] = format_timestamp(self.store.now)
        return stats

    def _apply_changes(self, data: dict[str, Any]) -> Any:
        from flows.demo.changes import apply_change_batch

        summary = apply_change_batch(
            self.store, int(data.get("seed", self.seed)), float(data.get("fraction", 0.01))
        )
        return summary.as_dict()

    def _late_commit(self, data: dict[str, Any]) -> Document:
        from flows.demo.changes import late_commit

        return late_commit(
            self.store, str(data["collection"]), float(data.get("behind_seconds", 60))
        )

    def _set_drift(self, data: dict[str, Any]) -> dict[str, Any]:
        every = int(data.get("every_n_list_requests", 0))
        if every < 0:
            raise ValueError("every_n_list_requests must be >= 0 (0 disables drift)")
        collection = data.get("collection")
        self.drift = DriftConfig(
            every_n_list_requests=every,
            fraction=float(data.get("fraction", 0.01)),
            collection=str(collection) if collection else None,
            seed=int(data.get("seed", self.seed)),
        )
        return {
            "every_n_list_requests": every,
            "fraction": self.drift.fraction,
            "collection": self.drift.collection,
            "seed": self.drift.seed,
        }

    def _inject(self, data: dict[str, Any]) -> dict[str, Any]:
        collection = str(data["collection"])
        document = data["document"]
        if not isinstance(document, dict):
            raise ValueError("document must be a JSON object")
        doc_id = self.store.insert_raw(collection, document)["id"]
        return {"collection": collection, "id": doc_id}

    def _schema_change(self, data: dict[str, Any]) -> Any:
        from flows.demo import changes

        collection = str(data["collection"])
        action = str(data["action"])
        field_name = str(data["field"])
        if action == "add_field":
            # Value: a constant (`value`, default null) or a copy of another field (`copy_from`).
            source = data.get("copy_from")
            constant = data.get("value")

            def value_fn(doc: Document) -> Any:
                return doc.get(str(source)) if source else constant

            result = changes.add_field(self.store, collection, field_name, value_fn)
        elif action == "change_type":
            converters: dict[str, Callable[[Any], Any]] = {
                "string": str,
                "number": float,
                "boolean": bool,
                "json": lambda value: {"value": value},
                # A whole number gets a fraction (JavaScript has one number type): 3 -> 3.5.
                "fraction": lambda value: float(value) + 0.5,
            }
            target = str(data.get("to", "string"))
            if target not in converters:
                raise ValueError(f"`to` must be one of {sorted(converters)}")
            result = changes.change_field_type(
                self.store,
                collection,
                field_name,
                every=int(data.get("every", 2)),
                convert=converters[target],
            )
        else:
            raise ValueError("action must be add_field or change_type")
        with self.store.lock:
            values = [d.get(field_name) for d in self.store.collections[collection].values()]
        self.reader.extra_fields.setdefault(collection, {})[field_name] = infer_field(values)
        return {"collection": collection, "action": action, "field": field_name, "ids": result}


def serve_demo(
    preset: str = "small",
    scale: int = 1,
    seed: int = 42,
    id_type: IdType = IdType.INT,
    **server_kwargs: Any,
) -> DemoServer:
    """Generate the dataset, load it into a Store and wrap it in a (not yet started) server."""
    from flows.demo.generator import generate

    dataset = generate(preset, scale, seed, id_type)
    store = Store(dataset.collections, dataset.reference_time, id_type, seed)
    server = DemoServer(store, seed=seed, store_identity=(preset, scale, seed), **server_kwargs)
    # The dataset is long-lived: keep the cyclic GC from re-scanning its millions of objects on
    # every collection (that alone halved the cold read speed of the large preset).
    gc.collect()
    gc.freeze()
    return server
