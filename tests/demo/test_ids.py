"""String ids in the demo API (`--id-type objectid|uuid`) and in the loader's keyset read:
deterministic ids, consistent relationships, Payload's comparison semantics over HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from flows.demo.generator import generate
from flows.demo.server import DemoServer
from flows.settings import load_settings
from flows.source.ids import IdType, id_from_text, is_valid_id
from flows.source.paginator import Cursor
from flows.source.payload import PayloadClient


def test_string_ids_are_deterministic_and_relationships_consistent() -> None:
    for id_type in (IdType.OBJECTID, IdType.UUID):
        first, again = generate("small", 1, 42, id_type), generate("small", 1, 42, id_type)
        assert first.collections == again.collections
        ids = {c: {d["id"] for d in docs} for c, docs in first.collections.items()}
        assert all(is_valid_id(i, id_type) for docs in ids.values() for i in docs)
        for order in first.collections["orders"]:
            assert order["customer"] is None or order["customer"] in ids["users"]
            assert set(order["transactions"] or []) <= ids["transactions"]
            for item in order["items"]:
                assert item["product"] in ids["products"]
                assert item["variant"] is None or item["variant"] in ids["variants"]
        for variant in first.collections["variants"]:
            assert variant["product"] in ids["products"]
            assert set(variant["options"]) <= ids["variantOptions"]
        assert set(first.customer_segments) <= ids["users"]
    assert (
        generate("small", 1, 43, IdType.UUID).collections["orders"][0]["id"]
        != (generate("small", 1, 42, IdType.UUID).collections["orders"][0]["id"])
    )


def test_cursor_text_round_trips_every_id_type() -> None:
    for doc_id in (7, "66f1c2a4b3e9d01234abcdef", "004c6d0b-8862-4c6d-9d6d-55b20fcaa773"):
        cursor = Cursor("2026-01-01T00:00:00.000Z", doc_id)
        assert Cursor.decode(cursor.encode()) == cursor
    # 24 digits is an ObjectId (an integer id has at most 19): it stays a string.
    assert id_from_text("123456789012345678901234") == "123456789012345678901234"


def test_uuid_store_compares_ids_as_text_like_postgres(
    make_demo_server: Callable[..., DemoServer],
) -> None:
    server = make_demo_server(id_type=IdType.UUID)
    token = server.admin_token()

    def ids(**params: Any) -> list[Any]:
        response = httpx.get(
            f"{server.url}/api/orders",
            params={"limit": "0", "depth": "0", **params},
            headers={"Authorization": f"JWT {token}"},
        )
        assert response.status_code == 200, response.text
        return [d["id"] for d in response.json()["docs"]]

    every = ids(sort="id")
    assert every == sorted(every) and len(every) == 500
    middle = every[250]
    assert ids(**{"where[id][greater_than]": middle, "sort": "id"}) == every[251:]
    # Not a UUID: matches nothing (PostgreSQL: NULL in the comparison), as captured.
    assert ids(**{"where[id][greater_than]": "0"}) == []
    assert server.identity()["idType"] == "uuid"


def test_keyset_read_of_an_objectid_store_reads_every_document_once(
    make_demo_server: Callable[..., DemoServer], tmp_path: Any
) -> None:
    server = make_demo_server(id_type=IdType.OBJECTID)
    settings = load_settings(
        payload_cms_url=server.url,
        payload_email="admin@example.com",
        payload_password="demo-password",
        payload_page_size=37,
        payload_id_type=IdType.OBJECTID,
        lakehouse_dir=tmp_path,
    )
    client = PayloadClient.from_settings(settings)
    try:
        read = [d["id"] for page in client.iter_pages("orders", since="1970-01-01T00:00:00.000Z")
                for d in page.docs]  # fmt: skip
        listed = client.all_ids("orders")
    finally:
        client.close()
    assert len(read) == len(set(read)) == 500
    assert set(read) == listed == set(server.store.collections["orders"])
