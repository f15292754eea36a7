"""What the server knows about sessions beyond the conversation: owner, tenant and each turn's trace.

The runtime's session store keeps the conversation; this directory keeps who may see it and a
record of every turn (steps with their latencies, the reply, why it stopped, the confirmation the
customer gave with a button), which is what the operator console lists and draws and what the chat
page redraws a conversation from (`turn_view`: the same shape the live stream ends each turn with).
Session ids are chosen by clients, so inside the runtime a session is named `tenant:id`: two
tenants using the same id never share a conversation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    select,
)

from ..core import jsoncodec
from ..core.errors import SessionError, ValidationError
from ..core.journal import Op
from ..core.sqldb import SqlBacked, UTCDateTime
from ..runtime.result import TurnResult, step_to_dict

# A client's session id: 1-100 of these characters, not only dots ("." and ".." read as paths).
# The runtime's own names use ':' (`tenant:id`, and a specialist's child session `tenant:id.:name`),
# which this pattern forbids, so no client can open a session under those names.
SESSION_ID_PATTERN = r"^[A-Za-z0-9_.@-]*[A-Za-z0-9_@-][A-Za-z0-9_.@-]*$"
SESSION_ID_MAX = 100
SESSION_ID = re.compile(SESSION_ID_PATTERN)

metadata = MetaData()

sessions_table = Table(
    "serving_sessions",
    metadata,
    Column("tenant", String(64), primary_key=True),
    Column("session_id", String(128), primary_key=True),
    Column("user_id", String(255), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("turns", Integer, nullable=False),
    Column("last_message", Text, nullable=False),
    Column("last_reply", Text, nullable=False),
    Column("status", String(32), nullable=False),
    Index("ix_serving_sessions_updated", "tenant", "updated_at"),
)

turns_table = Table(
    "serving_turns",
    metadata,
    Column("tenant", String(64), primary_key=True),
    Column("session_id", String(128), primary_key=True),
    Column("turn_no", Integer, primary_key=True),
    Column("user_id", String(255), nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("message", Text, nullable=False),
    Column("reply", Text, nullable=False),
    Column("stopped_by", String(32), nullable=True),
    Column("trace_id", String(64), nullable=False),
    Column("steps", JSON, nullable=False),
    Column("usage", JSON, nullable=False),
)


# The Confirm or Decline a turn answered (a turn started by a button, not by typed text).
decisions_table = Table(
    "serving_turn_decisions",
    metadata,
    Column("tenant", String(64), primary_key=True),
    Column("session_id", String(128), primary_key=True),
    Column("turn_no", Integer, primary_key=True),
    Column("user_id", String(255), nullable=False),
    Column("decision", JSON, nullable=False),
)
_USER_TABLES = (turns_table, decisions_table, sessions_table)  # erasure order: children first

# The per-request statements, through the journal (portable SQL, `?` placeholders).
_GET = ("SELECT user_id, created_at, updated_at, turns, last_message, last_reply, status FROM serving_sessions "
        "WHERE tenant = ? AND session_id = ?")
_CREATE = ("INSERT INTO serving_sessions (tenant, session_id, user_id, created_at, updated_at, turns, last_message, "
           "last_reply, status) VALUES (?, ?, ?, ?, ?, 0, '', '', 'new')")
_COUNT_TURN = ("UPDATE serving_sessions SET turns = turns + 1, updated_at = ?, last_message = ?, last_reply = ?, "
               "status = ? WHERE tenant = ? AND session_id = ?")
_THIS_TURN = "(SELECT turns FROM serving_sessions WHERE tenant = ? AND session_id = ?)"
_ADD_TURN = ("INSERT INTO serving_turns (tenant, session_id, turn_no, user_id, started_at, latency_ms, message, "
             f"reply, stopped_by, trace_id, steps, usage) VALUES (?, ?, {_THIS_TURN}, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
_ADD_DECISION = ("INSERT INTO serving_turn_decisions (tenant, session_id, turn_no, user_id, decision) "
                 f"VALUES (?, ?, {_THIS_TURN}, ?, ?)")
_TURNS = "SELECT turns FROM serving_sessions WHERE tenant = ? AND session_id = ?"


class _Taken(Exception):
    """The tenant already has a session with this id."""


def check_session_id(session_id: object) -> str:
    if (not isinstance(session_id, str) or not 1 <= len(session_id) <= SESSION_ID_MAX
            or not SESSION_ID.match(session_id)):
        raise ValidationError(f"invalid session id {str(session_id)[:120]!r}",
                              hint="1-100 characters: letters, digits, '_', '.', '@' or '-', not only dots")
    return session_id


def runtime_session_id(tenant: str, session_id: str) -> str:
    """The runtime's name for a tenant's session: tenants never share one."""
    return f"{tenant}:{check_session_id(session_id)}"


@dataclass(frozen=True, slots=True)
class SessionInfo:
    tenant: str
    session_id: str
    user_id: str
    created_at: datetime
    updated_at: datetime
    turns: int
    last_message: str
    last_reply: str
    status: str

    def to_dict(self) -> dict[str, Any]:
        return {"session_id": self.session_id, "user_id": self.user_id, "created_at": self.created_at.isoformat(),
                "updated_at": self.updated_at.isoformat(), "turns": self.turns, "last_message": self.last_message,
                "last_reply": self.last_reply, "status": self.status}


def turn_steps(result: TurnResult) -> list[dict[str, Any]]:
    """The turn's steps with their start offsets (steps run one after another, so offsets add up),
    then its reasoning steps (kind "reasoning"), which the console lists beside the waterfall. A
    tool step that asked for a confirmation names its action (`action_id`, `description`)."""
    offset, steps = 0.0, []
    asked = iter(result.pending_actions)  # in the order their calls asked for them
    for step in result.steps:
        entry = {**step_to_dict(step), "start_ms": round(offset, 3)}
        action = next(asked, None) if step.status == "pending" else None
        if action is not None:
            entry["action_id"], entry["description"] = action.id, action.describe()
        steps.append(entry)
        offset += step.latency_ms
    for reasoning in result.reasoning:
        steps.append({"kind": "reasoning", "name": f"{reasoning.strategy}.{reasoning.kind}", "latency_ms": 0.0,
                      "start_ms": None, "reasoning": reasoning.to_dict()})
    return steps


def _chip(step: Mapping[str, Any]) -> dict[str, Any] | None:
    """A tool step as its chip shows it, or None for a step the customer never saw run (a repeat)."""
    if step.get("kind") != "tool":
        return None
    if "status" in step:
        status = step["status"]
        if status is None:
            return None
    else:  # recorded before steps had a status
        status = "failed" if step.get("error") else "succeeded"
    chip = {"name": step.get("name"), "arguments": step.get("arguments"), "status": status,
            "latency_ms": step.get("latency_ms"), "error": step.get("error")}
    if step.get("action_id"):
        chip["action_id"] = step["action_id"]
    return chip


def turn_view(turn_no: int, started_at: datetime, latency_ms: float, message: str, reply: str,
              stopped_by: str | None, steps: list[dict[str, Any]], usage: dict[str, Any],
              decision: dict[str, Any] | None) -> dict[str, Any]:
    """One turn as the chat page draws it, live (the end of the turn) and after a reload alike: the
    customer's message or the button they pressed, the tool chips with their status, the reply (with
    its "Not done: …" lines), the actions it asked to confirm, and when it started and finished."""
    chips = [c for c in (_chip(s) for s in steps) if c is not None]
    asked: dict[str, dict[str, Any]] = {}
    for step in steps:
        if step.get("kind") == "tool" and step.get("action_id") and step["action_id"] not in asked:
            asked[step["action_id"]] = {"id": step["action_id"], "tool": step.get("name"),
                                        "arguments": step.get("arguments"), "description": step.get("description")}
    return {"turn_no": turn_no, "started_at": started_at.isoformat(),
            "finished_at": (started_at + timedelta(milliseconds=latency_ms)).isoformat(),
            "message": None if decision is not None else message, "decision": decision, "steps": chips,
            "reply": reply, "stopped_by": stopped_by,
            "pending_actions": list(asked.values()) if stopped_by == "awaiting_confirmation" else [],
            "usage": usage}


class SessionDirectory(SqlBacked):
    """Owners of sessions and the record of their turns, in the sessions' database."""

    metadata = metadata
    what = "session directory"

    async def get(self, tenant: str, session_id: str) -> SessionInfo | None:
        journal = self._journal or await self.journal()
        row = await journal.read_one(_GET, tenant, session_id)
        if row is None:
            return None
        user_id, created, updated, turns, last_message, last_reply, status = row
        return SessionInfo(tenant, session_id, user_id, journal.py_time(created), journal.py_time(updated), turns,
                           last_message, last_reply, status)

    async def create(self, tenant: str, session_id: str, user_id: str, now: datetime) -> SessionInfo | None:
        """A new session owned by `user_id`, or None if the tenant already has one with this id."""
        journal = self._journal or await self.journal()
        stamp = journal.db_time(now)
        try:
            await journal.write((Op.one(_CREATE, tenant, session_id, user_id, stamp, stamp, merge=True),), _Taken)
        except _Taken:
            return None
        return SessionInfo(tenant, session_id, user_id, now, now, 0, "", "", "new")

    async def open(self, tenant: str, session_id: str, user_id: str, now: datetime) -> SessionInfo:
        """The session, created for `user_id` if new (two workers racing create it once)."""
        existing = await self.get(tenant, session_id)
        if existing is not None:
            return existing
        created = await self.create(tenant, session_id, user_id, now)
        if created is not None:
            return created
        info = await self.get(tenant, session_id)  # another worker created it first
        assert info is not None
        return info

    async def list(self, tenant: str, *, user_id: str | None = None, limit: int = 100) -> list[SessionInfo]:
        await self._ensure_schema()
        query = select(sessions_table).where(sessions_table.c.tenant == tenant)
        if user_id is not None:
            query = query.where(sessions_table.c.user_id == user_id)
        query = query.order_by(sessions_table.c.updated_at.desc()).limit(limit)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [SessionInfo(**row._mapping) for row in rows]

    async def record_turn(self, tenant: str, session_id: str, user_id: str, message: str, result: TurnResult,
                          started_at: datetime, latency_ms: float, *,
                          decision: dict[str, Any] | None = None) -> dict[str, Any]:
        """Append the turn's record (and the button the customer pressed, if a `decision` started it)
        and update the session's summary row, as one unit of the journal's next group commit;
        returns the turn as `turn_view` draws it."""
        journal = self._journal or await self.journal()
        status = result.stopped_by or "answered"
        usage = {"input_tokens": result.usage.input_tokens, "output_tokens": result.usage.output_tokens,
                 "cost_usd": result.usage.cost_usd}
        steps = turn_steps(result)
        stamp = journal.db_time(started_at)
        # Increment first: the row lock orders concurrent records of one session, and the turn's
        # number is the incremented count, read back inside the same transaction.
        ops = [Op.one(_COUNT_TURN, stamp, message[:500], result.reply[:500], status, tenant, session_id, expect=1),
               Op.one(_ADD_TURN, tenant, session_id, tenant, session_id, user_id, stamp, latency_ms, message,
                      result.reply, result.stopped_by, result.trace_id, jsoncodec.dumps(steps), jsoncodec.dumps(usage))]
        if decision is not None:
            ops.append(Op.one(_ADD_DECISION, tenant, session_id, tenant, session_id, user_id, jsoncodec.dumps(decision)))
        ops.append(Op.one(_TURNS, tenant, session_id, fetch=True))
        rows = await journal.write(ops, lambda: SessionError(
            f"session {session_id!r} of tenant {tenant!r} is not in the directory", hint="open the session first"))
        turn_no = rows[0][0]
        return turn_view(turn_no, started_at, latency_ms, message, result.reply, result.stopped_by, steps, usage,
                         decision)

    async def turns(self, tenant: str, session_id: str) -> list[dict[str, Any]]:
        await self._ensure_schema()
        query = select(turns_table).where(turns_table.c.tenant == tenant, turns_table.c.session_id == session_id)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query.order_by(turns_table.c.turn_no))).all()
        return [{**{k: v for k, v in row._mapping.items() if k not in ("tenant", "session_id", "started_at")},
                 "started_at": row.started_at.isoformat()} for row in rows]

    async def conversation(self, tenant: str, session_id: str) -> list[dict[str, Any]]:
        """Every turn of the session as `turn_view` draws it, in order (what a reloaded page shows)."""
        await self._ensure_schema()
        t, d = turns_table.c, decisions_table.c
        joined = turns_table.outerjoin(decisions_table, (t.tenant == d.tenant) & (t.session_id == d.session_id)
                                       & (t.turn_no == d.turn_no))
        query = (select(t.turn_no, t.started_at, t.latency_ms, t.message, t.reply, t.stopped_by, t.steps, t.usage,
                        d.decision).select_from(joined)
                 .where(t.tenant == tenant, t.session_id == session_id).order_by(t.turn_no))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [turn_view(r.turn_no, r.started_at, r.latency_ms, r.message, r.reply, r.stopped_by, list(r.steps),
                          dict(r.usage), r.decision) for r in rows]

    async def count_user(self, tenant: str, user_id: str) -> int:
        """Rows this directory holds of one user (sessions and turn records), for erasure."""
        await self._ensure_schema()
        async with self.engine.connect() as conn:
            total = 0
            for table in _USER_TABLES:
                query = select(func.count()).select_from(table).where(table.c.tenant == tenant,
                                                                      table.c.user_id == user_id)
                total += int((await conn.execute(query)).scalar_one())
        return total

    async def erase_user(self, tenant: str, user_id: str) -> int:
        """Delete one user's sessions and turn records (erasure); how many rows went."""
        await self._ensure_schema()
        async with self.engine.begin() as conn:
            total = 0
            for table in _USER_TABLES:
                result = await conn.execute(delete(table).where(table.c.tenant == tenant, table.c.user_id == user_id))
                total += int(result.rowcount or 0)
        return total
