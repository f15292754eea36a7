"""OpenTelemetry for the runtime: every model call and tool call is a span.

By default spans go to an in-process SDK tracer provider with no exporter (cheap, nothing
leaves the machine). `configure_tracing(otlp_endpoint=...)` installs a global provider that
exports over OTLP/HTTP; an application that installed its own global provider is respected.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from time import time_ns
from types import MappingProxyType, TracebackType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Decision, ParentBased
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from ..core.errors import ConfigError

logger = logging.getLogger(__name__)

TRACER_NAME = "concierge.runtime"
_local_provider: TracerProvider | None = None
# The SDK's default sampler, the only one whose decisions `TurnSpans` takes without asking it:
# a root span is sampled, a child follows its parent.
_DEFAULT_SAMPLER = ParentBased(ALWAYS_ON).get_description()
_RANDOM_TRACE_ID = getattr(TraceFlags, "RANDOM_TRACE_ID", 0)
_UNSET = Status(StatusCode.UNSET)


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


class TurnSpans:
    """Opens the runtime's spans (`open(name, attributes)` works like `SpanScope`), cheaply where it can.

    With an SDK tracer under the default sampler, a span is a `RecordedSpan`: the same span the
    SDK would record (its ids from the tracer's id generator, parent, trace flags and state,
    resource, scope, attribute limits, events, status, start and end times), current inside its
    block, handed to the provider's span processors on start and as a `ReadableSpan` on end,
    without the general `Tracer.start_span` path, which costs several times a turn's own work
    per span. Any other tracer or sampler, a remote or unsampled parent: `SpanScope`, unchanged.
    """

    __slots__ = ("_fast", "tracer")

    def __init__(self, tracer: trace.Tracer) -> None:
        self.tracer = tracer
        self._fast = _SdkParts.of(tracer)

    def open(self, name: str, attributes: Mapping[str, Any] | None = None) -> SpanScope | RecordedScope:
        fast = self._fast
        if fast is not None and fast.enabled():
            parent = trace.get_current_span().get_span_context()
            if not parent.is_valid:
                return RecordedScope(RecordedSpan(fast, name, None, attributes))
            if parent.trace_flags.sampled and not parent.is_remote:
                return RecordedScope(RecordedSpan(fast, name, parent, attributes))
        return SpanScope(self.tracer, name, attributes)


class _SdkParts:
    """What a recorded span takes from its SDK tracer, read once per tracer."""

    __slots__ = ("enabled", "ids", "info", "limits", "metrics", "on_ending", "processor", "resource", "scope")

    def listening(self) -> bool:
        """Whether the provider has span processors now (it may get some later): with none, there
        is nobody to hand a span to, on start or on end, so no `ReadableSpan` is built."""
        return bool(getattr(self.processor, "_span_processors", True))

    @classmethod
    def of(cls, tracer: trace.Tracer) -> _SdkParts | None:
        """The parts, or None when spans must go through `tracer.start_span` (not the SDK's tracer,
        another sampler, an SDK without one of these parts)."""
        if not isinstance(tracer, SdkTracer):
            return None
        sampler = getattr(tracer, "sampler", None)
        if not isinstance(sampler, ParentBased) or sampler.get_description() != _DEFAULT_SAMPLER:
            return None
        parts = cls()
        try:
            parts.processor = tracer.span_processor
            parts.resource = tracer.resource
            parts.ids = tracer.id_generator
            parts.info = tracer.instrumentation_info
            parts.limits = tracer._span_limits
            parts.scope = tracer._instrumentation_scope
        except AttributeError:
            return None
        parts.enabled = getattr(tracer, "_is_enabled", _always)
        metrics = getattr(tracer, "_tracer_metrics", None)
        parts.metrics = getattr(metrics, "start_span", None)
        parts.on_ending = getattr(parts.processor, "_on_ending", None)
        return parts


def _always() -> bool:
    return True


class RecordedSpan(trace.Span):
    """A span as the SDK records it, from `TurnSpans`; read like a `ReadableSpan` by span processors."""

    __slots__ = ("_attributes", "_context", "_end_metrics", "_end_time", "_events", "_links", "_name", "_parent",
                 "_parts", "_start_time", "_status")

    def __init__(self, parts: _SdkParts, name: str, parent: SpanContext | None,
                 attributes: Mapping[str, Any] | None) -> None:
        ids = parts.ids
        if parent is None:
            random = _RANDOM_TRACE_ID if getattr(ids, "is_trace_id_random", _never)() else 0
            context = SpanContext(ids.generate_trace_id(), ids.generate_span_id(), False,
                                  TraceFlags(TraceFlags.SAMPLED | random))
        else:
            flags = parent.trace_flags
            wanted = TraceFlags.SAMPLED | (flags & _RANDOM_TRACE_ID)
            context = SpanContext(parent.trace_id, ids.generate_span_id(), False,
                                  flags if flags == wanted else TraceFlags(wanted), parent.trace_state)
        self._parts = parts
        self._name = name
        self._context = context
        self._parent = parent
        self._end_time: int | None = None
        self._attributes: dict[str, Any] | BoundedAttributes = {}
        if attributes:
            self.set_attributes(attributes)
        self._events: tuple[Event, ...] = ()  # rare: grown by copying, nothing allocated when unused
        self._links: tuple[trace.Link, ...] = ()
        self._status = _UNSET
        self._end_metrics = parts.metrics(parent, Decision.RECORD_AND_SAMPLE) if parts.metrics is not None else None
        self._start_time = time_ns()
        if parts.listening():
            parts.processor.on_start(self, parent_context=None)

    # -- the API's Span -------------------------------------------------------------------

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self._end_time is None

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        if self._end_time is not None:
            logger.warning("Setting attribute on ended span.")
            return
        mine = self._attributes
        if type(mine) is dict and _plain(attributes, self._parts.limits, len(mine)):
            mine.update(attributes)
        else:
            self._bounded()._set_items(attributes)  # the SDK's own checks, cuts and drops

    def set_attribute(self, key: str, value: Any) -> None:
        self.set_attributes({key: value})

    def _bounded(self) -> BoundedAttributes:
        """The attributes as the SDK keeps them, from the first one its checks could change on."""
        mine = self._attributes
        if type(mine) is dict:
            limits = self._parts.limits
            mine = self._attributes = BoundedAttributes(limits.max_span_attributes, mine, immutable=False,
                                                        max_value_len=limits.max_span_attribute_length)
        return mine

    def add_event(self, name: str, attributes: Mapping[str, Any] | None = None, timestamp: int | None = None) -> None:
        if self._ended("add_event"):
            return
        limits = self._parts.limits
        bounded = BoundedAttributes(limits.max_event_attributes, attributes,
                                    max_value_len=limits.max_attribute_length, immutable=True)
        self._events += (Event(name=name, attributes=bounded, timestamp=timestamp),)

    def add_link(self, context: SpanContext, attributes: Mapping[str, Any] | None = None) -> None:
        if not (context and (context.is_valid or attributes or context.trace_state)) or self._ended("add_link"):
            return
        limits = self._parts.limits
        bounded = BoundedAttributes(limits.max_link_attributes, attributes,
                                    max_value_len=limits.max_attribute_length, immutable=True)
        self._links += (trace.Link(context=context, attributes=bounded),)

    def update_name(self, name: str) -> None:
        if not self._ended("update_name"):
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self._ended("set_status"):
            return
        if isinstance(status, Status):
            if self._status.status_code is StatusCode.OK or status.status_code is StatusCode.UNSET:
                return
            if description is not None:
                logger.warning("Description %s ignored. Use either `Status` or `(StatusCode, Description)`",
                               description)
            self._status = status
        elif isinstance(status, StatusCode):
            if self._status.status_code is StatusCode.OK or status is StatusCode.UNSET:
                return
            self._status = Status(status, description)

    def record_exception(self, exception: BaseException, attributes: Mapping[str, Any] | None = None,
                         timestamp: int | None = None, escaped: bool = False) -> None:
        module = type(exception).__module__
        qualname = type(exception).__qualname__
        found: dict[str, Any] = {
            "exception.type": f"{module}.{qualname}" if module and module != "builtins" else qualname,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        if attributes:
            found.update(attributes)
        self.add_event("exception", found, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self._end_time is not None:
            logger.warning("Calling end() on an ended span.")
            return
        self._end_time = end_time if end_time is not None else time_ns()
        if self._end_metrics is not None:
            self._end_metrics()
        parts = self._parts
        attributes = self._attributes
        if type(attributes) is not dict:
            attributes._immutable = True  # as the SDK's end() leaves them
        if not parts.listening():
            return
        if parts.on_ending is not None:
            parts.on_ending(self)
        limits = parts.limits
        parts.processor.on_end(ReadableSpan(
            name=self._name, context=self._context, parent=self._parent, resource=parts.resource,
            attributes=attributes,
            events=BoundedList.from_seq(limits.max_events, self._events) if self._events else (),
            links=BoundedList.from_seq(limits.max_links, self._links) if self._links else (),
            kind=SpanKind.INTERNAL, status=self._status,
            start_time=self._start_time, end_time=self._end_time, instrumentation_info=parts.info,
            instrumentation_scope=parts.scope,
        ))

    def _ended(self, what: str) -> bool:
        if self._end_time is None:
            return False
        logger.warning("Tried calling %s on an ended span.", what)
        return True

    # -- what span processors read in on_start (the SDK hands them its own Span there) ------

    @property
    def name(self) -> str:
        return self._name

    @property
    def context(self) -> SpanContext:
        return self._context

    @property
    def parent(self) -> SpanContext | None:
        return self._parent

    @property
    def kind(self) -> SpanKind:
        return SpanKind.INTERNAL

    @property
    def attributes(self) -> Mapping[str, Any]:
        return MappingProxyType(self._attributes)

    @property
    def start_time(self) -> int | None:
        return self._start_time

    @property
    def end_time(self) -> int | None:
        return self._end_time

    @property
    def status(self) -> Status:
        return self._status

    @property
    def resource(self) -> Resource:
        return self._parts.resource


def _never() -> bool:
    return False


_PLAIN_TYPES = frozenset((str, int, float, bool))


def _plain(attributes: Mapping[str, Any], limits: Any, held: int) -> bool:
    """True when the SDK's attribute checks would keep these as they are, added to `held` others: few
    enough, non-empty string keys, scalar values, no length limit (a plain dict then holds them)."""
    if limits.max_span_attribute_length is not None:
        return False
    most = limits.max_span_attributes
    if most is not None and held + len(attributes) > most:
        return False
    for key, value in attributes.items():
        if type(value) not in _PLAIN_TYPES or type(key) is not str or not key:
            return False
    return True


class RecordedScope:
    """`SpanScope` for a `RecordedSpan`: current inside the block, errors recorded, ended on exit."""

    __slots__ = ("_span", "_token")

    def __init__(self, span: RecordedSpan) -> None:
        self._span = span
        self._token: object = None

    def __enter__(self) -> RecordedSpan:
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        return self._span

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        span = self._span
        try:
            otel_context.detach(self._token)  # type: ignore[arg-type]
            if isinstance(exc, Exception) and span.is_recording():
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
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
