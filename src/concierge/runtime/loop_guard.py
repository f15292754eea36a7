"""Loop detection: a model that repeats a failing call is told so, then stopped.

The same failing call (name + canonical arguments) a second time gets a note asking the
model to change course; a third identical call is not executed at all.
"""

from __future__ import annotations

from ..core.messages import ToolCall

REPEAT_NOTE = (
    "Note: this exact call has now failed twice with the same arguments. Do not repeat it; "
    "change the arguments, use another tool, or tell the customer what went wrong."
)
BLOCKED = (
    "Not executed: this exact call already failed twice with the same arguments. "
    "Change course or explain the problem to the customer."
)


class LoopGuard:
    """Per-turn memory of failing calls."""

    __slots__ = ("_failures",)

    def __init__(self) -> None:
        self._failures: dict[str, int] = {}

    def blocked(self, call: ToolCall) -> bool:
        return bool(self._failures) and self._failures.get(call.canonical(), 0) >= 2

    def record_failure(self, call: ToolCall) -> str | None:
        """Count a failure; returns the note to append to the error, if one is due."""
        key = call.canonical()
        count = self._failures.get(key, 0) + 1
        self._failures[key] = count
        return REPEAT_NOTE if count >= 2 else None
