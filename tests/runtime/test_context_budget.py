"""A long conversation stays inside the context budget and keeps its pinned facts."""

from __future__ import annotations

from concierge import Agent, Limits, Runtime, tool
from concierge.core import SystemMessage
from concierge.llm import EstimatingCounter, count_messages
from concierge.testing import FunctionModel, call

COUNTER = EstimatingCounter()


@tool(writes=True, essential_fields=("order_id", "status", "refund"))
def cancel_order(order_id: str) -> dict:
    """Cancel an order and refund it."""
    return {"order_id": order_id, "status": "cancelled", "refund": "54.04 to gift card"}


@tool
def get_order(order_id: str) -> dict:
    """Look up an order."""
    return {"order_id": order_id, "status": "delivered", "items": ["item"] * 20}


class CountingSummarizer:
    def __init__(self) -> None:
        self.calls = 0

    async def summarize(self, previous, messages, max_tokens):
        self.calls += 1
        return f"(summary #{self.calls} of {len(messages)} messages; before: {(previous or '')[:40]})"


async def test_200_turn_session_stays_within_budget_and_keeps_pinned_fact():
    budget = 1200
    sizes: list[int] = []

    def model(messages, tools):
        sizes.append(count_messages(COUNTER, messages))
        last = messages[-1]
        if last.role == "user":
            turn = int(last.content.split()[1].rstrip(":"))
            if turn == 1:
                return call("cancel_order", order_id="W123")
            return call("get_order", order_id=f"W{turn}")
        return "Here is what I found about your order, in some detail. " * 3

    summarizer = CountingSummarizer()
    agent = Agent(instructions="You are a support agent.", model=FunctionModel(model, record=False),
                  tools=[cancel_order, get_order], limits=Limits(context_tokens=budget))
    runtime = Runtime(agent, summarizer=summarizer, token_counter=COUNTER)
    captured = []
    for turn in range(1, 201):
        result = await runtime.turn("long", f"turn {turn}: tell me about my orders please")
        assert result.stopped_by is None
    # The model call of turn 200: the fact pinned by turn 1's write is in the system message.
    def last_system(messages, tools):
        captured.append(messages)
        return "Your order W123 was cancelled and 54.04 refunded to your gift card."
    runtime.agent.model = FunctionModel(last_system)
    await runtime.turn("long", "turn 201: what happened to W123?")

    assert max(sizes) <= budget, f"largest context {max(sizes)} tokens > budget {budget}"
    system = captured[0][0]
    assert isinstance(system, SystemMessage)
    assert 'cancel_order({"order_id":"W123"}) succeeded' in system.content
    assert "54.04 to gift card" in system.content
    assert "Summary of the earlier conversation" in system.content
    assert 5 < summarizer.calls < 100  # folding happens every few turns, not every turn
    session = await runtime.store.load("long")
    assert len(session.history) == 200 * 4 + 2  # nothing was deleted from the durable history
