"""What a turn returns, and the state it carries while it runs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..core.messages import Message, ToolCall, message_to_dict
from ..core.principal import Principal
from ..core.reasoning import ReasoningStep
from ..core.usage import Usage
from ..tools.confirmation import PendingAction
from ..tools.outcome import ToolOutcome
from .emitting import TurnEmitter
from .events import TurnObserver
from .tracing import TraceStep


@dataclass(slots=True)
class TurnState:
    """The whole in-flight turn in one place: what it added, spent and established."""

    session_id: str
    principal: Principal
    messages: list[Message] = field(default_factory=list)
    steps: list[TraceStep] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    new_pins: list[str] = field(default_factory=list)
    window_start: int = 0
    summary: str | None = None
    # Actions waiting for the user's confirmation; the turn pauses on them.
    pending: list[PendingAction] = field(default_factory=list)
    # Writes that did not succeed, so the reply states it whatever the model says.
    unfinished_writes: list[tuple[ToolCall, ToolOutcome]] = field(default_factory=list)
    # Sources the reply must show: a tool whose result is a dict with a "cite" list names them.
    citations: list[str] = field(default_factory=list)
    escalation: dict[str, Any] | None = None
    notices: list[str] = field(default_factory=list)
    # What the strategy thought, planned, weighed and chose, step by step.
    reasoning: list[ReasoningStep] = field(default_factory=list)
    # This turn's system instructions when they differ from the agent's (recalled memories added).
    instructions: str | None = None
    # The session's earlier messages, read-only (what output guardrails judge a reply against).
    history: Sequence[Message] = ()
    # Who watches the turn live, and where its events go (not part of its state: never serialised).
    observer: TurnObserver | None = None
    emit: TurnEmitter | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "principal": self.principal.to_dict(),
            "messages": [message_to_dict(m) for m in self.messages],
            "steps": [step_to_dict(s) for s in self.steps],
            "usage": {"input_tokens": self.usage.input_tokens, "output_tokens": self.usage.output_tokens,
                      "cost_usd": self.usage.cost_usd},
            "new_pins": list(self.new_pins),
            "window_start": self.window_start,
            "summary": self.summary,
            "pending": [p.describe() for p in self.pending],
            "escalation": self.escalation,
            "notices": list(self.notices),
            "reasoning": [r.to_dict() for r in self.reasoning],
        }


def step_to_dict(step: TraceStep) -> dict[str, Any]:
    return {
        "kind": step.kind, "name": step.name, "arguments": step.arguments, "result": step.result_summary,
        "latency_ms": round(step.latency_ms, 3), "input_tokens": step.input_tokens,
        "output_tokens": step.output_tokens, "cost_usd": step.cost_usd, "error": step.error,
        "status": step.status,
    }


@dataclass(frozen=True, slots=True)
class TurnResult:
    session_id: str
    reply: str
    steps: tuple[TraceStep, ...]
    usage: Usage
    # None when the model answered; otherwise the limit that stopped the turn
    # ("max_steps", "timeout", "budget", "empty_reply", "model_error", "escalated",
    # "awaiting_confirmation") and `reply` is the hand-off message or the confirmation question.
    stopped_by: str | None
    trace_id: str
    new_messages: tuple[Message, ...]
    # Set when stopped_by == "awaiting_confirmation": what the user is asked to confirm.
    pending_actions: tuple[PendingAction, ...] = ()
    # Set when stopped_by == "escalated": why, and which action (its ledger key).
    escalation: dict[str, Any] | None = None
    # What the user is told about earlier requests settled after a restart.
    notices: tuple[str, ...] = ()
    # The strategy's steps: thoughts, plans, branches, routing, with confidence, latency and tokens.
    reasoning: tuple[ReasoningStep, ...] = ()
    # Every action of the session the customer was asked to confirm, with where it stands after
    # this turn (pending, confirmed, declined, executed, refused...): what their cards show.
    actions: tuple[PendingAction, ...] = ()

    @property
    def handed_off(self) -> bool:
        return self.stopped_by not in (None, "awaiting_confirmation")

    @property
    def tool_calls(self) -> list[TraceStep]:
        return [s for s in self.steps if s.kind == "tool"]
