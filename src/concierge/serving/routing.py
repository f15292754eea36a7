"""Session turns serialised across worker processes: a ticket lock in Redis.

Each `hold` takes a ticket (INCR) and waits until the session's `serving` number reaches it, so
turns run one at a time in the order they arrived, whichever worker they arrived at. The holder
keeps a leased `holder` key alive while it works; a worker that dies stops renewing, and once
its lease lapses the next waiter moves `serving` on. A waiter that gives up (client gone) marks
its ticket abandoned so the queue skips it at once. The ticket doubles as a fencing token.

Every multi-step update is one Lua script, so it is atomic. All of a session's keys share the
hash tag `{session_id}`, so they live on one node of a Redis cluster.
"""

from __future__ import annotations

import asyncio
import logging
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import redis.asyncio

from ..core.aio import run_to_completion
from ..core.errors import ConfigError, ValidationError
from ..runtime.locks import SessionLocks

log = logging.getLogger(__name__)

_fence: ContextVar[int | None] = ContextVar("concierge_session_fence", default=None)


def current_fence() -> int | None:
    """The fencing token of the innermost Redis session lock this task holds, or None."""
    return _fence.get()


# Shared by the scripts. KEYS: next, serving, deadline, holder. ARGV[1]: the session's key base (for
# abandoned markers), ARGV[2]: idle TTL in ms. Numbers are written with %.0f: Redis would print a
# Lua number with 14 significant digits, and tickets start from a microsecond clock (16 digits).
_LIB = """
local function num(n) return string.format('%.0f', n) end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function touch()
  for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[2]) end
end
local function advance(lease)
  local s = redis.call('INCR', KEYS[2])
  redis.call('SET', KEYS[3], num(now_ms() + lease))
  return s
end
-- A new ticket. A session seen for the first time (or idle past the TTL) starts counting from
-- Redis' clock in microseconds, so tickets keep increasing even after the keys expired.
local function enter(lease)
  local ticket
  if redis.call('EXISTS', KEYS[1]) == 0 then
    local t = redis.call('TIME')
    redis.call('SET', KEYS[1], t[1] .. string.format('%06d', tonumber(t[2])))
    ticket = tonumber(redis.call('GET', KEYS[1]))
    redis.call('SET', KEYS[2], num(ticket))
    redis.call('SET', KEYS[3], num(now_ms() + lease))
  else
    ticket = redis.call('INCR', KEYS[1])
    if redis.call('EXISTS', KEYS[2]) == 0 then
      redis.call('SET', KEYS[2], num(ticket))
      redis.call('SET', KEYS[3], num(now_ms() + lease))
    end
  end
  touch()
  return ticket
end
-- Try to claim `ticket` (lease ms). Skips tickets ahead that were abandoned, or whose owner
-- neither holds the lease nor claimed in time. Returns {1, serving} claimed, {0, serving} wait,
-- {-1, serving} this ticket was skipped (its owner was too slow to claim): take a new one.
local function claim(ticket, lease)
  local s = tonumber(redis.call('GET', KEYS[2]))
  if s == nil then
    redis.call('SET', KEYS[2], num(ticket))
    s = ticket
  end
  while s < ticket do
    if redis.call('EXISTS', KEYS[4]) == 1 then return {0, s} end
    local marker = ARGV[1] .. ':abandoned:' .. num(s)
    local deadline = tonumber(redis.call('GET', KEYS[3])) or 0
    if redis.call('DEL', marker) == 1 or now_ms() >= deadline then
      s = advance(lease)
    else
      return {0, s}
    end
  end
  if s > ticket then return {-1, s} end
  local holder = redis.call('GET', KEYS[4])
  if holder and holder ~= num(ticket) then return {0, s} end
  redis.call('SET', KEYS[4], num(ticket), 'PX', lease)
  redis.call('SET', KEYS[3], num(now_ms() + lease))
  touch()
  return {1, s}
end
"""

