"""Any server that speaks the OpenAI Chat Completions API (OpenAI, vLLM, llama.cpp, Ollama, ...).

One wire format covers most hosted and self-hosted models, so this provider is the default
route to a model that is not embedded. Conversion to and from the wire format lives here and
nowhere else; retries and SSE parsing are shared with the other HTTP providers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import httpx

from ..core.errors import ConfigError, ModelError, ValidationError
from ..core.messages import (
    AssistantMessage,
    Message,
    SystemMessage,
    ToolCall,
    ToolResultMessage,
    UserMessage,
    message_text,
)
from ..core.usage import Usage
from ._http import (
    HTTPProvider,
    PartialCall,
    decode_tool_arguments,
    iter_sse,
    parse_json_event,
)
from .base import ModelResponse, ModelSettings, StreamDone, StreamEvent, TextDelta, ToolChoice, ToolSpec
from .pricing import DEFAULT_PRICES, PriceTable
from .tokens import EstimatingCounter, count_messages

PROVIDER = "openai-compatible"
_ESTIMATOR = EstimatingCounter()


def message_to_openai(message: Message) -> dict[str, Any]:
    """One of our messages in Chat Completions form."""
    if isinstance(message, AssistantMessage):
        # "" rather than null: some servers reject a null or missing content next to tool calls.
        data: dict[str, Any] = {"role": "assistant", "content": message.content or ""}
        if message.tool_calls:
            data["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": json.dumps(call.arguments, default=str)},
                }
                for call in message.tool_calls
            ]
        return data
    if isinstance(message, ToolResultMessage):
        # The wire format has no error flag, so an error is marked in the text the model reads.
        content = f"Error: {message.content}" if message.is_error else message.content
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": content}
    if isinstance(message, (SystemMessage, UserMessage)):
        return {"role": message.role, "content": message.content}
    raise ValidationError(
        f"cannot send a {type(message).__name__} to a model", hint="use the message types of concierge.core"
    )


def tool_to_openai(tool: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": tool.name, "description": tool.description, "parameters": tool.parameters},
    }


def tool_choice_to_openai(choice: ToolChoice, tools: Sequence[ToolSpec]) -> str | dict[str, Any]:
    if choice in ("auto", "required", "none"):
        return choice
    if choice not in {t.name for t in tools}:
        raise ValidationError(
            f"tool_choice names {choice!r}, which is not among the tools offered",
            hint="use 'auto', 'required', 'none' or the name of one of the tools passed in",
        )
    return {"type": "function", "function": {"name": choice}}


def response_format_to_openai(response_format: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema becomes a `json_schema` response format; OpenAI-shaped values pass through."""
    kind = response_format.get("type")
    if kind in ("json_object", "text") or (kind == "json_schema" and "json_schema" in response_format):
        return response_format
    return {"type": "json_schema", "json_schema": {"name": "response", "schema": response_format}}


