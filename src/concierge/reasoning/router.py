"""Which strategy a turn gets: ReAct by default, more care where a mistake is costly or likely.

ReAct is cheap but greedy; plan-then-execute costs a planning call and buys a checked, observable
multi-step path; tree-of-thought costs several calls and is worth it when the request is
ambiguous or the stakes are high (several orders match "cancel my order"; a refund over $500).
The rule router decides from features of the turn and says why; a learned router (trained on
evaluation results) can replace it behind the same `Router` protocol.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from ..core.errors import ValidationError
from .steps import STRATEGIES, Strategy

Effect = Literal["none", "read", "write", "irreversible"]
_EFFECTS: tuple[Effect, ...] = ("none", "read", "write", "irreversible")


@dataclass(frozen=True, slots=True)
class TurnFeatures:
    """What the router knows about a turn before the agent acts."""

    matching_entities: int = 0  # e.g. pending orders that fit "my order"; > 1 is ambiguous
    max_effect: Effect = "none"  # the most consequential tool the request may need
    amount_usd: float | None = None  # money the request moves, when known
    planned_steps: int = 1  # tool calls the request needs, as estimated (a rebooking: cancel, refund, book)
    conversation_turns: int = 0
    model_confidence: float | None = None  # the model's own confidence in its reading of the request

    def __post_init__(self) -> None:
        if self.max_effect not in _EFFECTS:
            raise ValidationError(f"max_effect must be one of {', '.join(_EFFECTS)}, got {self.max_effect!r}")
        for name in ("matching_entities", "planned_steps", "conversation_turns"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValidationError(f"{name} must be an integer >= 0, got {value!r}")
        if self.amount_usd is not None and (not math.isfinite(self.amount_usd) or self.amount_usd < 0):
            raise ValidationError(f"amount_usd must be a finite number >= 0, got {self.amount_usd!r}")
        if self.model_confidence is not None and not 0.0 <= self.model_confidence <= 1.0:
            raise ValidationError(f"model_confidence must be in [0, 1], got {self.model_confidence!r}")


@dataclass(frozen=True, slots=True)
class RouteDecision:
    strategy: Strategy
    reasons: tuple[str, ...]


class Router(Protocol):
    def route(self, features: TurnFeatures) -> RouteDecision: ...


@dataclass(frozen=True, slots=True)
class RuleRouter:
    """Tree-of-thought for ambiguity and high stakes, plan-then-execute for multi-step writes, else ReAct."""

    high_stakes_usd: float = 500.0
    low_confidence: float = 0.5
    long_conversation: int = 20

    def route(self, features: TurnFeatures) -> RouteDecision:
        acts = features.max_effect in ("write", "irreversible")
        tot = []
        if features.matching_entities > 1 and acts:
            tot.append(f"{features.matching_entities} entities match and the request changes one")
        if features.max_effect == "irreversible":
            tot.append("an irreversible action")
        if acts and features.amount_usd is not None and features.amount_usd > self.high_stakes_usd:
            tot.append(f"${features.amount_usd:,.2f} is over the ${self.high_stakes_usd:,.0f} high-stakes line")
        if acts and features.model_confidence is not None and features.model_confidence < self.low_confidence:
            tot.append(f"the model is unsure ({features.model_confidence:.2f}) about a request that acts")
        if tot:
            return RouteDecision("tot", tuple(tot))
        plan = []
        if acts and features.planned_steps > 1:
            plan.append(f"{features.planned_steps} steps that change state")
        if acts and features.conversation_turns >= self.long_conversation:
            plan.append(f"a long conversation ({features.conversation_turns} turns): keep the path explicit")
        if plan:
            return RouteDecision("plan", tuple(plan))
        return RouteDecision("react", ("a simple request: one greedy loop is enough",))


@dataclass(frozen=True, slots=True)
class LearnedRouter:
    """A classifier trained on evaluation results (features → the strategy that passed), with the rules
    as the fallback whenever it is unsure."""

    predict: Callable[[Sequence[float]], tuple[Strategy, float]]  # features → (strategy, probability)
    fallback: Router = RuleRouter()
    min_probability: float = 0.6

    def route(self, features: TurnFeatures) -> RouteDecision:
        strategy, probability = self.predict(feature_vector(features))
        if strategy not in STRATEGIES:
            raise ValidationError(f"the classifier predicted an unknown strategy {strategy!r}")
        if probability < self.min_probability:
            fallback = self.fallback.route(features)
            return RouteDecision(fallback.strategy,
                                 (f"classifier unsure ({strategy} at {probability:.2f}): rules decide",
                                  *fallback.reasons))
        return RouteDecision(strategy, (f"classifier: {strategy} at {probability:.2f}",))


def feature_vector(features: TurnFeatures) -> list[float]:
    """The numbers a learned router sees, in a fixed order (the training data uses the same)."""
    return [
        float(features.matching_entities), float(_EFFECTS.index(features.max_effect)),
        features.amount_usd if features.amount_usd is not None else -1.0, float(features.planned_steps),
        float(features.conversation_turns),
        features.model_confidence if features.model_confidence is not None else -1.0,
    ]
