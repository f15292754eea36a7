"""Bronze: every distinct event from the bus, written into Iceberg exactly once.

Exactly once comes from committing the consumer's position together with the data: each append
to `bronze.events` is one Iceberg commit that also sets the table property `concierge.offsets`
(the last offset read from each bus partition). A crash before the commit leaves only orphan
data files that no snapshot references; a crash after it leaves the offsets saying exactly what
is in the table. On start the writer reads the offsets back and continues after them, so a
replay never duplicates and never skips. The property lives on the table, not on one snapshot,
so compaction, erasure and snapshot expiry do not lose it.

Producers retry, so the bus can carry the same event twice (same `event_id`, two offsets).
The writer drops ids it has already written: those of this batch and of the table's rows from
the last `dedup_days` days (loaded at start, kept in memory). One writer per table; a second one
fails its commit (Iceberg's optimistic concurrency), reloads and carries on from the new state.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.expressions import GreaterThanOrEqual
from pyiceberg.table import Table
from pyiceberg.table.update import AssertRefSnapshotId

from ..core.errors import ValidationError
from ..events.bus import EventLog, Record
from .bronze_rows import bronze_rows
from .catalog import BRONZE, ensure_table
from .partitioned import append_partitioned

logger = logging.getLogger(__name__)
OFFSETS_PROPERTY = "concierge.offsets"


def committed_offsets(table: Table) -> dict[int, int]:
    """The bus position the table's data ends at: {partition: last offset written}."""
    raw = table.properties.get(OFFSETS_PROPERTY)
    return {int(p): int(o) for p, o in json.loads(raw).items()} if raw else {}


@dataclass
class BronzeWriter:
    catalog: Catalog
    log: EventLog
    batch_size: int = 10_000
    dedup_days: int = 2
    unreadable: int = 0  # records without an id or tenant: counted, skipped (bronze needs both)
    _table: Table | None = None
    _offsets: dict[int, int] = field(default_factory=dict)
    _seen: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.dedup_days < 0:
            raise ValidationError(f"batch_size must be >= 1 and dedup_days >= 0, got {self.batch_size} and "
                                  f"{self.dedup_days}")

    def load(self) -> None:
        """(Re)read the committed offsets and the recent event ids from the table."""
        table = ensure_table(self.catalog, BRONZE)  # with retries off: a conflict must surface here
        self._table = table
        self._offsets = committed_offsets(table)
        since = datetime.now(UTC) - timedelta(days=self.dedup_days)
        ids = table.scan(row_filter=GreaterThanOrEqual("ts", since.isoformat()), selected_fields=("event_id",))
        self._seen = set(ids.to_arrow().column("event_id").to_pylist())

    @property
    def offsets(self) -> dict[int, int]:
        return dict(self._offsets)

    async def poll(self) -> list[Record]:
        """The next records after the committed offsets, up to `batch_size` across partitions."""
        records: list[Record] = []
        per_partition = max(1, self.batch_size // self.log.partitions)
        for partition in range(self.log.partitions):
            records.extend(await self.log.read(partition, self._offsets.get(partition, 0), per_partition))
        return records

    def write(self, records: Sequence[Record]) -> int:
        """Append the new events of `records` and move the offsets, in one Iceberg commit."""
        if self._table is None:
            self.load()
        offsets = dict(self._offsets)
        for record in records:
            if record.offset > offsets.get(record.partition, 0):
                offsets[record.partition] = record.offset
        if offsets == self._offsets:
            return 0
        assert self._table is not None
        rows, batch_ids, unreadable = bronze_rows(records, self._seen, datetime.now(UTC))
        position = json.dumps({str(p): o for p, o in offsets.items()})
        try:
            tx = self._table.transaction()
            # The commit holds only if nobody committed since we read the position. (pyiceberg has
            # no public way to add a requirement; `_stage` is how it adds its own.)
            tx._stage((), (AssertRefSnapshotId(ref="main", snapshot_id=self._table.metadata.current_snapshot_id),))
            if batch_ids:
                append_partitioned(tx, self._table.io, rows, {OFFSETS_PROPERTY: position})
            tx.set_properties({OFFSETS_PROPERTY: position})
            committed = tx.commit_transaction()  # the table as committed: no catalog round trip to reload it
        except CommitFailedException:
            # Another writer committed first: our view is stale. Reload and go on from its position.
            logger.warning("bronze commit conflict; reloading")
            self.load()
            return 0
        self._offsets = offsets
        self.unreadable += unreadable  # bronze is raw: only an envelope without id or tenant is refused
        self._seen |= batch_ids
        self._table = committed
        return len(batch_ids)

    async def run_once(self) -> int:
        """One poll and one commit; the number of new events written (0 when the bus had nothing)."""
        if self._table is None:
            await asyncio.to_thread(self.load)
        records = await self.poll()
        if not records:
            return 0
        return await asyncio.to_thread(self.write, records)

    async def run(self, stop: asyncio.Event, *, idle_s: float = 0.05) -> None:
        """Ingest until `stop` is set, sleeping `idle_s` whenever the bus is drained."""
        while not stop.is_set():
            if await self.run_once() == 0 and not await self.pending():
                try:
                    await asyncio.wait_for(stop.wait(), idle_s)
                except TimeoutError:
                    pass

    async def pending(self) -> bool:
        """Whether the bus holds records past the committed position."""
        ends = await self.log.end_offsets()
        return any(end > self._offsets.get(p, 0) for p, end in ends.items())

