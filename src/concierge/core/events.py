"""The agent event: one versioned record of something that happened in a conversation.

Every layer writes the same shape (the runtime, the tool executor, retrieval, guardrails), so
evaluation, monitoring and the audit trail read one table. `event_id` is the idempotency key:
the lakehouse keeps one row per id however often a producer retried. Safety events (guardrail
triggers, errors, escalations) are never dropped under backpressure; telemetry may be sampled.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

SCHEMA_VERSION = 1
_ID = r"^[A-Za-z0-9_.:@-]{1,128}$"


class EventType(StrEnum):
    MESSAGE_RECEIVED = "message_received"
    LLM_CALL_START = "llm_call_start"
    LLM_CALL_END = "llm_call_end"
    TOOL_CALL_START = "tool_call_start"
    TOOL_CALL_END = "tool_call_end"
    RETRIEVAL_QUERY = "retrieval_query"
    RETRIEVAL_RESULT = "retrieval_result"
    RESPONSE_SENT = "response_sent"
    CONFIRMATION_REQUESTED = "confirmation_requested"
    ESCALATED = "escalated"
    ERROR = "error"
    GUARDRAIL_TRIGGERED = "guardrail_triggered"
    PERMISSION_DENIED = "permission_denied"
    REASONING_STEP = "reasoning_step"
    HANDOFF = "handoff"


# Never dropped, never sampled: losing one of these loses the audit trail.
SAFETY_TYPES: frozenset[EventType] = frozenset({
    EventType.GUARDRAIL_TRIGGERED, EventType.PERMISSION_DENIED, EventType.ERROR, EventType.ESCALATED,
})


class AgentEvent(BaseModel):
    """One event; immutable once built. `ts` is the server's clock (UTC), never the client's."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = SCHEMA_VERSION
    event_id: str = Field(default_factory=lambda: uuid.uuid4().hex, pattern=_ID)
    type: EventType
    ts: datetime = Field(default_factory=lambda: datetime.now(UTC))
    tenant: str = Field(pattern=_ID)
    conversation_id: str = Field(pattern=_ID)
    turn: int = Field(0, ge=0)
    trace_id: str = ""
    user_id: str = ""
    agent_version: str = ""
    payload: dict[str, Any] = Field(default_factory=dict)

    @field_validator("ts")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("ts must be timezone-aware")
        return value.astimezone(UTC)

    @property
    def safety(self) -> bool:
        return self.type in SAFETY_TYPES

    def partition(self, partitions: int) -> int:
        return partition_of(self.tenant, self.conversation_id, partitions)

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> AgentEvent:
        return cls.model_validate_json(data)


def partition_of(tenant: str, conversation_id: str, partitions: int) -> int:
    """hash(tenant, conversation) mod N: one conversation's events stay in order in one partition.

    A stable hash (not Python's per-process salted `hash`), so every process agrees.
    """
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    digest = hashlib.blake2b(f"{tenant}\x00{conversation_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions


class EventSink(Protocol):
    """Somewhere to emit events to (a producer on the bus): True when accepted, False when dropped."""

    async def emit(self, event: AgentEvent) -> bool: ...
