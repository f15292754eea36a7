"""A turn's events on the bus: the fields every event of the turn shares, set once.

Telemetry must never break a turn: a sink that fails is logged and the turn goes on. Safety
events still wait for room (the producer's backpressure); only a failing sink loses them, and
that is logged as an error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ..core.events import AgentEvent, EventSink, EventType

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class TurnEmitter:
    sink: EventSink
    tenant: str
    conversation_id: str
    turn: int
    trace_id: str
    user_id: str
    agent_version: str

    async def __call__(self, type: EventType, **payload: Any) -> None:
        try:
            event = AgentEvent(type=type, tenant=self.tenant, conversation_id=self.conversation_id, turn=self.turn,
                               trace_id=self.trace_id, user_id=self.user_id, agent_version=self.agent_version,
                               payload=payload)
            await self.sink.emit(event)
        except Exception:
            logger.exception("could not emit %s for %s", type, self.conversation_id)
