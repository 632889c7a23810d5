"""load.py pieces without a server: dedupe, prefetching, unreachable source, dlt wiring."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from flows.lakehouse.catalog import clear_catalog_cache, prepare_lakehouse
from flows.lakehouse.errors import is_transient
from flows.lakehouse.load import _keep_newest, load_collection, table_state
from flows.settings import load_settings
from flows.source.errors import PayloadAuthError, PayloadUnavailableError
from flows.source.payload import Page, PayloadClient, payload_source, prefetched


def test_keep_newest_keeps_the_last_copy_per_id() -> None:
    data = pa.table({"id": [1, 2, 1, 3, 2], "v": ["a", "b", "c", "d", "e"]})
    kept = _keep_newest(data).to_pylist()
    assert sorted((r["id"], r["v"]) for r in kept) == [(1, "c"), (2, "e"), (3, "d")]


def test_prefetched_yields_in_order_and_reraises_reader_errors() -> None:
    def pages(fail: bool) -> Iterator[Page]:
        for number in range(5):
            yield Page("orders", [{"id": number}], number)
        if fail:
            raise PayloadUnavailableError("gone")

    assert [p.number for p in prefetched(pages(False))] == [0, 1, 2, 3, 4]
    seen = []
    with pytest.raises(PayloadUnavailableError):
        for page in prefetched(pages(True)):
            seen.append(page.number)
    assert seen == [0, 1, 2, 3, 4]


def test_prefetched_stops_its_reader_when_the_consumer_stops() -> None:
    produced = []

    def endless() -> Iterator[Page]:
        number = 0
        while True:
            produced.append(number)
            yield Page("orders", [], number)
            number += 1

    for page in prefetched(endless(), depth=2):
        if page.number == 3:
            break
    count = len(produced)
    assert count <= 3 + 2 + 2  # consumed + queue depth + one in hand
    assert len(produced) == count


def test_unreachable_payload_commits_nothing(tmp_path: Path) -> None:
    clear_catalog_cache()
    settings = load_settings(
        payload_cms_url="http://127.0.0.1:9",
        lakehouse_dir=tmp_path,
        payload_max_retries=1,
        payload_backoff_seconds=0.01,
    )
    prepare_lakehouse(settings)
    with pytest.raises(PayloadUnavailableError, match="PAYLOAD_CMS_URL") as error:
        load_collection(settings, "orders")
    assert is_transient(error.value)
    assert not is_transient(PayloadAuthError("no"))
    assert table_state(settings, "orders") == "empty"
    clear_catalog_cache()


def test_dlt_source_has_one_resource_per_collection() -> None:
    settings = load_settings(payload_cms_url="http://127.0.0.1:9")
    client = PayloadClient.from_settings(settings)
    source = payload_source(client, ["orders", "variantTypes"])
    assert set(source.resources) == {"orders", "variantTypes"}
    assert source.resources["orders"].write_disposition == "merge"
    client.close()
