"""OpenTelemetry for the runtime: every model call and tool call is a span.

By default spans go to an in-process SDK tracer provider with no exporter (cheap, nothing
leaves the machine). `configure_tracing(otlp_endpoint=...)` installs a global provider that
exports over OTLP/HTTP; an application that installed its own global provider is respected.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

from ..core.errors import ConfigError

TRACER_NAME = "concierge.runtime"
_local_provider: TracerProvider | None = None


@dataclass(frozen=True, slots=True)
class TraceStep:
    """One step of a turn as returned to the caller (and mirrored by a span)."""

    kind: str  # "model" | "tool" | "summary"
    name: str
    arguments: dict[str, Any] | None
    result_summary: str
    latency_ms: float
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    error: str | None = None
    # A tool step the customer saw run: what became of it ("succeeded", "failed", "refused",
    # "pending" for a confirmation asked...); None for a step that was not executed (a repeat).
    status: str | None = None


def default_tracer() -> trace.Tracer:
    """The global tracer if the application configured one, else a local SDK tracer."""
    global _local_provider
    provider = trace.get_tracer_provider()
    if not isinstance(provider, trace.ProxyTracerProvider):
        return provider.get_tracer(TRACER_NAME)
    if _local_provider is None:
        _local_provider = TracerProvider(resource=Resource.create({"service.name": "concierge"}))
    return _local_provider.get_tracer(TRACER_NAME)


class SpanScope:
    """`with SpanScope(tracer, name, attrs) as span:` is `tracer.start_as_current_span(name, attributes=attrs)`.

    Same contract: the span is the current span inside the block, an `Exception` escaping the
    block is recorded on it and sets an error status, and the span ends on exit. Written as one
    small class because the runtime opens a span per model call and per tool call, and the API's
    version builds two generator-based context managers each time.
    """

    __slots__ = ("_span", "_token")

    def __init__(self, tracer: trace.Tracer, name: str, attributes: Mapping[str, Any] | None = None) -> None:
        self._span = tracer.start_span(name, attributes=attributes)
        self._token: object = None

    def __enter__(self) -> trace.Span:
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        return self._span

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        span = self._span
        try:
            otel_context.detach(self._token)  # type: ignore[arg-type]
            # Like the API: only Exception subclasses are errors (not CancelledError, GeneratorExit).
            if isinstance(exc, Exception) and isinstance(span, trace.Span) and span.is_recording():
                span.record_exception(exc)
                span.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        finally:
            span.end()


def make_tracer_provider(
    *, service_name: str = "concierge", otlp_endpoint: str | None = None, processors: tuple[SpanProcessor, ...] = ()
) -> TracerProvider:
    """An SDK provider; with `otlp_endpoint` its spans are batched to an OTLP/HTTP collector."""
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    for processor in processors:
        provider.add_span_processor(processor)
    if otlp_endpoint:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise ConfigError(
                "tracing.otlp_endpoint is set but the OTLP exporter is not installed",
                hint="pip install 'concierge[otlp]' or unset the endpoint",
            ) from exc
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint)))
    return provider


def span_id_hex(span: trace.Span) -> str:
    ctx = span.get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""
