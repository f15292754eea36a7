"""The `ErasableStore` adapters: one per place a user's data lands.

Which conversations are the user's comes from `UserSessions`: the serving directory's sessions
of (tenant, user id), named as the runtime names them (`tenant:id`), plus runtime sessions whose
id itself names the user. It remembers what it found, so stores erased after the directory still
know the sessions; erase the directory last (`build_stores` does).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from ..core.ids import CHILD_SESSION_SEPARATOR, is_child_of
from .base import TOMBSTONE, Matcher, hashed

if TYPE_CHECKING:
    import redis.asyncio
    from pyiceberg.catalog import Catalog

    from ..events.bus import Record
    from ..guardrails.audit import AuditEvent, AuditIndex
    from ..runtime.sessions.sql import SqlSessionStore
    from ..serving.records import SessionDirectory
    from ..tools.ledger.sql import SqlLedger


async def compact_sqlite(engine: AsyncEngine) -> None:
    """SQLite keeps deleted rows' bytes in free pages (and the WAL) until VACUUM and a checkpoint."""
    if engine.dialect.name != "sqlite":
        return
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.exec_driver_sql("VACUUM")
        await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def in_sessions(conversation_id: str, sessions: Iterable[str]) -> bool:
    """The conversation is one of these sessions or a specialist's child of one (`id.:name`)."""
    return any(conversation_id == s or is_child_of(conversation_id, s) for s in sessions)


class UserSessions:
    """The user's runtime session ids (`tenant:id`), found once and remembered for later stores."""

    def __init__(self, directory: SessionDirectory | None = None, runtime: SqlSessionStore | None = None) -> None:
        self.directory = directory
        self.runtime = runtime
        self._known: dict[tuple[str, str], set[str]] = {}

    async def ids(self, tenant: str, user_id: str, identifiers: Sequence[str]) -> set[str]:
        found = self._known.setdefault((tenant, user_id), set())
        if self.directory is not None:
            for info in await self.directory.list(tenant, user_id=user_id, limit=1_000_000):
                found.add(f"{tenant}:{info.session_id}")
        if self.runtime is not None:
            matcher, prefix = Matcher(identifiers), f"{tenant}:"
            found.update(s for s in await self.runtime.session_ids(prefix) if matcher.mentions(s[len(prefix):]))
        return set(found)


# -- SQL stores ---------------------------------------------------------------------------------------


class RuntimeSessionsStore:
    """The runtime's sessions (messages, pinned facts, state) of the user: deleted."""

    def __init__(self, store: SqlSessionStore, sessions: UserSessions, *, vacuum: bool = False,
                 name: str = "runtime_sessions") -> None:
        self.store, self.sessions, self.vacuum, self.name = store, sessions, vacuum, name

    async def _targets(self, tenant: str, user_id: str, identifiers: Sequence[str]) -> list[str]:
        known = await self.sessions.ids(tenant, user_id, identifiers)
        return [s for s in await self.store.session_ids(f"{tenant}:") if in_sessions(s, known)]

    async def count(self, tenant: str, user_id: str, identifiers: Sequence[str]) -> int:
        return len(await self._targets(tenant, user_id, identifiers))

    async def erase(self, tenant: str, user_id: str, identifiers: Sequence[str]) -> int:
        deleted = await self.store.delete(await self._targets(tenant, user_id, identifiers))
        if self.vacuum:
            await compact_sqlite(self.store.engine)
        return deleted


class ServingRecordsStore:
    """The serving directory's rows of the user (serving_sessions, serving_turns): deleted."""

    def __init__(self, directory: SessionDirectory, *, vacuum: bool = False, name: str = "serving_records") -> None:
        self.directory, self.vacuum, self.name = directory, vacuum, name

    async def count(self, tenant: str, user_id: str, identifiers: Sequence[str]) -> int:
        return await self.directory.count_user(tenant, user_id)

    async def erase(self, tenant: str, user_id: str, identifiers: Sequence[str]) -> int:
        deleted = await self.directory.erase_user(tenant, user_id)
        if self.vacuum:
            await compact_sqlite(self.directory.engine)
        return deleted


# Fields whose numbers the books need: kept when a ledger entry is tombstoned.
AMOUNT_KEY = re.compile(
    r"amount|total|price|refund|cost|fee|tax|balance|charge|credit|discount|quantity|qty|currency|status",
    re.IGNORECASE)
_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")
_CODE = re.compile(r"^[A-Za-z_]{1,32}$")


