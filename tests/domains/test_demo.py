"""The demo: the shop's tools and rules with a scripted model, and the real offline run."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from concierge import Runtime
from concierge.cli import app
from concierge.domains.demo import DEMO_CONVERSATION, DemoShop, make_demo_agent
from concierge.testing import ScriptedModel, call


async def test_demo_tools_enforce_the_shop_rules():
    shop = DemoShop()
    model = ScriptedModel([
        call("cancel_order", order_id="W1001", reason="x"), "W1001 was delivered, so it cannot be cancelled.",
        call("cancel_order", order_id="w1002", reason="changed mind"), "W1002 is cancelled.",
    ])
    runtime = Runtime(make_demo_agent(model, shop))
    refused = await runtime.turn("s", "cancel W1001")
    assert "delivered and cannot be cancelled" in refused.tool_calls[0].error
    done = await runtime.turn("s", "cancel W1002 then")
    assert shop.orders["W1002"]["status"] == "cancelled" and done.tool_calls[0].error is None
    assert DemoShop().orders["W1002"]["status"] == "pending"  # every shop starts fresh


@pytest.mark.real_model
@pytest.mark.embedded
def test_offline_demo_runs_a_real_conversation_with_tool_calls(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CONCIERGE_SESSIONS__URL", f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}")
    result = CliRunner().invoke(app, ["demo", "--session", "demo-test"])
    print(result.output)
    assert result.exit_code == 0, result.output
    assert result.output.count("customer ›") == len(DEMO_CONVERSATION)
    assert result.output.count("agent ›") == len(DEMO_CONVERSATION)
    summary = re.search(r"(\d+) tool calls succeeded", result.output)
    assert summary and int(summary.group(1)) >= 1
    assert (tmp_path / "demo.db").exists()  # the conversation was persisted