# A new ticket (ARGV[3]: lease ms), and at once a first try to claim it: an uncontended turn takes
# its lock in one round trip. Returns {ticket, state, serving} with `claim`'s state.
_ENTER = _LIB + """
local lease = tonumber(ARGV[3])
local ticket = enter(lease)
local claimed = claim(ticket, lease)
return {ticket, claimed[1], claimed[2]}
"""

# Try again to claim ticket ARGV[3] (lease ARGV[4]): `claim`'s {state, serving}.
_TRY = _LIB + """
return claim(tonumber(ARGV[3]), tonumber(ARGV[4]))
"""

# Extend the lease of ticket ARGV[3] by ARGV[4] ms, only while it still holds it.
_RENEW = _LIB + """
if redis.call('GET', KEYS[4]) ~= ARGV[3] then return 0 end
redis.call('PEXPIRE', KEYS[4], ARGV[4])
redis.call('SET', KEYS[3], num(now_ms() + tonumber(ARGV[4])))
touch()
return 1
"""

# Done with ticket ARGV[3], held or not: drop the lease if it is ours and move `serving` on if it
# still points at us; a ticket not reached yet is marked abandoned instead.
_LEAVE = _LIB + """
local ticket = tonumber(ARGV[3])
if redis.call('GET', KEYS[4]) == ARGV[3] then redis.call('DEL', KEYS[4]) end
local s = tonumber(redis.call('GET', KEYS[2]))
if s == ticket then
  advance(tonumber(ARGV[4]))
elseif s ~= nil and s < ticket then
  redis.call('SET', ARGV[1] .. ':abandoned:' .. ARGV[3], '1', 'PX', ARGV[2])
end
touch()
return 1
"""


