"""The event log on Redis Streams: one stream per partition, for several processes on several hosts.

Offsets are the stream ids packed into one int, `ms << 22 | seq`, so they increase within a
partition like Redis' ids do. Durability is the operator's choice: with AOF (`appendfsync always`
or `everysec`) an acknowledged XADD survives a restart within that window; without persistence (as
the tests run it) the log lives only as long as the server.

Consumer groups map onto Redis' own: a group starts at the beginning of every stream, records
stay in the pending list until XACK, and `reclaim` moves idle pending records of other consumers
with XCLAIM (its min-idle check makes two reclaimers race safely).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio

from ..core.errors import ValidationError
from .bus import Record
from .log import check_acks, check_batch, check_int, check_name, check_partition, check_partitions

SEQ_BITS = 22
_SEQ_MASK = (1 << SEQ_BITS) - 1
_FIELD = b"d"


def encode_id(stream_id: bytes | str) -> int:
    """'1700000000000-5' -> an int offset; refuses a sequence that does not fit in 22 bits."""
    if isinstance(stream_id, bytes):  # int() reads ASCII digits from bytes: no decode on the hot path
        ms, _, seq = stream_id.partition(b"-")
    else:
        ms, _, seq = stream_id.partition("-")
    ms_n, seq_n = int(ms), int(seq or 0)
    if seq_n > _SEQ_MASK:
        text = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
        raise ValidationError(f"stream id {text} has a sequence >= 2**{SEQ_BITS}; it has no int offset",
                              hint="more than 4M records in one millisecond on one partition: add partitions")
    return ms_n << SEQ_BITS | seq_n


def decode_offset(offset: int) -> str:
    """An int offset -> the stream id it came from."""
    return f"{offset >> SEQ_BITS}-{offset & _SEQ_MASK}"


class RedisStreamLog:
    """`EventLog` over Redis Streams `{prefix}{partition}`; `maxlen` caps each stream (approximately)."""

    def __init__(self, client: redis.asyncio.Redis, *, partitions: int = 8, prefix: str = "concierge:events:",
                 maxlen: int | None = None, close_client: bool = False) -> None:
        self.partitions = check_partitions(partitions)
        if maxlen is not None:
            check_int("maxlen", maxlen, 1)
        if not isinstance(prefix, str):
            raise ValidationError(f"prefix must be a string, got {prefix!r}")
        self.client = client
        # Positional reads skip redis-py's reply parsing (a dict per entry costs more than the read
        # itself): a second client on the same pool, whose XRANGE replies come back as sent.
        self._raw = redis.asyncio.Redis(connection_pool=client.connection_pool)
        self._raw.set_response_callback("XRANGE", _as_sent)
        self.prefix = prefix
        self.maxlen = maxlen
        self.keys = [f"{prefix}{p}" for p in range(partitions)]
        self._close_client = close_client
        self._groups: set[str] = set()
        self._turn = 0  # rotates which partition group_read serves first, so none starves

    @classmethod
    def from_url(cls, url: str, *, partitions: int = 8, prefix: str = "concierge:events:",
                 maxlen: int | None = None) -> RedisStreamLog:
        """A log that owns its client; the pool makes a burst of callers wait for a connection, not fail."""
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValidationError(f"unsupported event log URL {url!r}", hint="give redis://host:6379/0")
        pool = redis.asyncio.BlockingConnectionPool.from_url(url, max_connections=100, timeout=10)
        return cls(redis.asyncio.Redis.from_pool(pool), partitions=partitions, prefix=prefix, maxlen=maxlen,
                   close_client=True)

    async def append(self, records: Sequence[tuple[int, bytes]]) -> list[int]:
        """One pipelined XADD per record: one connection runs them in order, so offsets rise per partition."""
        check_batch(records, self.partitions)
        if not records:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for partition, data in records:
                pipe.xadd(self.keys[partition], {_FIELD: data}, maxlen=self.maxlen, approximate=True)
            ids = await pipe.execute()
        return [encode_id(stream_id) for stream_id in ids]

    async def read(self, partition: int, after: int, limit: int) -> list[Record]:
        check_partition(partition, self.partitions)
        check_int("after", after, 0)
        check_int("limit", limit, 1)
        start = f"({decode_offset(after)}" if after else "-"
        entries = await self._raw.execute_command("XRANGE", self.keys[partition], start, "+", "COUNT", limit)
        return [_raw_record(partition, stream_id, fields) for stream_id, fields in entries or ()]

    async def end_offsets(self) -> dict[int, int]:
        async with self.client.pipeline(transaction=False) as pipe:
            for key in self.keys:
                pipe.xrevrange(key, max="+", min="-", count=1)
            lasts = await pipe.execute()
        return {p: encode_id(last[0][0]) if last else 0 for p, last in enumerate(lasts)}

    async def group_read(self, group: str, consumer: str, count: int, block_ms: int = 0) -> list[Record]:
        """New records for `consumer`, at most `count` in all; waits up to `block_ms` for some to arrive.

        XREADGROUP's COUNT holds per stream, so reading all streams at once could deliver more than asked
        (and strand the rest as pending). Instead it reads only the streams that have undelivered records,
        one at a time with what is left of `count`, and waits with a plain XREAD, which consumes nothing.
        """
        check_name("group", group)
        check_name("consumer", consumer)
        check_int("count", count, 1)
        check_int("block_ms", block_ms, 0)
        await self._ensure_group(group)
        deadline = time.monotonic() + block_ms / 1000
        cancels = _cancels()
        while True:
            behind, lasts = await self._behind(group)
            self._turn = (self._turn + 1) % self.partitions
            records: list[Record] = []
            for i in range(self.partitions):
                partition = (self._turn + i) % self.partitions
                if partition not in behind or len(records) >= count:
                    continue
                reply = await self.client.xreadgroup(group, consumer, {self.keys[partition]: ">"},
                                                     count=count - len(records))
                records.extend(_record(partition, stream_id, fields)
                               for _, entries in _streams(reply) for stream_id, fields in entries)
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if records or remaining_ms <= 0:
                break
            await self.client.xread(dict(zip(self.keys, lasts, strict=True)), count=1, block=remaining_ms)
            _raise_if_cancelled(cancels)
        # redis-py may swallow a cancel (see serving/routing.py); what was read stays pending for reclaim.
        _raise_if_cancelled(cancels)
        return records

    async def _behind(self, group: str) -> tuple[set[int], list[str]]:
        """The partitions with records the group has not delivered yet, and each stream's last id."""
        async with self.client.pipeline(transaction=False) as pipe:
            for key in self.keys:
                pipe.xinfo_groups(key)
                pipe.xrevrange(key, max="+", min="-", count=1)
            replies = await pipe.execute()
        behind: set[int] = set()
        lasts: list[str] = []
        for partition in range(self.partitions):
            groups, last = replies[2 * partition], replies[2 * partition + 1]
            last_id = _text(last[0][0]) if last else "0-0"
            lasts.append(last_id)
            info = next((g for g in groups if _text(g["name"]) == group), None)
            if info is None:  # deleted behind our back (FLUSHDB, XGROUP DESTROY): make it again
                self._groups.discard(group)
                await self._ensure_group(group)
                behind.add(partition)
            elif encode_id(last_id) > encode_id(info["last-delivered-id"]):
                behind.add(partition)
        return behind, lasts

    async def _ensure_group(self, group: str) -> None:
        if group in self._groups:
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for key in self.keys:
                pipe.xgroup_create(key, group, id="0", mkstream=True)
            results = await pipe.execute(raise_on_error=False)
        for result in results:
            if isinstance(result, Exception) and "BUSYGROUP" not in str(result):
                raise result
        self._groups.add(group)

    async def ack(self, group: str, records: Sequence[Record]) -> None:
        check_name("group", group)
        check_acks(records, self.partitions)
        by_partition: dict[int, list[str]] = {}
        for record in records:
            by_partition.setdefault(record.partition, []).append(decode_offset(record.offset))
        if not by_partition:
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for partition, ids in by_partition.items():
                pipe.xack(self.keys[partition], group, *ids)
            await pipe.execute()

    async def reclaim(self, group: str, consumer: str, min_idle_ms: int, count: int) -> list[Record]:
        """Records pending longer than `min_idle_ms` at other consumers (crashed ones), now `consumer`'s."""
        check_name("group", group)
        check_name("consumer", consumer)
        check_int("min_idle_ms", min_idle_ms, 0)
        check_int("count", count, 1)
        await self._ensure_group(group)
        out: list[Record] = []
        for partition, key in enumerate(self.keys):
            if len(out) >= count:
                break
            ids = await self._idle_ids(key, group, consumer, min_idle_ms, count - len(out))
            if not ids:
                continue
            claimed = await self.client.xclaim(key, group, consumer, min_idle_ms, ids)
            # An entry trimmed away meanwhile comes back empty (or not at all): nothing to process.
            out.extend(_record(partition, stream_id, fields) for stream_id, fields in claimed if fields)
        return out

    async def _idle_ids(self, key: str, group: str, consumer: str, min_idle_ms: int, want: int) -> list[bytes]:
        """Ids idle >= min_idle at consumers other than `consumer`; pages past the caller's own."""
        ids: list[bytes] = []
        start = "-"
        while len(ids) < want:
            page = await self.client.xpending_range(key, group, min=start, max="+", count=want, idle=min_idle_ms)
            ids.extend(item["message_id"] for item in page if _text(item["consumer"]) != consumer)
            if len(page) < want:
                break
            start = f"({_text(page[-1]['message_id'])}"
        return ids[:want]

    async def trim(self, before: dict[int, int]) -> None:
        """Retention: deletes each partition's records with offset < before[partition] (XTRIM MINID)."""
        for partition, offset in before.items():
            check_partition(partition, self.partitions)
            check_int("trim offset", offset, 0)
        async with self.client.pipeline(transaction=False) as pipe:
            for partition, offset in before.items():
                pipe.xtrim(self.keys[partition], minid=decode_offset(offset), approximate=False)
            await pipe.execute()

    async def delete(self, positions: Sequence[tuple[int, int]]) -> int:
        """Erasure: XDEL the entries at these (partition, offset) positions; how many existed."""
        by_partition: dict[int, list[str]] = {}
        for partition, offset in positions:
            check_partition(partition, self.partitions)
            check_int("offset", offset, 1)
            by_partition.setdefault(partition, []).append(decode_offset(offset))
        if not by_partition:
            return 0
        async with self.client.pipeline(transaction=False) as pipe:
            for partition, ids in by_partition.items():
                pipe.xdel(self.keys[partition], *ids)
            return sum(int(n) for n in await pipe.execute())

    async def close(self) -> None:
        """Closes the client only if this log made it (from_url); a lent client stays open."""
        if self._close_client:
            await self.client.aclose()

    def _partition(self, key: bytes | str) -> int:
        return int(_text(key)[len(self.prefix):])


