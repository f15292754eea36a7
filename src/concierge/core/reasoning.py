"""`ReasoningStep`: one observable step of a strategy, so a bad conversation is debugged from its steps.

Every strategy records what it thought or planned, how confident it was, what it did (a tool call
or a reply), which alternatives it weighed and which documents it used, with the step's latency
and tokens. The records go into the turn's trace and onto the event bus.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import ValidationError

Strategy = Literal["react", "plan", "tot"]
StepKind = Literal["route", "thought", "plan", "action", "response", "replan", "branch", "handoff"]
STRATEGIES: tuple[Strategy, ...] = ("react", "plan", "tot")


@dataclass(frozen=True, slots=True)
class Action:
    tool: str
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ReasoningStep:
    strategy: Strategy
    kind: StepKind
    text: str  # the thought, the plan, or the reply
    confidence: float  # in [0, 1]: how sure the strategy is of this step
    action: Action | None = None
    alternatives: tuple[str, ...] = ()  # what else was considered (ToT branches, other plans)
    citations: tuple[str, ...] = ()  # knowledge-base passages used (doc#chunk)
    latency_ms: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValidationError(f"unknown strategy {self.strategy!r}", hint="one of " + ", ".join(STRATEGIES))
        if not isinstance(self.confidence, int | float) or isinstance(self.confidence, bool) \
                or not math.isfinite(self.confidence) or not 0.0 <= self.confidence <= 1.0:
            raise ValidationError(f"confidence must be a number in [0, 1], got {self.confidence!r}")
        if self.latency_ms < 0 or self.input_tokens < 0 or self.output_tokens < 0:
            raise ValidationError("latency and token counts cannot be negative")

    def to_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy, "kind": self.kind, "text": self.text, "confidence": self.confidence,
            "action": None if self.action is None else {"tool": self.action.tool, "arguments": self.action.arguments},
            "alternatives": list(self.alternatives), "citations": list(self.citations),
            "latency_ms": round(self.latency_ms, 3), "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
        }
