"""The observe → think → act loop, driven by scripted models."""

from __future__ import annotations

import asyncio

import pytest

from concierge import Agent, Limits, Runtime, tool
from concierge.core import AssistantMessage, ToolResultMessage, Usage, ValidationError
from concierge.llm import ModelResponse
from concierge.runtime import DEFAULT_HANDOFF
from concierge.testing import FunctionModel, ScriptedModel, call

ORDERS = {"W1": {"order_id": "W1", "status": "delivered", "total": 54.04}}


@tool
async def get_order(order_id: str) -> dict:
    """Look up an order."""
    if order_id not in ORDERS:
        raise KeyError(f"no order {order_id}")
    return ORDERS[order_id]


@tool(writes=True, essential_fields=("order_id", "status"))
def cancel_order(order_id: str, reason: str) -> dict:
    """Cancel an order."""
    return {"order_id": order_id, "status": "cancelled", "reason": reason}


def make_runtime(model, **limits) -> Runtime:
    agent = Agent(instructions="You help customers.", model=model, tools=[get_order, cancel_order],
                  limits=Limits(**limits))
    return Runtime(agent)


async def test_tool_call_then_result_then_final_answer():
    model = ScriptedModel([call("get_order", order_id="W1"), "Your order W1 was delivered."])
    result = await make_runtime(model).turn("s1", "Where is W1?")

    assert result.reply == "Your order W1 was delivered."
    assert result.stopped_by is None
    assert [(s.kind, s.name) for s in result.steps] == [
        ("model", "scripted-model"), ("tool", "get_order"), ("model", "scripted-model")]
    tool_step = result.steps[1]
    assert tool_step.arguments == {"order_id": "W1"} and '"delivered"' in tool_step.result_summary
    # The second model call saw the tool result the first call asked for.
    second = model.requests[1].messages
    assert isinstance(second[-1], ToolResultMessage) and '"status":"delivered"' in second[-1].content
    assert result.usage.input_tokens > 0 and len(result.trace_id) == 32


async def test_max_steps_hands_off_without_confirming():
    model = FunctionModel(lambda messages, tools: call("get_order", order_id="W1"))
    result = await make_runtime(model, max_steps=3).turn("s1", "Where is W1?")

    assert result.stopped_by == "max_steps" and result.reply == DEFAULT_HANDOFF
    assert len(model.requests) == 3


async def test_timeout_hands_off_and_closes_the_unfinished_call():
    async def slow(messages, tools):
        await asyncio.sleep(5)
        return "too late"

    result = await make_runtime(FunctionModel(slow), timeout_s=0.05).turn("s1", "hello")
    assert result.stopped_by == "timeout" and result.reply == DEFAULT_HANDOFF


async def test_timeout_during_tool_leaves_every_call_answered():
    @tool
    async def slow_lookup(order_id: str) -> str:
        """Slow."""
        await asyncio.sleep(5)
        return "x"

    agent = Agent(instructions="x", model=ScriptedModel([call("slow_lookup", order_id="W1")]),
                  tools=[slow_lookup], limits=Limits(timeout_s=0.05))
    runtime = Runtime(agent)
    result = await runtime.turn("s1", "hi")
    assert result.stopped_by == "timeout"
    history = (await runtime.store.load("s1")).history
    calls = [c.id for m in history if isinstance(m, AssistantMessage) for c in m.tool_calls]
    answered = [m.tool_call_id for m in history if isinstance(m, ToolResultMessage)]
    assert calls == answered and "Not executed" in history[-2].content


async def test_token_budget_hands_off_and_reports_completed_writes():
    expensive = ModelResponse(AssistantMessage(tool_calls=(call("cancel_order", order_id="W1", reason="x"),)),
                              Usage(400, 50), "m")
    again = ModelResponse(AssistantMessage(tool_calls=(call("get_order", order_id="W1"),)), Usage(700, 50), "m")
    model = ScriptedModel([expensive, again])
    result = await make_runtime(model, max_tokens=1000).turn("s1", "cancel W1")

    assert result.stopped_by == "budget"
    assert result.reply.startswith(DEFAULT_HANDOFF)
    assert "cancel_order" in result.reply and "cancelled" in result.reply  # honest about what did happen
    assert [s.name for s in result.tool_calls] == ["cancel_order"]  # the over-budget call never ran


async def test_cost_budget_hands_off():
    pricey = ModelResponse(AssistantMessage(tool_calls=(call("get_order", order_id="W1"),)), Usage(10, 10, 0.5), "m")
    result = await make_runtime(ScriptedModel([pricey]), max_cost_usd=0.25).turn("s1", "hi")
    assert result.stopped_by == "budget" and result.tool_calls == []


