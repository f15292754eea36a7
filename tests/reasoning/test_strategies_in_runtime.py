"""Strategies run by the runtime: each step a complete ReasoningStep in the result, on the span, on the bus."""

from __future__ import annotations

import json

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from concierge import tool
from concierge.core import Principal
from concierge.core.errors import ConfigError, ToolError, ValidationError
from concierge.core.events import EventType
from concierge.reasoning.routed import IdsInConversation, Routed, TextFeatures, amounts, strategy_named
from concierge.reasoning.strategies import PlanThenExecute, ReAct, TreeOfThoughtStrategy
from concierge.runtime import Agent, Runtime
from concierge.testing import ScriptedModel, call
from concierge.tools.ledger import InMemoryLedger
from concierge.tools.pipeline import TransactionalExecutor
from concierge.tools.preconditions import Requires

EFFECTS: list[str] = []
ORDERS = {"#W1": "pending", "#W2": "pending", "#W3": "pending", "#W9": "delivered"}


@tool
async def get_user_details(user_id: str) -> dict:
    """The customer's orders."""
    return {"user_id": user_id, "orders": sorted(o for o, s in ORDERS.items() if s == "pending")}


@tool(effect="write", idempotent=True, confirm=False)
async def cancel_order(order_id: str) -> dict:
    """Cancel an order."""
    if ORDERS.get(order_id) != "pending":
        raise ToolError(f"order {order_id} is not pending and cannot be cancelled")
    EFFECTS.append(f"cancel {order_id}")
    return {"order_id": order_id, "status": "cancelled"}


@tool(effect="write", idempotent=True, confirm=False, requires=[Requires("cancel_order", on=("order_id",))])
async def refund_order(order_id: str) -> dict:
    """Refund a cancelled order."""
    EFFECTS.append(f"refund {order_id}")
    return {"order_id": order_id, "refunded": True}


class Sink:
    def __init__(self) -> None:
        self.events: list = []

    async def emit(self, event) -> None:  # type: ignore[no-untyped-def]
        self.events.append(event)


def _runtime(model: ScriptedModel, strategy, sink: Sink | None = None, tracer=None) -> Runtime:  # type: ignore[no-untyped-def]
    EFFECTS.clear()
    agent = Agent(instructions="You help customers.", model=model,
                  tools=[get_user_details, cancel_order, refund_order])
    return Runtime(agent, executor=TransactionalExecutor(InMemoryLedger()), events=sink, strategy=strategy,
                   tracer=tracer)


ANN = Principal("ann", scopes=frozenset({"*"}))


def _plan(*steps: dict, confidence: float = 0.8) -> str:
    return json.dumps({"goal": "cancel and refund", "confidence": confidence, "steps": list(steps)})


def _complete(result) -> None:  # type: ignore[no-untyped-def]
    assert result.reasoning, "no reasoning steps recorded"
    for step in result.reasoning:
        assert step.strategy in ("react", "plan", "tot") and step.kind and step.text.strip()
        assert 0.0 <= step.confidence <= 1.0 and step.latency_ms >= 0
        if step.kind in ("thought", "action"):
            assert step.action is not None and step.action.tool


async def test_plan_replans_after_a_failed_precondition_then_reports():
    sink = Sink()
    model = ScriptedModel([
        _plan({"id": "1", "tool": "refund_order", "arguments": {"order_id": "#W1"}}),  # forgot to cancel
        _plan({"id": "1", "tool": "cancel_order", "arguments": {"order_id": "#W1"}},
              {"id": "2", "tool": "refund_order", "arguments": {"order_id": "#W1"}, "requires": ["1"]}),
        "Order #W1 is cancelled and refunded.",
    ])
    result = await _runtime(model, PlanThenExecute(), sink).turn("s1", "Cancel #W1 and refund it", ANN)
    assert result.reply == "Order #W1 is cancelled and refunded." and result.stopped_by is None
    assert EFFECTS == ["cancel #W1", "refund #W1"]
    assert [(s.strategy, s.kind) for s in result.reasoning] == [
        ("plan", "plan"), ("plan", "action"), ("plan", "replan"), ("plan", "action"), ("plan", "action"),
        ("plan", "response")]
    _complete(result)
    # Plan steps are tool calls of the turn: in its trace, and answered in its conversation.
    assert [s.name for s in result.tool_calls] == ["refund_order", "cancel_order", "refund_order"]
    events = [e.payload for e in sink.events if e.type == EventType.REASONING_STEP]
    assert events == [s.to_dict() for s in result.reasoning]
    assert model.requests[-1].tool_choice == "none"  # the report cannot act again
    # The planning calls are the turn's model calls too: in its trace and its usage.
    model_steps = [s for s in result.steps if s.kind == "model"]
    assert len(model_steps) == 3 and result.usage.input_tokens == sum(s.input_tokens for s in model_steps)
    assert model.requests[0].response_format is not None and model.requests[0].tools == ()


async def test_a_failed_critical_step_is_told_truthfully_and_nothing_depending_on_it_runs():
    model = ScriptedModel([_plan(
        {"id": "1", "tool": "cancel_order", "arguments": {"order_id": "#W9"}, "critical": True},
        {"id": "2", "tool": "refund_order", "arguments": {"order_id": "#W9"}, "requires": ["1"]})])
    result = await _runtime(model, PlanThenExecute()).turn("s1", "Cancel #W9 and refund it", ANN)
    assert result.stopped_by == "critical_step_failed"
    assert EFFECTS == [] and [s.name for s in result.tool_calls] == ["cancel_order"]
    assert result.reply.startswith("I could not complete your request.")
    assert "not pending" in result.reply and "refund" not in result.reply.split("Not done:")[0]
    assert len(model.requests) == 1  # the reply is built from the outcome, not written by the model
    _complete(result)


