"""A supervisor delegates to specialists: least privilege, minimal context, failure handling, events."""

from __future__ import annotations

import json
from typing import Any

import pytest

from concierge import Agent, Runtime
from concierge.core import Principal
from concierge.core.errors import ConfigError, ModelError
from concierge.core.events import AgentEvent, EventType
from concierge.core.messages import ToolResultMessage, message_text
from concierge.runtime.multiagent import HandoffRecord, Specialist, supervisor_agent
from concierge.runtime.result import TurnResult
from concierge.testing import FunctionModel, ScriptedModel, call
from concierge.tools import (
    Compensation,
    EscalationRequired,
    InMemoryLedger,
    Tool,
    TransactionalExecutor,
    tool,
)

ALICE = Principal("alice", tenant="acme", scopes=frozenset({"order:read", "order:write", "refund:write"}))


class World:
    """The downstream systems, recording every call that really ran."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.refunded: dict[str, int] = {}


class ListSink:
    def __init__(self) -> None:
        self.events: list[AgentEvent] = []

    async def emit(self, event: AgentEvent) -> bool:
        self.events.append(event)
        return True


def order_tools(world: World) -> list[Tool]:
    @tool(scopes=("order:read",))
    def get_order(order_id: str) -> dict:
        """Look up an order."""
        world.calls.append(f"get {order_id}")
        return {"order_id": order_id, "status": "shipped"}

    @tool(effect="write", confirm=False, scopes=("order:write",))
    def cancel_order(order_id: str) -> dict:
        """Cancel an order."""
        world.calls.append(f"cancel {order_id}")
        return {"order_id": order_id, "cancelled": True}

    return [get_order, cancel_order]


def refund_tools(world: World, *, confirm: bool = False) -> list[Tool]:
    @tool(effect="write", confirm=confirm, scopes=("refund:write",),
          compensate=Compensation("void_refund", lambda args, result: {"order_id": args["order_id"]}))
    def refund(order_id: str, amount_cents: int) -> dict:
        """Refund an order."""
        world.calls.append(f"refund {order_id}")
        world.refunded[order_id] = world.refunded.get(order_id, 0) + amount_cents
        return {"order_id": order_id, "refunded": amount_cents}

    @tool(effect="write", confirm=False, scopes=("refund:write",))
    def void_refund(order_id: str) -> dict:
        """Undo a refund."""
        world.calls.append(f"void {order_id}")
        world.refunded.pop(order_id, None)
        return {"order_id": order_id, "voided": True}

    @tool(effect="write", confirm=False)
    def mark_disputed(order_id: str) -> dict:
        """Mark a refund as disputed: only a person may sort it out."""
        world.calls.append(f"dispute {order_id}")
        raise EscalationRequired("the payment provider reports a dispute on this order")

    return [refund, void_refund, mark_disputed]


def specialists(world: World, order_model: Any, refund_model: Any, *, refund_confirm: bool = False,
                max_attempts: int = 2) -> list[Specialist]:
    order = Specialist("order", "Answers questions about orders: status, delivery.",
                       Agent("You handle orders.", order_model, tools=order_tools(world), name="order"),
                       scopes=frozenset({"order:read"}), context_fields=("order_id",))
    refund = Specialist("refund", "Refunds orders.",
                        Agent("You handle refunds.", refund_model, tools=refund_tools(world, confirm=refund_confirm),
                              name="refund"),
                        scopes=frozenset({"refund:write"}), context_fields=("order_id", "amount_cents"),
                        max_attempts=max_attempts)
    return [order, refund]


def build(world: World, supervisor_model: Any, order_model: Any, refund_model: Any, *, sink: ListSink | None = None,
          refund_confirm: bool = False, max_attempts: int = 2, shared: bool = True) -> tuple[Runtime, InMemoryLedger]:
    ledger = InMemoryLedger()
    executor = TransactionalExecutor(ledger)

    @tool
    def lookup_customer(email: str) -> dict:
        """Find a customer by e-mail (the supervisor's own tool)."""
        world.calls.append(f"lookup {email}")
        return {"customer": email}

    agent = supervisor_agent(
        "You route customer requests to specialists.", supervisor_model,
        specialists(world, order_model, refund_model, refund_confirm=refund_confirm, max_attempts=max_attempts),
        tools=[lookup_customer], executor=executor if shared else None, events=sink)
    return Runtime(agent, executor=executor, events=sink), ledger


def handoff_value(result: TurnResult, name: str) -> dict[str, Any]:
    [message] = [m for m in result.new_messages if isinstance(m, ToolResultMessage) and m.name == name]
    assert not message.is_error, message.content
    return json.loads(message.content)


async def test_supervisor_hands_off_and_the_specialist_uses_its_own_tool():
    world = World()
    order_model = ScriptedModel([call("get_order", order_id="W1"), "W1 has shipped."])
    supervisor = ScriptedModel([call("handoff_to_order", task="Where is W1?", context={"order_id": "W1"}),
                                "Your order W1 has shipped."])
    runtime, _ = build(world, supervisor, order_model, ScriptedModel([]))
    result = await runtime.turn("s1", "Where is my order W1?", ALICE)
    assert result.stopped_by is None and result.reply == "Your order W1 has shipped."
    [step] = result.tool_calls
    assert (step.kind, step.name, step.error) == ("tool", "handoff_to_order", None)
    value = handoff_value(result, "handoff_to_order")
    assert value["specialist"] == "order" and value["status"] == "done" and value["attempts"] == 1
    assert value["reply"] == "W1 has shipped."
    assert value["tools"] == [{"name": "get_order", "status": "succeeded"}]
    assert value["session_id"] == "s1.:order"
    assert world.calls == ["get W1"]
    # The supervisor's model saw one handoff tool per specialist next to its own tool, each described.
    specs = {t.name: t.description for t in supervisor.requests[0].tools}
    assert set(specs) == {"lookup_customer", "handoff_to_order", "handoff_to_refund"}
    assert "Refunds orders." in specs["handoff_to_refund"]


async def test_a_specialist_tool_needing_a_scope_the_specialist_lacks_is_refused():
    world = World()
    # The order specialist has cancel_order in its registry but only order:read; alice has order:write.
    order_model = ScriptedModel([call("cancel_order", order_id="W1"), "I cannot cancel it."])
    supervisor = ScriptedModel([call("handoff_to_order", task="Cancel W1", context={"order_id": "W1"}),
                                "A colleague must cancel it."])
    runtime, _ = build(world, supervisor, order_model, ScriptedModel([]))
    result = await runtime.turn("s1", "Cancel W1", ALICE)
    assert handoff_value(result, "handoff_to_order")["tools"] == [{"name": "cancel_order", "status": "refused"}]
    assert "cancel W1" not in world.calls and world.calls == []
    refusal = next(m for m in order_model.requests[1].messages if isinstance(m, ToolResultMessage))
    assert "order:write" in refusal.content


async def test_a_tool_of_the_supervisor_or_another_specialist_is_not_available():
    world = World()
    order_model = ScriptedModel([
        [call("refund", order_id="W1", amount_cents=500), call("lookup_customer", email="a@x.io")],
        "I cannot do that.",
    ])
    supervisor = ScriptedModel([call("handoff_to_order", task="Refund W1"), "Sorry."])
    runtime, _ = build(world, supervisor, order_model, ScriptedModel([]))
    result = await runtime.turn("s1", "Refund W1", ALICE)
    assert handoff_value(result, "handoff_to_order")["tools"] == [
        {"name": "refund", "status": "unavailable"}, {"name": "lookup_customer", "status": "unavailable"}]
    assert world.calls == [] and world.refunded == {}
    assert {t.name for t in order_model.requests[0].tools} == {"get_order", "cancel_order"}


async def test_narrowing_is_an_intersection_the_parent_principal_limits_the_specialist():
    world = World()
    refund_model = ScriptedModel([call("refund", order_id="W1", amount_cents=500), "I may not refund."])
    supervisor = ScriptedModel([call("handoff_to_refund", task="Refund W1", context={"order_id": "W1"}), "No."])
    runtime, _ = build(world, supervisor, ScriptedModel([]), refund_model)
    reader = Principal("bob", tenant="acme", scopes=frozenset({"order:read"}))  # no refund:write
    result = await runtime.turn("s1", "Refund W1", reader)
    assert handoff_value(result, "handoff_to_refund")["tools"] == [{"name": "refund", "status": "refused"}]
    assert world.calls == [] and world.refunded == {}


def test_narrow_keeps_only_what_both_sides_allow():
    agent = Agent("x", ScriptedModel([]))
    spec = Specialist("refund", "Refunds.", agent, scopes=frozenset({"refund:write", "admin:*", "order:*"}))
    parent = Principal("u", tenant="t", scopes=frozenset({"refund:*", "order:read", "kb:read"}), customer_id="C1")
    child = spec.narrow(parent)
    assert child.scopes == frozenset({"refund:write", "order:read"})
    assert (child.user_id, child.tenant, child.customer_id) == ("u", "t", "C1")
    assert spec.narrow(Principal("u", scopes=frozenset({"*"}))).scopes == spec.scopes
    assert spec.narrow(Principal("u")).scopes == frozenset()


async def test_only_declared_context_keys_reach_the_child_model():
    world = World()
    order_model = ScriptedModel(["W1 has shipped."])
    supervisor = ScriptedModel([
        call("handoff_to_order", task="Status of W1?",
             context={"order_id": "W1", "card_number": "4111111111111111", "email": "alice@example.com"}),
        "Shipped.",
    ])
    runtime, _ = build(world, supervisor, order_model, ScriptedModel([]))
    result = await runtime.turn("s1", "Where is W1?", ALICE)
    value = handoff_value(result, "handoff_to_order")
    assert value["dropped_context"] == ["card_number", "email"]
    seen = " ".join(message_text(m) for r in order_model.requests for m in r.messages)
    assert "order_id: W1" in seen and "Status of W1?" in seen
    assert "4111111111111111" not in seen and "alice@example.com" not in seen and "card_number" not in seen


async def test_a_failing_specialist_is_retried_its_write_undone_and_the_supervisor_escalates():
    world = World()
    asked: list[int] = []

    def flaky(messages, tools):  # each attempt: refund, then the provider fails
        asked.append(len(messages))
        if len(asked) % 2:
            return call("refund", order_id="W1", amount_cents=500)
        raise ModelError("provider down")

    supervisor = ScriptedModel([call("handoff_to_refund", task="Refund W1",
                                     context={"order_id": "W1", "amount_cents": "500"})])
    runtime, ledger = build(world, supervisor, ScriptedModel([]), FunctionModel(flaky))
    result = await runtime.turn("s1", "Refund W1 please", ALICE)
    assert len(asked) == 4  # two attempts of two model calls each
    assert result.stopped_by == "escalated" and result.handed_off
    assert world.calls == ["refund W1", "void W1"]  # the retry replayed the refund from the ledger
    assert world.refunded == {}
    reason = result.escalation["reason"]
    assert "refund" in reason and "after 2 attempt(s)" in reason and "Undone: refund(" in reason
    assert result.escalation["tool"] == "handoff_to_refund"
    child = await ledger.entries("s1.:refund")
    assert {e.tool: e.status for e in child} == {"refund": "succeeded", "void_refund": "succeeded"}


async def test_an_empty_reply_is_retried_max_attempts_times_then_escalates():
    world = World()
    refund_model = ScriptedModel(["", "", ""])
    supervisor = ScriptedModel([call("handoff_to_refund", task="Refund W1")])
    runtime, _ = build(world, supervisor, ScriptedModel([]), refund_model, max_attempts=3)
    result = await runtime.turn("s1", "Refund W1", ALICE)
    assert refund_model.remaining == 0
    assert result.stopped_by == "escalated"
    assert "(empty_reply) after 3 attempt(s)" in result.escalation["reason"]


async def test_a_child_that_escalates_escalates_the_supervisor_without_retry():
    world = World()
    refund_model = ScriptedModel([call("mark_disputed", order_id="W1"), "unused"])
    supervisor = ScriptedModel([call("handoff_to_refund", task="W1 is disputed")])
    runtime, _ = build(world, supervisor, ScriptedModel([]), refund_model)
    result = await runtime.turn("s1", "Dispute W1", ALICE)
    assert result.stopped_by == "escalated" and len(refund_model.requests) == 1
    assert "refund specialist escalated" in result.escalation["reason"]
    assert "dispute" in result.escalation["reason"]


async def test_a_confirmation_is_relayed_and_the_next_handoff_continues_the_child_session():
    world = World()
    refund_model = ScriptedModel([call("refund", order_id="W1", amount_cents=500), "Refunded 5.00 on W1."])
    supervisor = ScriptedModel([
        call("handoff_to_refund", task="Refund W1", context={"order_id": "W1"}),
        "Please confirm: refund 5.00 on W1?",
        call("handoff_to_refund", task="yes"),
        "Done: W1 was refunded.",
    ])
    runtime, _ = build(world, supervisor, ScriptedModel([]), refund_model, refund_confirm=True)
    first = await runtime.turn("s1", "Refund W1", ALICE)
    value = handoff_value(first, "handoff_to_refund")
    assert value["status"] == "awaiting_confirmation" and "confirm" in value["reply"]
    assert value["tools"] == [{"name": "refund", "status": "needs_confirmation"}]
    assert world.calls == []
    second = await runtime.turn("s1", "yes", ALICE)
    value = handoff_value(second, "handoff_to_refund")
    assert value["status"] == "done" and value["tools"] == [{"name": "refund", "status": "succeeded"}]
    assert world.refunded == {"W1": 500} and second.reply == "Done: W1 was refunded."


async def test_the_supervisor_model_cannot_confirm_for_the_customer():
    """The child waits for a yes; the customer says no; the supervisor's model writes "yes" anyway."""
    world = World()
    refund_model = ScriptedModel([call("refund", order_id="W1", amount_cents=500), "Nothing was refunded."])
    supervisor = ScriptedModel([
        call("handoff_to_refund", task="Refund W1", context={"order_id": "W1"}),
        "Please confirm: refund 5.00 on W1?",
        call("handoff_to_refund", task="yes"),
        "OK.",
    ])
    runtime, _ = build(world, supervisor, ScriptedModel([]), refund_model, refund_confirm=True)
    await runtime.turn("s1", "Refund W1", ALICE)
    second = await runtime.turn("s1", "no, don't", ALICE)
    assert world.refunded == {} and world.calls == []
    assert refund_model.requests[-1].messages[-1].content != "yes"  # the child heard the customer
    value = handoff_value(second, "handoff_to_refund")
    assert value["tools"] == []


async def test_handoffs_are_events_and_the_child_turn_emits_its_own():
    world = World()
    sink = ListSink()
    order_model = ScriptedModel(["W1 has shipped."])
    supervisor = ScriptedModel([call("handoff_to_order", task="Status?", context={"order_id": "W1", "pin": "1"}),
                                "Shipped."])
    runtime, _ = build(world, supervisor, order_model, ScriptedModel([]), sink=sink)
    await runtime.turn("s1", "Where is W1?", ALICE)
    [handoff] = [e for e in sink.events if e.type == EventType.HANDOFF]
    assert handoff.conversation_id == "s1" and handoff.tenant == "acme"
    payload = handoff.payload
    assert (payload["from"], payload["to"], payload["task"], payload["status"], payload["attempts"]) == (
        "supervisor", "order", "Status?", "done", 1)
    assert payload["context_keys"] == ["order_id"] and payload["dropped_keys"] == ["pin"]
    assert any(e.conversation_id == "s1.:order" and e.type == EventType.RESPONSE_SENT for e in sink.events)


async def test_a_failed_handoff_is_an_event_too():
    sink = ListSink()
    supervisor = ScriptedModel([call("handoff_to_refund", task="Refund W1")])
    runtime, _ = build(World(), supervisor, ScriptedModel([]), ScriptedModel(["", ""]), sink=sink)
    await runtime.turn("s1", "Refund W1", ALICE)
    [handoff] = [e for e in sink.events if e.type == EventType.HANDOFF]
    assert handoff.payload["status"] == "failed" and handoff.payload["attempts"] == 2
    assert any(e.type == EventType.ESCALATED and e.conversation_id == "s1" for e in sink.events)


async def test_without_an_executor_the_child_shares_the_one_running_the_handoff():
    world = World()
    refund_model = ScriptedModel([call("refund", order_id="W1", amount_cents=500), "Refunded."])
    supervisor = ScriptedModel([call("handoff_to_refund", task="Refund W1"), "Done."])
    runtime, ledger = build(world, supervisor, ScriptedModel([]), refund_model, shared=False)
    await runtime.turn("s1", "Refund W1", ALICE)
    assert [e.tool for e in await ledger.entries("s1.:refund")] == ["refund"]


def test_record_to_dict_is_plain_json():
    record = HandoffRecord("order", "done", "ok", 1, (("get_order", "succeeded"),), ("pin",), "s1.:order")
    assert json.loads(json.dumps(record.to_dict()))["tools"] == [{"name": "get_order", "status": "succeeded"}]


def _agent(tools: list[Tool] | None = None) -> Agent:
    return Agent("You help.", ScriptedModel([]), tools=tools or [])


@pytest.mark.parametrize("kwargs", [
    {"name": "Bad Name"}, {"name": "1order"}, {"name": ""}, {"name": "x" * 60},
    {"description": "  "},
    {"scopes": frozenset({"Refund:Write"})}, {"scopes": "refund:write"}, {"scopes": frozenset({"refund write"})},
    {"context_fields": ("ok", "bad key")}, {"context_fields": "order_id"}, {"context_fields": ("a", "a")},
    {"max_attempts": 0}, {"max_attempts": True}, {"max_attempts": 1.5},
    {"agent": "not an agent"},
])
def test_a_bad_specialist_is_a_config_error(kwargs):
    base: dict[str, Any] = {"name": "order", "description": "Orders.", "agent": _agent()}
    with pytest.raises(ConfigError) as info:
        Specialist(**{**base, **kwargs})
    assert info.value.hint


def test_a_compensation_tool_the_specialist_lacks_is_a_config_error():
    world = World()
    refund = refund_tools(world)[0]  # undone by void_refund, which this agent does not have
    with pytest.raises(ConfigError, match="void_refund"):
        Specialist("refund", "Refunds.", _agent([refund]), scopes=frozenset({"refund:write"}))


def test_supervisor_definition_errors():
    one = Specialist("order", "Orders.", _agent())
    with pytest.raises(ConfigError, match="two specialists"):
        supervisor_agent("Route.", ScriptedModel([]), [one, Specialist("order", "Also orders.", _agent())])
    with pytest.raises(ConfigError, match="at least one"):
        supervisor_agent("Route.", ScriptedModel([]), [])

    @tool
    def handoff_to_order(task: str) -> str:
        """A clash."""
        return task

    with pytest.raises(ConfigError, match="handoff_to_order"):
        supervisor_agent("Route.", ScriptedModel([]), [one], tools=[handoff_to_order])


def test_a_long_parent_session_id_still_gives_a_valid_child_session():
    spec = Specialist("order", "Orders.", _agent())
    assert spec.session_id("s1") == "s1.:order"
    child = spec.session_id("s" * 128)
    assert len(child) <= 128 and child.endswith(".:order") and child == spec.session_id("s" * 128)


async def test_a_crashing_specialist_counts_as_a_failed_attempt():
    def broken(messages, tools):
        raise RuntimeError("bug in the specialist's model adapter")

    refund_model = FunctionModel(broken)
    supervisor = ScriptedModel([call("handoff_to_refund", task="Refund W1")])
    runtime, _ = build(World(), supervisor, ScriptedModel([]), refund_model)
    result = await runtime.turn("s1", "Refund W1", ALICE)
    assert len(refund_model.requests) == 2 and result.stopped_by == "escalated"
    assert "(crashed) after 2 attempt(s)" in result.escalation["reason"]
