from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
import redis.asyncio

from concierge.core.errors import ConfigError, ValidationError
from concierge.serving.ratelimit import (
    Decision,
    InProcessRateLimiter,
    Rate,
    RateLimiter,
    RedisRateLimiter,
    limiter_from_url,
    take_all,
)
from concierge.testing.redis import RedisServer


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Env:
    limiter: RateLimiter
    wait: Callable[[float], Awaitable[None]]  # let this much time pass (fake or real)
    exact: bool  # fake clock: retry_after can be checked exactly


@pytest.fixture(params=["in_process", "redis"])
async def env(request: pytest.FixtureRequest) -> AsyncIterator[Env]:
    if request.param == "in_process":
        clock = FakeClock()

        async def advance(seconds: float) -> None:
            clock.now += seconds

        limiter: RateLimiter = InProcessRateLimiter(clock=clock)
        yield Env(limiter, advance, exact=True)
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        client = redis.asyncio.from_url(server.url)
        await client.flushdb()
        limiter = RedisRateLimiter(client, close_client=True)

        async def sleep(seconds: float) -> None:
            await asyncio.sleep(seconds * 2)  # generous: real time only ever runs later

        yield Env(limiter, sleep, exact=False)
    await limiter.close()


async def test_burst_goes_through_then_refused_with_retry_after(env: Env) -> None:
    rate = Rate(per_second=0.01, burst=3)
    decisions = [await env.limiter.take("user:1", rate) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.retry_after_s for d in decisions[:3]] == [0.0, 0.0, 0.0]
    assert [d.remaining for d in decisions[:3]] == pytest.approx([2.0, 1.0, 0.0], abs=0.05)  # 5 s of refill
    refused = decisions[3]
    assert 0 < refused.retry_after_s <= 100.0  # one token at 0.01/s takes at most 100 s
    if env.exact:
        assert refused == Decision(False, 100.0, 0.0)


async def test_tokens_refill_as_time_passes(env: Env) -> None:
    rate = Rate(per_second=50, burst=2)
    assert (await env.limiter.take("k", rate, cost=2)).allowed
    assert not (await env.limiter.take("k", rate)).allowed
    await env.wait(0.1)  # 5 tokens' worth, capped at the burst of 2
    again = await env.limiter.take("k", rate, cost=2)
    assert again.allowed and again.retry_after_s == 0.0
    assert not (await env.limiter.take("k", rate)).allowed


async def test_partial_refill_reports_time_until_cost_is_available(env: Env) -> None:
    rate = Rate(per_second=1, burst=4)
    assert (await env.limiter.take("k", rate, cost=4)).allowed
    refused = await env.limiter.take("k", rate, cost=3)
    assert not refused.allowed
    assert 0 < refused.retry_after_s <= 3.0
    if env.exact:
        await env.wait(1.0)
        assert (await env.limiter.take("k", rate, cost=3)).retry_after_s == pytest.approx(2.0)


async def test_take_all_stops_at_the_first_refusal(env: Env) -> None:
    """Tenant then user: a refusing tenant leaves the user's bucket untouched, a refusing user does not
    give the tenant's token back (as two takes in a row); with Redis, one script."""
    tenant, user = Rate(per_second=0.01, burst=2), Rate(per_second=0.01, burst=1)
    assert await take_all(env.limiter, [("t", tenant), ("u1", user)]) is None
    refused = await take_all(env.limiter, [("t", tenant), ("u1", user)])
    assert refused is not None and refused[0] == 1 and not refused[1].allowed
    assert 0 < refused[1].retry_after_s <= 100.0
    refused = await take_all(env.limiter, [("t", tenant), ("u2", user)])  # the tenant is empty now
    assert refused is not None and refused[0] == 0 and 0 < refused[1].retry_after_s <= 100.0
    assert (await env.limiter.take("u2", user)).allowed  # untouched by the refused take_all
    with pytest.raises(ValidationError):
        await take_all(env.limiter, [("", tenant)])


