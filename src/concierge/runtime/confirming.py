"""The runtime's side of the confirmation gate: how the customer's answer settles pending actions,
and how a turn pauses to ask.

A turn's customer input is typed text or a `Decision` (a press of Confirm or Decline on one
action's card). A decision is settled when the turn starts, before anything else reads it, and
the conversation keeps a confirmation marker in its place; it is never screened as free text,
because it carries none. Typed text settles every waiting action ("yes" confirms, "no" declines,
anything else lets them expire) and may ask again for an action declined earlier.
"""

from __future__ import annotations

from typing import Any

from ..core.events import EventType
from ..tools.confirmation import (
    Decision,
    PendingAction,
    decision_text,
    question,
    reopen_asked,
    settle_decision,
    settle_pending,
)
from .events import TurnEvent
from .result import TurnState


def open_decision(session_state: dict[str, Any], decision: Decision) -> tuple[PendingAction, str]:
    """Settle the action the decision names (`ActionNotPending` if it is not waiting) and give the
    marker that stands for the customer's answer in the conversation."""
    action = settle_decision(session_state, decision)
    return action, decision_text(decision, action)


def take_answer(session_state: dict[str, Any], text: str,
                decided: PendingAction | None) -> tuple[str | None, list[PendingAction]]:
    """What the customer's input answers: ("yes", actions to run now), ("no", ...) or (None, ...)."""
    if decided is not None:  # settled by `open_decision` when the turn started
        return ("yes" if decided.status == "confirmed" else "no"), [decided]
    answer, actions = settle_pending(session_state, text)
    reopen_asked(session_state, text)
    return answer, actions


def decision_payload(decision: Decision, action: PendingAction) -> dict[str, Any]:
    """The decision as events and turn records carry it."""
    return {**decision.to_dict(), "tool": action.tool, "arguments": action.arguments,
            "description": action.describe()}


async def ask_confirmation(state: TurnState) -> tuple[str, str]:
    """Pause the turn on its pending actions: tell the watchers, ask the customer."""
    if state.observer is not None or state.emit is not None:
        actions = [{"id": a.id, "tool": a.tool, "arguments": a.arguments, "description": a.describe()}
                   for a in state.pending]
        if state.observer is not None:
            await state.observer(TurnEvent("confirmation_requested", {"actions": actions}))
        if state.emit is not None:
            await state.emit(EventType.CONFIRMATION_REQUESTED, actions=actions)
    return question(state.pending), "awaiting_confirmation"
