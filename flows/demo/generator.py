"""Deterministic, realistic data for the demo Payload ecommerce store.

`generate(preset, scale, seed)` returns every document of the nine collections exactly as Payload
3 returns them at `depth=0` (see the captured responses in `tests/fixtures/payload-api/`). The
same seed always gives the same data: one `random.Random(seed)` drives everything, every
timestamp is derived from the fixed `REFERENCE_TIME` (never the wall clock) and nothing depends
on set or hash ordering.

How the history is built (details and tolerances in docs/demo-data.md):
1. Catalogue: variant types and options, categories, products (log-normal price tiers, ~35% with
   variants, a few drafts), variants (a few trashed). Each product gets a popularity weight from a
   log-normal law whose top 20% carries ~80% of the mass (Pareto 80/20).
2. Customers in three segments (VIP / Regular / New) with an order count and a target order value;
   guests (no account) fill the preset's exact order count.
3. Orders: times follow a seasonal calendar (Black Friday week x3, Dec 15-31 x2, weekends x1.4);
   baskets are drawn by popularity among products orderable at that instant, priced to the
   customer's target value. Amount = sum of quantity x unit price (variant price, else product).
   A few products that sold are then trashed after their last sale.
4. Transactions (payment attempts), carts (purchased / abandoned / active, some from guests),
   statuses (processing / completed / cancelled / refunded) and a few bulk updates that give
   several documents the same `updatedAt`, as Payload's bulk operations do.

Ids follow creation order in every collection, as Payload's auto-increment ids do.
Prices never change inside the generated history, so an order's amount also equals its lines at
the products' current prices; later change batches (flows/demo/changes.py) edit prices without
touching existing orders, as a real store does.

Nested values (addresses) may be shared between documents to save memory: treat documents as
immutable (the Store replaces a document on every change, it never edits one in place).
"""

from __future__ import annotations

import gc
import math
import random
import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from typing import Any

from flows.demo.store import Store, format_timestamp
from flows.settings import ALL_COLLECTIONS
from flows.source.ids import IdType

Document = dict[str, Any]

COLLECTIONS: tuple[str, ...] = ALL_COLLECTIONS

# Keys of each stored document, in Payload's order at depth 0 (the join fields products.variants
# and variantTypes.options and the cart's computed status are added by the server on read).
FIELD_ORDER: dict[str, tuple[str, ...]] = {
    "orders": ("id", "items", "shippingAddress", "customer", "customerEmail", "transactions",
               "status", "amount", "currency", "updatedAt", "createdAt"),
    "transactions": ("id", "items", "paymentMethod", "card", "paypal", "bankTransfer",
                     "billingAddress", "status", "customer", "customerEmail", "order", "cart",
                     "amount", "currency", "updatedAt", "createdAt"),
    "carts": ("id", "items", "customer", "purchasedAt", "subtotal", "currency", "updatedAt",
              "createdAt"),
    "products": ("id", "title", "slug", "description", "categories", "inventory",
                 "enableVariants", "variantTypes", "priceInUSDEnabled", "priceInUSD",
                 "updatedAt", "createdAt", "deletedAt", "_status"),
    "variants": ("id", "title", "product", "options", "inventory", "priceInUSDEnabled",
                 "priceInUSD", "updatedAt", "createdAt", "deletedAt", "_status"),
    "categories": ("id", "title", "slug", "updatedAt", "createdAt"),
    "users": ("id", "name", "roles", "updatedAt", "createdAt", "email", "collection", "sessions"),
    "variantTypes": ("id", "label", "name", "updatedAt", "createdAt", "deletedAt"),
    "variantOptions": ("id", "_variantOptions_options_order", "variantType", "label", "value",
                       "updatedAt", "createdAt", "deletedAt"),
}  # fmt: skip

# Fixed "now" of the generated store: every generated timestamp is in the 18 months before it.
REFERENCE_TIME = datetime(2026, 11, 1, tzinfo=UTC)
HISTORY_START = datetime(2025, 5, 1, tzinfo=UTC)  # 18 calendar months before REFERENCE_TIME


@dataclass(frozen=True)
class Preset:
    categories: int
    products: int
    customers: int  # registered customers; the admin (user id 1) comes on top
    orders: int
    carts: int


PRESETS: dict[str, Preset] = {
    "small": Preset(categories=8, products=50, customers=100, orders=500, carts=150),
    "medium": Preset(categories=15, products=200, customers=500, orders=3_000, carts=800),
    "large": Preset(categories=25, products=1_000, customers=2_000, orders=20_000, carts=5_000),
}

# --- distribution parameters (asserted by tests/demo/test_generator.py) -----------------------
# Customer segments: share of customers, orders per customer, average order value in cents.
SEGMENTS: dict[str, tuple[float, tuple[int, int], tuple[int, int]]] = {
    "vip": (0.05, (10, 20), (50_000, 200_000)),
    "regular": (0.25, (3, 8), (10_000, 50_000)),
    "new": (0.70, (1, 2), (2_000, 10_000)),
}
GUEST_AOV_CENTS = SEGMENTS["new"][2]  # guests shop like new customers
# Price tiers: (share of products, lowest dollars, highest dollars, log-normal median dollars).
PRICE_TIERS: tuple[tuple[float, int, int, float], ...] = (
    (0.70, 20, 99, 45.0),
    (0.25, 100, 499, 220.0),
    (0.05, 500, 1_999, 900.0),
)
VARIANT_PRODUCT_SHARE = 0.35
DRAFT_PRODUCT_SHARE = 0.03
TRASHED_PRODUCT_SHARE = 0.02
TRASHED_VARIANT_SHARE = 0.02
NEW_ARRIVAL_SHARE = 0.15  # products added after launch; the rest exist from the first week
# Popularity weights: log-normal quantiles whose top 20% hold this share of the total weight.
# A little above 80%: baskets priced to each customer's budget blur the concentration slightly.
POPULARITY_TOP20_WEIGHT = 0.82
ABANDONED_CART_SHARE = 0.28
ACTIVE_CART_SHARE = 0.03
GUEST_CART_SHARE = 0.30
ORDER_STATUS_SHARES = {"refunded": 0.05, "cancelled": 0.04, "stuck_processing": 0.015}
FAILED_ATTEMPT_SHARE = 0.06  # orders whose first payment attempt failed
ORPHAN_TRANSACTION_SHARE = 0.04  # payment attempts that never became an order (per order)
PAYMENT_METHODS = (("card", 0.65), ("paypal", 0.25), ("bankTransfer", 0.10))
WEEKEND_FACTOR = 1.4
BLACK_FRIDAY_WEEK = (datetime(2025, 11, 24, tzinfo=UTC), datetime(2025, 12, 1, tzinfo=UTC))
BLACK_FRIDAY_FACTOR = 3.0
HOLIDAY_PERIOD = (datetime(2025, 12, 15, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))
HOLIDAY_FACTOR = 2.0
# Payload's cart `status` is computed on read: purchased if purchasedAt, else active when created
# less than 7 days ago, else abandoned.
CART_ACTIVE_WINDOW = timedelta(days=7)

