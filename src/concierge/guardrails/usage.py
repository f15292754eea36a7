"""Where the refund caps keep their running totals: reserve before the effect, commit or release after.

A per-customer daily cap is only a guarantee if every worker counts against the same total and
the total survives a restart. Each refund therefore goes through three steps:

1. `reserve` — before the tool runs, in one atomic step: sum what is committed or reserved on the
   order and for the customer's UTC day, and, if the new amount fits under both limits, insert a
   `reserved` row. Two workers cannot both pass the check: the SQL store serialises reservations
   of one customer (and of one order) with a lock row (`INSERT ... ON CONFLICT DO UPDATE`, a row
   lock on PostgreSQL) inside a `BEGIN IMMEDIATE` transaction on SQLite; the Redis store runs the
   check and the insert as one Lua script.
2. `commit(reservation, key)` — the effect happened or may have (succeeded, unknown): the row is
   counted for good, under the ledger's idempotency key; a second commit of the same key (a
   replayed outcome) drops its own reservation, so one action is counted once.
3. `release(reservation)` — nothing happened (failed, refused further down, waiting for the
   customer's confirmation): the row goes. `release(ref=...)` drops what a call committed when a
   saga later compensated it.

A reservation whose worker died before step 2 or 3 counts until its lease runs out (`lease_s`,
15 minutes by default, longer than any tool call with its retries), then no longer counts: the
ledger's recovery deals with the effect itself, and the cap no longer holds that money.

Stores: `InMemoryUsage` (one process, gone on restart: tests), `SqlUsage` (the sessions' database,
SQLite or PostgreSQL; the default of `concierge serve`), `RedisUsage` (`usage_redis`, a Redis shared by the
workers; it must persist its data for the totals to survive a Redis restart). `usage_from_url`
picks one from a URL.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Literal, Protocol, Self

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    Index,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..core.clock import Clock, SystemClock
from ..core.sqldb import SqlBacked, UTCDateTime, ensure_parent_dir

DEFAULT_LEASE_S = 900.0
# An expired reservation is kept this long (uncounted) so that a very late commit still finds it.
KEEP_EXPIRED = timedelta(days=1)
Over = Literal["order", "day"]
_SCHEMA_LOCK_ID = 0x6361707375  # PostgreSQL advisory lock held while creating the tables


@dataclass(frozen=True, slots=True)
class Claim:
    """One refund to reserve: `cents` for `customer` on `day` (UTC), on `order_id` when known.

    `ref` names the call (tenant, session, confirmation) so a later compensation can release it."""

    tenant: str
    customer: str
    day: date
    order_id: str | None
    cents: int
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Reservation:
    """The answer to `reserve`: an id to commit or release, or `over` naming the limit that refused.

    `order_spent` and `day_spent` are the cents already counted (committed or reserved) before this
    claim, for the refusal message."""

    id: str | None
    order_spent: int
    day_spent: int
    over: Over | None = None


class UsageStore(Protocol):
    """Refunded cents per (tenant, customer, UTC day) and per (tenant, order), reserved before the effect."""

    async def reserve(self, claim: Claim, *, order_limit: int | None, day_limit: int | None) -> Reservation: ...

    async def commit(self, reservation: str, key: str | None) -> None: ...

    async def release(self, reservation: str | None = None, *, ref: str | None = None) -> None: ...

    async def spent_today(self, tenant: str, customer: str, day: date) -> int: ...

    async def spent_on_order(self, tenant: str, order_id: str) -> int: ...


def _decide(claim: Claim, order_spent: int, day_spent: int, order_limit: int | None,
            day_limit: int | None) -> Over | None:
    """Which limit the claim would cross, the per-order one first."""
    if order_limit is not None and claim.order_id is not None and order_spent + claim.cents > order_limit:
        return "order"
    if order_limit is not None and claim.order_id is None and claim.cents > order_limit:
        return "order"
    if day_limit is not None and day_spent + claim.cents > day_limit:
        return "day"
    return None


def new_reservation_id() -> str:
    return "rsv_" + uuid.uuid4().hex


# --------------------------------------------------------------------------------------------
# In memory


@dataclass(slots=True)
class _Row:
    claim: Claim
    status: Literal["reserved", "committed"]
    expires: float  # clock seconds; ignored once committed
    key: str | None = None


class InMemoryUsage:
    """Usage in dicts: for tests and one process (a restart, or a second worker, starts from zero)."""

    def __init__(self, *, lease_s: float = DEFAULT_LEASE_S, clock: Clock | None = None) -> None:
        self.lease_s = lease_s
        self.clock = clock or SystemClock()
        self._rows: dict[str, _Row] = {}
        self._daily: dict[tuple[str, str, date], set[str]] = {}
        self._orders: dict[tuple[str, str], set[str]] = {}
        self._keys: dict[tuple[str, str], str] = {}

    def _now(self) -> float:
        return self.clock.now().timestamp()

    def _sum(self, ids: set[str] | None) -> int:
        now = self._now()
        rows = (self._rows[i] for i in ids or ())
        return sum(r.claim.cents for r in rows if r.status == "committed" or r.expires > now)

    async def reserve(self, claim: Claim, *, order_limit: int | None, day_limit: int | None) -> Reservation:
        # No await between the sums and the insert: atomic within the event loop.
        order_spent = 0 if claim.order_id is None else self._sum(self._orders.get((claim.tenant, claim.order_id)))
        day_spent = self._sum(self._daily.get((claim.tenant, claim.customer, claim.day)))
        over = _decide(claim, order_spent, day_spent, order_limit, day_limit)
        if over is not None:
            return Reservation(None, order_spent, day_spent, over)
        rid = new_reservation_id()
        self._rows[rid] = _Row(claim, "reserved", self._now() + self.lease_s)
        self._daily.setdefault((claim.tenant, claim.customer, claim.day), set()).add(rid)
        if claim.order_id is not None:
            self._orders.setdefault((claim.tenant, claim.order_id), set()).add(rid)
        return Reservation(rid, order_spent, day_spent)

    async def commit(self, reservation: str, key: str | None) -> None:
        row = self._rows.get(reservation)
        if row is None:
            return
        if key is not None:
            holder = self._keys.setdefault((row.claim.tenant, key), reservation)
            if holder != reservation:  # a replayed outcome of an action already counted
                self._drop(reservation)
                return
        row.status, row.key = "committed", key

    async def release(self, reservation: str | None = None, *, ref: str | None = None) -> None:
        if reservation is not None:
            self._drop(reservation)
        if ref is not None:
            for rid in [i for i, r in self._rows.items() if r.claim.ref == ref]:
                self._drop(rid)

    def _drop(self, reservation: str) -> None:
        row = self._rows.pop(reservation, None)
        if row is None:
            return
        c = row.claim
        self._daily.get((c.tenant, c.customer, c.day), set()).discard(reservation)
        if c.order_id is not None:
            self._orders.get((c.tenant, c.order_id), set()).discard(reservation)
        if row.key is not None and self._keys.get((c.tenant, row.key)) == reservation:
            del self._keys[(c.tenant, row.key)]

    async def spent_today(self, tenant: str, customer: str, day: date) -> int:
        return self._sum(self._daily.get((tenant, customer, day)))

    async def spent_on_order(self, tenant: str, order_id: str) -> int:
        return self._sum(self._orders.get((tenant, order_id)))


# --------------------------------------------------------------------------------------------
# SQL (SQLite, PostgreSQL)

metadata = MetaData()

usage_table = Table(
    "caps_usage",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("tenant", String(255), nullable=False),
    Column("customer", Text, nullable=False),
    Column("day", Date, nullable=False),
    Column("order_id", Text, nullable=True),
    Column("cents", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),  # reserved | committed
    Column("expires_at", UTCDateTime(), nullable=True),  # reserved rows only
    Column("key", String(128), nullable=True),  # the ledger's idempotency key, set on commit
    Column("ref", String(64), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Index("ix_caps_usage_day", "tenant", "customer", "day"),
    Index("ix_caps_usage_order", "tenant", "order_id"),
    Index("ux_caps_usage_key", "tenant", "key", unique=True),
    Index("ix_caps_usage_ref", "ref"),
)

# One row per customer and per order, locked by every reservation that touches them.
locks_table = Table(
    "caps_usage_locks",
    metadata,
    Column("tenant", String(255), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("hits", BigInteger, nullable=False),
)


def _lock_name(kind: str, value: str) -> str:
    return kind + ":" + hashlib.sha256(value.encode()).hexdigest()[:40]


class SqlUsage(SqlBacked):
    """Usage rows in the sessions' database, shared by every worker that opens the same URL."""

    metadata = metadata
    what = "caps usage database"

    def __init__(self, url: str, *, lease_s: float = DEFAULT_LEASE_S, clock: Clock | None = None,
                 echo: bool = False) -> None:
        super().__init__(url, echo=echo)
        self.lease_s = lease_s
        self.clock = clock or SystemClock()

    @classmethod
    def from_engine(cls, engine: AsyncEngine, *, lease_s: float = DEFAULT_LEASE_S,
                    clock: Clock | None = None) -> Self:
        """On an engine built elsewhere (the ledger's: one pool for both, closed with it)."""
        store = super().from_engine(engine)
        store.lease_s, store.clock = lease_s, clock or SystemClock()
        return store

    async def _ensure_schema(self) -> None:
        """Create the tables once, under a lock, so workers starting together on a new database do not race."""
        if self._schema_ready:
            return
        async with self._schema_lock:
            if self._schema_ready:
                return
            ensure_parent_dir(self.engine)
            async with self.engine.connect() as conn:
                if conn.dialect.name == "sqlite":
                    await conn.exec_driver_sql("BEGIN IMMEDIATE")
                else:
                    await conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _SCHEMA_LOCK_ID})
                await conn.run_sync(self.metadata.create_all)
                await conn.commit()
            self._schema_ready = True

    def _live(self) -> Any:
        t = usage_table
        return or_(t.c.status == "committed", t.c.expires_at > self.clock.now())

    async def _lock(self, conn: AsyncConnection, tenant: str, names: list[str]) -> None:
        """Serialise reservations on the same customer or order: a write on their lock rows, in a fixed order."""
        dialect = conn.dialect.name
        for name in sorted(names):
            insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(locks_table)
            await conn.execute(insert.values(tenant=tenant, name=name, hits=1).on_conflict_do_update(
                index_elements=[locks_table.c.tenant, locks_table.c.name],
                set_={"hits": locks_table.c.hits + 1}))

    async def _sum(self, conn: AsyncConnection, *where: Any) -> int:
        t = usage_table
        found = await conn.scalar(select(func.coalesce(func.sum(t.c.cents), 0)).where(*where, self._live()))
        return int(found or 0)

    async def reserve(self, claim: Claim, *, order_limit: int | None, day_limit: int | None) -> Reservation:
        await self._ensure_schema()
        t = usage_table
        now = self.clock.now()
        names = [_lock_name("c", claim.customer)]
        if claim.order_id is not None:
            names.append(_lock_name("o", claim.order_id))
        async with self.engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                # Take the write lock before reading: a second process waits here (busy_timeout)
                # instead of reading the same sums.
                await conn.exec_driver_sql("BEGIN IMMEDIATE")
            await self._lock(conn, claim.tenant, names)
            order_spent = 0
            if claim.order_id is not None:
                order_spent = await self._sum(conn, t.c.tenant == claim.tenant, t.c.order_id == claim.order_id)
            day_spent = await self._sum(conn, t.c.tenant == claim.tenant, t.c.customer == claim.customer,
                                        t.c.day == claim.day)
            over = _decide(claim, order_spent, day_spent, order_limit, day_limit)
            rid = None
            if over is None:
                rid = new_reservation_id()
                await conn.execute(delete(t).where(
                    t.c.tenant == claim.tenant, t.c.customer == claim.customer, t.c.status == "reserved",
                    t.c.expires_at < now - KEEP_EXPIRED))
                await conn.execute(t.insert().values(
                    id=rid, tenant=claim.tenant, customer=claim.customer, day=claim.day, order_id=claim.order_id,
                    cents=claim.cents, status="reserved", expires_at=now + timedelta(seconds=self.lease_s),
                    key=None, ref=claim.ref, created_at=now))
            await conn.commit()
        return Reservation(rid, order_spent, day_spent, over)

    async def commit(self, reservation: str, key: str | None) -> None:
        await self._ensure_schema()
        t = usage_table
        try:
            async with self.engine.begin() as conn:
                await conn.execute(update(t).where(t.c.id == reservation)
                                   .values(status="committed", expires_at=None, key=key))
        except IntegrityError:  # the key is already counted: a replayed outcome counts once
            async with self.engine.begin() as conn:
                await conn.execute(delete(t).where(t.c.id == reservation))

    async def release(self, reservation: str | None = None, *, ref: str | None = None) -> None:
        await self._ensure_schema()
        t = usage_table
        async with self.engine.begin() as conn:
            if reservation is not None:
                await conn.execute(delete(t).where(t.c.id == reservation))
            if ref is not None:
                await conn.execute(delete(t).where(t.c.ref == ref))

    async def spent_today(self, tenant: str, customer: str, day: date) -> int:
        await self._ensure_schema()
        t = usage_table
        async with self.engine.connect() as conn:
            return await self._sum(conn, t.c.tenant == tenant, t.c.customer == customer, t.c.day == day)

    async def spent_on_order(self, tenant: str, order_id: str) -> int:
        await self._ensure_schema()
        t = usage_table
        async with self.engine.connect() as conn:
            return await self._sum(conn, t.c.tenant == tenant, t.c.order_id == order_id)


def usage_from_url(url: str, *, lease_s: float = DEFAULT_LEASE_S) -> UsageStore:
    """`memory` (this process), redis:// / rediss:// / unix:// (a shared Redis), or an SQLAlchemy URL."""
    if url == "memory":
        return InMemoryUsage(lease_s=lease_s)
    if url.startswith(("redis://", "rediss://", "unix://")):
        import redis.asyncio

        from .usage_redis import RedisUsage

        pool = redis.asyncio.BlockingConnectionPool.from_url(url, max_connections=100, timeout=10)
        return RedisUsage(redis.asyncio.Redis.from_pool(pool), lease_s=lease_s, close_client=True)
    return SqlUsage(url, lease_s=lease_s)


__all__ = [
    "DEFAULT_LEASE_S", "Claim", "InMemoryUsage", "Reservation", "SqlUsage", "UsageStore",
    "usage_from_url",
]
