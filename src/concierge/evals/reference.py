"""Reference agents: an oracle that performs a task's expected actions, and a flawed copy of it.

The oracle proves the reward and the domain faithful (it must score 1 wherever the reward can be
computed); the flawed agent proves the reward catches mistakes (it must score 0 on every task its
flaw touches). Both are models in the `ChatModel` sense, so they run through the same runtime,
confirmation gate and ledger as a real model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from ..core.errors import ValidationError
from ..core.messages import Message, ToolCall, ToolResultMessage
from ..llm.base import ToolSpec
from ..testing.models import FunctionModel, Step
from .environment import Environment
from .tasks import Action, Task

Flaw = Literal["wrong_order", "skip_writes"]
FLAWS: tuple[str, ...] = ("wrong_order", "skip_writes")


class OracleModel(FunctionModel):
    """Emits the task's assistant actions one per step, then a closing message with the facts to tell.

    `flaw` makes it the flawed reference agent: `wrong_order` performs each write on another of
    the customer's orders; `skip_writes` leaves the writes out but still says it is done.
    `touched` tells whether the flaw changed anything for this task.
    """

    def __init__(self, task: Task, environment: Environment, writes: frozenset[str], *,
                 flaw: Flaw | None = None) -> None:
        if flaw is not None and flaw not in FLAWS:
            raise ValidationError(f"unknown flaw {flaw!r}", hint="one of: " + ", ".join(FLAWS))
        self.touched = False
        self._plan = self._planned(task, environment, writes, flaw)
        self._next = 0
        self._closing = " ".join(["Your request is complete.", *task.evaluation_criteria.communicate_info])
        super().__init__(self._step, name="oracle" if flaw is None else f"flawed-{flaw}")

    def _planned(self, task: Task, environment: Environment, writes: frozenset[str],
                 flaw: Flaw | None) -> list[Action]:
        plan = []
        for action in task.evaluation_criteria.actions:
            if action.requestor != "assistant":
                continue
            if flaw == "skip_writes" and action.name in writes:
                self.touched = True
                continue
            if flaw == "wrong_order" and action.name in writes:
                wrong = environment.mistaken(action)
                if wrong is not None:
                    self.touched = True
                    action = wrong
            plan.append(action)
        return plan

    def _step(self, messages: Sequence[Message], tools: Sequence[ToolSpec]) -> Step:
        if not tools:  # the runtime asks for a summary of older messages: answer, keep the plan
            return "The customer's request is being handled step by step."
        if messages and isinstance(messages[-1], ToolResultMessage) and self._next >= len(self._plan):
            return self._closing
        if self._next < len(self._plan):
            action = self._plan[self._next]
            self._next += 1
            return ToolCall(f"oracle-{action.action_id}", action.name, dict(action.arguments))
        return self._closing
