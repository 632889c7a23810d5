"""The demo store's generated data: determinism, volumes, Payload's document shapes, integrity
and every distribution the generator promises (docs/demo-data.md), within stated tolerances.

Distributions are checked on the large preset (20,000 orders: tight tolerances without flaky
sampling noise), structure and integrity on small and large."""

from __future__ import annotations

import json
import random
import re
import statistics
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flows.demo.generator import (
    COLLECTIONS,
    FIELD_ORDER,
    HISTORY_START,
    PRESETS,
    REFERENCE_TIME,
    SEGMENTS,
    Dataset,
    _Generator,
    generate,
    ms_to_timestamp,
)
from flows.demo.store import format_timestamp, parse_timestamp

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "payload-api"
# Captured depth-0 samples of each collection.
CAPTURED = {
    "orders": ["orders.depth0.limit2.json", "orders.trashed-product.depth0.limit1.json"],
    "transactions": [
        "transactions.depth0.limit2.json",
        "transactions.without-order.depth0.limit1.json",
    ],
    "carts": ["carts.purchased.depth0.limit2.json", "carts.abandoned.depth0.limit2.json"],
    "products": ["products.depth0.limit2.json", "products.trashed.depth0.limit1.json"],
    "variants": ["variants.depth0.limit2.json"],
    "categories": ["categories.depth0.limit2.json"],
    "users": ["users.depth0.limit2.json"],
    "variantTypes": ["variantTypes.depth0.json"],
    "variantOptions": ["variantOptions.depth0.limit2.json"],
}
# Computed by the server on read, never stored (contracts.md A).
COMPUTED_ON_READ = {"products": {"variants"}, "variantTypes": {"options"}, "carts": {"status"}}
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
ITEM_ID = re.compile(r"^[0-9a-f]{24}$")
WINDOW = (HISTORY_START, REFERENCE_TIME)


@pytest.fixture(scope="session")
def small() -> Dataset:
    return generate("small", 1, 42)


@pytest.fixture(scope="session")
def large() -> Dataset:
    return generate("large", 1, 42)


@pytest.fixture(params=["small", "large"])
def dataset(request: pytest.FixtureRequest) -> Dataset:
    result: Dataset = request.getfixturevalue(request.param)
    return result


def by_id(data: Dataset, collection: str) -> dict[int, dict[str, Any]]:
    return {doc["id"]: doc for doc in data.collections[collection]}


def ts(value: str) -> datetime:
    return parse_timestamp(value)


def captured_docs(collection: str) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for name in CAPTURED[collection]:
        docs += json.loads((FIXTURES / name).read_text())["docs"]
    return docs


def same_shape(ours: Any, theirs: Any) -> bool:
    """null or an empty list on either side matches anything: values differ, shapes must not."""
    if ours is None or theirs is None or ours == [] or theirs == []:
        return True
    if isinstance(theirs, dict):
        return (
            isinstance(ours, dict)
            and list(ours) == list(theirs)
            and all(same_shape(ours[k], theirs[k]) for k in theirs)
        )
    if isinstance(theirs, list):
        return isinstance(ours, list) and same_shape(ours[0], theirs[0])
    return type(ours) is type(theirs)


# --- determinism, volumes -------------------------------------------------------------------
def test_same_seed_gives_identical_documents(small: Dataset) -> None:
    again = generate("small", 1, 42)
    assert json.dumps(again.collections, sort_keys=False) == json.dumps(small.collections)
    assert again.customer_segments == small.customer_segments
    other = generate("small", 1, 43)
    assert json.dumps(other.collections) != json.dumps(small.collections)


@pytest.mark.parametrize(("preset", "scale"), [("small", 1), ("small", 3), ("medium", 1)])
def test_volumes_follow_the_preset_and_scale(preset: str, scale: int) -> None:
    data = generate(preset, scale, 42)
    volumes = PRESETS[preset]
    counts = {name: len(docs) for name, docs in data.collections.items()}
    assert set(counts) == set(COLLECTIONS)
    assert counts["categories"] == volumes.categories * scale
    assert counts["products"] == volumes.products * scale
    assert counts["users"] == volumes.customers * scale + 1  # + the admin
    assert counts["orders"] == volumes.orders * scale
    assert counts["carts"] == volumes.carts * scale
    assert counts["variantTypes"] == 3
    # about one transaction per order: failed attempts before a success, and orphans
    assert 1.0 < counts["transactions"] / counts["orders"] < 1.2
    assert len({c["slug"] for c in data.collections["categories"]}) == counts["categories"]
    assert len({p["slug"] for p in data.collections["products"]}) == counts["products"]
    assert (data.preset, data.scale, data.reference_time) == (preset, scale, REFERENCE_TIME)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown preset"):
        generate("huge")
    with pytest.raises(ValueError, match="scale"):
        generate("small", 0)