class OpenAICompatibleModel(HTTPProvider):
    """`ChatModel` over `POST {base_url}/chat/completions`, with native SSE streaming."""

    provider = PROVIDER
    stream_fields = {"stream_options": {"include_usage": True}}

    def __init__(
        self,
        model: str,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout_s: float = 60.0,
        max_retries: int = 3,
        prices: PriceTable | None = None,
        client: httpx.AsyncClient | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        headers: dict[str, str] | None = None,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        if not model or not model.strip():
            raise ConfigError(
                "the OpenAI-compatible model needs a model name", hint="e.g. model='gpt-4o-mini'"
            )
        if not base_url or not base_url.strip():
            raise ConfigError(
                "the OpenAI-compatible model needs a base_url",
                hint="the API root, e.g. 'https://api.openai.com/v1' or 'http://localhost:8000/v1'",
            )
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"base_url {base_url!r} is not an http(s) URL", hint="start it with http:// or https://"
            )
        super().__init__(timeout_s=timeout_s, max_retries=max_retries, client=client, sleep=sleep)
        self.name = model
        self.base_url = base_url.rstrip("/")
        self.prices = prices or DEFAULT_PRICES
        # Server-specific parameters (top_k, repeat_penalty, ...) sent with every request.
        self.extra_body = dict(extra_body or {})
        self._headers = {"Content-Type": "application/json", **(headers or {})}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"

    def build_body(
        self,
        messages: Sequence[Message],
        *,
        tools: Sequence[ToolSpec] = (),
        tool_choice: ToolChoice = "auto",
        response_format: dict[str, Any] | None = None,
        settings: ModelSettings | None = None,
    ) -> dict[str, Any]:
        """The request body, without the streaming flags."""
        body: dict[str, Any] = {
            **self.extra_body,
            "model": self.name,
            "messages": [message_to_openai(m) for m in messages],
        }
        if tools:
            body["tools"] = [tool_to_openai(t) for t in tools]
            body["tool_choice"] = tool_choice_to_openai(tool_choice, tools)
        elif tool_choice not in ("auto", "none"):
            raise ValidationError(
                f"tool_choice {tool_choice!r} needs tools, but none were given",
                hint="pass tools or use 'auto'",
            )
        if response_format is not None:
            body["response_format"] = response_format_to_openai(response_format)
        if settings is not None:
            if settings.temperature is not None:
                body["temperature"] = settings.temperature
            if settings.max_tokens is not None:
                body["max_tokens"] = settings.max_tokens
            if settings.seed is not None:
                body["seed"] = settings.seed
        return body

    def _request(self, body: dict[str, Any]) -> httpx.Request:
        return self.client.build_request(
            "POST", f"{self.base_url}/chat/completions", json=body, headers=self._headers
        )

    def _usage(self, data: dict[str, Any] | None) -> Usage:
        data = data or {}
        return self.prices.usage(
            self.name, int(data.get("prompt_tokens") or 0), int(data.get("completion_tokens") or 0)
        )

    def _tool_call(self, index: int, call_id: str | None, name: str | None, arguments: Any) -> ToolCall:
        if not name:
            raise ModelError(f"{PROVIDER} model {self.name!r} returned a tool call without a function name")
        return ToolCall(call_id or f"call_{index}", name, decode_tool_arguments(PROVIDER, name, arguments))

    def parse_response(self, data: dict[str, Any]) -> ModelResponse:
        """A Chat Completions response body → ModelResponse."""
        if "error" in data and not data.get("choices"):
            raise ModelError(f"{PROVIDER} model {self.name!r} returned an error: {data['error']!r}")
        choices = data.get("choices") or []
        if not choices or not isinstance(choices[0], dict):
            raise ModelError(
                f"{PROVIDER} model {self.name!r} returned no choices",
                hint="check that the server implements /chat/completions",
            )
        choice = choices[0]
        wire = choice.get("message") or {}
        calls = []
        for index, call in enumerate(wire.get("tool_calls") or ()):
            function = call.get("function") or {}
            arguments = function.get("arguments")
            calls.append(self._tool_call(index, call.get("id"), function.get("name"), arguments))
        message = AssistantMessage(content=wire.get("content"), tool_calls=tuple(calls))
        model = str(data.get("model") or self.name)
        return ModelResponse(message, self._usage(data.get("usage")), model, choice.get("finish_reason"))

    async def stream(
        self,
        messages: Sequence[Message],
        *,
        tools: Sequence[ToolSpec] = (),
        tool_choice: ToolChoice = "auto",
        response_format: dict[str, Any] | None = None,
        settings: ModelSettings | None = None,
    ) -> AsyncIterator[StreamEvent]:
        response = await self._open_stream(messages, tools, tool_choice, response_format, settings)
        text: list[str] = []
        partial_calls: dict[int, PartialCall] = {}  # by the index the server gives each call
        usage: dict[str, Any] | None = None
        finish_reason: str | None = None
        model = self.name
        try:
            async for event in iter_sse(response, PROVIDER):
                if event.data.strip() == "[DONE]":
                    break
                chunk = parse_json_event(PROVIDER, event.data)
                if "error" in chunk:
                    raise ModelError(f"{PROVIDER} model {self.name!r} failed mid-stream: {chunk['error']!r}")
                model = str(chunk.get("model") or model)
                usage = chunk.get("usage") or usage
                for choice in chunk.get("choices") or ():
                    finish_reason = choice.get("finish_reason") or finish_reason
                    delta = choice.get("delta") or {}
                    if delta.get("content"):
                        text.append(delta["content"])
                        yield TextDelta(delta["content"])
                    for fragment in delta.get("tool_calls") or ():
                        index = int(fragment.get("index", len(partial_calls)))
                        partial = partial_calls.setdefault(index, PartialCall())
                        function = fragment.get("function") or {}
                        partial.id = fragment.get("id") or partial.id
                        partial.name = function.get("name") or partial.name
                        if function.get("arguments"):
                            partial.fragments.append(function["arguments"])
        finally:
            await response.aclose()
        calls = tuple(
            self._tool_call(index, partial.id, partial.name, partial.arguments)
            for index, partial in sorted(partial_calls.items())
        )
        message = AssistantMessage(content="".join(text) if text or not calls else None, tool_calls=calls)
        if usage is None:
            # Some servers ignore `include_usage`; an estimate keeps token and cost budgets working.
            usage = {
                "prompt_tokens": count_messages(_ESTIMATOR, messages),
                "completion_tokens": _ESTIMATOR.count(message_text(message)),
            }
        yield StreamDone(ModelResponse(message, self._usage(usage), model, finish_reason))
