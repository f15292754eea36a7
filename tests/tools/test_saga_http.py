"""A saga over two real downstream databases, and the breaker state on the tool span.

Step 1 charges the card on the payment service (its own process and SQLite file), step 2
holds a seat in a reservations SQLite database, step 3 issues the ticket and is rejected. Both
databases must end as they were before, and the user must be told.
"""

from __future__ import annotations

import sqlite3

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from concierge import Agent, Runtime
from concierge.core import Principal, ToolError, ToolTransientError
from concierge.testing import PaymentService, ScriptedModel, call
from concierge.tools import (
    Compensation,
    RetryPolicy,
    Saga,
    SagaStep,
    SqlLedger,
    ToolContext,
    ToolRegistry,
    TransactionalExecutor,
    call_api,
    raise_unless_completed,
    tool,
)

P = Principal("traveller", scopes=frozenset({"payments:write", "seats:write"}))


@pytest.fixture(scope="module")
def payments(tmp_path_factory):
    with PaymentService(tmp_path_factory.mktemp("saga") / "payments.db") as svc:
        yield svc


def seats_db(path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE IF NOT EXISTS holds (seat TEXT PRIMARY KEY, reference TEXT)")
    return conn


def trip_tools(payments_url: str, seats: sqlite3.Connection):
    client = httpx.AsyncClient(base_url=payments_url, timeout=5)

    @tool(effect="write", idempotent=True, scopes=["payments:write"],
          compensate=Compensation("refund_charge", lambda args, result: {"charge_id": result["id"],
                                                                        "amount_cents": args["amount_cents"]}))
    async def charge_card(account: str, amount_cents: int, ctx: ToolContext) -> dict:
        """Charge the traveller's card."""
        body = {"account": account, "amount_cents": amount_cents, "reference": ctx.idempotency_key}
        return await call_api(client, "POST", "/charges", ctx, json=body)

    @tool(effect="write", idempotent=True, scopes=["payments:write"])
    async def refund_charge(charge_id: str, amount_cents: int, ctx: ToolContext) -> dict:
        """Refund a charge."""
        return await call_api(client, "POST", "/refunds", ctx, json={"charge_id": charge_id, "amount_cents": amount_cents})

    @tool(effect="write", scopes=["seats:write"],
          compensate=Compensation("release_seat", lambda args, result: {"seat": args["seat"]}))
    def hold_seat(seat: str, ctx: ToolContext) -> dict:
        """Hold a seat."""
        seats.execute("INSERT INTO holds VALUES (?, ?)", (seat, ctx.idempotency_key))
        return {"seat": seat, "held": True}

    @tool(effect="write", scopes=["seats:write"])
    def release_seat(seat: str) -> dict:
        """Release a seat."""
        seats.execute("DELETE FROM holds WHERE seat = ?", (seat,))
        return {"seat": seat, "held": False}

    @tool(effect="write", scopes=["seats:write"])
    def issue_ticket(seat: str) -> dict:
        """Issue the ticket."""
        raise ToolError(f"the airline rejected seat {seat}")

    steps = ToolRegistry([charge_card, refund_charge, hold_seat, release_seat, issue_ticket])

    @tool(effect="write", idempotent=True)
    async def book_trip(account: str, seat: str, amount_cents: int, ctx: ToolContext) -> dict:
        """Charge, hold the seat and issue the ticket: all or nothing."""
        saga = Saga("book_trip", [
            SagaStep("charge_card", {"account": account, "amount_cents": amount_cents}),
            SagaStep("hold_seat", {"seat": seat}),
            SagaStep("issue_ticket", {"seat": seat}),
        ], steps)
        return raise_unless_completed(await saga.run(ctx.executor, ctx))

    return book_trip, client


def balance(payments, account: str) -> int:
    return httpx.get(f"{payments.url}/accounts/{account}/balance").json()["balance_cents"]


async def test_saga_failing_at_step_three_leaves_both_databases_as_before(payments, tmp_path):
    seats = seats_db(tmp_path / "seats.db")
    book_trip, client = trip_tools(payments.url, seats)
    model = ScriptedModel([call("book_trip", account="acct-saga", seat="12A", amount_cents=25_000),
                           "You are booked on seat 12A!"])
    ledger = SqlLedger(f"sqlite:///{tmp_path / 'runtime.db'}")
    runtime = Runtime(Agent(instructions="Book trips.", model=model, tools=[book_trip]),
                      executor=TransactionalExecutor(ledger))
    before = (balance(payments, "acct-saga"), seats.execute("SELECT count(*) FROM holds").fetchone()[0])

    asked = await runtime.turn("trip-1", "book me seat 12A for 250", principal=P)
    assert asked.stopped_by == "awaiting_confirmation"
    result = await runtime.turn("trip-1", "yes", principal=P)

    after = (balance(payments, "acct-saga"), seats.execute("SELECT count(*) FROM holds").fetchone()[0])
    assert before == after == (0, 0)
    kinds = sorted(e["kind"] for e in payments.effects() if e.get("account") == "acct-saga")
    assert kinds == ["charge", "refund"]  # charged once, refunded once
    assert "Not done: book_trip" in result.reply and "Nothing was changed overall" in result.reply
    assert "Undone: hold_seat, charge_card" in result.reply
    statuses = [(e.tool, e.status) for e in await ledger.entries("trip-1")]
    assert ("refund_charge", "succeeded") in statuses and ("release_seat", "succeeded") in statuses
    await client.aclose()
    await ledger.close()


async def test_breaker_state_is_on_the_tool_span(tmp_path):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    def down(order_id: str) -> dict:
        raise ToolTransientError("status service down")

    flaky = tool(name="lookup_status", retry=RetryPolicy(max_attempts=1))(down)
    model = ScriptedModel([call("lookup_status", order_id=str(i)) for i in range(3)] + ["Sorry, it is down."])
    runtime = Runtime(Agent(instructions="x", model=model, tools=[flaky]),
                      executor=TransactionalExecutor(breaker_threshold=2), tracer=provider.get_tracer("t"))
    await runtime.turn("s1", "status?", principal=P)
    states = [s.attributes.get("concierge.breaker.state") for s in exporter.get_finished_spans()
              if s.name == "tool.execute"]
    assert states == ["closed", "open", "open"]