# --- shapes -----------------------------------------------------------------------------------
@pytest.mark.parametrize("collection", COLLECTIONS)
def test_documents_have_payloads_depth0_shape(small: Dataset, collection: str) -> None:
    captured = captured_docs(collection)
    hidden = COMPUTED_ON_READ.get(collection, set())
    expected_keys = [key for key in captured[0] if key not in hidden]
    assert list(FIELD_ORDER[collection]) == expected_keys
    for doc in small.collections[collection]:
        assert list(doc) == expected_keys, doc
    # nested structures (items, addresses, payment groups...) and scalar kinds match too
    for theirs in captured:
        theirs = {k: v for k, v in theirs.items() if k not in hidden}
        matching = [d for d in small.collections[collection] if same_shape(d, theirs)]
        assert matching, f"no generated {collection} document has the shape of {theirs}"


def test_values_have_payloads_formats(dataset: Dataset) -> None:
    for name, docs in dataset.collections.items():
        ids = [doc["id"] for doc in docs]
        assert ids == list(range(1, len(docs) + 1)), name
        created = [ts(doc["createdAt"]) for doc in docs]
        # auto-increment ids follow creation order
        assert created == sorted(created), name
        for doc in docs[::5]:  # a sample: parsing every timestamp of the large preset is slow
            for key in ("createdAt", "updatedAt", "deletedAt", "purchasedAt"):
                value = doc.get(key)
                if value is not None:
                    assert TIMESTAMP.match(value), (name, key, value)
                    assert format_timestamp(ts(value)) == value
            if "currency" in doc:
                assert doc["currency"] == "USD"
            for money in ("amount", "subtotal", "priceInUSD"):
                if money in doc:
                    assert isinstance(doc[money], int) and doc[money] > 0, (name, doc)
    for name in ("orders", "transactions", "carts"):
        item_ids = [item["id"] for doc in dataset.collections[name] for item in doc["items"]]
        assert all(ITEM_ID.match(item_id) for item_id in item_ids)
        assert len(set(item_ids)) == len(item_ids), f"{name} items ids must be unique"
        assert all(doc["items"] for doc in dataset.collections[name])


def test_fast_timestamp_formatting_equals_the_stores() -> None:
    rng = random.Random(1)
    for _ in range(2_000):
        moment = HISTORY_START + timedelta(milliseconds=rng.randrange(600 * 86_400_000))
        millis = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
        assert ms_to_timestamp(millis) == format_timestamp(moment)


def test_users_are_the_admin_and_customers(dataset: Dataset) -> None:
    users = dataset.collections["users"]
    assert users[0] == {
        **users[0],
        "id": 1,
        "name": "Store Admin",
        "roles": ["admin"],
        "email": "admin@example.com",
    }
    customers = users[1:]
    assert all(u["roles"] == ["customer"] for u in customers)
    assert all(u["collection"] == "users" and u["sessions"] == [] for u in users)
    assert len({u["email"] for u in users}) == len(users)
    assert set(dataset.customer_segments) == {u["id"] for u in customers}


# --- integrity ----------------------------------------------------------------------------------
def test_relationships_point_at_existing_documents(dataset: Dataset) -> None:
    users, orders = by_id(dataset, "users"), by_id(dataset, "orders")
    products, variants = by_id(dataset, "products"), by_id(dataset, "variants")
    carts, transactions = by_id(dataset, "carts"), by_id(dataset, "transactions")
    categories, types = by_id(dataset, "categories"), by_id(dataset, "variantTypes")
    options = by_id(dataset, "variantOptions")
    for name in ("orders", "transactions", "carts"):
        for doc in dataset.collections[name]:
            assert doc["customer"] is None or doc["customer"] in users
            for item in doc["items"]:
                assert item["product"] in products
                if item["variant"] is not None:
                    assert variants[item["variant"]]["product"] == item["product"]
                else:
                    assert not products[item["product"]]["enableVariants"]
    for order in orders.values():
        assert order["transactions"]
        for transaction_id in order["transactions"]:
            assert transactions[transaction_id]["order"] == order["id"]
        if order["customer"] is not None:
            assert order["customerEmail"] == users[order["customer"]]["email"]
    for transaction in transactions.values():
        if transaction["order"] is not None:
            assert transaction["id"] in orders[transaction["order"]]["transactions"]
        assert transaction["cart"] is None or transaction["cart"] in carts
    for product in products.values():
        assert product["categories"] and set(product["categories"]) <= set(categories)
        assert set(product["variantTypes"]) <= set(types)
        assert bool(product["variantTypes"]) == product["enableVariants"]
    for variant in variants.values():
        product = products[variant["product"]]
        assert variant["options"]
        assert {options[o]["variantType"] for o in variant["options"]} == set(
            product["variantTypes"]
        )
    for option in options.values():
        assert option["variantType"] in types


