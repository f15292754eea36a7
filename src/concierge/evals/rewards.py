"""tau2-bench's reward components, each a number in [0, 1], and their product over the reward basis.

- DB: the final database equals the one obtained by replaying the expected actions.
- ACTION: every expected assistant action appears among the agent's calls (same name, equal
  arguments on `compare_args`, all arguments when that is not given).
- COMMUNICATE: every `communicate_info` string appears in some agent message (case-insensitive,
  commas removed).
- ENV_ASSERTION: every assertion function returns its `assert_value` on the final state.
- NL_ASSERTION: a judge model says every natural-language assertion holds. Without a judge it
  is `None`, "not judged". It is never guessed: a trial with a component of its basis not judged
  is *incomplete*, neither a pass nor a fail, and is left out of pass rates and pass^k (its
  reward is still the product of the judged components, for reading, never for counting).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from ..llm.base import ChatModel
from .environment import Environment
from .judge import judge_assertions
from .tasks import Action, EnvAssertion, Task

Outcome: TypeAlias = Literal["pass", "fail", "incomplete"]


@dataclass(frozen=True, slots=True)
class Call:
    """A tool call the agent made (executed or not)."""

    name: str
    arguments: Mapping[str, Any]


@dataclass(slots=True)
class Rewards:
    """The components of one trial, the reward, and why a component is below 1."""

    components: dict[str, float | None]
    basis: list[str]
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def reward(self) -> float:
        """Product over the basis of the judged components (1.0 when none is judged)."""
        return math.prod(v for k in self.basis if (v := self.components.get(k)) is not None)

    @property
    def complete(self) -> bool:
        """False when some component of the basis was not judged."""
        return all(self.components.get(k) is not None for k in self.basis)

    @property
    def success(self) -> bool:
        """Every component of the basis judged and at 1: an unjudged trial is never a pass."""
        return self.complete and self.reward >= 1.0 - 1e-6

    @property
    def outcome(self) -> Outcome:
        return "incomplete" if not self.complete else "pass" if self.success else "fail"

    def to_dict(self) -> dict[str, Any]:
        return {"reward": self.reward, "complete": self.complete, "outcome": self.outcome,
                "components": self.components,
                "basis": self.basis, "details": self.details}


def _normalise(text: str) -> str:
    return text.lower().replace(",", "")


def communicate_reward(infos: Sequence[str], agent_messages: Sequence[str]) -> tuple[float, list[str]]:
    """1.0 if every info appears in some agent message; the missing ones otherwise."""
    said = [_normalise(m) for m in agent_messages]
    missing = [info for info in infos if not any(_normalise(info) in m for m in said)]
    return (0.0 if missing else 1.0), missing


def _matches(action: Action, call: Call) -> bool:
    if call.name != action.name:
        return False
    keys = action.compare_args if action.compare_args is not None else list(action.arguments)
    return all(call.arguments.get(k) == action.arguments.get(k) for k in keys)


def action_reward(expected: Sequence[Action], calls: Sequence[Call]) -> tuple[float, list[str]]:
    """1.0 if every expected assistant action was called; the ids of the missing ones otherwise."""
    missing = [a.action_id for a in expected
               if a.requestor == "assistant" and not any(_matches(a, c) for c in calls)]
    return (0.0 if missing else 1.0), missing


def env_assertion_reward(assertions: Sequence[EnvAssertion], environment: Environment) -> tuple[float, list[str]]:
    failed = [a.message or f"{a.func_name}({a.arguments})" for a in assertions
              if environment.check(a.func_name, dict(a.arguments)) != a.assert_value]
    return (0.0 if failed else 1.0), failed


async def nl_assertion_reward(judge: ChatModel | None, transcript: str,
                              assertions: Sequence[str]) -> tuple[float | None, list[dict[str, Any]]]:
    if not assertions:
        return 1.0, []
    if judge is None:
        return None, []
    verdicts = await judge_assertions(judge, transcript, list(assertions))
    found = [{"assertion": v.assertion, "met": v.met, "reason": v.reason} for v in verdicts]
    return (1.0 if all(v.met for v in verdicts) else 0.0), found


async def score(task: Task, environment: Environment, *, gold_hash: str | None, calls: Sequence[Call],
                agent_messages: Sequence[str], transcript: str, judge: ChatModel | None = None) -> Rewards:
    """Every component on the trial's final environment; only the task's basis makes the reward.

    The components outside the basis are still reported (an oracle must score 1 on all of them),
    except NL_ASSERTION, which costs judge calls and is only asked for when the basis has it.
    """
    criteria = task.evaluation_criteria
    rewards = Rewards({}, list(criteria.reward_basis))
    if gold_hash is not None:
        predicted = environment.state_hash()
        rewards.components["DB"] = 1.0 if predicted == gold_hash else 0.0
        if predicted != gold_hash:
            rewards.details["db"] = {"predicted": predicted, "gold": gold_hash}
    value, missing = action_reward(criteria.actions, calls)
    rewards.components["ACTION"] = value
    rewards.details["missing_actions"] = missing
    value, missing = communicate_reward(criteria.communicate_info, agent_messages)
    rewards.components["COMMUNICATE"] = value
    rewards.details["missing_info"] = missing
    value, failed = env_assertion_reward(criteria.env_assertions, environment)
    rewards.components["ENV_ASSERTION"] = value
    rewards.details["failed_assertions"] = failed
    if "NL_ASSERTION" in criteria.reward_basis:
        nl_value, verdicts = await nl_assertion_reward(judge, transcript, criteria.nl_assertions)
        rewards.components["NL_ASSERTION"] = nl_value
        if not criteria.nl_assertions:
            rewards.details["nl_assertions"] = "none to check"
        else:
            rewards.details["nl_assertions"] = verdicts if nl_value is not None else "not judged"
    return rewards
