from __future__ import annotations

import asyncio

from concierge import Agent, Runtime
from concierge.core import UserMessage
from concierge.testing import FunctionModel


async def test_ten_concurrent_messages_run_one_at_a_time_in_arrival_order():
    active = 0
    max_active = 0
    order: list[str] = []

    async def model(messages, tools):
        nonlocal active, max_active
        active += 1
        max_active = max(max_active, active)
        user = [m for m in messages if isinstance(m, UserMessage)][-1].content
        order.append(user)
        await asyncio.sleep(0.01)  # yield so that overlapping turns would interleave
        active -= 1
        return f"answer to {user}"

    runtime = Runtime(Agent(instructions="x", model=FunctionModel(model)))
    texts = [f"message {i}" for i in range(10)]
    results = await asyncio.gather(*(runtime.turn("shared", t) for t in texts))

    assert max_active == 1
    assert order == texts
    assert [r.reply for r in results] == [f"answer to {t}" for t in texts]
    history = (await runtime.store.load("shared")).history
    assert [m.content for m in history if isinstance(m, UserMessage)] == texts
    assert runtime.locks.waiting("shared") == 0  # the lock is released and forgotten


async def test_different_sessions_run_concurrently():
    active = 0
    max_active = 0

    async def model(messages, tools):
        nonlocal active, max_active
        active += 1
        max_active = max(max_active, active)
        await asyncio.sleep(0.01)
        active -= 1
        return "ok"

    runtime = Runtime(Agent(instructions="x", model=FunctionModel(model)))
    await asyncio.gather(*(runtime.turn(f"s{i}", "hi") for i in range(5)))
    assert max_active == 5
