"""Per-session locks: one turn at a time per session, later messages wait in arrival order.

asyncio.Lock wakes waiters first-in first-out, so messages for one session are handled in
the order they arrived. Locks are dropped when nobody holds or waits for them. A session nobody
else is waiting for is held without an asyncio.Lock at all (most turns): the lock is made when a
second turn for it arrives, already held on behalf of the first.
"""

from __future__ import annotations

import asyncio
from types import TracebackType


class SessionLocks:
    def __init__(self) -> None:
        # session id -> (its lock, None while the one user holds it alone; holders and waiters)
        self._locks: dict[str, tuple[asyncio.Lock | None, int]] = {}

    def hold(self, session_id: str) -> _Hold:
        """`async with locks.hold(session_id):` runs the block holding the session's lock."""
        return _Hold(self._locks, session_id)

    def waiting(self, session_id: str) -> int:
        """How many turns hold or wait for this session's lock."""
        entry = self._locks.get(session_id)
        return entry[1] if entry else 0


class _Hold:
    """One use of a session's lock; a plain class, as it is entered once per turn."""

    __slots__ = ("_locks", "_session_id")

    def __init__(self, locks: dict[str, tuple[asyncio.Lock | None, int]], session_id: str) -> None:
        self._locks = locks
        self._session_id = session_id

    async def __aenter__(self) -> None:
        locks, session_id = self._locks, self._session_id
        entry = locks.get(session_id)
        if entry is None:  # nobody holds or waits for it: held, no lock needed
            locks[session_id] = (None, 1)
            return
        lock, users = entry
        if lock is None:
            # The holder has it without a lock: this lock stands for its hold (acquiring a free
            # asyncio.Lock completes without suspending), and this turn queues behind it.
            lock = asyncio.Lock()
            await lock.acquire()
        locks[session_id] = (lock, users + 1)
        try:
            await lock.acquire()
        except BaseException:  # cancelled while waiting: no longer a user of the lock
            self._release_entry()
            raise

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        lock, _ = self._locks[self._session_id]
        if lock is not None:  # whether it took the lock or held alone until someone queued: it holds it
            lock.release()
        self._release_entry()

    def _release_entry(self) -> None:
        lock, users = self._locks[self._session_id]
        if users == 1:
            del self._locks[self._session_id]
        else:
            self._locks[self._session_id] = (lock, users - 1)
