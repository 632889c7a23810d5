"""The delete guard's parts against the demo Payload API: who the credential is, whether an id
listing adds up, reading documents by id, and the lookback re-read committing nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flows.demo.changes import late_commit
from flows.demo.server import DemoServer
from flows.lakehouse.errors import DeleteGuardError
from flows.lakehouse.load import LoadMode, load_collection
from flows.lakehouse.reader_check import check_full_reader
from flows.source.errors import IncompleteListingError
from flows.source.paginator import check_complete, is_last_page
from flows.source.payload import PayloadClient

from .conftest import settings_for

MakeServer = Callable[..., DemoServer]


def client(server: DemoServer, tmp_path: Path, **overrides: Any) -> PayloadClient:
    return PayloadClient.from_settings(settings_for(server, tmp_path / "lh", **overrides))


def test_only_an_admin_credential_may_delete(make_demo_server: MakeServer, tmp_path: Path) -> None:
    server = make_demo_server()
    check_full_reader(client(server, tmp_path), "users", "orders", "reconcile")  # admin: fine
    customer = next(o["customer"] for o in server.store.iter_docs("orders") if o.get("customer"))
    as_customer = client(
        server,
        tmp_path,
        payload_cms_token=server.user_token(customer),
        payload_email=None,
        payload_password=None,
    )
    with pytest.raises(DeleteGuardError, match=r"roles \['customer'\], not an admin"):
        check_full_reader(as_customer, "users", "orders", "reconcile")
    anonymous = client(server, tmp_path, payload_email=None, payload_password=None)
    with pytest.raises(DeleteGuardError, match="anonymous"):
        check_full_reader(anonymous, "users", "orders", "full_refresh")


def test_an_id_listing_must_add_up_to_total_docs(
    make_demo_server: MakeServer, tmp_path: Path
) -> None:
    server = make_demo_server()
    reader = client(server, tmp_path)
    assert len(reader.all_ids("orders")) == server.store.count("orders")
    server.faults = "short:1.0:collection=orders"
    with pytest.raises(IncompleteListingError, match="totalDocs"):
        reader.all_ids("orders")


def test_page_ends_follow_has_next_page_then_the_page_size() -> None:
    assert not is_last_page({"hasNextPage": True}, [1], 10)  # a capped `limit`: more to come
    assert is_last_page({"hasNextPage": False}, [1] * 10, 10)
    assert is_last_page({}, [1], 10) and not is_last_page({}, [1] * 10, 10)
    check_complete({"totalDocs": 2}, [1, 2])
    with pytest.raises(IncompleteListingError):
        check_complete({"totalDocs": 3}, [1, 2])


def test_documents_by_id_reads_exactly_those(make_demo_server: MakeServer, tmp_path: Path) -> None:
    server = make_demo_server()
    wanted = sorted(server.store.collections["orders"])[:150:7]
    docs = client(server, tmp_path).documents_by_id("orders", wanted)
    assert [d["id"] for d in docs] == wanted
    assert docs[0] == server.store.get("orders", wanted[0])


def test_lookback_rereads_commit_nothing_and_catch_a_late_commit(
    make_demo_server: MakeServer, tmp_path: Path
) -> None:
    server = make_demo_server()
    settings = settings_for(server, tmp_path / "lh")
    load_collection(settings, "orders")
    late_commit(server.store, "orders", behind_seconds=30)
    report = load_collection(settings, "orders")
    assert report.committed and report.inserted == 1 and report.updated == 0
    assert load_collection(settings, "orders").committed is False  # re-reads, nothing new
    no_lookback = settings_for(server, tmp_path / "lh", load_cursor_lookback_seconds=0)
    late_commit(server.store, "orders", behind_seconds=30)
    assert load_collection(no_lookback, "orders").inserted == 0  # skipped without the window
    reconcile = load_collection(no_lookback, "orders", LoadMode.RECONCILE)
    assert reconcile.committed and reconcile.inserted == 1  # reconcile adds what was missing
