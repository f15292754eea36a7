"""A turn's live events: tokens as they stream, tool calls as they start and finish, confirmations."""

from __future__ import annotations

from concierge import Agent, Runtime, tool
from concierge.core import Principal
from concierge.runtime.events import TurnEvent
from concierge.testing import ScriptedModel, call
from concierge.tools.ledger import InMemoryLedger
from concierge.tools.pipeline import TransactionalExecutor


@tool
async def get_order(order_id: str) -> dict:
    """Look up an order."""
    return {"order_id": order_id, "status": "pending"}


@tool(effect="write", confirm=True, idempotent=True, scopes=("orders:write",))
async def cancel_order(order_id: str) -> dict:
    """Cancel an order."""
    return {"order_id": order_id, "status": "cancelled"}


def _runtime(model) -> Runtime:
    agent = Agent(instructions="You help.", model=model, tools=[get_order, cancel_order])
    return Runtime(agent, executor=TransactionalExecutor(InMemoryLedger()))


async def test_tokens_and_tool_events_arrive_in_order_and_add_up_to_the_reply():
    events: list[TurnEvent] = []

    async def observe(event: TurnEvent) -> None:
        events.append(event)

    model = ScriptedModel([call("get_order", order_id="W1"), "Your order W1 is still pending."])
    result = await _runtime(model).turn("s1", "Where is W1?", observer=observe)
    kinds = [e.type for e in events]
    assert kinds[:2] == ["tool_started", "tool_finished"]
    assert events[0].data["name"] == "get_order" and events[0].data["arguments"] == {"order_id": "W1"}
    assert events[1].data["status"] == "succeeded" and events[1].data["latency_ms"] >= 0
    tokens = [e.data["text"] for e in events if e.type == "token"]
    assert len(tokens) == 6 and "".join(tokens) == result.reply == "Your order W1 is still pending."
    assert all(e.to_dict()["type"] == e.type for e in events)


async def test_a_gated_write_announces_the_confirmation_it_waits_for():
    events: list[TurnEvent] = []

    async def observe(event: TurnEvent) -> None:
        events.append(event)

    model = ScriptedModel([call("cancel_order", order_id="W1")])
    principal = Principal("u1", scopes=frozenset({"orders:write"}))
    result = await _runtime(model).turn("s1", "Cancel W1", principal, observer=observe)
    assert result.stopped_by == "awaiting_confirmation"
    finished = [e for e in events if e.type == "tool_finished"]
    assert finished[0].data["status"] == "pending"
    [asked] = [e for e in events if e.type == "confirmation_requested"]
    [action] = asked.data["actions"]
    assert action["tool"] == "cancel_order" and action["arguments"] == {"order_id": "W1"}
    assert action["id"] == result.pending_actions[0].id


async def test_a_turn_without_an_observer_does_not_stream():
    model = ScriptedModel(["Hello."])
    result = await _runtime(model).turn("s1", "Hi")
    assert result.reply == "Hello." and len(model.requests) == 1
