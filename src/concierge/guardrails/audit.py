"""The audit trail: every decision of one conversation, in order, in well under a second.

The bus keeps events by partition and offset, the lake by day: neither answers "what happened in
conversation X, and why" quickly. `AuditIndex` keeps the same events in SQL, indexed by
(tenant, conversation, turn, time), one compact row per event (`event_id` is the primary key), in a
SQLite file by default or any SQLAlchemy database.

It is fed from the bus by `catch_up(log)`, a positional consumer: it reads each partition after
the offset it stored last and writes the rows and the new offset in ONE transaction. A crash before
the commit leaves neither (the next catch-up reads the same records again); a crash after leaves
both. Rows are inserted only when their `event_id` is new, so a producer's retry (the same event at
two offsets) or a catch-up racing another one never doubles a row: exactly once. `add(events)` writes
events directly (tests, back-fills), with the same idempotency.

`AuditTrail` answers the question: `await trail(tenant, conversation_id)` returns `Decisions`, the
conversation's turns in order, each with the user's words, the retrievals, the reasoning steps, the
guardrail verdicts, the tool calls and their outcomes (and ledger status, given a ledger), the
permission denials, the confirmations asked for, the escalations, the handoffs and the reply; the
turns of specialists it handed off to (conversation ids `f"{conversation_id}.:{name}"`) sit inside
the turn that ran them.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pydantic
from pydantic_core import to_jsonable_python
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    delete,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from ..core.errors import ConciergeError, ValidationError
from ..core.events import AgentEvent, EventType
from ..core.ids import CHILD_SESSION_SEPARATOR
from ..core.sqldb import SqlBacked, UTCDateTime

if TYPE_CHECKING:
    from ..events.bus import EventLog, Record
    from ..tools.ledger.base import Ledger

logger = logging.getLogger(__name__)

DEFAULT_URL = "sqlite+aiosqlite:///.concierge/audit.db"
DEFAULT_SOURCE = "bus"
_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")
_ID_HINT = "ids are 1 to 128 characters of letters, digits and _ . : @ -"
_IN_CHUNK = 500  # ids per IN (...) list: far below every database's parameter limit

metadata = MetaData()

audit_events = Table(
    "audit_events",
    metadata,
    Column("event_id", String(128), primary_key=True),
    Column("tenant", String(128), nullable=False),
    Column("conversation_id", String(128), nullable=False),
    Column("turn", Integer, nullable=False),
    Column("ts", UTCDateTime(), nullable=False),
    # The bus offset (one conversation lives in one partition, so it is the emit order), or the
    # position in an `add` batch: it orders events whose timestamps tie.
    Column("seq", BigInteger, nullable=False),
    Column("type", String(32), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("trace_id", String(), nullable=False),
    Column("user_id", String(), nullable=False),
    Column("agent_version", String(), nullable=False),
    Index("ix_audit_events_conversation", "tenant", "conversation_id", "turn", "ts"),
)

# How far each source (a bus) has been read, per partition; written in the rows' transaction.
audit_offsets = Table(
    "audit_offsets",
    metadata,
    Column("source", String(255), primary_key=True),
    Column("bus_partition", Integer, primary_key=True, autoincrement=False),
    Column("bus_offset", BigInteger, nullable=False),
)


class UnknownConversationError(ConciergeError):
    """The index holds no event of this conversation (for this tenant)."""


def check_id(kind: str, value: object) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise ValidationError(f"bad {kind} {value!r}", hint=_ID_HINT)
    return value


# -- the index ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One indexed event: an `AgentEvent`'s fields as stored (schema_version is not kept)."""

    event_id: str
    type: str
    ts: datetime
    tenant: str
    conversation_id: str
    turn: int
    payload: dict[str, Any]
    trace_id: str = ""
    user_id: str = ""
    agent_version: str = ""
    seq: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "type": self.type, "ts": self.ts.isoformat(), "tenant": self.tenant,
                "conversation_id": self.conversation_id, "turn": self.turn, "payload": self.payload,
                "trace_id": self.trace_id, "user_id": self.user_id, "agent_version": self.agent_version}