MS_PER_SECOND = 1_000
MS_PER_MINUTE = 60_000
MS_PER_HOUR = 3_600_000
MS_PER_DAY = 86_400_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
START_MS = int((HISTORY_START - _EPOCH).total_seconds()) * MS_PER_SECOND
END_MS = int((REFERENCE_TIME - _EPOCH).total_seconds()) * MS_PER_SECOND
LAUNCH_DAYS = 7  # catalogue set-up; the shop takes orders from day 7 on
OPEN_MS = START_MS + LAUNCH_DAYS * MS_PER_DAY
HISTORY_DAYS = (END_MS - START_MS) // MS_PER_DAY

# Orders per hour of day (UTC), evening peak.
_HOUR_WEIGHTS = (2, 1, 1, 1, 1, 1, 2, 3, 4, 5, 6, 6, 7, 7, 6, 6, 6, 7, 8, 9, 9, 8, 6, 4)


_DAY_PREFIXES: dict[int, str] = {}


def ms_to_timestamp(ms: int) -> str:
    """Payload's timestamp string (`store.format_timestamp`) for an instant in milliseconds since
    the epoch. The date part is cached per day: a million strftime calls would dominate
    `generate("large", 10)`; tests check it equals `format_timestamp`."""
    day, rest = divmod(ms, MS_PER_DAY)
    prefix = _DAY_PREFIXES.get(day)
    if prefix is None:
        prefix = format_timestamp(_EPOCH + timedelta(days=day))[:11]
        _DAY_PREFIXES[day] = prefix
    hours, rest = divmod(rest, MS_PER_HOUR)
    minutes, rest = divmod(rest, MS_PER_MINUTE)
    seconds, millis = divmod(rest, MS_PER_SECOND)
    return f"{prefix}{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}Z"


def timestamp_to_ms(value: str) -> int:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def day_weight(day: datetime) -> float:
    """Relative order rate of a calendar day (seasonality)."""
    weight = WEEKEND_FACTOR if day.weekday() >= 5 else 1.0
    if BLACK_FRIDAY_WEEK[0] <= day < BLACK_FRIDAY_WEEK[1]:
        weight *= BLACK_FRIDAY_FACTOR
    elif HOLIDAY_PERIOD[0] <= day < HOLIDAY_PERIOD[1]:
        weight *= HOLIDAY_FACTOR
    return weight


# --- reference lists ----------------------------------------------------------------------------
FIRST_NAMES = (
    "Aiden", "Mateo", "Freya", "Noah", "Omar", "Sebastian", "Oliver", "Emma", "Olivia", "Ava",
    "Sophia", "Isabella", "Mia", "Amelia", "Harper", "Liam", "Lucas", "Ethan", "James", "Elijah",
    "Benjamin", "Henry", "Chloe", "Zoe", "Grace", "Nora", "Leila", "Yuki", "Priya", "Arjun",
    "Sofia", "Lena", "Hana", "Kai", "Ravi", "Ines", "Diego", "Camila", "Jonas", "Marta",
)  # fmt: skip
LAST_NAMES = (
    "Garcia", "Gonzalez", "Allen", "Taylor", "Costa", "Brown", "Lopez", "Smith", "Johnson",
    "Williams", "Jones", "Miller", "Davis", "Martinez", "Wilson", "Anderson", "Thomas", "Moore",
    "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris", "Clark", "Lewis", "Walker",
    "Young", "King", "Wright", "Scott", "Green", "Baker", "Adams", "Nelson", "Hill", "Campbell",
    "Mitchell", "Roberts", "Carter", "Phillips", "Evans", "Turner", "Torres", "Parker", "Collins",
)  # fmt: skip
EMAIL_DOMAINS = ("example.com", "example.com", "example.net", "mail.example.com", "example.org")
CITIES = (
    ("Salt Lake City", "UT", "84101", "US"), ("Boston", "MA", "02110", "US"),
    ("Chicago", "IL", "60607", "US"), ("Atlanta", "GA", "30303", "US"),
    ("Denver", "CO", "80202", "US"), ("Portland", "OR", "97205", "US"),
    ("Austin", "TX", "78701", "US"), ("Seattle", "WA", "98101", "US"),
    ("New York", "NY", "10001", "US"), ("San Francisco", "CA", "94103", "US"),
    ("Miami", "FL", "33130", "US"), ("Minneapolis", "MN", "55401", "US"),
    ("Phoenix", "AZ", "85004", "US"), ("Nashville", "TN", "37203", "US"),
    ("London", None, "EC1V 9HX", "GB"), ("Toronto", "ON", "M5V 2T6", "CA"),
    ("Berlin", None, "10115", "DE"), ("Sydney", "NSW", "2000", "AU"),
)  # fmt: skip
STREETS = ("Pine", "Hill", "River", "Grove", "Highland", "Oak", "Maple", "Cedar", "Lake", "Park")
STREET_KINDS = ("Ave", "Rd", "Ln", "St", "Dr", "Way", "Blvd")
COMPANIES = ("Acme Corp", "Globex", "Initech", "Umbrella Studio", "Northwind")