def test_lines_reference_products_on_sale_at_order_time(dataset: Dataset) -> None:
    products, variants = by_id(dataset, "products"), by_id(dataset, "variants")
    trashed_in_orders = set()
    for name, stamp in (("orders", "createdAt"), ("carts", "createdAt")):
        for doc in dataset.collections[name]:
            moment = ts(doc[stamp])
            for item in doc["items"]:
                for target in filter(
                    None, (products[item["product"]], variants.get(item["variant"] or 0))
                ):
                    assert target["_status"] == "published"
                    assert ts(target["createdAt"]) < moment
                    if target["deletedAt"] is not None:
                        assert moment < ts(target["deletedAt"])
                        trashed_in_orders.add(target["id"])
    # like the captured orders.trashed-product file: orders keep pointing at trashed products
    assert trashed_in_orders


def test_amounts_are_the_sum_of_lines_at_order_time(dataset: Dataset) -> None:
    products, variants = by_id(dataset, "products"), by_id(dataset, "variants")

    def lines_total(items: list[dict[str, Any]]) -> int:
        return sum(
            item["quantity"]
            * (variants[item["variant"]] if item["variant"] else products[item["product"]])[
                "priceInUSD"
            ]
            for item in items
        )

    # prices never change inside the generated history: current price = price at order time
    for order in dataset.collections["orders"]:
        assert order["amount"] == lines_total(order["items"])
    for transaction in dataset.collections["transactions"]:
        assert transaction["amount"] == lines_total(transaction["items"])
    for cart in dataset.collections["carts"]:
        assert cart["subtotal"] == lines_total(cart["items"])


def test_timestamps_are_in_the_window_and_consistent(dataset: Dataset) -> None:
    for name, docs in dataset.collections.items():
        for doc in docs:
            created, updated = ts(doc["createdAt"]), ts(doc["updatedAt"])
            assert WINDOW[0] <= created <= updated < WINDOW[1], (name, doc["id"])
            for key in ("deletedAt", "purchasedAt"):
                if doc.get(key) is not None:
                    assert created <= ts(doc[key]) <= updated, (name, doc["id"], key)
    users = by_id(dataset, "users")
    first_order: dict[int, datetime] = {}
    first_sale: dict[int, datetime] = {}
    for order in dataset.collections["orders"]:
        moment = ts(order["createdAt"])
        if order["customer"] is not None:
            first_order.setdefault(order["customer"], moment)
        for item in order["items"]:
            first_sale.setdefault(item["product"], moment)
    for customer, moment in first_order.items():
        assert ts(users[customer]["createdAt"]) < moment
    products = by_id(dataset, "products")
    for product_id, moment in first_sale.items():
        assert ts(products[product_id]["createdAt"]) < moment
    for transaction in dataset.collections["transactions"]:
        if transaction["customer"] is not None:
            assert ts(users[transaction["customer"]]["createdAt"]) < ts(transaction["createdAt"])


def test_bulk_updates_leave_identical_updated_at(dataset: Dataset) -> None:
    for name, minimum_groups in (("orders", 2), ("products", 1)):
        stamps = Counter(doc["updatedAt"] for doc in dataset.collections[name])
        groups = [stamp for stamp, count in stamps.items() if count >= 3]
        assert len(groups) >= minimum_groups, name


# --- distributions (large preset) ------------------------------------------------------------
def test_product_popularity_is_pareto(large: Dataset) -> None:
    units: Counter[int] = Counter()
    for order in large.collections["orders"]:
        for item in order["items"]:
            units[item["product"]] += item["quantity"]
    sold = sorted(
        (units[p["id"]] for p in large.collections["products"] if p["_status"] == "published"),
        reverse=True,
    )
    top_share = sum(sold[: round(0.2 * len(sold))]) / sum(sold)
    assert 0.72 <= top_share <= 0.90, top_share


def test_small_catalogue_is_still_concentrated(small: Dataset) -> None:
    units: Counter[int] = Counter()
    for order in small.collections["orders"]:
        for item in order["items"]:
            units[item["product"]] += item["quantity"]
    sold = sorted(units.values(), reverse=True)
    assert sum(sold[:10]) / sum(sold) >= 0.6  # 50 products: wider tolerance


