"""An independent oracle: the marts' headline numbers computed in plain Python straight from
Payload documents (the demo generator's / store's), with the rules documented in
docs/transform.md. Nothing here reads dbt's SQL."""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from flows.transform.dbt_project import DBT_PROJECT_DIR

REVENUE_STATUSES = frozenset({"processing", "completed"})
Documents = Mapping[str, list[dict[str, Any]]]


def _utc_date(stamp: str) -> date:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(UTC).date()


def _month(day: date) -> date:
    return day.replace(day=1)


def _months_between(start: date, end: date) -> int:
    return (end.year - start.year) * 12 + end.month - start.month


def _usd(cents: int) -> Decimal:
    return (Decimal(cents) / 100).quantize(Decimal("0.01"))


def revenue_orders(docs: Documents) -> list[dict[str, Any]]:
    return [o for o in docs["orders"] if o["status"] in REVENUE_STATUSES]


def monthly_revenue(docs: Documents) -> dict[date, Decimal]:
    """Revenue-bearing order amounts per UTC month of creation (guests included)."""
    totals: dict[date, int] = defaultdict(int)
    for order in revenue_orders(docs):
        totals[_month(_utc_date(order["createdAt"]))] += order["amount"]
    return {month: _usd(cents) for month, cents in totals.items()}


@dataclass(frozen=True)
class Rfm:
    recency_days: int
    frequency: int
    monetary_usd: Decimal
    r_score: int
    f_score: int
    m_score: int
    segment: str


def _ntile(ordered_keys: list[int], buckets: int = 5) -> dict[int, int]:
    """SQL ntile(): the first n % buckets groups hold one row more."""
    count = len(ordered_keys)
    size, extra = divmod(count, buckets)
    scores: dict[int, int] = {}
    position = 0
    for bucket in range(1, buckets + 1):
        take = size + (1 if bucket <= extra else 0)
        for key in ordered_keys[position : position + take]:
            scores[key] = bucket
        position += take
    return scores


