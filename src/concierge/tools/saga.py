"""Sagas: a multi-step operation whose completed steps are undone when a later step fails.

Each step and each compensation goes through the full executor (ledger, retries, breaker),
with an idempotency anchor derived from the saga's own key, so re-running a saga after a
crash replays finished steps instead of repeating them. A compensation that does not succeed
(or a step whose outcome is unknown) escalates to a person with the record attached.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..core.errors import ToolError
from ..core.messages import ToolCall
from .executor import EscalationRequired, ToolExecutor
from .outcome import ToolOutcome
from .registry import ToolRegistry
from .tool import ToolContext

StepArguments = dict[str, Any] | Callable[[list[Any]], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class SagaStep:
    """One step; `arguments` may be a function of the earlier steps' results."""

    tool: str
    arguments: StepArguments


@dataclass(frozen=True, slots=True)
class StepRecord:
    index: int
    tool: str
    arguments: dict[str, Any]
    status: str
    result: Any = None
    error: str | None = None
    undo_status: str | None = None


@dataclass(frozen=True, slots=True)
class SagaResult:
    name: str
    status: str  # "completed" | "rolled_back" | "needs_attention"
    steps: tuple[StepRecord, ...]
    summary: str

    @property
    def results(self) -> list[Any]:
        return [s.result for s in self.steps]


class Saga:
    def __init__(self, name: str, steps: Sequence[SagaStep], registry: ToolRegistry) -> None:
        self.name = name
        self.steps = tuple(steps)
        self.registry = registry
        for step in self.steps:
            registry.get(step.tool)  # unknown tools fail at definition time
            comp = registry.get(step.tool).compensate
            if comp is not None:
                registry.get(comp.tool)

    async def run(self, executor: ToolExecutor, context: ToolContext) -> SagaResult:
        anchor = context.idempotency_key or context.confirmation_id or self.name
        done: list[tuple[StepRecord, ToolOutcome]] = []
        for index, step in enumerate(self.steps):
            tool = self.registry.get(step.tool)
            arguments = step.arguments([o.value for _, o in done]) if callable(step.arguments) else step.arguments
            arguments = tool.normalize(arguments)
            step_context = dataclasses.replace(context, confirmation_id=f"{anchor}#{index}", idempotency_key=None)
            outcome = await executor.execute(tool, ToolCall(f"{self.name}-{index}", tool.name, arguments),
                                             step_context)
            record = StepRecord(index, tool.name, arguments, outcome.status, outcome.value, outcome.error)
            if outcome.status == "succeeded":
                done.append((record, outcome))
                continue
            undone = await self._compensate(executor, context, anchor, done)
            uncertain = outcome.status == "unknown" or any(r.undo_status != "succeeded" for r in undone)
            status = "needs_attention" if uncertain else "rolled_back"
            return SagaResult(self.name, status, (*undone, record), self._summary(status, record, undone))
        records = tuple(r for r, _ in done)
        return SagaResult(self.name, "completed", records, f"{self.name}: all {len(records)} steps done.")

    async def _compensate(self, executor: ToolExecutor, context: ToolContext, anchor: str,
                          done: list[tuple[StepRecord, ToolOutcome]]) -> list[StepRecord]:
        undone: list[StepRecord] = []
        for record, outcome in reversed(done):
            comp = self.registry.get(record.tool).compensate
            if comp is None:
                undone.append(dataclasses.replace(record, undo_status="no_compensation"))
                continue
            tool = self.registry.get(comp.tool)
            arguments = tool.normalize(comp.arguments(record.arguments, outcome.value))
            comp_context = dataclasses.replace(context, confirmation_id=f"{anchor}#{record.index}/undo",
                                               idempotency_key=None)
            result = await executor.execute(tool, ToolCall(f"{self.name}-{record.index}-undo", tool.name, arguments),
                                            comp_context)
            undone.append(dataclasses.replace(record, undo_status=result.status))
        return undone

    def _summary(self, status: str, failed: StepRecord, undone: list[StepRecord]) -> str:
        reverted = [r.tool for r in undone if r.undo_status == "succeeded"]
        stuck = [r.tool for r in undone if r.undo_status != "succeeded"]
        text = f"{self.name} did not complete: step {failed.index + 1} ({failed.tool}) {failed.status}"
        text += f" ({failed.error})." if failed.error else "."
        if reverted:
            text += f" Undone: {', '.join(reverted)}."
        if status == "rolled_back":
            return text + " Nothing was changed overall."
        if stuck:
            text += f" Could not undo: {', '.join(stuck)}."
        return text + " A person must review this."


def raise_unless_completed(result: SagaResult) -> dict[str, Any]:
    """For a saga exposed as a tool: the result dict, or the error the executor classifies."""
    if result.status == "completed":
        return {"status": "completed", "steps": [dataclasses.asdict(s) for s in result.steps]}
    if result.status == "needs_attention":
        raise EscalationRequired(result.summary)
    raise ToolError(result.summary)
