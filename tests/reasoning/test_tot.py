"""Tree-of-thought: three matching orders → ask; policy floors beat an over-confident model; no calls."""

from __future__ import annotations

import json

import pytest

from concierge import tool
from concierge.core.errors import ModelError
from concierge.core.messages import UserMessage
from concierge.reasoning.tot import TreeOfThought
from concierge.testing import ScriptedModel
from concierge.tools.registry import ToolRegistry

CALLS: list[str] = []


@tool(effect="write", idempotent=True)
async def cancel_pending_order(order_id: str) -> dict:
    """Cancel a pending order."""
    CALLS.append(order_id)
    return {"order_id": order_id}


@tool
async def get_order_details(order_id: str) -> dict:
    """Look up an order."""
    CALLS.append(order_id)
    return {"order_id": order_id}


REGISTRY = ToolRegistry([cancel_pending_order, get_order_details])
ASK = {"id": "a", "kind": "ask", "text": "Which of your three pending orders should I cancel?",
       "adequacy": 0.8, "risk": 0.05}
MOST_RECENT = {"id": "b", "kind": "act", "tool": "cancel_pending_order", "arguments": {"order_id": "#W3"},
               "adequacy": 0.9, "risk": 0.1}  # the model thinks acting on a guess is fine
ALL = {"id": "c", "kind": "act", "tool": "cancel_pending_order", "arguments": {"order_id": "#W1"},
       "adequacy": 0.4, "risk": 0.9}


def _model(*branches: dict) -> ScriptedModel:
    return ScriptedModel([json.dumps({"branches": list(branches)})])


async def test_three_matching_orders_make_it_ask_rather_than_act():
    CALLS.clear()
    choice = await TreeOfThought(_model(ASK, MOST_RECENT, ALL), REGISTRY).choose(
        [UserMessage("Cancel my order")], matching_entities=3)
    assert choice.branch.kind == "ask" and "Which" in choice.branch.text
    [step] = choice.steps
    assert step.strategy == "tot" and step.kind == "branch" and step.action is None
    assert len(step.alternatives) == 2 and any("risk 0.80" in a for a in step.alternatives)
    assert CALLS == []  # exploration never calls a tool


async def test_with_one_matching_order_the_adequate_act_wins():
    choice = await TreeOfThought(_model(dict(ASK, adequacy=0.6), MOST_RECENT), REGISTRY).choose(
        [UserMessage("Cancel order #W3")], matching_entities=1)
    assert choice.branch.id == "a"  # still the lower risk: asking is safe; risk 0.3 floor > 0.05
    bolder = TreeOfThought(_model(dict(ASK, adequacy=0.3), MOST_RECENT), REGISTRY)
    chosen = await bolder.choose([UserMessage("Cancel order #W3")], matching_entities=1)
    assert chosen.branch.id == "b" and chosen.risk == 0.3  # the question is not adequate: act, at the floor
    assert chosen.steps[0].action is not None and chosen.steps[0].action.tool == "cancel_pending_order"


async def test_reads_keep_the_models_risk_and_unknown_tools_are_never_safe():
    lookup = {"id": "r", "kind": "act", "tool": "get_order_details", "arguments": {"order_id": "#W3"},
              "adequacy": 0.7, "risk": 0.0}
    ghost = {"id": "g", "kind": "act", "tool": "delete_everything", "adequacy": 1.0, "risk": 0.0}
    choice = await TreeOfThought(_model(ghost, lookup), REGISTRY).choose([UserMessage("Where is #W3?")])
    assert choice.branch.id == "r" and choice.risk == 0.0


async def test_unusable_branches_are_a_model_error():
    with pytest.raises(ModelError, match="unusable"):
        await TreeOfThought(ScriptedModel(["just cancel it"]), REGISTRY).choose([UserMessage("Cancel")])
