"""The handoff tool: a supervisor delegates one task to a specialist and gets a record back.

The child turn runs on its own `Runtime` (its own tools only, its own session) through the same
executor as the supervisor, so scope checks, the ledger and confirmations are one machinery.
A child turn that fails is retried; a handoff that still fails undoes the writes it made and
escalates the supervisor's turn, so a half-done delegation never looks done.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ...core.errors import ConfigError, ToolError
from ...core.events import EventSink, EventType
from ...core.messages import AssistantMessage, ToolCall
from ...core.principal import Principal
from ...llm.base import ChatModel
from ...tools.confirmation import pending_actions
from ...tools.executor import EscalationRequired, ToolExecutor
from ...tools.outcome import ToolOutcome, error_message
from ...tools.pipeline import TransactionalExecutor
from ...tools.retry import NO_RETRY
from ...tools.tool import Tool, ToolContext, make_tool
from ..agent import Agent, Limits
from ..locks import SessionLocks
from ..result import TurnResult
from ..runtime import MAX_USER_MESSAGE_CHARS, Runtime
from ..sessions.base import SessionStore
from ..sessions.memory import InMemorySessionStore
from .specialist import Specialist, unique

logger = logging.getLogger(__name__)

# How a child turn may end and still be worth another try; anything else is final.
RETRYABLE: frozenset[str] = frozenset({"model_error", "timeout", "max_steps", "empty_reply", "budget", "crashed"})
HandoffStatus = Literal["done", "awaiting_confirmation", "failed"]


@dataclass(frozen=True, slots=True)
class HandoffRecord:
    """What a handoff did, as the supervisor's model and the trace see it."""

    specialist: str
    status: HandoffStatus
    reply: str
    attempts: int
    tools: tuple[tuple[str, str], ...]  # (tool name, status) of each call the child made, in order
    dropped_context: tuple[str, ...]  # names only: the values never left the supervisor
    session_id: str
    stopped_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"specialist": self.specialist, "status": self.status, "reply": self.reply,
                "attempts": self.attempts, "tools": [{"name": n, "status": s} for n, s in self.tools],
                "dropped_context": list(self.dropped_context), "session_id": self.session_id,
                "stopped_by": self.stopped_by}


class _Recording:
    """The shared executor, remembering each call of one handoff so its writes can be undone."""

    def __init__(self, inner: ToolExecutor) -> None:
        self.inner = inner
        self.calls: list[tuple[Tool, ToolCall, ToolOutcome]] = []

    async def execute(self, tool: Tool, call: ToolCall, context: ToolContext) -> ToolOutcome:
        outcome = await self.inner.execute(tool, call, context)
        self.calls.append((tool, call, outcome))
        return outcome

    def __getattr__(self, name: str) -> Any:  # recover, notices, ledger: the runtime asks for them
        return getattr(self.inner, name)


