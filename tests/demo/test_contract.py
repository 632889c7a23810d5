"""The demo API answers like the real Payload 3.90 captured in tests/fixtures/payload-api.

Every captured request is replayed against the demo server (with ids and values swapped for
ones that exist in the demo data) and compared: status code, exact error bodies, envelope keys
and their order, and each document's shape (keys, order, nesting, value types) at depth 0/1/2.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from http.cookiejar import DefaultCookiePolicy
from pathlib import Path
from typing import Any

import httpx
import pytest

from flows.demo.server import DemoServer
from flows.demo.store import format_timestamp, parse_timestamp

# One client for the module: creating an httpx client (its TLS context) costs ~0.1 s.
# It keeps no cookies: login's payload-token cookie would silently authenticate later requests.
http = httpx.Client(timeout=30)
http.cookies.jar.set_policy(DefaultCookiePolicy(allowed_domains=[]))
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "payload-api"
INDEX = json.loads((FIXTURES / "index.json").read_text())["samples"]


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def shape_mismatches(ours: Any, theirs: Any, path: str = "$") -> list[str]:
    """Differences in structure: dict keys and their order, list element shapes, value kinds.
    null on either side matches anything (the data differs, not the contract)."""
    if ours is None or theirs is None:
        return []
    if isinstance(theirs, dict):
        if not isinstance(ours, dict):
            return [f"{path}: expected object, got {type(ours).__name__}"]
        if list(ours) != list(theirs):
            return [f"{path}: keys {list(ours)} != {list(theirs)}"]
        problems: list[str] = []
        for key in theirs:
            problems += shape_mismatches(ours[key], theirs[key], f"{path}.{key}")
        return problems
    if isinstance(theirs, list):
        if not isinstance(ours, list):
            return [f"{path}: expected array, got {type(ours).__name__}"]
        if ours and theirs:
            return shape_mismatches(ours[0], theirs[0], f"{path}[0]")
        return []
    kinds = (bool, int | float, str)
    for kind in kinds:
        if isinstance(theirs, kind):
            if isinstance(ours, kind) and not (kind is not bool and isinstance(ours, bool)):
                return []
            return [f"{path}: {ours!r} is not like {theirs!r}"]
    return []


def _admin(server: DemoServer) -> dict[str, str]:
    return {"Authorization": f"JWT {server.admin_token()}"}


def _trash_an_ordered_product(server: DemoServer) -> int:
    """Trash (soft delete) the product of the newest order's first line; returns its id."""
    newest = server.store.collections["orders"][max(server.store.collections["orders"])]
    product_id = int(newest["items"][0]["product"])
    if not server.store.collections["products"][product_id].get("deletedAt"):
        server.store.trash("products", product_id)
    return product_id


def _tied_updated_at(server: DemoServer) -> str:
    seen: dict[str, int] = {}
    for order in server.store.collections["orders"].values():
        seen[order["updatedAt"]] = seen.get(order["updatedAt"], 0) + 1
    tied = [stamp for stamp, count in seen.items() if count > 1]
    assert tied, "the generator makes bulk updates with identical updatedAt"
    return sorted(tied)[0]


def _customer_with_orders(server: DemoServer) -> int:
    counts: dict[int, int] = {}
    for order in server.store.collections["orders"].values():
        if order.get("customer"):
            counts[order["customer"]] = counts.get(order["customer"], 0) + 1
    return max(counts, key=lambda user: (counts[user], -user))


