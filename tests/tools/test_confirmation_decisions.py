"""Confirm / Decline as structured decisions, and declined or refused actions not asked again."""

from __future__ import annotations

import pytest

from concierge import Agent, Runtime
from concierge.core import Principal
from concierge.core.errors import ToolError, ValidationError
from concierge.core.messages import UserMessage
from concierge.testing import ScriptedModel, call
from concierge.tools import ActionNotPending, Decision, InMemoryLedger, TransactionalExecutor, tool
from concierge.tools.confirmation import PendingAction, asks_for, pending_actions

DONE: list[str] = []
WHO = Principal("u1", scopes=frozenset({"orders:write"}))


@tool(effect="write", scopes=["orders:write"], confirm=True)
def cancel_order(order_id: str) -> dict:
    """Cancel an order."""
    if order_id == "W-shipped":
        raise ToolError("order already shipped")
    DONE.append(order_id)
    return {"order_id": order_id, "status": "cancelled"}


@pytest.fixture(autouse=True)
def clean() -> None:
    DONE.clear()


def make(steps: list) -> Runtime:
    agent = Agent(instructions="Help.", model=ScriptedModel(steps), tools=[cancel_order])
    return Runtime(agent, executor=TransactionalExecutor(InMemoryLedger()))


async def _state(runtime: Runtime, session_id: str) -> dict:
    session = await runtime.store.load(session_id)
    assert session is not None
    return session.state


async def test_a_decline_settles_that_action_and_the_same_call_is_refused_without_a_question() -> None:
    runtime = make([call("cancel_order", order_id="W1"), call("cancel_order", order_id="W1"), "OK, I won't."])
    asked = await runtime.turn("s1", "cancel W1", WHO)
    [action] = asked.pending_actions
    declined = await runtime.turn("s1", Decision(action.id, "decline"), WHO)
    assert declined.stopped_by is None and declined.pending_actions == () and DONE == []
    assert "declined by the customer" in declined.reply
    assert [s.status for s in declined.tool_calls] == ["refused"]
    assert [(a.id, a.status, a.blocked) for a in declined.actions] == [(action.id, "declined", True)]
    history = (await runtime.store.load("s1")).history  # type: ignore[union-attr]
    user_texts = [m.content for m in history if isinstance(m, UserMessage)]
    assert user_texts[-1].startswith("[Decline pressed] cancel_order(order_id='W1')")


async def test_a_decision_for_an_action_that_is_not_pending_changes_nothing() -> None:
    runtime = make([call("cancel_order", order_id="W1"), "Done."])
    asked = await runtime.turn("s2", "cancel W1", WHO)
    with pytest.raises(ActionNotPending):
        await runtime.turn("s2", Decision("pa_unknown", "confirm"), WHO)
    await runtime.turn("s2", Decision(asked.pending_actions[0].id, "confirm"), WHO)
    assert DONE == ["W1"]
    with pytest.raises(ActionNotPending):  # answered already
        await runtime.turn("s2", Decision(asked.pending_actions[0].id, "confirm"), WHO)
    assert DONE == ["W1"]


async def test_a_refused_action_is_not_asked_again_until_the_customer_asks_for_it() -> None:
    runtime = make([call("cancel_order", order_id="W-shipped"), "It could not be done.",
                    call("cancel_order", order_id="W-shipped"), "Still no.",
                    call("cancel_order", order_id="W-shipped")])
    asked = await runtime.turn("s3", "cancel W-shipped", WHO)
    refused = await runtime.turn("s3", Decision(asked.pending_actions[0].id, "confirm"), WHO)
    assert "order already shipped" in refused.reply
    again = await runtime.turn("s3", "hm, why?", WHO)
    assert again.stopped_by is None and "already refused" in again.reply
    state = await _state(runtime, "s3")
    assert [(a.status, a.blocked) for a in pending_actions(state, None)] == [("refused", True)]
    asked_again = await runtime.turn("s3", "Please cancel W-shipped anyway", WHO)
    assert asked_again.stopped_by == "awaiting_confirmation"
    assert asked_again.pending_actions[0].id != asked.pending_actions[0].id


@pytest.mark.parametrize(("text", "asks"), [
    ("Actually, please cancel it after all.", True),
    ("go ahead with #W1234567", True),
    ("what about w1234567?", True),
    ("Why is that?", False),
    ("No, don't cancel it", False),
    ("never mind the cancel", False),
    ("thanks", False),
])
def test_what_counts_as_asking_again(text: str, asks: bool) -> None:
    action = PendingAction("pa_1", "cancel_pending_order", {"order_id": "#W1234567", "reason": "ordered by mistake"},
                           "Cancel.", "declined", True)
    assert asks_for(text, action) is asks


def test_a_decision_is_validated() -> None:
    with pytest.raises(ValidationError):
        Decision("", "confirm")
    with pytest.raises(ValidationError):
        Decision("pa_1", "maybe")  # type: ignore[arg-type]
