"""Durable sessions: the store protocol, an in-memory store and an SQL store (SQLite/PostgreSQL)."""

from .base import Session, SessionStore, TurnCommit, apply_commit
from .memory import InMemorySessionStore
from .sql import SqlSessionStore

__all__ = ["InMemorySessionStore", "Session", "SessionStore", "SqlSessionStore", "TurnCommit", "apply_commit"]
