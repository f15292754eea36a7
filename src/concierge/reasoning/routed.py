"""The router as a strategy: features of the turn → a decision → that strategy runs the turn.

Features come from what the runtime already has, before any model call: the customer's words
(money amounts, verbs that name a write tool), the tools' declared effects, how long the
conversation is, and how many entities the request could mean. The last is domain knowledge,
so it is a pluggable `EntityCounter`; the generic one counts distinct ids of a given pattern in
this session's conversation when the message names none of them ("cancel my order" after the
customer's three orders were listed).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from ..core.errors import ConfigError
from ..core.messages import ToolResultMessage
from ..tools.tool import Tool
from .router import Router, RuleRouter, TurnFeatures
from .steps import ReasoningStep
from .strategies import PlanThenExecute, ReAct, TreeOfThoughtStrategy
from .strategy import Outcome, TurnDriver, TurnStrategy

EntityCounter = Callable[[TurnDriver], int]
_AMOUNT = re.compile(r"\$\s?(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d{1,2}))?")
_WORD = re.compile(r"[a-z]+")


def amounts(text: str) -> list[float]:
    """Dollar amounts written in `text` ("$1,250.50" → 1250.5)."""
    return [float(m.group(1).replace(",", "") + ("." + m.group(2) if m.group(2) else "")) for m in _AMOUNT.finditer(text)]


@dataclass(frozen=True, slots=True)
class IdsInConversation:
    """Entities the message could mean: the distinct ids matching `pattern` seen in this session's tool
    results, when the message itself names none (then it means exactly the one it names)."""

    pattern: str
    history: Callable[[TurnDriver], list[ToolResultMessage]] | None = None

    def __call__(self, driver: TurnDriver) -> int:
        regex = re.compile(self.pattern)
        if regex.search(driver.user_message):
            return 1
        messages = self.history(driver) if self.history is not None else getattr(driver, "tool_results", [])
        return len({m for message in messages for m in regex.findall(message.content)})


@dataclass(frozen=True, slots=True)
class TextFeatures:
    """`TurnFeatures` from the message and the tools: generic, cheap, no model call."""

    entities: EntityCounter | None = None

    def __call__(self, driver: TurnDriver) -> TurnFeatures:
        return features_of(driver.user_message, driver.registry, driver.conversation_turns,
                           self.entities(driver) if self.entities is not None else 0)


def features_of(message: str, tools: Iterable[Tool], conversation_turns: int = 0,
                matching_entities: int = 0) -> TurnFeatures:
    """The router's features of one customer message, given the agent's tools (also used offline, to
    build training data for a learned router from evaluation runs)."""
    words = set(_WORD.findall(message.lower()))
    named = [tool for tool in tools if tool.writes and _verb(tool.name) in words]
    effect = "none"
    if named:
        effect = "irreversible" if any(t.effect == "irreversible" for t in named) else "write"
    money = amounts(message)
    return TurnFeatures(
        matching_entities=matching_entities,
        max_effect=effect,  # type: ignore[arg-type]
        amount_usd=max(money) if money else None,
        planned_steps=max(1, len({_verb(t.name) for t in named})),
        conversation_turns=conversation_turns,
    )


def _verb(tool_name: str) -> str:
    """cancel_pending_order → cancel; return_delivered_order_items → return."""
    return tool_name.split("_", 1)[0].lower()


@dataclass(frozen=True, slots=True)
class Routed:
    """Per turn: features → `router` → one of `strategies`; the decision is the turn's first step."""

    router: Router = field(default_factory=RuleRouter)
    features: Callable[[TurnDriver], TurnFeatures] = field(default_factory=TextFeatures)
    strategies: Mapping[str, TurnStrategy] = field(default_factory=lambda: {
        "react": ReAct(), "plan": PlanThenExecute(), "tot": TreeOfThoughtStrategy()})
    name: str = "router"

    def __post_init__(self) -> None:
        missing = {"react", "plan", "tot"} - set(self.strategies)
        if missing:
            raise ConfigError(f"the router needs a strategy for {', '.join(sorted(missing))}",
                              hint="give strategies={'react': ..., 'plan': ..., 'tot': ...}")

    async def run(self, driver: TurnDriver) -> Outcome:
        features = self.features(driver)
        decision = self.router.route(features)
        await driver.record(ReasoningStep(decision.strategy, "route", "; ".join(decision.reasons), 1.0))
        strategy = self.strategies[decision.strategy]
        if isinstance(strategy, TreeOfThoughtStrategy) and strategy.entities is None and \
                features.matching_entities:
            strategy = TreeOfThoughtStrategy(strategy.branches, entities=lambda _: features.matching_entities)
        return await strategy.run(driver)


def strategy_named(name: str, *, entities: EntityCounter | None = None) -> TurnStrategy:
    """`react`, `plan`, `tot` or `router`, with the domain's entity counter where it matters."""
    if name == "react":
        return ReAct()
    if name == "plan":
        return PlanThenExecute()
    if name == "tot":
        return TreeOfThoughtStrategy(entities=entities)
    if name == "router":
        return Routed(features=TextFeatures(entities))
    raise ConfigError(f"unknown strategy {name!r}", hint="one of react, plan, tot, router")
