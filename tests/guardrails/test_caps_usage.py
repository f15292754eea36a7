"""Refund usage stores: reserve atomically against both caps, commit once per action, release on no effect.

Each store (in memory, SQLite, PostgreSQL, Redis) answers the same contract; the cap check then
settles every reservation from the call's outcome: committed when the money moved or may have,
released when it failed, was refused further down, awaits confirmation or was compensated.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from concierge.core import Principal, ToolError
from concierge.core.errors import ToolOutcomeUnknown
from concierge.core.messages import ToolCall
from concierge.factory import build_executor, build_usage
from concierge.guardrails.caps import caps_check, from_arguments
from concierge.guardrails.usage import Claim, InMemoryUsage, SqlUsage, UsageStore
from concierge.guardrails.usage_redis import RedisUsage
from concierge.settings import Settings
from concierge.tools import (
    Compensation,
    InMemoryLedger,
    Saga,
    SagaStep,
    ToolContext,
    ToolRegistry,
    TransactionalExecutor,
    tool,
)

DAY = date(2026, 3, 1)
T, C = "acme", "cust-1"


def claim(cents: int, order: str | None = "W1", *, customer: str = C, ref: str | None = None) -> Claim:
    return Claim(T, customer, DAY, order, cents, ref)


@pytest.fixture(params=["memory", "sqlite", "postgres", "redis"])
async def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    """A factory of stores on one backing store: two of them are like two workers."""
    made: list[Any] = []
    kind = request.param
    url = None
    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'usage.db'}"
    elif kind == "postgres":
        url = request.getfixturevalue("postgres_db").async_url
    shared_memory = InMemoryUsage()
    client: Any = None
    if kind == "redis":
        import redis.asyncio

        client = redis.asyncio.from_url(request.getfixturevalue("redis_server").url)
        await client.flushdb()

    def make(lease_s: float = 900.0) -> UsageStore:
        if kind == "memory":
            shared_memory.lease_s = lease_s
            return shared_memory
        if kind == "redis":
            store: Any = RedisUsage(client, lease_s=lease_s)
        else:
            assert url is not None
            store = SqlUsage(url, lease_s=lease_s)
        made.append(store)
        return store

    yield make
    for store in made:
        if isinstance(store, SqlUsage):
            await store.close()
    if client is not None:
        await client.aclose()


async def test_a_reservation_counts_until_released_and_a_commit_counts_for_good(make_store):
    store = make_store()
    first = await store.reserve(claim(6000), order_limit=10_000, day_limit=10_000)
    assert first.id is not None and (first.order_spent, first.day_spent, first.over) == (0, 0, None)
    assert await store.spent_today(T, C, DAY) == 6000 and await store.spent_on_order(T, "W1") == 6000
    over = await store.reserve(claim(5000, "W2"), order_limit=10_000, day_limit=10_000)
    assert (over.id, over.over, over.day_spent) == (None, "day", 6000)
    on_order = await store.reserve(claim(5000), order_limit=10_000, day_limit=None)
    assert (on_order.id, on_order.over, on_order.order_spent) == (None, "order", 6000)
    await store.release(first.id)
    assert await store.spent_today(T, C, DAY) == 0
    again = await store.reserve(claim(6000), order_limit=10_000, day_limit=10_000)
    await store.commit(again.id, "ik_a")
    assert await store.spent_today(T, C, DAY) == 6000
    assert await store.spent_today(T, "someone-else", DAY) == 0 and await store.spent_today(T, C, date(2026, 3, 2)) == 0


async def test_a_replayed_outcome_is_counted_once(make_store):
    worker_a, worker_b = make_store(), make_store()
    one = await worker_a.reserve(claim(3000), order_limit=None, day_limit=10_000)
    two = await worker_b.reserve(claim(3000), order_limit=None, day_limit=10_000)
    await worker_a.commit(one.id, "ik_same")
    await worker_b.commit(two.id, "ik_same")  # the same action, answered from the ledger
    assert await worker_a.spent_today(T, C, DAY) == 3000


async def test_concurrent_reservations_from_two_stores_never_pass_the_limit_together(make_store):
    worker_a, worker_b = make_store(), make_store()
    results = await asyncio.gather(*(
        (worker_a if i % 2 else worker_b).reserve(claim(700, f"W{i}"), order_limit=None, day_limit=10_000)
        for i in range(30)))
    granted = [r for r in results if r.id is not None]
    assert len(granted) == 14 and await worker_a.spent_today(T, C, DAY) == 14 * 700


async def test_a_reservation_left_by_a_dead_worker_expires_after_its_lease(make_store):
    store = make_store(lease_s=0.2)
    held = await store.reserve(claim(9000), order_limit=None, day_limit=10_000)
    assert (await store.reserve(claim(9000, "W2"), order_limit=None, day_limit=10_000)).id is None
    await asyncio.sleep(0.3)
    assert await store.spent_today(T, C, DAY) == 0
    assert (await store.reserve(claim(9000, "W2"), order_limit=None, day_limit=10_000)).id is not None
    await store.commit(held.id, "ik_late")  # a late commit still counts: the money did move
    assert await store.spent_today(T, C, DAY) == 18_000


async def test_release_by_reference_drops_what_the_call_committed(make_store):
    store = make_store()
    step = await store.reserve(claim(4000, ref="r1"), order_limit=None, day_limit=10_000)
    other = await store.reserve(claim(1000, "W2", ref="r2"), order_limit=None, day_limit=10_000)
    await store.commit(step.id, "ik_step")
    await store.commit(other.id, "ik_other")
    await store.release(ref="r1")
    assert await store.spent_today(T, C, DAY) == 1000


# ------------------------------------------------------------------------------------- settled by the check

PAID: list[str] = []
P = Principal("web", tenant=T, customer_id=C, scopes=frozenset({"*"}))


@tool(effect="write", idempotent=True, confirm=False)
async def refund(order_id: str, amount_usd: float) -> dict:
    """Refund part of an order."""
    if order_id.startswith("FAIL"):
        raise ToolError("the payment provider declined the refund")
    if order_id.startswith("LOST"):
        raise ToolOutcomeUnknown("the payment provider timed out")
    PAID.append(order_id)
    return {"order_id": order_id, "refunded": amount_usd}


@tool(effect="write", idempotent=True)
async def confirmed_refund(order_id: str, amount_usd: float) -> dict:
    """Refund part of an order, once the customer said yes."""
    PAID.append(order_id)
    return {"order_id": order_id}


@tool(effect="write", idempotent=True, confirm=False)
async def reverse_refund(order_id: str) -> dict:
    """Take a refund back."""
    PAID.remove(order_id)
    return {"order_id": order_id, "reversed": True}


@tool(effect="write", idempotent=True, confirm=False)
async def ship_label(order_id: str) -> dict:
    """Print the return label."""
    raise ToolError("the label printer is offline")


refund_undoable = tool(effect="write", idempotent=True, confirm=False, name="refund_undoable",
                       compensate=Compensation("reverse_refund", lambda args, result: {"order_id": args["order_id"]}))(
    refund.function)
MEASURES = {name: from_arguments(refund_usd="amount_usd", order_id="order_id")
            for name in ("refund", "confirmed_refund", "refund_undoable")}


def today() -> date:
    """The UTC day the check counts in."""
    return datetime.now(UTC).date()


def checked(store: UsageStore) -> TransactionalExecutor:
    caps = {"max_refund_per_customer_per_day_usd": 100}
    return TransactionalExecutor(InMemoryLedger(), checks=[caps_check(caps, MEASURES, usage=store)])


async def run(ex: TransactionalExecutor, which: Any, session: str = "s1", **arguments: Any):
    return await ex.execute(which, ToolCall("c1", which.name, arguments), ToolContext(session, P))


async def test_a_failed_or_unconfirmed_refund_releases_and_an_unknown_one_stays_counted(tmp_path: Path):
    store = SqlUsage(f"sqlite+aiosqlite:///{tmp_path / 'usage.db'}")
    ex = checked(store)
    PAID.clear()
    failed = await run(ex, refund, order_id="FAIL-1", amount_usd=80)
    assert failed.status == "failed"
    waiting = await run(ex, confirmed_refund, order_id="W2", amount_usd=80)
    assert waiting.status == "needs_confirmation"
    assert await store.spent_today(T, C, today()) == 0  # neither holds any of the cap
    done = await run(ex, refund, order_id="W5", amount_usd=30)
    replay = await run(ex, refund, order_id="W5", amount_usd=30)  # answered by the ledger: counted once
    assert done.status == replay.status == "succeeded" and replay.replayed
    assert await store.spent_today(T, C, today()) == 3000
    lost = await run(ex, refund, order_id="LOST-1", amount_usd=70)
    assert lost.status == "unknown" and await store.spent_today(T, C, today()) == 10_000
    over = await run(ex, refund, order_id="W3", amount_usd=1)
    assert over.status == "refused" and "per customer per day" in json.loads(over.error)["message"]
    assert PAID == ["W5"]
    await store.close()


async def test_a_compensated_refund_releases_its_share_of_the_cap(tmp_path: Path):
    store = SqlUsage(f"sqlite+aiosqlite:///{tmp_path / 'usage.db'}")
    ex = checked(store)
    PAID.clear()
    steps = ToolRegistry([refund_undoable, reverse_refund, ship_label])
    saga = Saga("return", [SagaStep("refund_undoable", {"order_id": "W7", "amount_usd": 90}),
                           SagaStep("ship_label", {"order_id": "W7"})], steps)
    context = ToolContext("s1", P, confirmation_id="pa_return", executor=ex)
    result = await saga.run(ex, context)
    assert result.status == "rolled_back" and PAID == []
    assert await store.spent_today(T, C, today()) == 0
    again = await run(ex, refund, order_id="W8", amount_usd=95)
    assert again.status == "succeeded" and PAID == ["W8"]
    await store.close()


async def test_the_default_wiring_keeps_usage_in_the_sessions_database(tmp_path: Path):
    settings = Settings(sessions={"url": f"sqlite+aiosqlite:///{tmp_path / 's.db'}"},
                        caps={"default": {"max_refund_per_customer_per_day_usd": 100}})
    executor = build_executor(settings, MEASURES)
    caps = executor.outer.inner  # type: ignore[attr-defined]
    assert isinstance(caps.usage, SqlUsage) and caps.usage.engine is executor.ledger.engine  # closed with it
    outcome = await run(executor, refund, order_id="W1", amount_usd=60)
    assert outcome.status == "succeeded" and await caps.usage.spent_today(T, C, today()) == 6000
    await executor.ledger.close()  # type: ignore[attr-defined]
    assert isinstance(build_usage(settings), SqlUsage)
    assert isinstance(build_usage(Settings(sessions={"url": "memory"})), InMemoryUsage)
    chosen = Settings(sessions={"url": "memory"}, caps={"usage_url": f"sqlite+aiosqlite:///{tmp_path / 'u.db'}",
                                                         "usage_lease_s": 60})
    store = build_usage(chosen)
    assert isinstance(store, SqlUsage) and store.lease_s == 60
    assert isinstance(build_usage(Settings(caps={"usage_url": "redis://127.0.0.1:1/0"})), RedisUsage)
