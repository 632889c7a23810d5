"""Query semantics of the demo API: where, sort, pagination, depth, select, trash/drafts, count.

Expected results are computed independently from the store's documents in plain Python and
compared with what the server returns over HTTP.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from http.cookiejar import DefaultCookiePolicy
from typing import Any

import httpx
import pytest

from flows.demo.server import DemoServer
from flows.demo.store import format_timestamp

http = httpx.Client(timeout=30)
http.cookies.jar.set_policy(DefaultCookiePolicy(allowed_domains=[]))

Doc = dict[str, Any]


def get(server: DemoServer, path: str, token: str | None = None, **params: Any) -> httpx.Response:
    headers = {"Authorization": f"JWT {token}"} if token else {}
    return http.get(f"{server.url}/api/{path}", params=params, headers=headers)


def ids_for(server: DemoServer, token: str, collection: str, query: str) -> list[int]:
    response = http.get(
        f"{server.url}/api/{collection}?limit=0&depth=0&{query}",
        headers={"Authorization": f"JWT {token}"},
    )
    assert response.status_code == 200, response.text
    return [doc["id"] for doc in response.json()["docs"]]


def orders(server: DemoServer) -> list[Doc]:
    return list(server.store.collections["orders"].values())


def newest_first(docs: list[Doc]) -> list[int]:
    """Payload's default order: -createdAt, ties by id in the same direction."""
    return [d["id"] for d in sorted(docs, key=lambda d: (d["createdAt"], d["id"]), reverse=True)]


# --- where ------------------------------------------------------------------------------------

WHERE_CASES: list[tuple[str, Callable[[Doc], bool]]] = [
    ("where[status][equals]=refunded", lambda d: d["status"] == "refunded"),
    ("where[status][not_equals]=completed", lambda d: d["status"] != "completed"),
    ("where[amount][greater_than]=10000", lambda d: d["amount"] > 10000),
    ("where[amount][greater_than_equal]=10000", lambda d: d["amount"] >= 10000),
    ("where[amount][less_than]=2500", lambda d: d["amount"] < 2500),
    ("where[amount][less_than_equal]=2500", lambda d: d["amount"] <= 2500),
    # numbers compare as numbers: "10000" < "5000" as text, not as numbers
    ("where[amount][greater_than]=5000", lambda d: d["amount"] > 5000),
    ("where[status][in]=refunded,cancelled", lambda d: d["status"] in ("refunded", "cancelled")),
    (
        "where[status][not_in]=completed,processing",
        lambda d: d["status"] in ("refunded", "cancelled"),
    ),
    ("where[customer][exists]=false", lambda d: d["customer"] is None),
    ("where[customer][exists]=true", lambda d: d["customer"] is not None),
    ("where[customerEmail][like]=EXAMPLE.com", lambda d: "example.com" in d["customerEmail"]),
    (
        "where[customerEmail][like]=mail example",
        lambda d: "mail" in d["customerEmail"] and "example" in d["customerEmail"],
    ),
    (
        "where[shippingAddress.city][contains]=LAKE",
        lambda d: "lake" in d["shippingAddress"]["city"].lower(),
    ),
    ("where[items.variant][exists]=true", lambda d: any(i["variant"] for i in d["items"])),
    ("where[items.quantity][greater_than]=2", lambda d: any(i["quantity"] > 2 for i in d["items"])),
    ("where[transactions][in]=1,2,3", lambda d: bool({1, 2, 3} & set(d["transactions"]))),
    (
        "where[or][0][status][equals]=refunded&where[or][1][and][0][status][equals]=completed"
        "&where[or][1][and][1][amount][greater_than]=50000",
        lambda d: d["status"] == "refunded" or (d["status"] == "completed" and d["amount"] > 50000),
    ),
    (
        "where[and][0][amount][greater_than]=5000&where[and][1][amount][less_than]=6000",
        lambda d: 5000 < d["amount"] < 6000,
    ),
    # two conditions on one path and several top-level paths are ANDed
    (
        "where[amount][greater_than]=5000&where[amount][less_than]=6000&where[status][equals]=completed",
        lambda d: 5000 < d["amount"] < 6000 and d["status"] == "completed",
    ),
]


