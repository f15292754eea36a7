"""The retail agent end to end: runtime → transactional executor → tools → store over HTTP (ASGI)."""

from __future__ import annotations

import httpx
import pytest

from concierge import Runtime
from concierge.core import Principal
from concierge.domains.retail import create_schema, create_store_engine, export_db, import_db
from concierge.domains.retail.agent import make_retail_agent, store_policy
from concierge.domains.retail.backend.app import create_app
from concierge.domains.retail.generator import generate_store
from concierge.testing import ScriptedModel, call
from concierge.tools import InMemoryLedger, TransactionalExecutor

CUSTOMER = frozenset({"retail:write"})


@pytest.fixture
def store():
    db = generate_store(users=20, orders=60, seed=7)
    engine = create_store_engine("sqlite://")
    create_schema(engine)
    import_db(engine, db)
    return db, engine


def pending_orders(db: dict) -> list[tuple[str, dict]]:
    """(order id, its user) for pending orders, so tests pick real data from the generated store."""
    return [(oid, db["users"][o["user_id"]]) for oid, o in db["orders"].items() if o["status"] == "pending"]


def runtime_for(engine, script) -> tuple[Runtime, InMemoryLedger, httpx.AsyncClient]:
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(engine)), base_url="http://retail")
    ledger = InMemoryLedger()
    agent = make_retail_agent(ScriptedModel(script), client)
    return Runtime(agent, executor=TransactionalExecutor(ledger)), ledger, client


def test_the_store_policy_is_data_loaded_into_the_instructions():
    client = httpx.AsyncClient(base_url="http://unused")
    agent = make_retail_agent(ScriptedModel(["hi"]), client)
    assert agent.instructions == store_policy() and "no longer needed" in agent.instructions
    assert make_retail_agent(ScriptedModel(["hi"]), client, policy="Custom policy.").instructions == "Custom policy."


async def test_cancel_runs_only_after_the_customer_confirms(store):
    db, engine = store
    order_id, user = pending_orders(db)[0]
    runtime, ledger, client = runtime_for(engine, [
        call("find_user_id_by_email", email=user["email"]),
        call("get_order_details", order_id=order_id),
        call("cancel_pending_order", order_id=order_id, reason="no longer needed"),
        "Your order is cancelled.",
    ])
    principal = Principal("web-session-1", scopes=CUSTOMER)
    asked = await runtime.turn("r1", f"cancel {order_id}, I no longer need it", principal=principal)
    assert asked.stopped_by == "awaiting_confirmation"
    assert export_db(engine)["orders"][order_id]["status"] == "pending"
    done = await runtime.turn("r1", "yes", principal=principal)
    assert done.reply == "Your order is cancelled."
    order = export_db(engine)["orders"][order_id]
    assert order["status"] == "cancelled" and order["cancel_reason"] == "no longer needed"
    assert [(e.tool, e.status) for e in await ledger.entries("r1")] == [("cancel_pending_order", "succeeded")]
    await client.aclose()


async def test_another_customers_order_is_refused_before_the_customer_is_asked(store):
    db, engine = store
    orders = pending_orders(db)
    mine_user = orders[0][1]
    theirs = next(oid for oid, user in orders if user["user_id"] != mine_user["user_id"])
    before = export_db(engine)
    runtime, _, client = runtime_for(engine, [
        call("find_user_id_by_email", email=mine_user["email"]),
        call("cancel_pending_order", order_id=theirs, reason="ordered by mistake"),
        "Done, it is cancelled!",
    ])
    principal = Principal("web-session-2", scopes=CUSTOMER)
    result = await runtime.turn("r2", f"cancel order {theirs}", principal=principal)
    assert result.stopped_by is None and not result.pending_actions  # no question about it
    assert export_db(engine) == before
    assert "Not done: cancel_pending_order" in result.reply  # the model's claim is corrected
    assert "belongs to another customer" in result.reply
    await client.aclose()


async def test_a_customer_without_the_write_scope_changes_nothing(store):
    db, engine = store
    order_id, user = pending_orders(db)[0]
    before = export_db(engine)
    runtime, _, client = runtime_for(engine, [
        call("find_user_id_by_email", email=user["email"]),
        call("cancel_pending_order", order_id=order_id, reason="no longer needed"),
        "Cancelled.",
    ])
    result = await runtime.turn("r3", "cancel it", principal=Principal("read-only-session"))
    assert export_db(engine) == before and "retail:write" in result.reply
    await client.aclose()
