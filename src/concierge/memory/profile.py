"""The long-term profile: structured facts about a user, in SQL (SQLite default, PostgreSQL by URL).

One row per (tenant, user, kind, key): a later conversation that states the same key again
replaces the value and the provenance, so the profile holds the latest word on each thing.
Every row says where it came from (conversation id and turn). Row ids double as the keys of the
fact's embedding in the user's vector index (`index.FactIndex`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal, TypeAlias, get_args

from sqlalchemy import (
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    delete,
    func,
    select,
    update,
)

from ..core.errors import ValidationError
from ..core.sqldb import SqlBacked, UTCDateTime
from .checks import check_aware, check_id, normalise_key

FactKind: TypeAlias = Literal["preference", "issue", "fact", "satisfaction"]
FACT_KINDS: tuple[str, ...] = get_args(FactKind)
IssueStatus: TypeAlias = Literal["open", "resolved"]


@dataclass(frozen=True, slots=True)
class Fact:
    """One remembered thing; `id` is 0 until stored."""

    tenant: str
    user_id: str
    kind: FactKind
    key: str
    value: str
    conversation_id: str  # provenance: the conversation that stated it ...
    turn: int  # ... and the transcript turn (1-based message number) where it was stated
    created_at: datetime
    last_used_at: datetime
    status: IssueStatus | None = None  # issues only
    issue_key: str | None = None  # the open issue this fact belongs to, if any
    expires_at: datetime | None = None
    id: int = 0

    def __post_init__(self) -> None:
        check_id("tenant", self.tenant)
        check_id("user id", self.user_id)
        check_id("conversation id", self.conversation_id)
        if self.kind not in FACT_KINDS:
            raise ValidationError(f"fact kind {self.kind!r} is not one of {', '.join(FACT_KINDS)}")
        object.__setattr__(self, "key", normalise_key(self.key))
        if not isinstance(self.value, str) or not self.value.strip():
            raise ValidationError(f"fact {self.key!r} has an empty value", hint="store only facts with content")
        object.__setattr__(self, "value", self.value.strip())
        if isinstance(self.turn, bool) or not isinstance(self.turn, int) or self.turn < 1:
            raise ValidationError(f"fact turn must be a positive int (1-based), got {self.turn!r}")
        if self.kind == "issue":
            if self.status not in ("open", "resolved"):
                raise ValidationError(f"issue {self.key!r} needs status 'open' or 'resolved', got {self.status!r}")
        elif self.status is not None:
            raise ValidationError(f"only issues have a status; {self.kind} {self.key!r} has {self.status!r}")
        if self.issue_key is not None:
            object.__setattr__(self, "issue_key", normalise_key(self.issue_key))
        check_aware("created_at", self.created_at)
        check_aware("last_used_at", self.last_used_at)
        if self.expires_at is not None:
            check_aware("expires_at", self.expires_at)

    @property
    def is_open_issue(self) -> bool:
        return self.kind == "issue" and self.status == "open"

    @property
    def text(self) -> str:
        """What is embedded: the key in words plus the value."""
        return f"{self.kind} {self.key.replace('_', ' ')}: {self.value}"

    @property
    def provenance(self) -> str:
        return f"{self.conversation_id}#{self.turn}"


def linked_to_open_issue(fact: Fact, open_issue_keys: set[str]) -> bool:
    """A fact is linked to an open issue if it is one, or if its `issue_key` names one of the user's."""
    return fact.is_open_issue or (fact.issue_key is not None and fact.issue_key in open_issue_keys)


metadata = MetaData()

