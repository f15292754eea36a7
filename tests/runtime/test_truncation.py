from __future__ import annotations

import json

from concierge import Agent, Limits, Runtime, tool
from concierge.llm import EstimatingCounter
from concierge.runtime.truncation import truncate_result
from concierge.testing import ScriptedModel, call

COUNTER = EstimatingCounter()
BIG = {"notes": "n" * 5000, "order_id": "W9", "history": ["event"] * 400, "status": "shipped", "total": 12.5}


def test_small_results_pass_unchanged():
    assert truncate_result({"a": 1}, (), 100, COUNTER) == '{"a":1}'


def test_declared_fields_survive_and_omitted_fields_are_named():
    text = truncate_result(BIG, ("order_id", "status"), 60, COUNTER)
    data = json.loads(text)
    assert data["order_id"] == "W9" and data["status"] == "shipped"
    assert "notes" in data["_omitted"] and "history" in data["_omitted"]
    assert data["total"] == 12.5  # small non-essential fields still fit
    assert COUNTER.count(text) <= 60


def test_long_text_is_cut_to_budget_with_a_marker():
    text = truncate_result("word " * 2000, (), 50, COUNTER)
    assert text.endswith("…[truncated]") and COUNTER.count(text) <= 50


async def test_runtime_truncates_before_the_model_sees_the_result():
    @tool(essential_fields=("order_id", "status"))
    def get_order(order_id: str) -> dict:
        """Full order record."""
        return {**BIG, "order_id": order_id}

    model = ScriptedModel([call("get_order", order_id="W9"), "ok"])
    agent = Agent(instructions="x", model=model, tools=[get_order], limits=Limits(max_tool_result_tokens=80))
    await Runtime(agent).turn("s", "x")
    seen = json.loads(model.requests[1].messages[-1].content)
    assert seen["order_id"] == "W9" and seen["status"] == "shipped" and "notes" not in seen
