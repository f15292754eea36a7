"""The embedded event log: a partitioned, durable log in one SQLite file (the default bus: nothing to run).

Durability: WAL mode with `synchronous=FULL`, and one transaction per `append` call, so every
append that returned has had its WAL frames fsynced and survives a crash of the process or the
machine. A batch costs one fsync however many records it holds, which is why batching is cheap.

Several processes may share the file: every write takes SQLite's write lock up front
(`BEGIN IMMEDIATE`, waiting up to `busy_timeout_ms`), so offsets are assigned under that lock and
stay unique and contiguous; readers run beside the writer (WAL) and see each batch whole or not at all.

Offsets start at 1 per partition. `heads` keeps the last offset given out, so trimming a partition
empty never reuses one. A consumer group remembers how far it has handed records out (`delivered`,
like a Redis stream group's last-delivered id) and how far it has finished (`committed`: the highest
offset below which every record was acked), which is what retention may trim up to.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from ..core.aio import run_to_completion
from ..core.errors import ValidationError
from .bus import Record

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (id INTEGER PRIMARY KEY CHECK (id = 1), partitions INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS records ("partition" INTEGER NOT NULL, "offset" INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY ("partition", "offset")) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS heads ("partition" INTEGER PRIMARY KEY, last INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS group_offsets ("group" TEXT NOT NULL, "partition" INTEGER NOT NULL,
    committed INTEGER NOT NULL, delivered INTEGER NOT NULL, PRIMARY KEY ("group", "partition")) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pending ("group" TEXT NOT NULL, "partition" INTEGER NOT NULL, "offset" INTEGER NOT NULL,
    consumer TEXT NOT NULL, delivered_at INTEGER NOT NULL, PRIMARY KEY ("group", "partition", "offset"))
    WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pending_age ON pending ("group", delivered_at);
"""


def check_partitions(partitions: int) -> int:
    if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
        raise ValidationError(f"partitions must be an int >= 1, got {partitions!r}")
    return partitions


