"""What a retail write needs before the customer is asked to confirm it, read from the store.

The confirmation gate asks the customer about an exact action; asking about one the store is
bound to refuse wastes their answer and teaches them that "Confirm" means nothing. So each
write first checks, as the identified customer, what the store would check: someone is
identified in this conversation, the order exists and is theirs, and it is in the state the
operation needs (pending to cancel or modify, delivered to return or exchange). A failed check
is a "Not done: …" refusal the model can act on, and no question is asked. The store still
enforces every rule itself when the write is sent; these checks only come first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ...core.errors import ToolError, ToolOutcomeUnknown, ToolTransientError
from ...tools.tool import ToolContext

IDENTIFY_FIRST = "Identify the customer first: find their user id by email, or by name and zip code"

Check = Callable[[dict[str, Any], ToolContext], Awaitable[str | None]]
# Reads an order as the context's customer: the store's order JSON, or a ToolError with its refusal.
ReadOrder = Callable[[str, ToolContext], Awaitable[Any]]

# tool -> (does an order status allow it, what the operation needs, the verb for the message)
ORDER_STATES: dict[str, tuple[Callable[[str], bool], str, str]] = {
    "cancel_pending_order": (lambda s: s == "pending", "pending", "cancelled"),
    "modify_pending_order_items": (lambda s: s == "pending", "pending", "modified"),
    "modify_pending_order_address": (lambda s: "pending" in s, "pending", "modified"),
    "modify_pending_order_payment": (lambda s: "pending" in s, "pending", "modified"),
    "return_delivered_order_items": (lambda s: s == "delivered", "delivered", "returned"),
    "exchange_delivered_order_items": (lambda s: s == "delivered", "delivered", "exchanged"),
}


def store_preconditions(read_order: ReadOrder, tool: str) -> tuple[Check, ...]:
    """The checks for one retail write (`Tool.requires`), reading orders with `read_order`."""

    async def customer_and_order(arguments: dict[str, Any], context: ToolContext) -> str | None:
        customer = context.customer_id
        if not customer:
            return IDENTIFY_FIRST
        if tool == "modify_user_address":
            user_id = arguments.get("user_id")
            if user_id != customer:
                return (f"user {user_id!r} is not the customer identified in this conversation ({customer}); "
                        "only their own address can be changed")
            return None
        rule = ORDER_STATES.get(tool)
        order_id = arguments.get("order_id")
        if rule is None or not isinstance(order_id, str):
            return None
        allowed, needed, verb = rule
        try:
            order = await read_order(order_id, context)
        except (ToolTransientError, ToolOutcomeUnknown):
            return None  # the store cannot be read now: it checks again itself when the write is sent
        except ToolError as exc:
            return f"order {order_id}: {exc.message}"
        status = str(order.get("status", "")) if isinstance(order, dict) else ""
        if not allowed(status):
            return f"order {order_id} is {status!r}; only a {needed} order can be {verb}"
        return None

    return (customer_and_order,)
