"""Exactly-once effects: an idempotency key per logical action, recorded in a durable ledger.

The key is a hash of who asked (tenant, user), where (session), what (tool and normalised
arguments) and under which confirmation. Model re-tries, network re-tries, restarts and
duplicate deliveries of a user message all produce the same key; a genuinely new action
has other arguments or a new confirmation, hence a new key.

Per key: a `succeeded` or `failed` entry is answered from the ledger without calling again;
an `attempted` or `unknown` one is first resolved with the tool's `lookup`; without a lookup a
non-idempotent call is reported as unknown and escalated, never sent blind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
from typing import Any

from ..core.clock import Clock, SystemClock
from ..core.messages import ToolCall
from .executor import ToolExecutor
from .ledger.base import Ledger, LedgerEntry
from .outcome import ToolOutcome, error_text
from .tool import Tool, ToolContext

UNKNOWN_MESSAGE = (
    "We could not confirm whether this went through. It has not been retried, so it cannot have "
    "happened twice; a colleague will check and get back to you."
)


def idempotency_key(context: ToolContext, tool: str, arguments: dict[str, Any]) -> str:
    principal = context.principal
    material = [principal.tenant, principal.user_id, context.session_id, tool, arguments,
                context.confirmation_id or ""]
    digest = hashlib.sha256(json.dumps(material, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return f"ik_{digest[:40]}"


async def run_lookup(tool: Tool, arguments: dict[str, Any], context: ToolContext) -> tuple[bool | None, Any]:
    """(True, result) if the effect happened, (False, None) if not, (None, None) if it cannot tell."""
    if tool.lookup is None:
        return None, None
    try:
        found = tool.lookup(arguments, context)
        if inspect.isawaitable(found):
            found = await found
    except Exception:  # the lookup's own service is down: the outcome stays unknown
        return None, None
    return (found is not None), found


class Ledgered:
    """Wraps an executor: keys, `attempted` before the call, the outcome after, replay on repeats."""

    def __init__(self, inner: ToolExecutor, ledger: Ledger, *, clock: Clock | None = None) -> None:
        self.inner = inner
        self.ledger = ledger
        self.clock = clock or SystemClock()

    async def execute(self, tool: Tool, call: ToolCall, context: ToolContext) -> ToolOutcome:
        if not tool.writes:
            return await self.inner.execute(tool, call, context)
        key = idempotency_key(context, tool.name, call.arguments)
        context = dataclasses.replace(context, idempotency_key=key)
        kept = {k: context.state[k] for k in tool.state_keys if k in context.state}
        fresh = LedgerEntry(key, context.session_id, tool.name, call.arguments, context.principal.to_dict(),
                            "attempted", self.clock.now(), state=kept)
        entry = await self.ledger.claim(fresh)  # a new key (the common case) costs one insert
        uncertain = False  # an earlier attempt may have acted and nothing has ruled it out
        if entry is not None:
            if entry.status in ("attempted", "unknown"):
                entry, settled = await self.resolve(tool, entry, context)
                uncertain = not settled  # re-sent on the key's strength, not ruled out by a lookup
            if entry.status in ("succeeded", "failed", "unknown"):
                return self.replay(entry)
            # No effect so far (a transient failure, or resolution said so): take the key over.
            fresh = dataclasses.replace(fresh, attempts=entry.attempts + 1, started_at=self.clock.now())
            holder = await self.ledger.claim(fresh, over=("not_applied", "attempted", "unknown"))
            if holder is not None:  # another worker took it in between
                return dataclasses.replace(self.replay(holder), key=key)
        outcome = await self.inner.execute(tool, call, context)
        return await self.record(tool, fresh, outcome, context, uncertain=uncertain)

    async def record(self, tool: Tool, entry: LedgerEntry, outcome: ToolOutcome, context: ToolContext,
                     *, uncertain: bool = False) -> ToolOutcome:
        attempts = entry.attempts - 1 + int(outcome.attributes.get("concierge.tool.attempts", 1))
        status = outcome.status
        if status in ("refused", "needs_confirmation"):
            status = "not_applied"
        if uncertain and status == "not_applied":  # this attempt did nothing; an earlier one may have
            status = "unknown"
            outcome = dataclasses.replace(outcome, status="unknown")
        if status == "unknown" and tool.lookup is not None:
            happened, found = await run_lookup(tool, entry.arguments, context)
            if happened is not None:
                status = "succeeded" if happened else "not_applied"
                outcome = ToolOutcome(value=found) if happened else dataclasses.replace(outcome, status="not_applied")
        now = self.clock.now()
        if status == "succeeded":
            await self.ledger.update(entry.finish("succeeded", now, result=outcome.value, attempts=attempts))
        else:
            await self.ledger.update(entry.finish(status, now, error=outcome.error, attempts=attempts))  # type: ignore[arg-type]
        if status == "unknown" and not outcome.escalate:  # a transport unknown: say so plainly
            outcome = dataclasses.replace(
                outcome, escalate=not tool.safe_to_retry,
                error=error_text("outcome_unknown", UNKNOWN_MESSAGE, detail=outcome.error, key=entry.key),
            )
        attributes = {**outcome.attributes, "concierge.idempotency_key": entry.key, "concierge.ledger.status": status}
        return dataclasses.replace(outcome, key=entry.key, attributes=attributes)

    async def resolve(self, tool: Tool, entry: LedgerEntry, context: ToolContext) -> tuple[LedgerEntry, bool]:
        """Settle an `attempted`/`unknown` entry with the tool's lookup before anything else.

        Returns the entry and whether the lookup settled it."""
        happened, found = await run_lookup(tool, entry.arguments, context)
        if happened is None:
            if tool.safe_to_retry:
                # The downstream de-duplicates by key: sending it again is how we find out.
                return dataclasses.replace(entry, status="not_applied"), False
            return entry, False
        now = self.clock.now()
        if happened:
            settled = entry.finish("succeeded", now, result=found, note="confirmed by lookup")
        else:
            settled = entry.finish("not_applied", now, note="did not happen (checked by lookup)")
        await self.ledger.update(settled)
        return settled, True

    def replay(self, entry: LedgerEntry) -> ToolOutcome:
        attributes = {"concierge.idempotency_key": entry.key, "concierge.ledger.status": entry.status,
                      "concierge.ledger.replayed": True}
        if entry.status == "succeeded":
            return ToolOutcome(value=entry.result, replayed=True, key=entry.key, attributes=attributes)
        if entry.status == "unknown":
            return ToolOutcome(error=error_text("outcome_unknown", UNKNOWN_MESSAGE, key=entry.key), status="unknown",
                               escalate=True, replayed=True, key=entry.key, attributes=attributes)
        if entry.status == "attempted":
            return ToolOutcome(error=error_text("in_progress", "this action is already being carried out"),
                               status="unknown", replayed=True, key=entry.key, attributes=attributes)
        return ToolOutcome(error=entry.error or error_text("rejected", "failed earlier"), status="failed",
                           replayed=True, key=entry.key, attributes=attributes)

