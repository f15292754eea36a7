"""Sessions in an SQL database: a SQLite file by default, PostgreSQL by URL, one code path.

History is append-only, so a commit inserts message and pinned-fact rows and updates the
session row, all in one transaction. The update is guarded by `version`: of two writers that
loaded the same session only one wins; the other gets a SessionError, not a lost turn.

PostgreSQL (`postgresql+asyncpg://`, the `postgres` extra) runs the same statements: the schema
uses only generic types and the queries are plain Core; the engine comes from `core.sqldb`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import datetime

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
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from ...core.errors import SessionError, ValidationError
from ...core.messages import message_from_dict, message_to_dict
from ...core.sqldb import SqlBacked, UTCDateTime
from .base import Session, TurnCommit, apply_commit

_LOAD_ATTEMPTS = 5


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


# Below SQLAlchemy's default pool capacity (5 + 10 overflow).
_MAX_CONCURRENT_OPERATIONS = 8


class SqlSessionStore(SqlBacked):
    """A `SessionStore` on SQLAlchemy's async engine; safe to share between processes."""

    metadata = metadata
    what = "session store"

    def _setup(self, engine: AsyncEngine) -> None:
        super()._setup(engine)
        # Bursts of turns wait here, in asyncio, rather than timing out in the connection pool.
        self._gate = asyncio.Semaphore(_MAX_CONCURRENT_OPERATIONS)
        # Session has no version field; the version each loaded session was read at lives here.
        self._versions: dict[str, int] = {}

    async def load(self, session_id: str) -> Session | None:
        await self._ensure_schema()
        async with self._gate, self.engine.connect() as conn:
            for _ in range(_LOAD_ATTEMPTS):
                query = select(sessions_table).where(sessions_table.c.id == session_id)
                row = (await conn.execute(query)).first()
                if row is None:
                    return None
                messages = await conn.scalars(
                    select(messages_table.c.message)
                    .where(messages_table.c.session_id == session_id)
                    .order_by(messages_table.c.seq)
                )
                facts = await conn.scalars(
                    select(pinned_facts_table.c.fact)
                    .where(pinned_facts_table.c.session_id == session_id)
                    .order_by(pinned_facts_table.c.seq)
                )
                history, pinned = [message_from_dict(m) for m in messages], list(facts)
                # Reads are not one snapshot on every backend: a commit landing between them would
                # mix two versions, so read again until the version did not move underneath.
                version_after = await conn.scalar(
                    select(sessions_table.c.version).where(sessions_table.c.id == session_id)
                )
                await conn.rollback()
                if version_after == row.version:
                    break
            else:
                raise SessionError(
                    f"session {session_id!r} kept changing while being loaded", hint="retry the load"
                )
        self._versions[session_id] = row.version
        return Session(
            row.id, row.created_at, row.updated_at, history=history, window_start=row.window_start,
            summary=row.summary, pinned_facts=pinned, state=dict(row.state or {}), turns=row.turns,
        )

    async def create(self, session_id: str, now: datetime) -> Session:
        _aware(now)
        await self._ensure_schema()
        try:
            async with self._gate, self.engine.begin() as conn:
                await conn.execute(
                    insert(sessions_table).values(
                        id=session_id, created_at=now, updated_at=now, window_start=0,
                        summary=None, state={}, turns=0, version=0,
                    )
                )
        except IntegrityError as exc:
            raise SessionError(
                f"session {session_id!r} already exists", hint="load it instead of creating it"
            ) from exc
        self._versions[session_id] = 0
        return Session(session_id, now, now)

    async def commit_turn(self, session: Session, commit: TurnCommit) -> None:
        expected = self._versions.get(session.id)
        if expected is None:
            raise SessionError(
                f"session {session.id!r} was not loaded or created through this store",
                hint="load it from this store before committing a turn",
            )
        stale = SessionError(
            f"session {session.id!r} was changed by another writer since it was loaded",
            hint="load the session again and retry the turn",
        )
        _aware(commit.updated_at)
        await self._ensure_schema()
        first_msg, first_fact = len(session.history), len(session.pinned_facts)
        try:
            async with self._gate, self.engine.begin() as conn:
                # The update goes first: it takes the row's write lock and decides who wins.
                # `turns` is checked too, so two objects for one id loaded through this same
                # store (which share one entry in `_versions`) cannot both commit.
                result = await conn.execute(
                    update(sessions_table)
                    .where(
                        sessions_table.c.id == session.id,
                        sessions_table.c.version == expected,
                        sessions_table.c.turns == session.turns,
                    )
                    .values(
                        updated_at=commit.updated_at, window_start=commit.window_start,
                        summary=commit.summary, state=commit.state,
                        turns=session.turns + 1, version=expected + 1,
                    )
                )
                if result.rowcount != 1:
                    raise stale
                if commit.new_messages:
                    await conn.execute(
                        insert(messages_table),
                        [
                            {"session_id": session.id, "seq": first_msg + i,
                             "message": message_to_dict(m), "created_at": commit.updated_at}
                            for i, m in enumerate(commit.new_messages)
                        ],
                    )
                if commit.new_pinned_facts:
                    await conn.execute(
                        insert(pinned_facts_table),
                        [{"session_id": session.id, "seq": first_fact + i, "fact": f}
                         for i, f in enumerate(commit.new_pinned_facts)],
                    )
        except IntegrityError as exc:
            raise stale from exc
        self._versions[session.id] = expected + 1
        apply_commit(session, commit)

    async def session_ids(self, prefix: str = "") -> list[str]:
        """Ids of the stored sessions that start with `prefix` (a tenant's: `f"{tenant}:"`)."""
        await self._ensure_schema()
        query = select(sessions_table.c.id)
        if prefix:
            query = query.where(sessions_table.c.id.startswith(prefix, autoescape=True))
        async with self._gate, self.engine.connect() as conn:
            return list(await conn.scalars(query.order_by(sessions_table.c.id)))

    async def delete(self, session_ids: Iterable[str]) -> int:
        """Delete these sessions with their messages and pinned facts (erasure); how many existed."""
        ids = sorted(set(session_ids))
        if not ids:
            return 0
        await self._ensure_schema()
        async with self._gate, self.engine.begin() as conn:
            for table in (messages_table, pinned_facts_table):
                await conn.execute(delete(table).where(table.c.session_id.in_(ids)))
            result = await conn.execute(delete(sessions_table).where(sessions_table.c.id.in_(ids)))
        for session_id in ids:
            self._versions.pop(session_id, None)
        return int(result.rowcount or 0)

    async def close(self) -> None:
        self._versions.clear()
        await super().close()
