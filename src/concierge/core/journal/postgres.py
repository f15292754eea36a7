"""The journal on PostgreSQL: the same units and batches, through asyncpg.

The writer holds one connection of the engine's pool for its batches, each batch one
transaction with a savepoint per unit; reads borrow a pooled connection and read one
repeatable-read snapshot. Statements use `?` placeholders like everywhere else in the journal
and are rewritten to asyncpg's `$n` once; asyncpg prepares and caches them.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .ops import Conflict, Outcome, Row, Rows, Unit

_PLACEHOLDER = re.compile(r"\?")


def _numbered(sql: str) -> str:
    counter = iter(range(1, 10_000))
    return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)


def _changed(status: str) -> int:
    """Rows a command changed, from asyncpg's status line ("UPDATE 1", "INSERT 0 1")."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class PostgresDriver:
    dialect = "postgresql"
    apply_now = None  # every statement is a round trip: batches are written by a task

    def __init__(self, engine: AsyncEngine) -> None:
        import asyncpg  # the `postgres` extra: present whenever the engine could be built

        self.engine = engine
        self._integrity = asyncpg.IntegrityConstraintViolationError
        self._sql: dict[str, str] = {}
        self._writer: AsyncConnection | None = None
        self._writer_loop: asyncio.AbstractEventLoop | None = None

    def _text(self, sql: str) -> str:
        text = self._sql.get(sql)
        if text is None:
            text = self._sql[sql] = _numbered(sql)
        return text

    async def _raw_writer(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._writer is None or self._writer_loop is not loop or self._writer.closed:
            if self._writer is not None and self._writer_loop is loop:
                await self._writer.close()
            self._writer = await self.engine.connect()
            self._writer_loop = loop
        raw = await self._writer.get_raw_connection()
        return raw.driver_connection

    async def apply(self, units: Sequence[Unit]) -> list[Outcome]:
        conn = await self._raw_writer()
        # Optimistically without savepoints (conflicts are rare, and each savepoint is a round trip);
        # after a conflict in a batch of several, the batch is undone and run again with one per unit.
        outcomes = await self._batch(conn, units, savepoints=False)
        if outcomes is None:
            outcomes = await self._batch(conn, units, savepoints=True)
            assert outcomes is not None
        return outcomes

    async def _batch(self, conn: Any, units: Sequence[Unit], *, savepoints: bool) -> list[Outcome] | None:
        batch = conn.transaction()
        await batch.start()
        try:
            results: list[Outcome] = []
            for unit in units:
                try:
                    if savepoints:
                        async with conn.transaction():  # a savepoint: a conflict undoes this unit only
                            results.append(await self._run(conn, unit))
                    else:
                        results.append(await self._run(conn, unit))
                except (Conflict, self._integrity):
                    if savepoints:
                        results.append(unit.conflict())
                        continue
                    await batch.rollback()
                    return [unit.conflict()] if len(units) == 1 else None
            await batch.commit()
            return results
        except BaseException:
            if not conn.is_closed() and conn.is_in_transaction():
                await batch.rollback()
            raise

    async def _run(self, conn: Any, unit: Unit) -> Rows:
        fetched: Rows = []
        for op in unit.ops:
            sql = self._text(op.sql)
            if op.fetch:
                fetched = [tuple(r) for r in await conn.fetch(sql, *op.rows[0])]
                continue
            if op.expect is None and len(op.rows) > 1:
                await conn.executemany(sql, op.rows)
                continue
            changed = 0
            for row in op.rows:
                changed += _changed(await conn.execute(sql, *row))
            if op.expect is not None and changed != op.expect:
                raise Conflict
        return fetched

    async def read(self, queries: Sequence[tuple[str, Row]]) -> list[list[tuple[Any, ...]]]:
        async with self.engine.connect() as pooled:
            conn = (await pooled.get_raw_connection()).driver_connection
            if len(queries) == 1:
                sql, params = queries[0]
                return [[tuple(r) for r in await conn.fetch(self._text(sql), *params)]]
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                return [[tuple(r) for r in await conn.fetch(self._text(sql), *params)] for sql, params in queries]

    def db_time(self, value: datetime) -> datetime:
        return value.astimezone(UTC)

    def py_time(self, value: Any) -> datetime:
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    async def close(self) -> None:
        if self._writer is not None and self._writer_loop is asyncio.get_running_loop():
            await self._writer.close()
        self._writer = None
