"""The confirmation gate: a write runs only after the user said yes to that exact action.

When the model calls a gated tool, the gate records a pending action (tool + normalised
arguments) in the session state and the turn pauses with a question. The runtime reads the
user's next message with `settle_pending`; only a clear "yes" marks the actions confirmed, and
only a call with exactly the confirmed arguments executes. The model cannot confirm on the
user's behalf, and changed arguments make a new pending action instead.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import asdict, dataclass
from typing import Any, Literal

from ..core.messages import ToolCall
from .executor import ToolExecutor
from .outcome import ToolOutcome, error_text
from .tool import Tool, ToolContext

STATE_KEY = "concierge.pending_actions"
_SEQ_KEY = "concierge.action_seq"
_KEEP = 20
ActionStatus = Literal["pending", "confirmed", "declined", "expired", "executed"]

_YES = re.compile(
    r"^\s*(yes|y|yeah|yep|yup|sure|ok|okay|confirm(ed)?|i confirm|go ahead|please do|do it|proceed|"
    r"correct|absolutely|please proceed)\b", re.IGNORECASE)
_NO = re.compile(r"^\s*(no|n|nope|don'?t|do not|cancel|stop|never ?mind|wait|hold on)\b", re.IGNORECASE)
_NEGATION = re.compile(r"\b(not|don'?t|no|never|wait|cancel)\b", re.IGNORECASE)


@dataclass(slots=True)
class PendingAction:
    id: str
    tool: str
    arguments: dict[str, Any]
    description: str
    status: ActionStatus = "pending"

    def describe(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.arguments.items())
        return f"{self.tool}({args}): {self.description}"


def classify_reply(text: str) -> Literal["yes", "no"] | None:
    """A deterministic reading of the user's answer; anything unclear is neither."""
    if _YES.match(text) and not _NEGATION.search(text):
        return "yes"
    if _NO.match(text):
        return "no"
    return None


def pending_actions(state: dict[str, Any], status: str | None = "pending") -> list[PendingAction]:
    actions = [PendingAction(**a) for a in state.get(STATE_KEY, [])]
    return [a for a in actions if status is None or a.status == status]


def _save(state: dict[str, Any], actions: list[PendingAction]) -> None:
    state[STATE_KEY] = [asdict(a) for a in actions[-_KEEP:]]


def _set_status(state: dict[str, Any], action_id: str, status: ActionStatus) -> None:
    actions = pending_actions(state, None)
    for action in actions:
        if action.id == action_id:
            action.status = status
    _save(state, actions)


def settle_pending(state: dict[str, Any], user_message: str) -> tuple[str | None, list[PendingAction]]:
    """Apply the user's answer to the actions awaiting it: ("yes", confirmed actions), ("no", ...) or (None, [])."""
    waiting = pending_actions(state)
    if not waiting:
        return None, []
    answer = classify_reply(user_message)
    new_status: ActionStatus = {"yes": "confirmed", "no": "declined"}.get(answer or "", "expired")  # type: ignore[assignment]
    for action in waiting:
        _set_status(state, action.id, new_status)
    return answer, waiting


def question(actions: list[PendingAction]) -> str:
    lines = "\n".join(f"- {a.describe()}" for a in actions)
    return (f"Before I go ahead, please confirm {'this action' if len(actions) == 1 else 'these actions'}:\n"
            f"{lines}\nReply \"yes\" to proceed or \"no\" to stop.")


class ConfirmationGate:
    """Wraps an executor: gated tools run only under a matching recorded confirmation."""

    def __init__(self, inner: ToolExecutor) -> None:
        self.inner = inner

    async def execute(self, tool: Tool, call: ToolCall, context: ToolContext) -> ToolOutcome:
        # A confirmation id set by trusted code (a confirmed saga's steps) already covers this call.
        if not tool.needs_confirmation or context.confirmation_id is not None:
            return await self.inner.execute(tool, call, context)
        actions = pending_actions(context.state, None)
        match = [a for a in actions if a.tool == tool.name and a.arguments == call.arguments]
        confirmed = next((a for a in match if a.status == "confirmed"), None)
        if confirmed is not None:
            outcome = await self.inner.execute(tool, call, dataclasses.replace(context, confirmation_id=confirmed.id))
            if outcome.status not in ("not_applied", "refused"):  # a no-effect failure may be tried again
                _set_status(context.state, confirmed.id, "executed")
            return outcome
        action = next((a for a in match if a.status == "pending"), None)
        if action is None:
            seq = int(context.state.get(_SEQ_KEY, 0)) + 1
            context.state[_SEQ_KEY] = seq
            material = json.dumps([context.session_id, tool.name, call.arguments, seq], sort_keys=True)
            action_id = "pa_" + hashlib.sha256(material.encode()).hexdigest()[:16]
            action = PendingAction(action_id, tool.name, call.arguments, tool.description)
            _save(context.state, [*actions, action])
        message = "Not executed yet: the customer must confirm this exact action first. Ask them."
        return ToolOutcome(error=error_text("needs_confirmation", message, action_id=action.id),
                           status="needs_confirmation", pending=action)
