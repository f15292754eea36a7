"""The agent event schema; the value type lives in `core` so every layer can emit it."""

from ..core.events import SAFETY_TYPES, SCHEMA_VERSION, AgentEvent, EventSink, EventType, partition_of

__all__ = ["SAFETY_TYPES", "SCHEMA_VERSION", "AgentEvent", "EventSink", "EventType", "partition_of"]
