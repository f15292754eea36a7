from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio

from concierge.core.errors import ConfigError, ValidationError
from concierge.runtime.locks import SessionLocks
from concierge.serving.routing import RedisSessionLocks, current_fence, locks_from_url
from concierge.testing.redis import RedisServer

ROOT = Path(__file__).resolve().parents[2]


def _python(script: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", script, *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


async def test_turns_run_one_at_a_time_in_arrival_order_across_workers(
        redis_client: redis.asyncio.Redis, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    other = redis.asyncio.from_url(redis_server.url)  # a second worker's connection
    workers = [RedisSessionLocks(redis_client), RedisSessionLocks(other)]
    queued = asyncio.Condition()
    tickets_taken = 0
    for worker in workers:  # count tickets handed out, so that turn i can arrive right after turn i-1
        async def counted(*args: Any, _take: Any = worker._enter, **kwargs: Any) -> Any:
            nonlocal tickets_taken
            ticket = await _take(*args, **kwargs)
            async with queued:
                tickets_taken += 1
                queued.notify_all()
            return ticket
        monkeypatch.setattr(worker, "_enter", counted)
    active = max_active = waiting = max_waiting = 0
    order: list[int] = []
    fences: list[int] = []

    async def turn(i: int) -> None:
        nonlocal active, max_active, waiting, max_waiting
        await asyncio.sleep(i * 0.01)
        async with queued:  # arrival order: strictly after turn i-1 took its ticket
            await queued.wait_for(lambda: tickets_taken >= i)
        waiting += 1
        max_waiting = max(max_waiting, waiting)
        async with workers[i % 2].hold("shared") as fence:
            waiting -= 1
            active += 1
            max_active = max(max_active, active)
            order.append(i)
            fences.append(fence)
            assert current_fence() == fence
            await asyncio.sleep(0.05)
            active -= 1

    try:
        await asyncio.wait_for(asyncio.gather(*(turn(i) for i in range(20))), timeout=60)
    finally:
        await other.aclose()
    assert max_waiting >= 5  # the queue really built up
    assert max_active == 1
    assert order == list(range(20))
    assert all(a < b for a, b in itertools.pairwise(fences))


async def test_different_sessions_do_not_block_each_other(redis_client: redis.asyncio.Redis) -> None:
    locks = RedisSessionLocks(redis_client)
    a_held, release_a = asyncio.Event(), asyncio.Event()

    async def hold_a() -> None:
        async with locks.hold("a"):
            a_held.set()
            await release_a.wait()

    task = asyncio.create_task(hold_a())
    await asyncio.wait_for(a_held.wait(), timeout=10)
    async with asyncio.timeout(10):
        async with locks.hold("b") as fence:
            assert isinstance(fence, int)
    with pytest.raises(TimeoutError):  # while "a" is held (lease 30 s), another "a" waits
        async with asyncio.timeout(0.3):
            async with locks.hold("a"):
                pytest.fail("entered a held session")
    release_a.set()
    await asyncio.wait_for(task, timeout=10)
    async with asyncio.timeout(10):  # the timed-out waiter above does not block the queue
        async with locks.hold("a"):
            pass


async def test_cancelled_waiter_does_not_block_later_waiters(redis_client: redis.asyncio.Redis) -> None:
    locks = RedisSessionLocks(redis_client)  # 30 s lease: a stuck ticket would block for 30 s
    held, release = asyncio.Event(), asyncio.Event()
    entered: list[str] = []

    async def holder() -> None:
        async with locks.hold("s"):
            held.set()
            await release.wait()

    async def waiter(name: str) -> None:
        async with locks.hold("s"):
            entered.append(name)

    first = asyncio.create_task(holder())
    await asyncio.wait_for(held.wait(), timeout=10)
    gone = asyncio.create_task(waiter("gone"))
    await asyncio.sleep(0.1)
    later = asyncio.create_task(waiter("later"))
    await asyncio.sleep(0.1)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    release.set()
    await asyncio.wait_for(asyncio.gather(first, later), timeout=10)
    assert entered == ["later"]


HOLD_AND_HANG = """
import asyncio, sys
import redis.asyncio
from concierge.serving.routing import RedisSessionLocks

async def main():
    locks = RedisSessionLocks(redis.asyncio.from_url(sys.argv[1]), lease_ms=300)
    async with locks.hold("crash") as fence:
        print(fence, flush=True)
        await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_crashed_holder_blocks_only_until_its_lease_lapses(
        redis_client: redis.asyncio.Redis, redis_server: RedisServer) -> None:
    process = _python(HOLD_AND_HANG, redis_server.url)
    try:
        line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), timeout=30)  # type: ignore[union-attr]
        assert line.strip(), process.stderr.read() if process.stderr else ""
        crashed_fence = int(line)
        locks = RedisSessionLocks(redis_client, lease_ms=300)
        with pytest.raises(TimeoutError):  # alive, it renews its 300 ms lease: nobody gets in
            async with asyncio.timeout(1.2):
                async with locks.hold("crash"):
                    pytest.fail("entered while the holder was alive")
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        async with asyncio.timeout(10):
            async with locks.hold("crash") as fence:
                assert fence > crashed_fence
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


async def test_current_fence_tracks_the_innermost_lock(redis_client: redis.asyncio.Redis) -> None:
    locks = RedisSessionLocks(redis_client)
    assert current_fence() is None
    async with locks.hold("outer") as outer:
        assert current_fence() == outer
        async with locks.hold("inner") as inner:
            assert current_fence() == inner != outer
        assert current_fence() == outer
    assert current_fence() is None


async def test_fences_keep_increasing_after_the_session_keys_expire(redis_client: redis.asyncio.Redis) -> None:
    locks = RedisSessionLocks(redis_client)
    async with locks.hold("s") as first:
        pass
    async with locks.hold("s") as second:
        pass
    assert second == first + 1
    await redis_client.flushdb()  # as if the idle keys had expired
    async with locks.hold("s") as third:
        pass
    assert third > second


async def test_exception_or_cancel_in_body_releases_the_lock(redis_client: redis.asyncio.Redis) -> None:
    locks = RedisSessionLocks(redis_client)  # 30 s lease: a lock left behind would time the test out
    with pytest.raises(RuntimeError, match="boom"):
        async with locks.hold("s"):
            raise RuntimeError("boom")
    assert await redis_client.keys("*holder") == []

    inside = asyncio.Event()

    async def busy() -> None:
        async with locks.hold("s"):
            inside.set()
            await asyncio.sleep(3600)

    task = asyncio.create_task(busy())
    await asyncio.wait_for(inside.wait(), timeout=10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with asyncio.timeout(10):
        async with locks.hold("s"):
            assert await redis_client.keys("*holder") != []
    assert current_fence() is None


INCREMENT = """
import asyncio, sys
import redis.asyncio
from concierge.serving.routing import RedisSessionLocks

async def main():
    client = redis.asyncio.from_url(sys.argv[1])
    locks = RedisSessionLocks(client)
    await client.incr("ready")
    while int(await client.get("ready")) < 2:  # start together, so that the two really overlap
        await asyncio.sleep(0.005)
    for _ in range(10):
        async with locks.hold("counter"):
            value = int(await client.get("counter") or 0)
            await asyncio.sleep(0.01)
            await client.set("counter", value + 1)
    await client.aclose()

asyncio.run(main())
"""


async def test_two_processes_lose_no_updates(redis_client: redis.asyncio.Redis, redis_server: RedisServer) -> None:
    processes = [_python(INCREMENT, redis_server.url) for _ in range(2)]
    try:
        for process in processes:
            _, err = await asyncio.to_thread(process.communicate, timeout=60)
            assert process.returncode == 0, err
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    assert int(await redis_client.get("counter")) == 20


async def test_bad_arguments_are_rejected(redis_client: redis.asyncio.Redis) -> None:
    with pytest.raises(ValidationError):
        RedisSessionLocks(redis_client, lease_ms=0)
    with pytest.raises(ValidationError):
        RedisSessionLocks(redis_client, poll_ms=True)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        RedisSessionLocks(redis_client).hold("")


async def test_locks_from_url() -> None:
    assert isinstance(locks_from_url(None), SessionLocks)
    shared = locks_from_url("redis://127.0.0.1:1/0")  # connects lazily: nothing is reached here
    assert isinstance(shared, RedisSessionLocks)
    await shared.close()
    with pytest.raises(ConfigError, match="redis://"):
        locks_from_url("zookeeper://127.0.0.1:2181")
