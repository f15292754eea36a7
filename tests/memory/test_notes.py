"""Session notes: the SQL store and the Redis store behave the same behind one protocol."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from concierge.core.errors import ValidationError
from concierge.memory import Memory, NotesStore, RedisNotesStore, SessionNotes, SqlNotesStore
from concierge.memory.extract import parse_extraction

from .conftest import KeywordEmbedder, answer

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _notes(conversation: str, day: int, user: str = "alice", tenant: str = "shop") -> SessionNotes:
    return SessionNotes(tenant=tenant, user_id=user, conversation_id=conversation,
                        updated_at=T0 + timedelta(days=day), summary=f"summary of {conversation}",
                        unresolved=("refund: pending",), preferences={"contact_channel": "email"},
                        satisfaction="low")


async def _exercise(store: NotesStore) -> None:
    assert isinstance(store, NotesStore)
    assert await store.get("shop", "alice", "c1") is None
    for conversation, day in (("c1", 0), ("c2", 5), ("c3", 10)):
        await store.put(_notes(conversation, day))
    await store.put(_notes("c9", 3, user="bob"))
    await store.put(_notes("c1", 3, tenant="other"))
    assert await store.get("shop", "alice", "c2") == _notes("c2", 5)
    assert [n.conversation_id for n in await store.recent("shop", "alice", 2)] == ["c3", "c2"]
    updated = _notes("c1", 12)
    await store.put(updated)  # a key-value store: the same key is replaced
    assert [n.conversation_id for n in await store.recent("shop", "alice", 5)] == ["c1", "c3", "c2"]
    assert await store.count_user("shop", "alice") == 3
    assert await store.expire(T0 + timedelta(days=5)) == 2  # strictly older: c9 (bob) and other/c1; c2 stays
    assert await store.count_user("shop", "bob") == 0
    assert await store.count_user("other", "alice") == 0
    assert await store.get("shop", "alice", "c2") is not None
    assert await store.delete_user("shop", "alice") == 3
    assert await store.count_user("shop", "alice") == 0
    assert await store.recent("shop", "alice", 3) == []
    with pytest.raises(ValidationError):
        await store.get("shop", "a:b", "c1")


async def test_sql_notes_store(tmp_path: Path) -> None:
    store = SqlNotesStore(f"sqlite+aiosqlite:///{tmp_path / 'notes.db'}")
    try:
        await _exercise(store)
        assert await store.count_user("shop", "alice") == 0 and await store.get("other", "alice", "c1") is None
    finally:
        await store.close()


async def test_redis_notes_store(redis_client) -> None:
    store = RedisNotesStore(redis_client)
    await _exercise(store)
    assert await store.count_user("shop", "alice") == 0 and await store.get("other", "alice", "c1") is None


async def test_memory_with_redis_notes(redis_client, tmp_path: Path) -> None:
    memory = Memory(tmp_path / "m.db", None, notes=RedisNotesStore(redis_client), embedder=KeywordEmbedder())
    try:
        extraction = parse_extraction(answer("Wants email.", preferences=[
            {"key": "contact_channel", "value": "email", "turn": 1}]), "conv-1", 1)
        await memory.remember("shop", "alice", extraction)
        lines = await memory.context_lines("shop", "alice", "contact", 200, conversation_id="conv-2")
        assert lines[-1].startswith("Previous conversation conv-1") and "Wants email." in lines[-1]
        counted = await memory.count_user("shop", "alice")
        assert counted == {"memory_notes": 1, "memory_facts": 1, "memory_vectors": 1}
        assert await memory.erase_user("shop", "alice") == counted
        assert await redis_client.keys("concierge:memory:*") == []
    finally:
        await memory.close()
    assert await redis_client.ping()  # the facade did not close a client it was lent
