"""The command line, the dbt selection, the artifacts' content, the relay endpoint."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from prefect.client.orchestration import SyncPrefectClient
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.events.schemas.events import ReceivedEvent

from flows.lakehouse.load import LoadMode, LoadReport, table_state
from flows.main import main, parse_args
from flows.orchestration.artifacts import MartRow, age, load_rows, summary_markdown
from flows.orchestration.assets import raw_table_key, table_asset_key
from flows.orchestration.caching import lakehouse_identifier, without_credentials
from flows.orchestration.dbt import (
    PARTIAL_PARSE_FILE,
    RUNS_KEPT,
    downstream_selector,
    run_target_path,
)
from flows.orchestration.events import COLLECTION_CHANGED, json_safe, report_payload
from flows.orchestration.freshness import cursor_updated_at, freshness_params
from flows.orchestration.relay import CHANGE_PATH, make_server
from flows.settings import ALL_COLLECTIONS, load_settings

REPO_ROOT = Path(__file__).resolve().parents[2]


def report(collection: str, read: int) -> LoadReport:
    return LoadReport(
        collection=collection,
        table=f"ecommerce.{collection.lower()}",
        mode="incremental",
        documents_read=read,
        inserted=read,
        updated=0,
        deleted=0,
        rejected=1,
        cursor_before=None,
        cursor_after="2026-01-01T00:00:00.000Z|7",
        snapshot_id=651258540856733155,
        committed=True,
        seconds=1.234,
        rejected_share=round(1 / read, 4),
    )


def test_cli_maps_flags_to_parameters() -> None:
    args = parse_args(
        [
            "--collections",
            "orders,carts",
            "--reconcile",
            "--since",
            "2026-01-02T03:04:05Z",
            "--skip-dbt",
            "--target",
            "trino",
            "--select",
            "fact_orders+",
            "--allow-partial",
        ]
    )
    assert args.collections == ["orders", "carts"]
    assert args.reconcile and not args.full_refresh
    assert args.since == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert args.skip_dbt and args.allow_partial
    assert (args.target, args.select) == ("trino", "fact_orders+")


def test_cli_rejects_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--collections", "orders,nope"])
    assert "unknown collection(s) nope" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--full-refresh", "--reconcile"])
    with pytest.raises(SystemExit):
        parse_args(["--since", "yesterday"])


def test_script_help_runs_as_a_file() -> None:
    """`python flows/main.py --help`: the file works as a script (absolute package imports)."""
    result = subprocess.run(
        [sys.executable, "flows/main.py", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    for flag in ("--collections", "--full-refresh", "--reconcile", "--since", "--skip-dbt"):
        assert flag in result.stdout
    for flag in ("--target", "--select", "--allow-partial", "--preset"):
        assert flag in result.stdout


def test_downstream_selection_of_a_partial_load() -> None:
    assert downstream_selector(list(ALL_COLLECTIONS)) is None
    assert downstream_selector(["orders", "variantTypes"]) == (
        "source:*.orders+ source:*.varianttypes+"
    )


def test_cache_identifiers_carry_no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (
        without_credentials("postgresql://user:secret@db:5432/catalog")
        == "postgresql://db:5432/catalog"
    )
    settings = load_settings(iceberg_catalog_url="postgresql://user:secret@db/catalog")
    assert "secret" not in lakehouse_identifier(settings)


def test_each_dbt_run_gets_its_own_bounded_target_folder(tmp_path: Path) -> None:
    """A retry reads only its own run's run_results.json; the parse cache carries over."""
    (tmp_path / "run_results.json").write_text("{}")  # an earlier layout's shared file
    (tmp_path / PARTIAL_PARSE_FILE).write_bytes(b"cache")
    first = run_target_path(tmp_path, "run-0")
    assert first == tmp_path / "runs" / "run-0"
    assert not (first / "run_results.json").exists()
    assert (first / PARTIAL_PARSE_FILE).read_bytes() == b"cache"
    (first / "run_results.json").write_text("{}")
    assert run_target_path(tmp_path, "run-0") == first  # a retry: same folder, results kept
    assert (first / "run_results.json").exists()
    for number in range(1, RUNS_KEPT + 3):
        time.sleep(0.01)  # distinct modification times
        run_target_path(tmp_path, f"run-{number}")
    kept = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert len(kept) == RUNS_KEPT and "run-0" not in kept, kept


