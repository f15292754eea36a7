"""The event producer: a bounded in-memory buffer in front of the event log, with priority backpressure.

Emitting must never slow a conversation down because the bus is slow, yet the audit trail must be
complete. So the two kinds of event are treated differently when the buffer fills:

- safety events (`AgentEvent.safety`) are never dropped: they may use a reserved slice of the buffer
  that telemetry cannot touch, and when even that is full the emitting caller waits for space;
- telemetry is sampled above a high-water mark (kept with a probability that falls linearly to a
  floor) and dropped when its share of the buffer is full; every drop is counted by event type.

One background task drains the buffer in batches into `EventLog.append`. A batch stays in the buffer
until the log has taken it, so a failing log keeps applying backpressure and nothing accepted is lost.

One bad event never stops the flow: an event that cannot be serialised, or that the log refuses
for its content (a `ValueError`, `TypeError` or `ValidationError`, as opposed to an unavailable log,
which is retried), is dead-lettered: kept in `dead_letters()`, logged, counted in `stats()`, and
replaced in the log by an `error` event naming it, while the rest of its batch is appended (a refused
batch is split in halves until the refused record is found). Should the flusher stop anyway,
`failure` says why, `flush()` raises `FlusherStoppedError` and safety emits fail instead of waiting.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from types import TracebackType
from typing import Self

from ..core.errors import ConciergeError, ValidationError
from ..core.events import AgentEvent, EventType
from .bus import EventLog

logger = logging.getLogger(__name__)
DEAD_LETTER_ERROR = "event_dead_lettered"  # payload["error"] of the event that stands in for a lost one


class ProducerClosedError(ConciergeError):
    """An event was emitted to a producer that has been closed."""


class FlusherStoppedError(ConciergeError):
    """The background flusher stopped unexpectedly: accepted events can no longer reach the log."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An accepted event the log could not take, kept for inspection instead of stopping the flusher."""

    event: AgentEvent
    reason: str
    at: datetime