async def test_loop_detection_blocks_third_identical_failing_call():
    model = ScriptedModel([call("get_order", order_id="NOPE")] * 3 + ["Sorry, I can't find that order."])
    result = await make_runtime(model).turn("s1", "Where is NOPE?")

    tool_steps = result.tool_calls
    assert len(tool_steps) == 3
    assert "no order NOPE" in tool_steps[0].result_summary and "failed twice" not in tool_steps[0].result_summary
    second_result = model.requests[2].messages[-1].content
    assert "failed twice" in second_result and "Do not repeat it" in second_result
    assert tool_steps[2].error.startswith("Not executed")
    assert model.requests[3].tool_choice == "none"  # after a blocked call the model must answer
    assert result.reply == "Sorry, I can't find that order."


async def test_loop_detection_counts_only_identical_calls():
    model = ScriptedModel([call("get_order", order_id="A"), call("get_order", order_id="B"),
                           call("get_order", order_id="A"), call("get_order", order_id="B"), "done"])
    result = await make_runtime(model).turn("s1", "x")
    assert all(not s.error.startswith("Not executed") for s in result.tool_calls)


async def test_unknown_tool_is_reported_to_the_model_not_raised():
    model = ScriptedModel([call("refund_everything"), "ok"])
    result = await make_runtime(model).turn("s1", "x")
    assert "There is no tool named 'refund_everything'" in result.tool_calls[0].error
    assert "get_order" in result.tool_calls[0].error


async def test_invalid_arguments_are_reported_to_the_model():
    model = ScriptedModel([call("get_order", order_id=["W1"]), "ok"])
    result = await make_runtime(model).turn("s1", "x")
    assert "invalid arguments for tool 'get_order'" in result.tool_calls[0].error
    assert "order_id" in result.tool_calls[0].error


async def test_write_result_is_pinned_in_the_next_turns_context():
    model = ScriptedModel([call("cancel_order", order_id="W1", reason="changed mind"), "Cancelled.", "Yes."])
    runtime = make_runtime(model)
    await runtime.turn("s1", "cancel W1")
    await runtime.turn("s1", "did it work?")
    system = model.requests[-1].messages[0].content
    assert 'cancel_order({"order_id":"W1","reason":"changed mind"}) succeeded' in system
    assert '"status":"cancelled"' in system


async def test_empty_model_reply_hands_off():
    result = await make_runtime(ScriptedModel(["   "])).turn("s1", "x")
    assert result.stopped_by == "empty_reply"


async def test_required_tool_choice_applies_to_the_first_call_only():
    model = ScriptedModel([call("get_order", order_id="W1"), "done"])
    agent = Agent(instructions="x", model=model, tools=[get_order], tool_choice="required")
    await Runtime(agent).turn("s1", "x")
    assert [r.tool_choice for r in model.requests] == ["required", "auto"]


@pytest.mark.parametrize(
    ("session_id", "message", "principal", "fragment"),
    [("", "hi", "u", "session id"), ("a b", "hi", "u", "session id"), ("s", "   ", "u", "empty"),
     ("s", "x" * 40_000, "u", "characters"), ("s", "hi", "", "principal"), ("s", 42, "u", "empty")],
)
async def test_bad_turn_input_is_rejected_with_a_clear_error(session_id, message, principal, fragment):
    runtime = make_runtime(ScriptedModel([]))
    with pytest.raises(ValidationError, match=fragment):
        await runtime.turn(session_id, message, principal)
    assert await runtime.store.load(session_id or "x") is None


async def test_a_repeated_successful_write_is_not_executed_twice():
    executed = []

    @tool(writes=True)
    def refund(order_id: str, amount: float) -> dict:
        """Refund an order."""
        executed.append(order_id)
        return {"order_id": order_id, "refunded": amount}

    model = ScriptedModel([call("refund", order_id="W1", amount=5), call("refund", amount=5, order_id="W1"),
                           "Refunded 5.00."])
    agent = Agent(instructions="x", model=model, tools=[refund])
    result = await Runtime(agent).turn("s1", "refund W1")

    assert executed == ["W1"]
    assert result.tool_calls[1].error == "repeated: not executed again"
    # The repeat is dropped from the conversation: the model answers from the real result.
    last_seen = model.requests[2].messages
    assert last_seen[-1].role == "tool" and '"refunded":5.0' in last_seen[-1].content
    assert sum(1 for m in last_seen if m.role == "assistant") == 1
    assert [r.tool_choice for r in model.requests] == ["auto", "auto", "none"]  # next step must answer
    assert result.reply == "Refunded 5.00."


async def test_a_repeat_next_to_a_new_call_gets_a_note_and_is_not_executed():
    executed = []

    @tool
    def lookup(order_id: str) -> str:
        """Look up."""
        executed.append(order_id)
        return f"order {order_id}"

    model = ScriptedModel([call("lookup", order_id="A"), [call("lookup", order_id="A"), call("lookup", order_id="B")],
                           "done"])
    result = await Runtime(Agent(instructions="x", model=model, tools=[lookup])).turn("s1", "x")
    assert executed == ["A", "B"]
    note = model.requests[2].messages[-2].content
    assert note.startswith("Not executed again") and "order A" in note
    assert model.requests[2].tool_choice == "none" and result.reply == "done"