class Handoff:
    """One specialist as a tool of the supervisor: `handoff_to_<name>(task, context)`."""

    def __init__(self, specialist: Specialist, *, supervisor: str, executor: ToolExecutor | None,
                 store: SessionStore, events: EventSink | None, locks: SessionLocks) -> None:
        self.specialist = specialist
        self.supervisor = supervisor
        self.executor = executor
        self.store = store
        self.events = events
        self.locks = locks
        self._fallback: ToolExecutor | None = None

    def tool(self) -> Tool:
        spec = self.specialist
        keys = ", ".join(spec.context_fields) or "none"
        description = f"{spec.description.strip()} (Hands the task to the {spec.name} specialist; context keys: {keys}.)"
        return make_tool(self.run, name=spec.tool_name, description=description, retry=NO_RETRY,
                         essential_fields=("specialist", "status", "reply", "attempts"))

    async def run(self, tool_context: ToolContext, task: str, context: dict[str, str] = {}) -> dict[str, Any]:  # noqa: B006
        """Delegate a task to the specialist.

        Args:
            task: what the specialist should do, in plain words (or the customer's answer to its question).
            context: facts it needs, by key; keys it does not accept are dropped.
        """
        spec = self.specialist
        if not task.strip():
            raise ToolError("the handoff task is empty", hint="say what the specialist should do")
        kept, dropped = spec.minimal_context(context)
        lines = [f"- {k}: {v}" for k, v in kept.items()]
        message = "\n".join([task.strip(), "", "Context:", *lines]) if lines else task.strip()
        if len(message) > MAX_USER_MESSAGE_CHARS:
            raise ToolError(f"the handoff message has {len(message)} characters",
                            hint=f"send at most {MAX_USER_MESSAGE_CHARS}")
        principal = spec.narrow(tool_context.principal)
        session_id = spec.session_id(tool_context.session_id)
        child = await self.store.load(session_id)
        if child is not None and pending_actions(child.state) and tool_context.user_message:
            # The child waits for the customer's answer: only the customer's own words can give it,
            # never the supervisor model's paraphrase (a model must not confirm for the customer).
            message = tool_context.user_message
        recording = _Recording(self._executor(tool_context))
        runtime = Runtime(spec.agent, store=self.store, executor=recording, events=self.events, locks=self.locks)
        tools: list[tuple[str, str]] = []
        result: TurnResult | None = None
        stopped: str | None = None
        attempts = 0
        for attempts in range(1, spec.max_attempts + 1):
            seen = len(recording.calls)
            try:
                result = await runtime.turn(session_id, message, principal)
                stopped = result.stopped_by
            except Exception:  # a crash inside the child is its failure, not the supervisor's
                logger.exception("specialist %s crashed in session %s", spec.name, session_id)
                result, stopped = None, "crashed"
            tools.extend(_calls(spec, result, recording.calls[seen:]))
            if stopped not in RETRYABLE:
                break
        status: HandoffStatus = "done" if stopped is None else (
            "awaiting_confirmation" if stopped == "awaiting_confirmation" else "failed")
        reason = ""
        if stopped == "escalated":  # the child's runtime already decided a person must look: no auto-undo
            why = (result.escalation or {}).get("reason", "") if result is not None else ""
            reason = f"The {spec.name} specialist escalated: {why}".strip()
        elif status == "failed":
            reason = await self._undo(spec, recording.calls, tool_context, session_id, principal, stopped, attempts)
        reply = reason if status == "failed" else (result.reply if result is not None else "")
        record = HandoffRecord(spec.name, status, reply, attempts, tuple(tools), dropped, session_id, stopped)
        if tool_context.emit is not None:
            await tool_context.emit(EventType.HANDOFF, **{
                "from": self.supervisor, "to": spec.name, "task": task, "status": status, "attempts": attempts,
                "context_keys": sorted(kept), "dropped_keys": list(dropped), "session_id": session_id,
                "stopped_by": stopped, "tools": record.to_dict()["tools"]})
        if status == "failed":
            raise EscalationRequired(reason)
        return record.to_dict()

    def _executor(self, tool_context: ToolContext) -> ToolExecutor:
        """The configured executor, else the one running this handoff, else a scope-checking one of our own."""
        if self.executor is not None:
            return self.executor
        if tool_context.executor is not None:
            return tool_context.executor
        if self._fallback is None:
            self._fallback = TransactionalExecutor()
        return self._fallback

    async def _undo(self, spec: Specialist, calls: Sequence[tuple[Tool, ToolCall, ToolOutcome]],
                    tool_context: ToolContext, session_id: str, principal: Principal, stopped: str | None,
                    attempts: int) -> str:
        """Compensate, newest first, each distinct write that succeeded; the reason for the person."""
        session = await self.store.load(session_id)
        state = session.state if session is not None else {}
        executor = self._executor(tool_context)
        undone: list[str] = []
        stuck: list[str] = []
        seen: set[str] = set()
        for tool, call, outcome in reversed(calls):
            if not tool.writes or outcome.status != "succeeded":
                continue
            arguments = tool.normalize(call.arguments)
            ident = outcome.key or json.dumps([tool.name, arguments], sort_keys=True, default=str)
            if ident in seen:  # a retry replayed it from the ledger: one effect, one undo
                continue
            seen.add(ident)
            label = f"{tool.name}({', '.join(f'{k}={v!r}' for k, v in arguments.items())})"
            if tool.compensate is None:
                stuck.append(f"{label} (no undo defined)")
                continue
            undo = spec.agent.registry.get(tool.compensate.tool)
            try:
                undo_args = undo.normalize(tool.compensate.arguments(arguments, outcome.value))
            except Exception as exc:  # a broken undo mapping is the person's to sort out, said plainly
                logger.exception("cannot build the undo of %s in session %s", tool.name, session_id)
                stuck.append(f"{label} ({type(exc).__name__}: {exc})")
                continue
            # A confirmation id set by trusted code covers the undo, and makes its ledger key stable.
            context = ToolContext(session_id, principal, state, confirmation_id=f"handoff-undo:{ident}",
                                  emit=tool_context.emit)
            result = await executor.execute(undo, ToolCall(f"{call.id}-undo", undo.name, undo_args), context)
            if result.status == "succeeded":
                undone.append(label)
            else:
                stuck.append(f"{label} ({error_message(result.error or result.status)})")
        text = f"The {spec.name} specialist did not finish ({stopped}) after {attempts} attempt(s)."
        if undone:
            text += f" Undone: {'; '.join(undone)}."
        if stuck:
            text += f" Could not undo: {'; '.join(stuck)}."
        return text


