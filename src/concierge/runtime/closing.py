"""How a turn ends: its outcome and tool results on the bus, the reply with the facts the customer
must know whatever the model wrote, and a result for every tool call left open."""

from __future__ import annotations

import time

from ..core.events import EventType
from ..core.messages import AssistantMessage, ToolCall, ToolResultMessage
from ..tools.outcome import ToolOutcome, error_message
from .emitting import TurnEmitter
from .result import TurnState
from .truncation import render


async def emit_tool_end(emit: TurnEmitter, call: ToolCall, outcome: ToolOutcome, latency_ms: float) -> None:
    status = "pending" if outcome.pending is not None else outcome.status
    await emit(EventType.TOOL_CALL_END, tool=call.name, status=status, latency_ms=round(latency_ms, 3),
               error=error_message(outcome.error) if outcome.error and outcome.pending is None else None)
    if outcome.status == "refused":  # a scope or precondition said no: part of the audit trail
        await emit(EventType.PERMISSION_DENIED, tool=call.name, arguments=call.arguments,
                   reason=error_message(outcome.error or ""))


async def emit_outcome(emit: TurnEmitter, state: TurnState, reply: str, stopped_by: str | None,
                        started: float) -> None:
    """How the turn ended, on the bus: escalations and failures as safety events, then the reply."""
    if stopped_by == "escalated":
        await emit(EventType.ESCALATED, **(state.escalation or {}))
    elif stopped_by in ("model_error", "timeout"):
        await emit(EventType.ERROR, stopped_by=stopped_by)
    usage = state.usage
    await emit(EventType.RESPONSE_SENT, text=reply, stopped_by=stopped_by,
               latency_ms=round((time.perf_counter() - started) * 1000, 3), steps=len(state.steps),
               input_tokens=usage.input_tokens, output_tokens=usage.output_tokens, cost_usd=usage.cost_usd)


def with_facts(reply: str, state: TurnState) -> str:
    """The reply plus what the user must know whatever the model wrote: restart notices, every write
    that did not go through (so "refunded" is never the last word on a failed refund), and the
    sources a knowledge search cited when the reply names none of them."""
    parts = [*state.notices, reply] if state.notices else [reply]
    mentioned = state.escalation.get("key") if state.escalation else None
    succeeded = {(s.name, render(s.arguments)) for s in state.steps if s.kind == "tool" and s.error is None} \
        if state.unfinished_writes else set()
    for call, outcome in state.unfinished_writes:
        if outcome.key is not None and outcome.key == mentioned:
            continue  # the escalation text already says it
        if (call.name, render(call.arguments)) in succeeded:
            continue  # it failed first and went through later in the turn (a replanned step)
        label = "Not confirmed" if outcome.status == "unknown" else "Not done"
        why = error_message(outcome.error or "").removeprefix(f"{label}: ")  # said once, not twice
        parts.append(f"{label}: {call.name}({render(call.arguments)}): {why}")
    if state.citations and not any(c in reply for c in state.citations):
        parts.append("Sources: " + ", ".join(f"[{c}]" for c in state.citations))
    return "\n\n".join(p for p in parts if p)


def close_open_calls(state: TurnState, reason: str) -> None:
    """Every tool call in history gets a result, even when the turn stopped before running it."""
    answered = {m.tool_call_id for m in state.messages if isinstance(m, ToolResultMessage)}
    for message in list(state.messages):
        if isinstance(message, AssistantMessage):
            for call in message.tool_calls:
                if call.id not in answered:
                    state.messages.append(ToolResultMessage(
                        call.id, call.name, f"Not executed: the turn stopped ({reason}) before this call ran.", True
                    ))
