"""Shared HTTP plumbing for the hosted-model providers: retries and server-sent events.

Providers fail transiently (rate limits, overloaded backends, dropped connections), so every
request goes through `send_with_retries`, which retries only what is worth retrying and turns
everything else into a `ModelHTTPError` that says what to do. `sleep` and `rand` are injected
so tests exercise the backoff without waiting.
"""

from __future__ import annotations

import asyncio
import json
import random
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

import httpx

from ..core.errors import ConfigError, ModelError, ModelHTTPError
from ..core.messages import Message
from . import guard
from .base import ModelResponse, ModelSettings, ToolChoice, ToolSpec

BODY_EXCERPT_CHARS = 500


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter; a server's `Retry-After` wins, up to a cap."""

    max_retries: int = 3
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0
    max_retry_after_s: float = 30.0
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep
    rand: Callable[[], float] = field(default=random.random)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `attempt` (0-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after_s)
        ceiling = min(self.max_delay_s, self.base_delay_s * (2**attempt))
        # "Equal jitter": never less than half the ceiling, so retries stay spaced out.
        return ceiling / 2 + self.rand() * ceiling / 2


def is_retryable_status(status: int) -> bool:
    return status == 429 or status >= 500


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def _hint_for(status: int) -> str:
    if status in (401, 403):
        return "check the API key and that it may use this model"
    if status == 404:
        return "check the model name and the base URL"
    if status == 429:
        return "rate limited: slow down, raise the quota, or increase max_retries"
    if status >= 500:
        return "the provider is failing or overloaded; try again later"
    return "the provider rejected the request; check the model name and that it supports these options"


def excerpt(text: str, limit: int = BODY_EXCERPT_CHARS) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + "..."


def http_error(provider: str, response: httpx.Response, body: str, attempts: int) -> ModelHTTPError:
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    short = excerpt(body)
    return ModelHTTPError(
        f"{provider} returned HTTP {response.status_code}{tries}: {short or '(empty body)'}",
        status_code=response.status_code,
        body=short,
        hint=_hint_for(response.status_code),
    )


async def send_with_retries(
    client: httpx.AsyncClient,
    request: httpx.Request,
    *,
    provider: str,
    policy: RetryPolicy,
    stream: bool = False,
) -> httpx.Response:
    """Send `request`, retrying 429, 5xx and transport errors; return a 2xx/3xx response.

    With `stream=True` the returned response is open and the caller must `aclose()` it;
    only connecting and the status line are retried, never a half-read stream.
    """
    attempts = policy.max_retries + 1
    for attempt in range(attempts):
        try:
            response = await client.send(request, stream=stream)
        except httpx.TransportError as exc:
            if attempt + 1 >= attempts:
                raise ModelHTTPError(
                    f"{provider} request to {request.url} failed after {attempts} attempts: "
                    f"{type(exc).__name__}: {exc}",
                    status_code=None,
                    hint="check the base URL, that the server is running, and the network; "
                    "raise timeout_s for slow models",
                ) from exc
            await policy.sleep(policy.delay(attempt))
            continue
        if response.status_code < 400:
            return response
        body = (await response.aread()).decode("utf-8", errors="replace")
        await response.aclose()
        if not is_retryable_status(response.status_code) or attempt + 1 >= attempts:
            raise http_error(provider, response, body, attempt + 1)
        await policy.sleep(policy.delay(attempt, _retry_after(response)))
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True, slots=True)
class SSEvent:
    event: str | None
    data: str


@dataclass(slots=True)
class PartialCall:
    """A streamed tool call whose id, name and JSON arguments arrive in pieces."""

    id: str | None = None
    name: str | None = None
    fragments: list[str] = field(default_factory=list)

    @property
    def arguments(self) -> str:
        return "".join(self.fragments)


async def iter_sse(response: httpx.Response, provider: str) -> AsyncIterator[SSEvent]:
    """Parse a `text/event-stream` body into events (only the fields providers use)."""
    try:
        async for event in _parse_sse(response):
            yield event
    except httpx.TransportError as exc:
        # Half an answer cannot be retried transparently: the caller decides whether to ask again.
        raise ModelHTTPError(
            f"{provider} stream broke off: {type(exc).__name__}: {exc}",
            status_code=None,
            hint="the connection dropped or timed out mid-answer; retry the turn, or raise timeout_s",
        ) from exc


async def _parse_sse(response: httpx.Response) -> AsyncIterator[SSEvent]:
    event: str | None = None
    data: list[str] = []
    async for line in response.aiter_lines():
        line = line.rstrip("\r")
        if not line:
            if data:
                yield SSEvent(event, "\n".join(data))
            event, data = None, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
    if data:
        yield SSEvent(event, "\n".join(data))


