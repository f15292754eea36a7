"""Events a turn emits while it runs, for callers that show progress (a WebSocket, a console).

A turn without an observer pays nothing: the runtime checks for one before building an event.
With one, the model is called through `stream()` so the reply arrives token by token, and each
tool call is announced when it starts and when it finishes. Events are plain JSON-ready data.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

EventType = Literal["token", "tool_started", "tool_finished", "confirmation_requested"]


@dataclass(frozen=True, slots=True)
class TurnEvent:
    type: EventType
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **self.data}


TurnObserver = Callable[[TurnEvent], Awaitable[None]]
