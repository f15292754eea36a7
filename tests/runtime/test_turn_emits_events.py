"""Every turn leaves its record on the bus: messages, model and tool calls, refusals, the reply."""

from __future__ import annotations

from concierge import Agent, Runtime, tool
from concierge.core import Principal
from concierge.core.events import AgentEvent, EventType
from concierge.testing import ScriptedModel, call
from concierge.tools.ledger import InMemoryLedger
from concierge.tools.pipeline import TransactionalExecutor


class ListSink:
    def __init__(self) -> None:
        self.events: list[AgentEvent] = []

    async def emit(self, event: AgentEvent) -> bool:
        self.events.append(event)
        return True


class BrokenSink:
    async def emit(self, event: AgentEvent) -> bool:
        raise OSError("the bus is down")


@tool
async def get_order(order_id: str) -> dict:
    """Look up an order."""
    return {"order_id": order_id, "status": "pending"}


@tool(effect="write", idempotent=True, scopes=("refund:write",))
async def refund(order_id: str) -> dict:
    """Refund an order."""
    return {"order_id": order_id, "refunded": True}


def _runtime(model, sink) -> Runtime:
    agent = Agent(instructions="You help.", model=model, tools=[get_order, refund], name="shop", version="2")
    return Runtime(agent, executor=TransactionalExecutor(InMemoryLedger()), events=sink)


async def test_a_turn_emits_its_steps_in_order_with_shared_fields():
    sink = ListSink()
    model = ScriptedModel([call("get_order", order_id="W1"), "W1 is pending."])
    principal = Principal("alice", tenant="acme")
    result = await _runtime(model, sink).turn("s1", "Where is W1?", principal)
    types = [e.type for e in sink.events]
    assert types == [EventType.MESSAGE_RECEIVED, EventType.LLM_CALL_START, EventType.LLM_CALL_END,
                     EventType.REASONING_STEP, EventType.TOOL_CALL_START, EventType.TOOL_CALL_END,
                     EventType.LLM_CALL_START, EventType.LLM_CALL_END, EventType.REASONING_STEP,
                     EventType.RESPONSE_SENT]
    assert {(e.tenant, e.conversation_id, e.turn, e.user_id, e.agent_version, e.trace_id) for e in sink.events} == {
        ("acme", "s1", 1, "alice", "shop@2", result.trace_id)}
    assert len({e.event_id for e in sink.events}) == len(sink.events)
    assert sink.events[0].payload == {"text": "Where is W1?"}
    assert sink.events[5].payload["status"] == "succeeded" and sink.events[5].payload["tool"] == "get_order"
    thought, response = (e.payload for e in sink.events if e.type == EventType.REASONING_STEP)
    assert thought["strategy"] == "react" and thought["kind"] == "thought"
    assert thought["action"] == {"tool": "get_order", "arguments": {"order_id": "W1"}}
    assert response["kind"] == "response" and response["text"] == "W1 is pending."
    assert [r.to_dict() for r in result.reasoning] == [thought, response]
    assert sink.events[-1].payload["text"] == "W1 is pending." and sink.events[-1].payload["input_tokens"] > 0


async def test_a_refused_call_is_a_safety_event_and_turn_numbers_advance():
    sink = ListSink()
    model = ScriptedModel(["Hello.", call("refund", order_id="W1"), "I cannot refund that."])
    runtime = _runtime(model, sink)
    await runtime.turn("s1", "Hi", Principal("bob"))
    await runtime.turn("s1", "Refund W1", Principal("bob"))  # no refund:write scope
    [denied] = [e for e in sink.events if e.type == EventType.PERMISSION_DENIED]
    assert denied.safety and denied.turn == 2 and denied.payload["tool"] == "refund"
    assert "refund:write" in denied.payload["reason"]


async def test_a_broken_sink_never_breaks_the_turn():
    model = ScriptedModel(["Hello."])
    result = await _runtime(model, BrokenSink()).turn("s1", "Hi")
    assert result.reply == "Hello."