facts_table = Table(
    "memory_facts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant", String(128), nullable=False),
    Column("user_id", String(128), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("key", String(100), nullable=False),
    Column("value", Text, nullable=False),
    Column("status", String(16), nullable=True),
    Column("issue_key", String(100), nullable=True),
    Column("conversation_id", String(128), nullable=False),
    Column("turn", Integer, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("last_used_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=True),
    UniqueConstraint("tenant", "user_id", "kind", "key", name="uq_memory_facts_key"),
    Index("ix_memory_facts_user", "tenant", "user_id"),
)

_COLUMNS = ("tenant", "user_id", "kind", "key", "value", "status", "issue_key", "conversation_id", "turn",
            "created_at", "last_used_at", "expires_at")


def _row_to_fact(row: Any) -> Fact:
    return Fact(**{name: getattr(row, name) for name in _COLUMNS}, id=int(row.id))


class ProfileStore(SqlBacked):
    metadata = metadata
    what = "memory database"

    def _user(self, tenant: str, user_id: str) -> Any:
        return (facts_table.c.tenant == check_id("tenant", tenant)) & (facts_table.c.user_id == check_id("user id", user_id))

    async def upsert(self, facts: Sequence[Fact]) -> tuple[list[Fact], set[int]]:
        """Store `facts` in one transaction; returns them with ids, and the ids whose text changed."""
        await self._ensure_schema()
        stored: list[Fact] = []
        changed: set[int] = set()
        async with self.engine.begin() as conn:
            for fact in facts:
                found = (await conn.execute(select(facts_table).where(
                    self._user(fact.tenant, fact.user_id) & (facts_table.c.kind == fact.kind)
                    & (facts_table.c.key == fact.key)))).first()
                values = {name: getattr(fact, name) for name in _COLUMNS}
                if found is None:
                    result = await conn.execute(facts_table.insert().values(**values))
                    new = replace(fact, id=int(result.inserted_primary_key[0]))
                    changed.add(new.id)
                else:
                    new = replace(fact, id=int(found.id))
                    await conn.execute(update(facts_table).where(facts_table.c.id == new.id).values(**values))
                    if _row_to_fact(found).text != new.text:
                        changed.add(new.id)
                stored.append(new)
        return stored, changed

    async def facts(self, tenant: str, user_id: str) -> list[Fact]:
        await self._ensure_schema()
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(facts_table).where(self._user(tenant, user_id)).order_by(facts_table.c.id))
            return [_row_to_fact(row) for row in rows]

    async def all_facts(self, *, created_before: datetime | None = None, expiring_by: datetime | None = None,
                        ) -> list[Fact]:
        """Facts created before `created_before` or with `expires_at` at or before `expiring_by`."""
        await self._ensure_schema()
        conditions = []
        if created_before is not None:
            conditions.append(facts_table.c.created_at < check_aware("created_before", created_before))
        if expiring_by is not None:
            conditions.append(facts_table.c.expires_at <= check_aware("expiring_by", expiring_by))
        query = select(facts_table)
        if conditions:
            clause = conditions[0]
            for extra in conditions[1:]:
                clause = clause | extra
            query = query.where(clause)
        async with self.engine.connect() as conn:
            return [_row_to_fact(row) for row in await conn.execute(query.order_by(facts_table.c.id))]

    async def open_issue_keys(self, tenant: str, user_id: str) -> set[str]:
        await self._ensure_schema()
        query = select(facts_table.c.key).where(self._user(tenant, user_id) & (facts_table.c.kind == "issue")
                                                & (facts_table.c.status == "open"))
        async with self.engine.connect() as conn:
            return set((await conn.execute(query)).scalars())

    async def tenants(self) -> list[str]:
        await self._ensure_schema()
        async with self.engine.connect() as conn:
            return sorted((await conn.execute(select(facts_table.c.tenant).distinct())).scalars())

    async def delete(self, ids: Iterable[int]) -> int:
        wanted = sorted(set(ids))
        if not wanted:
            return 0
        await self._ensure_schema()
        async with self.engine.begin() as conn:
            return int((await conn.execute(delete(facts_table).where(facts_table.c.id.in_(wanted)))).rowcount or 0)

    async def touch(self, ids: Iterable[int], when: datetime) -> None:
        wanted = sorted(set(ids))
        if wanted:
            await self._ensure_schema()
            async with self.engine.begin() as conn:
                await conn.execute(update(facts_table).where(facts_table.c.id.in_(wanted))
                                   .values(last_used_at=check_aware("when", when)))

    async def delete_user(self, tenant: str, user_id: str) -> int:
        await self._ensure_schema()
        async with self.engine.begin() as conn:
            return int((await conn.execute(delete(facts_table).where(self._user(tenant, user_id)))).rowcount or 0)

    async def count_user(self, tenant: str, user_id: str) -> int:
        await self._ensure_schema()
        async with self.engine.connect() as conn:
            query = select(func.count()).select_from(facts_table).where(self._user(tenant, user_id))
            return int((await conn.execute(query)).scalar_one())