def scrub(value: Any, matcher: Matcher, key: str | None = None) -> Any:
    """The value with everything but amounts (and amount-like codes: currency, status) tombstoned."""
    if isinstance(value, dict):
        return {k: scrub(v, matcher, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v, matcher, key) for v in value]
    if value is None:
        return None
    if key is not None and AMOUNT_KEY.search(key) and not matcher.mentions(value):
        if isinstance(value, bool | int | float):
            return value
        if isinstance(value, str) and (_NUMBER.match(value) or _CODE.match(value)):
            return value
    return TOMBSTONE


class LedgerStore:
    """Tool-ledger and tool-audit rows of the user: tombstoned, not deleted (accounting keeps them).

    Arguments, results, state, errors, notes and the principal are replaced by `[ERASED]`; amounts
    (fields named amount, total, price, refund, ...), the status, the tool, the key and the times
    stay. A tombstoned row has `principal.erased_at`; it counts again only if it still names the user.
    """

    def __init__(self, ledger: SqlLedger, sessions: UserSessions, *, vacuum: bool = False, name: str = "ledger",
                 now: Callable[[], datetime] | None = None) -> None:
        self.ledger, self.sessions, self.vacuum, self.name = ledger, sessions, vacuum, name
        self._now = now or (lambda: datetime.now(UTC))

    async def _run(self, tenant: str, user_id: str, identifiers: Sequence[str], *, dry_run: bool) -> int:
        known = await self.sessions.ids(tenant, user_id, identifiers)
        matcher = Matcher(identifiers)
        erased_at = self._now().isoformat()

        def match(table: str, row: dict[str, Any]) -> bool:
            principal = row.get("principal") or {}
            session_id = str(row.get("session_id") or "")
            if principal.get("tenant") != tenant and not session_id.startswith(f"{tenant}:"):
                return False
            if principal.get("erased_at"):
                return matcher.mentions(row)
            return (principal.get("user_id") == user_id or in_sessions(session_id, known)
                    or matcher.mentions(row))

        def redact(table: str, row: dict[str, Any]) -> dict[str, Any]:
            principal = row.get("principal") or {}
            session_id = str(row["session_id"])
            if matcher.mentions(session_id):
                session_id = f"{tenant}:erased-{hashed(session_id)}"
            values: dict[str, Any] = {
                "session_id": session_id, "arguments": scrub(row["arguments"], matcher),
                "principal": {"tenant": principal.get("tenant", tenant), "role": principal.get("role"),
                              "user_id": TOMBSTONE, "erased_at": erased_at},
            }
            if table == "tool_ledger":
                values.update(result=scrub(row["result"], matcher), state=scrub(row["state"], matcher),
                              error=None if row["error"] is None else TOMBSTONE,
                              note=None if row["note"] is None else TOMBSTONE)
            else:
                values.update(reason=TOMBSTONE, extra=scrub(row["extra"], matcher))
            return values

        return await self.ledger.rewrite_matching(match, redact, dry_run=dry_run)

    async def count(self, tenant: str, user_id: str, identifiers: Sequence[str]) -> int:
        return await self._run(tenant, user_id, identifiers, dry_run=True)

    async def erase(self, tenant: str, user_id: str, identifiers: Sequence[str]) -> int:
        done = await self._run(tenant, user_id, identifiers, dry_run=False)
        if self.vacuum:
            await compact_sqlite(self.ledger.engine)
        return done


# -- events -------------------------------------------------------------------------------------------


class DeletableLog(Protocol):
    partitions: int

    async def read(self, partition: int, after: int, limit: int) -> list[Record]: ...

    async def end_offsets(self) -> dict[int, int]: ...


