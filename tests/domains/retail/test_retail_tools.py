"""The retail tools present tau2's interface exactly, and `calculate` answers as tau2's does."""

from __future__ import annotations

import httpx
import pytest

from concierge.core.errors import ToolError
from concierge.domains.retail.calculator import calculate
from concierge.domains.retail.tools import retail_tools

TAU2_INTERFACE: dict[str, list[str]] = {
    "find_user_id_by_email": ["email"],
    "find_user_id_by_name_zip": ["first_name", "last_name", "zip"],
    "get_user_details": ["user_id"],
    "get_order_details": ["order_id"],
    "get_product_details": ["product_id"],
    "get_item_details": ["item_id"],
    "list_all_product_types": [],
    "cancel_pending_order": ["order_id", "reason"],
    "modify_pending_order_items": ["order_id", "item_ids", "new_item_ids", "payment_method_id"],
    "modify_pending_order_address": ["order_id", "address1", "address2", "city", "state", "country", "zip"],
    "modify_pending_order_payment": ["order_id", "payment_method_id"],
    "modify_user_address": ["user_id", "address1", "address2", "city", "state", "country", "zip"],
    "return_delivered_order_items": ["order_id", "item_ids", "payment_method_id"],
    "exchange_delivered_order_items": ["order_id", "item_ids", "new_item_ids", "payment_method_id"],
    "calculate": ["expression"],
    "transfer_to_human_agents": ["summary"],
}
WRITES = {"cancel_pending_order", "modify_pending_order_items", "modify_pending_order_address",
          "modify_pending_order_payment", "modify_user_address", "return_delivered_order_items",
          "exchange_delivered_order_items"}


@pytest.mark.parametrize("confirm", [True, False])
def test_names_arguments_and_effects_are_tau2s(confirm: bool) -> None:
    tools = {tool.name: tool for tool in retail_tools(httpx.AsyncClient(), confirm=confirm)}
    assert {name: list(tool.parameters.get("properties", {})) for name, tool in tools.items()} == TAU2_INTERFACE
    for name, tool in tools.items():
        assert tool.parameters.get("required", []) == TAU2_INTERFACE[name]
        assert tool.description and tool.description != name
        if name in WRITES:
            assert (tool.effect, tool.idempotent, tool.scopes, tool.needs_confirmation) == (
                "write", True, frozenset({"retail:write"}), confirm)
        else:
            assert tool.effect == "read" and not tool.scopes
    items = tools["modify_pending_order_items"].parameters["properties"]["item_ids"]
    assert items == {"type": "array", "items": {"type": "string"}, "description": items["description"]}


@pytest.mark.parametrize(("expression", "expected"), [
    ("3131.1 + 4777.75 + 367.38", "8276.23"),
    ("10 / 4", "2.5"),
    ("2 * (3 + 4)", "14.0"),
    ("-3 * -(2)", "6.0"),
    ("2 ** 0.5", "1.41"),
    ("1 / 3", "0.33"),
])
def test_calculate_rounds_to_two_decimals_as_text(expression: str, expected: str) -> None:
    assert calculate(expression) == expected


@pytest.mark.parametrize(("expression", "message"), [
    ("abs(-2)", "Invalid characters in expression"),
    ("2 % 3", "Invalid characters in expression"),
    ("1 / 0", "division by zero"),
    ("2 +", "invalid syntax (<string>, line 1)"),
    ("(1", "'(' was never closed (<string>, line 1)"),
    ("9 ** 99999", "Exponent too large"),
])
def test_calculate_refuses_what_tau2_refuses(expression: str, message: str) -> None:
    with pytest.raises(ToolError) as caught:
        calculate(expression)
    assert caught.value.message == message
