"""The group-commit journal on SQLite and PostgreSQL: batching, per-unit conflicts, fetches, locks.

Every test runs on both databases (`db_url` is a SQLite file, or a throwaway PostgreSQL database
from the suite's server), because the two drivers must behave the same.
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, select

from concierge.core.journal import Op
from concierge.core.sqldb import SqlBacked, UTCDateTime

metadata = MetaData()
items = Table(
    "journal_items", metadata,
    Column("id", String(64), primary_key=True),
    Column("n", Integer, nullable=False),
    Column("at", UTCDateTime(), nullable=True),
)
ADD = "INSERT INTO journal_items (id, n, at) VALUES (?, ?, ?)"
BUMP = "UPDATE journal_items SET n = n + 1 WHERE id = ? AND n = ?"
GET_N = "SELECT n FROM journal_items WHERE id = ?"
T0 = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)


class Items(SqlBacked):
    metadata = metadata
    what = "journal test"


class Taken(Exception):
    pass


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/journal.db"
    return request.getfixturevalue("postgres_db").async_url


async def test_concurrent_units_share_transactions(db_url: str) -> None:
    store = Items(db_url)
    try:
        journal = await store.journal()
        await asyncio.gather(*(journal.write((Op.one(ADD, f"i{k}", k, None),), Taken) for k in range(200)))
        assert journal.units == 200
        assert journal.batches < 20, f"200 simultaneous units took {journal.batches} transactions"
        async with store.engine.connect() as conn:
            assert (await conn.execute(select(items.c.n).where(items.c.id == "i199"))).scalar_one() == 199
    finally:
        await store.close()


async def test_a_conflicting_unit_is_undone_alone(db_url: str) -> None:
    store = Items(db_url)
    try:
        journal = await store.journal()
        await journal.write((Op.one(ADD, "taken", 0, None),), Taken)
        outcomes = await asyncio.gather(
            journal.write((Op.one(ADD, "a", 1, None),), Taken),
            # The second op would succeed, but the first breaks the unit: neither may land.
            journal.write((Op.one(ADD, "b", 1, None), Op.one(ADD, "taken", 1, None)), Taken),
            journal.write((Op.one(BUMP, "taken", 5, expect=1),), Taken),  # version check fails
            journal.write((Op.one(BUMP, "taken", 0, expect=1), Op.one(GET_N, "taken", fetch=True)), Taken),
            return_exceptions=True,
        )
        assert outcomes[0] == [] and outcomes[3] == [(1,)]
        assert isinstance(outcomes[1], Taken) and isinstance(outcomes[2], Taken)
        assert journal.batches == 2  # the four shared one transaction
        rows = await journal.read((("SELECT id, n FROM journal_items ORDER BY id", ()),))
        assert rows == [[("a", 1), ("taken", 1)]]
    finally:
        await store.close()


async def test_a_lone_conflict_rolls_back_its_batch(db_url: str) -> None:
    store = Items(db_url)
    try:
        journal = await store.journal()
        await journal.write((Op.one(ADD, "x", 0, None),), Taken)
        with pytest.raises(Taken):
            await journal.write((Op.one(ADD, "y", 0, None), Op.one(BUMP, "x", 9, expect=1)), Taken)
        assert await journal.read_one("SELECT id FROM journal_items WHERE id = ?", "y") is None
    finally:
        await store.close()


async def test_times_and_rows_read_the_same_through_sqlalchemy(db_url: str) -> None:
    store = Items(db_url)
    try:
        journal = await store.journal()
        await journal.write((Op.one(ADD, "t", 0, journal.db_time(T0)),), Taken)
        async with store.engine.connect() as conn:
            at = (await conn.execute(select(items.c.at).where(items.c.id == "t"))).scalar_one()
        assert at == T0 and at.tzinfo is not None
        row = await journal.read_one("SELECT at FROM journal_items WHERE id = ?", "t")
        assert row is not None and journal.py_time(row[0]) == T0
    finally:
        await store.close()


async def test_power_durability_writes_from_its_thread(tmp_path: Path) -> None:
    store = Items(f"sqlite+aiosqlite:///{tmp_path}/full.db", durability="power")
    try:
        journal = await store.journal()
        await asyncio.gather(*(journal.write((Op.one(ADD, f"p{k}", k, None),), Taken) for k in range(50)))
        assert journal.batches < 50
        assert journal.driver._writer.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
        count = await journal.read_one("SELECT count(*) FROM journal_items")
        assert count == (50,)
    finally:
        await store.close()


async def test_a_lock_held_by_another_connection_is_waited_for_without_blocking_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    store = Items(f"sqlite+aiosqlite:///{path}")
    try:
        journal = await store.journal()
        assert journal.driver._writer.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process's writer holds the lock
        write = asyncio.ensure_future(journal.write((Op.one(ADD, "late", 1, None),), Taken))
        ticks = 0
        for _ in range(20):  # the loop keeps running while the write waits
            await asyncio.sleep(0.005)
            ticks += 1
        assert not write.done() and ticks == 20
        other.execute("COMMIT")
        other.close()
        assert await asyncio.wait_for(write, 5) == []
    finally:
        await store.close()


async def test_in_memory_sqlite_is_refused_with_a_hint() -> None:
    from concierge.core.errors import ConfigError

    store = Items("sqlite+aiosqlite:///:memory:")
    try:
        with pytest.raises(ConfigError, match="not a file"):
            await store.journal()
    finally:
        await store.close()


async def test_merged_statements_still_undo_only_the_colliding_unit(db_url: str) -> None:
    store = Items(db_url)
    try:
        journal = await store.journal()
        await journal.write((Op.one(ADD, "old", 0, None, merge=True),), Taken)
        units = [(Op.one(ADD, f"m{k}", k, None, merge=True), Op.one(BUMP, "old", 0, expect=1, merge=True))
                 for k in range(4)]  # only the first unit's version check can hold
        units.insert(2, (Op.one(ADD, "old", 9, None, merge=True), Op.one(BUMP, "old", 0, expect=1, merge=True)))
        outcomes = await asyncio.gather(*(journal.write(ops, Taken) for ops in units), return_exceptions=True)
        assert [isinstance(o, Taken) for o in outcomes] == [False, True, True, True, True]
        rows = await journal.read((("SELECT id, n FROM journal_items ORDER BY id", ()),))
        assert rows == [[("m0", 0), ("old", 1)]]
    finally:
        await store.close()
