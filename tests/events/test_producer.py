"""EventProducer: priority backpressure (safety never dropped, telemetry sampled), batching, retries."""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import Sequence

import pytest

from concierge.core.errors import ValidationError
from concierge.core.events import EventSink
from concierge.events.bus import Record
from concierge.events.producer import (
    EventProducer,
    FlusherStoppedError,
    NullProducer,
    ProducerClosedError,
    SamplingPolicy,
)
from concierge.events.schema import AgentEvent, EventType

TELEMETRY = [EventType.MESSAGE_RECEIVED, EventType.LLM_CALL_START, EventType.LLM_CALL_END,
             EventType.TOOL_CALL_START, EventType.TOOL_CALL_END, EventType.RESPONSE_SENT]
SAFETY = [EventType.GUARDRAIL_TRIGGERED, EventType.ERROR]


class FakeLog:
    """An in-memory EventLog: optionally slow (sleeps per record), optionally failing the first N appends."""

    def __init__(self, *, per_record_s: float = 0.0, fail_times: int = 0, refuse: bytes | None = None) -> None:
        self.partitions = 4
        self.per_record_s = per_record_s
        self.fail_times = fail_times
        self.refuse = refuse  # a batch holding a record with these bytes is refused (a ValueError)
        self.calls = 0
        self.gate: asyncio.Event | None = None  # when set up, append blocks until it is set
        self.data: dict[int, list[bytes]] = {p: [] for p in range(self.partitions)}

    async def append(self, records: Sequence[tuple[int, bytes]]) -> list[int]:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.per_record_s:
            await asyncio.sleep(self.per_record_s * len(records))
        if self.fail_times > 0:
            self.fail_times -= 1
            raise ConnectionError("log unavailable")
        if self.refuse is not None and any(self.refuse in data for _, data in records):
            raise ValueError("this record cannot be stored")
        offsets = []
        for partition, data in records:
            self.data[partition].append(data)
            offsets.append(len(self.data[partition]))
        return offsets

    async def read(self, partition: int, after: int, limit: int) -> list[Record]:
        return [Record(partition, i + 1, d) for i, d in enumerate(self.data[partition])][after:after + limit]

    async def end_offsets(self) -> dict[int, int]:
        return {p: len(d) for p, d in self.data.items()}

    async def group_read(self, group: str, consumer: str, count: int, block_ms: int = 0) -> list[Record]:
        raise NotImplementedError

    async def ack(self, group: str, records: Sequence[Record]) -> None:
        raise NotImplementedError

    async def reclaim(self, group: str, consumer: str, min_idle_ms: int, count: int) -> list[Record]:
        raise NotImplementedError

    async def close(self) -> None:
        return None

    def events(self) -> list[tuple[int, AgentEvent]]:
        return [(p, AgentEvent.from_json(d)) for p, items in self.data.items() for d in items]


def event(kind: EventType, conversation: str = "c1", seq: int = 0) -> AgentEvent:
    return AgentEvent(type=kind, tenant="acme", conversation_id=conversation, payload={"seq": seq})


async def test_burst_ten_times_the_consumer_keeps_every_safety_event_and_counts_drops() -> None:
    log = FakeLog(per_record_s=0.0005)  # the consumer: 2,000 events/s
    producer = EventProducer(log, capacity=2_000, batch_size=200, rng=random.Random(7))
    emitters, per_emitter, rate_per_emitter = 8, 2_500, 2_500.0  # 20,000 events/s in all, for ~1 s
    rng = random.Random(42)
    plans: list[list[AgentEvent]] = []
    for e in range(emitters):
        plan = []
        for i in range(per_emitter):
            kind = rng.choice(SAFETY) if rng.random() < 0.05 else rng.choice(TELEMETRY)
            plan.append(event(kind, conversation=f"e{e}-c{i % 10}", seq=i))  # each conversation in one task
        plans.append(plan)
    produced = Counter(ev.type.value for plan in plans for ev in plan)
    loop = asyncio.get_running_loop()

    async def emitter(plan: list[AgentEvent]) -> None:
        start = loop.time()
        for i, ev in enumerate(plan):
            if i % 25 == 0:
                delay = start + i / rate_per_emitter - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            await producer.emit(ev)

    began = loop.time()
    async with producer:
        await asyncio.gather(*(emitter(plan) for plan in plans))
        burst_s = loop.time() - began
        await producer.flush()
        stats = producer.stats()

    assert burst_s < 3.0, f"emitting took {burst_s:.1f}s: the burst was not a burst"
    delivered = log.events()
    ids = [ev.event_id for _, ev in delivered]
    assert len(ids) == len(set(ids)), "an event was delivered twice"
    emitted_ids = {ev.event_id for plan in plans for ev in plan}
    assert set(ids) <= emitted_ids

    safety_ids = {ev.event_id for plan in plans for ev in plan if ev.safety}
    assert safety_ids and safety_ids <= set(ids), "a safety event was dropped"
    assert not any(stats.dropped.get(k.value, 0) for k in SAFETY)

    delivered_counts = Counter(ev.type.value for _, ev in delivered)
    assert stats.delivered == dict(delivered_counts)
    assert stats.accepted == stats.delivered
    for kind, count in produced.items():
        assert stats.dropped.get(kind, 0) == count - delivered_counts.get(kind, 0), kind
    assert stats.produced == dict(produced)
    assert sum(stats.dropped.values()) > 0, "no overload happened"
    assert stats.buffered == 0

    # One conversation's delivered events keep their emit order within its partition.
    by_conversation: dict[str, list[tuple[int, int]]] = {}
    for partition, ev in delivered:
        assert partition == ev.partition(log.partitions)
        by_conversation.setdefault(ev.conversation_id, []).append((partition, ev.payload["seq"]))
    for conversation, items in by_conversation.items():
        assert len({p for p, _ in items}) == 1
        seqs = [s for _, s in items]
        assert seqs == sorted(seqs), conversation


