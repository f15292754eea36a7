"""SqlSessionStore on a real PostgreSQL (started by the suite): test_sql_store.py's behaviours, plus true races."""

from __future__ import annotations

import asyncio

import pytest

from concierge.core.errors import SessionError
from concierge.runtime.sessions import SqlSessionStore

from .test_sql_store import (  # noqa: F401  (imported tests run here again, with `url` on PostgreSQL)
    T0,
    _assert_same,
    _turn_one,
    _turn_two,
    test_a_cached_session_notices_another_writer,
    test_a_turn_that_failed_leaves_no_trace_in_the_cache,
    test_an_opened_session_is_written_with_its_first_turn,
    test_commit_of_foreign_session_raises,
    test_duplicate_create_raises,
    test_naive_datetime_refused,
    test_round_trip_across_store_objects,
    test_stale_concurrent_commit_raises,
    test_timestamps_normalised_to_utc,
    test_two_loads_through_one_store_cannot_both_commit,
    test_unknown_session_is_none,
)


@pytest.fixture
def url(postgres_db) -> str:
    return postgres_db.async_url


async def test_the_store_runs_on_postgresql(url: str) -> None:
    store = SqlSessionStore(url)
    try:
        assert store.engine.dialect.name == "postgresql"
        await store.create("pg", T0)
        assert await store.load("pg") is not None
    finally:
        await store.close()


async def test_simultaneous_commits_from_two_stores_one_wins(url: str) -> None:
    setup = SqlSessionStore(url)
    await setup.create("race", T0)
    await setup.close()
    stores = [SqlSessionStore(url) for _ in range(4)]
    try:
        loaded = [await store.load("race") for store in stores]
        assert all(s is not None for s in loaded)
        results = await asyncio.gather(
            *(store.commit_turn(s, _turn_one()) for store, s in zip(stores, loaded, strict=True) if s is not None),
            return_exceptions=True,
        )
        assert sum(r is None for r in results) == 1
        assert all(isinstance(r, SessionError) for r in results if r is not None)
        fresh = await stores[0].load("race")
        assert fresh is not None and fresh.turns == 1 and len(fresh.history) == 4
        winner = next(s for s, r in zip(loaded, results, strict=True) if r is None)
        assert winner is not None
        _assert_same(fresh, winner)
        await stores[0].commit_turn(fresh, _turn_two())
        assert fresh.turns == 2 and len(fresh.history) == 8
    finally:
        for store in stores:
            await store.close()