@dataclass(frozen=True, slots=True)
class CatchUp:
    """What one `catch_up` did: records read from the bus, rows new to the index, records not events."""

    read: int = 0
    added: int = 0
    skipped: int = 0


def _row(event: AgentEvent, seq: int) -> dict[str, Any]:
    return {"event_id": event.event_id, "tenant": event.tenant, "conversation_id": event.conversation_id,
            "turn": event.turn, "ts": event.ts, "seq": seq, "type": event.type.value, "payload": event.payload,
            "trace_id": event.trace_id, "user_id": event.user_id, "agent_version": event.agent_version}


class AuditIndex(SqlBacked):
    """Events by (tenant, conversation, turn, time) in SQL; fed from the bus exactly once."""

    metadata = metadata
    what = "audit index"

    def __init__(self, url: str | Path = DEFAULT_URL, *, echo: bool = False) -> None:
        """`url`: an SQLAlchemy URL (`sqlite+aiosqlite:///…`, `postgresql+asyncpg://…`) or a SQLite file path."""
        if isinstance(url, Path) or (isinstance(url, str) and url and "://" not in url):
            url = f"sqlite+aiosqlite:///{url}"
        if not isinstance(url, str) or not url:
            raise ValidationError(f"the audit index needs a database URL or a file path, got {url!r}")
        super().__init__(url, echo=echo)

    # -- writing -------------------------------------------------------------------------------------

    async def add(self, events: Iterable[AgentEvent]) -> int:
        """Index `events` directly (not from a bus); those already indexed are skipped. How many were new."""
        batch = list(events)
        for event in batch:
            if not isinstance(event, AgentEvent):
                raise ValidationError(f"add expects AgentEvents, got {type(event).__name__}")
        if not batch:
            return 0
        await self._ensure_schema()
        async with self.engine.begin() as conn:
            return await self._insert(conn, [_row(event, i) for i, event in enumerate(batch)])

    async def catch_up(self, log: EventLog, *, batch_size: int = 5_000, source: str = DEFAULT_SOURCE) -> CatchUp:
        """Index every record the bus holds now that this index has not read yet; then return.

        Each batch (one partition, up to `batch_size` records) is one transaction: its new rows and
        the partition's new offset commit together, so an interrupted catch-up resumes exactly where
        the last commit ended. `source` names the bus, for an index fed from several.
        """
        partitions = getattr(log, "partitions", None)
        if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
            raise ValidationError(f"catch_up needs an EventLog with partitions >= 1, got {partitions!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValidationError(f"batch_size must be an int >= 1, got {batch_size!r}")
        if not isinstance(source, str) or not source or len(source) > 255:
            raise ValidationError(f"source must be a name of 1 to 255 characters, got {source!r}")
        await self._ensure_schema()
        offsets = await self.offsets(source)
        ends = await log.end_offsets()
        for partition, stored in list(offsets.items()):
            if partition < partitions and stored > ends.get(partition, 0):
                # The bus was replaced (a new file, a flushed Redis): read it from its start again.
                # Nothing doubles, since rows are keyed by event_id.
                logger.warning("audit index: %s partition %d ends at %d but was read up to %d; re-reading it",
                               source, partition, ends.get(partition, 0), stored)
                offsets[partition] = 0
        read = added = skipped = 0
        for partition in range(partitions):
            end = ends.get(partition, 0)
            while offsets.get(partition, 0) < end:
                records = await log.read(partition, offsets.get(partition, 0), batch_size)
                if not records:
                    break
                rows, bad = _decode(records)
                async with self.engine.begin() as conn:
                    new = await self._insert(conn, rows)
                    await self._write_offset(conn, source, partition, records[-1].offset,
                                             exists=partition in offsets)
                offsets[partition] = records[-1].offset
                read, added, skipped = read + len(records), added + new, skipped + bad
        return CatchUp(read, added, skipped)

    async def _insert(self, conn: AsyncConnection, rows: list[dict[str, Any]]) -> int:
        """Insert the rows whose event_id is new (to the index and to the batch); how many."""
        unique: dict[str, dict[str, Any]] = {}
        for row in rows:
            unique.setdefault(row["event_id"], row)
        ids = list(unique)
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start:start + _IN_CHUNK]
            found = await conn.execute(select(audit_events.c.event_id).where(audit_events.c.event_id.in_(chunk)))
            for (event_id,) in found:
                unique.pop(event_id, None)
        if not unique:
            return 0
        await conn.execute(self._insert_ignoring_duplicates(), list(unique.values()))
        return len(unique)

    def _insert_ignoring_duplicates(self) -> Any:
        """INSERT that skips an event_id another writer committed meanwhile (where the dialect can say so)."""
        dialect = self.engine.dialect.name
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            return sqlite_insert(audit_events).on_conflict_do_nothing(index_elements=["event_id"])
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(audit_events).on_conflict_do_nothing(index_elements=["event_id"])
        return insert(audit_events)

    async def _write_offset(self, conn: AsyncConnection, source: str, partition: int, offset: int, *,
                            exists: bool) -> None:
        """Move `source`'s offset for `partition`, inside the transaction that wrote its rows."""
        if exists:
            result = await conn.execute(update(audit_offsets).where(
                audit_offsets.c.source == source, audit_offsets.c.bus_partition == partition,
            ).values(bus_offset=offset))
            if result.rowcount:
                return
        await conn.execute(insert(audit_offsets).values(source=source, bus_partition=partition, bus_offset=offset))

    # -- reading -------------------------------------------------------------------------------------

    async def offsets(self, source: str = DEFAULT_SOURCE) -> dict[int, int]:
        """The last offset indexed per partition of `source` (missing: nothing read yet)."""
        await self._ensure_schema()
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(audit_offsets.c.bus_partition, audit_offsets.c.bus_offset)
                                      .where(audit_offsets.c.source == source))
            return {int(p): int(o) for p, o in rows}

    async def events(self, tenant: str, conversation_id: str, *, children: bool = True) -> list[AuditEvent]:
        """The conversation's events (and its handoff children's), by conversation, turn, time and bus order."""
        check_id("tenant", tenant)
        check_id("conversation id", conversation_id)
        await self._ensure_schema()
        c = audit_events.c
        which = c.conversation_id == conversation_id
        if children:
            prefix = conversation_id + CHILD_SESSION_SEPARATOR
            if self.engine.dialect.name == "sqlite":
                # Ranges the (tenant, conversation_id, …) index answers: SQLite compares bytes, and
                # ";" follows ":", so [prefix, id + ".;") holds exactly the children.
                which = or_(which, and_(c.conversation_id >= prefix, c.conversation_id < f"{conversation_id}.;"))
            else:  # a collation-independent test (index it with text_pattern_ops on PostgreSQL)
                which = or_(which, c.conversation_id.startswith(prefix, autoescape=True))
        query = (select(c.event_id, c.type, c.ts, c.tenant, c.conversation_id, c.turn, c.payload, c.trace_id,
                        c.user_id, c.agent_version, c.seq)
                 .where(c.tenant == tenant, which)
                 .order_by(c.conversation_id, c.turn, c.ts, c.seq))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [AuditEvent(*row) for row in rows]

    async def tenants_of(self, conversation_id: str) -> list[str]:
        """The tenants that have a conversation of this id (an operator's lookup; the CLI's hint)."""
        check_id("conversation id", conversation_id)
        await self._ensure_schema()
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(audit_events.c.tenant).where(
                audit_events.c.conversation_id == conversation_id).distinct().order_by(audit_events.c.tenant))
            return [tenant for (tenant,) in rows]

    async def count(self) -> int:
        """Events in the index."""
        from sqlalchemy import func

        await self._ensure_schema()
        async with self.engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(audit_events))).scalar_one())

    async def erase_matching(self, tenant: str, match: Callable[[AuditEvent], bool], *,
                             dry_run: bool = False) -> int:
        """Erasure: delete the tenant's events `match` selects; how many matched."""
        check_id("tenant", tenant)
        await self._ensure_schema()
        c = audit_events.c
        query = select(c.event_id, c.type, c.ts, c.tenant, c.conversation_id, c.turn, c.payload, c.trace_id,
                       c.user_id, c.agent_version, c.seq).where(c.tenant == tenant)
        async with self.engine.begin() as conn:
            ids = [row.event_id for row in await conn.execute(query) if match(AuditEvent(*row))]
            if not dry_run:
                for start in range(0, len(ids), _IN_CHUNK):
                    await conn.execute(delete(audit_events).where(c.event_id.in_(ids[start:start + _IN_CHUNK])))
        return len(ids)


