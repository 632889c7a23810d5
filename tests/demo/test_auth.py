"""Authentication and access control behave like Payload's."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from http.cookiejar import DefaultCookiePolicy

import httpx
import pytest

from flows.demo.auth import TokenAuthority, parse_authorization
from flows.demo.server import DemoServer

http = httpx.Client(timeout=30)
http.cookies.jar.set_policy(DefaultCookiePolicy(allowed_domains=[]))
FORBIDDEN = {"errors": [{"message": "You are not allowed to perform this action."}]}
PROTECTED = ("orders", "transactions", "carts", "users")
PUBLIC = ("products", "variants", "categories", "variantTypes", "variantOptions")


def status(server: DemoServer, path: str, authorization: str | None = None) -> int:
    headers = {"Authorization": authorization} if authorization else {}
    return http.get(f"{server.url}/api/{path}", headers=headers).status_code


def login(server: DemoServer, email: str, password: str) -> httpx.Response:
    return http.post(f"{server.url}/api/users/login", json={"email": email, "password": password})


@pytest.mark.parametrize("collection", PROTECTED)
def test_protected_collections_are_403_for_anonymous_and_bad_tokens(
    demo_server: DemoServer, collection: str
) -> None:
    for authorization in (None, "JWT nonsense", "Bearer a.b.c", "users API-Key wrong"):
        response = http.get(
            f"{demo_server.url}/api/{collection}",
            headers={"Authorization": authorization} if authorization else {},
        )
        assert response.status_code == 403
        assert response.json() == FORBIDDEN
    assert status(demo_server, f"{collection}/count") == 403


@pytest.mark.parametrize("collection", PUBLIC)
def test_catalogue_is_public(demo_server: DemoServer, collection: str) -> None:
    assert status(demo_server, collection) == 200


def test_jwt_and_bearer_from_login_both_work(demo_server: DemoServer) -> None:
    response = login(demo_server, "ADMIN@example.com", "demo-password")
    assert response.status_code == 200
    body = response.json()
    assert body["message"] == "Authentication Passed"
    assert body["user"]["roles"] == ["admin"] and body["user"]["_strategy"] == "local-jwt"
    assert body["exp"] - time.time() == pytest.approx(7200, abs=60)
    token = body["token"]
    header, payload, _signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["email"] == "admin@example.com" and claims["exp"] == body["exp"]
    assert json.loads(base64.urlsafe_b64decode(header + "==")) == {"alg": "HS256", "typ": "JWT"}
    for scheme in ("JWT", "Bearer"):
        assert status(demo_server, "orders?limit=1", f"{scheme} {token}") == 200
    # The cookie Payload sets works as well.
    cookie = http.get(
        f"{demo_server.url}/api/orders?limit=1", headers={"Cookie": f"payload-token={token}"}
    )
    assert cookie.status_code == 200


def test_wrong_password_is_401_with_payloads_body(demo_server: DemoServer) -> None:
    for email, password in (("admin@example.com", "nope"), ("who@example.com", "demo-password")):
        response = login(demo_server, email, password)
        assert response.status_code == 401
        assert response.json() == {
            "errors": [{"message": "The email or password provided is incorrect."}]
        }
    assert login(demo_server, "", "").status_code == 400


def test_tampered_or_foreign_tokens_are_anonymous(demo_server: DemoServer) -> None:
    token = demo_server.admin_token()
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["id"] = 2
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert status(demo_server, "orders", f"JWT {header}.{forged}.{signature}") == 403
    foreign, _exp, _session = TokenAuthority().mint({"id": 1, "email": "admin@example.com"})
    assert status(demo_server, "orders", f"JWT {foreign}") == 403


def test_api_key(make_demo_server: Callable[..., DemoServer]) -> None:
    server = make_demo_server(api_key="secret-key")
    assert status(server, "orders?limit=1", "users API-Key secret-key") == 200
    assert status(server, "orders?limit=1", "users API-Key other") == 403
    me = http.get(
        f"{server.url}/api/users/me", headers={"Authorization": "users API-Key secret-key"}
    ).json()
    assert me["strategy"] == "api-key" and me["user"]["email"] == "admin@example.com"


def test_expired_tokens_become_anonymous(make_demo_server: Callable[..., DemoServer]) -> None:
    server = make_demo_server(token_ttl_seconds=1)
    token = login(server, "admin@example.com", "demo-password").json()["token"]
    assert status(server, "orders", f"JWT {token}") == 200
    time.sleep(2.1)  # exp has second resolution
    assert status(server, "orders", f"JWT {token}") == 403
    assert status(server, "products", f"JWT {token}") == 200
    me = http.get(f"{server.url}/api/users/me", headers={"Authorization": f"JWT {token}"})
    assert me.json() == {"user": None, "message": "Account"}


def test_revoke_tokens_endpoint(make_demo_server: Callable[..., DemoServer]) -> None:
    server = make_demo_server()
    token = server.admin_token()
    assert status(server, "orders", f"JWT {token}") == 200
    revoked = http.post(
        f"{server.url}/api/_demo/revoke-tokens", headers={"Authorization": f"JWT {token}"}
    )
    assert revoked.status_code == 200 and revoked.json()["revoked"] >= 1
    assert status(server, "orders", f"JWT {token}") == 403
    fresh = login(server, "admin@example.com", "demo-password").json()["token"]
    assert status(server, "orders", f"JWT {fresh}") == 200


def test_custom_admin_credentials(make_demo_server: Callable[..., DemoServer]) -> None:
    server = make_demo_server(admin_email="ops@shop.test", admin_password="s3cret")
    assert login(server, "admin@example.com", "demo-password").status_code == 401
    response = login(server, "ops@shop.test", "s3cret")
    assert response.status_code == 200
    assert response.json()["user"]["roles"] == ["admin"]


def test_customer_sees_only_their_own_documents(demo_server: DemoServer) -> None:
    customer_id = next(
        doc["customer"]
        for doc in demo_server.store.collections["orders"].values()
        if doc["customer"]
    )
    token = demo_server.user_token(customer_id)
    headers = {"Authorization": f"JWT {token}"}
    orders = http.get(f"{demo_server.url}/api/orders?limit=0&depth=0", headers=headers).json()
    expected = {
        d["id"]
        for d in demo_server.store.collections["orders"].values()
        if d["customer"] == customer_id
    }
    assert {d["id"] for d in orders["docs"]} == expected
    assert all("transactions" not in d for d in orders["docs"])  # field-level access
    users = http.get(f"{demo_server.url}/api/users?limit=0", headers=headers).json()
    assert [u["id"] for u in users["docs"]] == [customer_id]
    assert status(demo_server, "transactions", f"JWT {token}") == 403
    other = next(
        d["id"] for d in demo_server.store.collections["orders"].values() if d["id"] not in expected
    )
    assert status(demo_server, f"orders/{other}", f"JWT {token}") == 404


def test_admin_endpoints_need_an_admin(demo_server: DemoServer) -> None:
    customer_token = demo_server.user_token(2)
    for path in ("changes", "faults", "drift", "revoke-tokens", "inject", "schema"):
        for headers in ({}, {"Authorization": f"JWT {customer_token}"}):
            response = http.post(f"{demo_server.url}/api/_demo/{path}", json={}, headers=headers)
            assert response.status_code == 403, path
    assert http.get(f"{demo_server.url}/api/_demo/stats").status_code == 403
    assert http.get(f"{demo_server.url}/api/_demo/health").json() == {"status": "ok"}


def test_parse_authorization() -> None:
    assert parse_authorization("JWT abc") == ("jwt", "abc")
    assert parse_authorization("bearer abc") == ("jwt", "abc")
    assert parse_authorization("users API-Key k-1") == ("api-key", "k-1")
    assert parse_authorization("Basic xyz") is None
    assert parse_authorization(None) is None
