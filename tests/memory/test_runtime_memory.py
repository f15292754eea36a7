"""Memory in real turns: what session 1 established is in session 3's context; the current
conversation wins over a stale memory; an unusable extraction stores nothing and breaks nothing."""

from __future__ import annotations

from concierge.core import Principal
from concierge.memory import Memory
from concierge.runtime import Agent, Runtime
from concierge.testing import ScriptedModel

from .conftest import DAY, answer

ALICE = Principal("web-alice", tenant="shop", customer_id="alice")
REMEMBERED = answer(
    "Order W123 arrived damaged; the refund waits for the warehouse. Prefers email.",
    preferences=[{"key": "contact_channel", "value": "email", "turn": 3}],
    unresolved=[{"key": "refund_order_w123", "description": "refund for damaged order W123 awaits review",
                 "turn": 1}])


def _runtime(model: ScriptedModel, memory: Memory) -> Runtime:
    return Runtime(Agent(instructions="You help shop customers.", model=model), memory=memory)


async def test_session_one_reaches_session_three_and_the_current_conversation_wins(memory: Memory, clock) -> None:
    model = ScriptedModel(["Sorry! I asked the warehouse to review the refund.", "Noted: email.",
                           REMEMBERED,  # the extraction at the end of session 1
                           "Gift boxes come in S, M and L.",
                           "The warehouse review of your W123 refund is still open; I'll email you.",
                           "Understood, I will call you instead."])
    runtime = _runtime(model, memory)
    await runtime.turn("s1", "Order W123 arrived damaged, I want a refund.", ALICE)
    await runtime.turn("s1", "Contact me by email please.", ALICE)
    extraction = await runtime.end_conversation("s1", ALICE)
    assert extraction is not None and extraction.conversation_id == "s1"
    assert model.requests[2].response_format is not None  # the extraction asked for structured output
    clock.advance(2 * DAY)
    await runtime.turn("s2", "What sizes do gift boxes come in?", ALICE)
    clock.advance(DAY)

    await runtime.turn("s3", "Any news on my refund for the damaged order?", ALICE)
    system = model.requests[4].messages[0].content
    assert "What we remember about this customer" in system
    assert "refund_order_w123: refund for damaged order W123 awaits review (from conversation s1" in system
    assert "contact_channel: email" in system

    # The customer now says otherwise: the stale preference is not put in front of the model.
    await runtime.turn("s3", "Please call me by phone from now on, not email.", ALICE)
    system = model.requests[5].messages[0].content
    assert "contact_channel: email" not in system
    assert "refund_order_w123" in system  # the open issue is still remembered


async def test_other_customers_get_nothing_and_a_bad_extraction_stores_nothing(memory: Memory) -> None:
    model = ScriptedModel(["Hello!", "not json at all", "Hi Bob."])
    runtime = _runtime(model, memory)
    await runtime.turn("s1", "Hi, I prefer email.", ALICE)
    assert await runtime.end_conversation("s1", ALICE) is None  # logged, nothing stored
    assert await memory.facts("shop", "alice") == []
    await runtime.turn("s9", "Hello", Principal("web-bob", tenant="shop", customer_id="bob"))
    assert "What we remember" not in model.requests[2].messages[0].content
    assert await _runtime(ScriptedModel([]), memory).end_conversation("missing", ALICE) is None
