"""Session notes, the medium-term horizon: one record per (tenant, user, conversation).

A note holds what a finished conversation left behind: its summary, the issues still open,
the preferences expressed and how satisfied the customer was. Two stores speak one protocol:
`SqlNotesStore` (SQLite file by default, PostgreSQL by URL, through `core.sqldb.SqlBacked`) and
`RedisNotesStore` (redis.asyncio) for deployments that already run Redis.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from sqlalchemy import JSON, Column, Index, MetaData, String, Table, delete, func, select
from sqlalchemy.exc import IntegrityError

from ..core.errors import ValidationError
from ..core.sqldb import SqlBacked, UTCDateTime
from .checks import check_aware, check_id


@dataclass(frozen=True, slots=True)
class SessionNotes:
    tenant: str
    user_id: str
    conversation_id: str
    updated_at: datetime
    summary: str = ""
    unresolved: tuple[str, ...] = ()
    preferences: dict[str, str] = field(default_factory=dict)
    satisfaction: str | None = None

    def __post_init__(self) -> None:
        check_id("tenant", self.tenant)
        check_id("user id", self.user_id)
        check_id("conversation id", self.conversation_id)
        check_aware("updated_at", self.updated_at)
        object.__setattr__(self, "unresolved", tuple(self.unresolved))
        object.__setattr__(self, "preferences", dict(self.preferences))

    def to_dict(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "user_id": self.user_id, "conversation_id": self.conversation_id,
                "updated_at": self.updated_at.astimezone(UTC).isoformat(), "summary": self.summary,
                "unresolved": list(self.unresolved), "preferences": dict(self.preferences),
                "satisfaction": self.satisfaction}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SessionNotes:
        try:
            return cls(tenant=data["tenant"], user_id=data["user_id"], conversation_id=data["conversation_id"],
                       updated_at=datetime.fromisoformat(data["updated_at"]), summary=data.get("summary", ""),
                       unresolved=tuple(data.get("unresolved", ())), preferences=dict(data.get("preferences", {})),
                       satisfaction=data.get("satisfaction"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValidationError(f"malformed session notes record: {exc!r}") from exc


@runtime_checkable
class NotesStore(Protocol):
    """Key-value store of session notes, keyed by (tenant, user, conversation)."""

    name: str

    async def put(self, notes: SessionNotes) -> None: ...
    async def get(self, tenant: str, user_id: str, conversation_id: str) -> SessionNotes | None: ...
    async def recent(self, tenant: str, user_id: str, limit: int = 3) -> list[SessionNotes]: ...
    async def delete_user(self, tenant: str, user_id: str) -> int: ...
    async def count_user(self, tenant: str, user_id: str) -> int: ...
    async def expire(self, before: datetime) -> int: ...
    async def close(self) -> None: ...


def _check_limit(limit: object) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValidationError(f"limit must be a positive int, got {limit!r}")
    return limit


# --- SQL -------------------------------------------------------------------------------------------

metadata = MetaData()

notes_table = Table(
    "memory_notes",
    metadata,
    Column("tenant", String(128), primary_key=True),
    Column("user_id", String(128), primary_key=True),
    Column("conversation_id", String(128), primary_key=True),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("data", JSON, nullable=False),
    Index("ix_memory_notes_updated", "updated_at"),
)


class SqlNotesStore(SqlBacked):
    metadata = metadata
    what = "memory notes database"
    name = "sql"

    async def put(self, notes: SessionNotes) -> None:
        await self._ensure_schema()
        row = {"tenant": notes.tenant, "user_id": notes.user_id, "conversation_id": notes.conversation_id,
               "updated_at": notes.updated_at, "data": notes.to_dict()}
        key = ((notes_table.c.tenant == notes.tenant) & (notes_table.c.user_id == notes.user_id)
               & (notes_table.c.conversation_id == notes.conversation_id))
        for _ in range(2):  # insert-or-replace in portable Core; a racing insert makes the retry an update
            async with self.engine.begin() as conn:
                await conn.execute(delete(notes_table).where(key))
                try:
                    await conn.execute(notes_table.insert().values(**row))
                    return
                except IntegrityError:
                    continue
        raise ValidationError(f"could not store the notes of conversation {notes.conversation_id!r}",
                              hint="another writer keeps replacing them; try again")

    async def get(self, tenant: str, user_id: str, conversation_id: str) -> SessionNotes | None:
        await self._ensure_schema()
        query = select(notes_table.c.data).where(
            (notes_table.c.tenant == check_id("tenant", tenant)) & (notes_table.c.user_id == check_id("user id", user_id))
            & (notes_table.c.conversation_id == check_id("conversation id", conversation_id)))
        async with self.engine.connect() as conn:
            data = (await conn.execute(query)).scalar_one_or_none()
        return None if data is None else SessionNotes.from_dict(data)

    async def recent(self, tenant: str, user_id: str, limit: int = 3) -> list[SessionNotes]:
        await self._ensure_schema()
        query = (select(notes_table.c.data)
                 .where((notes_table.c.tenant == check_id("tenant", tenant))
                        & (notes_table.c.user_id == check_id("user id", user_id)))
                 .order_by(notes_table.c.updated_at.desc(), notes_table.c.conversation_id.desc())
                 .limit(_check_limit(limit)))
        async with self.engine.connect() as conn:
            return [SessionNotes.from_dict(data) for data in (await conn.execute(query)).scalars()]

    def _user(self, tenant: str, user_id: str) -> Any:
        return ((notes_table.c.tenant == check_id("tenant", tenant))
                & (notes_table.c.user_id == check_id("user id", user_id)))

    async def delete_user(self, tenant: str, user_id: str) -> int:
        await self._ensure_schema()
        async with self.engine.begin() as conn:
            return int((await conn.execute(delete(notes_table).where(self._user(tenant, user_id)))).rowcount or 0)

    async def count_user(self, tenant: str, user_id: str) -> int:
        await self._ensure_schema()
        async with self.engine.connect() as conn:
            query = select(func.count()).select_from(notes_table).where(self._user(tenant, user_id))
            return int((await conn.execute(query)).scalar_one())

    async def expire(self, before: datetime) -> int:
        await self._ensure_schema()
        async with self.engine.begin() as conn:
            result = await conn.execute(delete(notes_table).where(notes_table.c.updated_at < check_aware("before", before)))
            return int(result.rowcount or 0)


# --- Redis -----------------------------------------------------------------------------------------


class RedisNotesStore:
    """Notes as JSON strings, plus a per-user sorted set of conversation ids scored by update time.

    Keys: `{prefix}:{tenant}:{user}:{conversation}` and `{prefix}-by-user:{tenant}:{user}`. Ids
    never contain ':' (see `checks.check_id`), so keys cannot collide across users.
    """

    name = "redis"

    def __init__(self, client: Any, *, prefix: str = "concierge:memory:notes", owns_client: bool = False) -> None:
        self.client = client
        self.prefix = prefix
        self._owns_client = owns_client

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisNotesStore:
        import redis.asyncio

        return cls(redis.asyncio.from_url(url), owns_client=True, **kwargs)

    def _note_key(self, tenant: str, user_id: str, conversation_id: str) -> str:
        return (f"{self.prefix}:{check_id('tenant', tenant)}:{check_id('user id', user_id)}:"
                f"{check_id('conversation id', conversation_id)}")

    def _user_key(self, tenant: str, user_id: str) -> str:
        return f"{self.prefix}-by-user:{check_id('tenant', tenant)}:{check_id('user id', user_id)}"

    async def put(self, notes: SessionNotes) -> None:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.set(self._note_key(notes.tenant, notes.user_id, notes.conversation_id), json.dumps(notes.to_dict()))
            pipe.zadd(self._user_key(notes.tenant, notes.user_id),
                      {notes.conversation_id: notes.updated_at.timestamp()})
            await pipe.execute()

    async def get(self, tenant: str, user_id: str, conversation_id: str) -> SessionNotes | None:
        raw = await self.client.get(self._note_key(tenant, user_id, conversation_id))
        return None if raw is None else SessionNotes.from_dict(json.loads(raw))

    async def recent(self, tenant: str, user_id: str, limit: int = 3) -> list[SessionNotes]:
        ids = await self.client.zrevrange(self._user_key(tenant, user_id), 0, _check_limit(limit) - 1)
        if not ids:
            return []
        keys = [self._note_key(tenant, user_id, _text(c)) for c in ids]
        return [SessionNotes.from_dict(json.loads(raw)) for raw in await self.client.mget(keys) if raw is not None]

    async def delete_user(self, tenant: str, user_id: str) -> int:
        user_key = self._user_key(tenant, user_id)
        ids = [_text(c) for c in await self.client.zrange(user_key, 0, -1)]
        removed = await self.client.delete(*[self._note_key(tenant, user_id, c) for c in ids]) if ids else 0
        await self.client.delete(user_key)
        return int(removed)

    async def count_user(self, tenant: str, user_id: str) -> int:
        ids = [_text(c) for c in await self.client.zrange(self._user_key(tenant, user_id), 0, -1)]
        if not ids:
            return 0
        return int(await self.client.exists(*[self._note_key(tenant, user_id, c) for c in ids]))

    async def expire(self, before: datetime) -> int:
        cutoff = check_aware("before", before).timestamp()
        removed = 0
        async for raw_key in self.client.scan_iter(match=f"{self.prefix}-by-user:*"):
            user_key = _text(raw_key)
            tenant, user_id = user_key.rsplit(":", 2)[-2:]
            # Strictly older than the cutoff, as in SQL: '(' makes the bound exclusive.
            old = [_text(c) for c in await self.client.zrangebyscore(user_key, "-inf", f"({cutoff}")]
            if old:
                removed += int(await self.client.delete(*[self._note_key(tenant, user_id, c) for c in old]))
                await self.client.zrem(user_key, *old)
        return removed

    async def close(self) -> None:
        if self._owns_client:
            await self.client.aclose()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
