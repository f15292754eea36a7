"""SqlSessionStore on a SQLite file: durable round-trips and optimistic concurrency.

The tests that take `url` run again on PostgreSQL in test_sql_store_postgres.py, which overrides it.
"""

from __future__ import annotations

import importlib.util
import inspect
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from concierge.core.errors import ConfigError, SessionError, ValidationError
from concierge.core.messages import AssistantMessage, ToolCall, ToolResultMessage, UserMessage
from concierge.runtime.sessions import Session, SessionStore, SqlSessionStore, TurnCommit

T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)


def _url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
def url(tmp_path: Path) -> str:
    """The store's URL; parent directories do not exist yet (the store creates them for SQLite)."""
    return _url(tmp_path / "nested" / "dir" / "sessions.db")


def _turn_one() -> TurnCommit:
    return TurnCommit(
        new_messages=[
            UserMessage("Where is order 42?"),
            AssistantMessage(None, (ToolCall("c1", "lookup_order", {"order_id": 42, "fields": ["status"]}),)),
            ToolResultMessage("c1", "lookup_order", '{"status": "shipped"}'),
            AssistantMessage("Order 42 has shipped."),
        ],
        new_pinned_facts=["order 42: shipped"],
        window_start=0,
        summary=None,
        state={"customer": {"id": "cust-7", "tier": "gold"}, "orders": [42]},
        updated_at=T0 + timedelta(minutes=1),
    )


def _turn_two() -> TurnCommit:
    return TurnCommit(
        new_messages=[
            UserMessage("Cancel it, please."),
            AssistantMessage("Cancelling.", (ToolCall("c2", "cancel_order", {"order_id": 42}),)),
            ToolResultMessage("c2", "cancel_order", "cannot cancel a shipped order", is_error=True),
            AssistantMessage("Sorry, a shipped order cannot be cancelled. Ünïcødé ✓"),
        ],
        new_pinned_facts=["cancel order 42: refused", "refund offered"],
        window_start=4,
        summary="Customer asked about order 42, which has shipped.",
        state={"customer": {"id": "cust-7", "tier": "gold"}, "orders": [42], "cancel_refused": True},
        updated_at=T0 + timedelta(minutes=2),
    )


def _assert_same(a: Session, b: Session) -> None:
    assert a.id == b.id
    assert a.created_at == b.created_at
    assert a.created_at.tzinfo is not None and b.created_at.tzinfo is not None
    assert a.updated_at == b.updated_at
    assert a.history == b.history
    assert a.window_start == b.window_start
    assert a.summary == b.summary
    assert a.pinned_facts == b.pinned_facts
    assert a.state == b.state
    assert a.turns == b.turns


def test_satisfies_protocol() -> None:
    """Every method of the SessionStore protocol, as a coroutine with the protocol's parameters."""
    for name in ("load", "create", "commit_turn", "close"):
        wanted = inspect.signature(getattr(SessionStore, name))
        method = getattr(SqlSessionStore, name)
        assert inspect.iscoroutinefunction(method), name
        assert list(inspect.signature(method).parameters)[:len(wanted.parameters)] == list(wanted.parameters), name


async def test_round_trip_across_store_objects(url: str) -> None:
    writer = SqlSessionStore(url)
    session = await writer.create("s1", T0)
    assert session.turns == 0 and session.history == []
    await writer.commit_turn(session, _turn_one())
    await writer.commit_turn(session, _turn_two())
    await writer.close()

    assert session.turns == 2 and len(session.history) == 8
    assert session.pinned_facts == ["order 42: shipped", "cancel order 42: refused", "refund offered"]

    reader = SqlSessionStore(url)
    try:
        loaded = await reader.load("s1")
        assert loaded is not None
        _assert_same(loaded, session)
        assert loaded.created_at == T0
        assert loaded.updated_at == T0 + timedelta(minutes=2)
        assert loaded.window_start == 4
        assert loaded.summary == "Customer asked about order 42, which has shipped."
        assert isinstance(loaded.history[1], AssistantMessage)
        assert loaded.history[1].tool_calls[0].arguments == {"order_id": 42, "fields": ["status"]}
        assert loaded.history[6] == ToolResultMessage(
            "c2", "cancel_order", "cannot cancel a shipped order", is_error=True
        )
        # The loaded session keeps committing where the other store left off.
        await reader.commit_turn(loaded, TurnCommit([UserMessage("thanks")], [], 4, loaded.summary,
                                                    loaded.state, T0 + timedelta(minutes=3)))
        again = await SqlSessionStore(url).load("s1")
        assert again is not None and again.turns == 3 and again.history[-1] == UserMessage("thanks")
    finally:
        await reader.close()


async def test_timestamps_normalised_to_utc(url: str) -> None:
    store = SqlSessionStore(url)
    try:
        local = datetime(2026, 1, 1, 11, 0, tzinfo=UTC).astimezone()  # some local offset
        await store.create("tz", local)
        loaded = await store.load("tz")
        assert loaded is not None
        assert loaded.created_at == local and loaded.created_at.tzinfo == UTC
    finally:
        await store.close()


async def test_naive_datetime_refused(url: str) -> None:
    store = SqlSessionStore(url)
    try:
        with pytest.raises(ValidationError, match="timezone-aware"):
            await store.create("naive", datetime(2026, 1, 1))
        assert await store.load("naive") is None
    finally:
        await store.close()


async def test_duplicate_create_raises(url: str) -> None:
    store = SqlSessionStore(url)
    try:
        await store.create("dup", T0)
        with pytest.raises(SessionError, match="already exists"):
            await store.create("dup", T0)
        other = SqlSessionStore(url)
        with pytest.raises(SessionError):
            await other.create("dup", T0)
        await other.close()
    finally:
        await store.close()


