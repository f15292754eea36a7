"""A refund or exchange under the fault matrix has exactly one effect in the store's database.

The store runs as its own process over a SQLite file holding a small generated store. The
tools reach it over real HTTP through a transport that, for the faulted call, lets the request
reach the store and then loses the answer: a read timeout, a dropped connection or a 500 in
place of the store's reply, so the effect is committed but the caller does not learn it. The
other two faults are a duplicate delivery (the same call executed twice) and a crash between
the effect and the ledger write, followed by a new executor that reconciles on start-up.

Afterwards the store's own database is compared with what one application of the action
gives, the store's idempotency table holds one record for the action, and the ledger calls the
action succeeded — after a crash too, because the entry keeps the customer the call acted for.
"""

from __future__ import annotations

import copy
import enum
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from concierge.core import Principal, ToolCall
from concierge.domains.retail.backend.idempotency import idempotency_keys
from concierge.domains.retail.generator import generate_store
from concierge.domains.retail.store import create_schema, create_store_engine, export_db, import_db
from concierge.domains.retail.tools import retail_tools
from concierge.testing.faults import CrashingLedger, SimulatedCrash
from concierge.testing.services import ServiceProcess
from concierge.tools import SqlLedger, ToolContext, ToolRegistry, TransactionalExecutor
from concierge.tools.tool import CUSTOMER_KEY

BACKEND_MODULE = "concierge.domains.retail.backend"
PRINCIPAL = Principal("web-session", scopes=frozenset({"retail:write"}))
ACTIONS = ("return_delivered_order_items", "exchange_delivered_order_items", "cancel_pending_order")


class Fault(enum.StrEnum):
    TIMEOUT_AFTER = "timeout_after_effect"
    RESET_AFTER = "reset_after_effect"
    HTTP_5XX_AFTER = "http_5xx_after_effect"
    DUPLICATE = "duplicate_delivery"
    CRASH = "crash_between_effect_and_ledger"


LOST_ANSWER = (Fault.TIMEOUT_AFTER, Fault.RESET_AFTER, Fault.HTTP_5XX_AFTER)


@dataclass
class Sent:
    method: str
    path: str
    key: str | None
    status: int
    replayed: bool


