"""`TurnSpans` records the spans the SDK's `start_as_current_span` would, field for field."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, TraceIdRatioBased

from concierge.runtime.tracing import RecordedScope, SpanScope, TurnSpans


class _Starts(SpanProcessor):
    """Remembers what span processors are shown when a span starts."""

    def __init__(self) -> None:
        self.started: list[tuple[str, dict]] = []

    def on_start(self, span, parent_context=None):  # type: ignore[no-untyped-def]
        self.started.append((span.name, dict(span.attributes)))


_RESOURCE = Resource.create({"service.name": "svc"})


def _tracer(**provider_options):  # type: ignore[no-untyped-def]
    exporter = InMemorySpanExporter()
    starts = _Starts()
    provider = TracerProvider(resource=_RESOURCE, **provider_options)
    provider.add_span_processor(starts)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("t", "1.2"), exporter, starts


def _export(span, ids):  # type: ignore[no-untyped-def]
    """Everything an exporter reads, span and parent ids replaced by their order of appearance."""
    def ident(value):  # type: ignore[no-untyped-def]
        return ids.setdefault(value, len(ids)) if value is not None else None

    return {
        "name": span.name, "attributes": dict(span.attributes), "kind": span.kind,
        "status": (span.status.status_code, span.status.description),
        "events": [(e.name, {k: bool(v) if k == "exception.stacktrace" else v for k, v in e.attributes.items()})
                   for e in span.events],
        "links": [(ident(link.context.span_id), dict(link.attributes)) for link in span.links],
        "span": ident(span.context.span_id), "parent": ident(span.parent.span_id if span.parent else None),
        "flags": int(span.context.trace_flags), "trace_state": span.context.trace_state,
        "remote": span.context.is_remote, "resource": dict(span.resource.attributes),
        "scope": span.instrumentation_scope, "timed": span.start_time <= span.end_time,
        "dropped": (span.dropped_attributes, span.dropped_events, span.dropped_links),
        "json": _without_ids(span.to_json()),
    }


def _without_ids(text: str) -> str:
    import json

    data = json.loads(text)
    for key in ("context", "parent_id", "start_time", "end_time"):
        data.pop(key, None)
    for link in data["links"]:
        link.pop("context", None)
    for event in data["events"]:
        event.pop("timestamp", None)
        event["attributes"].pop("exception.stacktrace", None)
    return json.dumps(data, sort_keys=True)


def _turn(opener, error):  # type: ignore[no-untyped-def]
    """A turn span with two children, one of which may fail; each span annotated like the runtime does."""
    with opener("concierge.turn", {"concierge.session_id": "s1"}) as turn:
        assert trace.get_current_span() is turn
        with opener("llm.complete", None) as span:
            assert trace.get_current_span() is span
            span.set_attributes({"gen_ai.request.model": "m", "gen_ai.usage.input_tokens": 3, "ratio": 0.5,
                                 "ok": True, "list": ["a", "b"], "": "no key", "bad": object()})
            span.add_event("note", {"n": 1})
            span.add_link(turn.get_span_context(), {"why": "test"})
        with _swallow(), opener("tool.execute", {"concierge.tool": "get_order"}) as span:
            span.set_attribute("concierge.tool.status", "failed")
            span.update_name("tool.execute")
            if error is not None:
                raise error
        turn.set_status(trace.StatusCode.OK)
        turn.set_attribute("concierge.stopped_by", "x")
    assert trace.get_current_span() is trace.INVALID_SPAN


class _swallow:
    """Lets the failing child's error stop there, as the runtime's handlers do."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return True


@pytest.mark.parametrize("error", [None, ValueError("bad value"), asyncio.CancelledError()])
@pytest.mark.parametrize("limits", [None, SpanLimits(max_span_attributes=2, max_span_attribute_length=1)])
def test_recorded_spans_export_like_the_sdks(error, limits):
    sdk_tracer, sdk_exporter, sdk_starts = _tracer(span_limits=limits)
    tracer, exporter, starts = _tracer(span_limits=limits)
    spans = TurnSpans(tracer)

    _turn(lambda name, attrs: sdk_tracer.start_as_current_span(name, attributes=attrs), error)
    _turn(spans.open, error)

    expected, got = sdk_exporter.get_finished_spans(), exporter.get_finished_spans()
    assert [_export(s, {}) for s in got] == [_export(s, {}) for s in expected]
    assert len({s.context.trace_id for s in got}) == 1
    assert starts.started == sdk_starts.started


def test_children_of_the_callers_span_share_its_trace():
    tracer, exporter, _ = _tracer()
    with tracer.start_as_current_span("request") as request, TurnSpans(tracer).open("concierge.turn") as turn:
        assert isinstance(turn, trace.Span) and turn.is_recording()
    turn_span, request_span = exporter.get_finished_spans()
    assert turn_span.parent.span_id == request.get_span_context().span_id
    assert turn_span.context.trace_id == request_span.context.trace_id


@pytest.mark.parametrize("sampler", [ALWAYS_OFF, ALWAYS_ON, TraceIdRatioBased(0.5)])
def test_another_sampler_decides_through_the_tracer(sampler):
    tracer, exporter, _ = _tracer(sampler=sampler)
    scope = TurnSpans(tracer).open("concierge.turn")
    assert isinstance(scope, SpanScope)
    with scope:
        pass
    assert len(exporter.get_finished_spans()) <= 1


def test_an_unsampled_or_remote_parent_goes_through_the_tracer():
    tracer, _, _ = _tracer()
    spans = TurnSpans(tracer)
    assert isinstance(spans.open("concierge.turn"), RecordedScope)
    for flags, remote in ((trace.TraceFlags(0), False), (trace.TraceFlags(1), True)):
        parent = trace.NonRecordingSpan(trace.SpanContext(1, 2, remote, flags))
        with trace.use_span(parent):
            assert isinstance(spans.open("concierge.turn"), SpanScope)


def test_a_non_sdk_tracer_goes_through_the_tracer():
    scope = TurnSpans(trace.NoOpTracer()).open("concierge.turn")
    assert isinstance(scope, SpanScope)
    with scope as span:
        assert not span.is_recording()


def test_a_processor_added_later_gets_the_spans_that_end_after_it_came():
    provider = TracerProvider()
    spans = TurnSpans(provider.get_tracer("t"))
    with spans.open("concierge.turn") as turn:
        with spans.open("llm.complete"):
            pass  # nobody listens yet: nothing to hand over
        exporter = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        with spans.open("tool.execute") as tool:
            tool.set_attribute("concierge.tool", "get_order")
    assert [s.name for s in exporter.get_finished_spans()] == ["tool.execute", "concierge.turn"]
    tool_span, turn_span = exporter.get_finished_spans()
    assert tool_span.parent.span_id == turn.get_span_context().span_id == turn_span.context.span_id
    assert tool_span.attributes["concierge.tool"] == "get_order"