# category title | product nouns | variant types that make sense for it ("-": none)
_CATEGORY_TABLE = """
Men's Apparel | Overshirt, Chino, Crew Tee, Hoodie, Polo | size color
Women's Apparel | Wrap Dress, Blouse, Cardigan, Jumpsuit, Skirt | size color
Footwear | High-Top, Chelsea Boot, Sneaker, Slide Sandal, Loafer | size color
Accessories | Baseball Cap, Scarf, Belt, Wallet, Beanie | color material
Bags | Backpack, Tote, Duffel, Crossbody Bag, Weekender | color material
Home & Living | Throw Blanket, Table Lamp, Ceramic Vase, Cushion, Rug | color
Kitchen | Chef Knife, Dutch Oven, Pour-Over Set, Cutting Board, Mug Set | color
Electronics | Headphones, Speaker, Smartwatch, E-Reader, Power Bank | color
Outdoor | Tent, Sleeping Bag, Trail Jacket, Hiking Pack, Camp Stove | size color
Sports & Fitness | Yoga Mat, Dumbbell Set, Running Short, Jump Rope, Foam Roller | size color
Beauty | Face Serum, Hand Cream, Lip Balm Set, Body Oil, Hair Mask | -
Jewelry | Pendant, Hoop Earrings, Signet Ring, Bracelet, Chain Necklace | material
Watches | Field Watch, Dive Watch, Chronograph, Dress Watch, Watch Strap | material color
Toys & Games | Puzzle, Board Game, Building Set, Plush Bear, Card Game | -
Books & Stationery | Notebook, Planner, Fountain Pen, Sketchbook, Desk Pad | color
Kids | Raincoat, Pajama Set, Sneaker, Backpack, Beanie | size color
Furniture | Side Table, Lounge Chair, Bookshelf, Stool, Desk | material
Lighting | Floor Lamp, Pendant Light, Desk Lamp, String Lights, Wall Sconce | color
Pet Supplies | Dog Bed, Leash, Cat Tower, Pet Bowl, Chew Toy | size color
Garden | Planter, Pruning Shears, Watering Can, Garden Gloves, Seed Kit | size
Travel | Carry-On, Packing Cubes, Neck Pillow, Toiletry Bag, Passport Case | color
Eyewear | Sunglasses, Reading Glasses, Blue-Light Glasses, Glasses Case, Frames | color
Swimwear | Swim Short, One-Piece, Bikini Set, Rash Guard, Beach Towel | size color
Sale | Bundle, Gift Set, Sampler, Multipack, Starter Kit | -
New Arrivals | Limited Edition, Collab Piece, Capsule Item, Drop, Preview | color
"""
CATEGORY_BASE: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = tuple(
    (title, tuple(nouns.split(", ")), tuple(types.replace("-", "").split()))
    for title, nouns, types in (
        (part.strip() for part in row.split("|")) for row in _CATEGORY_TABLE.strip().splitlines()
    )
)
ADJECTIVES = (
    "Alpine", "Classic", "Compact", "Rugged", "Premium", "Studio", "Urban", "Coastal", "Heritage",
    "Everyday", "Summit", "Nordic", "Vintage", "Modern", "Essential", "Signature", "Lightweight",
    "Field", "Harbor", "Metro",
)  # fmt: skip
MATERIAL_WORDS = (
    "Leather", "Knit", "Suede", "Recycled", "Brushed", "Canvas", "Linen", "Wool", "Cotton", "Oak",
    "Ceramic", "Steel", "Bamboo", "Nylon", "Cashmere",
)  # fmt: skip
TAGLINES = (
    "A customer favourite.", "Limited run.", "Designed in-house.", "Built to last.",
    "Ethically made.", "Back by popular demand.",
)  # fmt: skip
# variant type name -> (label, [(option label, price premium in cents)])
VARIANT_TYPES: tuple[tuple[str, str, tuple[tuple[str, int], ...]], ...] = (
    ("size", "Size", (("XS", 0), ("S", 0), ("M", 0), ("L", 0), ("XL", 500), ("XXL", 1000))),
    (
        "color",
        "Color",
        (
            ("Black", 0),
            ("White", 0),
            ("Navy", 0),
            ("Heather Grey", 0),
            ("Red", 0),
            ("Olive", 0),
            ("Sand", 0),
        ),
    ),
    ("material", "Material", (("Cotton", 0), ("Wool", 1500), ("Leather", 3000), ("Linen", 1000))),
)
CARD_BRANDS = ("visa", "visa", "mastercard", "mastercard", "amex", "discover")
_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_UPPER_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_BYTE_TABLES: dict[str, bytes] = {}


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower().replace("&", "and")).strip("-")


# --- result ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Dataset:
    """Every generated document, by collection, plus what tests need to check the generator."""

    collections: dict[str, list[Document]]
    reference_time: datetime
    preset: str
    scale: int
    seed: int
    # user id -> "vip" / "regular" / "new" (the admin is not listed)
    customer_segments: dict[Any, str] = field(default_factory=dict)
    id_type: IdType = IdType.INT

    def count(self) -> int:
        return sum(len(docs) for docs in self.collections.values())

    def store(self) -> Store:
        """A fresh Store over these documents (change batches replace documents in the Store's
        own dicts, never the dataset's objects, so two stores never see each other's changes)."""
        return Store(self.collections, self.reference_time, self.id_type, self.seed)


# --- internal records (slotted: the large x10 preset holds ~500k documents) -----------------
@dataclass(slots=True, eq=False)
class _Variant:
    product: _Product
    title: str
    options: list[int]
    price: int
    inventory: int
    created: int
    updated: int
    published: bool
    deleted: int | None = None
    id: int = 0


@dataclass(slots=True, eq=False)
class _Product:
    index: int
    title: str = ""
    slug: str = ""
    description: str = ""
    categories: list[int] = field(default_factory=list)
    price: int = 0
    weight: float = 0.0
    published: bool = True
    created: int = 0
    updated: int = 0
    deleted: int | None = None
    enable_variants: bool = False
    variant_types: list[str] = field(default_factory=list)
    inventory: int = 0
    variants: list[_Variant] = field(default_factory=list)
    id: int = 0


@dataclass(slots=True, eq=False)
class _Person:
    """A buyer: a registered customer (a user, once ids are given) or a guest (no account)."""

    name: str
    email: str
    segment: str  # vip / regular / new / guest
    created: int
    updated: int
    address: Document | None
    id: int | None = None


@dataclass(slots=True, eq=False)
class _Cart:
    person: _Person
    lines: list[Line]
    subtotal: int
    created: int
    updated: int
    purchased: int | None
    id: int = 0


@dataclass(slots=True, eq=False)
class _Order:
    person: _Person
    created: int
    lines: list[Line]
    amount: int
    method: str
    status: str = "processing"
    updated: int = 0
    transactions: list[_Transaction] = field(default_factory=list)
    cart: _Cart | None = None
    id: int = 0


@dataclass(slots=True, eq=False)
class _Transaction:
    person: _Person
    lines: list[Line]
    amount: int
    method: str
    created: int = 0
    updated: int = 0
    status: str = "succeeded"
    order: _Order | None = None
    cart: _Cart | None = None
    id: int = 0


Line = tuple[_Product, _Variant | None, int]