def _tied_quintile(keys: dict[int, tuple[Any, ...]], buckets: int = 5) -> dict[int, int]:
    """Quintile score from the rank of each customer's ordering key: customers with equal keys
    share the lowest rank (SQL rank()), score = 1 + buckets * (rank - 1) // count. Equal keys
    therefore always get equal scores."""
    ordered = sorted(keys.values())
    count = len(ordered)
    first_rank: dict[tuple[Any, ...], int] = {}
    for position, key in enumerate(ordered, start=1):
        first_rank.setdefault(key, position)
    return {c: 1 + buckets * (first_rank[k] - 1) // count for c, k in keys.items()}


def segment_table() -> dict[tuple[int, int], str]:
    with (DBT_PROJECT_DIR / "seeds" / "rfm_segments.csv").open() as handle:
        return {
            (int(row["r_score"]), int(row["fm_score"])): row["segment"]
            for row in csv.DictReader(handle)
        }


def customer_rfm(docs: Documents) -> dict[int, Rfm]:
    """R/F/M values, scores and segment of every registered customer with at least one order
    (any status). Frequency and monetary count revenue-bearing orders only (0 / 0.00 without
    any); recency is measured from the last revenue-bearing order, else from the last order of
    any status."""
    as_of = max(_utc_date(o["createdAt"]) for o in docs["orders"])
    last_any: dict[int, date] = {}
    last_revenue: dict[int, date] = {}
    frequency: dict[int, int] = defaultdict(int)
    cents: dict[int, int] = defaultdict(int)
    for order in docs["orders"]:
        customer = order.get("customer")
        if customer is None:
            continue
        day = _utc_date(order["createdAt"])
        last_any[customer] = max(last_any.get(customer, day), day)
        if order["status"] in REVENUE_STATUSES:
            last_revenue[customer] = max(last_revenue.get(customer, day), day)
            frequency[customer] += 1
            cents[customer] += order["amount"]
    customers = list(last_any)
    recency = {c: (as_of - last_revenue.get(c, last_any[c])).days for c in customers}
    r = _tied_quintile({c: (-recency[c], cents[c]) for c in customers})
    f = _tied_quintile({c: (frequency[c], cents[c]) for c in customers})
    m = _tied_quintile({c: (cents[c], frequency[c]) for c in customers})
    segments = segment_table()
    return {
        c: Rfm(
            recency_days=recency[c],
            frequency=frequency[c],
            monetary_usd=_usd(cents[c]),
            r_score=r[c],
            f_score=f[c],
            m_score=m[c],
            segment=segments[(r[c], (f[c] + m[c] + 1) // 2)],
        )
        for c in customers
    }


@dataclass(frozen=True)
class CohortCell:
    cohort_size: int
    active_customers: int
    revenue_usd: Decimal
    cumulative_revenue_usd: Decimal


def cohort_retention(docs: Documents) -> dict[tuple[date, int], CohortCell]:
    """(cohort month, months since first order) -> cell, dense up to the newest order month."""
    newest_month = _month(max(_utc_date(o["createdAt"]) for o in docs["orders"]))
    first: dict[int, tuple[str, int]] = {}
    for order in revenue_orders(docs):
        customer = order.get("customer")
        if customer is None:
            continue
        key = (order["createdAt"], order["id"])
        if customer not in first or key < first[customer]:
            first[customer] = key
    cohort_of = {c: _month(_utc_date(stamp)) for c, (stamp, _) in first.items()}
    sizes: dict[date, int] = defaultdict(int)
    for month in cohort_of.values():
        sizes[month] += 1
    active: dict[tuple[date, int], set[int]] = defaultdict(set)
    revenue: dict[tuple[date, int], int] = defaultdict(int)
    for order in revenue_orders(docs):
        customer = order.get("customer")
        if customer is None:
            continue
        cohort = cohort_of[customer]
        offset = _months_between(cohort, _month(_utc_date(order["createdAt"])))
        active[(cohort, offset)].add(customer)
        revenue[(cohort, offset)] += order["amount"]
    cells: dict[tuple[date, int], CohortCell] = {}
    for cohort, size in sizes.items():
        running = 0
        for offset in range(_months_between(cohort, newest_month) + 1):
            running += revenue[(cohort, offset)]
            cells[(cohort, offset)] = CohortCell(
                cohort_size=size,
                active_customers=len(active[(cohort, offset)]),
                revenue_usd=_usd(revenue[(cohort, offset)]),
                cumulative_revenue_usd=_usd(running),
            )
    return cells


CART_ACTIVE_DAYS = 7


def cart_status(cart: Mapping[str, Any], at: datetime) -> str:
    """Payload ecommerce's computed cart status at instant `at`: purchased once purchasedAt is
    set, else active while created less than 7 days before `at`, else abandoned."""
    if cart.get("purchasedAt"):
        return "purchased"
    created = cart.get("createdAt")
    if created:
        age = at - datetime.fromisoformat(created.replace("Z", "+00:00"))
        if age.total_seconds() < CART_ACTIVE_DAYS * 86400:
            return "active"
    return "abandoned"


@dataclass(frozen=True)
class CustomerLifetime:
    first_order_date: date | None
    last_order_date: date | None
    total_orders: int
    lifetime_value_usd: Decimal
    customer_lifetime_days: int | None


def customer_lifetimes(docs: Documents, build_date: date) -> dict[int, CustomerLifetime]:
    """dim_customers' lifetime fields for every registered customer (users with the customer
    role): revenue-bearing first/last order dates, count and value; lifetime days from the
    first revenue-bearing order, else sign-up, to the build date."""
    orders: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for order in revenue_orders(docs):
        if order.get("customer") is not None:
            orders[order["customer"]].append(order)
    result: dict[int, CustomerLifetime] = {}
    for user in docs["users"]:
        if "customer" not in (user.get("roles") or []):
            continue
        days = [_utc_date(o["createdAt"]) for o in orders.get(user["id"], [])]
        start = min(days) if days else _utc_date(user["createdAt"])
        result[user["id"]] = CustomerLifetime(
            first_order_date=min(days) if days else None,
            last_order_date=max(days) if days else None,
            total_orders=len(days),
            lifetime_value_usd=_usd(sum(o["amount"] for o in orders.get(user["id"], []))),
            customer_lifetime_days=(build_date - start).days,
        )
    return result
