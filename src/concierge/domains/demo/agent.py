"""The demo shop: a few customers' orders and the tools an agent uses to serve them.

State lives in a `DemoShop` instance (not module globals), so every demo run and test starts
from the same orders and a cancellation really changes what the next lookup returns.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from ...core.errors import ToolError
from ...llm.base import ChatModel, ModelSettings
from ...runtime.agent import Agent, Limits
from ...tools.tool import Tool, make_tool

INSTRUCTIONS = (
    "You are the customer-service agent of a small online shop. Use the tools to look up "
    "orders and to cancel them. Only cancel an order the customer asked to cancel, and only "
    "if its status is 'pending'. Answer briefly and only with facts from tool results."
)

_ORDERS: dict[str, dict[str, Any]] = {
    "W1001": {"order_id": "W1001", "email": "jane@example.com", "status": "delivered",
              "items": ["wireless headphones"], "total": 129.99},
    "W1002": {"order_id": "W1002", "email": "jane@example.com", "status": "pending",
              "items": ["running shoes", "socks"], "total": 84.50},
    "W2001": {"order_id": "W2001", "email": "sam@example.com", "status": "shipped",
              "items": ["desk lamp"], "total": 39.00},
}

# The scripted customer of `concierge demo`.
DEMO_CONVERSATION = (
    "Hi, my email is jane@example.com. Which orders do I have?",
    "What is the status of order W1002?",
    "Please cancel order W1002, I changed my mind.",
    "Yes, please go ahead.",
)


@dataclass
class DemoShop:
    orders: dict[str, dict[str, Any]] = field(default_factory=lambda: copy.deepcopy(_ORDERS))

    def tools(self) -> list[Tool]:
        shop = self

        def find_orders(email: str) -> list[dict[str, Any]]:
            """List the orders of the customer with this email address."""
            found = [{"order_id": o["order_id"], "status": o["status"]}
                     for o in shop.orders.values() if o["email"] == email.strip().lower()]
            if not found:
                raise ToolError(f"no orders for {email!r}", hint="check the email address with the customer")
            return found

        def get_order(order_id: str) -> dict[str, Any]:
            """Show one order: status, items and total."""
            order = shop.orders.get(order_id.strip().upper())
            if order is None:
                raise ToolError(f"order {order_id!r} does not exist", hint="order ids look like W1001")
            return {k: v for k, v in order.items() if k != "email"}

        def cancel_order(order_id: str, reason: str) -> dict[str, Any]:
            """Cancel a pending order and refund it to the original payment method."""
            order = shop.orders.get(order_id.strip().upper())
            if order is None:
                raise ToolError(f"order {order_id!r} does not exist", hint="order ids look like W1001")
            if order["status"] != "pending":
                raise ToolError(f"order {order['order_id']} is {order['status']} and cannot be cancelled")
            order["status"] = "cancelled"
            return {"order_id": order["order_id"], "status": "cancelled", "refund": order["total"],
                    "reason": reason}

        return [
            make_tool(find_orders),
            make_tool(get_order, essential_fields=("order_id", "status")),
            make_tool(cancel_order, writes=True, essential_fields=("order_id", "status", "refund")),
        ]


def make_demo_agent(model: ChatModel, shop: DemoShop | None = None, *, limits: Limits | None = None,
                    model_settings: ModelSettings | None = None) -> Agent:
    """The demo agent. Its first model call of each turn must use a tool: every demo request
    needs a lookup or an action, and small local models otherwise answer from thin air."""
    return Agent(
        name="demo-shop",
        instructions=INSTRUCTIONS,
        model=model,
        tools=(shop or DemoShop()).tools(),
        tool_choice="required",
        limits=limits or Limits(max_steps=4, timeout_s=300),
        model_settings=model_settings or ModelSettings(temperature=0.0, max_tokens=96),
    )
