"""Fault injection for tool execution: the failures a transactional executor must survive.

Two halves. `FakeDownstream` is an in-process service with Stripe-style idempotency keys
(or none) that fails on cue, for fast property tests. `CrashingLedger` wraps any ledger and
raises `SimulatedCrash` at the worst moment — after the effect, before its outcome is
written — which is what a `kill -9` between the two looks like to the next process. Against a
real HTTP service the same faults are queued on the payment service (`PaymentService.inject`).
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import ToolOutcomeUnknown, ToolTransientError
from ..tools.ledger.base import AuditRecord, Ledger, LedgerEntry
from ..tools.tool import ToolContext


class Fault(enum.StrEnum):
    NONE = "none"
    TIMEOUT_BEFORE = "timeout_before"   # no answer, and the effect never happened
    TIMEOUT_AFTER = "timeout_after"     # no answer, but the effect happened
    RESET = "reset"                     # the connection drops after the effect
    HTTP_5XX = "http_5xx"               # a 500 without effect
    DUPLICATE = "duplicate_delivery"    # the same user message arrives twice
    KILL = "kill_between_effect_and_ledger"  # the runtime dies after the effect, before the ledger write
    REFUSED = "connection_refused"      # never reached the service


class SimulatedCrash(BaseException):
    """Stands for the process dying; BaseException so no `except Exception` swallows it."""


@dataclass
class FakeDownstream:
    """A payment-like service in memory: effects counted per reference, faults served in order."""

    honours_keys: bool = True
    faults: list[Fault] = field(default_factory=list)
    effects: list[dict[str, Any]] = field(default_factory=list)
    _by_key: dict[str, dict[str, Any]] = field(default_factory=dict)

    def count(self, reference: str) -> int:
        return sum(1 for e in self.effects if e["reference"] == reference)

    def find(self, reference: str) -> dict[str, Any] | None:
        return next((e for e in self.effects if e["reference"] == reference), None)

    async def charge(self, amount_cents: int, context: ToolContext) -> dict[str, Any]:
        key = context.idempotency_key or ""
        fault = self.faults.pop(0) if self.faults else Fault.NONE
        await asyncio.sleep(0)
        if fault is Fault.REFUSED:
            raise ToolTransientError("connection refused")
        if fault is Fault.HTTP_5XX or fault is Fault.TIMEOUT_BEFORE:
            raise ToolOutcomeUnknown(f"{fault.value}: no answer")
        if self.honours_keys and key in self._by_key:
            result = self._by_key[key]
        else:
            result = {"id": f"ch_{len(self.effects) + 1}", "amount_cents": amount_cents, "reference": key}
            self.effects.append(result)
            if self.honours_keys:
                self._by_key[key] = result
        if fault in (Fault.TIMEOUT_AFTER, Fault.RESET):
            raise ToolOutcomeUnknown(f"{fault.value}: the answer was lost")
        return result


class CrashingLedger:
    """A ledger that 'dies' when it is about to record the outcome of an attempted call, once armed."""

    def __init__(self, inner: Ledger) -> None:
        self.inner = inner
        self.armed = False

    def arm(self) -> None:
        self.armed = True

    async def get(self, key: str) -> LedgerEntry | None:
        return await self.inner.get(key)

    async def claim(self, entry: LedgerEntry, *, over: tuple[str, ...] = ()) -> LedgerEntry | None:
        return await self.inner.claim(entry, over=over)

    async def update(self, entry: LedgerEntry) -> None:
        if self.armed and entry.status != "attempted":
            self.armed = False
            raise SimulatedCrash(f"process died before recording {entry.tool} as {entry.status}")
        await self.inner.update(entry)

    async def unresolved(self) -> list[LedgerEntry]:
        return await self.inner.unresolved()

    async def entries(self, session_id: str) -> list[LedgerEntry]:
        return await self.inner.entries(session_id)

    async def mark_surfaced(self, keys: list[str]) -> None:
        await self.inner.mark_surfaced(keys)

    async def audit(self, record: AuditRecord) -> None:
        await self.inner.audit(record)

    async def audit_records(self, session_id: str) -> list[AuditRecord]:
        return await self.inner.audit_records(session_id)

