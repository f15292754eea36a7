"""The seam between the runtime loop and tool execution.

The runtime only calls `ToolExecutor.execute`. Policies (scopes, preconditions, confirmation,
idempotency + ledger, circuit breaker, retries) are wrappers that take an inner executor and
add one concern each, so they stack without the loop knowing about them.
"""

from __future__ import annotations

from typing import Protocol

from ..core.errors import ToolArgumentsError, ToolError, ToolOutcomeUnknown, ToolTransientError
from ..core.messages import ToolCall
from .outcome import ToolOutcome, error_text
from .tool import Tool, ToolContext


class ToolExecutor(Protocol):
    async def execute(self, tool: Tool, call: ToolCall, context: ToolContext) -> ToolOutcome: ...


class EscalationRequired(ToolError):
    """A tool found a state only a person can sort out (a failed compensation, say)."""


class DirectExecutor:
    """Validates arguments and runs the function, classifying failures by what they mean for effects."""

    async def execute(self, tool: Tool, call: ToolCall, context: ToolContext) -> ToolOutcome:
        try:
            return ToolOutcome(value=await tool.invoke(call.arguments, context))
        except ToolArgumentsError as exc:
            return ToolOutcome(error=error_text("invalid_arguments", str(exc)), status="refused")
        except ToolOutcomeUnknown as exc:
            return ToolOutcome(error=error_text("outcome_unknown", str(exc)), status="unknown")
        except ToolTransientError as exc:
            return ToolOutcome(error=error_text("temporarily_unavailable", str(exc)), status="not_applied")
        except EscalationRequired as exc:
            return ToolOutcome(error=error_text("needs_attention", str(exc)), status="unknown", escalate=True)
        except ToolError as exc:
            return ToolOutcome(error=error_text("rejected", str(exc)), status="failed")
        except Exception as exc:  # a tool's own bug: information for the model, not a crash
            # A write that crashed may have acted before it crashed: say unknown, never "failed".
            status = "unknown" if tool.writes else "failed"
            return ToolOutcome(error=error_text("tool_crashed", f"{type(exc).__name__}: {exc}"), status=status)
