"""Anthropic's Messages API (`POST /v1/messages`), with native SSE streaming.

The Messages API differs from Chat Completions in ways that matter for an agent: the system
prompt is a separate field, tool calls and results are content blocks, and results of one
turn's tool calls must arrive together in one user message. This module does that mapping.

The API has no JSON-schema response format, so `response_format` is served by a tool whose
input schema is the requested schema: its arguments come back as the answer's text.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import httpx

from ..core.errors import ConfigError, ModelError, ValidationError
from ..core.messages import AssistantMessage, Message, SystemMessage, ToolCall, ToolResultMessage, UserMessage
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

PROVIDER = "anthropic"
API_VERSION = "2023-06-01"
# The tool that carries a structured answer when a response_format is asked for.
RESPONSE_TOOL = "structured_response"
_RESPONSE_TOOL_DESCRIPTION = "Give the final answer in the required structure."


def _append(out: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    """Add blocks, merging into the previous message of the same role (the API wants turns to alternate)."""
    if not blocks:
        return
    if out and out[-1]["role"] == role:
        out[-1]["content"].extend(blocks)
    else:
        out.append({"role": role, "content": blocks})


def messages_to_anthropic(messages: Sequence[Message]) -> tuple[str | None, list[dict[str, Any]]]:
    """(system prompt, messages) in Messages API form."""
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for message in messages:
        if isinstance(message, SystemMessage):
            system.append(message.content)
        elif isinstance(message, UserMessage):
            _append(out, "user", [{"type": "text", "text": message.content}])
        elif isinstance(message, ToolResultMessage):
            block: dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": message.tool_call_id,
                "content": message.content,
            }
            if message.is_error:
                block["is_error"] = True
            _append(out, "user", [block])
        elif isinstance(message, AssistantMessage):
            blocks: list[dict[str, Any]] = []
            if message.content:  # the API rejects empty text blocks
                blocks.append({"type": "text", "text": message.content})
            blocks.extend(
                {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
                for call in message.tool_calls
            )
            _append(out, "assistant", blocks or [{"type": "text", "text": "(no content)"}])
        else:
            raise ValidationError(f"cannot send a {type(message).__name__} to a model")
    return ("\n\n".join(system) if system else None), out


def tool_to_anthropic(tool: ToolSpec) -> dict[str, Any]:
    return {"name": tool.name, "description": tool.description, "input_schema": tool.parameters}


def tool_choice_to_anthropic(choice: ToolChoice, tool_names: set[str]) -> dict[str, Any]:
    if choice in ("auto", "none"):
        return {"type": choice}
    if choice == "required":
        return {"type": "any"}
    if choice not in tool_names:
        raise ValidationError(
            f"tool_choice names {choice!r}, which is not among the tools offered",
            hint="use 'auto', 'required', 'none' or the name of one of the tools passed in",
        )
    return {"type": "tool", "name": choice}


class AnthropicModel(HTTPProvider):
    """`ChatModel` over Anthropic's Messages API."""

    provider = PROVIDER

    def __init__(
        self,
        model: str,
        api_key: str,
        base_url: str = "https://api.anthropic.com",
        max_tokens: int = 1024,
        *,
        timeout_s: float = 60.0,
        max_retries: int = 3,
        prices: PriceTable | None = None,
        client: httpx.AsyncClient | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        if not model or not model.strip():
            raise ConfigError("the Anthropic model needs a model name", hint="e.g. model='claude-sonnet-4-5'")
        if not api_key:
            raise ConfigError("the Anthropic model needs an api_key", hint="set it from ANTHROPIC_API_KEY")
        if not base_url or not base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"base_url {base_url!r} is not an http(s) URL", hint="e.g. 'https://api.anthropic.com'"
            )
        if max_tokens <= 0:
            raise ConfigError(
                f"max_tokens must be > 0, got {max_tokens}", hint="the API requires a positive limit"
            )
        super().__init__(timeout_s=timeout_s, max_retries=max_retries, client=client, sleep=sleep)
        self.name = model
        self.base_url = base_url.rstrip("/")
        self.max_tokens = max_tokens
        self.prices = prices or DEFAULT_PRICES
        self._headers = {
            "x-api-key": api_key,
            "anthropic-version": API_VERSION,
            "content-type": "application/json",
        }

    def build_body(
        self,
        messages: Sequence[Message],
        *,
        tools: Sequence[ToolSpec] = (),
        tool_choice: ToolChoice = "auto",
        response_format: dict[str, Any] | None = None,
        settings: ModelSettings | None = None,
    ) -> dict[str, Any]:
        """The request body, without the streaming flag."""
        system, wire = messages_to_anthropic(messages)
        max_tokens = settings.max_tokens if settings and settings.max_tokens is not None else self.max_tokens
        body: dict[str, Any] = {"model": self.name, "max_tokens": max_tokens, "messages": wire}
        if system is not None:
            body["system"] = system
        specs = list(tools)
        names = {t.name for t in specs}
        if response_format is not None:
            if RESPONSE_TOOL in names:
                raise ValidationError(
                    f"a tool may not be named {RESPONSE_TOOL!r} when a response_format is given",
                    hint="rename the tool",
                )
            specs.append(ToolSpec(RESPONSE_TOOL, _RESPONSE_TOOL_DESCRIPTION, response_format))
            # Free text is not allowed: the model either uses a tool or answers in structure.
            if tool_choice in ("auto", "required"):
                tool_choice = "required" if tools else RESPONSE_TOOL
            elif tool_choice == "none":
                tool_choice = RESPONSE_TOOL
            names.add(RESPONSE_TOOL)
        if specs:
            body["tools"] = [tool_to_anthropic(t) for t in specs]
            body["tool_choice"] = tool_choice_to_anthropic(tool_choice, names)
        elif tool_choice not in ("auto", "none"):
            raise ValidationError(
                f"tool_choice {tool_choice!r} needs tools, but none were given",
                hint="pass tools or use 'auto'",
            )
        if settings is not None and settings.temperature is not None:
            body["temperature"] = settings.temperature
        return body

    def _request(self, body: dict[str, Any]) -> httpx.Request:
        url = f"{self.base_url}/v1/messages"
        return self.client.build_request("POST", url, json=body, headers=self._headers)

    def _usage(self, data: dict[str, Any]) -> Usage:
        # Cached prompt tokens are still prompt tokens the model read.
        input_tokens = sum(
            int(data.get(k) or 0)
            for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
        )
        return self.prices.usage(self.name, input_tokens, int(data.get("output_tokens") or 0))

    def _message(self, text: list[str], calls: list[ToolCall]) -> AssistantMessage:
        structured = [c for c in calls if c.name == RESPONSE_TOOL]
        if structured:
            text = [json.dumps(structured[-1].arguments)]
        tool_calls = tuple(c for c in calls if c.name != RESPONSE_TOOL)
        content = "".join(text) if text or not tool_calls else None
        return AssistantMessage(content=content, tool_calls=tool_calls)

    def parse_response(self, data: dict[str, Any]) -> ModelResponse:
        """A Messages API response body → ModelResponse."""
        if data.get("type") == "error":
            raise ModelError(f"{PROVIDER} model {self.name!r} returned an error: {data.get('error')!r}")
        if not isinstance(data.get("content"), list):
            raise ModelError(f"{PROVIDER} model {self.name!r} returned a message without content blocks")
        text: list[str] = []
        calls: list[ToolCall] = []
        for block in data["content"]:
            if block.get("type") == "text":
                text.append(block.get("text") or "")
            elif block.get("type") == "tool_use":
                name = str(block.get("name") or "")
                arguments = decode_tool_arguments(PROVIDER, name, block.get("input"))
                calls.append(ToolCall(str(block.get("id")), name, arguments))
        return ModelResponse(
            self._message(text, calls),
            self._usage(data.get("usage") or {}),
            str(data.get("model") or self.name),
            data.get("stop_reason"),
        )

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
        tool_blocks: dict[int, PartialCall] = {}  # by content block index
        usage: dict[str, Any] = {}
        model, stop_reason = self.name, None
        try:
            async for sse in iter_sse(response, PROVIDER):
                event = parse_json_event(PROVIDER, sse.data)
                kind = event.get("type") or sse.event
                if kind == "message_start":
                    message = event.get("message") or {}
                    model = str(message.get("model") or model)
                    usage.update(message.get("usage") or {})
                elif kind == "content_block_start":
                    block = event.get("content_block") or {}
                    if block.get("type") == "tool_use":
                        partial = PartialCall(block.get("id"), block.get("name"))
                        tool_blocks[int(event.get("index", 0))] = partial
                    elif block.get("type") == "text" and block.get("text"):
                        text.append(block["text"])
                        yield TextDelta(block["text"])
                elif kind == "content_block_delta":
                    delta = event.get("delta") or {}
                    partial = tool_blocks.get(int(event.get("index", 0)))
                    if delta.get("type") == "text_delta" and delta.get("text"):
                        text.append(delta["text"])
                        yield TextDelta(delta["text"])
                    elif delta.get("type") == "input_json_delta" and delta.get("partial_json") and partial:
                        if partial.name == RESPONSE_TOOL:  # the structured answer is the text
                            text.append(delta["partial_json"])
                            yield TextDelta(delta["partial_json"])
                        else:
                            partial.fragments.append(delta["partial_json"])
                elif kind == "message_delta":
                    stop_reason = (event.get("delta") or {}).get("stop_reason") or stop_reason
                    usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
                elif kind == "error":
                    raise ModelError(
                        f"{PROVIDER} model {self.name!r} failed mid-stream: {event.get('error')!r}",
                        hint="overloaded or rate-limited errors are transient; try again",
                    )
                elif kind == "message_stop":
                    break
        finally:
            await response.aclose()
        calls = [
            ToolCall(str(p.id), str(p.name), decode_tool_arguments(PROVIDER, str(p.name), p.arguments))
            for _, p in sorted(tool_blocks.items())
            if p.name != RESPONSE_TOOL
        ]
        if any(p.name == RESPONSE_TOOL for p in tool_blocks.values()):
            decode_tool_arguments(PROVIDER, RESPONSE_TOOL, "".join(text))  # raises if it is not JSON
        yield StreamDone(ModelResponse(self._message(text, calls), self._usage(usage), model, stop_reason))
