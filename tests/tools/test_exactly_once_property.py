"""Exactly-once effects of the transactional executor, as a property over random histories.

Hypothesis drives the executor through random sequences of tool calls (repeated arguments,
so keys repeat as duplicate deliveries and model re-tries do), downstream faults queued for
each call, crashes between an effect and its ledger write, and restarts with reconciliation.
After every step the ledger is compared with what each downstream actually did: no key ever
has two effects, a `succeeded` entry has exactly one, and a `failed` or `not_applied` entry
has none — the ledger is what the user is told, so an effect it denies is as wrong as an
effect done twice.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from concierge.core import Principal, ToolCall
from concierge.testing.faults import CrashingLedger, FakeDownstream, Fault, SimulatedCrash
from concierge.tools import (
    InMemoryLedger,
    LedgerEntry,
    RetryPolicy,
    SqlLedger,
    Tool,
    ToolContext,
    ToolOutcome,
    ToolRegistry,
    TransactionalExecutor,
    tool,
)

PRINCIPAL = Principal("u1", scopes=frozenset({"*"}))
SESSIONS = ("s1", "s2")
AMOUNTS = (100, 250)  # few, so the same key comes back often
FAULTS = (Fault.NONE, Fault.TIMEOUT_BEFORE, Fault.TIMEOUT_AFTER, Fault.RESET, Fault.HTTP_5XX, Fault.REFUSED)
RETRY = RetryPolicy(max_attempts=3, base_delay_s=0)

KEYED = "charge_keyed"      # idempotent: the downstream de-duplicates by idempotency key
LOOKUP = "charge_lookup"    # not idempotent, but a lookup can tell whether the effect happened
BLIND = "charge_blind"      # not idempotent and no lookup: an unclear outcome goes to a person
READ = "balance"            # a read: never an effect, never in the ledger
WRITES = (KEYED, LOOKUP, BLIND)

# Up to four faults in any order; a downstream failing the same way for a while; or one fault
# and then such an outage.
fault_queues = st.one_of(
    st.lists(st.sampled_from(FAULTS), max_size=4),
    st.sampled_from(FAULTS).map(lambda fault: [fault] * 4),
    st.tuples(st.sampled_from(FAULTS), st.sampled_from(FAULTS)).map(lambda pair: [pair[0]] + [pair[1]] * 4),
)


async def no_sleep(_: float) -> None:
    return None


def charge_tool(name: str, downstream: FakeDownstream, **options: Any) -> Tool:
    async def charge(amount_cents: int, context: ToolContext) -> dict:
        """Charge the customer."""
        return await downstream.charge(amount_cents, context)

    return tool(name=name, effect="write", confirm=False, retry=RETRY, **options)(charge)


class ExactlyOnce(RuleBasedStateMachine):
    """One process's executor over a durable ledger; a crash or restart replaces the executor."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.downstreams = {
            KEYED: FakeDownstream(honours_keys=True),
            LOOKUP: FakeDownstream(honours_keys=False),
            BLIND: FakeDownstream(honours_keys=False),
        }
        lookup_downstream = self.downstreams[LOOKUP]

        async def balance(context: ToolContext) -> dict:
            """How many charges have been made."""
            return {"charges": sum(len(d.effects) for d in self.downstreams.values())}

        self.tools = {
            KEYED: charge_tool(KEYED, self.downstreams[KEYED], idempotent=True),
            LOOKUP: charge_tool(LOOKUP, lookup_downstream,
                                lookup=lambda args, ctx: lookup_downstream.find(ctx.idempotency_key)),
            BLIND: charge_tool(BLIND, self.downstreams[BLIND]),
            READ: tool(name=READ, effect="read", retry=RETRY)(balance),
        }
        self.registry = ToolRegistry(self.tools.values())
        self.store = self.open_ledger()
        self.ledger = CrashingLedger(self.store)
        self.executor = self.new_executor()
        self.calls = 0
        self.last: tuple[str, int, str] | None = None

    # -- plumbing -------------------------------------------------------------------------

    def open_ledger(self) -> Any:
        return InMemoryLedger()

    def close_ledger(self) -> None:
        pass

    def run(self, awaitable: Any) -> Any:
        return self.loop.run_until_complete(awaitable)

    def new_executor(self) -> TransactionalExecutor:
        # A breaker that never opens keeps every call reaching the downstream (an open breaker
        # only answers `not_applied` without calling, which cannot break the property).
        return TransactionalExecutor(self.ledger, sleep=no_sleep, breaker_threshold=1_000)

    def restart(self, *, crash_during_recovery: bool = False) -> None:
        """A new process on the same ledger: reconcile first; a crash during that starts over."""
        while True:
            self.ledger = CrashingLedger(self.store)
            self.executor = self.new_executor()
            if crash_during_recovery:
                self.ledger.arm()
                crash_during_recovery = False
            try:
                self.run(self.executor.recover(self.registry))
            except SimulatedCrash:
                continue
            self.ledger.armed = False  # nothing was left to reconcile, so it never fired
            return

    def execute(self, name: str, arguments: dict[str, Any], session: str) -> ToolOutcome:
        self.calls += 1
        call = ToolCall(f"call_{self.calls}", name, arguments)
        return self.run(self.executor.execute(self.tools[name], call, ToolContext(session, PRINCIPAL, {})))

    async def ledger_entries(self) -> list[LedgerEntry]:
        return [e for session in SESSIONS for e in await self.store.entries(session)]

    # -- rules ----------------------------------------------------------------------------

    @rule(name=st.sampled_from(WRITES), amount=st.sampled_from(AMOUNTS), session=st.sampled_from(SESSIONS),
          faults=fault_queues)
    def call(self, name: str, amount: int, session: str, faults: list[Fault]) -> None:
        self.last = (name, amount, session)
        self.downstreams[name].faults = list(faults)
        outcome = self.execute(name, {"amount_cents": amount}, session)
        self.check_outcome(name, outcome)

    @precondition(lambda self: self.last is not None)
    @rule(faults=fault_queues)
    def repeat_last_call(self, faults: list[Fault]) -> None:
        """The model re-tries, or the user's message is delivered again: the same call once more."""
        self.call(*self.last, faults)

    @rule(name=st.sampled_from(WRITES), amount=st.sampled_from(AMOUNTS), session=st.sampled_from(SESSIONS),
          faults=fault_queues)
    def call_and_crash(self, name: str, amount: int, session: str, faults: list[Fault]) -> None:
        """The process dies at the first outcome write of this call: after any effect, before the ledger says so."""
        self.last = (name, amount, session)
        self.downstreams[name].faults = list(faults)
        self.ledger.arm()
        try:
            outcome = self.execute(name, {"amount_cents": amount}, session)
        except SimulatedCrash:
            self.restart()
            return
        self.ledger.armed = False  # answered from the ledger: no outcome was written
        self.check_outcome(name, outcome)

    @rule(session=st.sampled_from(SESSIONS))
    def read(self, session: str) -> None:
        outcome = self.execute(READ, {}, session)
        assert outcome.status == "succeeded" and outcome.key is None

    @rule(crash_during_recovery=st.booleans(), faults=st.tuples(*[fault_queues for _ in WRITES]))
    def restart_process(self, crash_during_recovery: bool, faults: tuple[list[Fault], ...]) -> None:
        """A restart, with the downstreams possibly still failing while reconciliation runs."""
        for name, queue in zip(WRITES, faults, strict=True):
            self.downstreams[name].faults = list(queue)
        self.restart(crash_during_recovery=crash_during_recovery)

    # -- the property ---------------------------------------------------------------------

    def check_outcome(self, name: str, outcome: ToolOutcome) -> None:
        assert outcome.status in ("succeeded", "not_applied", "unknown"), outcome
        assert outcome.key is not None
        effects = self.downstreams[name].count(outcome.key)
        if outcome.status == "succeeded":
            assert effects == 1, f"{name} said succeeded with {effects} effects"
            assert outcome.value == self.downstreams[name].find(outcome.key)
        elif outcome.status == "not_applied":
            assert effects == 0, f"{name} said not_applied but the effect happened ({effects})"
        else:
            assert name != LOOKUP, "a tool with a lookup never leaves an outcome unknown"
            # Unknown is final (and goes to a person) unless a repeat with the same key is harmless.
            assert outcome.escalate or self.tools[name].idempotent, outcome

    @invariant()
    def ledger_matches_downstreams(self) -> None:
        self.check_ledger(settled=False)

    def check_ledger(self, *, settled: bool) -> None:
        entries = self.run(self.ledger_entries())
        by_key = {e.key: e for e in entries}
        assert len(by_key) == len(entries)
        for name, downstream in self.downstreams.items():
            for reference, count in Counter(e["reference"] for e in downstream.effects).items():
                assert count == 1, f"double effect: {name} charged {count} times for {reference}"
                assert reference in by_key and by_key[reference].tool == name, f"effect unknown to the ledger: {reference}"
        for entry in entries:
            assert entry.tool in WRITES, entry
            effects = self.downstreams[entry.tool].count(entry.key)
            assert entry.status != "attempted", f"left attempted after reconciliation: {entry}"
            if entry.status == "succeeded":
                assert effects == 1, f"ledger says succeeded, downstream has {effects}: {entry}"
            elif entry.status in ("failed", "not_applied"):
                assert effects == 0, f"lost effect: ledger says {entry.status}, downstream has {effects}: {entry}"
            else:
                assert entry.status == "unknown"
                allowed = (BLIND,) if settled else (BLIND, KEYED)
                assert entry.tool in allowed, f"unknown left for {entry.tool}: {entry}"

    def teardown(self) -> None:
        try:
            if sys.exc_info()[0] is None:  # after a failed step, report that failure alone
                # Once the downstreams work again, a restart settles everything a repeat can
                # settle: only the tool without lookup or idempotency may stay unknown.
                for downstream in self.downstreams.values():
                    downstream.faults.clear()
                self.restart()
                self.check_ledger(settled=True)
        finally:
            self.close_ledger()
            self.loop.close()


class ExactlyOnceOnSql(ExactlyOnce):
    """The same machine over the SQL ledger in a SQLite file."""

    def open_ledger(self) -> Any:
        self.tmp = tempfile.TemporaryDirectory()
        return SqlLedger(f"sqlite:///{self.tmp.name}/ledger.db")

    def close_ledger(self) -> None:
        self.run(self.store.close())
        self.tmp.cleanup()


ExactlyOnce.TestCase.settings = settings(
    max_examples=500, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow],
)
ExactlyOnceOnSql.TestCase.settings = settings(
    max_examples=25, stateful_step_count=20, deadline=None, suppress_health_check=[HealthCheck.too_slow],
)

TestExactlyOnceInMemory = ExactlyOnce.TestCase
TestExactlyOnceOnSql = ExactlyOnceOnSql.TestCase
