"""The audit trail: an index fed from the real embedded bus exactly once, and one conversation's decisions
found among ~20k events of 200 others in well under a second."""

from __future__ import annotations

import json
import random
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from concierge import Agent, Runtime, tool
from concierge.cli import app
from concierge.core import Principal
from concierge.core.errors import ValidationError
from concierge.core.events import AgentEvent, EventType
from concierge.events.log import EmbeddedLog
from concierge.events.producer import EventProducer
from concierge.guardrails.audit import AuditIndex, AuditTrail, UnknownConversationError
from concierge.testing import ScriptedModel, call
from concierge.tools.ledger import InMemoryLedger
from concierge.tools.pipeline import TransactionalExecutor

PARTITIONS = 8
TENANT = "acme"
TARGET = "conv-target"
CHILD = f"{TARGET}.:billing"
TURNS = 50
OTHERS = 200
OTHER_TURNS = 10
HANDOFF_TURNS = (7, 23, 41)  # turns of the target in which the billing specialist runs
QUERY_BUDGET_S = 1.0  # the acceptance requirement: one conversation's trace in under a second

runner = CliRunner()


class Clock:
    """A synthetic server clock: strictly increasing, except where a caller asks for the same instant."""

    def __init__(self) -> None:
        self.now = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)

    def tick(self, same: bool = False) -> datetime:
        if not same:
            self.now += timedelta(microseconds=137)
        return self.now


def _event(clock: Clock, event_type: EventType, conversation: str, turn: int, /, *, tenant: str = TENANT,
           same_instant: bool = False, **payload: Any) -> AgentEvent:
    return AgentEvent(type=event_type, tenant=tenant, conversation_id=conversation, turn=turn,
                      ts=clock.tick(same_instant), trace_id=f"{turn:016x}", user_id=f"user-{conversation}",
                      agent_version="retail@3", payload=payload)


def turn_events(clock: Clock, conversation: str, turn: int, rng: random.Random, *, tenant: str = TENANT,
                handoff: bool = False) -> list[AgentEvent]:
    """One realistic turn, 8 to 14 events: the message, model calls, reasoning, a retrieval now and then, a
    guardrail verdict, a tool call (refused ones with their denial, at the same instant), the reply."""
    e: list[AgentEvent] = []

    def add(event_type: EventType, /, *, same_instant: bool = False, **payload: Any) -> None:
        e.append(_event(clock, event_type, conversation, turn, tenant=tenant, same_instant=same_instant, **payload))

    order = f"W{rng.randrange(10_000, 99_999)}"
    add(EventType.MESSAGE_RECEIVED, text=f"[{conversation} t{turn}] where is my order {order}?")
    add(EventType.GUARDRAIL_TRIGGERED, guardrail="prompt_injection", verdict="allow" if turn % 5 else "flag",
        scores={"injection": round(rng.random() / 3, 3), "toxicity": round(rng.random() / 10, 3)})
    add(EventType.LLM_CALL_START, model="m")
    add(EventType.LLM_CALL_END, model="m", latency_ms=12.5, input_tokens=300, output_tokens=20, cost_usd=0.0,
        tool_calls=["get_order"])
    add(EventType.REASONING_STEP, strategy="react", kind="thought", text=f"look up {order}", confidence=0.8,
        action={"tool": "get_order", "arguments": {"order_id": order}}, alternatives=[], citations=[],
        latency_ms=12.5, input_tokens=300, output_tokens=20)
    if turn % 3 == 0:
        add(EventType.RETRIEVAL_QUERY, query="return window electronics")
        add(EventType.RETRIEVAL_RESULT, grounded=True, confidence=0.91, citations=["returns#2", "returns#3"])
    refused = turn % 4 == 1
    tool_name = "cancel_order" if refused else "get_order"
    add(EventType.TOOL_CALL_START, tool=tool_name, arguments={"order_id": order})
    if handoff:
        add(EventType.HANDOFF, **{"from": "supervisor", "to": "billing", "task": "refund", "status": "done",
                                  "attempts": 1, "session_id": f"{conversation}.:billing"})
    if refused:
        add(EventType.TOOL_CALL_END, tool=tool_name, status="refused", latency_ms=0.4, error="missing scope")
        add(EventType.PERMISSION_DENIED, same_instant=True, tool=tool_name, arguments={"order_id": order},
            reason="missing scope orders:write")
    else:
        add(EventType.TOOL_CALL_END, tool=tool_name, status="succeeded", latency_ms=3.2, error=None)
    if turn % 10 == 9:
        add(EventType.CONFIRMATION_REQUESTED, actions=[{"id": "a1", "tool": "cancel_order",
                                                        "arguments": {"order_id": order},
                                                        "description": f"cancel {order}"}])
    add(EventType.REASONING_STEP, strategy="react", kind="answer", text="tell the status", confidence=0.9,
        action=None, alternatives=[], citations=[], latency_ms=8.0, input_tokens=320, output_tokens=15)
    add(EventType.RESPONSE_SENT, text=f"[{conversation} t{turn}] {order} is on its way.", stopped_by=None,
        latency_ms=40.0, steps=3, input_tokens=620, output_tokens=35, cost_usd=0.0)
    return e


