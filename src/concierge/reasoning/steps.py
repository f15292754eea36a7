"""`ReasoningStep` and its vocabulary; the value type lives in `core` so the runtime can record it
without depending on this package."""

from ..core.reasoning import STRATEGIES, Action, ReasoningStep, StepKind, Strategy

__all__ = ["STRATEGIES", "Action", "ReasoningStep", "StepKind", "Strategy"]
