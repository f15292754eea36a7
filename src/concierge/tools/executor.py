"""The seam between the runtime loop and tool execution.

The runtime only calls `ToolExecutor.execute`. Policies (idempotency, ledger, approval,
retries, scopes) are wrappers that take an inner executor and add one concern each, so they
stack without the loop knowing about them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ..core.errors import ToolError
from ..core.messages import ToolCall
from .tool import Tool, ToolContext


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """What running a tool produced: a value, or an error message for the model."""

    value: Any = None
    error: str | None = None

    @property
    def is_error(self) -> bool:
        return self.error is not None


class ToolExecutor(Protocol):
    async def execute(self, tool: Tool, call: ToolCall, context: ToolContext) -> ToolOutcome: ...


class DirectExecutor:
    """Validates arguments and runs the function; any exception becomes an error outcome."""

    async def execute(self, tool: Tool, call: ToolCall, context: ToolContext) -> ToolOutcome:
        try:
            return ToolOutcome(value=await tool.invoke(call.arguments, context))
        except ToolError as exc:
            return ToolOutcome(error=str(exc))
        except Exception as exc:  # a tool's own failure is information for the model, not a crash
            return ToolOutcome(error=f"{type(exc).__name__}: {exc}")
