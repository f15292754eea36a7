"""Forgetting inside memory: selective forget, expiry with an injected clock, per-user erase and count."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from concierge.memory import Fact, Memory
from concierge.memory.extract import parse_extraction

from .conftest import DAY, KeywordEmbedder, answer

PROFILE = answer(
    "Damaged order, wants email.",
    preferences=[{"key": "contact_channel", "value": "email", "turn": 1},
                 {"key": "gift_wrap", "value": "always gift wrap", "turn": 1}],
    facts=[{"key": "phone_number", "value": "phone number 555-0100", "turn": 1}],
    unresolved=[{"key": "damaged_item", "description": "damaged order item", "turn": 1}])


async def test_selective_forget_removes_the_fact_from_sql_and_the_index(memory: Memory, tmp_path: Path) -> None:
    await memory.remember("shop", "alice", parse_extraction(PROFILE, "conv-1", 1))
    facts = {f.key: f for f in await memory.facts("shop", "alice")}
    assert memory.index.count("shop", "alice") == 4
    phone = facts["phone_number"]
    assert memory.index.contains("shop", "alice", phone.id)

    gone = await memory.forget("shop", "alice", query="forget my phone number")
    assert [f.key for f in gone] == ["phone_number"]
    assert "phone_number" not in {f.key for f in await memory.facts("shop", "alice")}
    assert not memory.index.contains("shop", "alice", phone.id)
    assert memory.index.count("shop", "alice") == 3
    assert all(r.fact.key != "phone_number" for r in await memory.recall("shop", "alice", "phone number", 1000))

    gone = await memory.forget("shop", "alice", "Contact Channel")
    assert [f.key for f in gone] == ["contact_channel"]
    notes = await memory.session_notes("shop", "alice", "conv-1")
    assert notes is not None and "contact_channel" not in notes.preferences and "gift_wrap" in notes.preferences
    assert await memory.forget("shop", "alice", "no_such_key") == []
    assert await memory.count_user("shop", "alice") == {"memory_notes": 1, "memory_facts": 2, "memory_vectors": 2}

    # The saved index agrees with SQL when opened again.
    reopened = Memory(tmp_path / "memory.db", tmp_path / "memory-index", embedder=KeywordEmbedder())
    try:
        assert reopened.index.count("shop", "alice") == 2
        assert not reopened.index.contains("shop", "alice", phone.id)
    finally:
        await reopened.close()


async def test_expiry_removes_exactly_the_old_unlinked_memories(memory: Memory, clock) -> None:
    start = clock.now()
    day0 = answer("Day 0.", preferences=[{"key": "gift_wrap", "value": "gift wrap", "turn": 1}],
                  unresolved=[{"key": "damaged_item", "description": "damaged item", "turn": 1},
                              {"key": "late_delivery", "description": "late delivery", "turn": 1}],
                  facts=[{"key": "order_number", "value": "order W1", "turn": 1, "issue_key": "damaged_item"}])
    await memory.remember("shop", "alice", parse_extraction(day0, "conv-a", 1))
    clock.advance(DAY)
    await memory.remember("shop", "alice", parse_extraction(answer("Day 1.", resolved=["late_delivery"]), "conv-b", 1))
    clock.advance(169 * DAY)  # day 170
    await memory.remember("shop", "alice", parse_extraction(
        answer("Day 170.", facts=[{"key": "size", "value": "size M", "turn": 1}]), "conv-c", 1))
    await memory.remember("shop", "bob", parse_extraction(
        answer("Bob.", facts=[{"key": "size", "value": "size L", "turn": 1}]), "conv-d", 1))
    clock.advance(20 * DAY)  # day 190: a fact with its own deadline, written straight to the profile store
    now = clock.now()
    await memory.profile.upsert([Fact(tenant="shop", user_id="alice", kind="fact", key="promo_code",
                                      value="promo code", conversation_id="conv-e", turn=1, created_at=now,
                                      last_used_at=now, expires_at=now + timedelta(days=5))])
    before = {f.key for f in await memory.facts("shop", "alice")}
    assert before == {"gift_wrap", "damaged_item", "late_delivery", "order_number", "size", "promo_code"}

    nothing = await memory.expire(start + timedelta(days=175))  # facts cutoff: day -5
    assert nothing == {"memory_notes": 2, "memory_facts": 0, "memory_vectors": 0}  # only notes past 30 days

    removed = await memory.expire(start + timedelta(days=200))  # retention 6 months = 180 days → cutoff day 20
    kept = {f.key for f in await memory.facts("shop", "alice")}
    # gone: old preference, old resolved issue, the fact past its expires_at; kept: the open issue, the fact
    # linked to it, the recent fact.
    assert kept == {"damaged_item", "order_number", "size"}
    assert removed == {"memory_notes": 0, "memory_facts": 3, "memory_vectors": 3}
    assert memory.index.count("shop", "alice") == 3
    assert {f.key for f in await memory.facts("shop", "bob")} == {"size"}
    # notes: conv-a (day 0) and conv-b (day 1) went at day 175; conv-c is exactly 30 days old at day 200: kept.
    assert await memory.session_notes("shop", "alice", "conv-c") is not None
    assert await memory.session_notes("shop", "alice", "conv-a") is None


async def test_erase_user_counts_match_count_user(memory: Memory) -> None:
    await memory.remember("shop", "alice", parse_extraction(PROFILE, "conv-1", 1))
    await memory.remember("shop", "alice", parse_extraction(answer("Second.", satisfaction="low"), "conv-2", 1))
    await memory.remember("shop", "bob", parse_extraction(PROFILE, "conv-3", 1))
    counted = await memory.count_user("shop", "alice")
    assert counted == {"memory_notes": 2, "memory_facts": 5, "memory_vectors": 5}
    assert await memory.erase_user("shop", "alice") == counted
    assert await memory.count_user("shop", "alice") == {"memory_notes": 0, "memory_facts": 0, "memory_vectors": 0}
    assert not memory.index.path("shop", "alice").exists()  # the index file is gone too
    assert await memory.recall("shop", "alice", "email", 1000) == []
    assert (await memory.count_user("shop", "bob"))["memory_facts"] == 4
    assert await memory.erase_user("shop", "alice") == {"memory_notes": 0, "memory_facts": 0, "memory_vectors": 0}
