from __future__ import annotations

import json
from typing import Annotated, Literal

import pytest
from pydantic import Field

from concierge.core import ToolArgumentsError, ToolCall, ToolDefinitionError, ToolNotFoundError
from concierge.tools import DirectExecutor, ToolContext, ToolRegistry, tool


@tool
def search_orders(
    email: Annotated[str, Field(description="Customer email")],
    status: Literal["pending", "delivered"] | None = None,
    limit: int = 10,
) -> list[str]:
    """Find a customer's orders.

    Longer explanation that the model does not need.
    """
    return [email, str(status), str(limit)]


def test_schema_comes_from_type_hints():
    schema = search_orders.parameters
    assert search_orders.description == "Find a customer's orders."
    assert schema["required"] == ["email"]
    assert schema["properties"]["email"] == {"type": "string", "description": "Customer email"}
    assert schema["properties"]["limit"] == {"type": "integer", "default": 10}
    assert {"enum": ["pending", "delivered"], "type": "string"} in schema["properties"]["status"]["anyOf"]


async def test_arguments_are_validated_and_coerced():
    assert await search_orders.invoke({"email": "a@b.c", "limit": "3"}) == ["a@b.c", "None", "3"]
    with pytest.raises(ToolArgumentsError, match="status"):
        await search_orders.invoke({"email": "a@b.c", "status": "lost"})
    with pytest.raises(ToolArgumentsError, match="email: Field required"):
        await search_orders.invoke({})


async def test_context_parameter_is_injected_not_exposed():
    @tool
    async def whoami(greeting: str, ctx: ToolContext) -> str:
        """Say who asks."""
        return f"{greeting} {ctx.principal.user_id}"

    assert "ctx" not in whoami.parameters["properties"]
    assert await whoami.invoke({"greeting": "hi"}, ToolContext("s", "alice")) == "hi alice"


def test_bad_definitions_are_refused_with_a_reason():
    def untyped(x):
        return x

    with pytest.raises(ToolDefinitionError, match="no type hint"):
        tool(untyped)
    with pytest.raises(ToolDefinitionError, match="not allowed"):
        tool(name="has space")(search_orders.function)
    with pytest.raises(ToolDefinitionError, match="two tools"):
        ToolRegistry([search_orders, search_orders])


def test_registry_lookup_names_the_alternatives():
    registry = ToolRegistry([search_orders])
    with pytest.raises(ToolNotFoundError, match="search_orders"):
        registry.get("refund")
    assert [s.name for s in registry.specs()] == ["search_orders"]


async def test_executor_turns_exceptions_into_error_outcomes():
    @tool
    def broken(order_id: str) -> str:
        """Always fails."""
        raise RuntimeError("backend down")

    outcome = await DirectExecutor().execute(broken, ToolCall("c1", "broken", {"order_id": "1"}), ToolContext("s", "u"))
    assert outcome.is_error and outcome.status == "failed"
    assert json.loads(outcome.error) == {"error": "tool_crashed", "message": "RuntimeError: backend down"}
    bad = await DirectExecutor().execute(broken, ToolCall("c2", "broken", {"order_id": 5}), ToolContext("s", "u"))
    assert bad.status == "refused" and json.loads(bad.error)["error"] == "invalid_arguments"