def test_customer_segments(large: Dataset) -> None:
    segments = large.customer_segments
    shares = Counter(segments.values())
    for name, (share, _, _) in SEGMENTS.items():
        assert abs(shares[name] / len(segments) - share) <= 0.005, name
    amounts: dict[int, list[int]] = defaultdict(list)
    for order in large.collections["orders"]:
        if order["customer"] is not None:
            amounts[order["customer"]].append(order["amount"])
    for name, (_, (low_orders, high_orders), (low_aov, high_aov)) in SEGMENTS.items():
        members = [user_id for user_id, segment in segments.items() if segment == name]
        assert all(low_orders <= len(amounts[m]) <= high_orders for m in members), name
        aovs = [statistics.mean(amounts[m]) for m in members]
        within = sum(low_aov <= aov <= high_aov for aov in aovs) / len(aovs)
        assert within >= 0.95, (name, within)
        assert low_aov <= statistics.median(aovs) <= high_aov


def test_guests_fill_the_order_count(large: Dataset) -> None:
    emails = {u["email"] for u in large.collections["users"]}
    guests = [o for o in large.collections["orders"] if o["customer"] is None]
    assert guests
    assert all(o["customerEmail"] and o["customerEmail"] not in emails for o in guests)
    median = statistics.median(o["amount"] for o in guests)
    assert 2_000 <= median <= 10_000  # guests shop like new customers


def test_price_tiers(large: Dataset) -> None:
    prices = [p["priceInUSD"] for p in large.collections["products"]]
    tiers = Counter(0 if p < 10_000 else 1 if p < 50_000 else 2 for p in prices)
    assert all(2_000 <= p < 200_000 for p in prices)
    for tier, share in enumerate((0.70, 0.25, 0.05)):
        assert abs(tiers[tier] / len(prices) - share) <= 0.01, tier
    # log-normal inside a tier: the median sits well below the tier's midpoint
    low_tier = sorted(p for p in prices if p < 10_000)
    assert statistics.median(low_tier) < 6_000


def test_variants_cover_part_of_the_catalogue(large: Dataset) -> None:
    products = large.collections["products"]
    with_variants = [p for p in products if p["enableVariants"]]
    assert 0.30 <= len(with_variants) / len(products) <= 0.40
    assert all(p["inventory"] == 0 for p in with_variants)
    per_product = Counter(v["product"] for v in large.collections["variants"])
    assert all(2 <= per_product[p["id"]] <= 10 for p in with_variants)
    by_product = by_id(large, "products")
    for variant in large.collections["variants"]:
        base = by_product[variant["product"]]["priceInUSD"]
        assert base <= variant["priceInUSD"] <= base + 6_000
    assert any(
        v["priceInUSD"] > by_product[v["product"]]["priceInUSD"]
        for v in large.collections["variants"]
    )


def daily_orders(data: Dataset) -> Counter[str]:
    return Counter(order["createdAt"][:10] for order in data.collections["orders"])


def mean_per_day(days: Counter[str], start: datetime, stop: datetime) -> float:
    count = (stop - start).days
    return sum(days[(start + timedelta(days=i)).strftime("%Y-%m-%d")] for i in range(count)) / count


def test_seasonality(large: Dataset) -> None:
    days = daily_orders(large)

    def d(year: int, month: int, day: int) -> datetime:
        return datetime(year, month, day, tzinfo=UTC)

    # baseline: three whole weeks before Black Friday week and three in January
    baseline = (
        mean_per_day(days, d(2025, 11, 3), d(2025, 11, 24))
        + mean_per_day(days, d(2026, 1, 5), d(2026, 1, 26))
    ) / 2
    black_friday = mean_per_day(days, d(2025, 11, 24), d(2025, 12, 1)) / baseline
    holidays = mean_per_day(days, d(2025, 12, 15), d(2026, 1, 1)) / baseline
    assert 2.4 <= black_friday <= 3.6, black_friday
    assert 1.6 <= holidays <= 2.5, holidays
    weekend: list[int] = []
    weekday: list[int] = []
    moment = HISTORY_START + timedelta(days=7)  # the shop opens after its launch week
    while moment < REFERENCE_TIME:
        if not d(2025, 11, 24) <= moment < d(2026, 1, 1):
            bucket = weekend if moment.weekday() >= 5 else weekday
            bucket.append(days[moment.strftime("%Y-%m-%d")])
        moment += timedelta(days=1)
    ratio = statistics.mean(weekend) / statistics.mean(weekday)
    assert 1.3 <= ratio <= 1.5, ratio
    assert sum(days.values()) == len(large.collections["orders"])


