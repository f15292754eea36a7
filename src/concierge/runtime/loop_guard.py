"""Loop detection: a model that repeats a call is told so, then stopped.

The same failing call (name + canonical arguments) a second time gets a note asking the
model to change course; a third identical call is not executed at all. A call that already
succeeded in this turn is never run again: the model gets the earlier result back and must
answer next. That is what keeps a looping model from paying or cancelling twice. A read is
exempt once a write has succeeded after it: re-reading an order after changing it is progress.
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

    __slots__ = ("_call", "_failures", "_key", "_succeeded", "_writes")

    def __init__(self) -> None:
        self._failures: dict[str, int] = {}
        self._succeeded: dict[str, str] = {}
        self._writes: set[str] = set()
        # The last call's canonical key: one call is looked up several times in a row.
        self._call: ToolCall | None = None
        self._key = ""

    def _key_of(self, call: ToolCall) -> str:
        if call is not self._call:
            self._call, self._key = call, call.canonical()
        return self._key

    def all_repeated(self, calls: tuple[ToolCall, ...]) -> bool:
        """Whether every one of these calls already succeeded in this turn."""
        return all(self.earlier_result(call) is not None for call in calls)

    def earlier_result(self, call: ToolCall) -> str | None:
        """The result of an identical call that already succeeded in this turn, if any."""
        return self._succeeded.get(self._key_of(call)) if self._succeeded else None

    def record_success(self, call: ToolCall, content: str, *, changed_state: bool = False) -> None:
        """Remember a successful call; a write makes earlier reads stale, so they may run again."""
        if changed_state:
            self._succeeded = {key: value for key, value in self._succeeded.items() if key in self._writes}
            self._writes.add(self._key_of(call))
        self._succeeded[self._key_of(call)] = content

    def blocked(self, call: ToolCall) -> bool:
        return bool(self._failures) and self._failures.get(self._key_of(call), 0) >= 2

    def record_failure(self, call: ToolCall) -> str | None:
        """Count a failure; returns the note to append to the error, if one is due."""
        key = self._key_of(call)
        count = self._failures.get(key, 0) + 1
        self._failures[key] = count
        return REPEAT_NOTE if count >= 2 else None


def repeated_success(earlier: str) -> str:
    return (
        "Not executed again: this exact call already succeeded in this turn. Its result was: "
        f"{earlier}\nDo not repeat it; answer the customer with this result."
    )
