"""Drawing the records of a generated retail store, from one random stream in a fixed order.

`generate_store` (in `generator`) validates its arguments and calls `draw_store`; everything
random happens here, so that the order of the draws (and with it the store a seed gives) is
visible in one place.
"""

from __future__ import annotations

import itertools
from bisect import bisect
from collections.abc import Callable, Sequence
from random import Random
from typing import Any, NamedTuple, TypeVar

from .vocabulary import (
    CANCEL_REASONS,
    CARD_BRAND_WEIGHTS,
    CARD_BRANDS,
    CATALOGUE,
    CITIES,
    EMAIL_DOMAINS,
    FIRST_NAMES,
    LAST_NAMES,
    STREET_KINDS,
    STREET_NAMES,
)

__all__ = ["STATUS_WEIGHTS", "Progress", "Store", "draw_store"]

Store = dict[str, Any]
Progress = Callable[[int], None]
_T = TypeVar("_T")

# Share of orders in each status. Pending and delivered dominate, as in a live shop; every
# post-purchase situation the policy covers (cancel, change items, return, exchange) is present.
STATUS_WEIGHTS: tuple[tuple[str, float], ...] = (
    ("pending", 30), ("pending (item modified)", 3), ("processed", 14), ("delivered", 35),
    ("cancelled", 9), ("return requested", 5), ("exchange requested", 4),
)
_SHIPPED = frozenset({"processed", "delivered", "return requested", "exchange requested"})
_PROGRESS_EVERY = 1000


class _Variant(NamedTuple):
    item_id: str
    options: dict[str, str]
    cents: int
    price: float
    available: bool


class _Product(NamedTuple):
    product_id: str
    name: str
    variants: list[_Variant]
    in_stock: list[_Variant]


class _Method(NamedTuple):
    method_id: str
    source: str
    balance_cents: int  # gift cards only; 0 otherwise


_Line = tuple[_Product, _Variant]


def _cumulative(weights: Sequence[float]) -> list[float]:
    return list(itertools.accumulate(weights))


def _pick(rng: Random, values: Sequence[_T], cumulative: Sequence[float]) -> _T:
    """A weighted choice without the list `Random.choices` builds: this runs once per item."""
    return values[bisect(cumulative, rng.random() * cumulative[-1])]


_STATUSES = tuple(name for name, _ in STATUS_WEIGHTS)
_STATUS_CUM = _cumulative([weight for _, weight in STATUS_WEIGHTS])
_ITEM_COUNTS = (1, 2, 3, 4, 5)
_ITEM_COUNT_CUM = _cumulative((24, 24, 20, 17, 15))
_METHOD_COUNTS = (1, 2, 3, 4)
_METHOD_COUNT_CUM = _cumulative((60, 28, 9, 3))
_BRAND_CUM = _cumulative(CARD_BRAND_WEIGHTS)


class _Ids:
    """Random fixed-width numbers, never the same twice within one store."""

    def __init__(self, rng: Random, digits: int) -> None:
        self._rng = rng
        self._low, self._high = 10 ** (digits - 1), 10**digits
        self._used: set[int] = set()

    def draw(self) -> str:
        while True:
            number = self._rng.randrange(self._low, self._high)
            if number not in self._used:
                self._used.add(number)
                return str(number)


def _unique(rng: Random, used: set[str], prefix: str, suffix: str = "") -> str:
    """`prefix` + four digits + `suffix`, redrawn on a clash; then a counter digit makes it unique."""
    number = ""
    for _ in range(4):
        number = str(rng.randrange(1000, 10000))
        candidate = f"{prefix}{number}{suffix}"
        if candidate not in used:
            used.add(candidate)
            return candidate
    for counter in itertools.count():
        candidate = f"{prefix}{number}{counter}{suffix}"
        if candidate not in used:
            used.add(candidate)
            return candidate
    raise AssertionError("unreachable")


