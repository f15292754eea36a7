"""The three strategies behind the `TurnStrategy` seam: ReAct, plan-then-execute, tree-of-thought.

Each is a thin adapter: the reasoning itself lives in `plan.py` and `tot.py`, and every tool call
goes back through the runtime (`driver.call_tool`), so a strategy can never skip the executor,
the scopes or the confirmation gate.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from ..core.errors import ModelError, ValidationError
from ..core.messages import ToolCall
from ..tools.outcome import ToolOutcome
from ..tools.tool import Tool, ToolContext
from .plan import PlanExecutor, PlanOutcome
from .steps import ReasoningStep
from .strategy import Outcome, TurnDriver
from .tot import TreeOfThought

_ids = itertools.count(1)


def _check_unit(name: str, value: float | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1):
        raise ValidationError(f"{name} must be a number in [0, 1] or None, got {value!r}")


@dataclass(frozen=True, slots=True)
class ReAct:
    """The default loop, each action with the model's explicit thought; a write the model itself
    rates below `ask_below` is not run: the model is told to ask the customer instead."""

    ask_below: float | None = 0.4
    name: str = "react"

    def __post_init__(self) -> None:
        _check_unit("ask_below", self.ask_below)

    async def run(self, driver: TurnDriver) -> Outcome:
        return await driver.react(ask_below=self.ask_below)


class _ThroughDriver:
    """The plan executor's `ToolExecutor`: each step is a tool call of the turn, made by the runtime."""

    def __init__(self, driver: TurnDriver) -> None:
        self.driver = driver

    async def execute(self, tool: Tool, call: ToolCall, context: ToolContext) -> ToolOutcome:
        return await self.driver.call_tool(call)


@dataclass(frozen=True, slots=True)
class PlanThenExecute:
    """Plan, run the plan through the executor, replan on a failed precondition.

    A plan that ran is reported by the model (it sees every result); a critical step that failed
    ends the turn with a reply built from what was and was not done, not from the model, so it
    cannot claim more than happened. A request the model cannot plan falls back to ReAct.
    """

    max_replans: int = 2
    name: str = "plan"

    def __post_init__(self) -> None:
        if isinstance(self.max_replans, bool) or not isinstance(self.max_replans, int) or self.max_replans < 0:
            raise ValidationError(f"max_replans must be an integer >= 0, got {self.max_replans!r}")

    async def run(self, driver: TurnDriver) -> Outcome:
        executor = PlanExecutor(driver.model, driver.registry, _ThroughDriver(driver), max_replans=self.max_replans)
        outcome = await executor.run(await driver.conversation(), driver.tool_context)
        for step in outcome.steps:
            await driver.record(step)
        if outcome.stopped_by == "unplannable":
            return await driver.react(strategy="plan")
        if outcome.stopped_by == "awaiting_confirmation":
            return "", None  # the runtime asks the customer to confirm the pending action
        if outcome.stopped_by in ("critical_step_failed", "replan_limit"):
            reply = truthful_reply(outcome)
            await driver.record(ReasoningStep("plan", "response", reply, 1.0))
            driver.say(reply)
            return reply, outcome.stopped_by
        return await driver.react(strategy="plan", tool_choice="none")


def truthful_reply(outcome: PlanOutcome) -> str:
    parts = ["I could not complete your request."]
    if outcome.done:
        parts.append("Done: " + "; ".join(outcome.done) + ".")
    parts.append("Not done: " + "; ".join(outcome.not_done or ["the plan stopped"]) + ".")
    return " ".join(parts)


@dataclass(frozen=True, slots=True)
class TreeOfThoughtStrategy:
    """Weigh several moves before acting; asks when a write on a guess is the riskiest option.

    `entities` counts the things the request could mean (several pending orders for "my order");
    without it the request is taken as unambiguous. The chosen action, if any, runs through the
    executor like any other call; a reply follows from the ReAct loop.
    """

    branches: int = 3
    entities: object = None  # a `features.EntityCounter`; typed loosely to keep this module light
    name: str = "tot"

    async def run(self, driver: TurnDriver) -> Outcome:
        matching = self.entities(driver) if callable(self.entities) else 0
        tot = TreeOfThought(driver.model, driver.registry, branches=self.branches)
        try:
            choice = await tot.choose(await driver.conversation(), matching_entities=int(matching))
        except ModelError as exc:
            await driver.record(ReasoningStep("tot", "branch", f"no usable branches ({exc}); ReAct instead", 0.0))
            return await driver.react(strategy="tot")
        for step in choice.steps:
            await driver.record(step)
        branch = choice.branch
        if branch.kind != "act" or not branch.tool:
            return driver.say(branch.text.strip() or "Could you tell me a little more about what you need?")
        result = await driver.call_tool(ToolCall(f"tot-{next(_ids)}", branch.tool, dict(branch.arguments)))
        if result.pending is not None:
            return "", None  # the runtime asks the customer to confirm it
        return await driver.react(strategy="tot", tool_choice="auto")
