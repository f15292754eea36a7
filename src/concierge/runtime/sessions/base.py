"""A session: one customer conversation, its full history and its durable state.

The runtime loads a session, builds the turn's new messages on the side, and hands them to
`SessionStore.commit_turn` only when the turn is over, so a crashed turn never leaves half a
turn behind. History is never rewritten: summaries only move `window_start` forward.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from ...core.messages import Message


@dataclass(slots=True)
class Session:
    id: str
    created_at: datetime
    updated_at: datetime
    # Every message ever exchanged, oldest first (system instructions are not stored here).
    history: list[Message] = field(default_factory=list)
    # history[:window_start] is represented only by `summary` when building model context.
    window_start: int = 0
    summary: str | None = None
    # Facts that must survive summarisation: results of write actions.
    pinned_facts: list[str] = field(default_factory=list)
    # Free-form per-session state for tools and the application (JSON-serialisable).
    state: dict[str, Any] = field(default_factory=dict)
    turns: int = 0


@dataclass(frozen=True, slots=True)
class TurnCommit:
    """Everything a finished turn changes in its session."""

    new_messages: Sequence[Message]
    new_pinned_facts: Sequence[str]
    window_start: int
    summary: str | None
    state: dict[str, Any]
    updated_at: datetime


class SessionStore(Protocol):
    async def load(self, session_id: str) -> Session | None:
        """The session with its full history, or None if it does not exist."""
        ...

    async def create(self, session_id: str, now: datetime) -> Session:
        """A new empty session; raises SessionError if the id is taken."""
        ...

    async def commit_turn(self, session: Session, commit: TurnCommit) -> None:
        """Durably append the turn and apply it to `session` (the in-memory object) too."""
        ...

    async def close(self) -> None: ...


async def open_session(store: SessionStore, session_id: str, now: datetime) -> Session:
    """The session to run a turn on: the stored one, or a new one. A store with an `open` method
    may hand out a new session unsaved and write it with its first turn (one write, not two)."""
    opener = getattr(store, "open", None)
    if opener is not None:
        session: Session = await opener(session_id, now)
        return session
    return await store.load(session_id) or await store.create(session_id, now)


def apply_commit(session: Session, commit: TurnCommit) -> None:
    """The in-memory half of a commit, shared by every store."""
    session.history.extend(commit.new_messages)
    session.pinned_facts.extend(commit.new_pinned_facts)
    session.window_start = commit.window_start
    session.summary = commit.summary
    session.state = commit.state
    session.updated_at = commit.updated_at
    session.turns += 1