@dataclass
class LosingTransport(httpx.AsyncBaseTransport):
    """Forwards every request to the store; for the first write, discards the store's answer per `fault`."""

    fault: Fault
    inner: httpx.AsyncHTTPTransport = field(default_factory=httpx.AsyncHTTPTransport)
    writes: list[Sent] = field(default_factory=list)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "GET":
            return response
        body = await response.aread()
        await response.aclose()
        self.writes.append(Sent(request.method, request.url.path, request.headers.get("Idempotency-Key"),
                                response.status_code, response.headers.get("Idempotent-Replayed") == "true"))
        if len(self.writes) == 1 and self.fault in LOST_ANSWER:
            if self.fault is Fault.TIMEOUT_AFTER:
                raise httpx.ReadTimeout("timed out waiting for the answer", request=request)
            if self.fault is Fault.RESET_AFTER:
                raise httpx.RemoteProtocolError("peer closed connection without sending a response",
                                                request=request)
            return httpx.Response(500, json={"error": "upstream failure"}, request=request)
        headers = [(k, v) for k, v in response.headers.items() if k.lower() != "content-length"]
        return httpx.Response(response.status_code, headers=headers, content=body, request=request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass
class Store:
    url: str
    backend: ServiceProcess
    plans: dict[str, list[dict[str, Any]]]

    def export(self) -> dict[str, Any]:
        engine = create_store_engine(self.url)
        try:
            return export_db(engine)
        finally:
            engine.dispose()

    def key_records(self) -> list[dict[str, Any]]:
        engine = create_store_engine(self.url)
        try:
            with engine.connect() as conn:
                return [dict(row) for row in conn.execute(select(idempotency_keys)).mappings()]
        finally:
            engine.dispose()


def _exchange_plan(db: dict[str, Any], order: dict[str, Any]) -> dict[str, Any] | None:
    """An exchange of the order's first item that has another available variant of its product."""
    for item in order["items"]:
        variants = db["products"][item["product_id"]]["variants"]
        other = next((vid for vid, v in sorted(variants.items()) if vid != item["item_id"] and v["available"]),
                     None)
        if other is not None:
            return {"item_ids": [item["item_id"]], "new_item_ids": [other]}
    return None


def _plans(db: dict[str, Any], cells: int) -> dict[str, list[dict[str, Any]]]:
    """Distinct orders per action, one per cell: delivered ones for return and exchange, pending ones for cancel."""
    delivered = sorted(oid for oid, o in db["orders"].items() if o["status"] == "delivered")
    pending = sorted(oid for oid, o in db["orders"].items() if o["status"] == "pending")
    plans: dict[str, list[dict[str, Any]]] = {name: [] for name in ACTIONS}
    for oid in delivered:
        order = db["orders"][oid]
        base = {"order_id": oid, "user_id": order["user_id"]}
        refund_to = order["payment_history"][0]["payment_method_id"]
        exchange = _exchange_plan(db, order)
        if exchange is not None and len(plans["exchange_delivered_order_items"]) < cells:
            plans["exchange_delivered_order_items"].append(
                {**base, "arguments": {"order_id": oid, **exchange, "payment_method_id": refund_to}})
        elif len(plans["return_delivered_order_items"]) < cells:
            plans["return_delivered_order_items"].append(
                {**base, "arguments": {"order_id": oid, "item_ids": [order["items"][0]["item_id"]],
                                       "payment_method_id": refund_to}})
    for oid in pending[:cells]:
        plans["cancel_pending_order"].append({"order_id": oid, "user_id": db["orders"][oid]["user_id"],
                                              "arguments": {"order_id": oid, "reason": "no longer needed"}})
    for name, chosen in plans.items():
        assert len(chosen) == cells, f"the generated store has too few orders for {name}"
    return plans


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('retail') / 'store.db'}"
    db = generate_store(users=20, orders=60, seed=7)
    engine = create_store_engine(url)
    create_schema(engine)
    import_db(engine, db)
    engine.dispose()
    with ServiceProcess(BACKEND_MODULE, ["--db", url]) as backend:
        yield Store(url, backend, _plans(db, len(Fault) + 1))


