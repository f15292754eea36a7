"""Token buckets per key: a burst of requests goes through at once, then a steady rate.

Two implementations share one protocol. `InProcessRateLimiter` is for a single worker process;
`RedisRateLimiter` keeps buckets in Redis, refilled and taken in one Lua script that reads
Redis' own clock, so every worker process sees the same buckets and the same time.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio

from ..core.errors import ConfigError, ValidationError

# Float refills can land a hair below a whole token (0.9999999 instead of 1): count that as there.
_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class Rate:
    """`per_second` tokens flow into a bucket that holds at most `burst`."""

    per_second: float
    burst: int

    def __post_init__(self) -> None:
        if isinstance(self.per_second, bool) or not isinstance(self.per_second, (int, float)) \
                or not math.isfinite(self.per_second) or self.per_second <= 0:
            raise ValidationError(f"Rate.per_second must be a finite number > 0, got {self.per_second!r}",
                                  hint="for example Rate(per_second=5, burst=20)")
        if isinstance(self.burst, bool) or not isinstance(self.burst, int) or self.burst < 1:
            raise ValidationError(f"Rate.burst must be an int >= 1, got {self.burst!r}",
                                  hint="burst is how many requests may go through back to back")


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether a take went through; if not, how long until it would (`retry_after_s` > 0)."""

    allowed: bool
    retry_after_s: float
    remaining: float


class RateLimiter(Protocol):
    async def take(self, key: str, rate: Rate, cost: float = 1.0) -> Decision: ...

    async def close(self) -> None: ...


def _check(key: str, rate: Rate, cost: float) -> float:
    """Reject input that could never be answered sensibly, before touching any bucket."""
    if not isinstance(key, str) or not key:
        raise ValidationError(f"rate limit key must be a non-empty string, got {key!r}")
    if not isinstance(rate, Rate):
        raise ValidationError(f"rate must be a Rate, got {type(rate).__name__}")
    if isinstance(cost, bool) or not isinstance(cost, (int, float)) or not math.isfinite(cost) or cost <= 0:
        raise ValidationError(f"cost must be a finite number > 0, got {cost!r}")
    if cost > rate.burst:
        raise ValidationError(f"cost {cost} is more than the bucket's burst {rate.burst}: it could never pass",
                              hint="raise Rate.burst or lower the cost")
    return float(cost)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float
    per_second: float
    burst: int

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.per_second)
            self.updated = now

    def full_at(self, now: float) -> bool:
        return self.tokens + (now - self.updated) * self.per_second >= self.burst - _EPSILON


class InProcessRateLimiter:
    """Buckets in a dict, for one process; at most `max_keys` buckets are kept."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000) -> None:
        if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
            raise ValidationError(f"max_keys must be an int >= 1, got {max_keys!r}")
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()  # least recently used first

    def __len__(self) -> int:
        return len(self._buckets)

    async def take(self, key: str, rate: Rate, cost: float = 1.0) -> Decision:
        cost = _check(key, rate, cost)
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            self._make_room(now)
            bucket = self._buckets[key] = _Bucket(float(rate.burst), now, rate.per_second, rate.burst)
        else:
            self._buckets.move_to_end(key)
            bucket.refill(now)
            bucket.per_second, bucket.burst = rate.per_second, rate.burst  # the caller's rate wins
            bucket.tokens = min(bucket.tokens, float(rate.burst))
        if bucket.tokens + _EPSILON >= cost:
            bucket.tokens = max(0.0, bucket.tokens - cost)
            return Decision(True, 0.0, bucket.tokens)
        return Decision(False, (cost - bucket.tokens) / rate.per_second, bucket.tokens)

    def _make_room(self, now: float) -> None:
        """At the cap: forget full buckets first (a new one starts full: no change), then the oldest.

        Each sweep brings the count down to 90% of the cap, so its cost is shared by many inserts.
        """
        if len(self._buckets) < self._max_keys:
            return
        target = min(self._max_keys - 1, self._max_keys * 9 // 10)
        for key in [k for k, b in self._buckets.items() if b.full_at(now)]:
            if len(self._buckets) <= target:
                return
            del self._buckets[key]
        while len(self._buckets) > target:
            self._buckets.popitem(last=False)

    async def close(self) -> None:
        self._buckets.clear()


# One bucket's take, on Redis' clock: refill, take `cost` if it is there, store, expire once full
# again. Returns allowed (0/1), retry_after_s and remaining; the floats as strings, as Redis would
# truncate Lua numbers to integers.
_BUCKET = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function take(key, rate, burst, cost)
  local state = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens = tonumber(state[1])
  local ts = tonumber(state[2])
  if tokens == nil or ts == nil then
    tokens = burst
    ts = now
  end
  if now > ts then
    tokens = math.min(burst, tokens + (now - ts) * rate)
    ts = now
  end
  tokens = math.min(tokens, burst)
  local allowed = 0
  local retry = 0
  if tokens + 1e-9 >= cost then
    allowed = 1
    tokens = math.max(0, tokens - cost)
  else
    retry = (cost - tokens) / rate
  end
  redis.call('HSET', key, 'tokens', string.format('%.17g', tokens), 'ts', string.format('%.17g', ts))
  redis.call('PEXPIRE', key, math.ceil((burst - tokens) / rate * 1000) + 1)
  return {allowed, string.format('%.17g', retry), string.format('%.17g', tokens)}
end
"""

