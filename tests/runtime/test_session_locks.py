"""Session locks: one turn at a time per session, in arrival order, whether or not a lock object exists yet."""

from __future__ import annotations

import asyncio

import pytest

from concierge.runtime import SessionLocks


async def _turns(locks: SessionLocks, count: int, cancel: set[int] = frozenset()) -> list[str]:  # type: ignore[assignment]
    """`count` turns for one session arriving one after the other; returns who held it when, in order."""
    log: list[str] = []
    inside = [0]

    async def turn(i: int) -> None:
        async with locks.hold("s"):
            inside[0] += 1
            assert inside[0] == 1, "two turns of one session at once"
            log.append(f"in {i}")
            await asyncio.sleep(0.01)
            log.append(f"out {i}")
            inside[0] -= 1

    tasks = []
    for i in range(count):
        tasks.append(asyncio.create_task(turn(i)))
        await asyncio.sleep(0)  # each arrives (and queues) before the next
    for i in cancel:
        tasks[i].cancel()
    for task in tasks:
        with pytest.raises(asyncio.CancelledError) if tasks.index(task) in cancel else _nothing():
            await task
    return log


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return False


async def test_turns_of_one_session_run_alone_in_arrival_order():
    locks = SessionLocks()
    assert await _turns(locks, 4) == [x for i in range(4) for x in (f"in {i}", f"out {i}")]
    assert locks.waiting("s") == 0 and not locks._locks


async def test_a_lone_turn_then_a_second_one_then_more():
    locks = SessionLocks()
    assert await _turns(locks, 1) == ["in 0", "out 0"]
    assert await _turns(locks, 2) == ["in 0", "out 0", "in 1", "out 1"]
    assert locks.waiting("s") == 0 and not locks._locks


@pytest.mark.parametrize("cancelled", [{1}, {2}, {1, 2}])
async def test_cancelled_waiters_leave_the_queue_and_the_rest_keep_their_order(cancelled):
    locks = SessionLocks()
    log = await _turns(locks, 4, cancelled)
    kept = [i for i in range(4) if i not in cancelled]
    assert log == [x for i in kept for x in (f"in {i}", f"out {i}")]
    assert locks.waiting("s") == 0 and not locks._locks


async def test_a_failing_turn_releases_the_session():
    locks = SessionLocks()
    with pytest.raises(ValueError):
        async with locks.hold("s"):
            raise ValueError("boom")
    assert locks.waiting("s") == 0
    async with locks.hold("s"):
        assert locks.waiting("s") == 1
