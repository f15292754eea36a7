"""Conversation messages: the one vocabulary shared by runtime, providers and storage.

Frozen dataclasses with slots: cheap to build on the hot path, safe to share between the
session history and a model request without copying. `to_dict`/`message_from_dict` give the
stable JSON shape used for persistence and the wire.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from .errors import ValidationError

# What json.dumps(arguments, sort_keys=True, separators=(",", ":"), default=str) uses, built once.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A model's request to run one tool with parsed arguments."""

    id: str
    name: str
    arguments: dict[str, Any]

    def canonical(self) -> str:
        """Name plus arguments in a stable form: equal calls give equal strings."""
        return self.name + _CANONICAL.encode(self.arguments)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments}


@dataclass(frozen=True, slots=True)
class SystemMessage:
    content: str
    role: Literal["system"] = "system"


@dataclass(frozen=True, slots=True)
class UserMessage:
    content: str
    role: Literal["user"] = "user"


@dataclass(frozen=True, slots=True)
class AssistantMessage:
    """Text, tool calls, or both."""

    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    role: Literal["assistant"] = "assistant"


@dataclass(frozen=True, slots=True)
class ToolResultMessage:
    tool_call_id: str
    name: str
    content: str
    is_error: bool = False
    role: Literal["tool"] = "tool"


Message: TypeAlias = SystemMessage | UserMessage | AssistantMessage | ToolResultMessage


def message_to_dict(message: Message) -> dict[str, Any]:
    if isinstance(message, AssistantMessage):
        data: dict[str, Any] = {"role": "assistant", "content": message.content}
        if message.tool_calls:
            data["tool_calls"] = [c.to_dict() for c in message.tool_calls]
        return data
    if isinstance(message, ToolResultMessage):
        return {
            "role": "tool",
            "tool_call_id": message.tool_call_id,
            "name": message.name,
            "content": message.content,
            "is_error": message.is_error,
        }
    return {"role": message.role, "content": message.content}


def message_from_dict(data: dict[str, Any]) -> Message:
    """Inverse of `message_to_dict`; raises ValidationError on a malformed record."""
    try:
        role = data["role"]
        if role == "system":
            return SystemMessage(str(data["content"]))
        if role == "user":
            return UserMessage(str(data["content"]))
        if role == "assistant":
            calls = tuple(
                ToolCall(str(c["id"]), str(c["name"]), dict(c.get("arguments") or {}))
                for c in data.get("tool_calls") or ()
            )
            return AssistantMessage(data.get("content"), calls)
        if role == "tool":
            return ToolResultMessage(
                str(data["tool_call_id"]), str(data["name"]), str(data["content"]), bool(data.get("is_error"))
            )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValidationError(
            f"malformed message record: {exc!r}", hint="each message needs 'role' and the fields of that role"
        ) from exc
    raise ValidationError(
        f"unknown message role {data.get('role')!r}", hint="role must be system, user, assistant or tool"
    )


def message_text(message: Message) -> str:
    """The text a token counter or summariser should see for a message."""
    if isinstance(message, AssistantMessage):
        calls = message.tool_calls
        if not calls:
            return message.content or ""
        if len(calls) == 1 and not message.content:  # the common tool step: its one call, nothing to join
            return calls[0].canonical()
        parts = [message.content or ""]
        parts.extend(c.canonical() for c in calls)
        return " ".join(p for p in parts if p)
    return message.content
