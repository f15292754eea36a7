"""concierge: customer-service agents that act correctly.

The public surface is small on purpose; everything else lives in the sub-packages.
"""

from ._version import __version__
from .core import (
    AssistantMessage,
    ConciergeError,
    SystemMessage,
    ToolCall,
    ToolResultMessage,
    Usage,
    UserMessage,
)
from .llm import ChatModel, ModelResponse, ModelSettings, ToolSpec
from .runtime import Agent, Limits, Runtime, TurnResult
from .tools import Tool, ToolContext, tool

__all__ = [
    "Agent", "AssistantMessage", "ChatModel", "ConciergeError", "Limits", "ModelResponse", "ModelSettings",
    "Runtime", "SystemMessage", "Tool", "ToolCall", "ToolContext", "ToolResultMessage", "ToolSpec", "TurnResult",
    "Usage", "UserMessage", "__version__", "tool",
]
