"""The per-turn write path: group commit over one writer, for SQLite and PostgreSQL alike.

SQLAlchemy defines the tables and runs everything that is not per turn; the few statements a
turn needs (load a session, append a turn, open a session, record it) go through a `Journal`,
which talks to the driver directly: through SQLAlchemy's async layer each statement cost more
than the whole agent loop.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from ..errors import ConfigError
from .group import Journal
from .ops import Driver, Op
from .sqlite import Durability, SqliteDriver

__all__ = ["Driver", "Durability", "Journal", "Op", "open_journal"]


def open_journal(engine: AsyncEngine, durability: Durability = "process") -> Journal:
    """A journal on the database of `engine` (its tables must exist)."""
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        if not database or database == ":memory:" or database.startswith("file:"):
            raise ConfigError(
                f"the SQLite database {database or ':memory:'!r} is not a file",
                hint="give a file path (sqlite+aiosqlite:///path/to/file.db), or use the in-memory store",
            )
        return Journal(SqliteDriver(database, durability))
    if engine.dialect.name == "postgresql":
        from .postgres import PostgresDriver

        return Journal(PostgresDriver(engine))
    raise ConfigError(f"no journal for the {engine.dialect.name} database", hint="use SQLite or PostgreSQL")
