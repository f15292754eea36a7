"""Measures for the retail store's write tools: what each would refund, read from the store first.

Each measure reads the order (and, where needed, the new items' prices and the customer's
payment methods) over the store's HTTP API as the session's customer, in the session's tenant's
store (the tools' `X-Tenant` header), and computes the money
exactly as the store's operations will, in cents:

- `cancel_pending_order`: every payment-history amount of the order is refunded;
- `return_delivered_order_items`: the returned lines' prices;
- `exchange_delivered_order_items`, `modify_pending_order_items`: the price difference, a
  refund when the new items are cheaper (a charge is no refund, but its payment method counts);
- `modify_pending_order_payment`: no refund on balance (the old method gets back what the new
  one pays), only the new payment method's kind.

The payment method's kind is its `source` in the customer's record. Anything the measure cannot
find (no customer identified, unknown order or item, a method that is not the customer's, the
store down) raises, and the call is refused. Address changes move no money and are not measured.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from ...guardrails.caps import Exposure, Measure, MeasureError
from ...tools.http import call_api
from ...tools.tool import ToolContext
from .tools import tenant_header

Json = dict[str, Any]


class _Store:
    """Reads from the store as the session's customer; a read never carries an idempotency key."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    @staticmethod
    def customer(context: ToolContext) -> str:
        if not context.customer_id:
            raise MeasureError("no customer is identified in this conversation yet")
        return str(context.customer_id)

    async def get(self, path: str, context: ToolContext, *, acting: bool = True) -> Json:
        headers = tenant_header(context)
        if acting:
            headers["X-Acting-User"] = self.customer(context)
        try:
            found = await call_api(self.client, "GET", path, None, headers=headers)
        except Exception as exc:
            raise MeasureError(f"could not read {path} from the store: {exc}") from exc
        if not isinstance(found, dict):
            raise MeasureError(f"the store answered {path} with {type(found).__name__}, not an object")
        return found

    async def order(self, order_id: str, context: ToolContext) -> Json:
        return await self.get("/orders/" + quote(order_id, safe=""), context)

    async def price_cents(self, item_id: str, context: ToolContext) -> int:
        item = await self.get("/items/" + quote(item_id, safe=""), context, acting=False)
        return _cents(item.get("price"), f"item {item_id}")

    async def kind(self, payment_method_id: str, context: ToolContext) -> str:
        user = self.customer(context)
        record = await self.get("/users/" + quote(user, safe=""), context)
        method = (record.get("payment_methods") or {}).get(payment_method_id)
        if not isinstance(method, dict) or not method.get("source"):
            raise MeasureError(f"payment method {payment_method_id} is not one of this customer's")
        return str(method["source"])


def _cents(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MeasureError(f"{what} has no price in the store's answer")
    return round(value * 100)


def _lines_for(order: Json, item_ids: list[str]) -> list[Json]:
    """The order's line for each requested id, a duplicate id taking the next line holding it."""
    taken: set[int] = set()
    lines = list(order.get("items") or [])
    found = []
    for item_id in item_ids:
        index = next((i for i, line in enumerate(lines) if line.get("item_id") == item_id and i not in taken), None)
        if index is None:
            raise MeasureError(f"item {item_id} is not in order {order.get('order_id')} (as many times as asked)")
        taken.add(index)
        found.append(lines[index])
    return found


def retail_measures(client: httpx.AsyncClient) -> dict[str, Measure]:
    """Measures for the retail write tools, reading the store behind `client` (the tools' own client)."""
    store = _Store(client)

    async def cancel(arguments: Json, context: ToolContext) -> Exposure:
        order = await store.order(arguments["order_id"], context)
        history = order.get("payment_history") or []
        refund = sum(_cents(p.get("amount"), "a payment") for p in history)
        kinds = [await store.kind(p["payment_method_id"], context) for p in history]
        return Exposure(refund_usd=refund / 100, payment_method=kinds[0] if kinds else None,
                        payment_methods=tuple(kinds[1:]), order_id=arguments["order_id"])

    async def give_back(arguments: Json, context: ToolContext) -> Exposure:
        order = await store.order(arguments["order_id"], context)
        refund = sum(_cents(line.get("price"), "an order line") for line in _lines_for(order, arguments["item_ids"]))
        return Exposure(refund_usd=refund / 100, payment_method=await store.kind(arguments["payment_method_id"], context),
                        order_id=arguments["order_id"])

    async def swap(arguments: Json, context: ToolContext) -> Exposure:
        item_ids, new_item_ids = arguments["item_ids"], arguments["new_item_ids"]
        if len(item_ids) != len(new_item_ids):
            raise MeasureError("item_ids and new_item_ids must be as many")
        order = await store.order(arguments["order_id"], context)
        old = sum(_cents(line.get("price"), "an order line") for line in _lines_for(order, item_ids))
        new = sum([await store.price_cents(item_id, context) for item_id in new_item_ids])
        return Exposure(refund_usd=max(old - new, 0) / 100,
                        payment_method=await store.kind(arguments["payment_method_id"], context),
                        order_id=arguments["order_id"])

    async def repay(arguments: Json, context: ToolContext) -> Exposure:
        await store.order(arguments["order_id"], context)  # the customer's, and it exists
        return Exposure(refund_usd=0.0, payment_method=await store.kind(arguments["payment_method_id"], context),
                        order_id=arguments["order_id"])

    return {
        "cancel_pending_order": cancel,
        "return_delivered_order_items": give_back,
        "exchange_delivered_order_items": swap,
        "modify_pending_order_items": swap,
        "modify_pending_order_payment": repay,
    }


__all__ = ["retail_measures"]