@pytest.mark.parametrize(("query", "expected"), WHERE_CASES, ids=[c[0] for c in WHERE_CASES])
def test_where_operator(
    demo_server: DemoServer, demo_admin_token: str, query: str, expected: Callable[[Doc], bool]
) -> None:
    matching = [doc for doc in orders(demo_server) if expected(doc)]
    assert matching, "each case must select something to be meaningful"
    assert len(matching) < len(orders(demo_server)) or "exists" in query
    assert ids_for(demo_server, demo_admin_token, "orders", query) == newest_first(matching)


def test_where_on_dotted_array_path_matches_any_item(
    demo_server: DemoServer, demo_admin_token: str
) -> None:
    product = orders(demo_server)[0]["items"][0]["product"]
    expected = [d for d in orders(demo_server) if any(i["product"] == product for i in d["items"])]
    got = ids_for(
        demo_server, demo_admin_token, "orders", f"where[items.product][equals]={product}"
    )
    assert got == newest_first(expected)
    not_got = ids_for(
        demo_server, demo_admin_token, "orders", f"where[items.product][not_equals]={product}"
    )
    assert set(not_got) == {d["id"] for d in orders(demo_server)} - set(got)


def test_has_many_relationship_matches_any_value(demo_server: DemoServer) -> None:
    products = [
        p
        for p in demo_server.store.collections["products"].values()
        if p["_status"] == "published" and not p["deletedAt"]
    ]
    category = products[0]["categories"][0]
    expected = [p for p in products if category in p["categories"]]
    got = ids_for(
        demo_server,
        demo_server.admin_token(),
        "products",
        f"where[categories][equals]={category}&where[_status][equals]=published",
    )
    assert got == newest_first(expected)