def _decode(records: Sequence[Record]) -> tuple[list[dict[str, Any]], int]:
    """Rows of the records that are AgentEvents; the others are counted and passed over (the lake keeps
    them as dead letters): one bad record must not stop the index forever."""
    rows: list[dict[str, Any]] = []
    bad = 0
    for record in records:
        try:
            event = AgentEvent.from_json(record.data)
        except (pydantic.ValidationError, ValueError) as exc:
            bad += 1
            logger.warning("audit index: partition %d offset %d is not an AgentEvent: %s",
                           record.partition, record.offset, str(exc).splitlines()[0])
            continue
        rows.append(_row(event, record.offset))
    return rows, bad


# -- the decisions -----------------------------------------------------------------------------------


@dataclass(slots=True)
class ToolCallDecision:
    """A tool call and what came of it; `status` None: it started and never finished (a crash)."""

    tool: str
    arguments: dict[str, Any] | None
    status: str | None = None  # succeeded, failed, refused, pending, unknown, ...
    latency_ms: float | None = None
    error: str | None = None
    started_at: datetime | None = None
    ledger_status: str | None = None  # with a ledger: what the ledger says happened to the world
    ledger_key: str | None = None
    ledger_note: str | None = None


@dataclass(slots=True)
class Retrieval:
    query: str | None
    grounded: bool | None = None
    confidence: float | None = None
    citations: list[str] = field(default_factory=list)


