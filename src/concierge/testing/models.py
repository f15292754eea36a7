"""LLM test doubles: the only stand-ins for a model that tests should use.

`ScriptedModel` plays a fixed list of steps; `FunctionModel` asks a function for each step,
so a test double can react to the conversation it is given. Both record what they were sent.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from ..core.messages import AssistantMessage, Message, ToolCall, message_text
from ..core.usage import Usage
from ..llm.base import ModelResponse, ModelSettings, StreamDone, StreamEvent, TextDelta, ToolChoice, ToolSpec
from ..llm.tokens import EstimatingCounter

# A step is: final text (str), one or more tool calls, a whole AssistantMessage or ModelResponse.
Step: TypeAlias = str | ToolCall | Sequence[ToolCall] | AssistantMessage | ModelResponse


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """What a test double was asked: for assertions about what the runtime sent."""

    messages: tuple[Message, ...]
    tools: tuple[ToolSpec, ...]
    tool_choice: ToolChoice
    response_format: dict[str, Any] | None


_call_ids = itertools.count(1)


def call(name: str, /, **arguments: Any) -> ToolCall:
    """A tool call step: `call("get_order", order_id="W1")`."""
    return ToolCall(f"call_{next(_call_ids)}", name, arguments)


_counter = EstimatingCounter()
_count = _counter.count
# Bound on the per-model memo of assistant-message token counts (see `_TokenMemo`).
_MEMO_MAX = 1 << 15


class _TokenMemo:
    """Estimated tokens per message for usage figures, assistant messages remembered by identity.

    A conversation hands the same assistant messages back on every later call, and their text
    (tool calls as canonical JSON) is the costly part to build; other messages are their content.
    `_alive` keeps each remembered message alive, so its id cannot be reused while it is a key;
    both start over once `_MEMO_MAX` messages are remembered.
    """

    __slots__ = ("_alive", "_tokens")

    def __init__(self) -> None:
        self._tokens: dict[int, int] = {}
        self._alive: list[AssistantMessage] = []

    def tokens(self, message: Message) -> int:
        if not isinstance(message, AssistantMessage):
            return _count(message.content)  # its text is its content
        tokens = self._tokens.get(id(message))
        if tokens is None:
            tokens = _counter.count(message_text(message))
            if len(self._alive) >= _MEMO_MAX:
                self._tokens.clear()
                self._alive.clear()
            self._tokens[id(message)] = tokens
            self._alive.append(message)
        return tokens


def _to_response(
    step: Step, messages: Sequence[Message], model: str, memo: _TokenMemo | None = None
) -> ModelResponse:
    if isinstance(step, ModelResponse):
        return step
    if isinstance(step, str):
        message = AssistantMessage(content=step)
    elif isinstance(step, ToolCall):
        message = AssistantMessage(tool_calls=(step,))
    elif isinstance(step, AssistantMessage):
        message = step
    else:
        message = AssistantMessage(tool_calls=tuple(step))
    tokens = (memo or _TokenMemo()).tokens
    sent = 0
    for m in messages:
        sent += tokens(m) if isinstance(m, AssistantMessage) else _count(m.content)  # as `tokens` counts it
    usage = Usage(sent, tokens(message))
    return ModelResponse(message, usage, model, "tool_calls" if message.tool_calls else "stop")


class FunctionModel:
    """Each call asks `fn(messages, tools)` (sync or async) for the next step.

    `stream()` sends the text word by word, `token_delay_s` apart, so streaming front ends can be
    tested with a double that streams like a real model.
    """

    def __init__(
        self,
        fn: Callable[[Sequence[Message], Sequence[ToolSpec]], Step | Awaitable[Step]],
        *,
        name: str = "function-model",
        record: bool = True,
        token_delay_s: float = 0.0,
    ) -> None:
        if not isinstance(token_delay_s, int | float) or isinstance(token_delay_s, bool) or token_delay_s < 0:
            raise ValueError(f"token_delay_s must be a number >= 0, got {token_delay_s!r}")
        self.name = name
        self.token_delay_s = float(token_delay_s)
        self._fn = fn
        self._is_async = inspect.iscoroutinefunction(fn)
        self._record = record
        self._memo = _TokenMemo()
        self.requests: list[ModelRequest] = []

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        tools: Sequence[ToolSpec] = (),
        tool_choice: ToolChoice = "auto",
        response_format: dict[str, Any] | None = None,
        settings: ModelSettings | None = None,
    ) -> ModelResponse:
        if self._record:
            self.requests.append(ModelRequest(tuple(messages), tuple(tools), tool_choice, response_format))
        step = self._fn(messages, tools)
        if self._is_async:
            step = await step  # type: ignore[misc]
        return _to_response(step, messages, self.name, self._memo)  # type: ignore[arg-type]

    async def stream(
        self,
        messages: Sequence[Message],
        *,
        tools: Sequence[ToolSpec] = (),
        tool_choice: ToolChoice = "auto",
        response_format: dict[str, Any] | None = None,
        settings: ModelSettings | None = None,
    ) -> AsyncIterator[StreamEvent]:
        response = await self.complete(messages, tools=tools, tool_choice=tool_choice,
                                       response_format=response_format, settings=settings)
        for piece in re.findall(r"\S+\s*|\s+", response.message.content or ""):
            if self.token_delay_s:
                await asyncio.sleep(self.token_delay_s)
            yield TextDelta(piece)
        yield StreamDone(response)


class ScriptedModel(FunctionModel):
    """Plays `steps` in order; running out of steps is a test failure, said plainly."""

    def __init__(self, steps: Sequence[Step], *, name: str = "scripted-model", token_delay_s: float = 0.0) -> None:
        self._steps = list(steps)
        self._next = 0
        super().__init__(self._play, name=name, token_delay_s=token_delay_s)

    def _play(self, messages: Sequence[Message], tools: Sequence[ToolSpec]) -> Step:
        if self._next >= len(self._steps):
            raise AssertionError(
                f"ScriptedModel ran out of steps after {len(self._steps)} calls; the runtime asked for more"
            )
        step = self._steps[self._next]
        self._next += 1
        return step

    @property
    def remaining(self) -> int:
        return len(self._steps) - self._next


class EchoModel(FunctionModel):
    """Answers with the user's last words after `delay_s`: a model whose only cost is its latency.

    For load tests and multi-worker tests, where what matters is what the platform adds around
    a model call that takes a known time.
    """

    def __init__(self, delay_s: float = 0.0, *, name: str = "echo-model", token_delay_s: float = 0.0) -> None:
        if not isinstance(delay_s, int | float) or isinstance(delay_s, bool) or delay_s < 0:
            raise ValueError(f"delay_s must be a number >= 0, got {delay_s!r}")
        self.delay_s = float(delay_s)
        super().__init__(self._echo, name=name, record=False, token_delay_s=token_delay_s)

    async def _echo(self, messages: Sequence[Message], tools: Sequence[ToolSpec]) -> Step:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        last = next((m for m in reversed(messages) if getattr(m, "role", None) == "user"), None)
        return f"You said: {message_text(last) if last is not None else ''}"
