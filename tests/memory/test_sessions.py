"""Memory across sessions: extraction stores facts with provenance, later sessions recall them."""

from __future__ import annotations

from concierge.core.messages import AssistantMessage, Message, UserMessage
from concierge.memory import ExtractedMemory, Memory
from concierge.memory.extract import parse_extraction
from concierge.testing.models import ScriptedModel

from .conftest import DAY, answer

SESSION_1: list[Message] = [
    UserMessage("Hi, order W123 arrived damaged and I want a refund."),
    AssistantMessage("Sorry about that. I have asked the warehouse; the refund needs their review."),
    UserMessage("Fine. Please contact me by email, not phone."),
    AssistantMessage("Noted: email it is."),
]
SESSION_1_ANSWER = answer(
    "Order W123 arrived damaged; refund waiting for the warehouse review. Prefers email.",
    preferences=[{"key": "contact_channel", "value": "email", "turn": 3}],
    unresolved=[{"key": "refund_order_w123", "description": "refund for damaged order W123 awaits review",
                 "turn": 1}],
    facts=[{"key": "damaged_order", "value": "order W123 arrived damaged", "turn": 1,
            "issue_key": "refund_order_w123"}],
    satisfaction="medium")
SESSION_2: list[Message] = [UserMessage("What sizes do the gift boxes come in?"), AssistantMessage("S, M and L.")]
SESSION_2_ANSWER = answer("Asked about gift box sizes.",
                          facts=[{"key": "gift_box_interest", "value": "gift wrap box sizes", "turn": 1}],
                          satisfaction="high")


async def test_session_one_is_recalled_in_session_three_with_provenance(memory: Memory, clock) -> None:
    model = ScriptedModel([SESSION_1_ANSWER, SESSION_2_ANSWER])
    extraction = await memory.remember_conversation(model, "shop", "alice", "conv-1", SESSION_1)
    assert model.requests[0].response_format == ExtractedMemory.model_json_schema()
    assert "[3] user: Fine. Please contact me by email, not phone." in model.requests[0].messages[1].content
    assert extraction.conversation_id == "conv-1"
    clock.advance(2 * DAY)
    await memory.remember_conversation(model, "shop", "alice", "conv-2", SESSION_2)
    clock.advance(1 * DAY)

    # Session 3: the customer is back about the refund.
    query = "any news on my refund for the damaged order?"
    recalled = await memory.recall("shop", "alice", query, 400)
    by_key = {r.fact.key: r for r in recalled}
    assert {"refund_order_w123", "damaged_order", "contact_channel"} <= by_key.keys()
    issue = by_key["refund_order_w123"].fact
    assert (issue.kind, issue.status, issue.conversation_id, issue.turn) == ("issue", "open", "conv-1", 1)
    assert by_key["contact_channel"].fact.provenance == "conv-1#3"
    assert by_key["damaged_order"].linked_to_open_issue  # linked through issue_key, so boosted
    assert recalled[0].fact.key in {"refund_order_w123", "damaged_order"}  # relevant + open issue rank first

    lines = await memory.context_lines("shop", "alice", query, 400, conversation_id="conv-3")
    assert any(line.startswith("Open issue refund_order_w123: refund for damaged order W123 awaits review "
                               "(from conversation conv-1, turn 1, 2026-01-01)") for line in lines)
    assert any("Preference contact_channel: email (from conversation conv-1, turn 3" in line for line in lines)
    assert lines[-1].startswith("Previous conversation conv-2 (2026-01-03): Asked about gift box sizes.")
    notes = await memory.session_notes("shop", "alice", "conv-1")
    assert notes is not None and notes.preferences == {"contact_channel": "email"}
    assert notes.unresolved == ("refund_order_w123: refund for damaged order W123 awaits review",)

    # Another user of the same tenant, and the same user id in another tenant, see nothing of alice's.
    assert await memory.recall("shop", "bob", query, 400) == []
    assert await memory.recall("other-shop", "alice", query, 400) == []


async def test_a_later_conversation_resolves_an_issue_and_replaces_a_value(memory: Memory, clock) -> None:
    await memory.remember("shop", "alice", parse_extraction(SESSION_1_ANSWER, "conv-1", 4))
    clock.advance(DAY)
    later = answer("Refund arrived; now prefers phone.", resolved=["refund_order_w123"],
                   preferences=[{"key": "Contact Channel", "value": "phone", "turn": 1}])
    await memory.remember("shop", "alice", parse_extraction(later, "conv-2", 2))
    facts = {f.key: f for f in await memory.facts("shop", "alice")}
    assert facts["refund_order_w123"].status == "resolved"
    assert (facts["contact_channel"].value, facts["contact_channel"].provenance) == ("phone", "conv-2#1")
    assert len([f for f in facts.values() if f.key == "contact_channel"]) == 1
    hits = await memory.recall("shop", "alice", "phone", 400)
    assert hits[0].fact.key == "contact_channel" and hits[0].similarity > 0.4  # re-embedded with the new value


async def test_the_current_conversation_overrides_a_stale_memory(memory: Memory) -> None:
    await memory.remember("shop", "alice", parse_extraction(SESSION_1_ANSWER, "conv-1", 4))
    query = "how should we contact the customer"
    stale = [r.fact.key for r in await memory.recall("shop", "alice", query, 400)]
    assert "contact_channel" in stale

    now_phone = [UserMessage("Hello again."), AssistantMessage("Hi!"), UserMessage("Please call me this time.")]
    keys = [r.fact.key for r in await memory.recall("shop", "alice", query, 400, current_conversation=now_phone)]
    assert "contact_channel" not in keys and "refund_order_w123" in keys
    lines = await memory.context_lines("shop", "alice", query, 400, current_conversation=now_phone)
    assert not any("email" in line and "contact_channel" in line for line in lines)

    by_phone = [UserMessage("You can reach me by phone.")]
    assert "contact_channel" not in [r.fact.key for r in await memory.recall(
        "shop", "alice", query, 400, current_conversation=by_phone)]
    # The runtime may also hand over values it knows (same key, other value → stale).
    assert "contact_channel" not in [r.fact.key for r in await memory.recall(
        "shop", "alice", query, 400, current_facts={"contact_channel": "sms"})]
    # Saying the same thing again is no contradiction.
    same = [UserMessage("email me the label please")]
    assert "contact_channel" in [r.fact.key for r in await memory.recall(
        "shop", "alice", query, 400, current_conversation=same)]


async def test_recall_respects_the_token_budget(memory: Memory) -> None:
    many = answer("Lots of facts.", facts=[
        {"key": f"detail_{i}", "value": f"order detail number {i} " + "x" * (10 * i), "turn": 1} for i in range(12)])
    await memory.remember("shop", "alice", parse_extraction(many, "conv-1", 1))
    everything = await memory.recall("shop", "alice", "order number", 10_000)
    assert len(everything) == 12
    for budget in (0, 20, 45, 100, 250):
        chosen = await memory.recall("shop", "alice", "order number", budget)
        used = sum(memory.counter.count(r.line) for r in chosen)
        assert used <= budget
        assert all(r.tokens == memory.counter.count(r.line) for r in chosen)
        # Greedy by score: anything left out did not fit in what remained when its turn came.
        left = budget
        for item in everything:
            if item.tokens <= left:
                assert item.fact.id in {r.fact.id for r in chosen}
                left -= item.tokens
        lines = await memory.context_lines("shop", "alice", "order number", budget)
        assert sum(memory.counter.count(line) for line in lines) <= budget
    assert await memory.recall("shop", "alice", "order number", 0) == []