@dataclass(slots=True)
class TurnDecisions:
    """One turn of one conversation: what came in, what was decided, what went out."""

    conversation_id: str
    turn: int
    started_at: datetime
    ended_at: datetime
    user_input: str | None = None
    retrievals: list[Retrieval] = field(default_factory=list)
    reasoning: list[dict[str, Any]] = field(default_factory=list)
    model_calls: list[dict[str, Any]] = field(default_factory=list)
    guardrails: list[dict[str, Any]] = field(default_factory=list)  # verdicts and classifier scores
    tool_calls: list[ToolCallDecision] = field(default_factory=list)
    denials: list[dict[str, Any]] = field(default_factory=list)
    confirmations: list[dict[str, Any]] = field(default_factory=list)
    escalations: list[dict[str, Any]] = field(default_factory=list)
    handoffs: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    other: list[dict[str, Any]] = field(default_factory=list)  # event types this version does not know
    reply: str | None = None
    stopped_by: str | None = None
    outcome: dict[str, Any] = field(default_factory=dict)  # the response_sent payload less the text
    events: list[AuditEvent] = field(default_factory=list)
    children: list[TurnDecisions] = field(default_factory=list)  # specialists' turns run in this turn

    def all_events(self) -> list[AuditEvent]:
        """This turn's events, then its children's."""
        out = list(self.events)
        for child in self.children:
            out.extend(child.all_events())
        return out

    def to_dict(self, *, events: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "conversation_id": self.conversation_id, "turn": self.turn, "started_at": self.started_at,
            "ended_at": self.ended_at, "user_input": self.user_input,
            "retrievals": [asdict(r) for r in self.retrievals], "reasoning": self.reasoning,
            "model_calls": self.model_calls, "guardrails": self.guardrails,
            "tool_calls": [asdict(t) for t in self.tool_calls], "denials": self.denials,
            "confirmations": self.confirmations, "escalations": self.escalations, "handoffs": self.handoffs,
            "errors": self.errors, "other": self.other, "reply": self.reply, "stopped_by": self.stopped_by,
            "outcome": self.outcome, "children": [c.to_dict(events=events) for c in self.children],
        }
        if events:
            out["events"] = [e.to_dict() for e in self.events]
        return to_jsonable_python(out, fallback=str)


