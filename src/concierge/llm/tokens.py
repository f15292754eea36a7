"""Token counting.

Providers that know their tokenizer (the embedded model) count exactly; elsewhere a
character-based estimate is used for budgeting. Estimates err high so budgets hold.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from ..core.messages import Message, message_text

# Per-message framing overhead (role markers, separators) in chat templates.
MESSAGE_OVERHEAD_TOKENS = 4


class TokenCounter(Protocol):
    def count(self, text: str) -> int: ...


class EstimatingCounter:
    """~3.5 characters per token for English and JSON, rounded up."""

    def count(self, text: str) -> int:
        return (len(text) * 2 + 6) // 7


class CallableCounter:
    """Wraps an exact tokenizer function (e.g. llama.cpp's `tokenize`)."""

    def __init__(self, tokenize: Callable[[str], int]) -> None:
        self._tokenize = tokenize

    def count(self, text: str) -> int:
        return self._tokenize(text)


def count_messages(counter: TokenCounter, messages: Sequence[Message]) -> int:
    count = counter.count
    total = 0
    for m in messages:
        total += count(message_text(m)) + MESSAGE_OVERHEAD_TOKENS
    return total