def _as_sent(response: Any, **_options: Any) -> Any:
    return response


def _raw_record(partition: int, stream_id: bytes | str, fields: list[Any]) -> Record:
    """An XRANGE entry as sent, `[id, [field, value, ...]]`; the log writes the one field `d`."""
    if len(fields) == 2 and fields[0] in (_FIELD, "d"):
        data = fields[1]
        return Record(partition, encode_id(stream_id), data.encode() if isinstance(data, str) else data)
    return _record(partition, stream_id, dict(zip(fields[::2], fields[1::2], strict=True)))


def _record(partition: int, stream_id: bytes | str, fields: dict[Any, Any]) -> Record:
    data = fields.get(_FIELD, fields.get(_FIELD.decode()))
    return Record(partition, encode_id(stream_id), data.encode() if isinstance(data, str) else data)


def _streams(reply: Any) -> list[tuple[Any, list[Any]]]:
    """XREADGROUP's reply as (key, entries) pairs: a list in RESP2, a dict in RESP3, None on timeout."""
    if not reply:
        return []
    return list(reply.items()) if isinstance(reply, dict) else [(key, entries) for key, entries in reply]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _cancels() -> int:
    task = asyncio.current_task()
    return task.cancelling() if task is not None else 0


def _raise_if_cancelled(before: int) -> None:
    if _cancels() > before:
        raise asyncio.CancelledError