def _money(cents: int) -> float:
    return cents / 100


class _Generator:
    """Holds the one random stream and the id pools while a store is drawn."""

    def __init__(self, seed: int, progress: Progress | None) -> None:
        self.rng = Random(seed)
        self.catalogue_ids = _Ids(self.rng, 10)  # product and item ids share one space
        self.payment_ids = _Ids(self.rng, 7)
        self.order_ids = _Ids(self.rng, 7)
        self.tracking_ids = _Ids(self.rng, 12)
        self.progress = progress
        self.done = 0

    def tick(self) -> None:
        self.done += 1
        if self.progress is not None and self.done % _PROGRESS_EVERY == 0:
            self.progress(self.done)

    def finish(self) -> None:
        if self.progress is not None:
            self.progress(self.done)

    # -- products ---------------------------------------------------------------------------

    def products(self, count: int | None) -> list[_Product]:
        rng = self.rng
        chosen = range(len(CATALOGUE)) if count is None else sorted(rng.sample(range(len(CATALOGUE)), count))
        products: list[_Product] = []
        for index in chosen:
            kind = CATALOGUE[index]
            names = [name for name, _ in kind.options]
            combos = list(itertools.product(*(values for _, values in kind.options)))
            how_many = rng.randint(min(4, len(combos)), min(14, len(combos)))
            product_id = self.catalogue_ids.draw()
            variants: list[_Variant] = []
            for pick in rng.sample(range(len(combos)), how_many):
                cents = round(kind.base_cents * rng.uniform(0.88, 1.15))
                options = dict(zip(names, combos[pick], strict=True))
                variants.append(_Variant(self.catalogue_ids.draw(), options, cents, _money(cents),
                                         rng.random() < 0.68))
            # At least two in stock, so that any item has another variant to change to.
            for position, variant in enumerate(variants):
                if sum(v.available for v in variants) >= 2:
                    break
                variants[position] = variant._replace(available=True)
            products.append(_Product(product_id, kind.name, variants, [v for v in variants if v.available]))
        return products

    # -- users ------------------------------------------------------------------------------

    def address(self) -> dict[str, str]:
        rng = self.rng
        city, state, zip_prefix = rng.choice(CITIES)
        roll = rng.random()
        if roll < 0.45:
            address2 = ""
        elif roll < 0.75:
            address2 = f"Apt {rng.randint(1, 48)}"
        elif roll < 0.92:
            address2 = f"Suite {rng.randint(100, 999)}"
        else:
            address2 = f"Unit {rng.randint(1, 30)}{rng.choice('ABCD')}"
        return {
            "address1": f"{rng.randint(1, 9999)} {rng.choice(STREET_NAMES)} {rng.choice(STREET_KINDS)}",
            "address2": address2,
            "city": city,
            "country": "USA",
            "state": state,
            "zip": f"{zip_prefix}{rng.randrange(100):02d}",
        }

    def payment_methods(self) -> list[_Method]:
        rng = self.rng
        methods: list[_Method] = []
        has_paypal = False
        for _ in range(_pick(rng, _METHOD_COUNTS, _METHOD_COUNT_CUM)):
            roll = rng.random()
            if roll < 0.3 and not has_paypal:
                has_paypal = True
                methods.append(_Method(f"paypal_{self.payment_ids.draw()}", "paypal", 0))
            elif roll < 0.66:
                methods.append(_Method(f"credit_card_{self.payment_ids.draw()}", "credit_card", 0))
            else:
                balance = rng.randrange(0, 30001) if rng.random() < 0.7 else 100 * rng.randrange(0, 301)
                methods.append(_Method(f"gift_card_{self.payment_ids.draw()}", "gift_card", balance))
        return methods

    def method_record(self, method: _Method) -> dict[str, Any]:
        record: dict[str, Any] = {"source": method.source, "id": method.method_id}
        if method.source == "credit_card":
            record["brand"] = _pick(self.rng, CARD_BRANDS, _BRAND_CUM)
            record["last_four"] = f"{self.rng.randrange(10000):04d}"
        elif method.source == "gift_card":
            record["balance"] = _money(method.balance_cents)
        return record

    def users(self, count: int) -> tuple[list[Store], list[list[_Method]]]:
        rng = self.rng
        user_ids: set[str] = set()
        emails: set[str] = set()
        users: list[Store] = []
        methods_of: list[list[_Method]] = []
        for _ in range(count):
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            user_id = _unique(rng, user_ids, f"{first.lower()}_{last.lower()}_")
            email = _unique(rng, emails, f"{first.lower()}.{last.lower()}", f"@{rng.choice(EMAIL_DOMAINS)}")
            address = self.address()
            methods = self.payment_methods()
            users.append({
                "user_id": user_id,
                "name": {"first_name": first, "last_name": last},
                "address": address,
                "email": email,
                "payment_methods": {m.method_id: self.method_record(m) for m in methods},
                "orders": [],
            })
            methods_of.append(methods)
            self.tick()
        return users, methods_of

    # -- orders -----------------------------------------------------------------------------

    def lines(self, products: list[_Product], cumulative: list[float], total_variants: int) -> list[_Line]:
        rng = self.rng
        wanted = min(_pick(rng, _ITEM_COUNTS, _ITEM_COUNT_CUM), total_variants)
        lines: list[_Line] = []
        seen: set[str] = set()
        while len(lines) < wanted:
            product = _pick(rng, products, cumulative)
            variant = rng.choice(product.variants)
            if variant.item_id not in seen:  # one line per item: shipments and returns name items by id
                seen.add(variant.item_id)
                lines.append((product, variant))
        return lines

    def payer(self, methods: list[_Method], amount_cents: int) -> _Method | None:
        """A method that can pay `amount_cents` (a gift card must cover it), or None."""
        fit = [m for m in methods if m.source != "gift_card" or amount_cents <= m.balance_cents]
        return self.rng.choice(fit) if fit else None

    def modify_items(self, order: Store, lines: list[_Line], methods: list[_Method]) -> list[_Line]:
        """Swaps some items for in-stock variants of the same product, as the store's tool does."""
        rng = self.rng
        changed = list(lines)
        in_order = {variant.item_id for _, variant in lines}
        for index in sorted(rng.sample(range(len(lines)), rng.randint(1, len(lines)))):
            product = lines[index][0]
            choices = [v for v in product.in_stock if v.item_id not in in_order]
            if choices:
                new = rng.choice(choices)
                in_order.add(new.item_id)
                changed[index] = (product, new)
        difference = sum(v.cents for _, v in changed) - sum(v.cents for _, v in lines)
        method = self.payer(methods, difference)
        if changed == lines or method is None:
            return lines
        if difference:
            order["payment_history"].append({
                "transaction_type": "payment" if difference > 0 else "refund",
                "amount": _money(abs(difference)),
                "payment_method_id": method.method_id,
            })
        order["status"] = "pending (item modified)"
        return changed

    def exchange(self, order: Store, lines: list[_Line], methods: list[_Method]) -> None:
        rng = self.rng
        old: list[_Variant] = []
        new: list[_Variant] = []
        for index in sorted(rng.sample(range(len(lines)), rng.randint(1, len(lines)))):
            product, variant = lines[index]
            choices = [v for v in product.in_stock if v.item_id != variant.item_id]
            if choices:
                old.append(variant)
                new.append(rng.choice(choices))
        difference = sum(v.cents for v in new) - sum(v.cents for v in old)
        method = self.payer(methods, difference)
        if not old or method is None:
            return  # stays delivered
        order["status"] = "exchange requested"
        order["exchange_items"] = sorted(v.item_id for v in old)
        order["exchange_new_items"] = sorted(v.item_id for v in new)
        order["exchange_payment_method_id"] = method.method_id
        order["exchange_price_difference"] = _money(difference)

    def request_return(self, order: Store, lines: list[_Line], methods: list[_Method], paid_with: _Method) -> None:
        rng = self.rng
        picked = rng.sample(range(len(lines)), rng.randint(1, len(lines)))
        gift_cards = [m for m in methods if m.source == "gift_card"]
        refund_to = rng.choice(gift_cards) if gift_cards and rng.random() < 0.25 else paid_with
        order["status"] = "return requested"
        order["return_items"] = sorted(lines[i][1].item_id for i in picked)
        order["return_payment_method_id"] = refund_to.method_id

    def shipments(self, lines: list[_Line]) -> list[Store]:
        rng = self.rng
        item_ids = [variant.item_id for _, variant in lines]
        groups = [item_ids]
        if len(item_ids) > 1 and rng.random() < 0.15:
            cut = rng.randint(1, len(item_ids) - 1)
            groups = [item_ids[:cut], item_ids[cut:]]
        return [{"tracking_id": [self.tracking_ids.draw()], "item_ids": group} for group in groups]

    def order(self, user: Store, methods: list[_Method], lines: list[_Line]) -> Store:
        rng = self.rng
        status = _pick(rng, _STATUSES, _STATUS_CUM)
        paid_with = rng.choice(methods)
        total = sum(variant.cents for _, variant in lines)
        order: Store = {
            "order_id": f"#W{self.order_ids.draw()}",
            "user_id": user["user_id"],
            "address": dict(user["address"]) if rng.random() < 0.85 else self.address(),  # some moved since
            "items": [],
            "status": "pending" if status == "pending (item modified)" else status,
            "fulfillments": [],
            "payment_history": [
                {"transaction_type": "payment", "amount": _money(total), "payment_method_id": paid_with.method_id}
            ],
        }
        if status == "pending (item modified)":
            lines = self.modify_items(order, lines, methods)
        elif status == "cancelled":
            order["payment_history"].append(
                {"transaction_type": "refund", "amount": _money(total), "payment_method_id": paid_with.method_id}
            )
            order["cancel_reason"] = rng.choice(CANCEL_REASONS)
        elif status in _SHIPPED:
            order["fulfillments"] = self.shipments(lines)
            if status == "exchange requested":
                order["status"] = "delivered"
                self.exchange(order, lines, methods)
            elif status == "return requested":
                self.request_return(order, lines, methods, paid_with)
        order["items"] = [
            {"name": product.name, "product_id": product.product_id, "item_id": variant.item_id,
             "price": variant.price, "options": dict(variant.options)}
            for product, variant in lines
        ]
        return order


def draw_store(users: int, orders: int, seed: int, products: int | None, progress: Progress | None) -> Store:
    """The whole store: products first, then users, then orders (see `generator` for the guarantees)."""
    generator = _Generator(seed, progress)
    catalogue = generator.products(products)
    user_records, methods_of = generator.users(users)
    cumulative = _cumulative([generator.rng.uniform(0.4, 1.6) for _ in catalogue])  # some sell better
    total_variants = sum(len(product.variants) for product in catalogue)
    order_records: dict[str, Store] = {}
    for _ in range(orders):
        owner = generator.rng.randrange(users)
        lines = generator.lines(catalogue, cumulative, total_variants)
        order = generator.order(user_records[owner], methods_of[owner], lines)
        order_records[order["order_id"]] = order
        user_records[owner]["orders"].append(order["order_id"])
        generator.tick()
    generator.finish()

    return {
        "products": {
            product.product_id: {
                "name": product.name,
                "product_id": product.product_id,
                "variants": {
                    v.item_id: {"item_id": v.item_id, "options": dict(v.options), "available": v.available,
                                "price": v.price}
                    for v in product.variants
                },
            }
            for product in catalogue
        },
        "users": {user["user_id"]: user for user in user_records},
        "orders": order_records,
    }
