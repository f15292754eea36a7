"""A ledger in a dict: for tests and single-process experiments (it does not survive a restart)."""

from __future__ import annotations

from dataclasses import replace

from .base import UNRESOLVED, AuditRecord, LedgerEntry


class InMemoryLedger:
    def __init__(self) -> None:
        self._entries: dict[str, LedgerEntry] = {}
        self._audit: list[AuditRecord] = []

    async def get(self, key: str) -> LedgerEntry | None:
        return self._entries.get(key)

    async def claim(self, entry: LedgerEntry, *, over: tuple[str, ...] = ()) -> LedgerEntry | None:
        current = self._entries.get(entry.key)
        if current is not None and current.status not in over:
            return current
        self._entries[entry.key] = entry
        return None

    async def update(self, entry: LedgerEntry) -> None:
        self._entries[entry.key] = entry

    async def unresolved(self) -> list[LedgerEntry]:
        return [e for e in self._entries.values() if e.status in UNRESOLVED]

    async def entries(self, session_id: str) -> list[LedgerEntry]:
        found = [e for e in self._entries.values() if e.session_id == session_id]
        return sorted(found, key=lambda e: e.started_at)

    async def mark_surfaced(self, keys: list[str]) -> None:
        for key in keys:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries[key] = replace(entry, surfaced=True)

    async def audit(self, record: AuditRecord) -> None:
        self._audit.append(record)

    async def audit_records(self, session_id: str) -> list[AuditRecord]:
        return [r for r in self._audit if r.session_id == session_id]