class _Generator:
    def __init__(self, preset: str, scale: int, seed: int) -> None:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}: expected one of {sorted(PRESETS)}")
        if scale < 1:
            raise ValueError(f"scale must be a positive integer, got {scale}")
        base = PRESETS[preset]
        self.volumes = Preset(
            categories=base.categories * scale,
            products=base.products * scale,
            customers=base.customers * scale,
            orders=base.orders * scale,
            carts=base.carts * scale,
        )
        self.rng = random.Random(seed)
        self.item_salt = self.rng.getrandbits(40)
        self.item_counter = 0
        self.emails: dict[tuple[str, str], int] = {}
        self._build_calendar()

    # --- time -----------------------------------------------------------------------------
    def _build_calendar(self) -> None:
        weights = []
        for day in range(HISTORY_DAYS):
            moment = HISTORY_START + timedelta(days=day)
            weights.append(0.0 if day < LAUNCH_DAYS else day_weight(moment))
        self.day_cum = list(accumulate(weights))
        self.hour_cum = list(accumulate(_HOUR_WEIGHTS))

    def order_time(self, after_ms: int | None = None, before_ms: int = END_MS) -> int:
        """An instant drawn from the seasonal calendar, strictly after `after_ms` if given."""
        rnd = self.rng.random
        total = self.day_cum[min((before_ms - START_MS) // MS_PER_DAY, HISTORY_DAYS) - 1]
        low = 0.0
        if after_ms is not None:
            after_day = (after_ms - START_MS) // MS_PER_DAY
            if after_day >= HISTORY_DAYS - 1 or self.day_cum[after_day] >= total:
                # no whole day left: somewhere in what remains
                return min(after_ms + 1 + int(rnd() * MS_PER_HOUR), before_ms - 1)
            low = self.day_cum[after_day]
        day = bisect_right(self.day_cum, low + rnd() * (total - low))
        hour = bisect_right(self.hour_cum, rnd() * self.hour_cum[-1])
        moment = START_MS + day * MS_PER_DAY + hour * MS_PER_HOUR + int(rnd() * MS_PER_HOUR)
        if after_ms is not None and moment <= after_ms:
            moment = after_ms + 1 + int(rnd() * MS_PER_HOUR)
        return min(moment, before_ms - 1)

    def uniform_time(self, low_ms: int, high_ms: int) -> int:
        return low_ms + int(self.rng.random() * max(1, high_ms - low_ms))

    # --- small value helpers ----------------------------------------------------------------
    def item_id(self, created_ms: int) -> str:
        # Mongo-style ObjectId, like Payload's array row ids: seconds, a random salt, a counter.
        self.item_counter += 1
        return (
            f"{(created_ms // MS_PER_SECOND) & 0xFFFFFFFF:08x}"
            f"{self.item_salt:010x}{self.item_counter & 0xFFFFFF:06x}"
        )

    def new_person(self, created_ms: int, segment: str) -> _Person:
        rng = self.rng
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        domain = rng.choice(EMAIL_DOMAINS)
        local = f"{first}.{last}".lower()
        # first.last@domain, then first.last2@domain, ... (a counter per address keeps it O(1))
        seen = self.emails.get((local, domain), 0)
        self.emails[(local, domain)] = seen + 1
        email = f"{local}{seen + 1 if seen else ''}@{domain}"
        address = random_address(rng, first, last)
        return _Person(f"{first} {last}", email, segment, created_ms, created_ms, address)

    # --- catalogue --------------------------------------------------------------------------
    def build_catalogue(self) -> None:
        rng = self.rng
        # variant types and options: created in the first hours of the shop
        self.variant_type_docs: list[Document] = []
        self.option_docs: list[Document] = []
        self.options_by_type: dict[str, list[tuple[int, str, int]]] = {}
        moment = START_MS + MS_PER_HOUR
        for type_id, (name, label, options) in enumerate(VARIANT_TYPES, start=1):
            stamp = ms_to_timestamp(moment)
            self.variant_type_docs.append(
                {"id": type_id, "label": label, "name": name, "updatedAt": stamp,
                 "createdAt": stamp, "deletedAt": None}
            )  # fmt: skip
            moment += MS_PER_HOUR
            entries = []
            for position, (option_label, premium) in enumerate(options):
                option_id = len(self.option_docs) + 1
                stamp = ms_to_timestamp(moment)
                self.option_docs.append(
                    {"id": option_id, "_variantOptions_options_order": f"a{position}",
                     "variantType": type_id, "label": option_label,
                     "value": slugify(option_label), "updatedAt": stamp, "createdAt": stamp,
                     "deletedAt": None}
                )  # fmt: skip
                entries.append((option_id, option_label, premium))
                moment += MS_PER_MINUTE
            self.options_by_type[name] = entries
        self.type_ids = {name: i for i, (name, _, _) in enumerate(VARIANT_TYPES, start=1)}

        # categories
        self.category_docs: list[Document] = []
        self.category_kinds: list[int] = []  # index into CATEGORY_BASE
        moment = START_MS + 6 * MS_PER_HOUR
        for index in range(self.volumes.categories):
            kind = index % len(CATEGORY_BASE)
            round_ = index // len(CATEGORY_BASE)
            title = CATEGORY_BASE[kind][0] + (f" Collection {round_ + 1}" if round_ else "")
            stamp = ms_to_timestamp(moment)
            self.category_docs.append(
                {"id": index + 1, "title": title, "slug": slugify(title), "updatedAt": stamp,
                 "createdAt": stamp}
            )  # fmt: skip
            self.category_kinds.append(kind)
            moment += rng.randint(5, 40) * MS_PER_MINUTE

        self._build_products()

    def _build_products(self) -> None:
        rng = self.rng
        n = self.volumes.products
        # exact tier counts, shuffled: the shares hold at every volume
        tiers: list[int] = []
        for tier, (share, _, _, _) in enumerate(PRICE_TIERS[1:], start=1):
            tiers += [tier] * round(share * n)
        tiers = [0] * (n - len(tiers)) + tiers
        rng.shuffle(tiers)
        weights = popularity_weights(n)
        rng.shuffle(weights)
        with_variants = set(rng.sample(range(n), round(VARIANT_PRODUCT_SHARE * n)))
        new_arrivals = round(NEW_ARRIVAL_SHARE * n)
        n_drafts = max(1, round(DRAFT_PRODUCT_SHARE * n))
        drafts = set(rng.sample(range(n), n_drafts))

        slugs: set[str] = set()
        products: list[_Product] = []
        launch_end = START_MS + LAUNCH_DAYS * MS_PER_DAY
        for index in range(n):
            product = _Product(index=index)
            category = rng.randrange(len(self.category_docs))
            kind = self.category_kinds[category]
            cat_title, nouns, allowed_types = CATEGORY_BASE[kind]
            title = f"{rng.choice(ADJECTIVES)} {rng.choice(MATERIAL_WORDS)} {rng.choice(nouns)}"
            slug = slugify(title)
            if slug in slugs:
                suffix = 2
                while f"{slug}-{suffix}" in slugs:
                    suffix += 1
                title, slug = f"{title} {suffix}", f"{slug}-{suffix}"
            slugs.add(slug)
            product.title, product.slug = title, slug
            product.description = (
                f"{title} from our {cat_title.lower()} range. {rng.choice(TAGLINES)}"
            )
            categories = [category + 1]
            if len(self.category_docs) > 1 and rng.random() < 0.3:
                extra = rng.randrange(len(self.category_docs))
                if extra != category:
                    categories.append(extra + 1)
            product.categories = categories
            _, low, high, median = PRICE_TIERS[tiers[index]]
            dollars = int(min(high, max(low, rng.lognormvariate(math.log(median), 0.45))))
            product.price = dollars * 100 + 99
            product.weight = weights[index]
            product.published = index not in drafts
            # the initial catalogue is created in the launch week, new arrivals later on
            if index < n - new_arrivals:
                product.created = self.uniform_time(START_MS + 12 * MS_PER_HOUR, launch_end)
            else:
                product.created = self.uniform_time(OPEN_MS, END_MS - 20 * MS_PER_DAY)
            product.enable_variants = index in with_variants
            product.variant_types = []
            if product.enable_variants:
                product.variant_types = self._pick_variant_types(allowed_types)
            product.inventory = 0 if product.enable_variants else self._inventory()
            product.updated = product.created
            if rng.random() < 0.25:  # a later edit (description, stock, images...)
                product.updated = self.uniform_time(product.created, END_MS - 1)
            products.append(product)

        products.sort(key=lambda p: (p.created, p.index))
        for product_id, product in enumerate(products, start=1):
            product.id = product_id
        self.products = products
        self._build_variants()
        # products in price order with their popularity weights accumulated: baskets draw a
        # product in a price band by popularity with one bisection
        self.by_price = sorted(products, key=lambda p: (p.price, p.id))
        self.prices_sorted = [p.price for p in self.by_price]
        self.price_cum = list(accumulate(p.weight for p in self.by_price))

    def _pick_variant_types(self, allowed: tuple[str, ...]) -> list[str]:
        rng = self.rng
        if not allowed:
            allowed = ("color",)
        if len(allowed) >= 2 and rng.random() < 0.45:
            return list(allowed[:2])
        return [rng.choice(allowed)]

    def _inventory(self) -> int:
        return 0 if self.rng.random() < 0.08 else self.rng.randint(1, 250)

    def _build_variants(self) -> None:
        rng = self.rng
        variants: list[_Variant] = []
        for product in self.products:
            if not product.enable_variants:
                continue
            # 2-10 combinations of the product's option values
            combos: list[list[tuple[int, str, int]]] = [[]]
            for type_name in product.variant_types:
                options = self.options_by_type[type_name]
                keep = sorted(rng.sample(range(len(options)), rng.randint(2, len(options))))
                combos = [[*combo, options[k]] for combo in combos for k in keep]
            if len(combos) > 10:
                combos = [combos[k] for k in sorted(rng.sample(range(len(combos)), 10))]
            premium_style = rng.random() < 0.3
            for position, combo in enumerate(combos, start=1):
                premium = sum(extra for _, _, extra in combo) if premium_style else 0
                created = product.created + position * MS_PER_SECOND
                variant = _Variant(
                    product=product,
                    title=" — ".join([product.title, *(label for _, label, _ in combo)]),
                    options=[option_id for option_id, _, _ in combo],
                    price=product.price + premium,
                    inventory=self._inventory(),
                    created=created,
                    updated=created,
                    published=product.published,
                )
                if rng.random() < 0.15:
                    variant.updated = self.uniform_time(variant.created, END_MS - 1)
                product.variants.append(variant)
                variants.append(variant)
        # a few variants withdrawn (trashed) while their product stays on sale
        candidates = [
            v
            for v in variants
            if v.published and v.product.deleted is None and v.created < END_MS - 90 * MS_PER_DAY
        ]
        for variant in rng.sample(candidates, round(TRASHED_VARIANT_SHARE * len(candidates))):
            variant.deleted = self.uniform_time(
                variant.created + 60 * MS_PER_DAY, END_MS - MS_PER_DAY
            )
            variant.updated = variant.deleted
        variants.sort(key=lambda v: (v.created, v.product.id))
        for variant_id, variant in enumerate(variants, start=1):
            variant.id = variant_id
        self.variants = variants

    # --- baskets ----------------------------------------------------------------------------
    def _variant_at(self, product: _Product, moment: int) -> _Variant | None:
        live = [
            v
            for v in product.variants
            if v.published and v.created < moment and (v.deleted is None or moment < v.deleted)
        ]
        return self.rng.choice(live) if live else None

    def _orderable(self, product: _Product, moment: int) -> bool:
        return (
            product.published
            and product.created < moment
            and (product.deleted is None or moment < product.deleted)
        )

    def basket(self, moment: int, target_cents: int) -> list[Line]:
        """Lines worth about `target_cents`, drawn by popularity among products on sale."""
        rng = self.rng
        rnd = rng.random
        n_lines = rng.choices((1, 2, 3, 4), weights=(55, 28, 12, 5))[0]
        n_lines = max(1, min(n_lines, target_cents // 2_500))
        shares = [rnd() + 0.5 for _ in range(n_lines)]
        share_total = sum(shares)
        lines: dict[tuple[int, int], list[Any]] = {}
        for share in shares:
            line_target = target_cents * share / share_total
            # a product priced for this line (a wider band if none is on sale), by popularity
            picked = self._pick_in_price_band(line_target * 0.45, line_target * 1.2, moment)
            if picked is None:
                picked = self._pick_in_price_band(line_target * 0.15, line_target * 1.2, moment)
            if picked is None:
                picked = self._nearest_by_price(line_target, moment)
            chosen, variant = picked
            price = variant.price if variant is not None else chosen.price
            quantity = max(1, min(5, round(line_target / price)))
            key = (chosen.id, variant.id if variant is not None else 0)
            if key in lines:
                lines[key][2] += quantity
            else:
                lines[key] = [chosen, variant, quantity]
        return [(p, v, q) for p, v, q in lines.values()]

    def _pick_in_price_band(
        self, low: float, high: float, moment: int
    ) -> tuple[_Product, _Variant | None] | None:
        """A product priced in [low, high] and on sale at `moment`, drawn with probability
        proportional to its popularity weight (the same law as rejection sampling from the
        whole catalogue, in O(log n): weights are accumulated in price order)."""
        first = bisect_left(self.prices_sorted, low)
        stop = bisect_right(self.prices_sorted, high)
        if stop <= first:
            return None
        cum = self.price_cum
        base = cum[first - 1] if first else 0.0
        span = cum[stop - 1] - base
        rnd = self.rng.random
        for _ in range(12):
            index = min(stop - 1, max(first, bisect_right(cum, base + rnd() * span)))
            product = self.by_price[index]
            if not self._orderable(product, moment):
                continue
            if not product.enable_variants:
                return product, None
            variant = self._variant_at(product, moment)
            if variant is not None:
                return product, variant
        return None

    def _nearest_by_price(self, cents: float, moment: int) -> tuple[_Product, _Variant | None]:
        start = bisect_left(self.prices_sorted, cents)
        candidates = self.by_price
        for offset in range(len(candidates)):
            for position in (start - 1 - offset, start + offset):
                if 0 <= position < len(candidates):
                    product = candidates[position]
                    if not self._orderable(product, moment):
                        continue
                    variant = self._variant_at(product, moment) if product.enable_variants else None
                    if product.enable_variants and variant is None:
                        continue
                    return product, variant
        raise RuntimeError("no product is on sale at this instant")  # launch week excluded

    @staticmethod
    def line_total(lines: list[Line]) -> int:
        return sum(q * (v.price if v is not None else p.price) for p, v, q in lines)

    # --- customers and orders ----------------------------------------------------------------
    def build_customers_and_orders(self) -> None:
        rng = self.rng
        n_customers = self.volumes.customers
        counts = {name: round(share * n_customers) for name, (share, _, _) in SEGMENTS.items()}
        counts["new"] = n_customers - counts["vip"] - counts["regular"]
        plan: list[tuple[str, int, int]] = []  # (segment, orders, aov target)
        for segment, (_, (low_orders, high_orders), (low_aov, high_aov)) in SEGMENTS.items():
            for _ in range(counts[segment]):
                aov = _log_uniform(rng, low_aov * 1.15, high_aov * 0.85)
                plan.append((segment, rng.randint(low_orders, high_orders), round(aov)))
        plan = self._reconcile(plan, self.volumes.orders)

        orders: list[_Order] = []
        customers: list[_Person] = []
        for segment, n_orders, aov in plan:
            low_aov, high_aov = SEGMENTS[segment][2]
            if segment == "new":
                first = self.order_time()
                signup = max(
                    START_MS + MS_PER_DAY,
                    first - self.uniform_time(35 * MS_PER_MINUTE, 3 * MS_PER_DAY),
                )
            else:
                # loyal customers mostly joined early on
                signup = OPEN_MS + int(rng.random() ** 1.6 * (END_MS - 30 * MS_PER_DAY - OPEN_MS))
                first = self.order_time(after_ms=signup) if n_orders else signup
            person = self.new_person(signup, segment)
            if rng.random() < 0.1:
                person.updated = self.uniform_time(signup, END_MS - 1)
            customers.append(person)
            moments = [first] + [self.order_time(after_ms=signup) for _ in range(n_orders - 1)]
            for moment in moments[:n_orders]:
                target = min(high_aov, max(low_aov, round(aov * rng.lognormvariate(0, 0.25))))
                orders.append(self._new_order(person, moment, target))

        # guests (no account) fill the exact order count
        guests_needed = self.volumes.orders - len(orders)
        self.guests: list[_Person] = []
        while guests_needed > 0:
            first = self.order_time()
            person = self.new_person(first, "guest")
            self.guests.append(person)
            moments = [first]
            if guests_needed > 1 and rng.random() < 0.15:
                moments.append(self.order_time(after_ms=first))
            for moment in moments:
                target = round(
                    _log_uniform(rng, GUEST_AOV_CENTS[0] * 1.15, GUEST_AOV_CENTS[1] * 0.85)
                )
                orders.append(self._new_order(person, moment, target))
            guests_needed -= len(moments)

        customers.sort(key=lambda c: (c.created, c.email))
        for user_id, person in enumerate(customers, start=2):  # user 1 is the admin
            person.id = user_id
        self.customers = customers
        orders.sort(key=lambda o: (o.created, o.person.email))
        for order_id, order in enumerate(orders, start=1):
            order.id = order_id
        self.orders = orders

    def trash_sold_products(self) -> None:
        """Withdraw a few products that sold, some time after their last sale: orders keep
        referencing them, as in the captured orders.trashed-product file. Runs before carts and
        failed payment attempts are drawn, which then never pick a trashed product."""
        last_sale: dict[int, int] = {}
        for order in self.orders:
            for product, _, _ in order.lines:
                last_sale[product.id] = max(last_sale.get(product.id, 0), order.created)
        latest = END_MS - 3 * MS_PER_DAY
        candidates = [
            p
            for p in self.products
            if p.id in last_sale
            and last_sale[p.id] < latest
            and p.created + 120 * MS_PER_DAY < latest
        ]
        wanted = max(1, round(TRASHED_PRODUCT_SHARE * len(self.products)))
        for product in self.rng.sample(candidates, min(wanted, len(candidates))):
            earliest = max(last_sale[product.id] + MS_PER_DAY, product.created + 120 * MS_PER_DAY)
            product.deleted = self.uniform_time(earliest, END_MS - MS_PER_DAY)
            product.updated = product.deleted

    @staticmethod
    def _reconcile(plan: list[tuple[str, int, int]], n_orders: int) -> list[tuple[str, int, int]]:
        """Registered customers' orders must not exceed the preset's order count: if they do,
        remove one order at a time from New, then Regular, then VIP customers (never below one),
        and if that is still too many, the last New customers keep an account but no order."""
        total = sum(count for _, count, _ in plan)
        if total <= n_orders:
            return plan
        counts = [count for _, count, _ in plan]
        for segment in ("new", "regular", "vip"):
            for i, (seg, _, _) in enumerate(plan):
                if seg == segment:
                    cut = min(counts[i] - 1, total - n_orders)
                    counts[i] -= cut
                    total -= cut
        for i in reversed(range(len(plan))):
            if total <= n_orders:
                break
            if counts[i]:
                counts[i] -= 1
                total -= 1
        return [(seg, counts[i], aov) for i, (seg, _, aov) in enumerate(plan)]

    def _new_order(self, person: _Person, moment: int, target: int) -> _Order:
        lines = self.basket(moment, target)
        method = _weighted(self.rng, PAYMENT_METHODS)
        return _Order(person, moment, lines, self.line_total(lines), method)

    # --- statuses and payments ---------------------------------------------------------------
    def build_statuses_and_transactions(self) -> None:
        rng = self.rng
        transactions: list[_Transaction] = []
        for order in self.orders:
            moment = order.created
            roll = rng.random()
            status, updated = "processing", moment + self.uniform_time(30_000, 5 * MS_PER_MINUTE)
            refund_cut = ORDER_STATUS_SHARES["refunded"]
            cancel_cut = refund_cut + ORDER_STATUS_SHARES["cancelled"]
            stuck_cut = cancel_cut + ORDER_STATUS_SHARES["stuck_processing"]
            if roll < refund_cut:
                candidate = moment + self.uniform_time(5 * MS_PER_DAY, 30 * MS_PER_DAY)
                status = "refunded" if candidate < END_MS else status
            elif roll < cancel_cut:
                candidate = moment + self.uniform_time(10 * MS_PER_MINUTE, 2 * MS_PER_DAY)
                status = "cancelled" if candidate < END_MS else status
            elif roll < stuck_cut:
                candidate = updated
            else:
                candidate = moment + self.uniform_time(MS_PER_DAY, 7 * MS_PER_DAY)
                status = "completed" if candidate < END_MS else status
            if status != "processing":
                updated = candidate
            order.status = status
            order.updated = min(updated, END_MS - 1)

            # payment attempts precede the order, but not the customer's account
            earliest = moment - 31 * MS_PER_MINUTE
            if order.person.id is not None:
                earliest = max(earliest, (order.person.created + moment) // 2)
            if rng.random() < FAILED_ATTEMPT_SHARE:
                failed = self._transaction(order.person, order.lines, order.amount, "card")
                failed.created = max(
                    earliest, moment - self.uniform_time(3 * MS_PER_MINUTE, 30 * MS_PER_MINUTE)
                )
                failed.updated = failed.created + self.uniform_time(5_000, 40_000)
                failed.status = "failed"
                failed.order = order
                order.transactions.append(failed)
                transactions.append(failed)
            paid = self._transaction(order.person, order.lines, order.amount, order.method)
            paid.created = max(earliest + 1, moment - self.uniform_time(20_000, 2 * MS_PER_MINUTE))
            # updated when linked to its order, a few seconds later
            paid.updated = min(END_MS - 1, moment + self.uniform_time(1_000, 5_000))
            paid.order = order
            if status == "refunded":
                paid.status, paid.updated = "refunded", order.updated
            elif status == "cancelled":
                # an unpaid bank transfer fails; a captured payment is given back
                paid.status = "failed" if order.method == "bankTransfer" else "refunded"
                paid.updated = order.updated
            elif status == "processing" and order.method == "bankTransfer":
                paid.status = "pending"
            else:
                paid.status = "succeeded"
            order.transactions.append(paid)
            transactions.append(paid)

        # checkouts whose payment never went through: no order
        buyers = self.customers + self.guests
        for _ in range(round(ORPHAN_TRANSACTION_SHARE * len(self.orders))):
            person = rng.choice(buyers)
            moment = self.order_time(after_ms=person.created)
            low_aov, high_aov = SEGMENTS.get(person.segment, (0.0, (0, 0), GUEST_AOV_CENTS))[2]
            lines = self.basket(moment, round(_log_uniform(rng, low_aov, high_aov)))
            method = _weighted(rng, PAYMENT_METHODS)
            orphan = self._transaction(person, lines, self.line_total(lines), method)
            orphan.created = moment
            orphan.updated = min(END_MS - 1, moment + self.uniform_time(5_000, 60_000))
            orphan.status = "pending" if method == "bankTransfer" else "failed"
            transactions.append(orphan)

        transactions.sort(key=lambda t: (t.created, t.order.id if t.order else 0))
        for transaction_id, transaction in enumerate(transactions, start=1):
            transaction.id = transaction_id
        self.transactions = transactions

    def _transaction(
        self, person: _Person, lines: list[Line], amount: int, method: str
    ) -> _Transaction:
        return _Transaction(person, lines, amount, method)

    # --- carts --------------------------------------------------------------------------------
    def build_carts(self) -> None:
        rng = self.rng
        n = self.volumes.carts
        n_abandoned = round(ABANDONED_CART_SHARE * n)
        n_active = round(ACTIVE_CART_SHARE * n)
        kinds = ["abandoned"] * n_abandoned + ["active"] * n_active
        kinds += ["purchased"] * (n - len(kinds))
        n_guest = round(GUEST_CART_SHARE * n)
        guest_flags = [True] * n_guest + [False] * (n - n_guest)
        rng.shuffle(kinds)
        rng.shuffle(guest_flags)

        guest_orders = [o for o in self.orders if o.person.id is None]
        member_orders = [o for o in self.orders if o.person.id is not None]
        rng.shuffle(guest_orders)
        rng.shuffle(member_orders)
        carts: list[_Cart] = []
        newest_start = END_MS - CART_ACTIVE_WINDOW // timedelta(milliseconds=1)
        for kind, guest in zip(kinds, guest_flags, strict=True):
            if kind == "purchased":
                pool = guest_orders if guest else member_orders
                order = (pool or guest_orders or member_orders).pop()
                started = order.created - self.uniform_time(5 * MS_PER_MINUTE, 3 * MS_PER_DAY)
                # not before the buyer's account, nor before its products were on sale
                on_sale = max((v or p).created + MS_PER_SECOND for p, v, _ in order.lines)
                cart = _Cart(
                    person=order.person,
                    lines=order.lines,
                    subtotal=order.amount,
                    created=max(order.person.created, started, min(on_sale, order.created - 1)),
                    updated=order.created,
                    purchased=order.created,
                )
                order.cart = cart
                for transaction in order.transactions:
                    transaction.cart = cart
            else:
                customer = None if guest else self._customer_before(newest_start - MS_PER_DAY)
                owner = customer if customer is not None else self.anonymous_visitor()
                if kind == "abandoned":
                    created = self.order_time(
                        after_ms=max(OPEN_MS, owner.created) if customer is not None else None,
                        before_ms=newest_start - MS_PER_DAY,
                    )
                    updated = created + self.uniform_time(MS_PER_MINUTE, 3 * MS_PER_HOUR)
                else:  # active: created within the last days, still being filled
                    created = self.uniform_time(newest_start + MS_PER_HOUR, END_MS - MS_PER_HOUR)
                    updated = self.uniform_time(created, END_MS - 1)
                low, high = SEGMENTS["regular"][2] if customer is not None else GUEST_AOV_CENTS
                lines = self.basket(created, round(_log_uniform(rng, low, high)))
                cart = _Cart(owner, lines, self.line_total(lines), created, updated, None)
            carts.append(cart)
        carts.sort(key=lambda c: (c.created, c.subtotal))
        for cart_id, cart in enumerate(carts, start=1):
            cart.id = cart_id
        self.carts = carts

    def _customer_before(self, moment: int) -> _Person | None:
        for _ in range(20):
            person = self.rng.choice(self.customers)
            if person.created < moment:
                return person
        return None

    @staticmethod
    def anonymous_visitor() -> _Person:
        """The owner of a guest cart that was never checked out: no account, no address."""
        return _Person("", "", "guest", OPEN_MS, OPEN_MS, None)

    # --- bulk updates ------------------------------------------------------------------------
    def apply_bulk_updates(self) -> None:
        """A few admin bulk operations: several documents end up with one identical updatedAt."""
        rng = self.rng
        groups = 0
        for _ in range(30):
            if groups == 3:
                break
            # "mark as delivered" on a batch of recent orders, on the hour
            day = rng.randrange(60, HISTORY_DAYS - 2)
            instant = START_MS + day * MS_PER_DAY + 17 * MS_PER_HOUR
            batch = [
                o
                for o in self.orders
                if o.status == "completed"
                and instant - 14 * MS_PER_DAY <= o.created <= instant - MS_PER_DAY
                and o.updated <= instant
            ]
            if len(batch) < 3:
                continue
            for order in batch[: rng.randint(3, 25)]:
                order.updated = instant
            groups += 1
        # an inventory import touching several products at once
        instant = START_MS + (HISTORY_DAYS - rng.randint(5, 40)) * MS_PER_DAY + 9 * MS_PER_HOUR
        batch_products = [p for p in self.products if p.deleted is None and p.updated < instant]
        for product in rng.sample(batch_products, min(len(batch_products), rng.randint(3, 12))):
            product.updated = instant

    # --- documents -----------------------------------------------------------------------------
    def items(self, lines: list[Line], created_ms: int) -> list[Document]:
        return [
            {
                "id": self.item_id(created_ms),
                "product": product.id,
                "variant": variant.id if variant is not None else None,
                "quantity": quantity,
            }
            for product, variant, quantity in lines
        ]

    def documents(self) -> dict[str, list[Document]]:
        ts = ms_to_timestamp
        admin_stamp = ts(START_MS)
        users: list[Document] = [
            {"id": 1, "name": "Store Admin", "roles": ["admin"], "updatedAt": admin_stamp,
             "createdAt": admin_stamp, "email": "admin@example.com", "collection": "users",
             "sessions": []}
        ]  # fmt: skip
        users += [
            {"id": c.id, "name": c.name, "roles": ["customer"], "updatedAt": ts(c.updated),
             "createdAt": ts(c.created), "email": c.email, "collection": "users",
             "sessions": []}
            for c in self.customers
        ]  # fmt: skip
        type_ids = self.type_ids
        products = [
            {"id": p.id, "title": p.title, "slug": p.slug, "description": p.description,
             "categories": p.categories, "inventory": p.inventory,
             "enableVariants": p.enable_variants,
             "variantTypes": [type_ids[name] for name in p.variant_types],
             "priceInUSDEnabled": True, "priceInUSD": p.price, "updatedAt": ts(p.updated),
             "createdAt": ts(p.created),
             "deletedAt": ts(p.deleted) if p.deleted is not None else None,
             "_status": "published" if p.published else "draft"}
            for p in self.products
        ]  # fmt: skip
        variants = [
            {"id": v.id, "title": v.title, "product": v.product.id, "options": v.options,
             "inventory": v.inventory, "priceInUSDEnabled": True, "priceInUSD": v.price,
             "updatedAt": ts(v.updated), "createdAt": ts(v.created),
             "deletedAt": ts(v.deleted) if v.deleted is not None else None,
             "_status": "published" if v.published else "draft"}
            for v in self.variants
        ]  # fmt: skip
        orders = [
            {"id": o.id, "items": self.items(o.lines, o.created),
             "shippingAddress": o.person.address, "customer": o.person.id,
             "customerEmail": o.person.email,
             "transactions": [t.id for t in o.transactions], "status": o.status,
             "amount": o.amount, "currency": "USD", "updatedAt": ts(o.updated),
             "createdAt": ts(o.created)}
            for o in self.orders
        ]  # fmt: skip
        transactions = []
        for t in self.transactions:
            card, paypal, bank = payment_details(self.rng, t.method)
            transactions.append(
                {"id": t.id, "items": self.items(t.lines, t.created), "paymentMethod": t.method,
                 "card": card, "paypal": paypal, "bankTransfer": bank,
                 "billingAddress": t.person.address, "status": t.status,
                 "customer": t.person.id, "customerEmail": t.person.email,
                 "order": t.order.id if t.order is not None else None,
                 "cart": t.cart.id if t.cart is not None else None, "amount": t.amount,
                 "currency": "USD", "updatedAt": ts(t.updated), "createdAt": ts(t.created)}
            )  # fmt: skip
        carts = [
            {"id": c.id, "items": self.items(c.lines, c.created), "customer": c.person.id,
             "purchasedAt": ts(c.purchased) if c.purchased is not None else None,
             "subtotal": c.subtotal, "currency": "USD", "updatedAt": ts(c.updated),
             "createdAt": ts(c.created)}
            for c in self.carts
        ]  # fmt: skip
        return {
            "orders": orders,
            "transactions": transactions,
            "carts": carts,
            "products": products,
            "variants": variants,
            "categories": self.category_docs,
            "users": users,
            "variantTypes": self.variant_type_docs,
            "variantOptions": self.option_docs,
        }


def random_address(rng: random.Random, first: str, last: str) -> Document:
    """A shipping / billing address in Payload's shape (orders.shippingAddress)."""
    city, state, postal, country = rng.choice(CITIES)
    second_line = rng.random()
    return {
        "title": rng.choice(("Home", "Home", "Work", None)),
        "firstName": first,
        "lastName": last,
        "company": rng.choice(COMPANIES) if rng.random() < 0.05 else None,
        "addressLine1": " ".join(
            (str(rng.randint(100, 9999)), rng.choice(STREETS), rng.choice(STREET_KINDS))
        ),
        "addressLine2": (
            None
            if second_line < 0.7
            else f"{rng.choice(('Apt', 'Unit', 'Suite'))} {rng.randint(1, 40)}"
        ),
        "city": city,
        "state": state,
        "postalCode": postal,
        "country": country,
        "phone": f"+1-555-01{rng.randint(0, 99):02d}" if rng.random() < 0.4 else None,
    }


def payment_details(rng: random.Random, method: str) -> tuple[Document, Document, Document]:
    """A transaction's `card`, `paypal` and `bankTransfer` groups: only `method`'s is filled."""
    card: Document = {"customerID": None, "chargeID": None, "brand": None, "last4": None}
    paypal: Document = {"payerID": None, "captureID": None}
    bank: Document = {"reference": None}
    if method == "card":
        card = {
            "customerID": "cus_" + random_token(rng, _ALNUM, 14),
            "chargeID": "ch_" + random_token(rng, _ALNUM, 24),
            "brand": rng.choice(CARD_BRANDS),
            "last4": f"{rng.randint(0, 9999):04d}",
        }
    elif method == "paypal":
        paypal = {
            "payerID": random_token(rng, _UPPER_ALNUM, 13),
            "captureID": random_token(rng, _UPPER_ALNUM, 17),
        }
    else:
        bank = {"reference": "BT-" + random_token(rng, "0123456789ABCDEF", 10)}
    return card, paypal, bank


def random_token(rng: random.Random, alphabet: str, length: int) -> str:
    """Random characters from `alphabet` (one random byte each: fast, and bias is harmless)."""
    table = _BYTE_TABLES.get(alphabet)
    if table is None:
        table = bytes(ord(alphabet[i % len(alphabet)]) for i in range(256))
        _BYTE_TABLES[alphabet] = table
    return rng.randbytes(length).translate(table).decode("ascii")


def pick_payment_method(rng: random.Random) -> str:
    return _weighted(rng, PAYMENT_METHODS)


def _log_uniform(rng: random.Random, low: float, high: float) -> float:
    return math.exp(rng.uniform(math.log(low), math.log(high)))


def _weighted(rng: random.Random, pairs: tuple[tuple[str, float], ...]) -> str:
    roll, acc = rng.random(), 0.0
    for value, share in pairs:
        acc += share
        if roll < acc:
            return value
    return pairs[-1][0]


def popularity_weights(n: int) -> list[float]:
    """`n` deterministic log-normal quantiles (sigma found by bisection) whose largest 20% sum to
    POPULARITY_TOP20_WEIGHT of the total: a Pareto 80/20 law at every catalogue size. (For an
    infinite catalogue sigma = 0.8416 + 0.9154 = 1.76; small catalogues need a little more.)"""
    z_scores = [_normal_quantile((i + 0.5) / n) for i in range(n)]
    top = max(1, round(0.2 * n))

    def top_share(sigma: float) -> float:
        weights = sorted((math.exp(sigma * z) for z in z_scores), reverse=True)
        return sum(weights[:top]) / sum(weights)

    low, high = 0.1, 6.0
    for _ in range(50):
        middle = (low + high) / 2
        low, high = (middle, high) if top_share(middle) < POPULARITY_TOP20_WEIGHT else (low, middle)
    return [math.exp(high * z) for z in z_scores]


def _normal_quantile(p: float) -> float:
    """Inverse standard normal CDF (Acklam's rational approximation, |error| < 1.2e-9)."""
    a = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02,
         1.383577518672690e02, -3.066479806614716e01, 2.506628277459239e00)  # fmt: skip
    b = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02,
         6.680131188771972e01, -1.328068155288572e01)  # fmt: skip
    c = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00,
         -2.549671010422345e00, 4.374664141464968e00, 2.938163982698783e00)  # fmt: skip
    d = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)
    if p < 0.02425:
        q = math.sqrt(-2 * math.log(p))
        num = ((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]
        return num / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
    if p > 1 - 0.02425:
        return -_normal_quantile(1 - p)
    q = p - 0.5
    r = q * q
    num = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q
    return num / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)


def generate(
    preset: str = "small", scale: int = 1, seed: int = 42, id_type: IdType = IdType.INT
) -> Dataset:
    """All documents of a demo store; identical output for identical arguments. `id_type`
    objectid / uuid: the same store with string ids (flows/demo/idmap.py)."""
    # The cyclic garbage collector would rescan the growing object graph again and again while
    # hundreds of thousands of documents are built (nothing here creates garbage cycles).
    collector_was_enabled = gc.isenabled()
    gc.disable()
    try:
        generator = _Generator(preset, scale, seed)
        generator.build_catalogue()
        generator.build_customers_and_orders()
        generator.trash_sold_products()
        generator.build_statuses_and_transactions()
        generator.build_carts()
        generator.apply_bulk_updates()
        collections = generator.documents()
    finally:
        if collector_was_enabled:
            gc.enable()
    segments: dict[Any, str] = {c.id: c.segment for c in generator.customers if c.id is not None}
    if id_type.is_string:
        from flows.demo.idmap import demo_id, relabel  # reads the query schemas

        users = {d["id"]: d.get("createdAt") for d in collections.get("users", [])}
        segments = {
            demo_id(id_type, seed, "users", user, users.get(user)): segment
            for user, segment in segments.items()
        }
        collections = relabel(collections, id_type, seed)
    return Dataset(
        collections=collections,
        reference_time=REFERENCE_TIME,
        preset=preset,
        scale=scale,
        seed=seed,
        customer_segments=segments,
        id_type=id_type,
    )
