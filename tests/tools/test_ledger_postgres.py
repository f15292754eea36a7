"""SqlLedger on a real PostgreSQL (started by the suite): the SQLite round trip again, and claims that truly race."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from test_executor_policies import (  # noqa: F401  (the imported test runs here again, on PostgreSQL)
    T0,
    Flaky,
    P,
    ctx,
    no_sleep,
    test_sql_ledger_round_trip_and_atomic_claim,
)

from concierge.core import ToolCall
from concierge.tools import LedgerEntry, SqlLedger, TransactionalExecutor, tool
from concierge.tools.ledger.base import AuditRecord


@pytest.fixture
def ledger_url(postgres_db) -> str:
    return postgres_db.async_url


def _entry(key: str, session: str = "s1", minutes: int = 0) -> LedgerEntry:
    return LedgerEntry(key, session, "refund", {"order": "#W1", "amount": 5}, P.to_dict(), "attempted",
                       T0 + timedelta(minutes=minutes))


async def test_record_finish_entries_and_audit(ledger_url: str) -> None:
    ledger = SqlLedger(ledger_url)
    try:
        assert ledger.engine.dialect.name == "postgresql"
        first, second, other = _entry("k2", minutes=1), _entry("k1"), _entry("k3", session="s2")
        for entry in (first, second, other):
            assert await ledger.claim(entry) is None
        done = first.finish("succeeded", T0 + timedelta(minutes=1, seconds=3), result={"refund": "r1", "ok": True})
        await ledger.update(done)
        entries = await ledger.entries("s1")
        assert [e.key for e in entries] == ["k1", "k2"]  # by started_at
        got = entries[1]
        assert got == done and got.started_at.tzinfo is not None and got.duration_ms == pytest.approx(3000)
        assert {e.key for e in await ledger.unresolved()} == {"k1", "k3"}
        await ledger.update(second.finish("unknown", T0 + timedelta(seconds=1), note="could not confirm",
                                          surfaced=False))
        assert [e.key for e in await ledger.unresolved() if not e.surfaced] == ["k1"]
        await ledger.mark_surfaced(["k1"])
        assert (await ledger.get("k1")).surfaced is True  # type: ignore[union-attr]
        record = AuditRecord(T0, "s1", "refund", {"amount": 5}, P.to_dict(), "refused", "missing scope",
                             {"scope": "payments:write"})
        await ledger.audit(record)
        await ledger.audit(record)
        assert await ledger.audit_records("s1") == [record, record]
        assert await ledger.audit_records("s2") == []
    finally:
        await ledger.close()


async def test_concurrent_claims_of_one_key_exactly_one_wins(ledger_url: str) -> None:
    ledgers = [SqlLedger(ledger_url) for _ in range(6)]
    try:
        await ledgers[0].claim(_entry("setup"))  # tables exist before the race starts
        results = await asyncio.gather(*(ledger.claim(_entry("race")) for ledger in ledgers))
        assert sum(r is None for r in results) == 1
        assert all(r is not None and r.key == "race" and r.status == "attempted" for r in results if r is not None)
        # Taking over a no-effect entry is just as exclusive.
        await ledgers[0].update(_entry("race").finish("not_applied", T0 + timedelta(seconds=1), error="down"))
        retry = _entry("race", minutes=5)
        retaken = await asyncio.gather(*(ledger.claim(retry, over=("not_applied",)) for ledger in ledgers))
        assert sum(r is None for r in retaken) == 1
        holder = await ledgers[1].get("race")
        assert holder is not None and holder.status == "attempted" and holder.started_at == retry.started_at
    finally:
        for ledger in ledgers:
            await ledger.close()


async def test_executor_replays_a_repeated_call_from_the_postgres_ledger(ledger_url: str) -> None:
    downstream = Flaky()
    charge = tool(effect="write", confirm=False, name="Flaky")(downstream)
    ledger = SqlLedger(ledger_url)
    try:
        executor = TransactionalExecutor(ledger, sleep=no_sleep)
        first = await executor.execute(charge, ToolCall("c1", "Flaky", {"amount": 5}), ctx())
        again = await executor.execute(charge, ToolCall("c2", "Flaky", {"amount": 5}), ctx())
        assert first.status == "succeeded" and again.replayed and again.value == first.value
        assert downstream.effects == 1
        assert [e.status for e in await ledger.entries("s1")] == ["succeeded"]
    finally:
        await ledger.close()
