"""Recall: decay-weighted ranking of a user's facts, overridden by the current conversation, within a budget.

    score = alpha · max(0, cosine similarity) + (1 − alpha) · 0.5 ** (age_days / half_life_days)
            + issue_boost · [the fact is, or belongs to, an open issue]

`age` runs from the fact's `created_at` (when a conversation last stated it) to now. Facts are
then taken best first while their context line still fits the token budget; a line too long
for what is left is skipped and smaller ones after it may still fit.

The current conversation takes precedence (`contradicted`): for a stored preference or fact
whose key the current conversation states with another value, the stored one is dropped. The
current values come from `current_facts` (key → value, e.g. from the runtime) and from `Slot`
patterns run over the current conversation's user messages (later messages win).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..core.messages import Message, UserMessage
from ..llm.tokens import TokenCounter
from .checks import MemoryPolicy, normalise_key
from .profile import Fact, linked_to_open_issue

SECONDS_PER_DAY = 86400.0


def recency(age: timedelta, half_life_days: float) -> float:
    """0.5 ** (age / half-life): 1 for a fact stated now, 0.5 after one half-life."""
    age_days = max(age.total_seconds(), 0.0) / SECONDS_PER_DAY
    return 0.5 ** (age_days / half_life_days)


def score(similarity: float, age: timedelta, policy: MemoryPolicy, linked_to_open_issue: bool = False) -> float:
    base = policy.alpha * max(similarity, 0.0) + (1.0 - policy.alpha) * recency(age, policy.half_life_days)
    return base + (policy.issue_boost if linked_to_open_issue else 0.0)


@dataclass(frozen=True, slots=True)
class Recalled:
    """One recalled fact, why it ranked where it did, and the line to pin into context."""

    fact: Fact
    score: float
    similarity: float
    recency: float
    linked_to_open_issue: bool
    line: str
    tokens: int


_LABELS = {"preference": "Preference", "fact": "Fact", "satisfaction": "Satisfaction last time"}


def context_line(fact: Fact) -> str:
    label = f"{fact.status.capitalize()} issue" if fact.kind == "issue" and fact.status else _LABELS[fact.kind]
    return (f"{label} {fact.key}: {fact.value} (from conversation {fact.conversation_id}, turn {fact.turn}, "
            f"{fact.created_at.date().isoformat()})")


@dataclass(frozen=True, slots=True)
class Slot:
    """A pattern that reads a key's current value out of what the customer says now."""

    key: str
    pattern: re.Pattern[str]
    values: Mapping[str, str]  # matched word (lowercase) → canonical value

    def find(self, text: str) -> str | None:
        """The canonical value of the last match in `text` (the first non-empty group of each match)."""
        found = None
        for match in self.pattern.finditer(text):
            word = next((g for g in match.groups() if g), None)
            if word is not None:
                found = self.values.get(word.lower(), word.lower())
        return found


_CHANNELS = {"email": "email", "e-mail": "email", "mail": "email", "phone": "phone", "telephone": "phone",
             "call": "phone", "sms": "sms", "text": "sms", "chat": "chat", "post": "post", "letter": "post",
             "whatsapp": "whatsapp"}
_LANGUAGES = ("english", "french", "german", "spanish", "italian", "dutch", "portuguese", "polish")

DEFAULT_SLOTS: tuple[Slot, ...] = (
    Slot("contact_channel", re.compile(
        r"\b(?:by|via|through|over|per|on the)\s+(e-?mail|mail|phone|telephone|sms|text|chat|post|letter|whatsapp)\b"
        r"|\b(call|text|e-?mail|whatsapp)\s+me\b", re.IGNORECASE), _CHANNELS),
    Slot("language", re.compile(r"\b(?:in|speak)\s+(" + "|".join(_LANGUAGES) + r")\b", re.IGNORECASE),
         {name: name for name in _LANGUAGES}),
)


def current_values(conversation: Sequence[Message] | None, slots: Iterable[Slot] = DEFAULT_SLOTS,
                   facts: Mapping[str, str] | None = None) -> dict[str, str]:
    """Key → value stated in the current conversation: slot matches in user messages, then `facts`."""
    values: dict[str, str] = {}
    for message in conversation or ():
        if isinstance(message, UserMessage):
            for slot in slots:
                value = slot.find(message.content)
                if value is not None:
                    values[normalise_key(slot.key)] = value
    for key, value in (facts or {}).items():
        values[normalise_key(key)] = str(value)
    return values


def contradicted(fact: Fact, current: Mapping[str, str]) -> bool:
    """Same key, other value → the stored preference/fact is stale (issues and satisfaction never are).

    The values agree when the current one equals the stored one or appears in it as a whole word
    (case-insensitive): a stored "email, not phone" agrees with a current "email".
    """
    if fact.kind not in ("preference", "fact") or fact.key not in current:
        return False
    now = current[fact.key].strip().lower()
    stored = fact.value.strip().lower()
    if not now or now == stored:
        return False
    return re.search(rf"\b{re.escape(now)}\b", stored) is None


def within_budget(ranked: Sequence[Recalled], budget_tokens: int) -> list[Recalled]:
    """Best first, each taken if its line still fits the remaining budget."""
    chosen, left = [], budget_tokens
    for item in ranked:
        if item.tokens <= left:
            chosen.append(item)
            left -= item.tokens
    return chosen


def rank(facts: Sequence[Fact], similarities: Mapping[int, float], now: datetime, policy: MemoryPolicy,
         open_issue_keys: set[str], counter: TokenCounter) -> list[Recalled]:
    """Every fact scored, best first (ties: newer first, then lower id)."""
    items = []
    for fact in facts:
        similarity = similarities.get(fact.id, 0.0)
        linked = linked_to_open_issue(fact, open_issue_keys)
        age = now - fact.created_at
        line = context_line(fact)
        items.append(Recalled(fact, score(similarity, age, policy, linked), similarity,
                              recency(age, policy.half_life_days), linked, line, counter.count(line)))
    items.sort(key=lambda r: (-r.score, -r.fact.created_at.timestamp(), r.fact.id))
    return items
