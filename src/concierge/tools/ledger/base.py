"""Ledger entries and the store protocol.

An entry is written as `attempted` before the call leaves the process and updated to
`succeeded` / `failed` / `not_applied` / `unknown` after; a crash in between leaves
`attempted`, which start-up reconciliation resolves. `claim` is the one atomic step: of two
workers holding the same key, only one gets to call.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic_core import to_jsonable_python

LedgerStatus = Literal["attempted", "succeeded", "failed", "not_applied", "unknown"]
UNRESOLVED: tuple[str, ...] = ("attempted", "unknown")


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    key: str
    session_id: str
    tool: str
    arguments: dict[str, Any]
    principal: dict[str, Any]
    status: LedgerStatus
    started_at: datetime
    attempts: int = 1
    result: Any = None
    error: str | None = None
    finished_at: datetime | None = None
    duration_ms: float | None = None
    # What start-up reconciliation (or a person) concluded; shown to the user once.
    note: str | None = None
    surfaced: bool = True
    # The session-state entries the tool declared it acts on (`Tool.state_keys`), for recovery.
    state: dict[str, Any] = field(default_factory=dict)

    def finish(self, status: LedgerStatus, at: datetime, *, result: Any = None, error: str | None = None,
               attempts: int | None = None, note: str | None = None, surfaced: bool | None = None) -> LedgerEntry:
        duration = (at - self.started_at).total_seconds() * 1000
        return replace(self, status=status, result=to_jsonable_python(result, fallback=str), error=error,
                       finished_at=at, duration_ms=duration, attempts=attempts or self.attempts,
                       note=note if note is not None else self.note,
                       surfaced=self.surfaced if surfaced is None else surfaced)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key, "session_id": self.session_id, "tool": self.tool, "arguments": self.arguments,
            "status": self.status, "attempts": self.attempts, "result": self.result, "error": self.error,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "duration_ms": self.duration_ms, "note": self.note,
        }


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """A decision about a call that was not executed (refused scope, failed precondition)."""

    at: datetime
    session_id: str
    tool: str
    arguments: dict[str, Any]
    principal: dict[str, Any]
    decision: str
    reason: str
    extra: dict[str, Any] = field(default_factory=dict)


class Ledger(Protocol):
    async def get(self, key: str) -> LedgerEntry | None: ...

    async def claim(self, entry: LedgerEntry, *, over: tuple[str, ...] = ()) -> LedgerEntry | None:
        """Store `entry` if its key is new or its current status is in `over`; else return the holder."""
        ...

    async def update(self, entry: LedgerEntry) -> None: ...

    async def unresolved(self) -> list[LedgerEntry]: ...

    async def entries(self, session_id: str) -> list[LedgerEntry]: ...

    async def mark_surfaced(self, keys: list[str]) -> None: ...

    async def audit(self, record: AuditRecord) -> None: ...

    async def audit_records(self, session_id: str) -> list[AuditRecord]: ...