def child_turn(clock: Clock, conversation: str, turn: int, *, tenant: str = TENANT) -> list[AgentEvent]:
    return [
        _event(clock, EventType.MESSAGE_RECEIVED, conversation, turn, tenant=tenant, text="refund W1"),
        _event(clock, EventType.TOOL_CALL_START, conversation, turn, tenant=tenant, tool="refund",
               arguments={"order_id": "W1"}),
        _event(clock, EventType.TOOL_CALL_END, conversation, turn, tenant=tenant, tool="refund",
               status="succeeded", latency_ms=5.0, error=None),
        _event(clock, EventType.RESPONSE_SENT, conversation, turn, tenant=tenant, text="refunded", stopped_by=None),
    ]


def _clock_after(ts: datetime) -> Clock:
    clock = Clock()
    clock.now = ts + timedelta(microseconds=1)
    return clock


class Corpus:
    """The target conversation's events (and its specialist's) amid 200 other conversations' and decoys."""

    def __init__(self, seed: int = 7) -> None:
        rng = random.Random(seed)
        clock = Clock()
        self.all: list[AgentEvent] = []
        self.target: list[AgentEvent] = []  # in emit order
        self.child: list[AgentEvent] = []
        self.child_turn_of: dict[int, int] = {}  # child turn -> the target turn it ran in
        others = [f"conv-{i:04d}" for i in range(OTHERS)]
        # Decoys: the same id in another tenant; ids that merely start with the target's; another
        # tenant's child of the same id.
        decoys = [("acme", f"{TARGET}2"), ("acme", f"{TARGET}-x"), ("globex", TARGET), ("globex", CHILD)]
        child_turns = 0
        for turn in range(1, TURNS + 1):
            running = [(TENANT, c) for c in others if turn <= OTHER_TURNS] + decoys + [(TENANT, TARGET)]
            rng.shuffle(running)
            for tenant, conversation in running:
                if (tenant, conversation) == (TENANT, TARGET):
                    handoff = turn in HANDOFF_TURNS
                    events = turn_events(clock, TARGET, turn, rng, handoff=handoff)
                    if handoff:  # the specialist's turn runs inside the target's, before its handoff event
                        child_turns += 1
                        at = next(i for i, ev in enumerate(events) if ev.type == EventType.HANDOFF)
                        inner = child_turn(_clock_after(events[at - 1].ts), CHILD, child_turns)
                        self.child.extend(inner)
                        self.child_turn_of[child_turns] = turn
                        self.all.extend(events[:at])
                        self.all.extend(inner)
                        self.all.extend(events[at:])
                        self.target.extend(events)
                        continue
                    self.target.extend(events)
                elif tenant == "globex" and conversation == CHILD:
                    if turn % 10:
                        continue
                    events = child_turn(clock, conversation, turn // 10, tenant=tenant)
                else:
                    events = turn_events(clock, conversation, turn, rng, tenant=tenant)
                self.all.extend(events)


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return Corpus()


async def _produce(log: EmbeddedLog, events: list[AgentEvent]) -> None:
    """Through the real producer, sized so nothing is sampled: the test is about the index, not backpressure."""
    producer = EventProducer(log, capacity=100_000, batch_size=2_000)
    async with producer:
        for event in events:
            assert await producer.emit(event)
    stats = producer.stats()
    assert not stats.dropped and sum(stats.delivered.values()) == len(events)


@pytest.fixture
async def bus(tmp_path: Path, corpus: Corpus) -> AsyncIterator[EmbeddedLog]:
    log = EmbeddedLog(tmp_path / "events.db", partitions=PARTITIONS)
    await _produce(log, corpus.all)
    try:
        yield log
    finally:
        await log.close()


@pytest.fixture
async def index(tmp_path: Path) -> AsyncIterator[AuditIndex]:
    made = AuditIndex(tmp_path / "audit.db")
    try:
        yield made
    finally:
        await made.close()


def _ids(events: Any) -> list[str]:
    return [e.event_id for e in events]


# ---- the acceptance test ---------------------------------------------------------------------------


async def test_one_conversation_among_20k_events_complete_in_order_in_under_a_second(
        bus: EmbeddedLog, index: AuditIndex, corpus: Corpus) -> None:
    assert 18_000 <= len(corpus.all) <= 30_000
    assert 8 * TURNS <= len(corpus.target) <= 14 * TURNS
    caught = await index.catch_up(bus)
    assert caught.read == caught.added == len(corpus.all) and caught.skipped == 0

    trail = AuditTrail(index)
    await trail(TENANT, "conv-0001")  # a first query warms the connection pool, as a server's would be
    started = time.perf_counter()
    decisions = await trail(TENANT, TARGET)
    took = time.perf_counter() - started
    print(f"\naudit query: {len(decisions.events)} events of {len(corpus.all)} in {took * 1000:.1f} ms")
    assert took < QUERY_BUDGET_S, f"the audit query took {took:.3f} s"

    # Every event of the conversation and its specialist, none of any other, each in emit order.
    assert decisions.conversations == (TARGET, CHILD)
    assert _ids(decisions.events) == _ids(corpus.target) + _ids(corpus.child)
    assert {e.tenant for e in decisions.events} == {TENANT}
    assert [t.turn for t in decisions.turns] == list(range(1, TURNS + 1))
    for turn, expected in zip(decisions.turns, _by_turn(corpus.target), strict=True):
        assert _ids(turn.events) == _ids(expected)  # ties in ts (a denial and its tool's end) keep bus order
        assert all(e.conversation_id == TARGET for e in turn.events)

    # Grouped into decisions, per turn.
    for turn in decisions.turns:
        n = turn.turn
        assert turn.user_input and turn.user_input.startswith(f"[{TARGET} t{n}]")
        assert turn.reply and turn.reply.startswith(f"[{TARGET} t{n}]") and turn.stopped_by is None
        assert [g["verdict"] for g in turn.guardrails] == ["allow" if n % 5 else "flag"]
        assert set(turn.guardrails[0]["scores"]) == {"injection", "toxicity"}
        assert [s["kind"] for s in turn.reasoning] == ["thought", "answer"]
        assert len(turn.model_calls) == 1
        [tool_call] = turn.tool_calls
        if n % 4 == 1:
            assert (tool_call.tool, tool_call.status) == ("cancel_order", "refused")
            assert [d["reason"] for d in turn.denials] == ["missing scope orders:write"]
        else:
            assert (tool_call.tool, tool_call.status, tool_call.error) == ("get_order", "succeeded", None)
            assert turn.denials == []
        assert tool_call.arguments == turn.reasoning[0]["action"]["arguments"]
        if n % 3 == 0:
            [retrieval] = turn.retrievals
            assert (retrieval.query, retrieval.grounded, retrieval.citations) == \
                ("return window electronics", True, ["returns#2", "returns#3"])
        else:
            assert turn.retrievals == []
        assert len(turn.confirmations) == (1 if n % 10 == 9 else 0)
        # The specialist's turns sit in the turn that handed off to it.
        assert [c.conversation_id for c in turn.children] == ([CHILD] if n in HANDOFF_TURNS else [])
        assert len(turn.handoffs) == (1 if n in HANDOFF_TURNS else 0)
    for child_number, parent_turn in corpus.child_turn_of.items():
        [child] = decisions.turns[parent_turn - 1].children
        assert child.turn == child_number and child.reply == "refunded"
        assert [(c.tool, c.status) for c in child.tool_calls] == [("refund", "succeeded")]

    # A query without children leaves the specialist out.
    alone = await trail(TENANT, TARGET, children=False)
    assert _ids(alone.events) == _ids(corpus.target) and alone.conversations == (TARGET,)
    # The same id in another tenant is another conversation.
    theirs = await trail("globex", TARGET)
    assert theirs.conversations == (TARGET, CHILD)
    assert not set(_ids(theirs.events)) & set(_ids(decisions.events))
    json.dumps(decisions.to_dict(events=True))  # the JSON form is JSON


def _by_turn(events: list[AgentEvent]) -> list[list[AgentEvent]]:
    turns: dict[int, list[AgentEvent]] = {}
    for event in events:
        turns.setdefault(event.turn, []).append(event)
    return [turns[n] for n in sorted(turns)]


async def _all_rows(index: AuditIndex) -> list[Any]:
    from sqlalchemy import select

    from concierge.guardrails.audit import audit_events

    async with index.engine.connect() as conn:
        return list((await conn.execute(select(audit_events.c.event_id))).all())


# ---- exactly once ----------------------------------------------------------------------------------


async def test_catching_up_twice_adds_nothing_and_a_redelivered_event_is_not_doubled(
        bus: EmbeddedLog, index: AuditIndex, corpus: Corpus) -> None:
    first = await index.catch_up(bus, batch_size=3_000)
    assert first.added == len(corpus.all)
    offsets = await index.offsets()
    assert offsets == await bus.end_offsets()
    again = await index.catch_up(bus)
    assert (again.read, again.added) == (0, 0)
    assert await index.count() == len(corpus.all)
    # A producer's retry puts the same events on the bus a second time, at new offsets.
    await bus.append([(e.partition(PARTITIONS), e.to_json()) for e in corpus.target[:40]])
    retried = await index.catch_up(bus)
    assert (retried.read, retried.added) == (40, 0)
    assert await index.count() == len(corpus.all)
    assert await index.offsets() == await bus.end_offsets()
    decisions = await AuditTrail(index)(TENANT, TARGET)
    assert _ids(decisions.events) == _ids(corpus.target) + _ids(corpus.child)


async def test_a_crash_before_the_commit_loses_and_doubles_nothing(
        bus: EmbeddedLog, index: AuditIndex, corpus: Corpus, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real = AuditIndex._write_offset

    async def crash_on_the_fifth_batch(self: AuditIndex, conn: Any, *args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 5:  # this batch's rows are written in the open transaction, its offset is not
            raise RuntimeError("power cut")
        await real(self, conn, *args, **kwargs)

    monkeypatch.setattr(AuditIndex, "_write_offset", crash_on_the_fifth_batch)
    with pytest.raises(RuntimeError, match="power cut"):
        await index.catch_up(bus, batch_size=700)
    # What survived is exactly what the stored offsets say was read: four whole batches.
    offsets = await index.offsets()
    survived = []
    for partition, offset in offsets.items():
        survived.extend(AgentEvent.from_json(r.data).event_id for r in await bus.read(partition, 0, offset)
                        if r.offset <= offset)
    assert 0 < len(survived) < len(corpus.all) and await index.count() == len(survived)
    assert set(survived) == {row.event_id for row in await _all_rows(index)}

    monkeypatch.setattr(AuditIndex, "_write_offset", real)
    resumed = await index.catch_up(bus, batch_size=700)
    assert resumed.added == len(corpus.all) - len(survived)
    assert resumed.read == len(corpus.all) - len(survived)  # resumed after the last commit, nothing re-read
    assert await index.count() == len({e.event_id for e in corpus.all})
    decisions = await AuditTrail(index)(TENANT, TARGET)
    assert _ids(decisions.events) == _ids(corpus.target) + _ids(corpus.child)


async def test_a_record_that_is_not_an_event_is_passed_over_not_a_blocker(tmp_path: Path, index: AuditIndex) -> None:
    log = EmbeddedLog(tmp_path / "bad.db", partitions=2)
    try:
        good = _event(Clock(), EventType.MESSAGE_RECEIVED, "c1", 1, text="hi")
        await log.append([(0, b"{not json"), (good.partition(2), good.to_json()), (1, b'{"type": "nope"}')])
        caught = await index.catch_up(log)
        assert (caught.read, caught.added, caught.skipped) == (3, 1, 2)
        assert (await index.catch_up(log)).read == 0
    finally:
        await log.close()


async def test_a_replaced_bus_is_read_from_its_start_again(tmp_path: Path, index: AuditIndex) -> None:
    clock = Clock()
    first = EmbeddedLog(tmp_path / "one.db", partitions=1)
    events = [_event(clock, EventType.MESSAGE_RECEIVED, "c1", n, text=str(n)) for n in range(1, 6)]
    await first.append([(0, e.to_json()) for e in events])
    assert (await index.catch_up(first)).added == 5
    await first.close()
    second = EmbeddedLog(tmp_path / "two.db", partitions=1)  # a new, shorter log under the same source name
    try:
        more = [_event(clock, EventType.MESSAGE_RECEIVED, "c1", 6, text="6")]
        await second.append([(0, events[0].to_json()), (0, more[0].to_json())])
        caught = await index.catch_up(second)
        assert (caught.read, caught.added) == (2, 1)
    finally:
        await second.close()


# ---- direct use, the real runtime, the ledger ------------------------------------------------------


@tool
async def get_order(order_id: str) -> dict:
    """Look up an order."""
    return {"order_id": order_id, "status": "pending"}


@tool(effect="write", confirm=True, idempotent=True, scopes=("orders:write",))
async def cancel_order(order_id: str) -> dict:
    """Cancel an order."""
    return {"order_id": order_id, "status": "cancelled"}


async def test_the_real_runtime_s_events_make_a_trail_with_ledger_status(tmp_path: Path, index: AuditIndex) -> None:
    log = EmbeddedLog(tmp_path / "rt.db", partitions=4)
    producer = EventProducer(log)
    ledger = InMemoryLedger()
    model = ScriptedModel([call("get_order", order_id="W1"), "W1 is pending.", call("cancel_order", order_id="W1"),
                           "Cancelled.", call("cancel_order", order_id="W2"), "I cannot do that."])
    agent = Agent(instructions="You help.", model=model, tools=[get_order, cancel_order], version="7")
    runtime = Runtime(agent, executor=TransactionalExecutor(ledger), events=producer)
    writer = Principal("ann", tenant="shop", scopes=frozenset({"orders:write"}))
    reader = Principal("ann", tenant="shop")
    try:
        async with producer:
            await runtime.turn("s1", "Where is W1?", writer)
            await runtime.turn("s1", "Cancel W1", writer)
            await runtime.turn("s1", "yes", writer)
            await runtime.turn("s1", "Cancel W2", reader)
        assert (await index.catch_up(log)).added == sum(producer.stats().delivered.values())
    finally:
        await log.close()
    decisions = await AuditTrail(index, ledger=ledger)("shop", "s1")
    one, two, three, four = decisions.turns
    assert (one.user_input, one.reply) == ("Where is W1?", "W1 is pending.")
    assert [(c.tool, c.arguments, c.status, c.ledger_status) for c in one.tool_calls] == \
        [("get_order", {"order_id": "W1"}, "succeeded", None)]
    assert [(c.tool, c.status) for c in two.tool_calls] == [("cancel_order", "pending")]
    assert [a["tool"] for a in two.confirmations] == ["cancel_order"] and two.stopped_by == "awaiting_confirmation"
    assert [(c.tool, c.status, c.ledger_status) for c in three.tool_calls] == \
        [("cancel_order", "succeeded", "succeeded")]
    assert [(c.tool, c.status) for c in four.tool_calls] == [("cancel_order", "refused")]
    assert [d["tool"] for d in four.denials] == ["cancel_order"]
    assert decisions.unmatched_ledger == []
    assert {e.agent_version for e in decisions.events} == {"agent@7"}


async def test_add_indexes_directly_and_idempotently(index: AuditIndex) -> None:
    clock = Clock()
    events = turn_events(clock, "c9", 1, random.Random(1)) + turn_events(clock, "c9", 2, random.Random(2))
    assert await index.add(events) == len(events)
    assert await index.add(events + events[:3]) == 0
    decisions = await AuditTrail(index)(TENANT, "c9")
    assert _ids(decisions.events) == _ids(events)
    assert await index.tenants_of("c9") == [TENANT]


async def test_bad_input_is_a_validation_error(index: AuditIndex) -> None:
    trail = AuditTrail(index)
    for tenant, conversation in [(TENANT, ""), (TENANT, "has space"), ("", "c1"), (TENANT, "x" * 129),
                                 (TENANT, "a%"), (TENANT, None), ("t';--", "c1")]:
        with pytest.raises(ValidationError):
            await trail(tenant, conversation)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        await index.add([{"type": "message_received"}])  # type: ignore[list-item]
    with pytest.raises(ValidationError):
        await index.catch_up(object())  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        AuditTrail("sqlite:///x.db")  # type: ignore[arg-type]
    with pytest.raises(UnknownConversationError) as caught:
        await trail(TENANT, "never-seen")
    assert caught.value.hint and "catch" in caught.value.hint


async def test_a_child_without_its_parent_is_not_a_conversation(index: AuditIndex) -> None:
    await index.add(child_turn(Clock(), "p1.:billing", 1))
    with pytest.raises(UnknownConversationError):
        await AuditTrail(index)(TENANT, "p1")
    assert (await AuditTrail(index)(TENANT, "p1.:billing")).conversations == ("p1.:billing",)


async def test_a_client_session_named_like_a_child_is_not_one(index: AuditIndex) -> None:
    """`p1.x` is another client session of the tenant, not a specialist's child of `p1`."""
    clock = Clock()
    await index.add(turn_events(clock, "p1", 1, random.Random(5)) + turn_events(clock, "p1.x", 1, random.Random(6))
                    + child_turn(clock, "p1.:billing", 1))
    assert (await AuditTrail(index)(TENANT, "p1")).conversations == ("p1", "p1.:billing")


async def test_the_index_on_postgresql(postgres_db: Any) -> None:
    index = AuditIndex(postgres_db.async_url)
    try:
        clock = Clock()
        mine = turn_events(clock, "pg_1", 1, random.Random(3)) + child_turn(clock, "pg_1.:billing", 1)
        decoys = turn_events(clock, "pg_10", 1, random.Random(4)) + child_turn(clock, "pg_1x.:billing", 1) \
            + turn_events(clock, "pg_1.x", 1, random.Random(5)) + child_turn(clock, "pg_1_billing", 1)  # "_" is a LIKE wildcard: escaped, it matches nothing
        assert await index.add(mine + decoys) == len(mine) + len(decoys)
        assert await index.add(mine) == 0
        decisions = await AuditTrail(index)(TENANT, "pg_1")
        assert decisions.conversations == ("pg_1", "pg_1.:billing")
        assert _ids(decisions.events) == _ids(mine)
    finally:
        await index.close()


# ---- the command -----------------------------------------------------------------------------------


@pytest.fixture
def small_bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    import asyncio

    path = tmp_path / "events.db"
    clock = Clock()
    rng = random.Random(5)
    events = [e for n in range(1, 4) for e in turn_events(clock, "chat-1", n, rng)]
    events += turn_events(clock, "chat-2", 1, rng) + turn_events(clock, "chat-2", 1, rng, tenant="other")

    async def fill() -> None:
        log = EmbeddedLog(path, partitions=4)
        await _produce(log, events)
        await log.close()

    asyncio.run(fill())
    monkeypatch.setenv("CONCIERGE_EVENTS__BUS", f"embedded:{path}")
    monkeypatch.setenv("CONCIERGE_EVENTS__PARTITIONS", "4")
    monkeypatch.chdir(tmp_path)  # no concierge.toml here
    yield path


def test_the_command_prints_a_tree_per_turn_and_the_query_time(small_bus: Path, tmp_path: Path) -> None:
    index = str(tmp_path / "audit.db")
    result = runner.invoke(app, ["audit", "chat-1", "--index", index])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "conversation chat-1" in out and "tenant acme" in out
    assert all(f"turn {n}" in out for n in (1, 2, 3)) and "turn 4" not in out
    assert "[chat-1 t2] where is my order" in out and "guardrail" in out and "get_order" in out
    assert "denied" in out and "cancel_order" in out  # turn 1 is refused
    assert "query took" in out and "ms" in out
    assert "new events" in out
    again = runner.invoke(app, ["audit", "chat-1", "--index", index])
    assert again.exit_code == 0 and "index: 0 new events" in again.output


def test_the_command_as_json(small_bus: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["audit", "chat-1", "--tenant", TENANT, "--json", "--index", str(tmp_path / "a.db")])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["conversation_id"] == "chat-1" and [t["turn"] for t in body["turns"]] == [1, 2, 3]
    assert body["turns"][0]["tool_calls"][0]["status"] == "refused"
    assert body["query_ms"] >= 0 and "events" not in body["turns"][0]
    raw = json.loads(runner.invoke(app, ["audit", "chat-1", "--json", "--events", "--no-catch-up",
                                         "--index", str(tmp_path / "a.db")]).stdout)
    assert all(e["conversation_id"] == "chat-1" for t in raw["turns"] for e in t["events"])


def test_the_command_explains_bad_and_unknown_ids(small_bus: Path, tmp_path: Path) -> None:
    index = str(tmp_path / "audit.db")
    bad = runner.invoke(app, ["audit", "not an id", "--index", index])
    assert bad.exit_code == 2 and "bad conversation id" in bad.output
    assert runner.invoke(app, ["audit", "chat-1", "--tenant", "no tenant", "--index", index]).exit_code == 2
    unknown = runner.invoke(app, ["audit", "chat-404", "--index", index])
    assert unknown.exit_code == 2 and "no conversation 'chat-404'" in unknown.output and "check the id" in unknown.output
    elsewhere = runner.invoke(app, ["audit", "chat-1", "--tenant", "other", "--index", index])
    assert elsewhere.exit_code == 2 and "catch the index up" in elsewhere.output
    both = runner.invoke(app, ["audit", "chat-2", "--index", index])
    assert both.exit_code == 2 and "2 tenants" in both.output and "--tenant" in both.output
    assert runner.invoke(app, ["audit", "chat-2", "--tenant", "other", "--index", index]).exit_code == 0
    # Without catching up, a fresh index knows nothing.
    fresh = runner.invoke(app, ["audit", "chat-1", "--no-catch-up", "--index", str(tmp_path / "fresh.db")])
    assert fresh.exit_code == 2 and "no conversation" in fresh.output


async def test_catch_up_from_redis_streams(redis_client: Any, index: AuditIndex) -> None:
    from concierge.events.redis_streams import RedisStreamLog

    log = RedisStreamLog(redis_client, partitions=4)
    clock = Clock()
    events = [e for n in range(1, 6) for e in turn_events(clock, "r1", n, random.Random(n))]
    await log.append([(e.partition(4), e.to_json()) for e in events])
    caught = await index.catch_up(log, batch_size=7)
    assert (caught.read, caught.added) == (len(events), len(events))
    assert await index.offsets() == {p: o for p, o in (await log.end_offsets()).items() if o}
    assert max((await index.offsets()).values()) > 2**40  # stream ids as ints need 64-bit offsets
    assert (await index.catch_up(log)).read == 0
    assert _ids((await AuditTrail(index)(TENANT, "r1")).events) == _ids(events)