def test_freshness_probe_asks_what_is_newer_than_the_cursor() -> None:
    state = "6512585408567331:2026-10-31T22:09:35.767Z|500"
    assert cursor_updated_at(state) == "2026-10-31T22:09:35.767Z"
    assert cursor_updated_at("empty") is None
    incremental = freshness_params(LoadMode.INCREMENTAL, state)
    assert incremental["where[updatedAt][greater_than]"] == "2026-10-31T22:09:35.767Z"
    assert incremental["limit"] == "1" and incremental["sort"] == "-updatedAt"
    # With the load's lookback: a document committed late, behind the cursor, is seen too.
    behind = freshness_params(LoadMode.INCREMENTAL, state, lookback_seconds=300)
    assert behind["where[updatedAt][greater_than]"] == "2026-10-31T22:04:35.767Z"
    # A reconcile or full refresh must see creates and hard deletes: the whole collection.
    assert "where[updatedAt][greater_than]" not in freshness_params(LoadMode.RECONCILE, state)
    assert "where[updatedAt][greater_than]" not in freshness_params(LoadMode.INCREMENTAL, "empty")


def test_load_table_rows_and_summary() -> None:
    rows = load_rows(
        [report("orders", 5000)],
        {"carts": "PayloadAuthError: 403 refused", "users": "RejectionCeilingError: users: ..."},
        {"users": (100, 1.0)},
    )
    assert rows[0] == {
        "collection": "orders",
        "status": "loaded",
        "read": "5,000",
        "inserted": "5,000",
        "updated": "0",
        "deleted": "0",
        "rejected": "1",
        "rejected share": "0.02%",
        "seconds": "1.2",
        "cursor before": "none (first load)",
        "cursor after": "2026-01-01 00:00:00 UTC, id 7",
        "snapshot id": "651258540856733155",
    }
    # Seconds come before the (wide) cursor columns, so they stay on screen.
    assert list(rows[0]).index("seconds") < list(rows[0]).index("cursor before")
    assert rows[1]["collection"] == "carts" and rows[1]["status"].startswith("FAILED: ")
    assert rows[1]["rejected"] == ""
    # a load refused by the rejection ceiling still shows how much it rejected
    assert (rows[2]["rejected"], rows[2]["rejected share"]) == ("100", "100.00%")
    for row in rows:  # rendered as markdown: no bullet, heading or table pipe in a cell
        for cell in row.values():
            assert not str(cell).startswith(("-", "*", "#")) and "|" not in str(cell), cell
    settings = load_settings()
    markdown = summary_markdown(
        mode=LoadMode.INCREMENTAL,
        reports=[report("orders", 5000)],
        failures={},
        dbt_summary={
            "command": "build",
            "select": None,
            "target": "local",
            "statuses": {"success": 41, "pass": 92},
            "by_type": {
                "model": {"success": 40},
                "seed": {"success": 1},
                "test": {"pass": 80},
                "unit_test": {"pass": 12},
            },
            "slowest": [{"node": "fact_orders", "type": "model", "seconds": 1.5}],
            "finished_at": "2026-01-02T03:04:05+00:00",
        },
        dbt_not_run=None,
        marts=[MartRow("ecommerce_marts.fact_orders", 3000, 2990, "651258540856733155")],
        metrics={"orders": 1234, "revenue_usd": 5678.5, "customers_by_segment": {"Champions": 3}},
        settings=settings,
        now=datetime(2026, 1, 1, 2, 30, tzinfo=UTC),
    )
    assert "**documents read** 5,000" in markdown
    assert "**rejected** 1 (0.0%)" in markdown
    assert "40 models and 1 seed built; 80 data tests and 12 unit tests passed" in markdown
    assert "| model fact_orders | 1.50 |" in markdown
    assert "Marts built at 2026-01-02 03:04:05 UTC" in markdown
    assert "| ecommerce.orders | 2026-01-01 00:00:00 UTC | 2 h 30 min | 651258540856733155 |" in (
        markdown
    )
    assert "| ecommerce_marts.fact_orders | 3,000 | +10 | 651258540856733155 |" in markdown
    assert "| Revenue (USD) | 5,678.50 |" in markdown and "revenue_usd" not in markdown
    assert "Champions: 3" in markdown
    assert f"`duckdb -readonly {settings.duckdb_path}`" in markdown
    skipped = summary_markdown(
        mode="incremental",
        reports=[],
        failures={},
        dbt_summary=None,
        dbt_not_run="dbt was skipped: the run was started with run_dbt=false",
        marts=[],
        metrics=None,
        settings=settings,
    )
    assert "dbt was skipped: the run was started with run_dbt=false." in skipped


