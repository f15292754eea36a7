"""The store's write operations, with tau2's rules checked in tau2's order before anything changes.

Each function runs inside the caller's transaction: it validates everything first (raising a
`RuleViolation` that names the broken rule), then applies the whole change. Money is computed
in integer cents, so a price difference is exact where tau2's float arithmetic is not.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from ..store.schema import order_items, orders, payment_history, payment_methods, users, variants
from .errors import broken, not_found, not_your_account
from .views import Json, order_lines, order_payments, order_row, order_view, user_row, user_view

CANCEL_REASONS: frozenset[str] = frozenset({"no longer needed", "ordered by mistake"})


def _payment_method(conn: Connection, owner_id: str, method_id: str) -> Any:
    """The owner's payment method, locked until commit where the database can (a balance is checked on it).

    Another customer's method is refused as not theirs, an unknown one as missing."""
    query = select(payment_methods).where(payment_methods.c.id == method_id).with_for_update()
    row = conn.execute(query).mappings().first()
    if row is None:
        raise not_found("payment_method_not_found", "Payment method not found")
    if row["user_id"] != owner_id:
        raise not_your_account("payment method")
    return row


def _is_gift_card(method: Any) -> bool:
    return bool(method["source"] == "gift_card" and method["balance_cents"] is not None)


def _add_balance(conn: Connection, method_id: str, cents: int) -> None:
    conn.execute(update(payment_methods).where(payment_methods.c.id == method_id)
                 .values(balance_cents=payment_methods.c.balance_cents + cents))


def _append_payment(conn: Connection, order_id: str, kind: str, cents: int, method_id: str) -> None:
    position = conn.execute(select(func.count()).select_from(payment_history)
                            .where(payment_history.c.order_id == order_id)).scalar_one()
    conn.execute(insert(payment_history).values(order_id=order_id, position=position, transaction_type=kind,
                                                amount_cents=cents, payment_method_id=method_id))


def _check_counts(requested: list[str], lines: list[Any], message: Any) -> None:
    """Every requested item id (duplicates counted) must be in the order that many times."""
    held = Counter(line["item_id"] for line in lines)
    wanted = Counter(requested)
    for item_id in requested:
        if wanted[item_id] > held[item_id]:
            raise broken("items_not_in_order", message(item_id))


def _variant_for(conn: Connection, product_id: str, item_id: str) -> Any:
    """A variant of the same product; a variant of another product does not count."""
    row = conn.execute(select(variants).where(variants.c.item_id == item_id)).mappings().first()
    if row is None or row["product_id"] != product_id:
        raise not_found("variant_not_found", "Variant not found")
    return row


def _swaps(conn: Connection, lines: list[Any], item_ids: list[str], new_item_ids: list[str],
           *, forbid_same: bool) -> tuple[list[tuple[int, Any]], int]:
    """(line position, new variant) per swap and the total price difference in cents.

    Each old id takes the first line holding it not yet taken, so duplicates map to distinct lines."""
    taken: set[int] = set()
    swaps: list[tuple[int, Any]] = []
    difference = 0
    for item_id, new_item_id in zip(item_ids, new_item_ids, strict=True):
        if forbid_same and item_id == new_item_id:
            raise broken("same_item", "The new item id should be different from the old item id")
        line = next((line for line in lines
                     if line["item_id"] == item_id and line["position"] not in taken), None)
        if line is None:
            raise broken("items_not_in_order", f"Item {item_id} not found")
        variant = _variant_for(conn, line["product_id"], new_item_id)
        if not variant["available"]:
            raise broken("new_item_unavailable", f"New item {new_item_id} not found or available")
        difference += variant["price_cents"] - line["price_cents"]
        taken.add(line["position"])
        swaps.append((line["position"], variant))
    return swaps, difference


def cancel_pending_order(conn: Connection, acting_user: str, order_id: str, reason: str) -> Json:
    """Cancel a pending order and refund every payment (gift cards at once)."""
    order = order_row(conn, order_id, acting_user, for_update=True)
    if order["status"] != "pending":
        raise broken("order_not_pending", "Non-pending order cannot be cancelled")
    if reason not in CANCEL_REASONS:
        raise broken("invalid_cancel_reason", "Invalid reason")
    payments = order_payments(conn, order_id)
    methods = [_payment_method(conn, order["user_id"], p["payment_method_id"]) for p in payments]
    for payment, method in zip(payments, methods, strict=True):
        _append_payment(conn, order_id, "refund", payment["amount_cents"], payment["payment_method_id"])
        if _is_gift_card(method):
            _add_balance(conn, method["id"], payment["amount_cents"])
    conn.execute(update(orders).where(orders.c.order_id == order_id)
                 .values(status="cancelled", cancel_reason=reason))
    return order_view(conn, order_id, acting_user)


def modify_pending_order_address(conn: Connection, acting_user: str, order_id: str,
                                 address: dict[str, str]) -> Json:
    """Change where a pending order ships."""
    order = order_row(conn, order_id, acting_user, for_update=True)
    if "pending" not in order["status"]:
        raise broken("order_not_pending", "Non-pending order cannot be modified")
    conn.execute(update(orders).where(orders.c.order_id == order_id).values(**address))
    return order_view(conn, order_id, acting_user)


