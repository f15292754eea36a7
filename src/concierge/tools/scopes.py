"""Permission scopes, checked before anything runs.

The principal comes from authentication (the runtime's caller), never from the model, so a
prompt cannot grant itself `refund:write`. Every refusal is written to the audit log.
"""

from __future__ import annotations

from ..core.clock import Clock, SystemClock
from ..core.messages import ToolCall
from .executor import ToolExecutor
from .ledger.base import AuditRecord, Ledger
from .outcome import ToolOutcome, refused
from .tool import Tool, ToolContext


class ScopeCheck:
    def __init__(self, inner: ToolExecutor, *, audit: Ledger | None = None, clock: Clock | None = None) -> None:
        self.inner = inner
        self.audit = audit
        self.clock = clock or SystemClock()

    async def execute(self, tool: Tool, call: ToolCall, context: ToolContext) -> ToolOutcome:
        missing = context.principal.missing(sorted(tool.scopes))
        if not missing:
            return await self.inner.execute(tool, call, context)
        reason = f"the signed-in user lacks the scope(s) {', '.join(missing)} that {tool.name} needs"
        if self.audit is not None:
            await self.audit.audit(AuditRecord(self.clock.now(), context.session_id, tool.name, call.arguments,
                                               context.principal.to_dict(), "forbidden", reason))
        return refused("forbidden", f"Not allowed: {reason}. Do not retry; tell the customer a person "
                                    "with the right permission must do this.", missing_scopes=missing)
