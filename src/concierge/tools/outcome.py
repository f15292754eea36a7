"""What one tool call produced, in the terms the transactional pipeline reasons with.

`status` says what happened to the world, which is what retries, the ledger and the reply
depend on: `succeeded`; `failed` (rejected, certainly no effect); `not_applied` (a transient
failure, certainly no effect, safe to try again); `unknown` (may or may not have taken effect);
`refused` (never sent: scope, precondition, open breaker, bad arguments); `needs_confirmation`
(paused until the user confirms).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["succeeded", "failed", "not_applied", "unknown", "refused", "needs_confirmation"]
NO_EFFECT: frozenset[str] = frozenset({"failed", "not_applied", "refused", "needs_confirmation"})


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """A value, or an error text for the model, plus what the transactional layers learned."""

    value: Any = None
    error: str | None = None
    status: Status = "succeeded"
    # Set by the confirmation gate: the turn pauses and asks the user about this action.
    pending: Any = None
    # The user must be handed to a person (an unknown outcome without lookup, a failed compensation).
    escalate: bool = False
    # The result came from the ledger: the call was not made again.
    replayed: bool = False
    key: str | None = None
    # Span attributes (breaker state, attempts, key) the runtime copies onto the tool span.
    attributes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.error is not None and self.status == "succeeded":
            object.__setattr__(self, "status", "failed")

    @property
    def is_error(self) -> bool:
        return self.error is not None


def error_text(kind: str, message: str, **details: Any) -> str:
    """A structured error the model can read: `{"error": kind, "message": ..., ...}`."""
    return json.dumps({"error": kind, "message": message, **details}, default=str, ensure_ascii=False)


def refused(kind: str, message: str, **details: Any) -> ToolOutcome:
    return ToolOutcome(error=error_text(kind, message, **details), status="refused")


def error_message(error: str) -> str:
    """The human sentence inside a structured error (or the text itself)."""
    try:
        data = json.loads(error)
    except ValueError:
        return error
    return str(data.get("message", error)) if isinstance(data, dict) else error
