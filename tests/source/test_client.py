"""The Payload client against a tiny local HTTP server: auth, retries, JSON checks, keyset."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from flows.settings import load_settings
from flows.source.client import RetryPolicy, api_base_url, jwt_expiry, parse_retry_after
from flows.source.errors import PayloadAuthError, PayloadResponseError, PayloadUnavailableError
from flows.source.paginator import Cursor
from flows.source.payload import PayloadClient

Reply = tuple[int, dict[str, str], bytes]
Handler = Callable[[str, dict[str, list[str]], dict[str, str], bytes], Reply]


class ScriptedServer:
    """Answers each request with `handler(...)`; records every request."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[tuple[str, dict[str, list[str]], dict[str, str]]] = []
        outer = self

        class _H(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                split = urlsplit(self.path)
                params = parse_qs(split.query)
                headers = {k: v for k, v in self.headers.items()}
                outer.requests.append((split.path, params, headers))
                status, extra, payload = outer.handler(split.path, params, headers, body)
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _H)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def page(docs: list[dict]) -> Reply:
    return 200, {"Content-Type": "application/json"}, json.dumps({"docs": docs}).encode()


def make_docs(n: int) -> list[dict]:
    return [{"id": i, "updatedAt": f"2026-01-01T00:00:{i // 3:02d}.000Z"} for i in range(1, n + 1)]


def keyset_store(docs: list[dict]) -> Handler:
    """A faithful-enough Payload list endpoint: where (keyset), sort=updatedAt,id, limit."""

    def handler(path: str, params: dict[str, list[str]], headers: dict, body: bytes) -> Reply:
        limit = int(params["limit"][0])
        ordered = sorted(docs, key=lambda d: (d["updatedAt"], d["id"]))
        if "where[or][0][updatedAt][greater_than]" in params:
            at = params["where[or][0][updatedAt][greater_than]"][0]
            after = int(params["where[or][1][and][1][id][greater_than]"][0])
            ordered = [d for d in ordered if (d["updatedAt"], d["id"]) > (at, after)]
        elif "where[updatedAt][greater_than_equal]" in params:
            since = params["where[updatedAt][greater_than_equal]"][0]
            ordered = [d for d in ordered if d["updatedAt"] >= since]
        return page(ordered[:limit])

    return handler


def client_for(url: str, **overrides: Any) -> PayloadClient:
    settings = load_settings(
        payload_cms_url=url,
        payload_page_size=overrides.pop("page_size", 4),
        payload_backoff_seconds=0.001,
        payload_max_backoff_seconds=0.05,
        payload_max_retries=overrides.pop("retries", 3),
        payload_timeout_seconds=overrides.pop("timeout", 5),
        **overrides,
    )
    return PayloadClient.from_settings(settings)


def read_all(client: PayloadClient, collection: str = "orders", **kw: Any) -> list[dict]:
    return [d for p in client.iter_pages(collection, **kw) for d in p.docs]


@pytest.fixture
def ties_server() -> Iterator[ScriptedServer]:
    with ScriptedServer(keyset_store(make_docs(10))) as server:
        yield server


def test_keyset_reads_every_document_including_ties(ties_server: ScriptedServer) -> None:
    client = client_for(ties_server.url)
    docs = read_all(client, since="1970-01-01T00:00:00.000Z")
    assert [d["id"] for d in docs] == list(range(1, 11))
    # always page 1, sorted by (updatedAt, id), trash included, depth 0
    for _, params, _ in ties_server.requests:
        assert params["page"] == ["1"]
        assert params["sort"] == ["updatedAt,id"]
        assert params["trash"] == ["true"] and params["depth"] == ["0"]
    second = ties_server.requests[1][1]
    assert second["where[or][1][and][0][updatedAt][equals]"] == [docs[3]["updatedAt"]]
    assert second["where[or][1][and][1][id][greater_than]"] == ["4"]
    # 10 docs / 4 per page: 3 requests (4, 4, 2: the short page ends the read)
    assert len(ties_server.requests) == 3


def test_resumes_after_a_cursor(ties_server: ScriptedServer) -> None:
    client = client_for(ties_server.url)
    docs = read_all(client, cursor=Cursor("2026-01-01T00:00:02.000Z", 7))
    assert [d["id"] for d in docs] == [8, 9, 10]


def test_site_url_with_or_without_api() -> None:
    assert api_base_url("https://shop.example.com") == "https://shop.example.com/api"
    assert api_base_url("https://shop.example.com/api/") == "https://shop.example.com/api"


