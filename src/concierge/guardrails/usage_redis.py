"""Refund usage in one Redis shared by the workers: each step (reserve, commit, release) is one Lua script.

The contract is `usage.UsageStore`'s; see that module for reserve, commit and release.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date
from typing import Any

import redis.asyncio

from .usage import DEFAULT_LEASE_S, KEEP_EXPIRED, Claim, Reservation, new_reservation_id

# A reservation is a hash P..'r:'..id {day, order, cents, status, expires (ms), ref, key}; its id is a
# field (value: cents) of the customer-day hash and of the order hash; the sum skips expired reservations.
_SUM = """
local function spent(hkey, prefix, now)
  local total = 0
  local entries = redis.call('HGETALL', hkey)
  for i = 1, #entries, 2 do
    local rec = redis.call('HMGET', prefix .. 'r:' .. entries[i], 'status', 'expires')
    if rec[1] == 'committed' or (rec[1] == 'reserved' and tonumber(rec[2]) > now) then
      total = total + tonumber(entries[i + 1])
    elseif not rec[1] then
      redis.call('HDEL', hkey, entries[i])
    end
  end
  return total
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function drop(prefix, id)
  local rkey = prefix .. 'r:' .. id
  local rec = redis.call('HMGET', rkey, 'day', 'order', 'key', 'ref')
  if rec[1] then redis.call('HDEL', rec[1], id) end
  if rec[2] and rec[2] ~= '' then redis.call('HDEL', rec[2], id) end
  if rec[3] and rec[3] ~= '' and redis.call('GET', rec[3]) == id then redis.call('DEL', rec[3]) end
  if rec[4] and rec[4] ~= '' then redis.call('SREM', prefix .. 'f:' .. rec[4], id) end
  redis.call('DEL', rkey)
end
"""

# KEYS: day hash, order hash ('' if none). ARGV: prefix, id, cents, order limit, day limit (-1: none),
# lease ms, keep-expired ms, day ttl s, ref. Returns {id or '', order spent, day spent, over}.
_RESERVE = _SUM + """
local prefix, id, cents = ARGV[1], ARGV[2], tonumber(ARGV[3])
local order_limit, day_limit = tonumber(ARGV[4]), tonumber(ARGV[5])
local now = now_ms()
local order_spent = 0
if KEYS[2] ~= '' then order_spent = spent(KEYS[2], prefix, now) end
local day_spent = spent(KEYS[1], prefix, now)
if order_limit >= 0 and order_spent + cents > order_limit then return {'', order_spent, day_spent, 'order'} end
if day_limit >= 0 and day_spent + cents > day_limit then return {'', order_spent, day_spent, 'day'} end
local rkey = prefix .. 'r:' .. id
redis.call('HSET', rkey, 'day', KEYS[1], 'order', KEYS[2], 'cents', cents, 'status', 'reserved',
           'expires', now + tonumber(ARGV[6]), 'ref', ARGV[9])
redis.call('PEXPIRE', rkey, tonumber(ARGV[6]) + tonumber(ARGV[7]))
redis.call('HSET', KEYS[1], id, cents)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[8]))
if KEYS[2] ~= '' then redis.call('HSET', KEYS[2], id, cents) end
if ARGV[9] ~= '' then redis.call('SADD', prefix .. 'f:' .. ARGV[9], id) end
return {id, order_spent, day_spent, ''}
"""

# ARGV: prefix, id, the key's entry ('' if none). Returns 1 committed, 0 gone, 2 a replay (dropped).
_COMMIT = _SUM + """
local prefix, id, kkey = ARGV[1], ARGV[2], ARGV[3]
local rkey = prefix .. 'r:' .. id
if not redis.call('HGET', rkey, 'status') then return 0 end
if kkey ~= '' then
  local holder = redis.call('GET', kkey)
  if holder and holder ~= id then drop(prefix, id) return 2 end
  redis.call('SET', kkey, id)
end
redis.call('HSET', rkey, 'status', 'committed', 'key', kkey)
redis.call('PERSIST', rkey)
return 1
"""

# ARGV: prefix, id ('' if none), ref ('' if none).
_RELEASE = _SUM + """
local prefix = ARGV[1]
if ARGV[2] ~= '' then drop(prefix, ARGV[2]) end
if ARGV[3] ~= '' then
  for _, id in ipairs(redis.call('SMEMBERS', prefix .. 'f:' .. ARGV[3])) do drop(prefix, id) end
  redis.call('DEL', prefix .. 'f:' .. ARGV[3])
end
return 1
"""

# KEYS: one hash. ARGV: prefix.
_SPENT = _SUM + "return spent(KEYS[1], ARGV[1], now_ms())"


def _digest(*parts: str) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:40]


class RedisUsage:
    """Usage in one Redis shared by the workers; every step is one Lua script, so one atomic step.

    The scripts reach keys they read from the reservation record: use a single Redis server (or a
    primary with replicas), not a cluster."""

    def __init__(self, client: redis.asyncio.Redis, *, prefix: str = "concierge:caps:",
                 lease_s: float = DEFAULT_LEASE_S, close_client: bool = False) -> None:
        self._client = client
        self.prefix = prefix
        self.lease_s = lease_s
        self._close_client = close_client
        self._reserve = client.register_script(_RESERVE)
        self._commit = client.register_script(_COMMIT)
        self._release = client.register_script(_RELEASE)
        self._spent = client.register_script(_SPENT)

    def _day_key(self, tenant: str, customer: str, day: date) -> str:
        return self.prefix + "d:" + _digest(tenant, customer, day.isoformat())

    def _order_key(self, tenant: str, order_id: str) -> str:
        return self.prefix + "o:" + _digest(tenant, order_id)

    async def reserve(self, claim: Claim, *, order_limit: int | None, day_limit: int | None) -> Reservation:
        day_key = self._day_key(claim.tenant, claim.customer, claim.day)
        order_key = "" if claim.order_id is None else self._order_key(claim.tenant, claim.order_id)
        rid = new_reservation_id()
        reply: Any = await self._reserve(keys=[day_key, order_key], args=[
            self.prefix, rid, claim.cents, -1 if order_limit is None else order_limit,
            -1 if day_limit is None else day_limit, int(self.lease_s * 1000),
            int(KEEP_EXPIRED.total_seconds() * 1000), 3 * 86_400, claim.ref or ""])
        found, order_spent, day_spent, over = reply
        found = found.decode() if isinstance(found, bytes) else str(found)
        over = over.decode() if isinstance(over, bytes) else str(over)
        return Reservation(found or None, int(order_spent), int(day_spent), over or None)  # type: ignore[arg-type]

    async def commit(self, reservation: str, key: str | None) -> None:
        # Idempotency keys are unique across tenants (the tenant is part of what they hash).
        entry = "" if key is None else self.prefix + "k:" + _digest(key)
        await self._commit(keys=[], args=[self.prefix, reservation, entry])

    async def release(self, reservation: str | None = None, *, ref: str | None = None) -> None:
        await self._release(keys=[], args=[self.prefix, reservation or "", ref or ""])

    async def spent_today(self, tenant: str, customer: str, day: date) -> int:
        return int(await self._spent(keys=[self._day_key(tenant, customer, day)], args=[self.prefix]))

    async def spent_on_order(self, tenant: str, order_id: str) -> int:
        return int(await self._spent(keys=[self._order_key(tenant, order_id)], args=[self.prefix]))

    async def close(self) -> None:
        """Closes the client only if this store made it (`usage_from_url`)."""
        if self._close_client:
            await self._client.aclose()


__all__ = ["RedisUsage"]
