"""The runtime's side of the strategy seam: one running turn, as a strategy may touch it.

A strategy sees the model, the tools and the conversation, and acts only through these methods,
each of which goes through the runtime's own machinery (the executor, the loop guard, the trace,
the event bus). Nothing here widens what a turn may do; it only lets a strategy order the steps.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..core.events import EventType
from ..core.messages import AssistantMessage, Message, ToolCall, ToolResultMessage
from ..core.reasoning import Action, ReasoningStep, Strategy
from ..llm.base import ChatModel, ModelResponse, ModelSettings, StreamingFromComplete, ToolChoice, ToolSpec
from ..tools.outcome import ToolOutcome
from ..tools.registry import ToolRegistry
from ..tools.tool import ToolContext
from .context import TokenTally
from .loop_guard import LoopGuard
from .result import TurnState
from .sessions.base import Session

if TYPE_CHECKING:
    from .runtime import Runtime

SUMMARY_CHARS = 200  # how much of a text a trace or reasoning step keeps
_CONFIDENCE = re.compile(r"confiden\w*\W{0,3}(1(?:\.0+)?|0?\.\d+|0)\b", re.IGNORECASE)
UNSTATED_CONFIDENCE = 0.5  # what a thought is worth when the model did not rate it


def stated_confidence(text: str | None) -> float | None:
    """The confidence a model wrote into its thought ("... confidence 0.7"), if it wrote one."""
    match = _CONFIDENCE.search(text or "")
    return float(match.group(1)) if match else None


class RuntimeDriver:
    """`TurnDriver` over the runtime's state for one turn."""

    def __init__(self, runtime: Runtime, session: Session, state: TurnState, guard: LoopGuard, user_message: str,
                 first_choice: ToolChoice | None) -> None:
        self.runtime, self.session, self.state, self.guard = runtime, session, state, guard
        self.user_message = user_message
        self.first_choice = first_choice
        self.model: ChatModel = AccountedModel(runtime, state)
        self.registry: ToolRegistry = runtime.agent.registry
        self.conversation_turns = session.turns
        self._tool_context: ToolContext | None = None

    @property
    def tool_context(self) -> ToolContext:
        """Built on first use: the default ReAct loop makes its own."""
        if self._tool_context is None:
            self._tool_context = self.runtime._context(self.session, self.state)
        return self._tool_context

    @property
    def tool_results(self) -> list[ToolResultMessage]:
        """Every tool result of the session so far (for entity counting): history and this turn."""
        return [m for m in (*self.session.history, *self.state.messages) if isinstance(m, ToolResultMessage)]

    async def conversation(self) -> list[Message]:
        runtime, session, state = self.runtime, self.session, self.state
        window = await runtime.context.build(state.instructions or runtime.instructions, session, state.window_start,
                                             state.summary,
                                             (*session.pinned_facts, *state.new_pins), state.messages, TokenTally())
        return list(window.messages)

    async def react(self, *, strategy: Strategy = "react", tool_choice: ToolChoice | None = None,
                    ask_below: float | None = None) -> tuple[str, str | None]:
        return await self.runtime._loop(self.session, self.state, self.guard, tool_choice or self.first_choice,
                                        strategy=strategy, ask_below=ask_below)

    async def call_tool(self, call: ToolCall) -> ToolOutcome:
        self.state.messages.append(AssistantMessage(content=None, tool_calls=(call,)))
        _, outcome = await self.runtime._run_tool(call, self.tool_context, self.guard, self.state)
        return outcome

    async def record(self, step: ReasoningStep) -> None:
        await record_step(self.state, step)

    def say(self, text: str) -> tuple[str, None]:
        self.state.messages.append(AssistantMessage(content=text))
        return text, None


class AccountedModel(StreamingFromComplete):
    """The agent's model as a strategy calls it (a planner, a branch proposer): each call counts in
    the turn's usage and limits and shows in its trace and events, like the loop's own calls."""

    def __init__(self, runtime: Runtime, state: TurnState) -> None:
        self.runtime, self.state = runtime, state
        self.name = runtime.agent.model.name

    async def complete(self, messages: Sequence[Message], *, tools: Sequence[ToolSpec] = (),
                       tool_choice: ToolChoice = "auto", response_format: dict[str, Any] | None = None,
                       settings: ModelSettings | None = None) -> ModelResponse:
        response: ModelResponse = await self.runtime._call_model(messages, tool_choice, self.state, tools=tools,
                                                                 response_format=response_format)
        return response


def model_thoughts(state: TurnState, strategy: Strategy, message: AssistantMessage,
                   confidence: float | None) -> list[ReasoningStep]:
    """The reasoning steps of the model call just made (`state.steps[-1]`): one per action it chose
    (its text is the thought), or one for its reply. The runtime records them as `record_step` does."""
    model_step = state.steps[-1]
    latency_ms, input_tokens, output_tokens = model_step.latency_ms, model_step.input_tokens, model_step.output_tokens
    value = UNSTATED_CONFIDENCE if confidence is None else confidence
    text = (message.content or "").strip()
    if not message.tool_calls:
        return [ReasoningStep(strategy, "response", text[:SUMMARY_CHARS], value, None, (), (), latency_ms,
                              input_tokens, output_tokens)]
    steps = []
    for call in message.tool_calls:
        thought = text or f"call {call.name}"  # the arguments are in the step's action
        steps.append(ReasoningStep(strategy, "thought", thought[:SUMMARY_CHARS], value,
                                   Action(call.name, call.arguments), (), (), latency_ms, input_tokens, output_tokens))
        latency_ms, input_tokens, output_tokens = 0.0, 0, 0  # the model call is counted once, on its first step
    return steps


async def record_step(state: TurnState, step: ReasoningStep) -> None:
    """A reasoning step into the turn's record and onto the bus. (Not onto the OTel span: a span event
    costs more than the rest of a scripted turn's step, and the model and tool spans are there.)"""
    state.reasoning.append(step)
    if state.emit is not None:
        await state.emit(EventType.REASONING_STEP, **step.to_dict())
