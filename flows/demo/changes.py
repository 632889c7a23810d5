"""Changes over time for the demo store: realistic batches of edits applied through the Store.

`apply_change_batch(store, seed, fraction)` touches about `fraction` of the store's documents the
way a live shop would between two pipeline runs: new customers, carts and orders (with their
payment transactions, priced at the catalogue's current prices), orders moving from processing to
completed or cancelled, refunds, price and inventory edits, hard deletes (abandoned carts, a few
cancelled orders with their transactions, failed payment attempts) and a few trashed products and
variants. Every write goes through `Store.create/update/trash/delete`, so `updatedAt` (and
`createdAt`/`deletedAt`) come from the store's clock and always move forward.

A batch is deterministic for (store content, seed): the random generator is seeded with the seed
and the store's clock, and candidates are always taken in id order.

`late_commit(store, collection, behind_seconds)` reproduces a late commit: a new document that
becomes visible with an `updatedAt` behind documents already served (Payload stamps
`updatedAt` before its database transaction commits; on PostgreSQL or MongoDB with concurrent
writers, a slow transaction commits after a faster, later-stamped one was read).

`add_field` and `change_field_type` are the schema-change helpers behind the demo server's admin
endpoints (a new Payload field appears; a field's type changes on some documents).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from flows.demo.generator import (
    FIELD_ORDER,
    FIRST_NAMES,
    LAST_NAMES,
    payment_details,
    pick_payment_method,
    random_address,
)
from flows.demo.store import Document, Store, format_timestamp, parse_timestamp

ChangeKind = Literal["created", "updated", "trashed", "deleted"]
KINDS: tuple[ChangeKind, ...] = ("created", "updated", "trashed", "deleted")

# Share of a batch's document budget given to each kind of change (each runs at least once when
# it has a candidate). Order matters only for readability of the resulting history.
BATCH_MIX: tuple[tuple[str, float], ...] = (
    ("new_customers", 0.05),
    ("new_orders", 0.30),
    ("new_carts", 0.06),
    ("complete_orders", 0.16),
    ("cancel_orders", 0.03),
    ("refund_orders", 0.05),
    ("price_edits", 0.06),
    ("inventory_edits", 0.14),
    ("delete_abandoned_carts", 0.06),
    ("delete_cancelled_orders", 0.03),
    ("delete_failed_transactions", 0.03),
    ("trash_products", 0.01),
    ("trash_variants", 0.02),
)
MIN_BATCH_DOCUMENTS = 12
CART_ACTIVE_DAYS = 7  # Payload: a cart not purchased and created more than 7 days ago is abandoned


@dataclass
class ChangeSummary:
    """Ids touched by a batch, per kind and collection. An id appears under one kind only: a
    document created in the batch is "created" even if it was then updated (e.g. an order's
    transaction linked to the order), a deleted one only "deleted"."""

    created: dict[str, list[int]] = field(default_factory=dict)
    updated: dict[str, list[int]] = field(default_factory=dict)
    trashed: dict[str, list[int]] = field(default_factory=dict)
    deleted: dict[str, list[int]] = field(default_factory=dict)
    started_at: str = ""  # store clock before / after the batch (Payload timestamps)
    finished_at: str = ""

    def ids(self, kind: ChangeKind, collection: str) -> list[int]:
        return list(getattr(self, kind).get(collection, []))

    def record(self, kind: ChangeKind, collection: str, doc_id: int) -> None:
        if kind == "updated" and any(
            doc_id in getattr(self, other).get(collection, ())
            for other in ("created", "trashed", "deleted")
        ):
            return
        if kind in ("trashed", "deleted"):
            self._discard("updated", collection, doc_id)
        if kind == "deleted":
            if doc_id in self.created.get(collection, ()):
                self._discard("created", collection, doc_id)  # came and went within the batch
                return
            self._discard("trashed", collection, doc_id)
        entries = getattr(self, kind).setdefault(collection, [])
        if doc_id not in entries:
            entries.append(doc_id)

    def _discard(self, kind: ChangeKind, collection: str, doc_id: int) -> None:
        entries = getattr(self, kind).get(collection)
        if entries and doc_id in entries:
            entries.remove(doc_id)

    @property
    def total(self) -> int:
        """Number of documents touched (each counted once)."""
        return sum(len(ids) for kind in KINDS for ids in getattr(self, kind).values())

    def counts(self) -> dict[str, dict[str, int]]:
        return {
            kind: {name: len(ids) for name, ids in getattr(self, kind).items() if ids}
            for kind in KINDS
        }

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (for the demo server's admin endpoint)."""
        return {
            **{
                kind: {n: list(ids) for n, ids in getattr(self, kind).items() if ids}
                for kind in KINDS
            },
            "total": self.total,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
        }


