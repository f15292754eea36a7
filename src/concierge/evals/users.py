"""The customer side of an evaluated conversation: scripted lines, a confirming oracle user, or a model.

tau2-bench's conventions: the user ends the conversation by writing `###STOP###`, says
`###TRANSFER###` when handed to a human and `###OUT-OF-SCOPE###` when the scenario does not
cover what the agent asks. A simulated user gets the task's persona and instructions, never the
expected actions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ..core.errors import ValidationError
from ..core.messages import AssistantMessage, Message, SystemMessage, UserMessage
from ..llm.base import ChatModel, ModelSettings
from ..runtime.result import TurnResult
from .tasks import Task

STOP = "###STOP###"
TRANSFER = "###TRANSFER###"
OUT_OF_SCOPE = "###OUT-OF-SCOPE###"
END_MARKERS = (STOP, TRANSFER, OUT_OF_SCOPE)


def ends_conversation(text: str) -> bool:
    return any(marker in text for marker in END_MARKERS)


class UserSimulator(Protocol):
    async def start(self) -> str:
        """The customer's first message."""
        ...

    async def reply(self, result: TurnResult) -> str:
        """The customer's answer to the agent's last turn (may contain an end marker)."""
        ...


class ScriptedUser:
    """Says its lines in order, whatever the agent answers; then stops. For deterministic runs."""

    def __init__(self, turns: Sequence[str]) -> None:
        if not turns or not all(isinstance(t, str) and t.strip() for t in turns):
            raise ValidationError("a scripted user needs at least one non-empty line")
        self._turns = list(turns)
        self._next = 0

    async def start(self) -> str:
        self._next = 1
        return self._turns[0]

    async def reply(self, result: TurnResult) -> str:
        if self._next >= len(self._turns):
            return STOP
        self._next += 1
        return self._turns[self._next - 1]


class ConfirmingUser:
    """States the reason for the call, says "yes" to every confirmation question, then stops.

    The user for reference agents: it lets the oracle's writes through the confirmation gate.
    """

    def __init__(self, opening: str) -> None:
        if not opening.strip():
            raise ValidationError("the opening message is empty")
        self._opening = opening

    async def start(self) -> str:
        return self._opening

    async def reply(self, result: TurnResult) -> str:
        return "yes" if result.stopped_by == "awaiting_confirmation" else STOP


_GUIDE = f"""You are a customer talking to a customer-service agent by chat. Play the customer below.
Rules:
- Write only what the customer says: one short message at a time, in the first person.
- Give information only when the agent asks for it, and only what the scenario says you know.
- Never invent ids, emails or other facts that are not in the scenario.
- When the agent asks you to confirm an action that matches what you want, answer "yes".
- When everything you wanted is done, or cannot be done, write {STOP} on its own.
- If you are transferred to a human agent, write {TRANSFER}.
- If the agent asks about something the scenario does not cover, write {OUT_OF_SCOPE}.

The scenario:
"""


class ModelUser:
    """A model plays the customer from the task's scenario (tau2's user simulator)."""

    def __init__(self, model: ChatModel, task: Task, *, settings: ModelSettings | None = None) -> None:
        self.model = model
        self._system = _GUIDE + task.user_scenario.describe()
        self._history: list[Message] = []  # from the customer's side: the agent speaks as "user"
        self._settings = settings or ModelSettings(temperature=0.0, max_tokens=200)

    async def _say(self) -> str:
        response = await self.model.complete([SystemMessage(self._system), *self._history], settings=self._settings)
        text = (response.message.content or "").strip() or STOP
        self._history.append(AssistantMessage(content=text))
        self.usage_tokens = getattr(self, "usage_tokens", 0) + response.usage.total_tokens
        return text

    async def start(self) -> str:
        self._history.append(UserMessage("Hello, how can I help you today?"))
        return await self._say()

    async def reply(self, result: TurnResult) -> str:
        self._history.append(UserMessage(result.reply or "(no answer)"))
        return await self._say()
