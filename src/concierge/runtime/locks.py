"""Per-session locks: one turn at a time per session, later messages wait in arrival order.

asyncio.Lock wakes waiters first-in first-out, so messages for one session are handled in
the order they arrived. Locks are dropped when nobody holds or waits for them.
"""

from __future__ import annotations

import asyncio
from types import TracebackType


class SessionLocks:
    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def hold(self, session_id: str) -> _Hold:
        """`async with locks.hold(session_id):` runs the block holding the session's lock."""
        return _Hold(self._locks, session_id)

    def waiting(self, session_id: str) -> int:
        """How many turns hold or wait for this session's lock."""
        entry = self._locks.get(session_id)
        return entry[1] if entry else 0


class _Hold:
    """One use of a session's lock; a plain class, as it is entered once per turn."""

    __slots__ = ("_lock", "_locks", "_session_id")

    def __init__(self, locks: dict[str, tuple[asyncio.Lock, int]], session_id: str) -> None:
        self._locks = locks
        self._session_id = session_id
        self._lock: asyncio.Lock | None = None

    async def __aenter__(self) -> None:
        locks, session_id = self._locks, self._session_id
        entry = locks.get(session_id)
        lock, users = entry if entry is not None else (asyncio.Lock(), 0)
        locks[session_id] = (lock, users + 1)
        try:
            await lock.acquire()
        except BaseException:  # cancelled while waiting: no longer a user of the lock
            self._release_entry()
            raise
        self._lock = lock

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._lock is not None
        self._lock.release()
        self._release_entry()

    def _release_entry(self) -> None:
        lock, users = self._locks[self._session_id]
        if users == 1:
            del self._locks[self._session_id]
        else:
            self._locks[self._session_id] = (lock, users - 1)