def _one_application(before: dict[str, Any], action: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """The store's state after the action applied exactly once to `before`."""
    after = copy.deepcopy(before)
    order = after["orders"][arguments["order_id"]]
    if action == "return_delivered_order_items":
        order.update(status="return requested", return_items=sorted(arguments["item_ids"]),
                     return_payment_method_id=arguments["payment_method_id"])
    elif action == "exchange_delivered_order_items":
        prices = {vid: v["price"] for p in before["products"].values() for vid, v in p["variants"].items()}
        difference = round(sum(prices[n] for n in arguments["new_item_ids"])
                           - sum(prices[o] for o in arguments["item_ids"]), 2)
        order.update(status="exchange requested", exchange_items=sorted(arguments["item_ids"]),
                     exchange_new_items=sorted(arguments["new_item_ids"]),
                     exchange_payment_method_id=arguments["payment_method_id"],
                     exchange_price_difference=difference)
    else:
        order.update(status="cancelled", cancel_reason=arguments["reason"])
        methods = after["users"][order["user_id"]]["payment_methods"]
        for payment in [p for p in order["payment_history"] if p["transaction_type"] == "payment"]:
            order["payment_history"].append({**payment, "transaction_type": "refund"})
            method = methods[payment["payment_method_id"]]
            if method["source"] == "gift_card":
                method["balance"] = round(method["balance"] + payment["amount"], 2)
    return after


async def _no_sleep(_: float) -> None:
    return None


@dataclass
class Run:
    plan: dict[str, Any]
    before: dict[str, Any]
    keys_before: set[str]
    entries: list[Any]
    settled: list[Any]
    transport: LosingTransport


async def _run(store: Store, tmp_path, action: str, fault: Fault, plan: dict[str, Any]) -> Run:
    """One cell: the action through the executor under `fault` (and, for a crash, a restart)."""
    arguments = plan["arguments"]
    before = store.export()
    keys_before = {r["key"] for r in store.key_records()}
    session = f"s-{action}-{fault.value}-{arguments['order_id']}"
    ledger = SqlLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
    transport = LosingTransport(fault)
    client = httpx.AsyncClient(transport=transport, base_url=store.backend.url, timeout=10.0)
    registry = ToolRegistry(retail_tools(client, confirm=False))
    tool = registry.get(action)
    context = ToolContext(session, PRINCIPAL, {CUSTOMER_KEY: plan["user_id"]})
    settled: list[Any] = []
    try:
        if fault is Fault.CRASH:
            crashing = CrashingLedger(ledger)
            crashing.arm()
            first = TransactionalExecutor(crashing, sleep=_no_sleep)
            with pytest.raises(SimulatedCrash):
                await first.execute(tool, ToolCall("call_1", action, arguments), context)
            restarted = TransactionalExecutor(ledger, sleep=_no_sleep)
            settled = await restarted.recover(registry)
        else:
            executor = TransactionalExecutor(ledger, sleep=_no_sleep)
            outcome = await executor.execute(tool, ToolCall("call_1", action, arguments), context)
            assert outcome.status == "succeeded", outcome
            assert outcome.value["order_id"] == arguments["order_id"]
            if fault is Fault.DUPLICATE:
                again = await executor.execute(tool, ToolCall("call_2", action, arguments), context)
                assert again.status == "succeeded" and again.replayed and again.key == outcome.key
                assert again.value == outcome.value
        entries = await ledger.entries(session)
    finally:
        await client.aclose()
        await ledger.close()
    return Run(plan, before, keys_before, entries, settled, transport)


@pytest.mark.parametrize("fault", list(Fault), ids=[f.value for f in Fault])
@pytest.mark.parametrize("action", ACTIONS)
async def test_one_effect_in_the_store(store: Store, tmp_path, action: str, fault: Fault) -> None:
    run = await _run(store, tmp_path, action, fault, store.plans[action][list(Fault).index(fault)])
    arguments = run.plan["arguments"]

    # The ledger holds one entry for the action, succeeded (after a crash: once reconciled).
    assert [e.tool for e in run.entries] == [action]
    key = run.entries[0].key
    assert [e.status for e in run.entries] == ["succeeded"]
    assert run.entries[0].result["order_id"] == arguments["order_id"]

    # What went over the wire: every write carried the action's key, the first one acted, and
    # any later one was answered with the store's stored reply instead of acting again.
    writes = run.transport.writes
    assert writes and [w.key for w in writes] == [key] * len(writes)
    assert writes[0].status == 200 and not writes[0].replayed
    assert all(w.status == 200 and w.replayed for w in writes[1:])
    if fault is Fault.DUPLICATE:
        assert len(writes) == 1  # the second delivery was answered from the ledger
    elif fault in LOST_ANSWER:
        assert len(writes) == 2  # the lost answer was recovered by sending the same key again

    # The store: one record for the key, and no other new record.
    records = store.key_records()
    new = [r for r in records if r["key"] not in run.keys_before]
    assert [r["key"] for r in new] == [key]
    assert new[0]["status_code"] == 200 and new[0]["response"]["order_id"] == arguments["order_id"]

    # The store's data: exactly the action applied once, nothing else changed.
    after = store.export()
    expected = _one_application(run.before, action, arguments)
    assert after["orders"][arguments["order_id"]] == expected["orders"][arguments["order_id"]]
    assert after == expected


@pytest.mark.parametrize("action", ACTIONS)
async def test_reconciliation_after_a_crash_records_the_effect(store: Store, tmp_path, action: str) -> None:
    run = await _run(store, tmp_path, action, Fault.CRASH, store.plans[action][len(Fault)])
    assert len(store.key_records()) == len(run.keys_before) + 1  # the store acted once
    assert [(e.tool, e.status) for e in run.settled] == [(action, "succeeded")], run.settled
    assert [(e.tool, e.status) for e in run.entries] == [(action, "succeeded")]
    writes = run.transport.writes
    assert len(writes) == 2 and writes[1].replayed and writes[1].key == writes[0].key
