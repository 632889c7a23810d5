"""Scenarios of issue #11 on a real load + dbt build: lifetime fields of dim_customers against
the oracle, cart status that follows the build instant without a new load, and a customer
who is referenced but not loaded (hard-deleted or late) who must not fail the run."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from flows.demo.store import format_timestamp
from flows.lakehouse.load import LoadMode, load_collection
from flows.orchestration.dbt import summarise
from flows.transform.dbt_project import run_dbt
from tests.transform import oracle
from tests.transform.conftest import Lakehouse

pytestmark = pytest.mark.slow

MARTS = "ecommerce_marts"


def vars_at(moment: datetime) -> str:
    return "{build_at: '" + format_timestamp(moment) + "'}"


@pytest.fixture(scope="module")
def built_at(loaded_lakehouse: Lakehouse) -> datetime:
    """The store's reference instant plus two days: some carts active, some abandoned."""
    moment = loaded_lakehouse.store.now + timedelta(days=2)
    run_dbt(loaded_lakehouse.settings, ["build", "--vars", vars_at(moment)])
    return moment


def test_dim_customers_lifetime_fields_match_the_oracle(
    loaded_lakehouse: Lakehouse, built_at: datetime
) -> None:
    expected = oracle.customer_lifetimes(loaded_lakehouse.documents(), built_at.date())
    rows = loaded_lakehouse.query(
        f"select customer_id, first_order_date, last_order_date, total_orders, "
        "lifetime_value_usd, customer_lifetime_days, is_unknown_customer "
        f"from {MARTS}.dim_customers"
    )
    actual = {row[0]: oracle.CustomerLifetime(*row[1:6]) for row in rows if not row[6]}
    assert actual == expected
    assert all(value.customer_lifetime_days is not None for value in actual.values())


def test_cart_status_follows_the_build_instant_without_a_new_load(
    loaded_lakehouse: Lakehouse, built_at: datetime
) -> None:
    carts = {c["id"]: c for c in loaded_lakehouse.documents()["carts"]}

    def statuses() -> dict[int, str]:
        return dict(loaded_lakehouse.query(f"select cart_id, status from {MARTS}.fact_carts"))

    first = statuses()
    assert first == {i: oracle.cart_status(c, built_at) for i, c in carts.items()}
    active = {i for i, status in first.items() if status == "active"}
    assert active, "some carts should still be active two days after the reference instant"

    # eight days later, no new load: an incremental run turns every active cart abandoned
    later = built_at + timedelta(days=8)
    run_dbt(loaded_lakehouse.settings, ["run", "--select", "fact_carts", "--vars", vars_at(later)])
    second = statuses()
    assert second == {i: oracle.cart_status(c, later) for i, c in carts.items()}
    assert {second[i] for i in active} == {"abandoned"}


def test_a_customer_referenced_but_not_loaded_warns_and_gets_an_anonymous_row(
    loaded_lakehouse: Lakehouse, built_at: datetime
) -> None:
    """A customer with orders is hard-deleted in Payload (privacy): reconcile removes the user;
    `dbt build` still succeeds (the run publishes), dim_customers keeps an anonymous row so
    every fact joins, and the warn-severity test reports how many such customers there are."""
    store = loaded_lakehouse.store
    ordering = sorted({o["customer"] for o in store.iter_docs("orders") if o.get("customer")})
    gone = ordering[0]
    store.delete("users", gone)
    load_collection(loaded_lakehouse.settings, "users", LoadMode.RECONCILE)

    result = run_dbt(loaded_lakehouse.settings, ["build", "--vars", vars_at(built_at)])
    summary = summarise(result, "build", None, "local")
    assert summary["success"] and not summary["failed_nodes"]
    warned = {node.split(".")[2]: count for node, count in summary["warnings"].items()}
    assert warned == {"customers_not_loaded": 1}

    row = loaded_lakehouse.query(
        f"select customer_name, customer_email, customer_since, is_unknown_customer, "
        f"total_orders, orders_placed, customer_segment from {MARTS}.dim_customers "
        f"where customer_id = {gone!r}"
    )
    assert len(row) == 1
    name, email, since, unknown, _total, placed, segment = row[0]
    assert (name, email, since, unknown) == (None, None, None, True)
    assert placed > 0 and segment is not None
    assert (
        loaded_lakehouse.query(
            f"select count(*) from {MARTS}.fact_orders where customer_id = {gone!r}"
        )[0][0]
        == placed
    )
