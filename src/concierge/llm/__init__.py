"""Model providers behind one `ChatModel` protocol, plus token counting and pricing."""

from .base import (
    ChatModel,
    ModelResponse,
    ModelSettings,
    StreamDone,
    StreamEvent,
    StreamingFromComplete,
    TextDelta,
    ToolChoice,
    ToolSpec,
)
from .pricing import DEFAULT_PRICES, Price, PriceTable
from .tokens import CallableCounter, EstimatingCounter, TokenCounter, count_messages

__all__ = [
    "DEFAULT_PRICES", "CallableCounter", "ChatModel", "EstimatingCounter", "ModelResponse", "ModelSettings",
    "Price", "PriceTable", "StreamDone", "StreamEvent", "StreamingFromComplete", "TextDelta", "TokenCounter",
    "ToolChoice", "ToolSpec", "count_messages",
]
