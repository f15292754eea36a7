"""Exponential backoff with full jitter, for tool calls that are safe to repeat.

Full jitter (a uniform delay between zero and the exponential ceiling) spreads the retries of
many sessions hitting one struggling downstream, instead of synchronising them.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from ..core.errors import ToolDefinitionError


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 3
    base_delay_s: float = 0.05
    max_delay_s: float = 2.0
    rand: Callable[[], float] = field(default=random.random, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ToolDefinitionError("max_attempts must be at least 1")
        if self.base_delay_s < 0 or self.max_delay_s < 0:
            raise ToolDefinitionError("retry delays must not be negative")

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (0-based): uniform in [0, min(cap, base·2^retry)]."""
        return self.rand() * min(self.max_delay_s, self.base_delay_s * (2**retry))


NO_RETRY = RetryPolicy(max_attempts=1)