@dataclass(slots=True)
class Decisions:
    """A conversation's decision trace: its turns in order, its handoff children inside them."""

    tenant: str
    conversation_id: str
    turns: list[TurnDecisions]
    conversations: tuple[str, ...]  # this one and the children found
    unmatched_ledger: list[dict[str, Any]] = field(default_factory=list)  # ledger entries no event names

    @property
    def events(self) -> list[AuditEvent]:
        """Every event: this conversation's in (turn, time) order, then each child's, child by child."""
        by_conversation: dict[str, list[AuditEvent]] = defaultdict(list)
        for turn in self.turns:
            for event in turn.all_events():
                by_conversation[event.conversation_id].append(event)
        out: list[AuditEvent] = []
        for conversation in self.conversations:
            out.extend(sorted(by_conversation.get(conversation, ()), key=_order))
        return out

    def to_dict(self, *, events: bool = False) -> dict[str, Any]:
        return {"tenant": self.tenant, "conversation_id": self.conversation_id,
                "conversations": list(self.conversations), "turns": [t.to_dict(events=events) for t in self.turns],
                "unmatched_ledger": to_jsonable_python(self.unmatched_ledger, fallback=str)}


def _order(event: AuditEvent) -> tuple[int, datetime, int]:
    return event.turn, event.ts, event.seq


class AuditTrail:
    """`await trail(tenant, conversation_id)`: the conversation's `Decisions`, from an `AuditIndex`.

    With a `ledger` (the tool ledger of the sessions' database), each tool call also says what the
    ledger recorded for it (succeeded, failed, unknown, ...), matched by tool and arguments in order.
    """

    def __init__(self, index: AuditIndex, *, ledger: Ledger | None = None) -> None:
        if not isinstance(index, AuditIndex):
            raise ValidationError(f"AuditTrail needs an AuditIndex, got {type(index).__name__}")
        self.index = index
        self.ledger = ledger

    async def __call__(self, tenant: str, conversation_id: str, *, children: bool = True) -> Decisions:
        events = await self.index.events(tenant, conversation_id, children=children)
        by_conversation: dict[str, list[AuditEvent]] = defaultdict(list)
        for event in events:
            by_conversation[event.conversation_id].append(event)
        if conversation_id not in by_conversation:  # children without a parent do not make a conversation
            raise UnknownConversationError(
                f"no events of conversation {conversation_id!r} for tenant {tenant!r} in the audit index",
                hint="check the id and the tenant, and catch the index up with the bus (concierge audit --catch-up)")
        conversations = (conversation_id, *sorted(c for c in by_conversation if c != conversation_id))
        turns_of = {cid: _turns(cid, by_conversation[cid]) for cid in conversations}
        unmatched: list[dict[str, Any]] = []
        if self.ledger is not None:
            for cid in conversations:
                unmatched.extend(await _attach_ledger(self.ledger, cid, turns_of[cid]))
        # Children, deepest first, into the parent turn that was running when they started.
        for cid in sorted(conversations[1:], key=lambda c: -c.count(".")):
            parent = _parent(cid, turns_of)
            for child_turn in turns_of[cid]:
                _host(turns_of[parent], child_turn).children.append(child_turn)
        for turns in turns_of.values():
            for turn in turns:
                turn.children.sort(key=lambda t: (t.started_at, t.conversation_id, t.turn))
        return Decisions(tenant, conversation_id, turns_of[conversation_id], conversations, unmatched)


def _parent(child: str, turns_of: dict[str, list[TurnDecisions]]) -> str:
    """The nearest ancestor present: "c.billing.refunds" → "c.billing" if it has events, else "c"."""
    candidate = child
    while "." in candidate:
        candidate = candidate.rsplit(".", 1)[0]
        if candidate in turns_of:
            return candidate
    raise AssertionError(f"{child} has no parent among {list(turns_of)}")  # the root always matches


