"""Tree-of-thought for ambiguous or high-stakes turns: several candidate moves, scored, the safest
adequate one chosen. Exploration never mutates anything: branches are proposals, not calls.

The model proposes branches (ask a clarifying question, act on one reading, act on all, answer)
and scores each for adequacy and risk. The risk of a branch that would write is never below
`write_risk_floor`, and higher when the request is ambiguous, whatever the model says: a model
that rates "cancel the most recent of three orders" as safe does not get to act on a guess.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from ..core.errors import ModelError
from ..core.messages import Message, SystemMessage
from ..llm.base import ChatModel
from ..tools.registry import ToolRegistry
from .steps import Action, ReasoningStep

PROPOSE = ("Propose {n} different ways to handle the customer's last message, as JSON branches: kind 'ask' "
           "(a clarifying question in text), 'act' (one tool call: tool and arguments) or 'answer' (a reply in "
           "text). Give each an adequacy in [0, 1] (does it serve the request?) and a risk in [0, 1] (what goes "
           "wrong if the reading is mistaken?).")


class Branch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=40)
    kind: Literal["ask", "act", "answer"]
    text: str = ""
    tool: str | None = None
    arguments: dict[str, Any] = Field(default_factory=dict)
    adequacy: float = Field(ge=0.0, le=1.0)
    risk: float = Field(ge=0.0, le=1.0)


class Proposal(BaseModel):
    model_config = ConfigDict(extra="forbid")

    branches: list[Branch] = Field(min_length=1, max_length=8)


@dataclass(frozen=True, slots=True)
class Choice:
    branch: Branch
    risk: float  # after the policy floors
    steps: tuple[ReasoningStep, ...]


@dataclass(frozen=True, slots=True)
class TreeOfThought:
    model: ChatModel
    registry: ToolRegistry
    branches: int = 3
    min_adequacy: float = 0.5
    write_risk_floor: float = 0.3
    ambiguous_write_risk: float = 0.8  # a write chosen among several matching entities

    async def choose(self, conversation: Sequence[Message], *, matching_entities: int = 0) -> Choice:
        started = time.perf_counter()
        response = await self.model.complete(
            [SystemMessage(PROPOSE.format(n=self.branches)), *conversation],
            response_format=Proposal.model_json_schema())
        latency_ms = (time.perf_counter() - started) * 1000
        try:
            proposal = Proposal.model_validate_json(response.message.content or "")
        except PydanticValidationError as exc:
            raise ModelError(f"the model's branches are unusable: {str(exc).splitlines()[0]}") from None
        scored = [(branch, self._risk(branch, matching_entities)) for branch in proposal.branches]
        adequate = [(b, r) for b, r in scored if b.adequacy >= self.min_adequacy] or scored
        branch, risk = min(adequate, key=lambda pair: (pair[1], -pair[0].adequacy))
        alternatives = tuple(f"{b.id} {b.kind} {self._describe(b)}: adequacy {b.adequacy:.2f}, risk {r:.2f}"
                             for b, r in scored if b is not branch)
        action = Action(branch.tool, branch.arguments) if branch.kind == "act" and branch.tool else None
        step = ReasoningStep("tot", "branch", f"chose {branch.kind}: {self._describe(branch)}",
                             round(branch.adequacy * (1 - risk), 3), action, alternatives, latency_ms=latency_ms,
                             input_tokens=response.usage.input_tokens, output_tokens=response.usage.output_tokens)
        return Choice(branch, risk, (step,))

    def _risk(self, branch: Branch, matching_entities: int) -> float:
        """The model's risk, raised to the policy floors for branches that would change something."""
        if branch.kind != "act" or branch.tool is None:
            return branch.risk
        tool = self.registry._tools.get(branch.tool)
        if tool is None:
            return 1.0  # a tool the agent does not have cannot be the safe choice
        if not tool.writes:
            return branch.risk
        floor = self.ambiguous_write_risk if matching_entities > 1 else self.write_risk_floor
        return max(branch.risk, floor)

    @staticmethod
    def _describe(branch: Branch) -> str:
        if branch.kind == "act":
            return f"{branch.tool}({json.dumps(branch.arguments)})"
        return branch.text[:120]