def event_matches(data: bytes | str, tenant: str, user_id: str, sessions: set[str], matcher: Matcher) -> bool:
    """A bus record is the user's: their event (user id or one of their conversations) or one naming them."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    try:
        event = json.loads(text)
    except ValueError:
        event = None
    if isinstance(event, dict) and isinstance(event.get("tenant"), str):
        if event["tenant"] != tenant:
            return False
        return (event.get("user_id") == user_id or in_sessions(str(event.get("conversation_id", "")), sessions)
                or matcher.mentions(text))
    # Not an event (a dead letter to be): the user's if it names both the tenant and the user.
    return tenant in text and matcher.mentions(text)


class EventLogStore:
    """Records on the event bus (embedded SQLite log or Redis Streams) of the user: deleted (XDEL)."""

    def __init__(self, log: Any, sessions: UserSessions, *, batch_size: int = 5_000, compact: bool = False,
                 name: str = "events") -> None:
        self.log, self.sessions, self.batch_size, self.compact, self.name = log, sessions, batch_size, compact, name

    async def _positions(self, tenant: str, user_id: str, identifiers: Sequence[str]) -> list[tuple[int, int]]:
        known = await self.sessions.ids(tenant, user_id, identifiers)
        matcher = Matcher(identifiers)
        ends = await self.log.end_offsets()
        out: list[tuple[int, int]] = []
        for partition in range(self.log.partitions):
            after = 0
            while after < ends.get(partition, 0):
                records = await self.log.read(partition, after, self.batch_size)
                if not records:
                    break
                out.extend((partition, r.offset) for r in records
                           if event_matches(r.data, tenant, user_id, known, matcher))
                after = records[-1].offset
        return out

    async def count(self, tenant: str, user_id: str, identifiers: Sequence[str]) -> int:
        return len(await self._positions(tenant, user_id, identifiers))

    async def erase(self, tenant: str, user_id: str, identifiers: Sequence[str]) -> int:
        positions = await self._positions(tenant, user_id, identifiers)
        if self.compact:  # the embedded log: VACUUM even when nothing is left, for an earlier run's pages
            return int(await self.log.delete(positions, compact=True))
        return int(await self.log.delete(positions)) if positions else 0


class AuditIndexStore:
    """The audit index's events of the user's conversations (or naming the user): deleted."""

    def __init__(self, index: AuditIndex, sessions: UserSessions, *, vacuum: bool = False,
                 name: str = "audit_index") -> None:
        self.index, self.sessions, self.vacuum, self.name = index, sessions, vacuum, name

    async def _run(self, tenant: str, user_id: str, identifiers: Sequence[str], *, dry_run: bool) -> int:
        known = await self.sessions.ids(tenant, user_id, identifiers)
        matcher = Matcher(identifiers)

        def match(event: AuditEvent) -> bool:
            return (event.user_id == user_id or in_sessions(event.conversation_id, known)
                    or matcher.mentions(event.conversation_id) or matcher.mentions(event.payload))

        return await self.index.erase_matching(tenant, match, dry_run=dry_run)

    async def count(self, tenant: str, user_id: str, identifiers: Sequence[str]) -> int:
        return await self._run(tenant, user_id, identifiers, dry_run=True)

    async def erase(self, tenant: str, user_id: str, identifiers: Sequence[str]) -> int:
        done = await self._run(tenant, user_id, identifiers, dry_run=False)
        if self.vacuum:
            await compact_sqlite(self.index.engine)
        return done


# -- Redis keys ---------------------------------------------------------------------------------------


class RedisKeysStore:
    """Redis keys of the user: rate-limit buckets (`…rl:u:TENANT:USER`), session locks
    (`…lock:{TENANT:SESSION}…`) and any key naming the tenant and an identifier. Streams are the
    event store's business and are left alone."""

    def __init__(self, client: redis.asyncio.Redis, sessions: UserSessions | None = None, *,
                 prefix: str = "concierge:", name: str = "redis_keys") -> None:
        self.client, self.sessions, self.prefix, self.name = client, sessions, prefix, name

    async def _keys(self, tenant: str, user_id: str, identifiers: Sequence[str]) -> list[bytes]:
        known = await self.sessions.ids(tenant, user_id, identifiers) if self.sessions is not None else set()
        matcher = Matcher(identifiers)
        has_tenant = re.compile(r"(?<![\w.-])" + re.escape(tenant) + r"(?![\w.-])")
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", self.prefix) + "*"
        out: list[bytes] = []
        async for key in self.client.scan_iter(match=pattern, count=1000):
            text = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
            mine = any("{" + s + "}" in text or "{" + s + CHILD_SESSION_SEPARATOR in text for s in known) or (
                has_tenant.search(text) is not None and matcher.mentions(text))
            if mine and _text(await self.client.type(key)) != "stream":
                out.append(key if isinstance(key, bytes) else text.encode())
        return out

    async def count(self, tenant: str, user_id: str, identifiers: Sequence[str]) -> int:
        return len(await self._keys(tenant, user_id, identifiers))

    async def erase(self, tenant: str, user_id: str, identifiers: Sequence[str]) -> int:
        keys = await self._keys(tenant, user_id, identifiers)
        return int(await self.client.delete(*keys)) if keys else 0


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# -- lakehouse ----------------------------------------------------------------------------------------


