"""The context sent to the model on each call, kept within a token budget.

Older turns are folded into a running summary (written by a `Summarizer`, normally the model
itself) while the facts established by write actions are pinned into the system message and
never summarised away: forgetting "order W123 already refunded" is how double refunds happen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ..core.messages import Message, SystemMessage, UserMessage, message_text
from ..llm.base import ChatModel, ModelSettings
from ..llm.tokens import MESSAGE_OVERHEAD_TOKENS, TokenCounter, count_messages
from .sessions.base import Session
from .truncation import cut_text


class Summarizer(Protocol):
    async def summarize(self, previous: str | None, messages: Sequence[Message], max_tokens: int) -> str:
        """A summary of `previous` plus `messages`, aiming at `max_tokens` or fewer."""
        ...


SUMMARY_PROMPT = (
    "You maintain the running summary of a customer-service conversation. Merge the previous "
    "summary with the new messages into a short factual summary: who the customer is, what they "
    "asked, what was looked up, what was done and what is still open. No greetings, no advice."
)


class ModelSummarizer:
    """Summaries written by a chat model (usually the agent's own)."""

    def __init__(self, model: ChatModel) -> None:
        self.model = model

    async def summarize(self, previous: str | None, messages: Sequence[Message], max_tokens: int) -> str:
        transcript = "\n".join(f"{m.role}: {message_text(m)}" for m in messages)
        prompt = f"Previous summary: {previous or '(none)'}\n\nNew messages:\n{transcript}"
        response = await self.model.complete(
            [SystemMessage(SUMMARY_PROMPT), UserMessage(prompt)],
            tool_choice="none",
            settings=ModelSettings(temperature=0.0, max_tokens=max_tokens),
        )
        return (response.message.content or "").strip()


@dataclass(slots=True)
class Window:
    """Where the session's context window stands after building one model request."""

    messages: list[Message]
    tokens: int
    window_start: int
    summary: str | None
    summarized: int  # how many history messages were folded into the summary by this build


class TokenTally:
    """What one turn's context builds have counted already, so that each message is counted once.

    While a turn runs, the session's history does not change and the turn's own messages only
    grow, so a build counts only the messages added since the previous build (and the system
    text only when it changed) instead of the whole window on every model call. Anything that
    does not match what was counted (another list, a different window start, a shorter list)
    is simply counted again.
    """

    __slots__ = (
        "_history",
        "_history_len",
        "_history_start",
        "_history_tokens",
        "_system",
        "_system_key",
        "_system_tokens",
        "_turn",
        "_turn_last",
        "_turn_len",
        "_turn_tokens",
    )

    def __init__(self) -> None:
        self._history: Sequence[Message] | None = None
        self._history_start = self._history_len = self._history_tokens = 0
        self._turn: Sequence[Message] | None = None
        self._turn_len = self._turn_tokens = 0
        self._turn_last: Message | None = None
        self._system_key: tuple[str, str | None, tuple[str, ...]] | None = None
        self._system = SystemMessage("")
        self._system_tokens = 0

    def system(
        self, builder: ContextBuilder, instructions: str, summary: str | None, pinned: Sequence[str]
    ) -> tuple[SystemMessage, int]:
        key = (instructions, summary, tuple(pinned))
        if key != self._system_key:
            text = builder.system_text(instructions, summary, pinned)
            self._system_key, self._system = key, SystemMessage(text)
            self._system_tokens = builder.counter.count(text)
        return self._system, self._system_tokens

    def history(self, counter: TokenCounter, history: Sequence[Message], start: int) -> int:
        """Tokens of history[start:] (with per-message overhead)."""
        if history is not self._history or start != self._history_start or len(history) != self._history_len:
            self._history, self._history_start, self._history_len = history, start, len(history)
            self._history_tokens = count_messages(counter, history[start:])
        return self._history_tokens

    def turn(self, counter: TokenCounter, messages: Sequence[Message]) -> int:
        """Tokens of the turn's messages (with per-message overhead)."""
        seen = self._turn_len
        stale = seen and (len(messages) < seen or messages[seen - 1] is not self._turn_last)
        if messages is not self._turn or stale:
            self._turn, self._turn_len, self._turn_tokens, seen = messages, 0, 0, 0
        if len(messages) > seen:
            self._turn_tokens += count_messages(counter, messages[seen:])
            self._turn_len, self._turn_last = len(messages), messages[-1]
        return self._turn_tokens


class ContextBuilder:
    def __init__(self, counter: TokenCounter, summarizer: Summarizer, budget_tokens: int) -> None:
        self.counter = counter
        self.summarizer = summarizer
        self.budget = budget_tokens
        self.summary_tokens = max(32, budget_tokens // 8)

    def system_text(self, instructions: str, summary: str | None, pinned: Sequence[str]) -> str:
        parts = [instructions]
        if summary:
            parts.append(f"Summary of the earlier conversation:\n{summary}")
        if pinned:
            facts = "\n".join(f"- {fact}" for fact in pinned)
            parts.append(f"Facts established by completed actions (authoritative, never contradict them):\n{facts}")
        return "\n\n".join(parts)

    async def build(
        self,
        instructions: str,
        session: Session,
        window_start: int,
        summary: str | None,
        pinned: Sequence[str],
        turn_messages: Sequence[Message],
        tally: TokenTally | None = None,
    ) -> Window:
        """The request for the next model call; pass the turn's `tally` to count each message once."""
        if tally is None:
            tally = TokenTally()
        counter = self.counter
        history = session.history
        system, system_tokens = tally.system(self, instructions, summary, pinned)
        total = (system_tokens + MESSAGE_OVERHEAD_TOKENS + tally.history(counter, history, window_start)
                 + tally.turn(counter, turn_messages))
        folded = 0
        if total > self.budget and window_start < len(history):
            window_start, summary, folded = await self._fold(instructions, history, window_start, summary, pinned,
                                                             turn_messages)
            system, system_tokens = tally.system(self, instructions, summary, pinned)
            total = (system_tokens + MESSAGE_OVERHEAD_TOKENS + tally.history(counter, history, window_start)
                     + tally.turn(counter, turn_messages))
        messages: list[Message] = [system]
        messages += history[window_start:] if window_start else history
        messages += turn_messages
        return Window(messages, total, window_start, summary, folded)

    async def _fold(
        self,
        instructions: str,
        history: Sequence[Message],
        window_start: int,
        summary: str | None,
        pinned: Sequence[str],
        turn_messages: Sequence[Message],
    ) -> tuple[int, str | None, int]:
        """Fold whole old turns into the summary until what is left uses at most ~60% of the budget.

        Cutting only at user messages never separates a tool call from its result. Folding
        below the budget, not just to it, means the summariser runs every few turns, not every turn.
        """
        reserve = self.summary_tokens + MESSAGE_OVERHEAD_TOKENS
        fixed = self.counter.count(self.system_text(instructions, None, pinned)) + reserve
        target = max(0, int(self.budget * 0.6) - fixed - count_messages(self.counter, turn_messages))
        sizes = [self.counter.count(message_text(m)) + MESSAGE_OVERHEAD_TOKENS for m in history[window_start:]]
        suffix = sum(sizes)  # tokens of history[index:] at each step below
        cut = len(history)  # if no earlier cut fits, every finished turn goes into the summary
        for offset, size in enumerate(sizes):
            index = window_start + offset
            if offset and suffix <= target and isinstance(history[index], UserMessage):
                cut = index
                break
            suffix -= size
        if cut == window_start:
            return window_start, summary, 0
        new_summary = await self.summarizer.summarize(summary, history[window_start:cut], self.summary_tokens)
        if self.counter.count(new_summary) > self.summary_tokens:
            new_summary = cut_text(new_summary, self.summary_tokens, self.counter)
        return cut, new_summary, cut - window_start
