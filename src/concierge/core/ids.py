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