async def test_sampling_starts_only_above_the_high_water_mark() -> None:
    log = FakeLog()
    log.gate = asyncio.Event()  # nothing leaves the buffer until the gate opens
    producer = EventProducer(log, capacity=1_000, batch_size=100, rng=random.Random(1))
    telemetry_room = 900  # 10% reserved for safety
    for i in range(telemetry_room // 2 + 1):  # up to and including fill == 50%
        assert await producer.emit(event(EventType.LLM_CALL_END, seq=i))
    assert producer.stats().dropped == {}

    kept = [await producer.emit(event(EventType.LLM_CALL_END)) for _ in range(2_000)]
    stats = producer.stats()
    assert stats.buffered == telemetry_room  # telemetry filled its part and no more
    assert stats.dropped["llm_call_end"] == kept.count(False) == 2_000 - (telemetry_room - 451)
    assert await producer.emit(event(EventType.TOOL_CALL_END)) is False  # no room at all

    # Safety events use the reserve, then wait for space instead of being dropped.
    for _ in range(100):
        assert await producer.emit(event(EventType.ERROR))
    assert producer.stats().waits == 0
    blocked = asyncio.create_task(producer.emit(event(EventType.GUARDRAIL_TRIGGERED)))
    await asyncio.sleep(0.05)
    assert not blocked.done()
    log.gate.set()
    assert await asyncio.wait_for(blocked, 5) is True
    await producer.close()
    stats = producer.stats()
    assert stats.waits == 1
    assert stats.accepted == stats.delivered
    assert stats.delivered["guardrail_triggered"] == 1 and stats.delivered["error"] == 100
    assert "error" not in stats.dropped


def test_keep_probability_falls_linearly_to_the_floor() -> None:
    policy = SamplingPolicy()
    assert policy.keep_probability(0.0) == 1.0
    assert policy.keep_probability(0.5) == 1.0
    assert policy.keep_probability(0.75) == pytest.approx(0.55)
    assert policy.keep_probability(1.0) == pytest.approx(0.1)


async def test_a_failing_append_is_retried_and_nothing_is_lost(caplog: pytest.LogCaptureFixture) -> None:
    log = FakeLog(fail_times=3)
    producer = EventProducer(log, batch_size=10, retry_backoff_s=0.01, max_backoff_s=0.02)
    sent = [event(SAFETY[i % 2] if i % 5 == 0 else TELEMETRY[i % 6], seq=i) for i in range(35)]
    with caplog.at_level(logging.ERROR, logger="concierge.events.producer"):
        for ev in sent:
            assert await producer.emit(ev)
        await asyncio.wait_for(producer.flush(), 5)
    assert log.calls == 3 + 4  # 3 failures, then 4 batches
    assert [ev.event_id for _, ev in sorted(log.events(), key=lambda x: x[1].payload["seq"])] == [
        ev.event_id for ev in sent]
    assert producer.stats().delivered == producer.stats().accepted
    assert sum(producer.stats().delivered.values()) == 35
    assert any("failed (attempt 3)" in r.getMessage() for r in caplog.records)
    await producer.close()


async def test_close_flushes_and_emit_after_close_raises() -> None:
    log = FakeLog()
    producer = EventProducer(log, flush_interval_s=10.0)  # only close() will push the partial batch
    for i in range(5):
        await producer.emit(event(EventType.MESSAGE_RECEIVED, seq=i))
    await asyncio.wait_for(producer.close(), 5)
    assert len(log.events()) == 5
    assert producer.stats().buffered == 0
    with pytest.raises(ProducerClosedError, match="closed"):
        await producer.emit(event(EventType.ERROR))
    await producer.close()  # idempotent


async def test_flush_with_nothing_buffered_returns_at_once() -> None:
    producer = EventProducer(FakeLog())
    await asyncio.wait_for(producer.flush(), 1)  # a timeout here fails the test
    assert producer.stats().buffered == 0
    await producer.close()


@pytest.mark.parametrize("kwargs", [
    {"capacity": 1}, {"batch_size": 0}, {"flush_interval_s": 0}, {"retry_backoff_s": 0},
    {"retry_backoff_s": 3.0, "max_backoff_s": 1.0},
    {"capacity": 2, "sampling": SamplingPolicy(safety_reserve=0.9)},
])
def test_bad_constructor_args_raise(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        EventProducer(FakeLog(), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs", [
    {"high_water": 1.0}, {"high_water": -0.1}, {"floor_keep": 1.5}, {"safety_reserve": 1.0},
])
def test_bad_sampling_policy_raises(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        SamplingPolicy(**kwargs)


def test_a_log_without_partitions_is_rejected() -> None:
    log = FakeLog()
    log.partitions = 0
    with pytest.raises(ValidationError, match="partitions"):
        EventProducer(log)


async def test_null_producer_accepts_and_discards() -> None:
    sink: EventSink = NullProducer()
    assert await sink.emit(event(EventType.ERROR)) is True


async def test_a_record_the_log_refuses_is_dead_lettered_and_its_batch_mates_are_appended() -> None:
    log = FakeLog(refuse=b"poison")
    producer = EventProducer(log, batch_size=16, flush_interval_s=0.01, retry_backoff_s=0.01, max_backoff_s=0.02)
    sent = [event(TELEMETRY[i % 6], seq=i) for i in range(16)]
    bad = AgentEvent(type=EventType.TOOL_CALL_END, tenant="acme", conversation_id="c1", payload={"x": "poison"})
    sent.insert(5, bad)
    for ev in sent:
        assert await producer.emit(ev)
    await asyncio.wait_for(producer.flush(), 5)
    stored = [ev for _, ev in log.events()]
    assert {ev.event_id for ev in sent if ev is not bad} <= {ev.event_id for ev in stored}
    assert bad.event_id not in {ev.event_id for ev in stored}
    [stand_in] = [ev for ev in stored if ev.type == EventType.ERROR]
    assert stand_in.payload["event_id"] == bad.event_id and "refused by the event log" in stand_in.payload["reason"]
    stats = producer.stats()
    assert stats.dead_lettered == {"tool_call_end": 1}
    assert sum(stats.accepted.values()) == sum(stats.delivered.values()) + 1  # the stand-in counts as accepted
    assert log.calls < 16, "the refused batch was split in halves, not sent record by record"
    await producer.close()


async def test_an_unserialisable_event_is_dead_lettered_and_the_flusher_keeps_going() -> None:
    log = FakeLog()
    producer = EventProducer(log, batch_size=10, flush_interval_s=0.01, dead_letter_capacity=2)
    for i in range(3):
        bad = AgentEvent(type=EventType.ERROR, tenant="acme", conversation_id="c1", payload={"text": "\ud800", "i": i})
        assert await producer.emit(bad)
        assert await producer.emit(event(EventType.MESSAGE_RECEIVED, seq=i))
        await asyncio.wait_for(producer.flush(), 5)
    assert producer.failure is None
    assert [letter.event.payload["i"] for letter in producer.dead_letters()] == [1, 2]  # the most recent two
    assert producer.stats().dead_lettered == {"error": 3}
    assert len([ev for _, ev in log.events() if ev.type == EventType.MESSAGE_RECEIVED]) == 3
    await producer.close()


async def test_a_stopped_flusher_is_reported_and_safety_emits_fail_instead_of_waiting() -> None:
    log = FakeLog()
    log.gate = asyncio.Event()  # the first batch never completes
    producer = EventProducer(log, capacity=10, batch_size=5, flush_interval_s=0.01)
    for i in range(10):
        await producer.emit(event(EventType.ERROR, seq=i))
    waiting = asyncio.create_task(producer.emit(event(EventType.ERROR)))  # no room: it waits
    await asyncio.sleep(0.05)
    assert producer.failure is None and not waiting.done()
    task = producer._task  # stands for a crash inside the flusher
    assert task is not None
    task.cancel()
    with pytest.raises(FlusherStoppedError):
        await asyncio.wait_for(waiting, 5)
    assert producer.failure == "the flusher was cancelled"
    with pytest.raises(FlusherStoppedError):
        await producer.emit(event(EventType.GUARDRAIL_TRIGGERED))
    with pytest.raises(FlusherStoppedError, match="stopped with events undelivered"):
        await asyncio.wait_for(producer.flush(), 5)
    await asyncio.wait_for(producer.close(), 5)  # closing still finishes