def json_body(provider: str, response: httpx.Response) -> dict[str, Any]:
    """The response's JSON object, or a ModelError that shows what came back instead."""
    try:
        data = response.json()
    except ValueError as exc:
        raise ModelError(
            f"{provider} returned a body that is not JSON: {excerpt(response.text)!r}",
            hint="check that the base URL points at the API root, not a web page or proxy",
        ) from exc
    if not isinstance(data, dict):
        raise ModelError(f"{provider} returned JSON that is not an object: {excerpt(response.text)!r}")
    return data


def parse_json_event(provider: str, data: str) -> dict[str, Any]:
    """One streamed event's JSON payload."""
    try:
        payload = json.loads(data)
    except ValueError as exc:
        raise ModelError(f"{provider} streamed an event that is not JSON: {excerpt(data)!r}") from exc
    if not isinstance(payload, dict):
        raise ModelError(f"{provider} streamed JSON that is not an object: {excerpt(data)!r}")
    return payload


def decode_tool_arguments(provider: str, tool_name: str, raw: str | dict[str, Any] | None) -> dict[str, Any]:
    """A tool call's arguments as a dict; malformed JSON is the model's fault, said plainly."""
    if raw is None or raw == "":
        return {}
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ModelError(
            f"{provider} returned malformed JSON arguments for tool {tool_name!r}: "
            f"{excerpt(str(raw), 200)!r}",
            hint="the model produced invalid JSON; retry, lower the temperature, or use a model "
            "with reliable tool calling",
        ) from exc
    if not isinstance(value, dict):
        raise ModelError(
            f"{provider} returned arguments for tool {tool_name!r} that are not a JSON object: "
            f"{excerpt(str(raw), 200)!r}",
            hint="tool arguments must be a JSON object of named parameters",
        )
    return value


class HTTPProvider(ABC):
    """Client ownership and retry settings shared by the HTTP providers.

    A client handed in is the caller's to configure (timeouts, proxies) and to close; one
    created here uses `timeout_s` and is closed by `aclose()`.
    It is created lazily so that constructing a model never needs a running event loop.
    """

    def __init__(
        self,
        *,
        timeout_s: float,
        max_retries: int,
        client: httpx.AsyncClient | None,
        sleep: Callable[[float], Awaitable[Any]],
    ) -> None:
        if timeout_s <= 0:
            raise ConfigError(f"timeout_s must be > 0, got {timeout_s}", hint="give seconds, e.g. 60")
        if max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, got {max_retries}", hint="0 disables retries")
        self.timeout_s = timeout_s
        self.retry = RetryPolicy(max_retries=max_retries, sleep=sleep)
        self._client = client
        self._owns_client = client is None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout_s)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None and self._owns_client:
            await self._client.aclose()
            self._client = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # Set by each provider: its name for the test guard and errors, and extra fields a stream asks for.
    provider: str = "http"
    stream_fields: ClassVar[dict[str, Any]] = {}

    @abstractmethod
    def build_body(self, messages: Sequence[Message], **options: Any) -> dict[str, Any]: ...

    @abstractmethod
    def _request(self, body: dict[str, Any]) -> httpx.Request: ...

    @abstractmethod
    def parse_response(self, data: dict[str, Any]) -> ModelResponse: ...

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        tools: Sequence[ToolSpec] = (),
        tool_choice: ToolChoice = "auto",
        response_format: dict[str, Any] | None = None,
        settings: ModelSettings | None = None,
    ) -> ModelResponse:
        """One request: wire body → retried HTTP call → parsed response."""
        guard.check_real_model_allowed(self.provider)
        body = self.build_body(
            messages, tools=tools, tool_choice=tool_choice, response_format=response_format, settings=settings
        )
        response = await send_with_retries(self.client, self._request(body), provider=self.provider,
                                           policy=self.retry)
        return self.parse_response(json_body(self.provider, response))

    async def _open_stream(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        tool_choice: ToolChoice,
        response_format: dict[str, Any] | None,
        settings: ModelSettings | None,
    ) -> httpx.Response:
        """The streaming request, sent with retries; the provider reads its own SSE events from it."""
        guard.check_real_model_allowed(self.provider)
        body = self.build_body(
            messages, tools=tools, tool_choice=tool_choice, response_format=response_format, settings=settings
        )
        body.update(stream=True, **self.stream_fields)
        return await send_with_retries(
            self.client, self._request(body), provider=self.provider, policy=self.retry, stream=True
        )