# KEYS[1]: the bucket's hash. ARGV: per_second, burst, cost. Returns {allowed, retry_after_s, remaining}.
_TAKE = _BUCKET + """
return take(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]))
"""

# KEYS: the buckets, in order. ARGV: per_second and burst of each, cost 1. Takes from each in turn
# and stops at the first refusal (the buckets after it are not touched). Returns {i, retry_after_s,
# remaining}: i is the refusing bucket's position (from 1), or 0 when every take went through.
_TAKE_ALL = _BUCKET + """
for i = 1, #KEYS do
  local decision = take(KEYS[i], tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i]), 1)
  if decision[1] == 0 then
    return {i, decision[2], decision[3]}
  end
end
return {0, '0', '0'}
"""


async def take_all(limiter: RateLimiter, takes: Sequence[tuple[str, Rate]]) -> tuple[int, Decision] | None:
    """One token from each bucket in order, stopping at the first that refuses: (its index, its
    decision), or None when all went through. One round trip with a `RedisRateLimiter`."""
    batched = getattr(limiter, "take_all", None)
    if batched is not None:
        result: tuple[int, Decision] | None = await batched(takes)
        return result
    for i, (key, rate) in enumerate(takes):
        decision = await limiter.take(key, rate)
        if not decision.allowed:
            return i, decision
    return None


class RedisRateLimiter:
    """Buckets in Redis hashes shared by all workers; an idle bucket expires once it would be full again."""

    def __init__(self, client: redis.asyncio.Redis, *, prefix: str = "concierge:rl:",
                 close_client: bool = False) -> None:
        self._client = client
        self._prefix = prefix
        self._close_client = close_client
        self._script = client.register_script(_TAKE)
        self._script_all = client.register_script(_TAKE_ALL)

    async def take(self, key: str, rate: Rate, cost: float = 1.0) -> Decision:
        cost = _check(key, rate, cost)
        reply: Any = await self._script(keys=[self._prefix + key],
                                        args=[repr(float(rate.per_second)), rate.burst, repr(cost)])
        allowed, retry, remaining = reply
        return Decision(bool(int(allowed)), float(retry), float(remaining))

    async def take_all(self, takes: Sequence[tuple[str, Rate]]) -> tuple[int, Decision] | None:
        """See `take_all` (the function): the buckets in one script, so in one round trip.

        The keys of one call go to one script: on a Redis Cluster they would have to share a slot
        (this limiter's client is a plain one, which a cluster would not serve anyway).
        """
        args: list[Any] = []
        for key, rate in takes:
            _check(key, rate, 1.0)
            args += [repr(float(rate.per_second)), rate.burst]
        reply: Any = await self._script_all(keys=[self._prefix + key for key, _ in takes], args=args)
        refused, retry, remaining = reply
        if int(refused) == 0:
            return None
        return int(refused) - 1, Decision(False, float(retry), float(remaining))

    async def close(self) -> None:
        """Closes the client only if this limiter made it (limiter_from_url); a lent client stays open."""
        if self._close_client:
            await self._client.aclose()


def _connect(url: str) -> redis.asyncio.Redis:
    """A client whose pool makes a burst of callers wait for a free connection instead of failing."""
    pool = redis.asyncio.BlockingConnectionPool.from_url(url, max_connections=100, timeout=10)
    return redis.asyncio.Redis.from_pool(pool)


def limiter_from_url(url: str | None) -> RateLimiter:
    """None: buckets in this process; redis:// or rediss://: buckets shared through that Redis."""
    if url is None:
        return InProcessRateLimiter()
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisRateLimiter(_connect(url), close_client=True)
    raise ConfigError(f"unsupported rate limiter URL {url!r}",
                      hint="leave it unset for an in-process limiter, or give redis://host:6379/0")
