"""Plan-then-execute with scripted planners: replanning on a failed precondition, truthful stops."""

from __future__ import annotations

import json

from concierge import tool
from concierge.core import Principal
from concierge.core.errors import ToolError
from concierge.core.messages import UserMessage
from concierge.reasoning.plan import PlanExecutor
from concierge.testing import ScriptedModel
from concierge.tools.ledger import InMemoryLedger
from concierge.tools.pipeline import TransactionalExecutor
from concierge.tools.preconditions import Requires
from concierge.tools.registry import ToolRegistry
from concierge.tools.tool import ToolContext

EFFECTS: list[str] = []


@tool(effect="write", idempotent=True, confirm=False)
async def cancel_order(order_id: str) -> dict:
    """Cancel an order."""
    if order_id == "W9":
        raise ToolError("order W9 has already shipped and cannot be cancelled")  # a business rejection
    EFFECTS.append(f"cancel {order_id}")
    return {"order_id": order_id, "status": "cancelled"}


@tool(effect="write", idempotent=True, confirm=False, requires=[Requires("cancel_order", on=("order_id",))])
async def refund_order(order_id: str) -> dict:
    """Refund a cancelled order."""
    EFFECTS.append(f"refund {order_id}")
    return {"order_id": order_id, "refunded": True}


def _plan(*steps: dict, confidence: float = 0.8) -> str:
    return json.dumps({"goal": "cancel and refund", "confidence": confidence, "steps": list(steps)})


@tool(effect="write", idempotent=True)  # gated: runs only after the customer confirms
async def close_account(user_id: str) -> dict:
    """Close the account."""
    EFFECTS.append(f"close {user_id}")
    return {"closed": True}


def _run(model: ScriptedModel):
    ledger = InMemoryLedger()
    executor = TransactionalExecutor(ledger)
    planner = PlanExecutor(model, ToolRegistry([cancel_order, refund_order, close_account]), executor)
    context = ToolContext("s1", Principal("ann", scopes=frozenset({"*"})), {})
    return planner.run([UserMessage("Cancel W1 and refund it")], context), ledger


async def test_a_failed_precondition_leads_to_a_replan_from_the_current_state():
    EFFECTS.clear()
    model = ScriptedModel([
        _plan({"id": "1", "tool": "refund_order", "arguments": {"order_id": "W1"}}),  # forgot to cancel first
        _plan({"id": "1", "tool": "cancel_order", "arguments": {"order_id": "W1"}},
              {"id": "2", "tool": "refund_order", "arguments": {"order_id": "W1"}, "requires": ["1"]}),
    ])
    run, ledger = _run(model)
    outcome = await run
    assert outcome.stopped_by is None and outcome.replans == 1
    assert EFFECTS == ["cancel W1", "refund W1"]
    assert [s.kind for s in outcome.steps] == ["plan", "action", "replan", "action", "action"]
    replan_request = model.requests[1].messages
    assert "cancel_order(order_id='W1') has not been done" in replan_request[-1].content
    assert [e.tool for e in await ledger.entries("s1")] == ["cancel_order", "refund_order"]


async def test_a_failed_critical_step_stops_and_nothing_depending_on_it_runs():
    EFFECTS.clear()
    model = ScriptedModel([_plan(
        {"id": "1", "tool": "cancel_order", "arguments": {"order_id": "W9"}, "critical": True},
        {"id": "2", "tool": "refund_order", "arguments": {"order_id": "W9"}, "requires": ["1"]},
    )])
    outcome = await _run(model)[0]
    assert outcome.stopped_by == "critical_step_failed"
    assert EFFECTS == [] and outcome.done == []
    assert "already shipped" in outcome.not_done[0]
    assert len(outcome.not_done) == 1  # the refund was never reached: execution stopped at the critical step
    assert model.remaining == 0


async def test_a_non_critical_failure_skips_only_its_dependents():
    EFFECTS.clear()
    model = ScriptedModel([_plan(
        {"id": "1", "tool": "cancel_order", "arguments": {"order_id": "W9"}, "critical": False},
        {"id": "2", "tool": "refund_order", "arguments": {"order_id": "W9"}, "requires": ["1"]},
        {"id": "3", "tool": "cancel_order", "arguments": {"order_id": "W2"}},
    )])
    outcome = await _run(model)[0]
    assert outcome.stopped_by is None
    assert EFFECTS == ["cancel W2"]
    assert outcome.not_done[1] == "refund_order: not attempted, it depends on 1"


async def test_an_unusable_plan_is_recorded_and_nothing_runs():
    EFFECTS.clear()
    outcome = await _run(ScriptedModel(["I will just do it."]))[0]
    assert outcome.stopped_by == "unplannable" and EFFECTS == []
    assert outcome.steps[0].confidence == 0.0 and "unusable plan" in outcome.steps[0].text


async def test_a_gated_step_stops_the_plan_until_the_customer_confirms():
    EFFECTS.clear()
    model = ScriptedModel([_plan({"id": "1", "tool": "close_account", "arguments": {"user_id": "ann"}},
                                 {"id": "2", "tool": "cancel_order", "arguments": {"order_id": "W1"}})])
    outcome = await _run(model)[0]
    assert outcome.stopped_by == "awaiting_confirmation"
    assert EFFECTS == [] and outcome.results["1"].pending is not None