# Captured file -> (our request path, or a function of the server returning it).
def _paths(server: DemoServer) -> dict[str, str]:
    total_orders = len(server.store.collections["orders"])
    last_page = -(-total_orders // 2)
    newest_order = max(server.store.collections["orders"])
    trashed_product = int(server.store.collections["orders"][newest_order]["items"][0]["product"])
    return {
        "orders.last-page.limit2.json": f"/api/orders?limit=2&depth=0&page={last_page}",
        "orders.beyond-last-page.limit2.json": f"/api/orders?limit=2&depth=0&page={last_page + 1}",
        "orders.by-id.depth0.json": f"/api/orders/{newest_order}?depth=0",
        "orders.where-updatedAt-gte.sort-updatedAt.limit2.json": (
            "/api/orders?limit=2&depth=0&sort=updatedAt&where[updatedAt][greater_than_equal]="
            + format_timestamp(server.store.now - timedelta(days=14)).replace(":", "%3A")
        ),
        "orders.tied-updatedAt.limit2.json": (
            "/api/orders?limit=2&depth=0&select[status]=true&select[updatedAt]=true"
            f"&where[updatedAt][equals]={_tied_updated_at(server)}"
        ),
        "orders.trashed-product.depth0.limit1.json": (
            f"/api/orders?limit=1&where[items.product][equals]={trashed_product}&depth=0"
        ),
        "orders.trashed-product.depth1.limit1.json": (
            f"/api/orders?limit=1&where[items.product][equals]={trashed_product}&depth=1"
        ),
    }


SKIPPED = {"addresses.depth0.limit2.json"}  # the demo store has no addresses collection
SAMPLES = [sample for sample in INDEX if sample["file"] not in SKIPPED]


def _headers(server: DemoServer, auth: str) -> dict[str, str]:
    if auth == "admin":
        return _admin(server)
    if auth == "admin-bearer":
        return {"Authorization": f"Bearer {server.admin_token()}"}
    if auth == "bad":
        return {"Authorization": "JWT not-a-token"}
    if auth == "customer":
        return {"Authorization": f"JWT {server.user_token(_customer_with_orders(server))}"}
    return {}


@pytest.mark.parametrize("sample", SAMPLES, ids=[s["file"] for s in SAMPLES])
def test_replays_captured_request(
    demo_server: DemoServer,
    make_demo_server: Callable[..., DemoServer],
    sample: dict[str, Any],
) -> None:
    captured = fixture(sample["file"])
    if "trashed-product" in sample["file"]:
        demo_server = make_demo_server()  # this one changes data
        _trash_an_ordered_product(demo_server)
    path = _paths(demo_server).get(sample["file"], sample["path"])
    headers = _headers(demo_server, sample["auth"])
    if sample["method"] == "POST":
        password = "wrong" if sample["status"] == 401 else "demo-password"
        body = {"email": "admin@example.com", "password": password}
        response = http.post(demo_server.url + path, json=body, headers=headers)
    else:
        response = http.get(demo_server.url + path, headers=headers)
    assert response.status_code == sample["status"], response.text
    assert response.headers["content-type"].startswith("application/json")
    assert int(response.headers["content-length"]) == len(response.content)
    ours = response.json()
    if sample["status"] >= 400:
        assert ours == captured  # error bodies are byte-for-byte Payload's
        return
    if sample["file"] == "users.me.anonymous.json":
        assert ours == captured
        return
    if "token" in captured:
        assert ours["token"].count(".") == 2  # a real JWT, not the redacted placeholder
        ours["token"] = captured["token"]
    assert shape_mismatches(ours, captured) == []
    if "docs" in captured:
        assert ours["limit"] == captured["limit"]
        assert len(ours["docs"]) <= (captured["limit"] or len(ours["docs"]))
        if captured["docs"]:
            assert ours["docs"], "expected at least one document like the capture"


def test_envelope_keys_are_payloads_in_order(demo_server: DemoServer) -> None:
    captured = fixture("orders.depth0.limit2.json")
    ours = http.get(f"{demo_server.url}/api/categories?limit=2&depth=0").json()
    assert list(ours) == list(captured)
    assert list(ours) == [
        "docs",
        "hasNextPage",
        "hasPrevPage",
        "limit",
        "nextPage",
        "page",
        "pagingCounter",
        "prevPage",
        "totalDocs",
        "totalPages",
    ]


@pytest.mark.parametrize(
    ("collection", "capture", "depth"),
    [
        ("orders", "orders.depth0.limit2.json", 0),
        ("orders", "orders.depth1.limit1.json", 1),
        ("orders", "orders.depth2.limit1.json", 2),
        ("transactions", "transactions.depth0.limit2.json", 0),
        ("transactions", "transactions.depth1.limit1.json", 1),
        ("carts", "carts.depth1.limit1.json", 1),
        ("products", "products.depth0.limit2.json", 0),
        ("products", "products.depth1.limit1.json", 1),
        ("variants", "variants.depth0.limit2.json", 0),
        ("variants", "variants.depth1.limit1.json", 1),
        ("categories", "categories.depth0.limit2.json", 0),
        ("users", "users.depth0.limit2.json", 0),
        ("variantTypes", "variantTypes.depth0.json", 0),
        ("variantTypes", "variantTypes.depth1.limit1.json", 1),
        ("variantOptions", "variantOptions.depth0.limit2.json", 0),
    ],
)
def test_every_document_has_the_captured_shape(
    demo_server: DemoServer, collection: str, capture: str, depth: int
) -> None:
    """Not just the first page: every document of the collection at that depth."""
    reference = fixture(capture)["docs"][0]
    response = http.get(
        f"{demo_server.url}/api/{collection}",
        params={"depth": depth, "limit": 0},
        headers=_admin(demo_server),
        timeout=30,
    )
    docs = response.json()["docs"]
    assert docs
    for doc in docs:
        assert shape_mismatches(doc, reference) == [], doc["id"]


def test_relation_to_trashed_document_is_null_above_depth_0(
    make_demo_server: Callable[..., DemoServer],
) -> None:
    demo_server = make_demo_server()
    product = _trash_an_ordered_product(demo_server)
    query = f"where[items.product][equals]={product}&limit=0"
    headers = _admin(demo_server)
    shallow = http.get(f"{demo_server.url}/api/orders?{query}&depth=0", headers=headers).json()
    deep = http.get(f"{demo_server.url}/api/orders?{query}&depth=1", headers=headers).json()
    assert shallow["totalDocs"] == deep["totalDocs"] > 0
    for low, high in zip(shallow["docs"], deep["docs"], strict=True):
        for low_item, high_item in zip(low["items"], high["items"], strict=True):
            if low_item["product"] == product:
                assert high_item["product"] is None
            else:
                assert high_item["product"]["id"] == low_item["product"]


def test_join_fields_cap_at_ten_and_follow_payload_order(demo_server: DemoServer) -> None:
    headers = _admin(demo_server)
    products = http.get(f"{demo_server.url}/api/products?limit=0&depth=0", headers=headers).json()[
        "docs"
    ]
    variants = demo_server.store.collections["variants"].values()
    for product in products:
        live = sorted(
            (v for v in variants if v["product"] == product["id"] and not v.get("deletedAt")),
            key=lambda v: (v["createdAt"], v["id"]),
            reverse=True,
        )
        assert product["variants"] == {
            "docs": [v["id"] for v in live[:10]],
            "hasNextPage": len(live) > 10,
        }
    types = http.get(f"{demo_server.url}/api/variantTypes?depth=0").json()["docs"]
    options = demo_server.store.collections["variantOptions"].values()
    for variant_type in types:
        expected = sorted(
            (o for o in options if o["variantType"] == variant_type["id"] and not o["deletedAt"]),
            key=lambda o: (o["_variantOptions_options_order"], o["id"]),
        )
        assert variant_type["options"]["docs"] == [o["id"] for o in expected[:10]]


def test_cart_status_is_computed_from_the_store_clock(demo_server: DemoServer) -> None:
    carts = http.get(
        f"{demo_server.url}/api/carts?limit=0&depth=0", headers=_admin(demo_server)
    ).json()["docs"]
    now = demo_server.store.now
    statuses = set()
    for cart in carts:
        assert list(cart)[-1] == "status"
        if cart["purchasedAt"]:
            expected = "purchased"
        elif (now - parse_timestamp(cart["updatedAt"])).total_seconds() >= 24 * 3600:
            expected = "abandoned"
        else:
            expected = "active"
        assert cart["status"] == expected, (cart["id"], format_timestamp(now))
        statuses.add(expected)
    assert statuses == {"purchased", "abandoned", "active"}


def test_login_sets_cookie_and_me_reports_the_session(demo_server: DemoServer) -> None:
    login = http.post(
        f"{demo_server.url}/api/users/login",
        json={"email": "admin@example.com", "password": "demo-password"},
    )
    assert login.status_code == 200
    body = login.json()
    assert list(body) == ["message", "exp", "token", "user"]
    assert "payload-token=" in login.headers["set-cookie"]
    me = http.get(
        f"{demo_server.url}/api/users/me", headers={"Authorization": f"JWT {body['token']}"}
    ).json()
    assert list(me) == list(fixture("users.me.json"))
    assert me["user"]["email"] == "admin@example.com"
    assert me["exp"] == body["exp"]
    assert any(s["id"] for s in me["user"]["sessions"])
