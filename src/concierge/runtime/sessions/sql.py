"""Sessions in an SQL database: a SQLite file by default, PostgreSQL by URL, one code path.

History is append-only, so a commit inserts message and pinned-fact rows and updates the
session row as one unit of the journal's group commit (`core.journal`): whole or not at all.
The update is guarded by `version`: of two writers that loaded the same session only one wins;
the other gets a SessionError, not a lost turn. SQLAlchemy owns the schema (generic types, the
same on both databases) and the rare operations (listing, erasure); the per-turn statements go
through the journal, which talks to the driver directly.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    select,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from ...core import jsoncodec
from ...core.errors import SessionError, ValidationError
from ...core.journal import Durability, Op
from ...core.messages import Message, message_from_dict, message_to_dict
from ...core.sqldb import SqlBacked, UTCDateTime
from .base import Session, TurnCommit, apply_commit

metadata = MetaData()

sessions_table = Table(
    "sessions",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("window_start", Integer, nullable=False, default=0),
    Column("summary", Text, nullable=True),
    Column("state", JSON, nullable=False),
    Column("turns", Integer, nullable=False, default=0),
    Column("version", Integer, nullable=False, default=0),
)

messages_table = Table(
    "session_messages",
    metadata,
    Column("session_id", String(255), ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("message", JSON, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

pinned_facts_table = Table(
    "session_pinned_facts",
    metadata,
    Column("session_id", String(255), ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("fact", Text, nullable=False),
)


def _aware(value: datetime) -> datetime:
    """Naive times are ambiguous once stored; refuse them before they reach the database."""
    if value.tzinfo is None:
        raise ValidationError("naive datetime given to the session store", hint="pass timezone-aware times")
    return value


# The per-turn statements, run through the journal (portable SQL, `?` placeholders).
_VERSION = "SELECT version FROM sessions WHERE id = ?"
_ROW = ("SELECT created_at, updated_at, window_start, summary, state, turns, version "
        "FROM sessions WHERE id = ?")
_MESSAGES = "SELECT message FROM session_messages WHERE session_id = ? ORDER BY seq"
_FACTS = "SELECT fact FROM session_pinned_facts WHERE session_id = ? ORDER BY seq"
_CREATE = ("INSERT INTO sessions (id, created_at, updated_at, window_start, summary, state, turns, version) "
           "VALUES (?, ?, ?, 0, NULL, ?, 0, 0)")
# A session opened new gets its row with its first turn: version 1, one turn.
_INSERT_WITH_TURN = ("INSERT INTO sessions (id, created_at, updated_at, window_start, summary, state, turns, version) "
                     "VALUES (?, ?, ?, ?, ?, ?, 1, 1)")
_UNSAVED = -1  # `_versions` value of a session opened new and not yet written
# The update goes first in a commit: it takes the row's write lock and decides who wins. `turns` is
# checked too, so two objects for one id loaded through this same store (which share one entry in
# `_versions`) cannot both commit.
_UPDATE = ("UPDATE sessions SET updated_at = ?, window_start = ?, summary = ?, state = ?, turns = ?, version = ? "
           "WHERE id = ? AND version = ? AND turns = ?")
_ADD_MESSAGE = "INSERT INTO session_messages (session_id, seq, message, created_at) VALUES (?, ?, ?, ?)"
_ADD_FACT = "INSERT INTO session_pinned_facts (session_id, seq, fact) VALUES (?, ?, ?)"

DEFAULT_CACHED_SESSIONS = 4096


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """A committed version of a session, kept so that the next turn reads one integer, not the history."""

    version: int
    created_at: datetime
    updated_at: datetime
    history: tuple[Message, ...]
    window_start: int
    summary: str | None
    pinned_facts: tuple[str, ...]
    state_json: str  # the caller owns the dict it gets: each load decodes a fresh one
    turns: int

    def session(self, session_id: str) -> Session:
        return Session(session_id, self.created_at, self.updated_at, history=list(self.history),
                       window_start=self.window_start, summary=self.summary, pinned_facts=list(self.pinned_facts),
                       state=jsoncodec.loads(self.state_json), turns=self.turns)


class SqlSessionStore(SqlBacked):
    """A `SessionStore` on an SQL database; safe to share between processes.

    A turn costs one indexed read of the session's version (the rest comes from a cache of the
    sessions this process committed, checked against that version) and one unit in the journal's
    next group commit. `durability` is SQLite's: "process" (a returned commit survives the process
    being killed) or "power" (it also survives a power cut: each group commit syncs the disk).
    """

    metadata = metadata
    what = "session store"

    def __init__(self, url: str, *, echo: bool = False, durability: Durability = "process",
                 cached_sessions: int = DEFAULT_CACHED_SESSIONS) -> None:
        super().__init__(url, echo=echo, durability=durability)
        self.cached_sessions = cached_sessions

    def _setup(self, engine: AsyncEngine) -> None:
        super()._setup(engine)
        self.cached_sessions = DEFAULT_CACHED_SESSIONS
        self._cache: OrderedDict[str, _Snapshot] = OrderedDict()
        # Session has no version field; the version each loaded session was read at lives here.
        self._versions: dict[str, int] = {}

    async def load(self, session_id: str) -> Session | None:
        journal = self._journal or await self.journal()
        cached = self._cache.get(session_id)
        if cached is not None:
            row = await journal.read_one(_VERSION, session_id)
            if row is not None and row[0] == cached.version:
                self._cache.move_to_end(session_id)
                self._versions[session_id] = cached.version
                return cached.session(session_id)
            del self._cache[session_id]  # changed by another process (or erased): read it whole
        found = (await journal.read(((_ROW, (session_id,)),)))[0]
        if not found:
            return None
        if found[0][-1] != 0:  # it has turns: read them from one snapshot, so a commit landing between
            # the reads cannot mix two versions
            found, messages, facts = await journal.read(
                ((_ROW, (session_id,)), (_MESSAGES, (session_id,)), (_FACTS, (session_id,))))
            if not found:
                return None
        else:
            messages = facts = []
        created, updated, window_start, summary, state, turns, version = found[0]
        snapshot = _Snapshot(
            version, journal.py_time(created), journal.py_time(updated),
            tuple(message_from_dict(_json(m)) for (m,) in messages), window_start, summary,
            tuple(f for (f,) in facts), state if isinstance(state, str) else jsoncodec.dumps(state or {}),
            turns,
        )
        self._remember(session_id, snapshot)
        return snapshot.session(session_id)

    async def create(self, session_id: str, now: datetime) -> Session:
        _aware(now)
        journal = self._journal or await self.journal()
        stamp = journal.db_time(now)
        await journal.write((Op.one(_CREATE, session_id, stamp, stamp, "{}", merge=True),), lambda: SessionError(
            f"session {session_id!r} already exists", hint="load it instead of creating it"))
        self._remember(session_id, _Snapshot(0, now, now, (), 0, None, (), "{}", 0))
        return Session(session_id, now, now)

    async def open(self, session_id: str, now: datetime) -> Session:
        """The stored session, or a new one that is written with its first turn (one write for both):
        until then no other store sees it, and if another writer stores the id first, that first
        commit fails like any stale one."""
        session = await self.load(session_id)
        if session is not None:
            return session
        _aware(now)
        self._versions[session_id] = _UNSAVED
        return Session(session_id, now, now)

    async def commit_turn(self, session: Session, commit: TurnCommit) -> None:
        expected = self._versions.get(session.id)
        if expected is None:
            raise SessionError(
                f"session {session.id!r} was not loaded or created through this store",
                hint="load it from this store before committing a turn",
            )
        _aware(commit.updated_at)
        journal = self._journal or await self.journal()
        sid, stamp, state_json = session.id, journal.db_time(commit.updated_at), jsoncodec.dumps(commit.state)
        first_msg, first_fact = len(session.history), len(session.pinned_facts)
        if expected == _UNSAVED:  # opened new: the row is inserted with the turn (its key refuses a twin)
            ops = [Op.one(_INSERT_WITH_TURN, sid, journal.db_time(session.created_at), stamp, commit.window_start,
                          commit.summary, state_json, merge=True)]
            expected = 0
        else:
            ops = [Op.one(_UPDATE, stamp, commit.window_start, commit.summary, state_json, session.turns + 1,
                          expected + 1, sid, expected, session.turns, expect=1, merge=True)]
        if commit.new_messages:
            ops.append(Op(_ADD_MESSAGE, [(sid, first_msg + i, jsoncodec.dumps(message_to_dict(m)), stamp)
                                         for i, m in enumerate(commit.new_messages)], merge=True))
        if commit.new_pinned_facts:
            ops.append(Op(_ADD_FACT, [(sid, first_fact + i, f) for i, f in enumerate(commit.new_pinned_facts)],
                          merge=True))
        try:
            await journal.write(ops, lambda: SessionError(
                f"session {session.id!r} was changed by another writer since it was loaded",
                hint="load the session again and retry the turn",
            ))
        except SessionError:
            self._cache.pop(sid, None)
            raise
        self._versions[sid] = expected + 1
        apply_commit(session, commit)
        self._remember(sid, _Snapshot(expected + 1, session.created_at, session.updated_at, tuple(session.history),
                                      session.window_start, session.summary, tuple(session.pinned_facts),
                                      state_json, session.turns))

    def _remember(self, session_id: str, snapshot: _Snapshot) -> None:
        self._versions[session_id] = snapshot.version
        if self.cached_sessions <= 0:
            return
        self._cache[session_id] = snapshot
        self._cache.move_to_end(session_id)
        while len(self._cache) > self.cached_sessions:
            self._cache.popitem(last=False)

    async def session_ids(self, prefix: str = "") -> list[str]:
        """Ids of the stored sessions that start with `prefix` (a tenant's: `f"{tenant}:"`)."""
        await self._ensure_schema()
        query = select(sessions_table.c.id)
        if prefix:
            query = query.where(sessions_table.c.id.startswith(prefix, autoescape=True))
        async with self.engine.connect() as conn:
            return list(await conn.scalars(query.order_by(sessions_table.c.id)))

    async def delete(self, session_ids: Iterable[str]) -> int:
        """Delete these sessions with their messages and pinned facts (erasure); how many existed."""
        ids = sorted(set(session_ids))
        if not ids:
            return 0
        await self._ensure_schema()
        async with self.engine.begin() as conn:
            for table in (messages_table, pinned_facts_table):
                await conn.execute(delete(table).where(table.c.session_id.in_(ids)))
            result = await conn.execute(delete(sessions_table).where(sessions_table.c.id.in_(ids)))
        for session_id in ids:
            self._versions.pop(session_id, None)
            self._cache.pop(session_id, None)
        return int(result.rowcount or 0)

    async def close(self) -> None:
        self._versions.clear()
        self._cache.clear()
        await super().close()


def _json(value: str | dict[str, Any]) -> dict[str, Any]:
    return jsoncodec.loads(value) if isinstance(value, str) else value