def test_age_reads_at_a_glance() -> None:
    now = datetime(2026, 1, 3, tzinfo=UTC)
    assert age(datetime(2026, 1, 1, 20, tzinfo=UTC), now) == "1 d 4 h"
    assert age(datetime(2026, 1, 2, 23, 59, 20, tzinfo=UTC), now) == "40 s"
    assert age(None, now) == "n/a"


def test_snapshot_ids_leave_as_strings() -> None:
    payload = report_payload(report("orders", 1))
    assert payload["snapshot_id"] == "651258540856733155"
    assert json_safe({"a": [2**53 + 1, 5, True]}) == {"a": [str(2**53 + 1), 5, True]}


@pytest.fixture
def relay(prefect_api: str) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, token="relay-token")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def test_relay_emits_the_change_event(relay: str, client: SyncPrefectClient) -> None:
    url = relay + CHANGE_PATH
    body = {"collection": "variantOptions", "operation": "delete", "id": 17}
    assert httpx.post(url, json=body, timeout=10).status_code == 401  # no token
    headers = {"X-Relay-Token": "relay-token"}
    refused = httpx.post(url, json={"collection": "nope"}, headers=headers, timeout=10)
    assert refused.status_code == 400 and "collection" in refused.json()["error"]
    accepted = httpx.post(url, json=body, headers=headers, timeout=10)
    assert accepted.status_code == 202

    event_filter = EventFilter(
        event=EventNameFilter(name=[COLLECTION_CHANGED]),
        resource=EventResourceFilter(id=["payload.collection.variantOptions"]),
    )
    deadline = time.monotonic() + 60
    events: list[ReceivedEvent] = []
    while not events and time.monotonic() < deadline:
        events = list(client.read_events(filter=event_filter, limit=10).events)
        time.sleep(1)
    (event,) = events
    assert event.resource["payload.collection"] == "variantOptions"
    assert event.payload == {"operation": "delete", "id": "17"}


@pytest.mark.slow
def test_cli_runs_the_demo_end_to_end(
    prefect_api: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No PAYLOAD_CMS_URL: the CLI starts the demo API in a subprocess, loads, stops it."""
    for name in ("PAYLOAD_CMS_URL", "PAYLOAD_EMAIL", "PAYLOAD_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LAKEHOUSE_DIR", str(tmp_path / "lakehouse"))
    monkeypatch.setenv("PAYLOAD_REQUEST_CONCURRENCY", "9")
    code = main(["--collections", "categories,variantTypes", "--skip-dbt"])
    output = capsys.readouterr().out
    assert code == 0, output
    assert "starting the demo Payload API" in output
    assert f"lakehouse   {tmp_path / 'lakehouse'}" in output
    assert "2 collections" in output
    settings = load_settings(lakehouse_dir=tmp_path / "lakehouse")
    assert table_state(settings, "categories") != "empty"
    assert table_state(settings, "orders") == "empty"  # only the selected collections


def test_table_asset_keys_are_prefect_dbts() -> None:
    """The keys prefect-dbt 0.7.25 derives from the dbt manifest's relation names (read from its
    source: `format_resource_id(adapter_type, relation_name)`), for both targets."""
    local = load_settings(dbt_target="local")
    assert raw_table_key(local, "orders") == "duckdb://lakehouse/ecommerce/orders"
    assert raw_table_key(local, "variantTypes") == "duckdb://lakehouse/ecommerce/varianttypes"
    assert table_asset_key(local, "x", "ecommerce_marts.fact_orders") == (
        "duckdb://lakehouse/ecommerce_marts/fact_orders"
    )
    trino = load_settings(dbt_target="trino", trino_catalog="lake")
    assert raw_table_key(trino, "orders") == "trino://lake/ecommerce/orders"