async def test_tot_asks_when_three_orders_match_and_executes_nothing():
    model = ScriptedModel([
        call("get_user_details", user_id="ann"), "You have three pending orders.",
        json.dumps({"branches": [
            {"id": "a", "kind": "ask", "text": "Which of your orders #W1, #W2 or #W3 should I cancel?",
             "adequacy": 0.8, "risk": 0.05},
            {"id": "b", "kind": "act", "tool": "cancel_order", "arguments": {"order_id": "#W3"},
             "adequacy": 0.9, "risk": 0.1},  # the model thinks acting on the most recent is fine
        ]}),
    ])
    runtime = _runtime(model, strategy_named("router", entities=IdsInConversation(r"#W\d")))
    await runtime.turn("s1", "What orders do I have?", ANN)  # ReAct: the orders get listed
    result = await runtime.turn("s1", "Cancel my order", ANN)
    assert result.reply == "Which of your orders #W1, #W2 or #W3 should I cancel?"
    assert EFFECTS == [] and result.tool_calls == []
    route, branch = result.reasoning
    assert (route.strategy, route.kind) == ("tot", "route") and "3 entities match" in route.text
    assert branch.kind == "branch" and branch.text.startswith("chose ask") and branch.alternatives
    _complete(result)


async def test_tot_runs_its_chosen_read_action_through_the_executor_then_answers():
    model = ScriptedModel([
        json.dumps({"branches": [{"id": "a", "kind": "act", "tool": "get_user_details",
                                  "arguments": {"user_id": "ann"}, "adequacy": 0.9, "risk": 0.0}]}),
        "You have #W1, #W2 and #W3 pending.",
    ])
    result = await _runtime(model, TreeOfThoughtStrategy()).turn("s1", "What is pending?", ANN)
    assert result.reply == "You have #W1, #W2 and #W3 pending."
    assert [s.name for s in result.tool_calls] == ["get_user_details"]
    assert [(s.strategy, s.kind) for s in result.reasoning] == [("tot", "branch"), ("tot", "response")]


async def test_react_records_the_models_thought_and_asks_instead_of_a_low_confidence_write():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    from concierge.core.messages import AssistantMessage, ToolCall

    unsure = AssistantMessage(content="Probably #W2, confidence 0.2",
                              tool_calls=(ToolCall("c1", "cancel_order", {"order_id": "#W2"}),))
    model = ScriptedModel([unsure, "Which order do you mean: #W1, #W2 or #W3?"])
    result = await _runtime(model, ReAct(ask_below=0.4), tracer=provider.get_tracer("t")).turn(
        "s1", "cancel the blue one", ANN)
    assert EFFECTS == [] and result.reply.startswith("Which order")
    thought, response = result.reasoning
    assert response.kind == "response"
    assert thought.text == "Probably #W2, confidence 0.2" and thought.confidence == 0.2
    assert thought.action is not None and thought.action.tool == "cancel_order"
    assert model.requests[1].tool_choice == "none"
    [turn_span] = [s for s in exporter.get_finished_spans() if s.name == "concierge.turn"]
    assert turn_span.attributes["concierge.session_id"] == "s1"  # the turn's trace holds its model and tool spans


async def test_react_acts_when_confident_and_unrated_thoughts_get_the_neutral_value():
    model = ScriptedModel([call("cancel_order", order_id="#W1"), "Cancelled #W1."])
    result = await _runtime(model, None).turn("s1", "cancel #W1", ANN)  # the default strategy is ReAct
    assert EFFECTS == ["cancel #W1"]
    assert result.reasoning[0].confidence == 0.5 and result.reasoning[0].text == "call cancel_order"


@pytest.mark.parametrize(("message", "earlier", "strategy"), [
    ("where is my order?", [], "react"),
    ("cancel #W1", [], "react"),
    ("cancel #W1 and refund it", [], "plan"),
    ("cancel my order", ["#W1 #W2 #W3"], "tot"),
    ("cancel my order", ["#W1"], "react"),
    ("refund $750 on #W1", [], "tot"),
    ("refund $75 on #W1", [], "react"),
])
def test_features_from_the_turn_feed_the_router(message, earlier, strategy):
    from concierge.core.messages import ToolResultMessage
    from concierge.reasoning.router import RuleRouter

    class Driver:
        user_message = message
        conversation_turns = 2
        registry = Agent(instructions="x", model=ScriptedModel([]),
                         tools=[get_user_details, cancel_order, refund_order]).registry
        tool_results = (ToolResultMessage(f"c{i}", "get_user_details", text) for i, text in enumerate(earlier))

    features = TextFeatures(IdsInConversation(r"#W\d"))(Driver())  # type: ignore[arg-type]
    assert RuleRouter().route(features).strategy == strategy


def test_amounts_and_bad_configuration():
    assert amounts("refund $1,250.50 and $3") == [1250.5, 3.0]
    with pytest.raises(ConfigError):
        strategy_named("greedy")
    with pytest.raises(ConfigError):
        Routed(strategies={"react": ReAct()})
    with pytest.raises(ValidationError):
        ReAct(ask_below=2)
    with pytest.raises(ValidationError):
        PlanThenExecute(max_replans=-1)