def _calls(spec: Specialist, result: TurnResult | None,
           executed: Sequence[tuple[Tool, ToolCall, ToolOutcome]]) -> list[tuple[str, str]]:
    """(name, status) per call the child's model asked for: executed, not available, or not run."""
    by_id = {call.id: ("needs_confirmation" if o.pending is not None else o.status) for _, call, o in executed}
    if result is None:
        return [(call.name, by_id[call.id]) for _, call, _ in executed]
    found: list[tuple[str, str]] = []
    for message in result.new_messages:
        if isinstance(message, AssistantMessage):
            for call in message.tool_calls:
                missing = "not_executed" if call.name in spec.agent.registry else "unavailable"
                found.append((call.name, by_id.get(call.id, missing)))
    return found


def supervisor_agent(instructions: str, model: ChatModel, specialists: Sequence[Specialist], *,
                     tools: Sequence[Tool | Callable[..., Any]] = (), executor: ToolExecutor | None = None,
                     store: SessionStore | None = None, events: EventSink | None = None,
                     name: str = "supervisor", version: str = "", limits: Limits | None = None) -> Agent:
    """An agent whose tools are its own `tools` plus one handoff tool per specialist.

    Pass the supervisor `Runtime`'s executor as `executor` (or run it on a `TransactionalExecutor`,
    which hands itself to its tools) so children share its ledger and scope checks. `store` keeps
    the children's sessions (so a confirmation continues where it paused) and `events` their events.
    """
    items = unique(specialists)
    own = [t if isinstance(t, Tool) else make_tool(t) for t in tools]
    for spec in items:
        if spec.tool_name in {t.name for t in own}:
            raise ConfigError(f"the supervisor already has a tool named {spec.tool_name!r}",
                              hint="rename that tool or the specialist")
    shared_store = store if store is not None else InMemorySessionStore()
    locks = SessionLocks()
    handoffs = [Handoff(s, supervisor=name, executor=executor, store=shared_store, events=events, locks=locks).tool()
                for s in items]
    return Agent(instructions, model, tools=(*own, *handoffs), name=name, version=version,
                 limits=limits or Limits())
