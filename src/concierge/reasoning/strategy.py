"""The strategy seam: how one turn is reasoned out, chosen per turn, run by the runtime.

The runtime owns everything a turn must guarantee whatever the strategy (limits, the session
lock, the transactional executor, the confirmation gate, honest replies); a strategy only
decides what to do next. It gets a `TurnDriver`, the runtime's narrow view of the running turn,
and returns the reply with the reason the turn stopped early (None when it simply answered).
Every step a strategy takes is recorded as a `ReasoningStep` through `driver.record`.
"""

from __future__ import annotations

from typing import Protocol

from ..core.messages import Message, ToolCall
from ..llm.base import ChatModel, ToolChoice
from ..tools.outcome import ToolOutcome
from ..tools.registry import ToolRegistry
from ..tools.tool import ToolContext
from .steps import ReasoningStep, Strategy

Outcome = tuple[str, str | None]  # (reply, stopped_by)


class TurnDriver(Protocol):
    """What a strategy may do inside a turn; implemented by the runtime."""

    model: ChatModel
    registry: ToolRegistry
    tool_context: ToolContext
    user_message: str
    conversation_turns: int  # turns before this one in the session

    async def conversation(self) -> list[Message]:
        """The context the model would see now: instructions, the session's window, this turn so far."""
        ...

    async def react(self, *, strategy: Strategy = "react", tool_choice: ToolChoice | None = None,
                    ask_below: float | None = None) -> Outcome:
        """The observe → think → act loop until the model answers (recording its thoughts)."""
        ...

    async def call_tool(self, call: ToolCall) -> ToolOutcome:
        """One tool call through the executor, into the conversation and the trace."""
        ...

    async def record(self, step: ReasoningStep) -> None:
        """Into the turn's trace and onto the event bus."""
        ...

    def say(self, text: str) -> Outcome:
        """End the turn with `text` as the reply (it joins the conversation)."""
        ...


class TurnStrategy(Protocol):
    name: str

    async def run(self, driver: TurnDriver) -> Outcome: ...