class _Batch:
    """One change batch: the store, its random generator and the summary being filled."""

    def __init__(self, store: Store, rng: random.Random, budget: int) -> None:
        self.store = store
        self.rng = rng
        self.max_pause_ms = max(1, min(90_000, 3_600_000 // budget))
        self.summary = ChangeSummary(started_at=format_timestamp(store.now))
        self._variants_by_product: dict[int, list[int]] | None = None
        self._emails: set[str] | None = None
        # candidate ids per purpose, computed once per batch (one scan of a collection each):
        # scanning 200k orders for every single change would make big batches quadratic
        self._candidates: dict[str, list[int]] = {}

    # --- helpers --------------------------------------------------------------------------
    def pause(self) -> None:
        """Time passes between two shop events, so a batch spans up to about an hour of store
        activity whatever its size."""
        self.store.tick(timedelta(milliseconds=self.rng.randint(1, self.max_pause_ms)))

    def candidates(
        self, purpose: str, collection: str, predicate: Callable[[Document], bool]
    ) -> list[int]:
        """Ids (in id order) of `collection` matching `predicate` when first asked in this batch;
        callers remove the ids they use."""
        if purpose not in self._candidates:
            self._candidates[purpose] = sorted(
                doc_id
                for doc_id, doc in self.store.collections[collection].items()
                if self.store.is_id(doc_id) and _matches(predicate, doc)
            )
        return self._candidates[purpose]

    def take(self, ids: list[int], head: int | None = None, tail: int | None = None) -> int:
        """Remove and return a random id among the first `head` / last `tail` (default: any)."""
        if tail is not None:
            return ids.pop(len(ids) - 1 - self.rng.randrange(min(len(ids), tail)))
        return ids.pop(self.rng.randrange(min(len(ids), head or len(ids))))

    def item_id(self) -> str:
        # Mongo-style ObjectId like Payload's array row ids: seconds since epoch + 64 random bits.
        return f"{int(self.store.now.timestamp()):08x}{self.rng.getrandbits(64):016x}"

    def create(self, collection: str, fields: Document) -> Document:
        self.pause()
        # Payload's key order: Store.create fills createdAt/updatedAt where the keys already are
        ordered = {key: fields.get(key) for key in FIELD_ORDER[collection] if key != "id"}
        doc = self.store.create(collection, ordered)
        self.summary.record("created", collection, doc["id"])
        return doc

    def update(self, collection: str, doc_id: int, changes: Document) -> Document:
        doc = self.store.update(collection, doc_id, changes)
        self.summary.record("updated", collection, doc_id)
        return doc

    def variants_by_product(self) -> dict[Any, list[Any]]:
        if self._variants_by_product is None:
            index: dict[Any, list[Any]] = {}
            variants = self.store.collections["variants"]
            for doc_id in sorted(i for i in variants if self.store.is_id(i)):
                product = variants[doc_id].get("product")
                if self.store.is_id(product):
                    index.setdefault(product, []).append(doc_id)
            self._variants_by_product = index
        return self._variants_by_product

    @staticmethod
    def on_sale(doc: Document | None) -> bool:
        """Published, not trashed, with a usable price (a schema-change scenario may have
        turned some prices into strings)."""
        return (
            doc is not None
            and doc.get("deletedAt") is None
            and doc.get("_status") == "published"
            and type(doc.get("priceInUSD")) is int
        )

    def pick_line(self) -> tuple[int, int | None, int] | None:
        """A (product, variant, unit price) on sale now. Products are drawn from the lines of
        existing orders, which keeps the catalogue's popularity (Pareto) in new orders."""
        orders = self.store.collections["orders"]
        order_ids = self.candidates("orders", "orders", lambda d: True)
        products = self.store.collections["products"]
        for _ in range(30):
            if order_ids:
                sample = orders.get(self.rng.choice(order_ids))  # None if deleted meanwhile
                items = sample.get("items") if sample is not None else None
                item = self.rng.choice(items) if isinstance(items, list) and items else None
                product_id = item.get("product") if isinstance(item, dict) else None
            else:
                product_id = self.rng.choice(list(products)) if products else None
            product = products.get(product_id) if self.store.is_id(product_id) else None
            if not self.on_sale(product):
                continue
            assert product is not None
            if not product.get("enableVariants"):
                return product["id"], None, product["priceInUSD"]
            variants = self.store.collections["variants"]
            live = [
                variants[variant_id]
                for variant_id in self.variants_by_product().get(product["id"], [])
                if variant_id in variants and self.on_sale(variants[variant_id])
            ]
            if live:
                variant = self.rng.choice(live)
                return product["id"], variant["id"], variant["priceInUSD"]
        return None

    def basket(self) -> tuple[list[Document], int]:
        """Order / cart items and their total at current prices."""
        lines: dict[tuple[int, int | None], list[int]] = {}
        for _ in range(self.rng.choices((1, 2, 3), weights=(60, 30, 10))[0]):
            picked = self.pick_line()
            if picked is None:
                continue
            product_id, variant_id, price = picked
            quantity = self.rng.choices((1, 2, 3), weights=(75, 20, 5))[0]
            if (product_id, variant_id) in lines:
                lines[(product_id, variant_id)][0] += quantity
            else:
                lines[(product_id, variant_id)] = [quantity, price]
        items = [
            {"id": self.item_id(), "product": p, "variant": v, "quantity": q}
            for (p, v), (q, _) in lines.items()
        ]
        return items, sum(q * price for q, price in lines.values())

    def fresh_items(self, items: list[Document]) -> list[Document]:
        return [{**item, "id": self.item_id()} for item in items]

    def unique_email(self, first: str, last: str) -> str:
        if self._emails is None:
            self._emails = {str(doc.get("email")) for doc in self.store.iter_docs("users")}
        local = f"{first}.{last}".lower()
        email, number = f"{local}@example.com", 1
        while email in self._emails:
            number += 1
            email = f"{local}{number}@example.com"
        self._emails.add(email)
        return email

    def buyer(self) -> tuple[int | None, str, Document]:
        """(customer id or None for a guest, email, address) of the next order's buyer."""
        rng = self.rng
        if rng.random() < 0.65:
            customers = self.candidates(
                "customers", "users", lambda d: "customer" in d.get("roles", ())
            )
            if customers:
                user = self.store.collections["users"][rng.choice(customers)]
                first, _, last = str(user.get("name") or "Pat Doe").partition(" ")
                email = str(user.get("email") or self.unique_email(first, last or "Doe"))
                return user["id"], email, random_address(rng, first, last or "Doe")
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        return None, self.unique_email(first, last), random_address(rng, first, last)

    # --- kinds of change ---------------------------------------------------------------------
    def new_customers(self) -> int:
        first, last = self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)
        self.create(
            "users",
            {
                "name": f"{first} {last}",
                "roles": ["customer"],
                "email": self.unique_email(first, last),
                "collection": "users",
                "sessions": [],
            },
        )
        return 1

    def new_orders(self) -> int:
        """Checkout: (cart) -> payment transaction -> order -> transaction linked to the order."""
        items, amount = self.basket()
        if not items:
            return 0
        customer, email, address = self.buyer()
        cart = None
        if self.rng.random() < 0.6:
            cart = self.create(
                "carts",
                {"items": items, "customer": customer, "purchasedAt": None, "subtotal": amount,
                 "currency": "USD"},
            )  # fmt: skip
        method = pick_payment_method(self.rng)
        card, paypal, bank = payment_details(self.rng, method)
        transaction = self.create(
            "transactions",
            {"items": self.fresh_items(items), "paymentMethod": method, "card": card,
             "paypal": paypal, "bankTransfer": bank, "billingAddress": address,
             "status": "pending" if method == "bankTransfer" else "succeeded",
             "customer": customer, "customerEmail": email, "order": None,
             "cart": cart["id"] if cart else None, "amount": amount, "currency": "USD"},
        )  # fmt: skip
        order = self.create(
            "orders",
            {"items": self.fresh_items(items), "shippingAddress": address, "customer": customer,
             "customerEmail": email, "transactions": [transaction["id"]],
             "status": "processing", "amount": amount, "currency": "USD"},
        )  # fmt: skip
        self.update("transactions", transaction["id"], {"order": order["id"]})
        if cart is not None:
            self.update("carts", cart["id"], {"purchasedAt": format_timestamp(self.store.now)})
        return 3 if cart is not None else 2

    def new_carts(self) -> int:
        items, subtotal = self.basket()
        if not items:
            return 0
        customer, _, _ = self.buyer()
        self.create(
            "carts",
            {"items": items, "customer": customer, "purchasedAt": None, "subtotal": subtotal,
             "currency": "USD"},
        )  # fmt: skip
        return 1

    def _move_order(
        self, from_status: str, to_status: str, payment: dict[str, str], *, oldest: bool
    ) -> int:
        """Move one order and its transactions (`payment`: old transaction status -> new).
        `oldest`: pick among the oldest quarter (a fulfilment queue), else the newest quarter
        (refunds concern recent purchases)."""
        candidates = self.candidates(
            f"orders:{from_status}", "orders", lambda d: d.get("status") == from_status
        )
        if not candidates:
            return 0
        quarter = max(1, len(candidates) // 4)
        order_id = (
            self.take(candidates, head=quarter) if oldest else self.take(candidates, tail=quarter)
        )
        self.pause()
        order = self.update("orders", order_id, {"status": to_status})
        touched = 1
        for transaction_id in _ids(self.store, order.get("transactions")):
            transaction = self.store.get("transactions", transaction_id)
            if transaction is not None and transaction.get("status") in payment:
                self.update(
                    "transactions", transaction_id, {"status": payment[transaction["status"]]}
                )
                touched += 1
        return touched

    def complete_orders(self) -> int:
        return self._move_order("processing", "completed", {"pending": "succeeded"}, oldest=True)

    def cancel_orders(self) -> int:
        return self._move_order(
            "processing", "cancelled", {"succeeded": "refunded", "pending": "failed"}, oldest=False
        )

    def refund_orders(self) -> int:
        return self._move_order("completed", "refunded", {"succeeded": "refunded"}, oldest=False)

    def price_edits(self) -> int:
        """A price change on a product (or one of its variants). Existing orders keep the amount
        they were charged: a line's price is the price at order time."""
        rng = self.rng
        products = self.candidates("products:on-sale", "products", self.on_sale)
        if not products:
            return 0
        product = self.store.collections["products"][self.take(products)]
        collection, doc = "products", product
        variants = self.store.collections["variants"]
        live = [
            variants[i]
            for i in self.variants_by_product().get(product["id"], [])
            if i in variants and self.on_sale(variants[i])
        ]
        if product.get("enableVariants") and live:
            collection, doc = "variants", rng.choice(live)
        dollars = max(5, round(doc["priceInUSD"] * rng.uniform(0.85, 1.15) / 100))
        self.pause()
        self.update(collection, doc["id"], {"priceInUSD": dollars * 100 - 1})
        return 1

    def inventory_edits(self) -> int:
        rng = self.rng
        if rng.random() < 0.5:
            candidates = self.candidates("variants:stock", "variants", self.on_sale)
            collection = "variants"
        else:
            candidates = self.candidates(
                "products:stock",
                "products",
                lambda d: self.on_sale(d) and not d.get("enableVariants"),
            )
            collection = "products"
        if not candidates:
            return 0
        doc = self.store.collections[collection][self.take(candidates)]
        current = doc.get("inventory") if type(doc.get("inventory")) is int else 0
        assert isinstance(current, int)
        # a restock or a few units sold
        new = (
            current + rng.randint(10, 100)
            if rng.random() < 0.4
            else max(0, current - rng.randint(1, 5))
        )
        self.pause()
        self.update(collection, doc["id"], {"inventory": new})
        return 1

    def delete_abandoned_carts(self) -> int:
        cutoff = self.store.now - timedelta(days=CART_ACTIVE_DAYS)
        candidates = self.candidates(
            "carts:abandoned",
            "carts",
            lambda d: d.get("purchasedAt") is None and parse_timestamp(d["createdAt"]) < cutoff,
        )
        if not candidates:
            return 0
        self._delete("carts", candidates.pop(0))  # the oldest first, as a cleanup job does
        return 1

    def delete_cancelled_orders(self) -> int:
        fresh = set(self.summary.created.get("orders", ()))  # deleting those would be invisible
        candidates = self.candidates(
            "orders:cancelled",
            "orders",
            lambda d: d.get("status") == "cancelled" and d["id"] not in fresh,
        )
        if not candidates:
            return 0
        order = self.store.collections["orders"][self.take(candidates)]
        touched = 0
        for transaction_id in _ids(self.store, order.get("transactions")):
            if self.store.get("transactions", transaction_id) is not None:
                self._delete("transactions", transaction_id)
                touched += 1
        self._delete("orders", order["id"])
        return touched + 1

    def delete_failed_transactions(self) -> int:
        candidates = self.candidates(
            "transactions:failed-orphans",
            "transactions",
            lambda d: d.get("order") is None and d.get("status") == "failed",
        )
        if not candidates:
            return 0
        self._delete("transactions", self.take(candidates))
        return 1

    def _delete(self, collection: str, doc_id: int) -> None:
        self.pause()
        self.store.delete(collection, doc_id)
        self.summary.record("deleted", collection, doc_id)

    def _trash(self, collection: str) -> int:
        candidates = self.candidates(f"{collection}:trash", collection, self.on_sale)
        if not candidates:
            return 0
        doc_id = self.take(candidates)
        self.pause()
        self.store.trash(collection, doc_id)
        self.summary.record("trashed", collection, doc_id)
        return 1

    def trash_products(self) -> int:
        return self._trash("products")

    def trash_variants(self) -> int:
        return self._trash("variants")


def apply_change_batch(store: Store, seed: int, fraction: float = 0.01) -> ChangeSummary:
    """Apply a realistic batch touching about `fraction` of the store's documents (at least
    MIN_BATCH_DOCUMENTS, so every kind of change shows up). Holds the store's lock for the whole
    batch, so a reader sees all of it or none of it."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    with store.lock:
        rng = random.Random(f"change-batch:{seed}:{format_timestamp(store.now)}")
        # the batch happens a little after the previous state
        store.tick(timedelta(minutes=rng.randint(5, 60)))
        total_docs = sum(store.count(name) for name in store.names())
        budget = max(MIN_BATCH_DOCUMENTS, round(fraction * total_docs))
        batch = _Batch(store, rng, budget)
        for kind, share in BATCH_MIX:
            step: Callable[[], int] = getattr(batch, kind)
            target, done = max(1, round(budget * share)), 0
            while done < target:
                touched = step()
                if touched == 0:  # no candidate left for this kind
                    break
                done += touched
        batch.summary.finished_at = format_timestamp(store.now)
        return batch.summary


def late_commit(store: Store, collection: str, behind_seconds: float) -> Document:
    """A new document (a copy of the collection's newest, with fresh array row ids) stamped
    `behind_seconds` before the newest `updatedAt` already visible; returns it."""
    _check_collection(store, collection)
    if behind_seconds <= 0:
        raise ValueError(f"behind_seconds must be > 0, got {behind_seconds}")
    with store.lock:
        docs = list(store.collections[collection].values())
        if not docs:
            raise ValueError(f"{collection} has no document to commit late after")
        newest = max(docs, key=lambda doc: parse_timestamp(doc["updatedAt"]))
        stamp = parse_timestamp(newest["updatedAt"]) - timedelta(seconds=behind_seconds)
        fields = copy.deepcopy(
            {k: v for k, v in newest.items() if k not in ("id", "createdAt", "updatedAt")}
        )
        for value in fields.values():
            for row in value if isinstance(value, list) else []:
                if isinstance(row, dict) and isinstance(row.get("id"), str):
                    row["id"] = f"{random.getrandbits(96):024x}"  # array row ids are unique
        return store.create(collection, fields, at=format_timestamp(stamp))


def add_field(
    store: Store, collection: str, field_name: str, value_fn: Callable[[Document], Any]
) -> list[int]:
    """Schema change: a new Payload field appears on every document of `collection` (trashed ones
    included), valued `value_fn(document)`; each document's `updatedAt` is bumped, as when a
    migration back-fills a new field. Returns the ids updated, in id order."""
    _check_collection(store, collection)
    with store.lock:
        ids = _in_id_order(store.collections[collection])
        for doc_id in ids:
            store.update(
                collection, doc_id, {field_name: value_fn(store.collections[collection][doc_id])}
            )
        return ids


def change_field_type(
    store: Store,
    collection: str,
    field_name: str,
    *,
    every: int = 2,
    convert: Callable[[Any], Any] = str,
) -> list[int]:
    """Schema change: `field_name` changes type on some documents — every `every`-th document (in
    id order) holding a non-null value gets `convert(value)` (by default an integer becomes a
    string: 1999 -> "1999"), bumping `updatedAt`. Returns the ids changed."""
    _check_collection(store, collection)
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    changed: list[int] = []
    with store.lock:
        holders = [
            doc_id
            for doc_id in _in_id_order(store.collections[collection])
            if store.collections[collection][doc_id].get(field_name) is not None
        ]
        for doc_id in holders[::every]:
            value = store.collections[collection][doc_id][field_name]
            store.update(collection, doc_id, {field_name: convert(value)})
            changed.append(doc_id)
    return changed


def _matches(predicate: Callable[[Document], bool], doc: Document) -> bool:
    """`predicate(doc)`, False for a document too malformed to judge (the demo server can
    inject malformed documents on purpose; a change batch must step around them)."""
    try:
        return bool(predicate(doc))
    except (KeyError, TypeError, ValueError, AttributeError):
        return False


def _ids(store: Store, value: Any) -> list[Any]:
    """The ids of a relationship list (hasMany), ignoring anything malformed."""
    return [i for i in value if store.is_id(i)] if isinstance(value, list) else []


def _in_id_order(ids: Any) -> list[Any]:
    """Integer ids ascending, then any injected non-integer ids by their text."""
    return sorted(ids, key=lambda i: (0, i, "") if isinstance(i, int) else (1, 0, str(i)))


def _check_collection(store: Store, collection: str) -> None:
    if collection not in store.collections:
        raise ValueError(f"unknown collection {collection!r}: expected one of {store.names()}")
