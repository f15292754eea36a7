"""The journal on a SQLite file: one writer connection, WAL, writes on the event loop.

With `durability="process"` (the default) a commit is written to the WAL without waiting for
the disk: it survives the process being killed (the operating system holds the written pages),
and only an operating-system crash or power cut can lose the last commits, never corrupt the
file. Such a commit takes tens of microseconds, less than a trip to a worker thread, so batches
are written on the event loop itself. With `durability="power"` every batch is synced to disk
(`synchronous=FULL`) in a dedicated thread, while the next batch gathers.

Checkpoints (copying the WAL back into the database file, which syncs) never run on the loop:
the writer's automatic checkpoint is off and a worker thread runs a passive one now and then.
A lock held by another process (several workers on one file) is waited for with asyncio sleeps.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Literal

from .ops import Conflict, Outcome, Row, Rows, Unit, WouldBlock

Durability = Literal["process", "power"]
# Another process's write lock is waited for this long before the batch fails.
_LOCK_WAIT_S = 30.0
_CHECKPOINT_EVERY = 500  # batches between background checkpoints


def _busy(exc: sqlite3.OperationalError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


class _Busy(Exception):
    pass


def _connect(path: str, *, synchronous: str, busy_ms: int) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout={busy_ms}")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


class SqliteDriver:
    dialect = "sqlite"

    def __init__(self, path: str, durability: Durability = "process") -> None:
        self.path = path
        self.durability = durability
        on_loop = durability == "process"
        # On the loop a busy lock must not block it: fail at once and retry with asyncio.sleep.
        self._writer = _connect(path, synchronous="NORMAL" if on_loop else "FULL", busy_ms=0 if on_loop else 30_000)
        self._writer.execute("PRAGMA wal_autocheckpoint=0")
        self._reader = _connect(path, synchronous="NORMAL", busy_ms=0)
        self._thread = None if on_loop else ThreadPoolExecutor(1, thread_name_prefix="concierge-journal")
        self.apply_now = self._apply_now if on_loop else None
        self._batches = 0
        self._checkpoint: asyncio.Future[None] | None = None

    def _apply_now(self, units: Sequence[Unit]) -> list[Outcome]:
        try:
            results = self._apply(units)
        except _Busy as busy:
            raise WouldBlock from busy
        self._written()
        return results

    async def apply(self, units: Sequence[Unit]) -> list[Outcome]:
        if self._thread is not None:
            results = await asyncio.get_running_loop().run_in_executor(self._thread, self._apply, units)
        else:
            results = await _retry_busy(lambda: self._apply(units))
        self._written()
        return results

    def _written(self) -> None:
        self._batches += 1
        if self._batches % _CHECKPOINT_EVERY == 0 and self._checkpoint is None:
            self._checkpoint = asyncio.ensure_future(asyncio.to_thread(self._run_checkpoint))
            self._checkpoint.add_done_callback(self._checkpoint_done)

    def _apply(self, units: Sequence[Unit]) -> list[Outcome]:
        conn = self._writer
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if _busy(exc):
                raise _Busy from exc
            raise
        try:
            # Optimistically without savepoints (conflicts are rare); after a conflict the batch is
            # undone and run again, each unit in a savepoint of its own.
            results = self._run_units(conn, units, savepoints=False)
            if results is None:
                conn.execute("ROLLBACK")
                conn.execute("BEGIN IMMEDIATE")
                results = self._run_units(conn, units, savepoints=True)
                assert results is not None
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError) and _busy(exc):
                raise _Busy from exc
            raise
        return results

    @staticmethod
    def _run_units(conn: sqlite3.Connection, units: Sequence[Unit], *, savepoints: bool) -> list[Outcome] | None:
        """Each unit's outcome; None when a unit conflicted and there were no savepoints to undo it alone."""
        results: list[Outcome] = []
        start = 0
        while start < len(units):
            if not savepoints:
                run = _mergeable_run(units, start)
                if run > 1:  # the same statements in several units: one executemany each
                    if not _run_merged(conn, units[start:start + run]):
                        return None
                    results.extend([] for _ in range(run))
                    start += run
                    continue
            unit = units[start]
            start += 1
            if savepoints:
                conn.execute("SAVEPOINT unit")
            fetched: Rows = []
            try:
                for op in unit.ops:
                    cursor = conn.execute(op.sql, op.rows[0]) if len(op.rows) == 1 else \
                        conn.executemany(op.sql, op.rows)
                    if op.fetch:
                        fetched = cursor.fetchall()
                    elif op.expect is not None and cursor.rowcount != op.expect:
                        raise Conflict
            except (Conflict, sqlite3.IntegrityError):
                if not savepoints:
                    if len(units) > 1:
                        return None
                    conn.execute("ROLLBACK")  # a lone unit: its conflict is the batch's
                    conn.execute("BEGIN IMMEDIATE")
                    return [unit.conflict()]
                conn.execute("ROLLBACK TO unit")
                results.append(unit.conflict())
            else:
                results.append(fetched)
            if savepoints:
                conn.execute("RELEASE unit")
        return results

    async def read(self, queries: Sequence[tuple[str, Row]]) -> list[list[tuple[Any, ...]]]:
        return await _retry_busy(lambda: self._read(queries))

    def _read(self, queries: Sequence[tuple[str, Row]]) -> list[list[tuple[Any, ...]]]:
        conn = self._reader
        try:
            if len(queries) == 1:  # one statement is its own snapshot
                sql, params = queries[0]
                return [conn.execute(sql, params).fetchall()]
            conn.execute("BEGIN")
            try:
                return [conn.execute(sql, params).fetchall() for sql, params in queries]
            finally:
                conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if _busy(exc):
                raise _Busy from exc
            raise

    def _run_checkpoint(self) -> None:
        conn = _connect(self.path, synchronous="NORMAL", busy_ms=5_000)
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            conn.close()

    def _checkpoint_done(self, future: asyncio.Future[None]) -> None:
        self._checkpoint = None
        if not future.cancelled():
            future.exception()  # a failed passive checkpoint is retried next time; nothing is lost

    def db_time(self, value: datetime) -> str:
        # SQLAlchemy's DateTime format on SQLite ("2026-01-01 09:00:00.000000"), written faster than strftime.
        if value.tzinfo is not UTC:
            value = value.astimezone(UTC)
        return value.replace(tzinfo=None).isoformat(" ", "microseconds")

    def py_time(self, value: Any) -> datetime:
        if isinstance(value, datetime):
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return datetime.fromisoformat(value).replace(tzinfo=UTC)

    async def close(self) -> None:
        if self._checkpoint is not None:
            await asyncio.wait({self._checkpoint})
        if self._thread is not None:
            self._thread.shutdown(wait=True)
        self._writer.close()
        self._reader.close()


