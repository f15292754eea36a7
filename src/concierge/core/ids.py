"""Injected id factories: random in production, sequential in tests."""

from __future__ import annotations

import itertools
import uuid
from typing import Protocol


class IdFactory(Protocol):
    def new(self, prefix: str) -> str: ...


class RandomIds:
    def new(self, prefix: str) -> str:
        return f"{prefix}_{uuid.uuid4().hex[:16]}"


class SequentialIds:
    """`prefix_1`, `prefix_2`, ... one counter shared across prefixes."""

    def __init__(self, start: int = 1) -> None:
        self._counter = itertools.count(start)

    def new(self, prefix: str) -> str:
        return f"{prefix}_{next(self._counter)}"


# Between a parent session and a specialist's name in a child session id: `<parent>.:<name>`.
# ":" never appears in a client's session id, so no client can open, read or write a specialist's
# session by naming it, and the audit trail and erasure find a session's children by this prefix alone.
CHILD_SESSION_SEPARATOR = ".:"


def is_child_of(conversation_id: str, parent: str) -> bool:
    """`conversation_id` is a specialist's child session of `parent` (at any depth)."""
    return conversation_id.startswith(parent + CHILD_SESSION_SEPARATOR)