class NullProducer:
    """Accepts and discards everything, so the runtime can hold a sink unconditionally."""

    async def emit(self, event: AgentEvent) -> bool:
        return True

    async def flush(self) -> None:
        return None

    async def close(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class SamplingPolicy:
    """How telemetry is thinned under load; fractions of the buffer (telemetry's part for the first two)."""

    high_water: float = 0.5  # sampling starts once the fill is above this
    floor_keep: float = 0.1  # keep probability when telemetry's part is full
    safety_reserve: float = 0.1  # share of the capacity only safety events may use

    def __post_init__(self) -> None:
        if not 0.0 <= self.high_water < 1.0:
            raise ValidationError(f"high_water must be in [0, 1), got {self.high_water}")
        if not 0.0 <= self.floor_keep <= 1.0:
            raise ValidationError(f"floor_keep must be in [0, 1], got {self.floor_keep}")
        if not 0.0 <= self.safety_reserve < 1.0:
            raise ValidationError(f"safety_reserve must be in [0, 1), got {self.safety_reserve}")

    def keep_probability(self, fill: float) -> float:
        """1 up to the high-water mark, then linear down to `floor_keep` at fill 1 (0 beyond: no room)."""
        if fill <= self.high_water:
            return 1.0
        if fill >= 1.0:
            return self.floor_keep if fill == 1.0 else 0.0
        return 1.0 - (1.0 - self.floor_keep) * (fill - self.high_water) / (1.0 - self.high_water)


@dataclass(frozen=True, slots=True)
class ProducerStats:
    """Counts per event type. After `flush()`: accepted == delivered + dead_lettered;
    accepted + dropped == produced."""

    accepted: dict[str, int]
    dropped: dict[str, int]
    delivered: dict[str, int]
    waits: int  # times a safety emit had to wait for space
    buffered: int  # in memory, not yet appended (the batch being appended included)
    dead_lettered: dict[str, int] = field(default_factory=dict)  # accepted, but refused or unserialisable

    @property
    def produced(self) -> dict[str, int]:
        return dict(Counter(self.accepted) + Counter(self.dropped))


class EventProducer:
    """Buffers events and appends them to `log` in batches; see the module docstring for the policy."""

    def __init__(self, log: EventLog, *, capacity: int = 10_000, batch_size: int = 1_000,
                 flush_interval_s: float = 0.05, sampling: SamplingPolicy | None = None,
                 rng: random.Random | None = None, retry_backoff_s: float = 0.05,
                 max_backoff_s: float = 2.0, dead_letter_capacity: int = 1_000) -> None:
        if capacity < 2:
            raise ValidationError(f"capacity must be >= 2, got {capacity}")
        if batch_size < 1:
            raise ValidationError(f"batch_size must be >= 1, got {batch_size}")
        if not flush_interval_s > 0:
            raise ValidationError(f"flush_interval_s must be > 0, got {flush_interval_s}")
        if dead_letter_capacity < 1:
            raise ValidationError(f"dead_letter_capacity must be >= 1, got {dead_letter_capacity}")
        if not 0 < retry_backoff_s <= max_backoff_s:
            raise ValidationError("need 0 < retry_backoff_s <= max_backoff_s",
                                  hint=f"got {retry_backoff_s} and {max_backoff_s}")
        partitions = getattr(log, "partitions", None)
        if not isinstance(partitions, int) or partitions < 1:
            raise ValidationError(f"the event log must have partitions >= 1, got {partitions!r}")
        self._log = log
        self._partitions = partitions
        self._policy = sampling or SamplingPolicy()
        reserve = math.ceil(capacity * self._policy.safety_reserve)
        if capacity - reserve < 1:
            raise ValidationError(f"safety_reserve {self._policy.safety_reserve} leaves no room for telemetry",
                                  hint="raise capacity or lower safety_reserve")
        self._capacity = capacity
        self._telemetry_cap = capacity - reserve
        self._batch_size = batch_size
        self._interval = flush_interval_s
        self._backoff = retry_backoff_s
        self._max_backoff = max_backoff_s
        self._rng = rng or random.Random()

        self._buf: deque[AgentEvent] = deque()
        self._waiting: deque[tuple[AgentEvent, asyncio.Future[bool]]] = deque()  # safety, FIFO
        self._accepted: Counter[str] = Counter()
        self._dropped: Counter[str] = Counter()
        self._delivered: Counter[str] = Counter()
        self._dead_lettered: Counter[str] = Counter()
        self._dead: deque[DeadLetter] = deque(maxlen=dead_letter_capacity)  # the most recent ones
        self._stand_ins: set[str] = set()  # ids of the error events that stand in for dead letters
        self._accepted_total = 0
        self._settled_total = 0  # accepted events delivered or dead-lettered
        self._waits = 0
        self._flushing = 0  # flush() calls in progress: skip the linger
        self._closed = False
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None  # the buffer became non-empty
        self._batch_ready: asyncio.Event | None = None  # a full batch is there, or someone is flushing
        self._progress: asyncio.Event | None = None  # a batch was delivered, or the flusher ended

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the background flusher (emit does this on first use)."""
        if self._closed:
            raise ProducerClosedError("the event producer is closed", hint="create a new EventProducer")
        self._ensure_started()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def flush(self) -> None:
        """Wait until every event accepted so far has been appended to the log."""
        target = self._accepted_total
        if self._settled_total >= target:
            return
        task, ready, progress = self._ensure_started()
        self._flushing += 1
        ready.set()
        try:
            while self._settled_total < target:
                if task.done():
                    error = None if task.cancelled() else task.exception()
                    raise FlusherStoppedError("the event producer's flusher stopped with events undelivered",
                                              hint="see the log for its error; restart the process") from error
                progress.clear()
                await progress.wait()
        finally:
            self._flushing -= 1

    async def close(self) -> None:
        """Refuse new events, deliver everything buffered (waiting safety events included), stop."""
        self._closed = True
        try:
            while self._buf or self._waiting:
                await self.flush()
                if self._waiting and not self._buf:  # cannot happen; guard against a busy loop
                    await asyncio.sleep(0)
        except FlusherStoppedError:  # already logged when it stopped: closing must still finish
            logger.error("event producer closed with %d events undelivered: %s", len(self._buf), self.failure)
            return
        if self._task is not None and not self._task.done():
            self._stopping = True
            assert self._wake is not None and self._batch_ready is not None
            self._wake.set()
            self._batch_ready.set()
            await self._task

    @property
    def log(self) -> EventLog:
        return self._log

    @property
    def failure(self) -> str | None:
        """Why the flusher stopped while the producer is open (None while it runs, or after `close()`)."""
        task = self._task
        if task is None or not task.done() or self._stopping:  # close() stops it on purpose
            return None
        if task.cancelled():
            return "the flusher was cancelled"
        error = task.exception()
        return f"the flusher stopped: {error!r}" if error is not None else "the flusher stopped"

    def dead_letters(self) -> list[DeadLetter]:
        """The most recent events that were accepted but could not be appended, oldest first."""
        return list(self._dead)

    # -- emitting ----------------------------------------------------------------------------------

    async def emit(self, event: AgentEvent) -> bool:
        """Buffer `event`. True when accepted; False when telemetry was sampled out or had no room."""
        if self._closed:
            raise ProducerClosedError("emit on a closed event producer", hint="create a new EventProducer")
        if not isinstance(event, AgentEvent):
            raise ValidationError(f"emit expects an AgentEvent, got {type(event).__name__}")
        self._ensure_started()
        kind = event.type.value
        if event.safety:
            if self.failure is not None:  # nobody would ever free the space it waits for
                raise FlusherStoppedError(f"cannot record a safety event: {self.failure}",
                                          hint="see the log for the flusher's error; restart the process")
            if len(self._buf) < self._capacity and not self._waiting:
                self._admit(event)
                return True
            self._waits += 1
            future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            self._waiting.append((event, future))
            return await future  # the flusher admits it, in order, when a batch frees space
        size = len(self._buf)
        if size >= self._telemetry_cap:
            self._dropped[kind] += 1
            return False
        keep = self._policy.keep_probability(size / self._telemetry_cap)
        if keep < 1.0 and self._rng.random() >= keep:
            self._dropped[kind] += 1
            return False
        self._admit(event)
        return True

    def stats(self) -> ProducerStats:
        return ProducerStats(accepted=dict(self._accepted), dropped=dict(self._dropped),
                             delivered=dict(self._delivered), waits=self._waits, buffered=len(self._buf),
                             dead_lettered=dict(self._dead_lettered))

    # -- internals ---------------------------------------------------------------------------------

    def _admit(self, event: AgentEvent) -> None:
        self._buf.append(event)
        self._accepted[event.type.value] += 1
        self._accepted_total += 1
        assert self._wake is not None and self._batch_ready is not None
        self._wake.set()
        if len(self._buf) >= self._batch_size:
            self._batch_ready.set()

    def _ensure_started(self) -> tuple[asyncio.Task[None], asyncio.Event, asyncio.Event]:
        if self._task is None:
            self._wake, self._batch_ready, self._progress = asyncio.Event(), asyncio.Event(), asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="event-producer-flusher")
            self._task.add_done_callback(self._flusher_done)
        assert self._batch_ready is not None and self._progress is not None
        return self._task, self._batch_ready, self._progress

    async def _run(self) -> None:
        assert self._wake is not None and self._batch_ready is not None and self._progress is not None
        while True:
            if not self._buf:
                if self._stopping:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if len(self._buf) < self._batch_size and not self._flushing and not self._stopping:
                self._batch_ready.clear()
                try:  # linger: let a batch build up, but no longer than the flush interval
                    async with asyncio.timeout(self._interval):
                        await self._batch_ready.wait()
                except TimeoutError:
                    pass
            batch = list(islice(self._buf, self._batch_size))
            await self._deliver(batch)
            for _ in batch:
                self._buf.popleft()
            self._settled_total += len(batch)
            self._admit_waiting()
            self._progress.set()

    def _flusher_done(self, task: asyncio.Task[None]) -> None:
        """Wake flush() callers; if the flusher died, say so and fail the safety emits waiting on it."""
        if self._progress is not None:
            self._progress.set()
        reason = self.failure
        if reason is None:
            return
        error = None if task.cancelled() else task.exception()
        logger.critical("event producer: %s; %d events are stuck in memory", reason, len(self._buf),
                        exc_info=error)
        while self._waiting:
            _, future = self._waiting.popleft()
            if not future.done():
                future.set_exception(FlusherStoppedError(f"cannot record a safety event: {reason}"))

    async def _deliver(self, batch: list[AgentEvent]) -> None:
        """Append `batch`; an event that cannot be serialised is dead-lettered, the others go on."""
        events: list[AgentEvent] = []
        records: list[tuple[int, bytes]] = []
        for event in batch:
            try:
                records.append((event.partition(self._partitions), event.to_json()))
            except Exception as error:  # noqa: BLE001 - whatever is wrong with it, it must not stop the rest
                self._dead_letter(event, f"cannot be serialised: {_describe(error)}")
                continue
            events.append(event)
        await self._append(events, records)

    async def _append(self, events: Sequence[AgentEvent], records: list[tuple[int, bytes]]) -> None:
        """Append, retrying an unavailable log with exponential backoff until it takes the records.

        A log that refuses the records themselves would refuse them forever: the batch is split in
        halves until the refused record is alone, and that one is dead-lettered.
        """
        if not records:
            return
        delay = self._backoff
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._log.append(records)
            except (ValueError, TypeError, ValidationError) as error:
                if len(records) == 1:
                    self._dead_letter(events[0], f"refused by the event log: {_describe(error)}")
                    return
                half = len(records) // 2
                await self._append(events[:half], records[:half])
                await self._append(events[half:], records[half:])
                return
            except Exception as error:  # noqa: BLE001 - any other log failure is retried; the batch is kept
                logger.error("event log append of %d records failed (attempt %d), retrying in %.2fs: %r",
                             len(records), attempt, delay, error)
            else:
                for event in events:
                    self._delivered[event.type.value] += 1
                    self._stand_ins.discard(event.event_id)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_backoff)

    def _dead_letter(self, event: AgentEvent, reason: str) -> None:
        """Keep `event` aside (bounded), log and count it, and queue an `error` event that names it."""
        self._dead.append(DeadLetter(event, reason, datetime.now(UTC)))
        self._dead_lettered[event.type.value] += 1
        logger.error("event %s (%s, tenant %s, conversation %s) dead-lettered: %s",
                     event.event_id, event.type.value, event.tenant, event.conversation_id, reason)
        if event.event_id in self._stand_ins:
            self._stand_ins.discard(event.event_id)
            return  # a stand-in that failed too: no stand-in for the stand-in
        try:
            stand_in = AgentEvent(type=EventType.ERROR, tenant=event.tenant, conversation_id=event.conversation_id,
                                  turn=event.turn, ts=event.ts, payload={
                                      "error": DEAD_LETTER_ERROR, "event_id": event.event_id,
                                      "event_type": event.type.value, "reason": reason[:300]})
        except Exception:  # an event built without validation: the log line must do
            logger.exception("no stand-in event for dead-lettered event %s", event.event_id)
            return
        self._stand_ins.add(stand_in.event_id)
        self._admit(stand_in)  # takes the lost event's place in the buffer, so it may pass the capacity

    def _admit_waiting(self) -> None:
        """Hand freed space to waiting safety events first, oldest first."""
        while self._waiting and len(self._buf) < self._capacity:
            event, future = self._waiting.popleft()
            if future.done():  # its emitter was cancelled while waiting
                continue
            self._admit(event)
            future.set_result(True)


def _describe(error: BaseException) -> str:
    """The error in one line, ASCII only (so the reason itself always serialises)."""
    return ascii(f"{type(error).__name__}: {error}")[1:-1][:300]
