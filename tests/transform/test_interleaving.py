"""Property test: the marts are right under ANY order of runs.

Real deployments do not run everything at once: the `on-change` deployment loads one collection
and builds what is downstream of it (`source:ecommerce.<table>+`), many times a day, in whatever
order edits arrive. Here random sequences of change batches (orders created, completed, refunded,
cancelled and deleted; prices and inventory edited; carts ageing from active to abandoned...)
are interleaved with random subset runs (load a few collections, then build only the models
downstream of them, at a build instant that moves forward), and after every sequence each mart
must equal a full refresh over the same raw data at the same build instant (multiset of rows,
every column).

`INTERLEAVING_SEQUENCES` (default 3) and `INTERLEAVING_SEED` (default 11) choose how many
sequences run and which ones.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from flows.demo.changes import apply_change_batch
from flows.demo.generator import Dataset
from flows.demo.server import DemoServer
from flows.demo.store import format_timestamp
from flows.lakehouse.load import LoadMode, load_collection, prepare_lakehouse
from flows.transform.dbt_project import open_duckdb, run_dbt
from tests.transform.conftest import Lakehouse, demo_settings

pytestmark = pytest.mark.slow

MARTS = "ecommerce_marts"
# Payload collection -> dbt source table
SOURCES = {
    "orders": "orders",
    "products": "products",
    "variants": "variants",
    "carts": "carts",
    "transactions": "transactions",
    "users": "users",
    "categories": "categories",
}
SEQUENCES = int(os.environ.get("INTERLEAVING_SEQUENCES", "3"))
SEED = int(os.environ.get("INTERLEAVING_SEED", "11"))
STEPS_PER_SEQUENCE = 4


def build_vars(lakehouse: Lakehouse) -> str:
    return "{build_at: '" + format_timestamp(lakehouse.store.now) + "'}"


def all_marts(lakehouse: Lakehouse) -> dict[str, Counter[tuple[object, ...]]]:
    """Every mart table as a multiset of rows."""
    with open_duckdb(lakehouse.settings) as connection:
        connection.execute("set TimeZone = 'UTC'")
        tables = [
            row[0]
            for row in connection.execute(
                "select table_name from information_schema.tables "
                f"where table_schema = '{MARTS}' and table_type = 'BASE TABLE'"
            ).fetchall()
        ]
        return {
            table: Counter(connection.execute(f"select * from {MARTS}.{table}").fetchall())
            for table in sorted(tables)
        }


def differences(
    incremental: dict[str, Counter[tuple[object, ...]]],
    full: dict[str, Counter[tuple[object, ...]]],
) -> dict[str, dict[str, object]]:
    found: dict[str, dict[str, object]] = {}
    for table in sorted(set(incremental) | set(full)):
        stale = incremental.get(table, Counter()) - full.get(table, Counter())
        missing = full.get(table, Counter()) - incremental.get(table, Counter())
        if stale or missing:
            found[table] = {
                "rows only after the subset runs": sorted(stale, key=repr)[:3],
                "rows only after a full refresh": sorted(missing, key=repr)[:3],
                "counts": (sum(stale.values()), sum(missing.values())),
            }
    return found


@pytest.fixture(scope="module")
def interleaved_lakehouse(
    tmp_path_factory: pytest.TempPathFactory, demo_dataset_small: Dataset
) -> Iterator[Lakehouse]:
    store = demo_dataset_small.store()
    server = DemoServer(store, seed=7).start()
    try:
        settings = demo_settings(Path(tmp_path_factory.mktemp("interleaving")), server)
        prepare_lakehouse(settings)
        lakehouse = Lakehouse(settings, server, store)
        lakehouse.load(LoadMode.FULL_REFRESH)
        run_dbt(settings, ["seed"])
        run_dbt(settings, ["run", "--vars", build_vars(lakehouse)])
        yield lakehouse
    finally:
        server.stop()


def run_sequence(lakehouse: Lakehouse, rng: random.Random, log: list[str]) -> None:
    """One random sequence: change batches and subset runs, in random order."""
    for _ in range(STEPS_PER_SEQUENCE):
        if rng.random() < 0.8:
            summary = apply_change_batch(lakehouse.store, seed=rng.randrange(10**6), fraction=0.02)
            log.append(f"batch({summary.total} docs)")
        # time passes: carts age, customers' lifetimes grow
        lakehouse.store.tick(timedelta(hours=rng.choice((1, 6, 30, 80))))
        collections = rng.sample(sorted(SOURCES), rng.choice((1, 1, 2)))
        mode = rng.choice((LoadMode.INCREMENTAL, LoadMode.RECONCILE))
        for collection in collections:
            load_collection(lakehouse.settings, collection, mode)
        selectors = [f"source:ecommerce.{SOURCES[c]}+" for c in collections]
        run_dbt(
            lakehouse.settings,
            ["run", "--select", *selectors, "--vars", build_vars(lakehouse)],
        )
        log.append(f"load {'+'.join(collections)} ({mode.value}), run {' '.join(selectors)}")


def test_any_interleaving_of_subset_runs_equals_full_refresh(
    interleaved_lakehouse: Lakehouse,
) -> None:
    lakehouse = interleaved_lakehouse
    rng = random.Random(SEED)
    for sequence in range(SEQUENCES):
        log: list[str] = []
        run_sequence(lakehouse, rng, log)
        # the daily run at the sequence's last instant: every model, incrementally
        run_dbt(lakehouse.settings, ["run", "--select", "marts", "--vars", build_vars(lakehouse)])
        incremental = all_marts(lakehouse)
        run_dbt(
            lakehouse.settings,
            ["run", "--select", "marts", "--full-refresh", "--vars", build_vars(lakehouse)],
        )
        full = all_marts(lakehouse)
        found = differences(incremental, full)
        assert not found, f"sequence {sequence} ({'; '.join(log)}) left stale marts: {found}"
