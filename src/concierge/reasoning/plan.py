"""Plan-then-execute: the model writes the whole plan, the executor runs it step by step, and the
model replans from the current state when a step's precondition fails.

Every step runs through the transactional executor (scopes, preconditions, confirmation gate,
ledger), so a plan cannot do what a single tool call could not. A step that depends on one that
did not succeed is never attempted. When a critical step fails for good, execution stops and the
outcome lists what was done and what was not, so the reply can only tell the truth.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from ..core.messages import Message, SystemMessage, ToolCall, UserMessage
from ..llm.base import ChatModel
from ..tools.executor import ToolExecutor
from ..tools.outcome import ToolOutcome, error_message
from ..tools.registry import ToolRegistry
from ..tools.tool import ToolContext
from .steps import Action, ReasoningStep

PLANNER = ("Write a plan for the customer's request as JSON: the goal, your confidence in [0, 1], and the steps "
           "(each: id, tool, arguments, requires = ids of steps that must succeed first, critical = whether the "
           "request fails without it). Use only the tools listed. Do not include steps already done.")
_ids = itertools.count(1)


class PlanStep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=40)
    tool: str = Field(min_length=1, max_length=64)
    arguments: dict[str, Any] = Field(default_factory=dict)
    requires: list[str] = Field(default_factory=list)
    critical: bool = True
    why: str = ""


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    goal: str
    confidence: float = Field(ge=0.0, le=1.0)
    steps: list[PlanStep] = Field(max_length=12)


@dataclass
class PlanOutcome:
    steps: list[ReasoningStep] = field(default_factory=list)
    done: list[str] = field(default_factory=list)  # "tool(args): result" of each step that succeeded
    not_done: list[str] = field(default_factory=list)  # each step that failed or was skipped, and why
    results: dict[str, ToolOutcome] = field(default_factory=dict)
    # None when the plan ran; else "critical_step_failed", "awaiting_confirmation", "unplannable", "replan_limit".
    stopped_by: str | None = None
    replans: int = 0


class PlanExecutor:
    def __init__(self, model: ChatModel, registry: ToolRegistry, executor: ToolExecutor, *,
                 max_replans: int = 2) -> None:
        self.model, self.registry, self.executor, self.max_replans = model, registry, executor, max_replans

    async def run(self, conversation: Sequence[Message], context: ToolContext) -> PlanOutcome:
        outcome = PlanOutcome()
        observations: list[str] = []
        while True:
            plan = await self._plan(conversation, observations, outcome)
            if plan is None:
                outcome.stopped_by = "unplannable"
                return outcome
            failed_precondition = await self._execute(plan, context, outcome)
            if failed_precondition is None:
                return outcome
            if outcome.replans >= self.max_replans:
                outcome.stopped_by = "replan_limit"
                return outcome
            outcome.replans += 1
            observations.append(failed_precondition)

    async def _plan(self, conversation: Sequence[Message], observations: list[str],
                    outcome: PlanOutcome) -> Plan | None:
        tools = ", ".join(f"{t.name} ({t.effect})" for t in self.registry)
        notes = [f"Already done: {'; '.join(outcome.done)}"] if outcome.done else []
        notes += [f"A step could not run: {o}. Replan from the current state." for o in observations]
        messages = [SystemMessage(f"{PLANNER}\nTools: {tools}"), *conversation, *(UserMessage(n) for n in notes)]
        started = time.perf_counter()
        response = await self.model.complete(messages, response_format=Plan.model_json_schema())
        latency_ms = (time.perf_counter() - started) * 1000
        try:
            plan = Plan.model_validate_json(response.message.content or "")
        except PydanticValidationError as exc:
            outcome.steps.append(ReasoningStep("plan", "plan", f"unusable plan: {str(exc).splitlines()[0]}", 0.0,
                                               latency_ms=latency_ms, input_tokens=response.usage.input_tokens,
                                               output_tokens=response.usage.output_tokens))
            return None
        kind = "replan" if observations else "plan"
        text = plan.goal + "\n" + "\n".join(f"{s.id}. {s.tool}({json.dumps(s.arguments)})" for s in plan.steps)
        outcome.steps.append(ReasoningStep("plan", kind, text, plan.confidence, latency_ms=latency_ms,
                                           input_tokens=response.usage.input_tokens,
                                           output_tokens=response.usage.output_tokens))
        return plan

    async def _execute(self, plan: Plan, context: ToolContext, outcome: PlanOutcome) -> str | None:
        """Run the plan; a failed precondition returns its reason (to replan), anything else ends here."""
        succeeded: set[str] = set()
        for step in plan.steps:
            action = Action(step.tool, step.arguments)
            missing = [r for r in step.requires if r not in succeeded]
            if missing:
                outcome.not_done.append(f"{step.tool}: not attempted, it depends on {', '.join(missing)}")
                outcome.steps.append(ReasoningStep("plan", "action", f"skipped: depends on {missing}", 0.0, action))
                continue
            result, latency_ms = await self._call(step, context)
            outcome.results[step.id] = result
            reason = error_message(result.error) if result.error else ""
            outcome.steps.append(ReasoningStep("plan", "action", reason or step.why or "done",
                                               0.0 if result.error else plan.confidence, action,
                                               latency_ms=latency_ms))
            if result.pending is not None:  # the confirmation gate: the customer answers first
                outcome.not_done.append(f"{step.tool}: waits for the customer's confirmation")
                outcome.stopped_by = "awaiting_confirmation"
                return None
            if result.error is None:
                succeeded.add(step.id)
                outcome.done.append(f"{step.tool}({json.dumps(step.arguments)})")
                continue
            if result.status == "refused" and '"precondition_failed"' in result.error:
                outcome.not_done.append(f"{step.tool}: {reason}")
                return f"{step.tool}: {reason}"
            outcome.not_done.append(f"{step.tool}: {reason}")
            if step.critical:
                outcome.stopped_by = "critical_step_failed"
                return None
        return None

    async def _call(self, step: PlanStep, context: ToolContext) -> tuple[ToolOutcome, float]:
        tool = self.registry._tools.get(step.tool)
        if tool is None:
            return ToolOutcome(error=f"There is no tool named {step.tool!r}."), 0.0
        started = time.perf_counter()
        result = await self.executor.execute(tool, ToolCall(f"plan-{next(_ids)}", step.tool, step.arguments), context)
        return result, (time.perf_counter() - started) * 1000
