"""`Agent`: what an agent is (instructions, tools, model, limits), separate from how it runs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import ConfigError
from ..llm.base import ChatModel, ModelSettings, ToolChoice
from ..tools.registry import ToolRegistry
from ..tools.tool import Tool

DEFAULT_HANDOFF = (
    "I'm sorry, I couldn't finish this request myself, so I'm passing it to a human colleague "
    "who will follow up with you."
)


@dataclass(frozen=True, slots=True)
class Limits:
    """Hard per-turn limits. Whatever the model does, a turn stops at the first one that trips."""

    max_steps: int = 8  # model calls per turn
    timeout_s: float = 120.0  # wall clock per turn
    max_tokens: int | None = None  # input + output tokens per turn
    max_cost_usd: float | None = None  # per turn
    # Tool results are cut to this many tokens before they enter the conversation.
    max_tool_result_tokens: int = 800
    # Token budget for the whole context sent on one model call.
    context_tokens: int = 6000

    def __post_init__(self) -> None:
        problems = []
        if self.max_steps < 1:
            problems.append("max_steps must be at least 1")
        if self.timeout_s <= 0:
            problems.append("timeout_s must be positive")
        if self.max_tokens is not None and self.max_tokens < 1:
            problems.append("max_tokens must be positive or None")
        if self.max_cost_usd is not None and self.max_cost_usd < 0:
            problems.append("max_cost_usd must be >= 0 or None")
        if self.max_tool_result_tokens < 16:
            problems.append("max_tool_result_tokens must be at least 16")
        if self.context_tokens < 64:
            problems.append("context_tokens must be at least 64")
        if problems:
            raise ConfigError("invalid limits: " + "; ".join(problems))


@dataclass(slots=True)
class Agent:
    """An agent definition. Cheap to build; reuse one across all sessions."""

    instructions: str
    model: ChatModel
    tools: Sequence[Tool | Callable[..., Any]] = ()
    name: str = "agent"
    # Which release of this agent answered: recorded on every event, compared by experiments.
    version: str = ""
    limits: Limits = field(default_factory=Limits)
    model_settings: ModelSettings = field(default_factory=ModelSettings)
    # Tool choice for the first model call of a turn; later calls use "auto" so the model
    # can answer once it has acted (otherwise "required" would loop until max_steps).
    tool_choice: ToolChoice = "auto"
    handoff_message: str = DEFAULT_HANDOFF
    registry: ToolRegistry = field(init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.instructions, str) or not self.instructions.strip():
            raise ConfigError("an agent needs non-empty instructions", hint="say who the agent is and what it may do")
        if not isinstance(self.model, ChatModel):
            raise ConfigError(
                f"agent model must implement ChatModel, got {type(self.model).__name__}",
                hint="pass a provider from concierge.llm or a test double from concierge.testing",
            )
        self.registry = ToolRegistry(self.tools)
        if self.tool_choice not in ("auto", "required", "none") and self.tool_choice not in self.registry:
            raise ConfigError(
                f"tool_choice {self.tool_choice!r} names no tool of this agent",
                hint="use 'auto', 'required', 'none' or one of the agent's tool names",
            )