async def test_keys_have_separate_buckets(env: Env) -> None:
    rate = Rate(per_second=0.01, burst=1)
    assert (await env.limiter.take("a", rate)).allowed
    assert not (await env.limiter.take("a", rate)).allowed
    assert (await env.limiter.take("b", rate)).allowed


@pytest.mark.parametrize("cost", [4, 3.5, 0, -1, math.nan, math.inf, True])
async def test_impossible_or_malformed_cost_is_rejected(env: Env, cost: float) -> None:
    with pytest.raises(ValidationError):
        await env.limiter.take("k", Rate(per_second=1, burst=3), cost=cost)
    assert (await env.limiter.take("k", Rate(per_second=1, burst=3), cost=3)).allowed  # bucket untouched


@pytest.mark.parametrize("per_second,burst", [
    (0, 1), (-1, 1), (math.inf, 1), (math.nan, 1), (True, 1), ("1", 1), (1, 0), (1, -3), (1, 1.5), (1, True),
])
def test_bad_rate_is_rejected(per_second: object, burst: object) -> None:
    with pytest.raises(ValidationError):
        Rate(per_second=per_second, burst=burst)  # type: ignore[arg-type]


def test_good_rate_is_accepted() -> None:
    assert Rate(per_second=2.5, burst=1) == Rate(2.5, 1)


async def test_redis_takes_are_atomic_under_concurrency(redis_server: RedisServer) -> None:
    client = redis.asyncio.from_url(redis_server.url, max_connections=250)  # 200 takes in flight at once
    limiter = RedisRateLimiter(client, close_client=True)
    rate = Rate(per_second=0.01, burst=50)
    try:
        decisions = await asyncio.gather(*(limiter.take("hot", rate) for _ in range(200)))
    finally:
        await limiter.close()
    assert sum(d.allowed for d in decisions) == 50
    assert all(d.retry_after_s > 0 for d in decisions if not d.allowed)


async def test_redis_bucket_expires_once_it_would_be_full(redis_client: redis.asyncio.Redis) -> None:
    limiter = RedisRateLimiter(redis_client, prefix="rl:")
    await limiter.take("idle", Rate(per_second=10, burst=5))  # one token short: 100 ms to refill
    ttl = await redis_client.pttl("rl:idle")
    assert 0 < ttl <= 200
    await limiter.take("slow", Rate(per_second=0.01, burst=5), cost=5)  # 500 s to refill
    assert 400_000 < await redis_client.pttl("rl:slow") <= 501_000


async def test_in_process_memory_is_bounded_and_keeps_recent_buckets() -> None:
    clock = FakeClock()
    limiter = InProcessRateLimiter(clock=clock, max_keys=10)
    rate = Rate(per_second=0.001, burst=1)
    assert (await limiter.take("hot", rate)).allowed
    for i in range(100):
        await limiter.take(f"cold:{i}", rate)
        assert not (await limiter.take("hot", rate)).allowed  # recently used: never forgotten
        assert len(limiter) <= 10


async def test_in_process_forgets_full_buckets_before_recent_ones() -> None:
    clock = FakeClock()
    limiter = InProcessRateLimiter(clock=clock, max_keys=10)
    slow, fast = Rate(per_second=0.001, burst=1), Rate(per_second=1000, burst=1)
    assert (await limiter.take("drained", slow)).allowed  # the oldest bucket, and empty
    for i in range(20):
        await limiter.take(f"fast:{i}", fast)  # full again a millisecond later
        clock.now += 1
    assert not (await limiter.take("drained", slow)).allowed


async def test_limiter_from_url() -> None:
    assert isinstance(limiter_from_url(None), InProcessRateLimiter)
    shared = limiter_from_url("redis://127.0.0.1:1/0")  # connects lazily: nothing is reached here
    assert isinstance(shared, RedisRateLimiter)
    await shared.close()
    with pytest.raises(ConfigError, match="redis://"):
        limiter_from_url("memcached://127.0.0.1:11211")
