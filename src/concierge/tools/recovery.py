"""Start-up reconciliation: settle what a crash left between "attempted" and an outcome.

For each `attempted`/`unknown` ledger entry: ask the tool's lookup whether the effect
happened; failing that, re-send an idempotent call with the same key (the downstream answers
with the original result or performs it once); otherwise leave it `unknown` for a person.
Each conclusion is kept unsurfaced until the runtime tells the user in that session.
"""

from __future__ import annotations

import logging
from typing import Any

from ..core.clock import Clock, SystemClock
from ..core.errors import ToolNotFoundError
from ..core.messages import ToolCall
from ..core.principal import Principal
from .executor import ToolExecutor
from .idempotency import run_lookup
from .ledger.base import Ledger, LedgerEntry
from .registry import ToolRegistry
from .tool import ToolContext

logger = logging.getLogger(__name__)

NOTE_CONFIRMED = "went through (confirmed after a restart)"
NOTE_NOT_APPLIED = "did not go through; nothing was changed"
NOTE_COMPLETED = "went through (completed after a restart)"
NOTE_UNKNOWN = "could not be confirmed either way; a colleague will check and get back to you"


async def reconcile(ledger: Ledger, registry: ToolRegistry, sender: ToolExecutor, *,
                    clock: Clock | None = None, executor: Any = None) -> list[LedgerEntry]:
    clock = clock or SystemClock()
    settled: list[LedgerEntry] = []
    for entry in await ledger.unresolved():
        result = await _settle(entry, registry, sender, clock, executor)
        await ledger.update(result)
        settled.append(result)
        logger.info("reconciled %s %s: %s", entry.tool, entry.key, result.status)
    return settled


async def _settle(entry: LedgerEntry, registry: ToolRegistry, sender: ToolExecutor, clock: Clock,
                  executor: Any) -> LedgerEntry:
    try:
        tool = registry.get(entry.tool)
    except ToolNotFoundError:
        return entry.finish("unknown", clock.now(), error=entry.error, note=NOTE_UNKNOWN, surfaced=False)
    principal = Principal(user_id=entry.principal["user_id"], tenant=entry.principal["tenant"],
                          role=entry.principal["role"], scopes=frozenset(entry.principal["scopes"]),
                          customer_id=entry.principal.get("customer_id"))
    context = ToolContext(entry.session_id, principal, dict(entry.state), idempotency_key=entry.key,
                          executor=executor)
    happened, found = await run_lookup(tool, entry.arguments, context)
    if happened is True:
        return entry.finish("succeeded", clock.now(), result=found, note=NOTE_CONFIRMED, surfaced=False)
    if happened is False:
        return entry.finish("not_applied", clock.now(), note=NOTE_NOT_APPLIED, surfaced=False)
    if tool.safe_to_retry:
        outcome = await sender.execute(tool, ToolCall(f"recover-{entry.key}", tool.name, entry.arguments), context)
        attempts = entry.attempts + int(outcome.attributes.get("concierge.tool.attempts", 1))
        if outcome.status == "succeeded":
            return entry.finish("succeeded", clock.now(), result=outcome.value, attempts=attempts,
                                note=NOTE_COMPLETED, surfaced=False)
        if outcome.status == "failed":  # the API refused the keyed request: it had not acted on it
            return entry.finish("failed", clock.now(), error=outcome.error, attempts=attempts,
                                note=NOTE_NOT_APPLIED, surfaced=False)
        # Unreachable now: that says nothing about the earlier attempt, so it stays open.
    # An entry already reported as unknown stays reported; a crash leftover is news.
    return entry.finish("unknown", clock.now(), error=entry.error, note=NOTE_UNKNOWN,
                        surfaced=entry.surfaced and entry.status == "unknown")


def describe_for_user(entry: LedgerEntry) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in entry.arguments.items())
    return f"About your earlier request {entry.tool}({args}): it {entry.note or entry.status}."
