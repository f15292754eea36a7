"""Memory test fixtures: a deterministic keyword embedder, a manual clock, a Memory on tmp files."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from concierge.core.clock import ManualClock
from concierge.memory import Memory
from concierge.testing.embedders import KeywordEmbedder

DAY = timedelta(days=1).total_seconds()

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
