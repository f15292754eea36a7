"""Preconditions: a dependent action runs only after the action it depends on succeeded.

`Requires("cancel_order", on=("order_id",))` on a refund tool means: refund order X only if
`cancel_order` for order X succeeded in this session, according to the ledger, not according
to what the model believes. Any callable `(arguments, context) -> reason | None` also works.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..core.clock import Clock, SystemClock
from ..core.messages import ToolCall
from .executor import ToolExecutor
from .ledger.base import AuditRecord, Ledger
from .outcome import ToolOutcome, refused
from .tool import Tool, ToolContext


@dataclass(frozen=True, slots=True)
class Requires:
    tool: str
    on: Sequence[str] = ()

    async def check(self, arguments: dict[str, Any], context: ToolContext, ledger: Ledger) -> str | None:
        wanted = {name: arguments.get(name) for name in self.on}
        related = [e for e in await ledger.entries(context.session_id)
                   if e.tool == self.tool and all(e.arguments.get(k) == v for k, v in wanted.items())]
        what = f"{self.tool}({', '.join(f'{k}={v!r}' for k, v in wanted.items())})"
        if any(e.status == "succeeded" for e in related):
            return None
        if related:
            return f"{what} did not succeed (it is {related[-1].status}), so this step must not run"
        return f"{what} has not been done in this conversation; do it first"


class PreconditionCheck:
    def __init__(self, inner: ToolExecutor, ledger: Ledger, *, clock: Clock | None = None) -> None:
        self.inner = inner
        self.ledger = ledger
        self.clock = clock or SystemClock()

    async def execute(self, tool: Tool, call: ToolCall, context: ToolContext) -> ToolOutcome:
        for condition in tool.requires:
            if isinstance(condition, Requires):
                reason = await condition.check(call.arguments, context, self.ledger)
            else:
                reason = condition(call.arguments, context)
                if inspect.isawaitable(reason):
                    reason = await reason
            if reason:
                await self.ledger.audit(AuditRecord(self.clock.now(), context.session_id, tool.name,
                                                    call.arguments, context.principal.to_dict(),
                                                    "precondition_failed", reason))
                return refused("precondition_failed", f"Not done: {reason}.")
        return await self.inner.execute(tool, call, context)
