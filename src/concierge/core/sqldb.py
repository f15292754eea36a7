"""One way to open the SQL database that sessions, the tool ledger and memory share.

SQLite (a file, the embedded default) and PostgreSQL (by URL) run the same SQLAlchemy Core
statements. The only dialect-specific piece is the SQLite connect hook: WAL so readers run
beside a writer, a busy timeout so writers queue, and `synchronous=FULL` so a commit that
returned is on disk — the ledger's promise depends on that.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Self

from sqlalchemy import DateTime, MetaData, TypeDecorator, event
from sqlalchemy.engine import URL, Dialect, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from .errors import ConfigError
from .journal import Durability, Journal, open_journal

# Workers starting together on a new database race to create its tables: each retries this often.
_SCHEMA_ATTEMPTS = 5
# Plain schemes are upgraded to the async driver the stores need.
_SQLITE, _POSTGRES = "sqlite+aiosqlite", "postgresql+asyncpg"
_DRIVERS = {
    "sqlite": _SQLITE, _SQLITE: _SQLITE, "postgres": _POSTGRES, "postgresql": _POSTGRES, _POSTGRES: _POSTGRES
}
SUPPORTED_URLS = "sqlite+aiosqlite:///path/to/file.db or postgresql+asyncpg://user:password@host/db"


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


def sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
    finally:
        cursor.close()


def redact_url(url: str) -> str:
    """The URL fit for an error message: no password."""
    return re.sub(r"(://[^/@]*?:)[^/@]*@", r"\1***@", url)


def parse_db_url(url: str, what: str = "database") -> URL:
    bad = ConfigError(f"unsupported {what} URL {redact_url(url)!r}", hint=f"use {SUPPORTED_URLS}")
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise bad from exc
    driver = _DRIVERS.get(parsed.drivername)
    if driver is None:
        raise bad
    return parsed.set(drivername=driver)


def open_engine(url: str, what: str = "database", *, echo: bool = False) -> AsyncEngine:
    """An async engine for `url`, with the SQLite hook installed; errors say which extra is missing."""
    parsed = parse_db_url(url, what)
    try:
        engine = create_async_engine(parsed, echo=echo)
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"the database driver for {redact_url(url)!r} is not installed ({exc.name})",
            hint="install concierge[postgres] for PostgreSQL",
        ) from exc
    except ArgumentError as exc:
        raise ConfigError(f"bad {what} URL {redact_url(url)!r}: {exc}", hint=f"use {SUPPORTED_URLS}") from exc
    prepare_engine(engine)
    return engine


def prepare_engine(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine
    if engine.dialect.name == "sqlite" and not event.contains(sync_engine, "connect", sqlite_pragmas):
        event.listen(sync_engine, "connect", sqlite_pragmas)


def ensure_parent_dir(engine: AsyncEngine) -> None:
    """SQLite creates the file but not its folder."""
    url = engine.url
    database = url.database
    if url.get_backend_name() == "sqlite" and database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)


class SqlBacked:
    """Base of the SQL stores: one async engine, tables created on first use, `from_engine` to share one."""

    metadata: ClassVar[MetaData]
    what: ClassVar[str] = "database"

    def __init__(self, url: str, *, echo: bool = False, durability: Durability = "process") -> None:
        self._setup(open_engine(url, self.what, echo=echo))
        self.durability = durability

    @classmethod
    def from_engine(cls, engine: AsyncEngine, durability: Durability = "process") -> Self:
        """Use an engine built elsewhere (custom pool, shared with other tables)."""
        store = cls.__new__(cls)
        store._setup(engine)
        store.durability = durability
        return store

    def _setup(self, engine: AsyncEngine) -> None:
        prepare_engine(engine)
        self.engine = engine
        # SQLite only: "process" (a returned write survives the process being killed) or "power"
        # (it also survives a power cut; each group commit syncs the disk). See `core.journal`.
        self.durability: Durability = "process"
        self._journal: Journal | None = None
        self._schema_ready = False
        self._schema_lock = asyncio.Lock()

    async def journal(self) -> Journal:
        """The group-commit journal on this database, for the per-turn statements (tables made first)."""
        if self._journal is None:
            await self._ensure_schema()
            if self._journal is None:
                self._journal = open_journal(self.engine, self.durability)
        return self._journal

    async def _ensure_schema(self) -> None:
        if self._schema_ready:
            return
        async with self._schema_lock:
            if not self._schema_ready:
                ensure_parent_dir(self.engine)
                for attempt in range(_SCHEMA_ATTEMPTS):
                    try:
                        async with self.engine.begin() as conn:
                            await conn.run_sync(self.metadata.create_all)
                        break
                    except (OperationalError, ProgrammingError, IntegrityError):
                        # Another process created some of the tables between our check and our CREATE
                        # (workers starting together on a new database): check again, which finds them.
                        if attempt == _SCHEMA_ATTEMPTS - 1:
                            raise
                        await asyncio.sleep(0.05 * (attempt + 1))
                self._schema_ready = True

    async def close(self) -> None:
        if self._journal is not None:
            journal, self._journal = self._journal, None
            await journal.close()
        await self.engine.dispose()
