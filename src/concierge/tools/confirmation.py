"""The confirmation gate: a write runs only after the user said yes to that exact action.

When the model calls a gated tool, the gate records a pending action (tool + normalised
arguments) in the session state and the turn pauses with a question. The customer answers in
one of two ways: a typed message, which the runtime reads with `settle_pending` (only a clear
"yes" confirms, and it settles every action waiting), or a `Decision` (a press of Confirm or
Decline on one action's card), which `settle_decision` applies to exactly that action and which
is never read as free text. Only a call with exactly the confirmed arguments executes. The
model cannot confirm on the user's behalf, and changed arguments make a new pending action.

An action the customer declined, or one the backend refused after it was confirmed, is not put
to the customer again: the same call (tool and arguments) is refused without a new question
until a later typed message asks for it again (`reopen_asked`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Literal

from ..core.errors import ConciergeError, ValidationError
from ..core.messages import ToolCall
from .executor import ToolExecutor
from .outcome import ToolOutcome, error_message, error_text
from .tool import Tool, ToolContext

STATE_KEY = "concierge.pending_actions"
_SEQ_KEY = "concierge.action_seq"
_KEEP = 20
ActionStatus = Literal["pending", "confirmed", "declined", "expired", "executed", "refused"]
Answer = Literal["confirm", "decline"]
ANSWERS: tuple[str, ...] = ("confirm", "decline")

_YES = re.compile(
    r"^\s*(yes|y|yeah|yep|yup|sure|ok|okay|confirm(ed)?|i confirm|go ahead|please do|do it|proceed|"
    r"correct|absolutely|please proceed)\b", re.IGNORECASE)
_NO = re.compile(r"^\s*(no|n|nope|don'?t|do not|cancel|stop|never ?mind|wait|hold on)\b", re.IGNORECASE)
_NEGATION = re.compile(r"\b(not|don'?t|no|never|wait|cancel)\b", re.IGNORECASE)
# A message that opens like this refuses; unlike `_NO`, "cancel ..." here is a request, not an answer.
_REFUSAL = re.compile(r"^\s*(no|n|nope|don'?t|do not|never ?mind)\b", re.IGNORECASE)
_MIN_MENTION = 3  # shorter argument values ("", "US") would match almost any message


@dataclass(slots=True)
class PendingAction:
    id: str
    tool: str
    arguments: dict[str, Any]
    description: str
    status: ActionStatus = "pending"
    # Declined, or refused by the backend once confirmed: the same call is refused without a new
    # question until the customer asks for it again.
    blocked: bool = False
    # Why the backend refused it (its own words), for the model and the card.
    reason: str = ""

    def describe(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.arguments.items())
        return f"{self.tool}({args}): {self.description}"

    def call_text(self) -> str:
        return f"{self.tool}({', '.join(f'{k}={v!r}' for k, v in self.arguments.items())})"

    def to_dict(self) -> dict[str, Any]:
        """What a client shows on a card: the action, its words, and where it stands."""
        return {"id": self.id, "tool": self.tool, "arguments": self.arguments, "description": self.describe(),
                "status": self.status, "reason": self.reason}


class ActionNotPending(ConciergeError):
    """A decision named an action that is not waiting for an answer (already settled, or unknown)."""

    status: ClassVar[int] = 409
    code: ClassVar[str] = "no_pending_action"

    def __init__(self, action_id: str) -> None:
        super().__init__(f"action {action_id!r} is not waiting for confirmation",
                         hint="GET the session to see its pending actions")


@dataclass(frozen=True, slots=True)
class Decision:
    """A press of Confirm or Decline on one pending action's card: a structured answer, not text.

    It settles exactly the action it names, it is not screened as free text (there is none), and
    the conversation keeps it as a confirmation marker rather than a typed "yes" or "no".
    """

    action_id: str
    answer: Answer

    def __post_init__(self) -> None:
        if not isinstance(self.action_id, str) or not 1 <= len(self.action_id) <= 100:
            raise ValidationError("action_id must be 1 to 100 characters",
                                  hint="use the id of a pending action")
        if self.answer not in ANSWERS:
            raise ValidationError(f"answer must be 'confirm' or 'decline', got {self.answer!r}")

    def to_dict(self) -> dict[str, str]:
        return {"action_id": self.action_id, "answer": self.answer}


def classify_reply(text: str) -> Literal["yes", "no"] | None:
    """A deterministic reading of the user's answer; anything unclear is neither."""
    if _YES.match(text) and not _NEGATION.search(text):
        return "yes"
    if _NO.match(text):
        return "no"
    return None


_FIELDS = frozenset(f.name for f in fields(PendingAction))


def pending_actions(state: dict[str, Any], status: str | None = "pending") -> list[PendingAction]:
    actions = [PendingAction(**{k: v for k, v in a.items() if k in _FIELDS})
               for a in state.get(STATE_KEY, [])]
    return [a for a in actions if status is None or a.status == status]


def _save(state: dict[str, Any], actions: list[PendingAction]) -> None:
    state[STATE_KEY] = [asdict(a) for a in actions[-_KEEP:]]


def _update(state: dict[str, Any], action_id: str, **changes: Any) -> None:
    actions = pending_actions(state, None)
    for action in actions:
        if action.id == action_id:
            for name, value in changes.items():
                setattr(action, name, value)
    _save(state, actions)


