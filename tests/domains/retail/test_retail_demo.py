"""The offline retail demo: its store on disk, its customer, and the real run from the command line."""

from __future__ import annotations

import re
import sqlite3

import pytest
from typer.testing import CliRunner

from concierge import Runtime
from concierge.cli import app
from concierge.core import Principal
from concierge.core.errors import ValidationError
from concierge.domains.retail.agent import make_retail_agent
from concierge.domains.retail.demo import (
    demo_customer,
    open_demo_store,
    order_status,
    store_client,
    walkthrough_store,
)
from concierge.tools import InMemoryLedger, TransactionalExecutor


def test_the_demo_store_is_generated_once_and_then_reused(tmp_path):
    engine = open_demo_store(tmp_path)
    customer = demo_customer(engine)
    assert order_status(engine, customer.order_id) == "pending"
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE orders SET status = 'cancelled' WHERE order_id = ?", (customer.order_id,))
    engine.dispose()
    again = open_demo_store(tmp_path)  # not regenerated: the change is still there
    assert order_status(again, customer.order_id) == "cancelled"
    assert demo_customer(again).order_id != customer.order_id  # the next pending order is used
    again.dispose()
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".partial"] == []


def test_a_bad_seed_is_refused(tmp_path):
    with pytest.raises(ValidationError, match="seed"):
        open_demo_store(tmp_path, seed=-1)


def test_a_store_without_pending_orders_says_what_to_do(tmp_path):
    engine = open_demo_store(tmp_path)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE orders SET status = 'delivered'")
    with pytest.raises(ValidationError, match="no pending order") as caught:
        demo_customer(engine)
    assert "stores" in (caught.value.hint or "")
    engine.dispose()


async def test_the_walkthrough_cancels_exactly_once_and_only_after_the_yes():
    engine = walkthrough_store()
    customer = demo_customer(engine)
    client = store_client(engine)
    ledger = InMemoryLedger()
    runtime = Runtime(make_retail_agent(customer.walkthrough_model(), client), executor=TransactionalExecutor(ledger))
    principal = Principal("demo-customer", scopes=frozenset({"retail:write"}))
    first, second, third = customer.conversation()
    await runtime.turn("w", first, principal=principal)
    asked = await runtime.turn("w", second, principal=principal)
    assert asked.stopped_by == "awaiting_confirmation"
    assert order_status(engine, customer.order_id) == "pending"
    await runtime.turn("w", third, principal=principal)
    assert order_status(engine, customer.order_id) == "cancelled"
    assert [(e.tool, e.status) for e in await ledger.entries("w")] == [("cancel_pending_order", "succeeded")]
    await client.aclose()


@pytest.mark.real_model
@pytest.mark.embedded
def test_offline_demo_runs_the_retail_agent_on_a_generated_store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CONCIERGE_SESSIONS__URL", f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}")
    result = CliRunner().invoke(app, ["demo", "--session", "demo-test"])
    print(result.output)
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())  # Rich wraps lines at the terminal width
    assert output.count("customer ›") == 6 and output.count("agent ›") == 6  # the model's run and the walkthrough
    summary = re.search(r"3 turns: (\d+) tool calls succeeded, (\d+) failed; order (#W\d+) is now (\w+)\.", output)
    assert summary, output
    store = tmp_path / ".concierge" / "stores" / "retail-demo-0.db"
    with sqlite3.connect(store) as conn:
        (status,) = conn.execute("SELECT status FROM orders WHERE order_id = ?", (summary.group(3),)).fetchone()
    assert summary.group(4) == status  # the summary reports the store's own record
    assert re.search(r"ledger: cancel_pending_order succeeded .* is now cancelled in the copy", output)
    with sqlite3.connect(tmp_path / "demo.db") as conn:  # the model's conversation was persisted
        assert conn.execute("SELECT count(*) FROM sessions").fetchone()[0] >= 1
