"""The event bus seam: a partitioned, durable, ordered log with positional reads and consumer groups.

Two implementations sit behind it: an embedded log in a SQLite file (the default: nothing to run)
and Redis Streams (several processes). A Kafka adapter would implement the same protocol.

Offsets are integers that increase within a partition. Positional reads (`read(partition, after)`)
let a consumer that stores its own offsets atomically with its output (the Iceberg bronze writer
keeps them in the snapshot) replay exactly from where its last commit ended. Consumer groups
(`group_read`, `ack`, `reclaim`) are for consumers that want the bus to track what they finished.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..core.errors import ValidationError


@dataclass(frozen=True, slots=True)
class Record:
    partition: int
    offset: int
    data: bytes  # an AgentEvent as JSON (AgentEvent.to_json)


class EventLog(Protocol):
    partitions: int

    async def append(self, records: Sequence[tuple[int, bytes]]) -> list[int]:
        """Append (partition, data) pairs; durable when it returns; the offsets assigned, in order."""
        ...

    async def read(self, partition: int, after: int, limit: int) -> list[Record]:
        """Up to `limit` records of `partition` with offset > `after`, in offset order."""
        ...

    async def end_offsets(self) -> dict[int, int]:
        """The last offset of each partition (0 when empty)."""
        ...

    async def group_read(self, group: str, consumer: str, count: int, block_ms: int = 0) -> list[Record]:
        """New records for `consumer` in `group`, across partitions; they stay pending until acked."""
        ...

    async def ack(self, group: str, records: Sequence[Record]) -> None: ...

    async def reclaim(self, group: str, consumer: str, min_idle_ms: int, count: int) -> list[Record]:
        """Records pending longer than `min_idle_ms` at other consumers (crashed ones), now `consumer`'s."""
        ...

    async def close(self) -> None: ...


def open_log(spec: str, *, partitions: int = 8) -> EventLog:
    """The bus a spec names: `embedded:PATH` (a SQLite file) or `redis://host:port/db` (Redis Streams)."""
    if spec.startswith("embedded:"):
        from .log import EmbeddedLog

        path = Path(spec.removeprefix("embedded:"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return EmbeddedLog(path, partitions=partitions)
    if spec.startswith(("redis://", "rediss://", "unix://")):
        from .redis_streams import RedisStreamLog

        return RedisStreamLog.from_url(spec, partitions=partitions)
    raise ValidationError(f"unknown bus {spec!r}", hint="use embedded:PATH or redis://host:6379/0")