class RedisSessionLocks:
    """`async with locks.hold(session_id) as fence:` runs the block alone among all workers."""

    def __init__(self, client: redis.asyncio.Redis, *, lease_ms: int = 30_000, poll_ms: int = 5,
                 prefix: str = "concierge:lock:", idle_ttl_ms: int = 86_400_000,
                 close_client: bool = False) -> None:
        for name, value, least in (("lease_ms", lease_ms, 30), ("poll_ms", poll_ms, 1),
                                   ("idle_ttl_ms", idle_ttl_ms, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValidationError(f"{name} must be an int >= {least}, got {value!r}")
        if idle_ttl_ms <= lease_ms:
            raise ValidationError("idle_ttl_ms must be longer than lease_ms",
                                  hint="the queue's counters must outlive any one lease")
        self.client = client
        self.lease_ms = lease_ms
        self.poll_ms = poll_ms
        self.prefix = prefix
        self.idle_ttl_ms = idle_ttl_ms
        self._close_client = close_client
        self._enter = client.register_script(_ENTER)
        self._try = client.register_script(_TRY)
        self._renew = client.register_script(_RENEW)
        self._leave = client.register_script(_LEAVE)

    def hold(self, session_id: str) -> _RedisHold:
        if not isinstance(session_id, str) or not session_id:
            raise ValidationError(f"session id must be a non-empty string, got {session_id!r}")
        return _RedisHold(self, session_id)

    async def close(self) -> None:
        """Closes the client only if these locks made it (locks_from_url); a lent client stays open."""
        if self._close_client:
            await self.client.aclose()

    def _keys(self, session_id: str) -> tuple[list[str], str]:
        base = f"{self.prefix}{{{session_id}}}"
        return [f"{base}:next", f"{base}:serving", f"{base}:deadline", f"{base}:holder"], base


@dataclass(slots=True)
class _RedisHold:
    """One turn's use of a session's lock: ticket, wait, hold with renewal, release."""

    locks: RedisSessionLocks
    session_id: str
    ticket: int | None = None
    held: bool = False
    _renewal: asyncio.Task[None] | None = field(default=None, repr=False)
    _token: Token[int | None] | None = field(default=None, repr=False)

    async def __aenter__(self) -> int:
        locks = self.locks
        keys, base = locks._keys(self.session_id)
        cancels = _cancels()
        try:
            while True:
                self.ticket = None
                ticket, state, _serving = await locks._enter(keys=keys, args=[base, locks.idle_ttl_ms,
                                                                             locks.lease_ms])
                self.ticket = int(ticket)
                _raise_if_cancelled(cancels)
                claimed = int(state) == 1 or (int(state) == 0 and await self._wait(keys, base, cancels))
                if claimed:
                    break
                log.warning("session %s: ticket %s was skipped while its worker was stalled; queuing again",
                            self.session_id, self.ticket)
        except BaseException:  # cancelled or failed while waiting: give the ticket up so nobody waits on it
            if self.ticket is not None:
                try:
                    await run_to_completion(self._leave())
                except (redis.RedisError, OSError) as error:  # keep the original error; the lease frees the ticket
                    log.warning("session %s: giving up ticket %s failed: %s", self.session_id, self.ticket, error)
            raise
        self.held = True
        self._renewal = asyncio.create_task(self._renew_loop(keys, base),
                                            name=f"renew session lock {self.session_id}")
        self._token = _fence.set(self.ticket)
        return self.ticket

    async def _wait(self, keys: list[str], base: str, cancels: int) -> bool:
        """Polls until the ticket is claimed (True) or skipped (False); entering tried once already."""
        locks = self.locks
        args: list[Any] = [base, locks.idle_ttl_ms, self.ticket, locks.lease_ms]
        while True:
            await asyncio.sleep(locks.poll_ms / 1000)
            state, _serving = await locks._try(keys=keys, args=args)
            _raise_if_cancelled(cancels)
            if int(state) == 1:
                return True
            if int(state) == -1:
                return False

    async def _renew_loop(self, keys: list[str], base: str) -> None:
        """Keeps the lease alive every lease/3; stops (and warns) once another ticket took over."""
        locks = self.locks
        while True:
            await asyncio.sleep(locks.lease_ms / 3000)
            try:
                still = await locks._renew(keys=keys, args=[base, locks.idle_ttl_ms, self.ticket, locks.lease_ms])
                _raise_if_cancelled(0)
            except redis.RedisError as error:
                log.warning("session %s: renewing lock lease failed: %s", self.session_id, error)
                continue
            if not int(still):
                log.warning("session %s: lock lease of ticket %s lapsed; the fence %s is now stale",
                            self.session_id, self.ticket, self.ticket)
                return

    async def _leave(self) -> None:
        locks = self.locks
        keys, base = locks._keys(self.session_id)
        await locks._leave(keys=keys, args=[base, locks.idle_ttl_ms, self.ticket, locks.lease_ms])

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._token is not None:
            _fence.reset(self._token)
            self._token = None
        self.held = False
        await run_to_completion(self._release())

    async def _release(self) -> None:
        if self._renewal is not None:
            self._renewal.cancel()
            await asyncio.wait([self._renewal])
            self._renewal = None
        await self._leave()


def _cancels() -> int:
    task = asyncio.current_task()
    return task.cancelling() if task is not None else 0


def _raise_if_cancelled(before: int) -> None:
    """Re-raises a cancel that got lost on the way: on Python 3.11, asyncio.wait_for (which redis-py
    uses around socket writes) drops a cancel that lands just as the write finishes. Unchecked, a
    waiter whose client left would stay queued, and `renewal.cancel()` would never end the renewal."""
    if _cancels() > before:
        raise asyncio.CancelledError


def _connect(url: str) -> redis.asyncio.Redis:
    """A client whose pool makes a burst of callers wait for a free connection instead of failing."""
    pool = redis.asyncio.BlockingConnectionPool.from_url(url, max_connections=100, timeout=10)
    return redis.asyncio.Redis.from_pool(pool)


def locks_from_url(url: str | None) -> SessionLocks | RedisSessionLocks:
    """None: locks within this process; redis:// or rediss://: locks shared by all workers on that Redis."""
    if url is None:
        return SessionLocks()
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisSessionLocks(_connect(url), close_client=True)
    raise ConfigError(f"unsupported session lock URL {url!r}",
                      hint="leave it unset for in-process locks (one worker), or give redis://host:6379/0")
