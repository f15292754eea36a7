"""A circuit breaker per downstream: stop calling a service that keeps failing, probe it later.

closed → (N consecutive transport failures) → open → (cool-down) → half-open, one probe at a
time → closed on success, open again on failure. Only transport failures (`not_applied`,
`unknown`) count; a business rejection means the service is healthy. The state is put on
every outcome's attributes so it shows in the trace.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..core.clock import Clock, SystemClock
from ..core.messages import ToolCall
from .executor import ToolExecutor
from .outcome import ToolOutcome, error_text
from .tool import Tool, ToolContext

_TRANSPORT_FAILURES = ("not_applied", "unknown")


@dataclass(slots=True)
class CircuitBreaker:
    failure_threshold: int = 5
    reset_after_s: float = 30.0
    state: str = "closed"
    failures: int = 0
    opened_at: float = 0.0
    probing: bool = False

    def admit(self, now: float) -> bool:
        if self.state == "open" and now - self.opened_at >= self.reset_after_s:
            self.state, self.probing = "half_open", False
        if self.state == "closed":
            return True
        if self.state == "half_open" and not self.probing:
            self.probing = True
            return True
        return False

    def record(self, ok: bool, now: float) -> None:
        if ok:
            self.state, self.failures, self.probing = "closed", 0, False
            return
        self.failures += 1
        if self.state == "half_open" or self.failures >= self.failure_threshold:
            self.state, self.opened_at, self.probing = "open", now, False


class Breakers:
    """Wraps an executor with one `CircuitBreaker` per downstream (the tool's `downstream` or name)."""

    def __init__(self, inner: ToolExecutor, *, failure_threshold: int = 5, reset_after_s: float = 30.0,
                 clock: Clock | None = None) -> None:
        self.inner = inner
        self.failure_threshold = failure_threshold
        self.reset_after_s = reset_after_s
        self.clock = clock or SystemClock()
        self.breakers: dict[str, CircuitBreaker] = {}

    def breaker(self, name: str) -> CircuitBreaker:
        found = self.breakers.get(name)
        if found is None:
            found = self.breakers[name] = CircuitBreaker(self.failure_threshold, self.reset_after_s)
        return found

    async def execute(self, tool: Tool, call: ToolCall, context: ToolContext) -> ToolOutcome:
        name = tool.downstream or tool.name
        breaker = self.breaker(name)
        now = self.clock.now().timestamp()
        if not breaker.admit(now):
            message = f"{name} is failing; calls are paused for up to {self.reset_after_s:g} s"
            return ToolOutcome(error=error_text("circuit_open", message), status="not_applied",
                               attributes={"concierge.breaker.state": breaker.state, "concierge.breaker": name})
        outcome = await self.inner.execute(tool, call, context)
        breaker.record(outcome.status not in _TRANSPORT_FAILURES, self.clock.now().timestamp())
        attributes = {**outcome.attributes, "concierge.breaker.state": breaker.state, "concierge.breaker": name}
        return dataclasses.replace(outcome, attributes=attributes)
