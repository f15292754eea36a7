"""Per-session locks: one turn at a time per session, later messages wait in arrival order.

asyncio.Lock wakes waiters first-in first-out, so messages for one session are handled in
the order they arrived. Locks are dropped when nobody holds or waits for them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class SessionLocks:
    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, session_id: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(session_id) or (asyncio.Lock(), 0)
        self._locks[session_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[session_id]
            if users == 1:
                del self._locks[session_id]
            else:
                self._locks[session_id] = (lock, users - 1)

    def waiting(self, session_id: str) -> int:
        """How many turns hold or wait for this session's lock."""
        entry = self._locks.get(session_id)
        return entry[1] if entry else 0
