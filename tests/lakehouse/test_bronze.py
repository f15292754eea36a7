"""Bronze ingestion: exactly once across restarts, producer duplicates dropped, offsets with the data."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from concierge.events.bus import Record
from concierge.events.schema import AgentEvent, EventType
from concierge.lakehouse.bronze import BronzeWriter, committed_offsets
from concierge.lakehouse.catalog import BRONZE, open_catalog


class MemoryLog:
    """An in-memory stand-in of the bus (the real logs have their own contract tests)."""

    def __init__(self, partitions: int = 4) -> None:
        self.partitions = partitions
        self.records: dict[int, list[Record]] = {p: [] for p in range(partitions)}

    async def append(self, records: Sequence[tuple[int, bytes]]) -> list[int]:
        offsets = []
        for partition, data in records:
            offset = len(self.records[partition]) + 1
            self.records[partition].append(Record(partition, offset, data))
            offsets.append(offset)
        return offsets

    async def read(self, partition: int, after: int, limit: int) -> list[Record]:
        return self.records[partition][after:after + limit]

    async def end_offsets(self) -> dict[int, int]:
        return {p: len(r) for p, r in self.records.items()}


def _events(n: int) -> list[AgentEvent]:
    return [AgentEvent(type=EventType.MESSAGE_RECEIVED, tenant=f"t{i % 3}", conversation_id=f"c{i % 17}",
                       user_id=f"u{i % 5}", payload={"text": f"hello {i}"}) for i in range(n)]


async def _produce(log: MemoryLog, events: list[AgentEvent], duplicate_every: int = 0) -> None:
    batch = []
    for i, event in enumerate(events):
        batch.append((event.partition(log.partitions), event.to_json()))
        if duplicate_every and i % duplicate_every == 0:  # a producer retry: same event, new offset
            batch.append((event.partition(log.partitions), event.to_json()))
    await log.append(batch)


def _ids(catalog) -> list[str]:
    return catalog.load_table(BRONZE).scan(selected_fields=("event_id",)).to_arrow().column("event_id").to_pylist()


async def _drain(writer: BronzeWriter) -> None:
    while await writer.run_once() or await writer.pending():
        pass


async def test_every_distinct_event_once_with_duplicates_and_restarts(tmp_path):
    catalog = open_catalog(tmp_path)
    log = MemoryLog()
    events = _events(3000)
    await _produce(log, events[:2000], duplicate_every=7)
    first = BronzeWriter(catalog, log, batch_size=700)
    await first.run_once()
    await first.run_once()
    restarted = BronzeWriter(catalog, log, batch_size=700)  # a new process: state from the table only
    await _produce(log, events[2000:], duplicate_every=5)
    await _drain(restarted)
    ids = _ids(catalog)
    assert len(ids) == len(set(ids)) == 3000
    assert set(ids) == {e.event_id for e in events}
    assert committed_offsets(catalog.load_table(BRONZE)) == await log.end_offsets()
    assert await BronzeWriter(catalog, log).run_once() == 0


async def test_a_crash_inside_the_commit_neither_loses_nor_duplicates(tmp_path, monkeypatch):
    catalog = open_catalog(tmp_path)
    log = MemoryLog()
    events = _events(500)
    await _produce(log, events)
    writer = BronzeWriter(catalog, log, batch_size=200)
    await writer.run_once()
    catalog_cls = type(catalog)
    real = catalog_cls.commit_table

    def dies(self, *args, **kwargs):  # data files are written, the catalog pointer never moves
        raise OSError("the process died before the catalog pointer moved")

    monkeypatch.setattr(catalog_cls, "commit_table", dies)
    with pytest.raises(OSError, match="died"):
        BronzeWriter(catalog, log, batch_size=200).write(await writer.poll())
    monkeypatch.setattr(catalog_cls, "commit_table", real)
    await _drain(BronzeWriter(catalog, log, batch_size=200))
    ids = _ids(catalog)
    assert sorted(ids) == sorted(e.event_id for e in events)


async def test_unreadable_records_are_counted_and_skipped_but_move_the_offset(tmp_path):
    catalog = open_catalog(tmp_path)
    log = MemoryLog(partitions=1)
    good = _events(3)
    await log.append([(0, b"not json"), (0, json.dumps({"no": "id"}).encode()), *[(0, e.to_json()) for e in good]])
    writer = BronzeWriter(catalog, log)
    assert await writer.run_once() == 3
    assert writer.unreadable == 2 and writer.offsets == {0: 5}


async def test_a_second_writer_loses_the_race_reloads_and_never_duplicates(tmp_path):
    catalog = open_catalog(tmp_path)
    log = MemoryLog()
    events = _events(400)
    await _produce(log, events)
    one, two = BronzeWriter(catalog, log, batch_size=100), BronzeWriter(catalog, log, batch_size=100)
    one.load()
    two.load()
    batch_one, batch_two = await one.poll(), await two.poll()  # both read the same records
    assert one.write(batch_one) > 0
    assert two.write(batch_two) == 0  # its commit conflicts: it reloads instead of writing twice
    assert two.offsets == one.offsets
    await _drain(two)
    ids = _ids(catalog)
    assert len(ids) == len(set(ids)) == 400


def test_the_vectorised_parse_and_the_row_path_build_the_same_rows():
    from datetime import UTC, datetime

    from concierge.lakehouse.bronze_rows import _row_by_row, _vectorised

    events = _events(50)
    records = [Record(e.partition(4), i + 1, e.to_json()) for i, e in enumerate(events)]
    records.append(Record(0, 99, json.dumps({"event_id": "x1", "payload": {}}).encode()))  # no tenant
    records.append(records[3])  # a repeat within the batch
    seen = {events[0].event_id}  # already in bronze
    now = datetime.now(UTC)
    fast = _vectorised(records, seen, now)
    assert fast is not None
    slow = _row_by_row(records, seen, now)
    assert fast[1] == slow[1] and len(fast[1]) == 49
    assert fast[2] == slow[2] == 1
    assert fast[0].to_pylist() == slow[0].to_pylist()
    assert _vectorised([*records, Record(0, 100, b"{broken")], seen, now) is None  # falls back to rows


def test_payloads_are_sliced_only_from_records_the_event_writer_produced():
    from concierge.lakehouse.bronze_rows import _raw_payload

    event = AgentEvent(type=EventType.TOOL_CALL_END, tenant="t", conversation_id="c",
                       payload={"payload": {"x": ',"payload":1'}, "text": "héllo \"quoted\""})
    assert json.loads(_raw_payload(event.to_json())) == event.payload
    foreign = json.dumps({"payload": {"a": 1}, "tenant": "t", "meta": {"b": 2, "payload": 3}}).encode()
    assert json.loads(_raw_payload(foreign)) == {"a": 1}


def test_bad_writer_settings_are_refused(tmp_path):
    from concierge.core.errors import ValidationError

    with pytest.raises(ValidationError, match="batch_size"):
        BronzeWriter(open_catalog(tmp_path), MemoryLog(), batch_size=0)
