"""Each executor policy on its own: keys, ledger, retries, breaker, recovery."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from concierge.core import ManualClock, Principal, ToolCall, ToolOutcomeUnknown, ToolTransientError
from concierge.tools import (
    Breakers,
    InMemoryLedger,
    LedgerEntry,
    Retrying,
    RetryPolicy,
    SqlLedger,
    ToolContext,
    ToolRegistry,
    TransactionalExecutor,
    idempotency_key,
    tool,
)

P = Principal("u1", scopes=frozenset({"*"}))
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def ctx(session: str = "s1", **kw) -> ToolContext:
    return ToolContext(session, P, {}, **kw)


class Flaky:
    """A downstream that fails with the given errors first, counting effects."""

    def __init__(self, *errors: Exception, effect_before_error: bool = False) -> None:
        self.errors = list(errors)
        self.effects = 0
        self.calls = 0
        self.effect_before_error = effect_before_error

    def __call__(self, amount: int) -> dict:
        self.calls += 1
        if self.errors:
            if self.effect_before_error:
                self.effects += 1
            raise self.errors.pop(0)
        self.effects += 1
        return {"charged": amount, "n": self.effects}


async def no_sleep(_: float) -> None:
    return None


def test_idempotency_keys_are_stable_and_distinct():
    a = idempotency_key(ctx(), "refund", {"order": "W1", "amount": 5})
    assert a == idempotency_key(ctx(), "refund", {"amount": 5, "order": "W1"})  # argument order is irrelevant
    assert a != idempotency_key(ctx(), "refund", {"order": "W1", "amount": 6})
    assert a != idempotency_key(ctx("s2"), "refund", {"order": "W1", "amount": 5})
    assert a != idempotency_key(ctx(confirmation_id="pa_1"), "refund", {"order": "W1", "amount": 5})
    other_user = ToolContext("s1", Principal("u9"), {})
    assert a != idempotency_key(other_user, "refund", {"order": "W1", "amount": 5})


@pytest.fixture
def ledger_url(tmp_path) -> str:
    """Where the SQL ledger lives; test_ledger_postgres.py overrides it to rerun the test on PostgreSQL."""
    return f"sqlite:///{tmp_path}/ledger.db"


async def test_sql_ledger_round_trip_and_atomic_claim(ledger_url):
    ledger = SqlLedger(ledger_url)
    entry = LedgerEntry("k1", "s1", "refund", {"a": 1}, P.to_dict(), "attempted", T0)
    assert await ledger.claim(entry) is None
    holder = await ledger.claim(entry)
    assert holder is not None and holder.status == "attempted"
    assert [e.key for e in await ledger.unresolved()] == ["k1"]
    await ledger.update(entry.finish("not_applied", T0 + timedelta(seconds=1), error="down"))
    assert await ledger.claim(entry, over=("not_applied",)) is None  # a no-effect entry can be retaken
    done = entry.finish("succeeded", T0 + timedelta(seconds=2), result={"id": "r1"}, attempts=2)
    await ledger.update(done)
    await ledger.close()
    reopened = SqlLedger(ledger_url)
    got = await reopened.get("k1")
    assert got is not None and got.status == "succeeded" and got.result == {"id": "r1"} and got.attempts == 2
    assert got.duration_ms == pytest.approx(2000) and got.started_at == T0
    assert await reopened.unresolved() == []
    await reopened.close()


async def test_repeated_key_returns_recorded_result_without_calling_again():
    downstream = Flaky()
    charge = tool(effect="write", confirm=False, name="Flaky")(downstream)
    executor = TransactionalExecutor(InMemoryLedger(), sleep=no_sleep)
    first = await executor.execute(charge, ToolCall("c1", "Flaky", {"amount": 5}), ctx())
    again = await executor.execute(charge, ToolCall("c2", "Flaky", {"amount": 5}), ctx())
    assert downstream.effects == 1 and again.replayed and again.value == first.value


async def test_transient_failures_are_retried_unknown_only_when_safe():
    sleeps: list[float] = []

    async def record_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    policy = RetryPolicy(max_attempts=4, base_delay_s=0.1, max_delay_s=0.25)
    transient = Flaky(ToolTransientError("refused"), ToolTransientError("refused"))
    t = tool(effect="write", retry=policy, name="transient")(transient)
    outcome = await Retrying(_Direct(), sleep=record_sleep).execute(t, ToolCall("c", "transient", {"amount": 1}), ctx())
    assert outcome.status == "succeeded" and transient.calls == 3
    assert len(sleeps) == 2 and 0 <= sleeps[0] <= 0.1 and 0 <= sleeps[1] <= 0.2  # full jitter under the ceiling

    unsafe = Flaky(ToolOutcomeUnknown("timeout"), effect_before_error=True)
    u = tool(effect="write", retry=policy, name="unsafe")(unsafe)
    outcome = await Retrying(_Direct(), sleep=no_sleep).execute(u, ToolCall("c", "unsafe", {"amount": 1}), ctx())
    assert outcome.status == "unknown" and unsafe.calls == 1  # never retried blind

    safe = Flaky(ToolOutcomeUnknown("timeout"))
    s = tool(effect="write", retry=policy, idempotent=True, name="safe")(safe)
    outcome = await Retrying(_Direct(), sleep=no_sleep).execute(s, ToolCall("c", "safe", {"amount": 1}), ctx())
    assert outcome.status == "succeeded" and safe.calls == 2


class _Direct:
    async def execute(self, tool, call, context):
        from concierge.tools import DirectExecutor

        return await DirectExecutor().execute(tool, call, context)


async def test_circuit_breaker_opens_probes_and_closes():
    clock = ManualClock(T0)
    downstream = Flaky(*[ToolTransientError("down")] * 3)
    t = tool(effect="read", retry=RetryPolicy(max_attempts=1), name="status")(downstream)
    breakers = Breakers(Retrying(_Direct(), sleep=no_sleep), failure_threshold=2, reset_after_s=10, clock=clock)
    states = []
    for _ in range(3):
        outcome = await breakers.execute(t, ToolCall("c", "status", {"amount": 1}), ctx())
        states.append(outcome.attributes["concierge.breaker.state"])
    assert states == ["closed", "open", "open"] and downstream.calls == 2  # the third call never left
    clock.advance(11)
    probe = await breakers.execute(t, ToolCall("c", "status", {"amount": 1}), ctx())
    assert probe.status == "not_applied" and probe.attributes["concierge.breaker.state"] == "open"
    clock.advance(11)
    ok = await breakers.execute(t, ToolCall("c", "status", {"amount": 1}), ctx())
    assert ok.status == "succeeded" and ok.attributes["concierge.breaker.state"] == "closed"


async def test_unknown_without_lookup_is_escalated_and_never_resent():
    downstream = Flaky(ToolOutcomeUnknown("connection reset"), effect_before_error=True)
    t = tool(effect="write", confirm=False, name="pay")(downstream)
    executor = TransactionalExecutor(InMemoryLedger(), sleep=no_sleep)
    first = await executor.execute(t, ToolCall("c1", "pay", {"amount": 5}), ctx())
    again = await executor.execute(t, ToolCall("c2", "pay", {"amount": 5}), ctx())
    assert first.status == again.status == "unknown" and first.escalate and again.escalate
    assert downstream.calls == 1 and json.loads(first.error)["error"] == "outcome_unknown"


async def test_unknown_with_lookup_is_settled_by_the_lookup():
    downstream = Flaky(ToolOutcomeUnknown("timeout"), effect_before_error=True)

    def lookup(arguments, context):
        return {"charged": arguments["amount"]} if downstream.effects else None

    t = tool(effect="write", confirm=False, name="pay", lookup=lookup)(downstream)
    executor = TransactionalExecutor(InMemoryLedger(), sleep=no_sleep)
    outcome = await executor.execute(t, ToolCall("c1", "pay", {"amount": 5}), ctx())
    assert outcome.status == "succeeded" and outcome.value == {"charged": 5} and downstream.calls == 1


async def test_recovery_settles_crash_leftovers_and_tells_the_user_once():
    ledger = InMemoryLedger()
    happened = Flaky()
    looked_up = tool(effect="write", name="with_lookup", lookup=lambda a, c: {"found": True})(happened)
    blind = tool(effect="write", name="blind")(Flaky())
    keyed = Flaky()
    idem = tool(effect="write", name="keyed", idempotent=True)(keyed)
    registry = ToolRegistry([looked_up, blind, idem])
    for name in ("with_lookup", "blind", "keyed"):
        await ledger.claim(LedgerEntry(f"k-{name}", "s1", name, {"amount": 1}, P.to_dict(), "attempted", T0))
    executor = TransactionalExecutor(ledger, sleep=no_sleep)
    settled = {e.tool: e.status for e in await executor.recover(registry)}
    assert settled == {"with_lookup": "succeeded", "blind": "unknown", "keyed": "succeeded"}
    assert keyed.effects == 1 and happened.effects == 0
    notices = await executor.notices("s1")
    assert len(notices) == 3 and any("could not be confirmed" in n for n in notices)
    assert await executor.notices("s1") == []  # told once
    assert await executor.recover(registry) == []  # once per process


async def test_recovery_acts_for_the_same_customer_through_declared_state_keys():
    from concierge.testing.faults import CrashingLedger, SimulatedCrash

    seen: list[str | None] = []

    def refund(amount: int, context: ToolContext) -> dict:
        seen.append(context.state.get("customer"))
        return {"refunded": amount}

    t = tool(effect="write", confirm=False, idempotent=True, name="refund", state_keys=["customer"])(refund)
    ledger = InMemoryLedger()
    crashing = CrashingLedger(ledger)
    crashing.arm()
    with pytest.raises(SimulatedCrash):
        await TransactionalExecutor(crashing, sleep=no_sleep).execute(
            t, ToolCall("c1", "refund", {"amount": 5}), ToolContext("s1", P, {"customer": "u-7", "other": 1}))
    entry = (await ledger.entries("s1"))[0]
    assert entry.status == "attempted" and entry.state == {"customer": "u-7"}  # only what it declared
    settled = await TransactionalExecutor(ledger, sleep=no_sleep).recover(ToolRegistry([t]))
    assert [e.status for e in settled] == ["succeeded"] and seen == ["u-7", "u-7"]
