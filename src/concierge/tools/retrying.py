"""Per-attempt timeout and retries, only where a repeat cannot double an effect.

A call that certainly had no effect (`not_applied`) may always be tried again. A call whose
outcome is `unknown` is repeated only when the tool is a read or idempotent (the downstream
honours the idempotency key); anything else is left for the ledger to resolve with `lookup`.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from ..core.messages import ToolCall
from .executor import ToolExecutor
from .outcome import ToolOutcome, error_text
from .tool import Tool, ToolContext


class Retrying:
    def __init__(self, inner: ToolExecutor, *, sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self.inner = inner
        self.sleep = sleep

    async def execute(self, tool: Tool, call: ToolCall, context: ToolContext) -> ToolOutcome:
        policy = tool.retry
        attempt, uncertain = 1, False
        while True:
            outcome = await self._attempt(tool, call, dataclasses.replace(context, attempt=attempt))
            uncertain = uncertain or outcome.status == "unknown"
            retry = outcome.status == "not_applied" or (outcome.status == "unknown" and tool.safe_to_retry)
            if not retry or outcome.escalate or attempt >= policy.max_attempts:
                attributes = {**outcome.attributes, "concierge.tool.attempts": attempt}
                if uncertain and outcome.status == "not_applied":
                    # The last attempt certainly did nothing, but an earlier one may have.
                    return dataclasses.replace(outcome, status="unknown", attributes=attributes)
                return dataclasses.replace(outcome, attributes=attributes)
            await self.sleep(policy.delay(attempt - 1))
            attempt += 1

    async def _attempt(self, tool: Tool, call: ToolCall, context: ToolContext) -> ToolOutcome:
        if tool.timeout_s is None:
            return await self.inner.execute(tool, call, context)
        try:
            async with asyncio.timeout(tool.timeout_s):
                return await self.inner.execute(tool, call, context)
        except TimeoutError:
            # A write that timed out may have landed; a read that timed out changed nothing.
            status = "unknown" if tool.writes else "not_applied"
            message = f"no answer within {tool.timeout_s:g} s"
            return ToolOutcome(error=error_text("timeout", message), status=status)
