from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from concierge import Agent, Runtime, tool
from concierge.runtime import default_tracer
from concierge.testing import ScriptedModel, call


@tool
def get_order(order_id: str) -> dict:
    """Look up an order."""
    return {"order_id": order_id}


async def test_every_model_and_tool_call_is_a_span_and_a_trace_step():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    model = ScriptedModel([call("get_order", order_id="W1"), call("get_order", order_id="W2"), "done"])
    runtime = Runtime(Agent(instructions="x", model=model, tools=[get_order]), tracer=provider.get_tracer("t"))

    result = await runtime.turn("s1", "hi")

    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["llm.complete", "tool.execute", "llm.complete", "tool.execute",
                                       "llm.complete", "concierge.turn"]
    turn = spans[-1]
    assert all(s.parent.span_id == turn.context.span_id for s in spans[:-1])
    assert format(turn.context.trace_id, "032x") == result.trace_id
    assert spans[0].attributes["gen_ai.usage.input_tokens"] == result.steps[0].input_tokens > 0
    assert spans[1].attributes["concierge.tool"] == "get_order"
    assert [s.kind for s in result.steps] == ["model", "tool", "model", "tool", "model"]
    assert all(s.latency_ms >= 0 for s in result.steps)


def test_default_tracer_records_with_the_sdk():
    span = default_tracer().start_span("probe")
    assert span.get_span_context().is_valid  # a real SDK span, not a no-op
    span.end()
