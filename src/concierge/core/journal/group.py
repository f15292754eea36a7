"""Group commit: the writes that arrive while one batch is being written share the next transaction.

Under load thousands of turns end within the same few milliseconds; one transaction (and, when
the database syncs to disk, one sync) for all of them is what makes a durable turn cost about as
much as an in-memory one. A single turn pays one extra trip through the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from .ops import Driver, Op, Outcome, Row, Rows, Unit, WouldBlock


class Journal:
    """Writes units through its driver in batches, one batch at a time; reads go straight through."""

    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self._pending: list[Unit] = []
        self._flusher: asyncio.Task[None] | None = None
        self._soon = False  # a synchronous flush is scheduled for the next turn of the loop
        self.batches = 0  # how many transactions were written (for tests and benchmarks)
        self.units = 0

    @property
    def dialect(self) -> str:
        return self.driver.dialect

    async def write(self, ops: Sequence[Op], conflict: Callable[[], BaseException]) -> Rows:
        """Write `ops` as one unit with other waiting units; the rows of its `fetch` op, if any.
        Raises `conflict()` if one of its expectations failed (nothing of the unit was written), or
        the batch's error."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Rows] = loop.create_future()
        self._pending.append(Unit(ops, conflict, future))
        if self._flusher is None and not self._soon:
            if self.driver.apply_now is not None:
                self._soon = True  # what the other turns submit before the loop comes round joins the batch
                loop.call_soon(self._flush_now)
            else:
                self._flusher = loop.create_task(self._flush())
        return await future

    def _take(self) -> list[Unit]:
        # A submitter cancelled before its batch started never reaches the database.
        batch = [unit for unit in self._pending if not unit.future.cancelled()]
        self._pending = []
        return batch

    def _flush_now(self) -> None:
        self._soon = False
        if self._flusher is not None:  # an asynchronous flush took over; it drains the queue
            return
        batch = self._take()
        if not batch:
            return
        assert self.driver.apply_now is not None
        try:
            results = self.driver.apply_now(batch)
        except WouldBlock:
            self._pending[:0] = batch
            self._flusher = asyncio.get_running_loop().create_task(self._flush())
            return
        except Exception as exc:  # noqa: BLE001  (the whole batch failed: each submitter gets the error)
            results = [exc] * len(batch)
        self._settle(batch, results)

    def _settle(self, batch: list[Unit], results: list[Outcome]) -> None:
        self.batches += 1
        self.units += len(batch)
        for unit, result in zip(batch, results, strict=True):
            if unit.future.done():
                continue
            if isinstance(result, BaseException):
                unit.future.set_exception(result)
            else:
                unit.future.set_result(result)

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch = self._take()
                if not batch:
                    continue
                try:
                    results: list[Outcome] = await self.driver.apply(batch)
                except asyncio.CancelledError:
                    for unit in batch:
                        unit.future.cancel()
                    raise
                except Exception as exc:  # noqa: BLE001  (the whole batch failed: each submitter gets the error)
                    results = [exc] * len(batch)
                self._settle(batch, results)
        finally:
            self._flusher = None
            for unit in self._pending:  # only when the flusher itself was cancelled (shutdown)
                if not unit.future.done():
                    unit.future.cancel()
            self._pending = []

    async def read(self, queries: Sequence[tuple[str, Row]]) -> list[list[tuple[Any, ...]]]:
        return await self.driver.read(queries)

    async def read_one(self, sql: str, *params: Any) -> tuple[Any, ...] | None:
        rows = (await self.driver.read(((sql, params),)))[0]
        return rows[0] if rows else None

    def db_time(self, value: datetime) -> Any:
        return self.driver.db_time(value)

    def py_time(self, value: Any) -> datetime:
        return self.driver.py_time(value)

    async def close(self) -> None:
        if self._pending and self._flusher is None:  # written before the driver goes
            self._flusher = asyncio.get_running_loop().create_task(self._flush())
        if self._flusher is not None:
            await asyncio.shield(self._flusher)
        await self.driver.close()
