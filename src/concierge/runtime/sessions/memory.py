"""Sessions kept in process memory: the fastest store, gone when the process ends."""

from __future__ import annotations

from datetime import datetime

from ...core.errors import SessionError
from .base import Session, TurnCommit, apply_commit


class InMemorySessionStore:
    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}

    async def load(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    async def create(self, session_id: str, now: datetime) -> Session:
        if session_id in self._sessions:
            raise SessionError(f"session {session_id!r} already exists", hint="load it instead of creating it")
        session = self._sessions[session_id] = Session(session_id, now, now)
        return session

    async def commit_turn(self, session: Session, commit: TurnCommit) -> None:
        apply_commit(session, commit)

    async def close(self) -> None:
        self._sessions.clear()
