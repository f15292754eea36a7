"""Durable sessions: the store protocol, an in-memory store and an SQL store (SQLite/PostgreSQL)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Session, SessionStore, TurnCommit, apply_commit, open_session
from .memory import InMemorySessionStore

if TYPE_CHECKING:
    from .sql import SqlSessionStore

__all__ = [
    "InMemorySessionStore", "Session", "SessionStore", "SqlSessionStore", "TurnCommit", "apply_commit", "open_session",
]


def __getattr__(name: str) -> Any:
    # The SQL store pulls in SQLAlchemy (most of `import concierge`'s time and memory): imported on first use.
    if name == "SqlSessionStore":
        from .sql import SqlSessionStore

        return SqlSessionStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