def test_dates_compare_as_instants_whatever_the_format(
    demo_server: DemoServer, demo_admin_token: str
) -> None:
    cut = demo_server.store.now - timedelta(days=30)
    expected = [d for d in orders(demo_server) if d["updatedAt"] > format_timestamp(cut)]
    assert expected
    canonical = format_timestamp(cut)
    with_offset = (cut + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "%2B02:00"
    for value in (canonical, with_offset):
        got = ids_for(
            demo_server, demo_admin_token, "orders", f"where[updatedAt][greater_than]={value}"
        )
        assert got == newest_first(expected), value
    day = cut.strftime("%Y-%m-%d")  # a bare date is midnight UTC
    expected_day = [d for d in orders(demo_server) if d["createdAt"] >= f"{day}T00:00:00.000Z"]
    got_day = ids_for(
        demo_server, demo_admin_token, "orders", f"where[createdAt][greater_than_equal]={day}"
    )
    assert got_day == newest_first(expected_day)


def test_unparsable_date_is_payloads_500(demo_server: DemoServer, demo_admin_token: str) -> None:
    response = get(
        demo_server, "orders", demo_admin_token, **{"where[updatedAt][less_than]": "soon"}
    )
    assert response.status_code == 500
    assert response.json() == {"errors": [{"message": "Something went wrong."}]}


def test_unknown_paths_are_all_named_in_the_query_error(
    demo_server: DemoServer, demo_admin_token: str
) -> None:
    response = get(
        demo_server,
        "orders",
        demo_admin_token,
        **{"where[or][0][nope][equals]": "1", "where[or][1][items.nothing][exists]": "true"},
    )
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["name"] == "QueryError"
    assert error["data"] == [{"path": "nope"}, {"path": "items.nothing"}]


# --- sort ---------------------------------------------------------------------------------------


def test_sort_ascending_descending_and_multi_field(
    demo_server: DemoServer, demo_admin_token: str
) -> None:
    docs = orders(demo_server)
    by_amount = ids_for(demo_server, demo_admin_token, "orders", "sort=amount")
    assert by_amount == [d["id"] for d in sorted(docs, key=lambda d: (d["amount"], d["id"]))]
    by_amount_desc = ids_for(demo_server, demo_admin_token, "orders", "sort=-amount")
    assert by_amount_desc == [
        d["id"] for d in sorted(docs, key=lambda d: (d["amount"], d["id"]), reverse=True)
    ]
    multi = ids_for(demo_server, demo_admin_token, "orders", "sort=status,-amount")
    expected = sorted(docs, key=lambda d: d["id"], reverse=True)  # ties: last key's direction
    expected.sort(key=lambda d: d["amount"], reverse=True)
    expected.sort(key=lambda d: d["status"])
    assert multi == [d["id"] for d in expected]
    keyset = ids_for(demo_server, demo_admin_token, "orders", "sort=updatedAt,id")
    assert keyset == [d["id"] for d in sorted(docs, key=lambda d: (d["updatedAt"], d["id"]))]


def test_default_sort_is_newest_created_first(
    demo_server: DemoServer, demo_admin_token: str
) -> None:
    assert ids_for(demo_server, demo_admin_token, "orders", "") == newest_first(orders(demo_server))


def test_sort_by_nested_group_field_and_unknown_field_is_ignored(
    demo_server: DemoServer, demo_admin_token: str
) -> None:
    docs = orders(demo_server)
    got = ids_for(demo_server, demo_admin_token, "orders", "sort=shippingAddress.city")
    expected = sorted(docs, key=lambda d: (d["shippingAddress"]["city"] or "", d["id"]))
    assert got == [d["id"] for d in expected]
    ignored = ids_for(demo_server, demo_admin_token, "orders", "sort=nope")
    assert sorted(ignored) == sorted(d["id"] for d in docs)


# --- pagination ---------------------------------------------------------------------------------


def test_pages_cover_everything_once_with_payload_envelope(
    demo_server: DemoServer, demo_admin_token: str
) -> None:
    total = len(orders(demo_server))
    seen: list[int] = []
    page = 1
    while True:
        body = get(demo_server, "orders", demo_admin_token, limit=70, page=page, depth=0).json()
        assert body["page"] == page
        assert body["totalDocs"] == total
        assert body["totalPages"] == -(-total // 70)
        assert body["pagingCounter"] == (page - 1) * 70 + 1
        assert body["hasPrevPage"] == (page > 1)
        assert body["prevPage"] == (page - 1 if page > 1 else None)
        seen += [d["id"] for d in body["docs"]]
        if not body["hasNextPage"]:
            assert body["nextPage"] is None
            break
        assert body["nextPage"] == page + 1
        page += 1
    assert page == -(-total // 70)
    assert seen == newest_first(orders(demo_server))


def test_beyond_the_last_page(demo_server: DemoServer, demo_admin_token: str) -> None:
    total = len(orders(demo_server))
    pages = -(-total // 7)
    body = get(demo_server, "orders", demo_admin_token, limit=7, page=pages + 1).json()
    assert body == {
        "docs": [],
        "hasNextPage": False,
        "hasPrevPage": True,
        "limit": 7,
        "nextPage": None,
        "page": pages + 1,
        "pagingCounter": pages * 7 + 1,
        "prevPage": pages,
        "totalDocs": total,
        "totalPages": pages,
    }


@pytest.mark.parametrize("params", [{"limit": 0}, {"pagination": "false"}])
def test_limit_zero_and_pagination_false_return_everything(
    demo_server: DemoServer, demo_admin_token: str, params: dict[str, Any]
) -> None:
    body = get(demo_server, "orders", demo_admin_token, depth=0, **params).json()
    total = len(orders(demo_server))
    assert len(body["docs"]) == body["totalDocs"] == total
    assert (body["totalPages"], body["page"], body["pagingCounter"]) == (1, 1, 1)
    assert (body["hasNextPage"], body["hasPrevPage"], body["nextPage"], body["prevPage"]) == (
        False,
        False,
        None,
        None,
    )
    assert body["limit"] == 0


def test_odd_limits_behave_like_payload(demo_server: DemoServer, demo_admin_token: str) -> None:
    total = len(orders(demo_server))
    negative = get(demo_server, "orders", demo_admin_token, limit=-1, depth=0).json()
    assert len(negative["docs"]) == total
    assert negative["totalPages"] == -total
    text = get(demo_server, "orders", demo_admin_token, limit="abc", depth=0).json()
    assert len(text["docs"]) == total
    assert text["limit"] == "abc"
    assert get(demo_server, "orders", demo_admin_token, limit="1.5").status_code == 500


def test_empty_result_envelope(demo_server: DemoServer, demo_admin_token: str) -> None:
    body = get(demo_server, "orders", demo_admin_token, **{"where[amount][less_than]": "0"}).json()
    assert body == {
        "docs": [],
        "hasNextPage": False,
        "hasPrevPage": False,
        "limit": 10,
        "nextPage": None,
        "page": 1,
        "pagingCounter": 1,
        "prevPage": None,
        "totalDocs": 0,
        "totalPages": 1,
    }


# --- depth, select, by id, count ----------------------------------------------------------------


def test_depth_controls_population(demo_server: DemoServer, demo_admin_token: str) -> None:
    where = {"where[items.variant][exists]": "true", "where[customer][exists]": "true", "limit": 1}
    d0 = get(demo_server, "orders", demo_admin_token, depth=0, **where).json()["docs"][0]
    d1 = get(demo_server, "orders", demo_admin_token, depth=1, **where).json()["docs"][0]
    d2 = get(demo_server, "orders", demo_admin_token, **where).json()["docs"][0]  # default 2
    assert d0["id"] == d1["id"] == d2["id"]
    assert isinstance(d0["customer"], int) and isinstance(d0["items"][0]["product"], int)
    assert d1["customer"]["id"] == d0["customer"]
    item = next(i for i in d1["items"] if i["variant"])
    assert isinstance(item["product"]["id"], int)
    assert all(isinstance(c, int) for c in item["product"]["categories"])  # depth 2 needed
    assert isinstance(item["variant"]["product"], int)
    assert isinstance(d1["transactions"][0]["order"], int)
    item2 = next(i for i in d2["items"] if i["variant"])
    assert all(isinstance(c, dict) for c in item2["product"]["categories"])
    assert item2["variant"]["product"]["id"] == item2["product"]["id"]
    assert d2["transactions"][0]["order"]["id"] == d0["id"]
    assert isinstance(d2["transactions"][0]["order"]["customer"], int)  # level 3 stays an id


def test_select_keeps_requested_fields_and_id(
    demo_server: DemoServer, demo_admin_token: str
) -> None:
    body = get(
        demo_server,
        "orders",
        demo_admin_token,
        limit=3,
        **{
            "select[status]": "true",
            "select[updatedAt]": "true",
            "select[shippingAddress][city]": "true",
        },
    ).json()
    for doc in body["docs"]:
        assert list(doc) == ["id", "shippingAddress", "status", "updatedAt"]
        assert list(doc["shippingAddress"]) == ["city"]
        stored = demo_server.store.get("orders", doc["id"])
        assert stored is not None and doc["status"] == stored["status"]


def test_by_id_and_count(demo_server: DemoServer, demo_admin_token: str) -> None:
    doc = orders(demo_server)[5]
    by_id = get(demo_server, f"orders/{doc['id']}", demo_admin_token, depth=0)
    assert by_id.json() == doc
    assert get(demo_server, "orders/abc", demo_admin_token).status_code == 404
    refunded = sum(1 for d in orders(demo_server) if d["status"] == "refunded")
    count = get(
        demo_server, "orders/count", demo_admin_token, **{"where[status][equals]": "refunded"}
    )
    assert count.json() == {"totalDocs": refunded}


# --- trash and drafts ---------------------------------------------------------------------------


def test_trash_and_drafts_visibility(demo_server: DemoServer, demo_admin_token: str) -> None:
    products = list(demo_server.store.collections["products"].values())
    trashed = [p for p in products if p["deletedAt"]]
    drafts = [p for p in products if p["_status"] == "draft" and not p["deletedAt"]]
    assert trashed and drafts
    admin_default = ids_for(demo_server, demo_admin_token, "products", "")
    admin_trash = ids_for(demo_server, demo_admin_token, "products", "trash=true")
    assert set(admin_default) == {p["id"] for p in products if not p["deletedAt"]}
    assert set(admin_trash) == {p["id"] for p in products}
    only_trashed = ids_for(
        demo_server, demo_admin_token, "products", "trash=true&where[deletedAt][exists]=true"
    )
    assert set(only_trashed) == {p["id"] for p in trashed}
    public = get(demo_server, "products", None, limit=0, depth=0).json()
    assert {p["id"] for p in public["docs"]} == {
        p["id"] for p in products if not p["deletedAt"] and p["_status"] == "published"
    }
    draft_id = drafts[0]["id"]
    assert get(demo_server, f"products/{draft_id}", None).status_code == 404
    assert get(demo_server, f"products/{draft_id}", demo_admin_token).status_code == 200
    trashed_id = trashed[0]["id"]
    assert get(demo_server, f"products/{trashed_id}", demo_admin_token).status_code == 404
    assert (
        get(demo_server, f"products/{trashed_id}", demo_admin_token, trash="true").status_code
        == 200
    )
    count = get(demo_server, "products/count", demo_admin_token, trash="true").json()
    assert count == {"totalDocs": len(products)}


# --- page drift -----------------------------------------------------------------------------------


def _keyset_read(server: DemoServer, token: str, limit: int) -> list[Doc]:
    """Read orders by keyset on (updatedAt, id), as the extract step does."""
    docs: list[Doc] = []
    last: Doc | None = None
    while True:
        params: dict[str, Any] = {"sort": "updatedAt,id", "limit": limit, "depth": 0}
        if last is not None:
            params.update(
                {
                    "where[or][0][updatedAt][greater_than]": last["updatedAt"],
                    "where[or][1][and][0][updatedAt][equals]": last["updatedAt"],
                    "where[or][1][and][1][id][greater_than]": last["id"],
                }
            )
        body = get(server, "orders", token, **params).json()
        docs += body["docs"]
        if not body["docs"]:
            return docs
        last = body["docs"][-1]


def test_keyset_read_sees_every_document_while_the_store_drifts(
    make_demo_server: Callable[..., DemoServer],
) -> None:
    server = make_demo_server()
    token = server.admin_token()
    initial = dict(server.store.collections["orders"])
    drift = http.post(
        f"{server.url}/api/_demo/drift",
        json={"every_n_list_requests": 2, "fraction": 0.01, "collection": "orders"},
        headers={"Authorization": f"JWT {token}"},
    )
    assert drift.status_code == 200
    read = _keyset_read(server, token, limit=40)
    stats = http.get(f"{server.url}/api/_demo/stats", headers={"Authorization": f"JWT {token}"})
    assert stats.json()["drift"]["batches_applied"] >= 5
    final = server.store.collections["orders"]
    last_seen: dict[int, Doc] = {}
    occurrences: dict[int, int] = {}
    for doc in read:
        last_seen[doc["id"]] = doc
        occurrences[doc["id"]] = occurrences.get(doc["id"], 0) + 1
    # Every document that exists at the end was read, in its final version.
    assert set(final) <= set(last_seen)
    for doc_id, doc in final.items():
        assert last_seen[doc_id] == doc
    # Documents no batch touched were read exactly once; changed ones at most once per version.
    untouched = [doc_id for doc_id, doc in initial.items() if final.get(doc_id) is doc]
    assert len(untouched) > len(initial) // 2
    assert all(occurrences[doc_id] == 1 for doc_id in untouched)
    changed = set(final) - set(untouched)
    assert changed, "the drift must actually have changed orders"


def test_page_numbers_under_drift_lose_documents(
    make_demo_server: Callable[..., DemoServer],
) -> None:
    """Why keyset matters: the same drift makes a page-number read skip documents."""
    server = make_demo_server()
    token = server.admin_token()
    http.post(
        f"{server.url}/api/_demo/drift",
        json={"every_n_list_requests": 2, "fraction": 0.01, "collection": "orders"},
        headers={"Authorization": f"JWT {token}"},
    )
    seen: set[int] = set()
    page = 1
    while True:
        body = get(server, "orders", token, sort="updatedAt", limit=40, page=page, depth=0).json()
        seen |= {d["id"] for d in body["docs"]}
        if not body["hasNextPage"]:
            break
        page += 1
    assert set(server.store.collections["orders"]) - seen


# --- admin endpoints that change data -------------------------------------------------------------


def admin_post(server: DemoServer, path: str, body: dict[str, Any]) -> httpx.Response:
    return http.post(
        f"{server.url}/api/_demo/{path}",
        json=body,
        headers={"Authorization": f"JWT {server.admin_token()}"},
    )


def test_change_batch_endpoint_changes_what_clients_read(
    make_demo_server: Callable[..., DemoServer],
) -> None:
    server = make_demo_server()
    token = server.admin_token()
    before = get(server, "orders", token, limit=1).json()["totalDocs"]
    response = admin_post(server, "changes", {"seed": 3, "fraction": 0.02})
    assert response.status_code == 200
    summary = response.json()
    created = summary["created"].get("orders", [])
    deleted = summary["deleted"].get("orders", [])
    assert created and summary["total"] > 0
    after = get(server, "orders", token, limit=1).json()["totalDocs"]
    assert after == before + len(created) - len(deleted)
    since = summary["startedAt"]
    changed = ids_for(server, token, "orders", f"where[updatedAt][greater_than]={since}")
    updated = summary["updated"].get("orders", [])
    assert set(created) | set(updated) <= set(changed)
    assert admin_post(server, "changes", {"fraction": 5}).status_code == 400


def test_inject_serves_a_malformed_document_as_is(
    make_demo_server: Callable[..., DemoServer],
) -> None:
    server = make_demo_server()
    token = server.admin_token()
    malformed = {"id": 99999, "amount": "12.50", "status": None, "items": "oops"}
    assert admin_post(server, "inject", {"collection": "orders", "document": malformed}).json() == {
        "collection": "orders",
        "id": 99999,
    }
    assert get(server, "orders/99999", token, depth=2).json() == malformed
    listed = get(server, "orders", token, limit=0, depth=1, sort="-updatedAt").json()
    assert malformed in listed["docs"]
    assert (
        ids_for(server, token, "orders", "where[amount][greater_than]=0&where[id][equals]=99999")
        == []
    )


def test_schema_change_endpoint_adds_and_retypes_fields(
    make_demo_server: Callable[..., DemoServer],
) -> None:
    server = make_demo_server()
    token = server.admin_token()
    added = admin_post(
        server,
        "schema",
        {"collection": "products", "action": "add_field", "field": "brand", "value": "Acme"},
    )
    assert added.status_code == 200
    products = get(server, "products", token, limit=0, depth=0).json()["docs"]
    assert products and all(p["brand"] == "Acme" for p in products)
    assert len(ids_for(server, token, "products", "where[brand][equals]=Acme")) == len(products)
    retyped = admin_post(
        server,
        "schema",
        {"collection": "products", "action": "change_type", "field": "inventory", "every": 2},
    )
    assert retyped.status_code == 200 and retyped.json()["ids"]
    inventories = [p["inventory"] for p in get(server, "products", token, limit=0).json()["docs"]]
    assert {type(value) for value in inventories} == {int, str}


def test_where_across_a_relationship_and_null(
    demo_server: DemoServer, demo_admin_token: str
) -> None:
    users = demo_server.store.collections["users"]
    expected = [
        d
        for d in orders(demo_server)
        if d["customer"] and "mail.example" in users[d["customer"]]["email"]
    ]
    assert expected
    got = ids_for(
        demo_server, demo_admin_token, "orders", "where[customer.email][like]=mail.example"
    )
    assert got == newest_first(expected)
    guests = [d for d in orders(demo_server) if d["customer"] is None]
    assert ids_for(
        demo_server, demo_admin_token, "orders", "where[customer][equals]=null"
    ) == newest_first(guests)