def settle_pending(state: dict[str, Any], user_message: str) -> tuple[str | None, list[PendingAction]]:
    """Apply the user's typed answer to the actions awaiting it: ("yes", confirmed actions), ("no", ...)
    or (None, [...]) when the message is not an answer (they expire: a new call asks again)."""
    actions = pending_actions(state, None)
    waiting = [a for a in actions if a.status == "pending"]
    if not waiting:
        return None, []
    answer = classify_reply(user_message)
    new_status: ActionStatus = {"yes": "confirmed", "no": "declined"}.get(answer or "", "expired")  # type: ignore[assignment]
    for action in waiting:
        action.status, action.blocked = new_status, new_status == "declined"
    _save(state, actions)
    return answer, waiting


def settle_decision(state: dict[str, Any], decision: Decision) -> PendingAction:
    """Apply a Confirm or Decline press to exactly the action it names; `ActionNotPending` otherwise."""
    actions = pending_actions(state, None)
    action = next((a for a in actions if a.id == decision.action_id and a.status == "pending"), None)
    if action is None:
        raise ActionNotPending(decision.action_id)
    action.status = "confirmed" if decision.answer == "confirm" else "declined"
    action.blocked = decision.answer == "decline"
    _save(state, actions)
    return action


def decision_text(decision: Decision, action: PendingAction) -> str:
    """The confirmation marker the conversation keeps in place of a typed answer (what the model reads)."""
    if decision.answer == "confirm":
        return f"[Confirm pressed] {action.call_text()}"
    return f"[Decline pressed] {action.call_text()}: do not do it."


def asks_for(text: str, action: PendingAction) -> bool:
    """Whether a customer's message asks for `action` again: it does not open with a refusal ("no",
    "don't", "never mind"), and it names the action by the tool's verb (the first word of its name,
    e.g. "cancel") or by one of its argument values (e.g. the order id, with or without its '#')."""
    if _REFUSAL.match(text):
        return False
    lowered = text.casefold()
    verb = action.tool.split("_", 1)[0].casefold()
    if len(verb) >= _MIN_MENTION and re.search(rf"\b{re.escape(verb)}", lowered):
        return True
    return any(value in lowered for value in _argument_words(action.arguments))


def _argument_words(arguments: dict[str, Any]) -> list[str]:
    values: list[str] = []
    for value in arguments.values():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str | int) and not isinstance(item, bool):
                word = str(item).strip().lstrip("#").casefold()
                if len(word) >= _MIN_MENTION:
                    values.append(word)
    return values


def reopen_asked(state: dict[str, Any], user_message: str) -> list[PendingAction]:
    """A typed customer message that asks again for a declined or refused action lifts its block,
    so the model may propose it once more (and the customer is asked once more)."""
    actions = pending_actions(state, None)
    reopened = [a for a in actions if a.blocked and asks_for(user_message, a)]
    for action in reopened:
        action.blocked = False
    if reopened:
        _save(state, actions)
    return reopened


def question(actions: list[PendingAction]) -> str:
    lines = "\n".join(f"- {a.describe()}" for a in actions)
    return (f"Before I go ahead, please confirm {'this action' if len(actions) == 1 else 'these actions'}:\n"
            f"{lines}\nReply \"yes\" to proceed or \"no\" to stop.")


def _not_again(action: PendingAction) -> ToolOutcome:
    """The refusal of a call the customer already declined, or the backend already refused: the
    message is for the customer's reply too, `next` tells the model what to do instead."""
    if action.status == "refused":
        kind = "refused_before"
        message = f"Not done: already refused earlier in this conversation ({action.reason or 'by the backend'})"
        instead = "explain why it cannot be done"
    else:
        kind = "declined_by_customer"
        message = "Not done: declined by the customer earlier in this conversation"
        instead = "ask what they want instead"
    next_step = f"Do not propose it again unless the customer asks for it again; {instead}."
    return ToolOutcome(error=error_text(kind, message, action_id=action.id, next=next_step), status="refused")


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
            covered = dataclasses.replace(context, confirmation_id=confirmed.id)
            outcome = await self.inner.execute(tool, call, covered)
            if outcome.status == "failed":  # the backend said no: do not ask the customer again
                _update(context.state, confirmed.id, status="refused", blocked=True,
                        reason=error_message(outcome.error or "")[:300])
            elif outcome.status not in ("not_applied", "refused"):  # a no-effect failure may be tried again
                _update(context.state, confirmed.id, status="executed")
            return outcome
        action = next((a for a in match if a.status == "pending"), None)
        if action is None:
            blocked = next((a for a in reversed(match) if a.blocked), None)
            if blocked is not None:
                return _not_again(blocked)
            seq = int(context.state.get(_SEQ_KEY, 0)) + 1
            context.state[_SEQ_KEY] = seq
            material = json.dumps([context.session_id, tool.name, call.arguments, seq], sort_keys=True)
            action_id = "pa_" + hashlib.sha256(material.encode()).hexdigest()[:16]
            action = PendingAction(action_id, tool.name, call.arguments, tool.description)
            _save(context.state, [*actions, action])
        message = "Not executed yet: the customer must confirm this exact action first. Ask them."
        return ToolOutcome(error=error_text("needs_confirmation", message, action_id=action.id),
                           status="needs_confirmation", pending=action)
