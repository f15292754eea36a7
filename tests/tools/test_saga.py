"""Sagas through the runtime: failure at step k undoes steps k-1…1, and the reply says so."""

from __future__ import annotations

import pytest

from concierge import Agent, Runtime
from concierge.core import Principal, ToolError
from concierge.testing import ScriptedModel, call
from concierge.tools import (
    Compensation,
    InMemoryLedger,
    Saga,
    SagaStep,
    ToolContext,
    ToolRegistry,
    TransactionalExecutor,
    raise_unless_completed,
    tool,
)

P = Principal("u1", scopes=frozenset({"*"}))


class World:
    """Two downstream 'databases': seats and a payment balance."""

    def __init__(self) -> None:
        self.held: set[str] = set()
        self.balance = 0
        self.calls: list[str] = []
        self.ticket_fails = True
        self.refund_fails = False


def build(world: World) -> tuple[Runtime, InMemoryLedger]:
    @tool(effect="write", compensate=Compensation("release_seat", lambda args, result: {"seat": args["seat"]}))
    def hold_seat(seat: str) -> dict:
        """Hold a seat."""
        world.calls.append(f"hold {seat}")
        world.held.add(seat)
        return {"seat": seat}

    @tool(effect="write")
    def release_seat(seat: str) -> dict:
        """Release a held seat."""
        world.calls.append(f"release {seat}")
        world.held.discard(seat)
        return {"seat": seat, "released": True}

    @tool(effect="write", compensate=Compensation("refund", lambda args, result: {"amount_cents": args["amount_cents"]}))
    def charge(amount_cents: int) -> dict:
        """Charge the card."""
        world.calls.append(f"charge {amount_cents}")
        world.balance += amount_cents
        return {"charged": amount_cents}

    @tool(effect="write")
    def refund(amount_cents: int) -> dict:
        """Refund the card."""
        world.calls.append(f"refund {amount_cents}")
        if world.refund_fails:
            raise ToolError("refunds are disabled for this card")
        world.balance -= amount_cents
        return {"refunded": amount_cents}

    @tool(effect="write")
    def issue_ticket(seat: str) -> dict:
        """Issue the ticket."""
        world.calls.append(f"ticket {seat}")
        if world.ticket_fails:
            raise ToolError("the ticketing system rejected the seat")
        return {"ticket": f"T-{seat}"}

    steps_registry = ToolRegistry([hold_seat, release_seat, charge, refund, issue_ticket])

    @tool(effect="write", idempotent=True)
    async def book_trip(seat: str, amount_cents: int, ctx: ToolContext) -> dict:
        """Hold a seat, charge the card and issue the ticket, all or nothing."""
        saga = Saga("book_trip", [SagaStep("hold_seat", {"seat": seat}),
                                  SagaStep("charge", {"amount_cents": amount_cents}),
                                  SagaStep("issue_ticket", {"seat": seat})], steps_registry)
        return raise_unless_completed(await saga.run(ctx.executor, ctx))

    model = ScriptedModel([call("book_trip", seat="12A", amount_cents=9900), "Your trip is booked!"])
    ledger = InMemoryLedger()
    agent = Agent(instructions="Book trips.", model=model, tools=[book_trip])
    return Runtime(agent, executor=TransactionalExecutor(ledger)), ledger


async def test_failure_at_step_three_undoes_steps_two_and_one_and_the_reply_says_so():
    world = World()
    runtime, ledger = build(world)
    await runtime.turn("s1", "book seat 12A", principal=P)
    result = await runtime.turn("s1", "yes", principal=P)
    assert world.held == set() and world.balance == 0  # both downstreams as before
    assert world.calls == ["hold 12A", "charge 9900", "ticket 12A", "refund 9900", "release 12A"]
    # The model claimed success; the reply still carries the truth.
    assert "Not done: book_trip" in result.reply and "Nothing was changed overall" in result.reply
    assert "Undone: charge, hold_seat" in result.reply
    statuses = {e.tool: e.status for e in await ledger.entries("s1")}
    assert statuses == {"book_trip": "failed", "hold_seat": "succeeded", "charge": "succeeded",
                        "issue_ticket": "failed", "refund": "succeeded", "release_seat": "succeeded"}


async def test_a_failed_compensation_escalates_with_the_ledger_attached():
    world = World()
    world.refund_fails = True
    runtime, _ = build(world)
    await runtime.turn("s1", "book seat 12A", principal=P)
    result = await runtime.turn("s1", "yes", principal=P)
    assert result.stopped_by == "escalated" and result.handed_off
    assert "Could not undo: charge" in result.reply and "A person must review this" in result.reply
    assert world.balance == 9900 and world.held == set()  # the seat was released, the money was not returned
    ledger_tools = [(e["tool"], e["status"]) for e in result.escalation["ledger"]]
    assert ("refund", "failed") in ledger_tools and ("charge", "succeeded") in ledger_tools


async def test_a_completed_saga_is_not_repeated_when_asked_again():
    world = World()
    world.ticket_fails = False
    runtime, _ = build(world)
    await runtime.turn("s1", "book seat 12A", principal=P)
    result = await runtime.turn("s1", "yes", principal=P)
    assert result.reply == "Your trip is booked!" and world.balance == 9900
    assert world.calls == ["hold 12A", "charge 9900", "ticket 12A"]


@pytest.mark.parametrize("bad", ["missing_tool"])
def test_saga_with_unknown_step_fails_at_definition(bad):
    from concierge.core import ToolNotFoundError

    with pytest.raises(ToolNotFoundError):
        Saga("x", [SagaStep(bad, {})], ToolRegistry([]))