def test_carts(large: Dataset) -> None:
    carts = large.collections["carts"]
    active_since = REFERENCE_TIME - timedelta(days=7)  # Payload's computed cart status
    abandoned = [c for c in carts if c["purchasedAt"] is None and ts(c["createdAt"]) < active_since]
    active = [c for c in carts if c["purchasedAt"] is None and ts(c["createdAt"]) >= active_since]
    purchased = [c for c in carts if c["purchasedAt"] is not None]
    assert abs(len(abandoned) / len(carts) - 0.28) <= 0.005
    assert active and all(ts(c["updatedAt"]) >= active_since for c in active)
    assert abs(sum(c["customer"] is None for c in carts) / len(carts) - 0.30) <= 0.005
    # a purchased cart is its order's cart: same buyer, lines and total, bought when ordered
    orders = by_id(large, "orders")
    order_of_cart = {
        t["cart"]: orders[t["order"]]
        for t in large.collections["transactions"]
        if t["cart"] is not None and t["order"] is not None
    }
    assert set(order_of_cart) == {c["id"] for c in purchased}
    for cart in purchased:
        order = order_of_cart[cart["id"]]
        assert cart["customer"] == order["customer"]
        assert cart["subtotal"] == order["amount"]
        assert cart["purchasedAt"] == cart["updatedAt"] == order["createdAt"]
        strip = [(i["product"], i["variant"], i["quantity"]) for i in cart["items"]]
        assert strip == [(i["product"], i["variant"], i["quantity"]) for i in order["items"]]


def test_order_and_payment_statuses(large: Dataset) -> None:
    orders = large.collections["orders"]
    statuses = Counter(o["status"] for o in orders)
    share = {name: count / len(orders) for name, count in statuses.items()}
    assert 0.80 <= share["completed"] <= 0.93
    assert 0.03 <= share["refunded"] <= 0.07
    assert 0.02 <= share["cancelled"] <= 0.06
    assert 0.01 <= share["processing"] <= 0.06
    transactions = by_id(large, "transactions")
    payments = Counter(t["status"] for t in transactions.values())
    assert set(payments) == {"succeeded", "pending", "failed", "refunded"}
    assert (
        0.02 <= sum(t["order"] is None for t in transactions.values()) / len(transactions) <= 0.06
    )
    retried = 0
    for order in orders:
        linked = [transactions[i] for i in order["transactions"]]
        final = linked[-1]["status"]
        retried += len(linked) > 1
        assert all(t["status"] == "failed" for t in linked[:-1])
        expected = {
            "completed": {"succeeded"},
            "processing": {"succeeded", "pending"},
            "refunded": {"refunded"},
            "cancelled": {"refunded", "failed"},
        }[order["status"]]
        assert final in expected, order
        if order["status"] in ("refunded", "cancelled"):
            assert linked[-1]["updatedAt"] == order["updatedAt"]
    assert 0.03 <= retried / len(orders) <= 0.09
    methods = Counter(t["paymentMethod"] for t in transactions.values())
    assert set(methods) == {"card", "paypal", "bankTransfer"}


def test_drafts_and_trash(large: Dataset) -> None:
    products = large.collections["products"]
    drafts = [p for p in products if p["_status"] == "draft"]
    trashed = [p for p in products if p["deletedAt"] is not None]
    assert 1 <= len(drafts) <= 0.05 * len(products)
    assert 1 <= len(trashed) <= 0.05 * len(products)
    assert all(p["deletedAt"] == p["updatedAt"] for p in trashed)  # Payload sets both at once
    variants = large.collections["variants"]
    assert any(v["deletedAt"] is not None for v in variants)
    assert any(v["_status"] == "draft" for v in variants)
    assert all(t["deletedAt"] is None for t in large.collections["variantTypes"])


def test_order_counts_are_reconciled_when_customers_would_exceed_them() -> None:
    plan = [("vip", 15, 90_000)] * 3 + [("regular", 5, 20_000)] * 4 + [("new", 2, 5_000)] * 5
    reconciled = _Generator._reconcile(plan, 30)
    assert sum(count for _, count, _ in reconciled) == 30
    assert [segment for segment, _, _ in reconciled] == [segment for segment, _, _ in plan]
    assert all(count >= 1 for _, count, _ in reconciled)
    # fewer orders than customers: some customers end up without an order
    assert sum(count for _, count, _ in _Generator._reconcile(plan, 6)) == 6