def _host(turns: list[TurnDecisions], child: TurnDecisions) -> TurnDecisions:
    """The last parent turn that started no later than the child turn (else the first)."""
    host = turns[0]
    for turn in turns:
        if turn.started_at <= child.started_at:
            host = turn
        else:
            break
    return host


def _turns(conversation_id: str, events: list[AuditEvent]) -> list[TurnDecisions]:
    grouped: dict[int, list[AuditEvent]] = defaultdict(list)
    for event in events:
        grouped[event.turn].append(event)
    return [_turn(conversation_id, number, grouped[number]) for number in sorted(grouped)]


def _turn(conversation_id: str, number: int, events: list[AuditEvent]) -> TurnDecisions:
    turn = TurnDecisions(conversation_id, number, min(e.ts for e in events), max(e.ts for e in events),
                         events=events)
    open_calls: list[ToolCallDecision] = []
    for event in events:
        p = event.payload
        kind = event.type
        if kind == EventType.MESSAGE_RECEIVED:
            turn.user_input = p.get("text")
        elif kind == EventType.LLM_CALL_END:
            turn.model_calls.append(p)
        elif kind == EventType.REASONING_STEP:
            turn.reasoning.append(p)
        elif kind == EventType.RETRIEVAL_QUERY:
            turn.retrievals.append(Retrieval(p.get("query")))
        elif kind == EventType.RETRIEVAL_RESULT:
            target = next((r for r in turn.retrievals if r.grounded is None), None)
            if target is None:
                target = Retrieval(None)
                turn.retrievals.append(target)
            target.grounded = p.get("grounded")
            target.confidence = p.get("confidence")
            target.citations = list(p.get("citations") or [])
        elif kind == EventType.GUARDRAIL_TRIGGERED:
            turn.guardrails.append(p)
        elif kind == EventType.TOOL_CALL_START:
            call = ToolCallDecision(str(p.get("tool", "")), p.get("arguments"), started_at=event.ts)
            turn.tool_calls.append(call)
            open_calls.append(call)
        elif kind == EventType.TOOL_CALL_END:
            tool = str(p.get("tool", ""))
            call = next((c for c in open_calls if c.tool == tool), None)
            if call is None:  # its start was lost (sampled telemetry): keep the outcome anyway
                call = ToolCallDecision(tool, None)
                turn.tool_calls.append(call)
            else:
                open_calls.remove(call)
            call.status, call.latency_ms, call.error = p.get("status"), p.get("latency_ms"), p.get("error")
        elif kind == EventType.PERMISSION_DENIED:
            turn.denials.append(p)
        elif kind == EventType.CONFIRMATION_REQUESTED:
            actions = p.get("actions")
            turn.confirmations.extend(actions if isinstance(actions, list) else [p])
        elif kind == EventType.ESCALATED:
            turn.escalations.append(p)
        elif kind == EventType.HANDOFF:
            turn.handoffs.append(p)
        elif kind == EventType.ERROR:
            turn.errors.append(p)
        elif kind == EventType.RESPONSE_SENT:
            turn.reply = p.get("text")
            turn.stopped_by = p.get("stopped_by")
            turn.outcome = {k: v for k, v in p.items() if k not in ("text", "stopped_by")}
        elif kind != EventType.LLM_CALL_START:
            turn.other.append({"type": kind, **p})
    return turn


_NOT_IN_LEDGER = ("pending", "refused")  # waiting for a yes, or stopped before the ledger


async def _attach_ledger(ledger: Ledger, conversation_id: str, turns: list[TurnDecisions]) -> list[dict[str, Any]]:
    """Each tool call's ledger entry (same tool and arguments, in order); the entries left over."""
    entries = list(await ledger.entries(conversation_id))
    entries.sort(key=lambda e: e.started_at)
    for turn in turns:
        for call in turn.tool_calls:
            if call.status in _NOT_IN_LEDGER:
                continue
            match = next((e for e in entries if e.tool == call.tool and e.arguments == call.arguments), None)
            if match is not None:
                entries.remove(match)
                call.ledger_status, call.ledger_key, call.ledger_note = match.status, match.key, match.note
    return [entry.to_dict() for entry in entries]
