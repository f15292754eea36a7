"""The runtime's hot-path helpers behave exactly like the straightforward code they stand for."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from concierge.core import (
    AssistantMessage,
    SystemMessage,
    ToolCall,
    ToolResultMessage,
    UserMessage,
    message_text,
)
from concierge.llm import EstimatingCounter, count_messages
from concierge.runtime import ContextBuilder, Session, SessionLocks
from concierge.runtime.context import TokenTally
from concierge.runtime.tracing import SpanScope
from concierge.testing import FunctionModel, call


def _tracer():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("t"), exporter


def _shape(span):
    return (span.name, dict(span.attributes), span.status.status_code, span.status.description,
            [(e.name, e.attributes.get("exception.type"), e.attributes.get("exception.message")) for e in span.events])


@pytest.mark.parametrize("error", [None, ValueError("bad value"), asyncio.CancelledError()])
def test_span_scope_records_like_start_as_current_span(error):
    tracer, exporter = _tracer()

    def body(span):
        assert trace.get_current_span() is span
        span.set_attributes({"n": 1})
        if error is not None:
            raise error

    for opener in (lambda: tracer.start_as_current_span("s", attributes={"a": "x"}),
                   lambda: SpanScope(tracer, "s", {"a": "x"})):
        with pytest.raises(type(error)) if error is not None else _nothing(), opener() as span:
            body(span)
        assert trace.get_current_span() is trace.INVALID_SPAN
    expected, got = exporter.get_finished_spans()
    assert _shape(got) == _shape(expected)


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


async def test_tally_counts_each_message_once_and_gives_the_same_windows():
    counter = EstimatingCounter()
    history = [UserMessage("earlier question"), AssistantMessage(content="earlier answer")]
    session = Session("s", datetime.now(UTC), datetime.now(UTC), history=history)
    builder = ContextBuilder(counter, summarizer=None, budget_tokens=100_000)  # type: ignore[arg-type]
    tally = TokenTally()
    turn = [UserMessage("hi")]
    for step in range(4):
        with_tally = await builder.build("be nice", session, 0, None, ("fact",), turn, tally)
        fresh = await builder.build("be nice", session, 0, None, ("fact",), turn)
        assert with_tally == fresh
        assert with_tally.tokens == count_messages(counter, fresh.messages)
        call_ = ToolCall(f"c{step}", "get_order", {"order_id": f"W{step}"})
        turn.append(AssistantMessage(tool_calls=(call_,)))
        turn.append(ToolResultMessage(call_.id, call_.name, "{}" * step))
    # Another list, or a list that shrank, is counted afresh.
    other = [UserMessage("a different turn")]
    assert (await builder.build("be nice", session, 0, None, (), other, tally)).tokens == \
        (await builder.build("be nice", session, 0, None, (), other)).tokens
    assert (await builder.build("be nice", session, 1, "sum", (), other[:0], tally)).messages == \
        [SystemMessage(builder.system_text("be nice", "sum", ())), history[1]]


async def test_function_model_usage_is_the_estimate_of_every_message():
    counter = EstimatingCounter()
    model = FunctionModel(lambda messages, tools: call("get_order", order_id="W1"))
    messages = [SystemMessage("sys"), UserMessage("hello")]
    for _ in range(3):
        response = await model.complete(messages)
        assert response.usage.input_tokens == sum(counter.count(message_text(m)) for m in messages)
        assert response.usage.output_tokens == counter.count(message_text(response.message))
        messages += [response.message, ToolResultMessage(response.message.tool_calls[0].id, "get_order", "{}")]


async def test_a_turn_cancelled_while_waiting_for_the_session_lock_is_forgotten():
    locks = SessionLocks()
    release = asyncio.Event()

    async def holder():
        async with locks.hold("s"):
            await release.wait()

    async def waiter():
        async with locks.hold("s"):
            pass

    first = asyncio.create_task(holder())
    await asyncio.sleep(0)
    second = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    assert locks.waiting("s") == 2
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    assert locks.waiting("s") == 1
    release.set()
    await first
    assert locks.waiting("s") == 0
