"""What every entry point does before and after a turn: access, rate limits, draining, the record.

REST, WebSocket and webhooks all come here, so a rule (a tenant never sees another's sessions,
a caller over its rate gets 429, a draining worker takes no new turns) holds for all three.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..core.messages import UserMessage, message_to_dict
from ..runtime.events import TurnObserver
from ..runtime.result import TurnResult
from ..runtime.runtime import Runtime
from ..security.auth import Caller, Forbidden, NotFound, SessionAccess, check_session_access
from ..security.tenants import TenantDirectory, TenantRecord
from ..tools.confirmation import Decision, pending_actions
from .errors import ApiError, RateLimited
from .ratelimit import Rate, RateLimiter, take_all
from .records import SessionDirectory, SessionInfo, check_session_id, runtime_session_id, turn_steps
from .webhooks import DeliveryLog


def turn_to_dict(session_id: str, result: TurnResult) -> dict[str, Any]:
    return {
        "session_id": session_id, "reply": result.reply, "stopped_by": result.stopped_by,
        "pending_actions": [{"id": a.id, "tool": a.tool, "arguments": a.arguments, "description": a.describe()}
                            for a in result.pending_actions],
        "steps": turn_steps(result), "trace_id": result.trace_id,
        "usage": {"input_tokens": result.usage.input_tokens, "output_tokens": result.usage.output_tokens,
                  "cost_usd": result.usage.cost_usd},
        "actions": [a.to_dict() for a in result.actions],
    }


@dataclass
class TurnService:
    runtime: Runtime
    tenants: TenantDirectory
    sessions: SessionDirectory
    deliveries: DeliveryLog
    limiter: RateLimiter
    drain_timeout_s: float = 30.0
    # Turns run at once by this worker; more wait their turn (see `_admission`). Enough for a few
    # seconds of the worker's CPU-bound rate (about 100 turns/s on 2 slow cores) while each waits on
    # a slow model: more in flight only lengthens every turn's waits for the database pools.
    max_running_turns: int = 256
    # (tenant, conversation id) -> its decision trace; None when events are off.
    audit: Callable[[str, str], Awaitable[dict[str, Any]]] | None = None
    draining: bool = False
    _running: int = 0
    _idle: asyncio.Event = field(default_factory=asyncio.Event)
    # tenant -> (the record they were made from, its rate, its per-user rate)
    _rates: dict[str, tuple[TenantRecord, Rate, Rate]] = field(default_factory=dict)
    _slots: asyncio.Semaphore | None = None  # made on first use, inside the serving event loop

    # access
    async def session(self, caller: Caller, session_id: str, access: SessionAccess = "read") -> SessionInfo:
        """The session if the caller may `access` it: 404 outside its tenant or if absent, 403 for
        another user's, and 403 for a write by a read-only role (see `session_access`).

        Every route comes through here before it touches the session, so a refused write has
        consumed nothing: no rate-limit token, no turn, no pending action.
        """
        check_session_id(session_id)
        info = await self.sessions.get(caller.tenant, session_id)
        if info is None:
            raise NotFound("session not found")
        check_session_access(caller, info.tenant, info.user_id, access)
        return info

    async def create_session(self, caller: Caller, session_id: str, user_id: str | None = None) -> SessionInfo:
        check_session_id(session_id)
        if not (caller.can("sessions:own") or caller.can("sessions:write")):
            raise Forbidden("this role cannot open sessions")
        if user_id is not None and user_id != caller.user_id and not caller.can("sessions:write"):
            raise Forbidden("only a service key may open a session for another user")
        info = await self.sessions.create(caller.tenant, session_id, user_id or caller.user_id, _now())
        if info is None:
            raise ApiError(409, "conflict", f"session {session_id!r} already exists",
                           hint="send messages to it, or pick another id")
        return info

    async def history(self, caller: Caller, session_id: str) -> dict[str, Any]:
        """The conversation: the model's messages, and `transcript`, its turns as the chat page drew
        them live (each turn's message or button, tool chips with their status, the reply with its
        "Not done" lines, times), with every confirmation action and where it stands (`actions`)."""
        info = await self.session(caller, session_id)
        stored = await self.runtime.store.load(runtime_session_id(info.tenant, session_id))
        messages = [message_to_dict(m) for m in stored.history] if stored else []
        actions = pending_actions(stored.state, None) if stored else []
        pending = [{"id": a.id, "tool": a.tool, "arguments": a.arguments, "description": a.describe()}
                   for a in actions if a.status == "pending"]
        return {**info.to_dict(), "messages": messages, "pending_actions": pending,
                "actions": [a.to_dict() for a in actions],
                "transcript": await self.sessions.conversation(info.tenant, session_id)}

    async def ledger(self, caller: Caller, session_id: str) -> dict[str, Any]:
        info = await self.session(caller, session_id)
        if not caller.can("ledger:read") and not caller.can("sessions:own"):
            raise Forbidden("this role cannot read the ledger")
        ledger = getattr(self.runtime.executor, "ledger", None)
        name = runtime_session_id(info.tenant, session_id)
        if ledger is None:
            return {"entries": [], "refusals": []}
        entries = [e.to_dict() for e in await ledger.entries(name)]
        refusals = [{"at": r.at.isoformat(), "tool": r.tool, "arguments": r.arguments, "decision": r.decision,
                     "reason": r.reason} for r in await ledger.audit_records(name)]
        return {"entries": entries, "refusals": refusals}

    async def end(self, caller: Caller, session_id: str) -> dict[str, Any]:
        """The conversation is over: what is worth remembering about the customer goes to memory."""
        info = await self.session(caller, session_id, "write")
        name = runtime_session_id(info.tenant, session_id)
        async with self.runtime.locks.hold(name):  # not while a turn of it runs
            extraction = await self.runtime.end_conversation(name, caller.principal)
        if extraction is None:
            return {"session_id": session_id, "remembered": 0}
        kept = extraction.memory
        return {"session_id": session_id, "remembered": len(kept.preferences) + len(kept.facts) + len(kept.unresolved),
                "summary": kept.summary}

    async def audit_trail(self, caller: Caller, session_id: str) -> dict[str, Any]:
        """Every decision of the session from the audit index: inputs, verdicts, reasoning, tools, replies."""
        info = await self.session(caller, session_id)
        if not caller.can("ledger:read"):
            raise Forbidden("this role cannot read the audit trail")
        if self.audit is None:
            raise NotFound("no audit trail: the event bus is off", hint="set [events] bus to record decisions")
        return await self.audit(info.tenant, runtime_session_id(info.tenant, session_id))

    # turns
    async def check_rate(self, caller: Caller, user_id: str) -> None:
        """The tenant's bucket, then the end user's: either one empty means 429.

        The end user is the session's owner, so a service key chatting for many customers draws
        on each customer's bucket, not on one bucket for the whole backend.
        """
        record = await self.tenants.get_tenant(caller.tenant)
        if record is None:
            raise NotFound("tenant not found")
        rates = self._rates.get(record.name)
        if rates is None or rates[0] is not record:  # the directory reloaded it: rates may have changed
            rates = self._rates[record.name] = (record, Rate(*record.rate), Rate(*record.user_rate))
        refused = await take_all(self.limiter, ((f"t:{caller.tenant}", rates[1]),
                                                 (f"u:{caller.tenant}:{user_id}", rates[2])))
        if refused is not None:
            raise RateLimited("tenant" if refused[0] == 0 else "user", refused[1].retry_after_s)

    async def answer(self, caller: Caller, session_id: str, text: str | Decision, *,
                     observer: TurnObserver | None = None) -> dict[str, Any]:
        """Run one turn for the caller: typed text, or a `Decision` (a Confirm or Decline button),
        which must name the action that is pending (409 otherwise, before any rate is spent)."""
        info = await self.session(caller, session_id, "write")
        if isinstance(text, Decision):
            stored = await self.runtime.store.load(runtime_session_id(info.tenant, session_id))
            if stored is None or text.action_id not in {a.id for a in pending_actions(stored.state)}:
                raise ApiError(409, "no_pending_action",
                               f"action {text.action_id!r} is not waiting for confirmation",
                               hint="GET the session to see its pending actions")
        return await self.run(caller, info, text, observer=observer)

    async def run(self, caller: Caller, info: SessionInfo, text: str | Decision, *,
                  observer: TurnObserver | None = None) -> dict[str, Any]:
        check_session_access(caller, info.tenant, info.user_id, "write")  # also when answer() was skipped
        if self.draining:
            raise ApiError(503, "draining", "this worker is shutting down", hint="retry on another worker",
                           headers={"Retry-After": "1"})
        await self.check_rate(caller, info.user_id)
        self._running += 1
        self._idle.clear()
        try:
            async with self._admission():
                return await self._run_admitted(caller, info, text, observer)
        finally:
            self._running -= 1
            if self._running == 0:
                self._idle.set()

    def _admission(self) -> asyncio.Semaphore:
        """At most `max_running_turns` turns inside the runtime; the others wait here, in arrival order.

        A burst bigger than the worker can serve at once (10,000 sockets sending together) then
        queues before it holds anything: no database connection waited for until the pool's
        timeout, no model call started only to time out behind the others.
        """
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_running_turns)
        return self._slots

    async def _run_admitted(self, caller: Caller, info: SessionInfo, text: str | Decision,
                            observer: TurnObserver | None) -> dict[str, Any]:
        started, clock = _now(), time.perf_counter()
        result = await self.runtime.turn(runtime_session_id(info.tenant, info.session_id), text,
                                         caller.principal, observer=observer)
        latency_ms = (time.perf_counter() - clock) * 1000
        decision = _decision_record(text, result) if isinstance(text, Decision) else None
        message = text if isinstance(text, str) else _first_text(result)  # a decision: its marker
        view = await self.sessions.record_turn(info.tenant, info.session_id, caller.user_id, message, result,
                                               started, latency_ms, decision=decision)
        return {**turn_to_dict(info.session_id, result), "turn": view}

    async def drain(self) -> bool:
        """Refuse new turns and wait for running ones; False if some were still running at the timeout."""
        self.draining = True
        if self._running == 0:
            return True
        try:
            await asyncio.wait_for(self._idle.wait(), self.drain_timeout_s)
        except TimeoutError:
            return False
        return True

    @property
    def running(self) -> int:
        return self._running


def _decision_record(decision: Decision, result: TurnResult) -> dict[str, Any]:
    """The button the customer pressed, with the action it settled (as the turn record keeps it)."""
    action = next((a for a in result.actions if a.id == decision.action_id), None)
    named = {"tool": action.tool, "arguments": action.arguments, "description": action.describe()} if action else {}
    return {**decision.to_dict(), **named}


def _first_text(result: TurnResult) -> str:
    first = result.new_messages[0] if result.new_messages else None
    return first.content if isinstance(first, UserMessage) else ""


def _now() -> datetime:
    return datetime.now(UTC)
