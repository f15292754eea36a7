"""Sessions in an SQL database: a SQLite file by default, PostgreSQL by URL, one code path.

History is append-only, so a commit inserts message and pinned-fact rows and updates the
session row, all in one transaction. The update is guarded by `version`: of two writers that
loaded the same session only one wins; the other gets a SessionError, not a lost turn.

PostgreSQL (`postgresql+asyncpg://`, the `postgres` extra) runs the same statements: the schema
uses only generic types and the queries are plain Core. The one SQLite-specific piece is the
connect event setting WAL, foreign keys and a busy timeout, registered only for SQLite engines.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Column, DateTime, ForeignKey, Integer, MetaData, String, Table, Text
from sqlalchemy import TypeDecorator, event, insert, select, update
from sqlalchemy.engine import URL, Dialect, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ...core.errors import ConfigError, SessionError, ValidationError
from ...core.messages import message_from_dict, message_to_dict
from .base import Session, TurnCommit, apply_commit

# Plain schemes are upgraded to the async driver the store needs.
_SQLITE, _POSTGRES = "sqlite+aiosqlite", "postgresql+asyncpg"
_DRIVERS = {
    "sqlite": _SQLITE, _SQLITE: _SQLITE, "postgres": _POSTGRES, "postgresql": _POSTGRES, _POSTGRES: _POSTGRES
}
_SUPPORTED = "sqlite+aiosqlite:///path/to/file.db or postgresql+asyncpg://user:password@host/db"
_LOAD_ATTEMPTS = 5


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware in, timezone-aware out: SQLite drops the offset, so store UTC and re-attach it."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


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


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    """WAL lets readers run beside a writer; the busy timeout makes writers queue instead of failing."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
    finally:
        cursor.close()


def _aware(value: datetime) -> datetime:
    """Naive times are ambiguous once stored; refuse them before they reach the database."""
    if value.tzinfo is None:
        raise ValidationError("naive datetime given to the session store", hint="pass timezone-aware times")
    return value


def _redact(url: str) -> str:
    """The URL fit for an error message: no password."""
    return re.sub(r"(://[^/@]*?:)[^/@]*@", r"\1***@", url)


def _parse_url(url: str) -> URL:
    bad = ConfigError(f"unsupported session store URL {_redact(url)!r}", hint=f"use {_SUPPORTED}")
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise bad from exc
    driver = _DRIVERS.get(parsed.drivername)
    if driver is None:
        raise bad
    return parsed.set(drivername=driver)


# Below SQLAlchemy's default pool capacity (5 + 10 overflow).
_MAX_CONCURRENT_OPERATIONS = 8


class SqlSessionStore:
    """A `SessionStore` on SQLAlchemy's async engine; safe to share between processes."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        parsed = _parse_url(url)
        try:
            engine = create_async_engine(parsed, echo=echo)
        except ModuleNotFoundError as exc:
            raise ConfigError(
                f"the database driver for {_redact(url)!r} is not installed ({exc.name})",
                hint="install concierge[postgres] for PostgreSQL",
            ) from exc
        except ArgumentError as exc:
            message = f"bad session store URL {_redact(url)!r}: {exc}"
            raise ConfigError(message, hint=f"use {_SUPPORTED}") from exc
        self._setup(engine)

    @classmethod
    def from_engine(cls, engine: AsyncEngine) -> SqlSessionStore:
        """Use an engine built elsewhere (custom pool, shared with other tables)."""
        store = cls.__new__(cls)
        store._setup(engine)
        return store

    def _setup(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._schema_ready = False
        self._schema_lock = asyncio.Lock()
        # Bursts of turns wait here, in asyncio, rather than timing out in the connection pool.
        self._gate = asyncio.Semaphore(_MAX_CONCURRENT_OPERATIONS)
        # Session has no version field; the version each loaded session was read at lives here.
        self._versions: dict[str, int] = {}
        sync_engine = engine.sync_engine
        if engine.dialect.name == "sqlite" and not event.contains(sync_engine, "connect", _sqlite_pragmas):
            event.listen(sync_engine, "connect", _sqlite_pragmas)

    async def _ensure_schema(self) -> None:
        if self._schema_ready:
            return
        async with self._schema_lock:
            if self._schema_ready:
                return
            url = self.engine.url
            if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
                if not url.database.startswith("file:"):
                    Path(url.database).parent.mkdir(parents=True, exist_ok=True)
            async with self.engine.begin() as conn:
                await conn.run_sync(metadata.create_all)
            self._schema_ready = True

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

    async def close(self) -> None:
        self._versions.clear()
        await self.engine.dispose()
