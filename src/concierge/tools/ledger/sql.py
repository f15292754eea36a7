"""The ledger in the sessions' database: a SQLite file by default, PostgreSQL by URL.

Every write is its own committed transaction (SQLite runs with `synchronous=FULL`), because
the point of the `attempted` row is to be on disk before the call leaves the process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from ...core import jsoncodec
from ...core.journal import Journal
from ...core.sqldb import SqlBacked, UTCDateTime
from .base import UNRESOLVED, AuditRecord, LedgerEntry

metadata = MetaData()

ledger_table = Table(
    "tool_ledger",
    metadata,
    Column("key", String(128), primary_key=True),
    Column("session_id", String(255), nullable=False),
    Column("tool", String(64), nullable=False),
    Column("arguments", JSON, nullable=False),
    Column("principal", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("result", JSON, nullable=True),
    Column("error", Text, nullable=True),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("duration_ms", Float, nullable=True),
    Column("note", Text, nullable=True),
    Column("surfaced", Boolean, nullable=False),
    Column("state", JSON, nullable=False),
    Index("ix_tool_ledger_session", "session_id"),
    Index("ix_tool_ledger_status", "status"),
)

audit_table = Table(
    "tool_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("session_id", String(255), nullable=False, index=True),
    Column("tool", String(64), nullable=False),
    Column("arguments", JSON, nullable=False),
    Column("principal", JSON, nullable=False),
    Column("decision", String(32), nullable=False),
    Column("reason", Text, nullable=False),
    Column("extra", JSON, nullable=False),
)

_ENTRY_FIELDS = [f.name for f in fields(LedgerEntry)]
_SELECT = f"SELECT {', '.join(_ENTRY_FIELDS)} FROM tool_ledger"
_JSON_FIELDS = frozenset(c.name for c in ledger_table.columns if isinstance(c.type, JSON))
_TIME_FIELDS = frozenset(c.name for c in ledger_table.columns if isinstance(c.type, UTCDateTime))


def _entry(journal: Journal, row: tuple[Any, ...]) -> LedgerEntry:
    """A row read through the journal, in the types SQLAlchemy would have given."""
    values: dict[str, Any] = {}
    for name, value in zip(_ENTRY_FIELDS, row, strict=True):
        if value is None:
            pass
        elif name in _JSON_FIELDS:
            value = jsoncodec.loads(value) if isinstance(value, str | bytes) else value
        elif name in _TIME_FIELDS:
            value = journal.py_time(value)
        elif name == "surfaced":
            value = bool(value)
        values[name] = value
    return LedgerEntry(**values)


def _row(entry: LedgerEntry) -> dict[str, Any]:
    return {name: getattr(entry, name) for name in _ENTRY_FIELDS}


class SqlLedger(SqlBacked):
    """A `Ledger` on SQLAlchemy's async engine; share the URL (or engine) of the session store."""

    metadata = metadata
    what = "ledger"

    async def get(self, key: str) -> LedgerEntry | None:
        journal = self._journal or await self.journal()
        row = await journal.read_one(f"{_SELECT} WHERE key = ?", key)
        return None if row is None else _entry(journal, row)

    async def claim(self, entry: LedgerEntry, *, over: tuple[str, ...] = ()) -> LedgerEntry | None:
        await self._ensure_schema()
        try:
            async with self.engine.begin() as conn:
                await conn.execute(insert(ledger_table).values(**_row(entry)))
            return None
        except IntegrityError:
            pass
        if over:
            async with self.engine.begin() as conn:
                values = {k: v for k, v in _row(entry).items() if k != "key"}
                result = await conn.execute(
                    update(ledger_table)
                    .where(ledger_table.c.key == entry.key, ledger_table.c.status.in_(over))
                    .values(**values)
                )
            if result.rowcount == 1:
                return None
        holder = await self.get(entry.key)
        assert holder is not None
        return holder

    async def update(self, entry: LedgerEntry) -> None:
        await self._ensure_schema()
        values = {k: v for k, v in _row(entry).items() if k != "key"}
        async with self.engine.begin() as conn:
            await conn.execute(update(ledger_table).where(ledger_table.c.key == entry.key).values(**values))

    async def _select(self, where: str, *params: Any) -> list[LedgerEntry]:
        # Reads go through the journal's reader (a plain driver connection: a turn reads its session's
        # entries twice); writes stay on SQLAlchemy with a disk sync each, before and after an effect.
        journal = self._journal or await self.journal()
        rows = (await journal.read(((f"{_SELECT} WHERE {where} ORDER BY started_at", params),)))[0]
        return [_entry(journal, row) for row in rows]

    async def unresolved(self) -> list[LedgerEntry]:
        return await self._select(f"status IN ({', '.join('?' for _ in UNRESOLVED)})", *UNRESOLVED)

    async def entries(self, session_id: str) -> list[LedgerEntry]:
        return await self._select("session_id = ?", session_id)

    async def mark_surfaced(self, keys: list[str]) -> None:
        if not keys:
            return
        await self._ensure_schema()
        async with self.engine.begin() as conn:
            await conn.execute(update(ledger_table).where(ledger_table.c.key.in_(keys)).values(surfaced=True))

    async def audit(self, record: AuditRecord) -> None:
        await self._ensure_schema()
        async with self.engine.begin() as conn:
            await conn.execute(insert(audit_table).values(
                at=record.at, session_id=record.session_id, tool=record.tool, arguments=record.arguments,
                principal=record.principal, decision=record.decision, reason=record.reason, extra=record.extra,
            ))

    async def audit_records(self, session_id: str) -> list[AuditRecord]:
        await self._ensure_schema()
        query = select(audit_table).where(audit_table.c.session_id == session_id).order_by(audit_table.c.id)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [AuditRecord(**{k: v for k, v in row._mapping.items() if k != "id"}) for row in rows]

    async def rewrite_matching(self, match: Callable[[str, dict[str, Any]], bool],
                               redact: Callable[[str, dict[str, Any]], dict[str, Any]], *,
                               dry_run: bool = False) -> int:
        """Erasure: rewrite every ledger and audit row `match(table, row)` selects with the values
        `redact(table, row)` returns (rows stay: accounting keeps them); how many rows matched."""
        await self._ensure_schema()
        matched = 0
        async with self.engine.begin() as conn:
            for table, key in ((ledger_table, ledger_table.c.key), (audit_table, audit_table.c.id)):
                rows = [dict(row._mapping) for row in await conn.execute(select(table))]
                for row in rows:
                    if not match(table.name, row):
                        continue
                    matched += 1
                    if not dry_run:
                        await conn.execute(update(table).where(key == row[key.name])
                                           .values(**redact(table.name, row)))
        return matched