async def test_stale_concurrent_commit_raises(url: str) -> None:
    setup = SqlSessionStore(url)
    await setup.create("race", T0)
    await setup.close()

    a, b = SqlSessionStore(url), SqlSessionStore(url)
    try:
        sa, sb = await a.load("race"), await b.load("race")
        assert sa is not None and sb is not None
        await a.commit_turn(sa, _turn_one())
        with pytest.raises(SessionError, match="another writer"):
            await b.commit_turn(sb, _turn_two())
        # The loser's in-memory session is untouched, and nothing of its turn was stored.
        assert sb.turns == 0 and sb.history == []
        fresh = await b.load("race")
        assert fresh is not None
        _assert_same(fresh, sa)
        # After reloading, the loser can commit.
        await b.commit_turn(fresh, _turn_two())
        assert fresh.turns == 2 and len(fresh.history) == 8
    finally:
        await a.close()
        await b.close()


async def test_two_loads_through_one_store_cannot_both_commit(url: str) -> None:
    store = SqlSessionStore(url)
    try:
        await store.create("same", T0)
        first, second = await store.load("same"), await store.load("same")
        assert first is not None and second is not None
        await store.commit_turn(first, _turn_one())
        with pytest.raises(SessionError):
            await store.commit_turn(second, _turn_two())
    finally:
        await store.close()


async def test_commit_of_foreign_session_raises(url: str) -> None:
    store = SqlSessionStore(url)
    try:
        with pytest.raises(SessionError, match="not loaded or created"):
            await store.commit_turn(Session("ghost", T0, T0), _turn_one())
    finally:
        await store.close()


async def test_unknown_session_is_none(url: str) -> None:
    store = SqlSessionStore(url)
    try:
        assert await store.load("nope") is None
    finally:
        await store.close()


@pytest.mark.parametrize("url", ["not a url", "", "mysql+aiomysql://u:secret@h/db", "redis://localhost/0"])
def test_bad_url_is_config_error(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        SqlSessionStore(url)
    text = str(info.value)
    assert "sqlite+aiosqlite" in text and "postgresql+asyncpg" in text
    assert "secret" not in text


def test_plain_sqlite_scheme_upgraded_to_async_driver(tmp_path: Path) -> None:
    store = SqlSessionStore(f"sqlite:///{tmp_path / 's.db'}")
    assert store.engine.url.drivername == "sqlite+aiosqlite"


def test_postgres_url_uses_same_store() -> None:
    url = "postgresql://user:secret@localhost/concierge"
    if importlib.util.find_spec("asyncpg") is None:
        with pytest.raises(ConfigError, match="postgres") as info:
            SqlSessionStore(url)
        assert "secret" not in str(info.value)
    else:
        store = SqlSessionStore(url)  # builds the engine; connects only on first use
        assert store.engine.dialect.name == "postgresql"
        assert store.engine.url.drivername == "postgresql+asyncpg"


async def test_from_engine_and_sqlite_pragmas(tmp_path: Path) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    store = SqlSessionStore.from_engine(create_async_engine(_url(tmp_path / "s.db")))
    try:
        await store.create("e", T0)
        async with store.engine.connect() as conn:
            assert (await conn.scalar(text("PRAGMA journal_mode"))) == "wal"
            assert (await conn.scalar(text("PRAGMA foreign_keys"))) == 1
        assert await store.load("e") is not None
    finally:
        await store.close()


async def test_a_cached_session_notices_another_writer(url: str) -> None:
    first, second = SqlSessionStore(url), SqlSessionStore(url)
    try:
        session = await first.create("shared", T0)
        await first.commit_turn(session, _turn_one())
        elsewhere = await second.load("shared")
        assert elsewhere is not None
        await second.commit_turn(elsewhere, _turn_two())
        again = await first.load("shared")  # first's cache holds turn one: the version says it is stale
        assert again is not None
        _assert_same(again, elsewhere)
        assert again.turns == 2 and len(again.history) == 8
    finally:
        await first.close()
        await second.close()


async def test_a_turn_that_failed_leaves_no_trace_in_the_cache(url: str) -> None:
    store = SqlSessionStore(url)
    try:
        session = await store.create("dirty", T0)
        await store.commit_turn(session, _turn_one())
        loaded = await store.load("dirty")
        assert loaded is not None
        loaded.state["half_done"] = True  # a turn mutates its session, then fails before committing
        loaded.history.append(UserMessage("lost"))
        clean = await store.load("dirty")
        assert clean is not None and "half_done" not in clean.state and len(clean.history) == 4
        assert clean.state == _turn_one().state
    finally:
        await store.close()


async def test_an_opened_session_is_written_with_its_first_turn(url: str) -> None:
    first, second = SqlSessionStore(url), SqlSessionStore(url)
    try:
        opened = await first.open("fresh", T0)
        assert opened.turns == 0 and opened.history == []
        assert await second.load("fresh") is None  # nothing written until the turn commits
        twin = await second.open("fresh", T0)
        await first.commit_turn(opened, _turn_one())
        with pytest.raises(SessionError):  # the other writer's first turn finds the id taken
            await second.commit_turn(twin, _turn_one())
        stored = await second.load("fresh")
        assert stored is not None
        _assert_same(stored, opened)
        await second.commit_turn(stored, _turn_two())  # and the session goes on from there
        again = await first.open("fresh", T0)
        assert again.turns == 2 and len(again.history) == 8
    finally:
        await first.close()
        await second.close()
