"""What a write is made of: statements with their rows, and what must hold for it to count.

A `Unit` is one logical write (a turn's commit, a new session): it lands whole or not at all.
The journal puts many units into one transaction (group commit); a unit whose expectation fails
(a version check that matched no row, a primary key already taken) is undone alone and its
submitter gets the unit's `conflict` error, while the rest of the batch still commits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

Row = Sequence[Any]
Rows = list[tuple[Any, ...]]
Outcome = Rows | BaseException


@dataclass(frozen=True, slots=True)
class Op:
    """One SQL statement, written with `?` placeholders, run once per row (executemany for several)."""

    sql: str
    rows: Sequence[Row]
    # How many rows the statement must change in total; anything else makes the unit conflict.
    expect: int | None = None
    # A query whose rows are what the unit's submitter gets back (read inside the unit's transaction).
    fetch: bool = False
    # The statement touches only its unit's own rows, or breaks a key or an `expect` if two units
    # collide: the driver may then run the same statement of several units as one executemany
    # (a collision sends the batch back to one savepoint per unit).
    merge: bool = False

    @classmethod
    def one(cls, sql: str, *params: Any, expect: int | None = None, fetch: bool = False, merge: bool = False) -> Op:
        return cls(sql, (params,), expect, fetch, merge)


@dataclass(slots=True)
class Unit:
    ops: Sequence[Op]
    conflict: Callable[[], BaseException]  # made only when needed: most writes never conflict
    future: asyncio.Future[Rows]


class Conflict(Exception):
    """An `Op.expect` did not hold: the unit is undone and its submitter gets `Unit.conflict()`."""


class WouldBlock(Exception):
    """`Driver.apply_now` cannot write without waiting (another process holds the lock): use `apply`."""


class Driver(Protocol):
    """The database side of the journal: one writer, snapshot reads, values in the database's form."""

    dialect: str
    # Writes a batch synchronously on the event loop, when that costs less than a trip elsewhere
    # (SQLite without a disk sync); raises WouldBlock instead of waiting. None: always `apply`.
    apply_now: Callable[[Sequence[Unit]], list[Outcome]] | None

    async def apply(self, units: Sequence[Unit]) -> list[Outcome]:
        """Run every unit in one transaction; per unit the rows of its `fetch` op (an empty list
        without one) or its conflict (undone). Raises when the whole batch failed (nothing of it
        is applied)."""
        ...

    async def read(self, queries: Sequence[tuple[str, Row]]) -> list[list[tuple[Any, ...]]]:
        """The rows of each query, all read from one snapshot."""
        ...

    def db_time(self, value: datetime) -> Any:
        """A timezone-aware time as this database stores it (UTC)."""
        ...

    def py_time(self, value: Any) -> datetime:
        """A stored time back as a timezone-aware UTC datetime."""
        ...

    async def close(self) -> None: ...
