"""Reading customers, orders and the catalogue in the JSON shape tau2's retail tools return.

Orders come back with every optional field present (null where unset), users with their
payment methods and order ids, products with their variants keyed by item id; money is
converted from the store's cents to the floats tau2 shows.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from sqlalchemy import Connection, select

from ..store import from_cents
from ..store.schema import (
    fulfillments,
    order_items,
    orders,
    payment_history,
    payment_methods,
    products,
    users,
    variants,
)
from ..store.tau2_io import ADDRESS_KEYS, ORDER_OPTIONAL_KEYS
from .errors import not_found, not_your_account

Json = dict[str, Any]


def fold(text: str) -> str:
    """Case- and accent-insensitive form, so a name or email read aloud still matches."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold().strip()


def find_user_by_email(conn: Connection, email: str) -> str:
    """The id of the first user (in store order) whose email matches."""
    wanted = fold(email)
    for user_id, candidate in conn.execute(select(users.c.user_id, users.c.email).order_by(users.c.position)):
        if fold(candidate) == wanted:
            return str(user_id)
    raise not_found("user_not_found", "User not found")


def find_user_by_name_zip(conn: Connection, first_name: str, last_name: str, zip_code: str) -> str:
    """The id of the first user with this name (folded) whose address has exactly this zip."""
    first, last = fold(first_name), fold(last_name)
    query = (select(users.c.user_id, users.c.first_name, users.c.last_name)
             .where(users.c.zip == zip_code).order_by(users.c.position))
    for user_id, candidate_first, candidate_last in conn.execute(query):
        if fold(candidate_first) == first and fold(candidate_last) == last:
            return str(user_id)
    raise not_found("user_not_found", "User not found")


def payment_method_view(row: Any) -> Json:
    """One payment method with only the keys its kind carries."""
    method: Json = {"source": row["source"], "id": row["id"]}
    method.update((key, row[key]) for key in ("brand", "last_four") if row[key] is not None)
    if row["balance_cents"] is not None:
        method["balance"] = from_cents(row["balance_cents"])
    method.update(row["extra"] or {})
    return method


def user_row(conn: Connection, user_id: str, acting_user: str | None) -> Any:
    """The user's row; refuses unknown users and users other than the acting one."""
    row = conn.execute(select(users).where(users.c.user_id == user_id)).mappings().first()
    if row is None:
        raise not_found("user_not_found", "User not found")
    if acting_user is not None and user_id != acting_user:
        raise not_your_account("account")
    return row


def user_view(conn: Connection, user_id: str, acting_user: str | None) -> Json:
    """A user's profile, payment methods and order ids."""
    row = user_row(conn, user_id, acting_user)
    methods = conn.execute(select(payment_methods).where(payment_methods.c.user_id == user_id)
                           .order_by(payment_methods.c.position)).mappings()
    order_ids = conn.execute(select(orders.c.order_id).where(orders.c.user_id == user_id,
                                                             orders.c.user_position.is_not(None))
                             .order_by(orders.c.user_position)).scalars()
    return {
        "user_id": row["user_id"], "name": {"first_name": row["first_name"], "last_name": row["last_name"]},
        "address": {key: row[key] for key in ADDRESS_KEYS}, "email": row["email"],
        "payment_methods": {method["id"]: payment_method_view(method) for method in methods},
        "orders": list(order_ids),
    }


def order_row(conn: Connection, order_id: str, acting_user: str | None, *, for_update: bool = False) -> Any:
    """The order's row; refuses unknown orders and orders of another customer than the acting one."""
    query = select(orders).where(orders.c.order_id == order_id)
    if for_update:
        query = query.with_for_update()
    row = conn.execute(query).mappings().first()
    if row is None:
        raise not_found("order_not_found", "Order not found")
    if acting_user is not None and row["user_id"] != acting_user:
        raise not_your_account("order")
    return row


def order_lines(conn: Connection, order_id: str) -> list[Any]:
    """The order's item lines in order."""
    return list(conn.execute(select(order_items).where(order_items.c.order_id == order_id)
                             .order_by(order_items.c.position)).mappings())


def order_payments(conn: Connection, order_id: str) -> list[Any]:
    """The order's payment history in order."""
    return list(conn.execute(select(payment_history).where(payment_history.c.order_id == order_id)
                             .order_by(payment_history.c.position)).mappings())


def order_view(conn: Connection, order_id: str, acting_user: str | None) -> Json:
    """An order with every optional field present, null where unset, as tau2 dumps it."""
    row = order_row(conn, order_id, acting_user)
    shipped = conn.execute(select(fulfillments).where(fulfillments.c.order_id == order_id)
                           .order_by(fulfillments.c.position)).mappings()
    order: Json = {
        "order_id": row["order_id"], "user_id": row["user_id"],
        "address": {key: row[key] for key in ADDRESS_KEYS},
        "items": [{"name": line["name"], "product_id": line["product_id"], "item_id": line["item_id"],
                   "price": from_cents(line["price_cents"]), "options": line["options"]}
                  for line in order_lines(conn, order_id)],
        "status": row["status"],
        "fulfillments": [{"tracking_id": f["tracking_ids"], "item_ids": f["item_ids"]} for f in shipped],
        "payment_history": [{"transaction_type": p["transaction_type"],
                             "amount": from_cents(p["amount_cents"]),
                             "payment_method_id": p["payment_method_id"]}
                            for p in order_payments(conn, order_id)],
    }
    for key in ORDER_OPTIONAL_KEYS:
        if key == "exchange_price_difference":
            cents = row["exchange_price_difference_cents"]
            order[key] = None if cents is None else from_cents(cents)
        else:
            order[key] = row[key]
    return order


def variant_view(row: Any) -> Json:
    """One item variant: id, options, availability, price."""
    return {"item_id": row["item_id"], "options": row["options"], "available": row["available"],
            "price": from_cents(row["price_cents"])}


def product_view(conn: Connection, product_id: str) -> Json:
    """A product with its variants keyed by item id."""
    row = conn.execute(select(products).where(products.c.product_id == product_id)).mappings().first()
    if row is None:
        raise not_found("product_not_found", "Product not found")
    rows = conn.execute(select(variants).where(variants.c.product_id == product_id)
                        .order_by(variants.c.position)).mappings()
    return {"name": row["name"], "product_id": row["product_id"],
            "variants": {variant["item_id"]: variant_view(variant) for variant in rows}}


def item_view(conn: Connection, item_id: str) -> Json:
    """One variant found by its item id across the catalogue."""
    row = conn.execute(select(variants).where(variants.c.item_id == item_id)).mappings().first()
    if row is None:
        raise not_found("item_not_found", "Item not found")
    return variant_view(row)


def product_types(conn: Connection) -> dict[str, str]:
    """Product name to product id, sorted by name (a later product of the same name wins, as in tau2)."""
    mapping: dict[str, str] = {}
    query = select(products.c.name, products.c.product_id).order_by(products.c.position)
    for name, product_id in conn.execute(query):
        mapping[name] = product_id
    return dict(sorted(mapping.items()))
