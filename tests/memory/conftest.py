"""Memory test fixtures: a deterministic keyword embedder, a manual clock, a Memory on tmp files."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from concierge.core.clock import ManualClock
from concierge.memory import Memory

VOCABULARY = ("refund", "order", "damaged", "email", "phone", "number", "contact", "channel", "newsletter",
              "gift", "wrap", "size", "delivery", "late", "language")
DAY = timedelta(days=1).total_seconds()


class KeywordEmbedder:
    """One axis per vocabulary word plus one for 'anything else': cosine similarities are easy to reason about."""

    name = "keyword-test"
    dim = len(VOCABULARY) + 1

    def __init__(self) -> None:
        self.calls = 0

    def vector(self, text: str) -> np.ndarray:
        row = np.zeros(self.dim, dtype=np.float32)
        for word in re.findall(r"[a-z]+", text.lower()):
            if word in VOCABULARY:
                row[VOCABULARY.index(word)] += 1.0
        if not row.any():
            row[-1] = 1.0
        return row / np.linalg.norm(row)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        return np.stack([self.vector(t) for t in texts]).astype(np.float32) if texts else np.zeros((0, self.dim))

    def similarity(self, a: str, b: str) -> float:
        return float(self.vector(a) @ self.vector(b))


def answer(summary: str = "", *, preferences: Any = (), unresolved: Any = (), facts: Any = (),
           resolved: Any = (), satisfaction: str | None = None) -> str:
    """The JSON an extraction model would return."""
    return json.dumps({"summary": summary, "preferences": list(preferences), "unresolved": list(unresolved),
                       "resolved": list(resolved), "facts": list(facts), "satisfaction": satisfaction})


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def embedder() -> KeywordEmbedder:
    return KeywordEmbedder()


@pytest.fixture
async def memory(tmp_path: Path, clock: ManualClock, embedder: KeywordEmbedder) -> AsyncIterator[Memory]:
    mem = Memory(tmp_path / "memory.db", tmp_path / "memory-index", embedder=embedder, clock=clock)
    try:
        yield mem
    finally:
        await mem.close()
