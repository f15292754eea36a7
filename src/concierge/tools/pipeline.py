"""The transactional executor: every policy wrapper stacked in the order the design requires.

scope check → extra checks (policy caps) → preconditions → confirmation gate → idempotency key +
ledger → circuit breaker → timeout + retries → the function. `recover()` reconciles what a crash
left behind before the first turn; `notices()` hands the runtime what the user has not been told yet.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ..core.clock import Clock, SystemClock
from ..core.errors import ToolArgumentsError
from ..core.messages import ToolCall
from .breaker import Breakers
from .confirmation import ConfirmationGate
from .executor import DirectExecutor, ToolExecutor
from .idempotency import Ledgered
from .ledger.base import Ledger, LedgerEntry
from .ledger.memory import InMemoryLedger
from .outcome import ToolOutcome, error_text
from .preconditions import PreconditionCheck
from .recovery import describe_for_user, reconcile
from .registry import ToolRegistry
from .retrying import Retrying
from .scopes import ScopeCheck
from .tool import Tool, ToolContext


class TransactionalExecutor:
    def __init__(
        self,
        ledger: Ledger | None = None,
        *,
        clock: Clock | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        breaker_threshold: int = 5,
        breaker_reset_s: float = 30.0,
        inner: ToolExecutor | None = None,
        checks: Sequence[Callable[[ToolExecutor], ToolExecutor]] = (),
    ) -> None:
        """`checks` wrap the preconditions, first one outermost, right after the scope check: a
        check that refuses (a policy cap) stops the call before it is confirmed or recorded."""
        self.ledger: Ledger = ledger if ledger is not None else InMemoryLedger()
        self.clock = clock or SystemClock()
        self.retrying = Retrying(inner or DirectExecutor(), sleep=sleep)
        self.breakers = Breakers(self.retrying, failure_threshold=breaker_threshold,
                                 reset_after_s=breaker_reset_s, clock=self.clock)
        self.ledgered = Ledgered(self.breakers, self.ledger, clock=self.clock)
        gate = ConfirmationGate(self.ledgered)
        checked: ToolExecutor = PreconditionCheck(gate, self.ledger, clock=self.clock)
        for wrap in reversed(checks):
            checked = wrap(checked)
        self.outer: ToolExecutor = ScopeCheck(checked, audit=self.ledger, clock=self.clock)
        self._recovered = False
        self._recovery_lock = asyncio.Lock()

    async def execute(self, tool: Tool, call: ToolCall, context: ToolContext) -> ToolOutcome:
        try:  # validated before anything runs; keys are computed from the normalised form
            call = dataclasses.replace(call, arguments=tool.normalize(call.arguments))
        except ToolArgumentsError as exc:
            return ToolOutcome(error=error_text("invalid_arguments", str(exc)), status="refused")
        return await self.outer.execute(tool, call, dataclasses.replace(context, executor=self))

    async def recover(self, registry: ToolRegistry) -> list[LedgerEntry]:
        """Reconcile `attempted`/`unknown` entries once, before new turns run."""
        async with self._recovery_lock:
            if self._recovered:
                return []
            settled = await reconcile(self.ledger, registry, self.retrying, clock=self.clock, executor=self)
            self._recovered = True
            return settled

    async def notices(self, session_id: str) -> list[str]:
        """What reconciliation concluded for this session and the user has not been told; marked told."""
        entries = [e for e in await self.ledger.entries(session_id) if not e.surfaced]
        await self.ledger.mark_surfaced([e.key for e in entries])
        return [describe_for_user(e) for e in entries]
