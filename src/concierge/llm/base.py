"""The `ChatModel` protocol every provider implements, and the request/response types.

A provider turns (messages, tool specs, tool choice, optional JSON-schema response format)
into an `AssistantMessage` with usage. Everything provider-specific (wire format, retries,
grammars) stays inside the provider's own module.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeAlias, runtime_checkable

from ..core.messages import AssistantMessage, Message
from ..core.usage import Usage

# "auto": model decides; "required": must call some tool; "none": text only;
# any other string: must call the tool of that name.
ToolChoice: TypeAlias = Literal["auto", "required", "none"] | str


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """What a model is told about a tool: name, purpose, JSON schema of its arguments."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ModelSettings:
    temperature: float | None = None
    max_tokens: int | None = None
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class ModelResponse:
    message: AssistantMessage
    usage: Usage = Usage()
    model: str = ""
    finish_reason: str | None = None


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of assistant text as it is generated."""

    text: str


@dataclass(frozen=True, slots=True)
class StreamDone:
    """The last stream event: the complete response, tool calls parsed."""

    response: ModelResponse


StreamEvent: TypeAlias = TextDelta | StreamDone


@runtime_checkable
class ChatModel(Protocol):
    """Anything that can answer a conversation, optionally with tool calls."""

    name: str

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        tools: Sequence[ToolSpec] = (),
        tool_choice: ToolChoice = "auto",
        response_format: dict[str, Any] | None = None,
        settings: ModelSettings | None = None,
    ) -> ModelResponse: ...

    def stream(
        self,
        messages: Sequence[Message],
        *,
        tools: Sequence[ToolSpec] = (),
        tool_choice: ToolChoice = "auto",
        response_format: dict[str, Any] | None = None,
        settings: ModelSettings | None = None,
    ) -> AsyncIterator[StreamEvent]: ...


class StreamingFromComplete:
    """Mixin: a provider without native streaming streams its whole answer as one delta."""

    async def stream(
        self,
        messages: Sequence[Message],
        *,
        tools: Sequence[ToolSpec] = (),
        tool_choice: ToolChoice = "auto",
        response_format: dict[str, Any] | None = None,
        settings: ModelSettings | None = None,
    ) -> AsyncIterator[StreamEvent]:
        response = await self.complete(  # type: ignore[attr-defined]
            messages, tools=tools, tool_choice=tool_choice, response_format=response_format, settings=settings
        )
        if response.message.content:
            yield TextDelta(response.message.content)
        yield StreamDone(response)