class LakeStore:
    """The lake's rows of the user in every layer and live snapshot (`lakehouse.maintenance.erase_user`).

    The count is the user's rows in bronze, silver, silver.conversations and the dead letters; gold
    holds no user rows (its days are recomputed without them).
    """

    def __init__(self, catalog: Catalog | Callable[[], Catalog], *, name: str = "lake") -> None:
        self._catalog = catalog
        self.name = name

    def catalog(self) -> Catalog:
        if callable(self._catalog):
            self._catalog = self._catalog()
        return self._catalog

    def _count(self, tenant: str, user_id: str) -> int:
        from pyiceberg.expressions import And, EqualTo, In, IsNull, Or

        from ..lakehouse.catalog import BRONZE, CONVERSATIONS, DEAD_LETTERS, SILVER, ensure_tables
        from ..lakehouse.pii import pseudonymize_user

        tables = ensure_tables(self.catalog())
        ids = sorted({user_id, pseudonymize_user(user_id) or user_id})
        user_filter = And(EqualTo("tenant", tenant), In("user_id", ids))
        total = sum(tables[name].scan(row_filter=user_filter, selected_fields=("tenant",)).to_arrow().num_rows
                    for name in (BRONZE, SILVER, CONVERSATIONS))
        dead = tables[DEAD_LETTERS].scan(row_filter=Or(EqualTo("tenant", tenant), IsNull("tenant")),
                                         selected_fields=("raw",)).to_arrow()
        for raw in dead["raw"].to_pylist():
            try:
                row = json.loads(raw or "{}")
            except ValueError:
                continue
            if isinstance(row, dict) and row.get("user_id") in ids and row.get("tenant") in (tenant, None, ""):
                total += 1
        return total

    def _erase(self, tenant: str, user_id: str) -> int:
        from ..lakehouse.catalog import GOLD
        from ..lakehouse.maintenance import erase_user

        counts = erase_user(self.catalog(), tenant, user_id)
        return sum(n for table, n in counts.items() if table != GOLD)

    async def count(self, tenant: str, user_id: str, identifiers: Sequence[str]) -> int:
        return await asyncio.to_thread(self._count, tenant, user_id)

    async def erase(self, tenant: str, user_id: str, identifiers: Sequence[str]) -> int:
        return await asyncio.to_thread(self._erase, tenant, user_id)


# -- memory -------------------------------------------------------------------------------------------


class MemoryFacade(Protocol):
    """What `concierge.memory` exposes for erasure: per-kind counts (notes, facts, vectors, ...)."""

    async def count_user(self, tenant: str, user_id: str) -> dict[str, int]: ...

    async def erase_user(self, tenant: str, user_id: str) -> dict[str, int]: ...


class MemoryStore:
    """Session notes, profile facts and memory vectors of the user, through the memory facade."""

    def __init__(self, facade: MemoryFacade, *, name: str = "memory") -> None:
        self.facade, self.name = facade, name

    async def count(self, tenant: str, user_id: str, identifiers: Sequence[str]) -> int:
        return sum((await self.facade.count_user(tenant, user_id)).values())

    async def erase(self, tenant: str, user_id: str, identifiers: Sequence[str]) -> int:
        return sum((await self.facade.erase_user(tenant, user_id)).values())


class UnavailableStore:
    """A store that is configured but cannot be opened: every call fails, so the receipt says so."""

    def __init__(self, name: str, reason: str) -> None:
        self.name, self.reason = name, reason

    async def count(self, tenant: str, user_id: str, identifiers: Sequence[str]) -> int:
        raise RuntimeError(self.reason)

    async def erase(self, tenant: str, user_id: str, identifiers: Sequence[str]) -> int:
        raise RuntimeError(self.reason)


# -- identifiers --------------------------------------------------------------------------------------


class RetailIdentifiers:
    """The retail store's customer record: its email and name identify the user too."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def identifiers(self, tenant: str, user_id: str) -> list[str]:
        return await asyncio.to_thread(self._lookup, user_id)

    def _lookup(self, user_id: str) -> list[str]:
        from sqlalchemy import create_engine, select

        from ..domains.retail.store.schema import users

        engine = create_engine(self.url)
        try:
            with engine.connect() as conn:
                row = conn.execute(select(users.c.email, users.c.first_name, users.c.last_name)
                                   .where(users.c.user_id == user_id)).first()
        finally:
            engine.dispose()
        if row is None:
            return []
        return [row.email, f"{row.first_name} {row.last_name}"]
