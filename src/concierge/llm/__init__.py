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
from .embedded import MODEL_NAME as EMBEDDED_MODEL_NAME
from .embedded import EmbeddedModel, default_model_path, tool_call_schema
from .pricing import DEFAULT_PRICES, Price, PriceTable
from .tokens import CallableCounter, EstimatingCounter, TokenCounter, count_messages

__all__ = [
    "DEFAULT_PRICES",
    "EMBEDDED_MODEL_NAME",
    "CallableCounter",
    "ChatModel",
    "EmbeddedModel",
    "EstimatingCounter",
    "ModelResponse",
    "ModelSettings",
    "Price",
    "PriceTable",
    "StreamDone",
    "StreamEvent",
    "StreamingFromComplete",
    "TextDelta",
    "TokenCounter",
    "ToolChoice",
    "ToolSpec",
    "count_messages",
    "default_model_path",
    "tool_call_schema",
]
