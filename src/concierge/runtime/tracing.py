"""OpenTelemetry for the runtime: every model call and tool call is a span.

By default spans go to an in-process SDK tracer provider with no exporter (cheap, nothing
leaves the machine). `configure_tracing(otlp_endpoint=...)` installs a global provider that
exports over OTLP/HTTP; an application that installed its own global provider is respected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


def default_tracer() -> trace.Tracer:
    """The global tracer if the application configured one, else a local SDK tracer."""
    global _local_provider
    provider = trace.get_tracer_provider()
    if not isinstance(provider, trace.ProxyTracerProvider):
        return provider.get_tracer(TRACER_NAME)
    if _local_provider is None:
        _local_provider = TracerProvider(resource=Resource.create({"service.name": "concierge"}))
    return _local_provider.get_tracer(TRACER_NAME)


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