def _merge_key(unit: Unit) -> tuple[str, ...] | None:
    if all(op.merge and not op.fetch for op in unit.ops):
        return tuple(op.sql for op in unit.ops)
    return None


def _mergeable_run(units: Sequence[Unit], start: int) -> int:
    """How many units from `start` on have the same mergeable statements."""
    key = _merge_key(units[start])
    if key is None:
        return 1
    end = start + 1
    while end < len(units) and _merge_key(units[end]) == key:
        end += 1
    return end - start


def _run_merged(conn: sqlite3.Connection, units: Sequence[Unit]) -> bool:
    """Run the units' statements position by position; False on any conflict (nothing is kept then)."""
    try:
        for position, op in enumerate(units[0].ops):
            ops = [unit.ops[position] for unit in units]
            cursor = conn.executemany(op.sql, [row for each in ops for row in each.rows])
            if op.expect is not None and cursor.rowcount != sum(each.expect or 0 for each in ops):
                return False
    except sqlite3.IntegrityError:
        return False
    return True


async def _retry_busy(attempt: Any) -> Any:
    """Run `attempt` until another process's lock lets it through, sleeping in between."""
    deadline = time.monotonic() + _LOCK_WAIT_S
    delay = 0.0005
    while True:
        try:
            return attempt()
        except _Busy as busy:
            if time.monotonic() > deadline:
                raise sqlite3.OperationalError(
                    f"the database stayed locked by another process for {_LOCK_WAIT_S:.0f} s"
                ) from busy.__cause__
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.02)
