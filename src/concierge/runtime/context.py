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
    ) -> Window:
        count = self.counter.count
        history = session.history
        recent = history[window_start:]
        system = self.system_text(instructions, summary, pinned)
        fixed = count(system) + MESSAGE_OVERHEAD_TOKENS
        total = fixed + count_messages(self.counter, recent) + count_messages(self.counter, turn_messages)
        folded = 0
        if total > self.budget and recent:
            window_start, summary, folded = await self._fold(instructions, history, window_start, summary, pinned,
                                                             turn_messages)
            system = self.system_text(instructions, summary, pinned)
            recent = history[window_start:]
            total = (count(system) + MESSAGE_OVERHEAD_TOKENS + count_messages(self.counter, recent)
                     + count_messages(self.counter, turn_messages))
        messages: list[Message] = [SystemMessage(system), *recent, *turn_messages]
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