def modify_pending_order_payment(conn: Connection, acting_user: str, order_id: str,
                                 payment_method_id: str) -> Json:
    """Move a pending order's single payment to another of the customer's payment methods."""
    order = order_row(conn, order_id, acting_user, for_update=True)
    if "pending" not in order["status"]:
        raise broken("order_not_pending", "Non-pending order cannot be modified")
    method = _payment_method(conn, order["user_id"], payment_method_id)
    payments = order_payments(conn, order_id)
    if len(payments) != 1 or payments[0]["transaction_type"] != "payment":
        raise broken("single_payment_required", "There should be exactly one payment for a pending order")
    old_method_id = payments[0]["payment_method_id"]
    if old_method_id == payment_method_id:
        raise broken("same_payment_method", "The new payment method should be different from the current one")
    amount = payments[0]["amount_cents"]
    if _is_gift_card(method) and method["balance_cents"] < amount:
        raise broken("insufficient_gift_card_balance", "Insufficient gift card balance to pay for the order")
    old_method = _payment_method(conn, order["user_id"], old_method_id)
    _append_payment(conn, order_id, "payment", amount, payment_method_id)
    _append_payment(conn, order_id, "refund", amount, old_method_id)
    if _is_gift_card(method):
        _add_balance(conn, payment_method_id, -amount)
    if _is_gift_card(old_method):
        _add_balance(conn, old_method_id, amount)
    return order_view(conn, order_id, acting_user)


def modify_pending_order_items(conn: Connection, acting_user: str, order_id: str, item_ids: list[str],
                               new_item_ids: list[str], payment_method_id: str) -> Json:
    """Swap items of a pending order for other variants of the same products (once per order)."""
    order = order_row(conn, order_id, acting_user, for_update=True)
    if order["status"] != "pending":
        raise broken("order_not_pending", "Non-pending order cannot be modified")
    lines = order_lines(conn, order_id)
    _check_counts(item_ids, lines, lambda item_id: f"{item_id} not found")
    if len(item_ids) != len(new_item_ids):
        raise broken("item_count_mismatch", "The number of items to be exchanged should match")
    swaps, difference = _swaps(conn, lines, item_ids, new_item_ids, forbid_same=True)
    method = _payment_method(conn, order["user_id"], payment_method_id)
    if _is_gift_card(method) and method["balance_cents"] < difference:
        raise broken("insufficient_gift_card_balance",
                     "Insufficient gift card balance to pay for the new item")
    kind = "payment" if difference > 0 else "refund"
    _append_payment(conn, order_id, kind, abs(difference), payment_method_id)
    if _is_gift_card(method):
        _add_balance(conn, payment_method_id, -difference)
    for position, variant in swaps:  # each line takes its own variant's price and options
        conn.execute(update(order_items)
                     .where(order_items.c.order_id == order_id, order_items.c.position == position)
                     .values(item_id=variant["item_id"], price_cents=variant["price_cents"],
                             options=variant["options"]))
    conn.execute(update(orders).where(orders.c.order_id == order_id).values(status="pending (item modified)"))
    return order_view(conn, order_id, acting_user)


def return_delivered_order_items(conn: Connection, acting_user: str, order_id: str, item_ids: list[str],
                                 payment_method_id: str) -> Json:
    """Request a return of delivered items, refunded to the original method or a gift card."""
    order = order_row(conn, order_id, acting_user, for_update=True)
    if order["status"] != "delivered":
        raise broken("order_not_delivered", "Non-delivered order cannot be returned")
    method = _payment_method(conn, order["user_id"], payment_method_id)
    payments = order_payments(conn, order_id)
    original = payments[0]["payment_method_id"] if payments else None
    if not _is_gift_card(method) and payment_method_id != original:
        raise broken("refund_to_original_method", "Payment method should be the original payment method")
    _check_counts(item_ids, order_lines(conn, order_id), lambda item_id: "Some item not found")
    conn.execute(update(orders).where(orders.c.order_id == order_id).values(
        status="return requested", return_items=sorted(item_ids), return_payment_method_id=payment_method_id))
    return order_view(conn, order_id, acting_user)


def exchange_delivered_order_items(conn: Connection, acting_user: str, order_id: str, item_ids: list[str],
                                   new_item_ids: list[str], payment_method_id: str) -> Json:
    """Request an exchange of delivered items for other variants of the same products."""
    order = order_row(conn, order_id, acting_user, for_update=True)
    if order["status"] != "delivered":
        raise broken("order_not_delivered", "Non-delivered order cannot be exchanged")
    lines = order_lines(conn, order_id)
    _check_counts(item_ids, lines, lambda item_id: f"Number of {item_id} not found.")
    if len(item_ids) != len(new_item_ids):
        raise broken("item_count_mismatch", "The number of items to be exchanged should match.")
    _, difference = _swaps(conn, lines, item_ids, new_item_ids, forbid_same=False)
    method = _payment_method(conn, order["user_id"], payment_method_id)
    if _is_gift_card(method) and method["balance_cents"] < difference:
        raise broken("insufficient_gift_card_balance",
                     "Insufficient gift card balance to pay for the price difference")
    conn.execute(update(orders).where(orders.c.order_id == order_id).values(
        status="exchange requested", exchange_items=sorted(item_ids), exchange_new_items=sorted(new_item_ids),
        exchange_payment_method_id=payment_method_id, exchange_price_difference_cents=difference))
    return order_view(conn, order_id, acting_user)


def modify_user_address(conn: Connection, acting_user: str, user_id: str, address: dict[str, str]) -> Json:
    """Change a customer's default address."""
    user_row(conn, user_id, acting_user)
    conn.execute(update(users).where(users.c.user_id == user_id).values(**address))
    return user_view(conn, user_id, acting_user)
