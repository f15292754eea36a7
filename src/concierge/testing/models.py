"""LLM test doubles: the only stand-ins for a model that tests should use.

`ScriptedModel` plays a fixed list of steps; `FunctionModel` asks a function for each step,
so a test double can react to the conversation it is given. Both record what they were sent.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from ..core.messages import AssistantMessage, Message, ToolCall, message_text
from ..core.usage import Usage
from ..llm.base import ModelResponse, ModelSettings, StreamingFromComplete, ToolChoice, ToolSpec
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


def _to_response(step: Step, messages: Sequence[Message], model: str) -> ModelResponse:
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
    usage = Usage(sum(_counter.count(message_text(m)) for m in messages), _counter.count(message_text(message)))
    return ModelResponse(message, usage, model, "tool_calls" if message.tool_calls else "stop")


class FunctionModel(StreamingFromComplete):
    """Each call asks `fn(messages, tools)` (sync or async) for the next step."""

    def __init__(
        self,
        fn: Callable[[Sequence[Message], Sequence[ToolSpec]], Step | Awaitable[Step]],
        *,
        name: str = "function-model",
        record: bool = True,
    ) -> None:
        self.name = name
        self._fn = fn
        self._is_async = inspect.iscoroutinefunction(fn)
        self._record = record
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
        return _to_response(step, messages, self.name)  # type: ignore[arg-type]


class ScriptedModel(FunctionModel):
    """Plays `steps` in order; running out of steps is a test failure, said plainly."""

    def __init__(self, steps: Sequence[Step], *, name: str = "scripted-model") -> None:
        self._steps = list(steps)
        self._next = 0
        super().__init__(self._play, name=name)

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