def check_int(name: str, value: int, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValidationError(f"{name} must be an int >= {least}, got {value!r}")
    return value


def check_partition(partition: int, partitions: int) -> int:
    if isinstance(partition, bool) or not isinstance(partition, int) or not 0 <= partition < partitions:
        raise ValidationError(f"partition must be an int in [0, {partitions}), got {partition!r}",
                              hint="use AgentEvent.partition(log.partitions)")
    return partition


def check_batch(records: Sequence[tuple[int, bytes]], partitions: int) -> None:
    """Rejects the whole batch before anything is written, so a bad record never half-appends one."""
    for item in records:
        if not isinstance(item, tuple) or len(item) != 2:
            raise ValidationError(f"records must be (partition, data) pairs, got {item!r}")
        check_partition(item[0], partitions)
        if not isinstance(item[1], bytes):
            raise ValidationError(f"record data must be bytes, got {type(item[1]).__name__}",
                                  hint="append AgentEvent.to_json()")


def check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not name:
        raise ValidationError(f"{kind} must be a non-empty string, got {name!r}")
    return name


def check_acks(records: Sequence[Record], partitions: int) -> None:
    for record in records:
        if not isinstance(record, Record):
            raise ValidationError(f"ack takes Records, got {type(record).__name__}")
        check_partition(record.partition, partitions)


class EmbeddedLog:
    """`EventLog` over a SQLite file; safe to share between threads of a process and between processes."""

    def __init__(self, path: Path | str, *, partitions: int = 8, busy_timeout_ms: int = 30_000,
                 poll_ms: int = 5) -> None:
        self.partitions = check_partitions(partitions)
        check_int("busy_timeout_ms", busy_timeout_ms, 0)
        self.poll_ms = check_int("poll_ms", poll_ms, 1)
        self.path = Path(path)
        self._lock = threading.Lock()  # one connection, used by one thread at a time
        self._turn = 0  # rotates which partition group_read serves first, so none starves
        self._conn: sqlite3.Connection | None = None
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            with _transaction(conn):
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("INSERT OR IGNORE INTO meta (id, partitions) VALUES (1, ?)", (partitions,))
                (stored,) = conn.execute("SELECT partitions FROM meta").fetchone()
                if stored != partitions:
                    raise ValidationError(
                        f"{self.path} holds a log of {stored} partitions, not {partitions}",
                        hint=f"open it with partitions={stored}: changing the count would move conversations "
                             "to other partitions and break their order")
                conn.executemany('INSERT OR IGNORE INTO heads ("partition", last) VALUES (?, 0)',
                                 [(p,) for p in range(partitions)])
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    async def append(self, records: Sequence[tuple[int, bytes]]) -> list[int]:
        """Appends the batch in one transaction; durable (fsynced) when it returns; the offsets, in order."""
        check_batch(records, self.partitions)
        if not records:
            return []
        return await self._run(self._append, list(records))

    def _append(self, conn: sqlite3.Connection, records: list[tuple[int, bytes]]) -> list[int]:
        with _transaction(conn):
            heads = dict(conn.execute('SELECT "partition", last FROM heads').fetchall())
            touched: dict[int, int] = {}
            offsets: list[int] = []
            rows: list[tuple[int, int, bytes]] = []
            for partition, data in records:
                offset = touched.get(partition, heads[partition]) + 1
                touched[partition] = offset
                offsets.append(offset)
                rows.append((partition, offset, data))
            conn.executemany('INSERT INTO records ("partition", "offset", data) VALUES (?, ?, ?)', rows)
            conn.executemany('UPDATE heads SET last = ? WHERE "partition" = ?',
                             [(last, p) for p, last in touched.items()])
        return offsets

    async def read(self, partition: int, after: int, limit: int) -> list[Record]:
        check_partition(partition, self.partitions)
        check_int("after", after, 0)
        check_int("limit", limit, 1)
        return await self._run(self._read, partition, after, limit)

    def _read(self, conn: sqlite3.Connection, partition: int, after: int, limit: int) -> list[Record]:
        rows = conn.execute('SELECT "offset", data FROM records WHERE "partition" = ? AND "offset" > ? '
                            'ORDER BY "offset" LIMIT ?', (partition, after, limit)).fetchall()
        return [Record(partition, offset, data) for offset, data in rows]

    async def end_offsets(self) -> dict[int, int]:
        return await self._run(lambda conn: dict(conn.execute('SELECT "partition", last FROM heads').fetchall()))

    async def group_read(self, group: str, consumer: str, count: int, block_ms: int = 0) -> list[Record]:
        """Records the group has not handed out yet, now pending at `consumer`; polls up to `block_ms`."""
        check_name("group", group)
        check_name("consumer", consumer)
        check_int("count", count, 1)
        check_int("block_ms", block_ms, 0)
        deadline = time.monotonic() + block_ms / 1000
        while True:
            self._turn = (self._turn + 1) % self.partitions
            records = await self._run(self._group_read, group, consumer, count, self._turn)
            remaining = deadline - time.monotonic()
            if records or remaining <= 0:
                return records
            await asyncio.sleep(min(self.poll_ms / 1000, remaining))

    def _group_read(self, conn: sqlite3.Connection, group: str, consumer: str, count: int,
                    first: int) -> list[Record]:
        # A read-only look first: an idle poll must not take the write lock away from appenders.
        if not self._behind(conn, group):
            return []
        out: list[Record] = []
        now = _now_ms()
        with _transaction(conn):
            heads = dict(conn.execute('SELECT "partition", last FROM heads').fetchall())
            delivered = self._delivered(conn, group)
            for i in range(self.partitions):
                partition = (first + i) % self.partitions
                want = count - len(out)
                if want <= 0:
                    break
                start = delivered.get(partition, 0)
                if heads[partition] <= start:
                    continue
                records = self._read(conn, partition, start, want)
                # Fewer than asked: nothing else is left up to the head (the rest was trimmed).
                last = records[-1].offset if len(records) == want else heads[partition]
                conn.executemany('INSERT INTO pending ("group", "partition", "offset", consumer, delivered_at) '
                                 'VALUES (?, ?, ?, ?, ?)', [(group, partition, r.offset, consumer, now)
                                                             for r in records])
                conn.execute('INSERT INTO group_offsets ("group", "partition", committed, delivered) '
                             'VALUES (?, ?, 0, ?) ON CONFLICT DO UPDATE SET delivered = excluded.delivered',
                             (group, partition, last))
                if not records:
                    self._recompute(conn, group, [partition])
                out.extend(records)
        return out

    def _behind(self, conn: sqlite3.Connection, group: str) -> bool:
        heads = dict(conn.execute('SELECT "partition", last FROM heads').fetchall())
        delivered = self._delivered(conn, group)
        return any(last > delivered.get(p, 0) for p, last in heads.items())

    @staticmethod
    def _delivered(conn: sqlite3.Connection, group: str) -> dict[int, int]:
        return dict(conn.execute('SELECT "partition", delivered FROM group_offsets WHERE "group" = ?',
                                 (group,)).fetchall())

    async def ack(self, group: str, records: Sequence[Record]) -> None:
        """Drops the records from pending; `committed` moves up to the highest contiguous acked offset."""
        check_name("group", group)
        check_acks(records, self.partitions)
        if records:
            await self._run(self._ack, group, list(records))

    def _ack(self, conn: sqlite3.Connection, group: str, records: list[Record]) -> None:
        with _transaction(conn):
            conn.executemany('DELETE FROM pending WHERE "group" = ? AND "partition" = ? AND "offset" = ?',
                             [(group, r.partition, r.offset) for r in records])
            self._recompute(conn, group, {r.partition for r in records})

    @staticmethod
    def _recompute(conn: sqlite3.Connection, group: str, partitions: Any) -> None:
        """committed = just below the oldest pending record, or everything delivered when none is pending."""
        for partition in partitions:
            conn.execute(
                'UPDATE group_offsets SET committed = COALESCE((SELECT MIN("offset") - 1 FROM pending '
                'WHERE "group" = ?1 AND "partition" = ?2), delivered) WHERE "group" = ?1 AND "partition" = ?2',
                (group, partition))

    async def reclaim(self, group: str, consumer: str, min_idle_ms: int, count: int) -> list[Record]:
        """Records pending longer than `min_idle_ms` at other consumers (crashed ones), now `consumer`'s."""
        check_name("group", group)
        check_name("consumer", consumer)
        check_int("min_idle_ms", min_idle_ms, 0)
        check_int("count", count, 1)
        return await self._run(self._reclaim, group, consumer, min_idle_ms, count)

    def _reclaim(self, conn: sqlite3.Connection, group: str, consumer: str, min_idle_ms: int,
                 count: int) -> list[Record]:
        now = _now_ms()
        with _transaction(conn):
            rows = conn.execute(
                'SELECT p."partition", p."offset", r.data FROM pending p LEFT JOIN records r '
                'ON r."partition" = p."partition" AND r."offset" = p."offset" '
                'WHERE p."group" = ? AND p.consumer <> ? AND p.delivered_at <= ? '
                'ORDER BY p.delivered_at, p."partition", p."offset" LIMIT ?',
                (group, consumer, now - min_idle_ms, count)).fetchall()
            # A pending record trimmed away meanwhile cannot be processed: drop it, as XAUTOCLAIM does.
            gone = [(group, p, o) for p, o, data in rows if data is None]
            if gone:
                conn.executemany('DELETE FROM pending WHERE "group" = ? AND "partition" = ? AND "offset" = ?',
                                 gone)
                self._recompute(conn, group, {p for _, p, _ in gone})
            kept = [Record(p, o, data) for p, o, data in rows if data is not None]
            conn.executemany('UPDATE pending SET consumer = ?, delivered_at = ? '
                             'WHERE "group" = ? AND "partition" = ? AND "offset" = ?',
                             [(consumer, now, group, r.partition, r.offset) for r in kept])
        return kept

    async def trim(self, before: dict[int, int]) -> None:
        """Retention: deletes each partition's records with offset < before[partition]; heads stay."""
        for partition, offset in before.items():
            check_partition(partition, self.partitions)
            check_int("trim offset", offset, 0)
        if before:
            await self._run(self._trim, dict(before))

    def _trim(self, conn: sqlite3.Connection, before: dict[int, int]) -> None:
        with _transaction(conn):
            conn.executemany('DELETE FROM records WHERE "partition" = ? AND "offset" < ?', list(before.items()))

    async def delete(self, positions: Sequence[tuple[int, int]], *, compact: bool = False) -> int:
        """Erasure: delete the records at these (partition, offset) positions (and their pending
        entries); heads stay. `compact` then VACUUMs, so the deleted bytes leave the file. How many went."""
        for partition, offset in positions:
            check_partition(partition, self.partitions)
            check_int("offset", offset, 1)
        return await self._run(self._delete, sorted(set(positions)), compact)

    def _delete(self, conn: sqlite3.Connection, positions: list[tuple[int, int]], compact: bool) -> int:
        deleted = 0
        if positions:
            with _transaction(conn):
                for partition, offset in positions:
                    deleted += conn.execute('DELETE FROM records WHERE "partition" = ? AND "offset" = ?',
                                            (partition, offset)).rowcount
                conn.executemany('DELETE FROM pending WHERE "partition" = ? AND "offset" = ?', positions)
                groups = [g for (g,) in conn.execute('SELECT DISTINCT "group" FROM group_offsets')]
                for group in groups:
                    self._recompute(conn, group, {p for p, _ in positions})
        if compact:
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return deleted

    async def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

    async def _run(self, work: Callable[..., T], *args: Any) -> T:
        """Runs SQLite work in a thread. A cancelled caller still waits for it to finish (then gets the
        cancel), so `close()` never pulls the connection from under a running transaction."""
        return await run_to_completion(asyncio.to_thread(self._locked, work, *args))

    def _locked(self, work: Callable[..., T], *args: Any) -> T:
        with self._lock:
            if self._conn is None:
                raise ValidationError(f"event log {self.path} is closed")
            return work(self._conn, *args)


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE takes the write lock first, so concurrent writers queue (busy_timeout) instead of
    failing when a read would have to turn into a write."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
