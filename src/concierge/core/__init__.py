"""Value types shared by every layer: messages, tool calls, usage, clock, ids, errors."""

from .clock import Clock, ManualClock, SystemClock
from .errors import (
    ConciergeError,
    ConfigError,
    LimitExceeded,
    ModelError,
    ModelHTTPError,
    ModelUnavailableError,
    SessionError,
    ToolArgumentsError,
    ToolDefinitionError,
    ToolError,
    ToolNotFoundError,
    ToolOutcomeUnknown,
    ToolTransientError,
    ValidationError,
)
from .ids import IdFactory, RandomIds, SequentialIds
from .messages import (
    AssistantMessage,
    Message,
    SystemMessage,
    ToolCall,
    ToolResultMessage,
    UserMessage,
    message_from_dict,
    message_text,
    message_to_dict,
)
from .principal import Principal, as_principal
from .usage import Usage

__all__ = [
    "AssistantMessage",
    "Clock",
    "ConciergeError",
    "ConfigError",
    "IdFactory",
    "LimitExceeded",
    "ManualClock",
    "Message",
    "ModelError",
    "ModelHTTPError",
    "ModelUnavailableError",
    "Principal",
    "RandomIds",
    "SequentialIds",
    "SessionError",
    "SystemClock",
    "SystemMessage",
    "ToolArgumentsError",
    "ToolCall",
    "ToolDefinitionError",
    "ToolError",
    "ToolNotFoundError",
    "ToolOutcomeUnknown",
    "ToolResultMessage",
    "ToolTransientError",
    "Usage",
    "UserMessage",
    "ValidationError",
    "as_principal",
    "message_from_dict",
    "message_text",
    "message_to_dict",
]