def test_token_and_api_key_headers() -> None:
    with ScriptedServer(lambda *a: page([])) as server:
        read_all(client_for(server.url, payload_cms_token="tok"))
        read_all(client_for(server.url, payload_api_key="k3y"))
    assert server.requests[0][2]["Authorization"] == "JWT tok"
    assert server.requests[1][2]["Authorization"] == "users API-Key k3y"


def test_transient_errors_are_retried_then_succeed() -> None:
    script = iter(
        [
            (503, {"Content-Type": "text/html"}, b"<html>503</html>"),
            (429, {"Retry-After": "0"}, b'{"errors":[]}'),
            (200, {}, b'{"docs":[{"id":1,"updatedAt":"2026-01-01T00:00:00.000Z"'),  # truncated
            page([{"id": 1, "updatedAt": "2026-01-01T00:00:00.000Z"}]),
        ]
    )
    with ScriptedServer(lambda *a: next(script)) as server:
        client = client_for(server.url)
        assert [d["id"] for d in read_all(client)] == [1]
    assert client.session.retries == 3


def test_retries_are_bounded() -> None:
    with (
        ScriptedServer(lambda *a: (502, {}, b"bad gateway")) as server,
        pytest.raises(PayloadUnavailableError, match="after 3 attempts"),
    ):
        read_all(client_for(server.url, retries=2))
    assert len(server.requests) == 3


def test_invalid_json_forever_is_a_response_error_never_loaded() -> None:
    with (
        ScriptedServer(lambda *a: (200, {}, b'{"docs": [')) as server,
        pytest.raises(PayloadResponseError, match="invalid JSON"),
    ):
        read_all(client_for(server.url, retries=1))


def test_connection_refused_is_unavailable() -> None:
    with pytest.raises(PayloadUnavailableError):
        read_all(client_for("http://127.0.0.1:9", retries=1))


def test_timeout_is_retried() -> None:
    calls = {"n": 0}

    def slow_then_fast(*args: Any) -> Reply:
        calls["n"] += 1
        if calls["n"] == 1:
            time.sleep(0.6)
        return page([])

    with ScriptedServer(slow_then_fast) as server:
        assert read_all(client_for(server.url, timeout=0.3)) == []
    assert calls["n"] == 2


def test_forbidden_with_static_token_is_an_auth_error_without_secret() -> None:
    forbidden: Reply = (
        403,
        {},
        b'{"errors":[{"message":"You are not allowed to perform this action."}]}',
    )
    with (
        ScriptedServer(lambda *a: forbidden) as server,
        pytest.raises(PayloadAuthError) as error,
    ):
        read_all(client_for(server.url, payload_cms_token="s3cret-token"))
    assert "s3cret-token" not in str(error.value)
    assert "PAYLOAD_CMS_TOKEN" in str(error.value)
    assert len(server.requests) == 1  # never retried


def fake_jwt(exp: float) -> str:
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS256'})}.{part({'exp': int(exp)})}.sig"


def test_login_relogin_on_403_and_on_expiry() -> None:
    state: dict[str, Any] = {"logins": 0, "valid": set()}

    def handler(path: str, params: dict, headers: dict, body: bytes) -> Reply:
        if path.endswith("/login"):
            creds = json.loads(body)
            if creds["password"] != "pw":
                return (
                    401,
                    {},
                    b'{"errors":[{"message":"The email or password provided is incorrect."}]}',
                )
            state["logins"] += 1
            token = fake_jwt(time.time() + (30 if state["logins"] == 1 else 3600))
            state["valid"] = {token}
            return 200, {}, json.dumps({"token": token, "exp": 0}).encode()
        token = headers.get("Authorization", "").removeprefix("JWT ")
        if token not in state["valid"]:
            return (
                403,
                {},
                b'{"errors":[{"message":"You are not allowed to perform this action."}]}',
            )
        return page([])

    with ScriptedServer(handler) as server:
        client = client_for(server.url, payload_email="a@b.c", payload_password="pw")
        read_all(client)
        # The first token expires within the refresh margin: the next request logs in first.
        read_all(client)
        assert state["logins"] == 2
        state["valid"] = set()  # server-side revocation: one 403, one re-login, success
        read_all(client)
        assert state["logins"] == 3
        with pytest.raises(PayloadAuthError, match="PAYLOAD_EMAIL"):
            read_all(client_for(server.url, payload_email="a@b.c", payload_password="nope"))


def test_helpers() -> None:
    assert jwt_expiry(fake_jwt(1234)) == 1234
    assert jwt_expiry("garbage") is None
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    policy = RetryPolicy(backoff_seconds=1, max_backoff_seconds=4)
    assert all(0 <= policy.wait_seconds(10, None) <= 4 for _ in range(50))
    assert policy.wait_seconds(0, 100) == 4  # Retry-After honoured, capped
