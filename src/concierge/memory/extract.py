"""Extraction: after a conversation, a model turns the transcript into memories worth keeping.

The model answers a JSON schema (`ExtractedMemory`, sent as `response_format`). The answer is
validated twice: by pydantic (shape, types, lengths), then against the transcript (every cited
turn must exist, keys must be usable). Anything wrong raises `ExtractionError` and nothing is
stored: a half-understood conversation is worse than none.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from ..core.errors import ModelError, ValidationError
from ..core.messages import Message, SystemMessage, ToolResultMessage, UserMessage, message_text
from ..llm.base import ChatModel, ModelSettings
from .checks import check_aware, check_id, normalise_key
from .notes import SessionNotes
from .profile import Fact

TOOL_RESULT_CHARS = 300  # tool results are cut in the transcript the extractor sees


class ExtractionError(ModelError):
    """The extraction model's answer is unusable; nothing was stored."""


class ExtractedItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str = Field(min_length=1, max_length=100, description="snake_case name, e.g. contact_channel")
    value: str = Field(min_length=1, max_length=1000)
    turn: int = Field(ge=1, description="number of the transcript message that states it")
    issue_key: str | None = Field(default=None, description="key of the unresolved issue this belongs to")


class ExtractedIssue(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str = Field(min_length=1, max_length=100, description="snake_case name, e.g. order_w123_refund")
    description: str = Field(min_length=1, max_length=1000)
    turn: int = Field(ge=1)


class ExtractedMemory(BaseModel):
    """The JSON the extraction model must return."""

    model_config = ConfigDict(extra="forbid")
    summary: str = Field(max_length=2000, description="two or three factual sentences")
    preferences: list[ExtractedItem] = Field(default_factory=list, max_length=50)
    unresolved: list[ExtractedIssue] = Field(default_factory=list, max_length=50)
    resolved: list[str] = Field(default_factory=list, max_length=50,
                                description="keys of earlier issues this conversation resolved")
    facts: list[ExtractedItem] = Field(default_factory=list, max_length=50)
    satisfaction: Literal["high", "medium", "low"] | None = None


EXTRACTION_PROMPT = """You write the long-term memory of a customer-service agent.
Read the numbered conversation and extract only what will help if this customer contacts us again:
1. preferences the customer expressed (contact channel, language, product preferences, ...);
2. unresolved issues: problems not fully fixed when the conversation ended;
3. resolved: keys of previously open issues that this conversation resolved;
4. key facts (account details, constraints, context) - never secrets, card numbers or passwords;
5. the customer's satisfaction: high, medium or low.
Use short snake_case keys; prefer these where they fit: contact_channel, language, shipping_address,
payment_method, size, delivery_window. Cite in "turn" the number of the message that states each item.
Answer with JSON only, matching the schema."""


@dataclass(frozen=True, slots=True)
class Extraction:
    """A validated extraction of one conversation, with its provenance."""

    conversation_id: str
    turns: int  # messages in the transcript; every cited turn is in 1..turns
    memory: ExtractedMemory

    def to_facts(self, tenant: str, user_id: str, now: datetime) -> list[Fact]:
        check_aware("now", now)
        common = {"tenant": tenant, "user_id": user_id, "conversation_id": self.conversation_id,
                  "created_at": now, "last_used_at": now}
        facts: dict[tuple[str, str], Fact] = {}  # a key stated twice: the later statement wins
        for item in self.memory.preferences:
            facts["preference", normalise_key(item.key)] = Fact(
                kind="preference", key=item.key, value=item.value, turn=item.turn, issue_key=item.issue_key, **common)
        for item in self.memory.facts:
            facts["fact", normalise_key(item.key)] = Fact(
                kind="fact", key=item.key, value=item.value, turn=item.turn, issue_key=item.issue_key, **common)
        for issue in self.memory.unresolved:
            facts["issue", normalise_key(issue.key)] = Fact(
                kind="issue", key=issue.key, value=issue.description, turn=issue.turn, status="open", **common)
        if self.memory.satisfaction is not None:
            facts["satisfaction", "satisfaction"] = Fact(
                kind="satisfaction", key="satisfaction", value=self.memory.satisfaction, turn=self.turns, **common)
        return list(facts.values())

    @property
    def resolved_keys(self) -> list[str]:
        return [normalise_key(k) for k in self.memory.resolved]

    def to_notes(self, tenant: str, user_id: str, now: datetime) -> SessionNotes:
        return SessionNotes(
            tenant=tenant, user_id=user_id, conversation_id=self.conversation_id, updated_at=now,
            summary=self.memory.summary.strip(),
            unresolved=tuple(f"{normalise_key(i.key)}: {i.description}" for i in self.memory.unresolved),
            preferences={normalise_key(p.key): p.value for p in self.memory.preferences},
            satisfaction=self.memory.satisfaction)


def render_transcript(transcript: Sequence[Message]) -> str:
    """`[n] role: text` per message, n 1-based over the whole transcript (system messages skipped)."""
    lines = []
    for number, message in enumerate(transcript, start=1):
        if isinstance(message, SystemMessage):
            continue
        text = message_text(message)
        if isinstance(message, ToolResultMessage) and len(text) > TOOL_RESULT_CHARS:
            text = text[:TOOL_RESULT_CHARS] + " ..."
        lines.append(f"[{number}] {message.role}: {text}")
    return "\n".join(lines)


def _strip_fences(text: str) -> str:
    match = re.fullmatch(r"\s*```(?:json)?\s*(.*?)\s*```\s*", text, flags=re.DOTALL)
    return match.group(1) if match else text


def parse_extraction(content: str | None, conversation_id: str, turns: int) -> Extraction:
    """Validate a model's answer against the schema and the transcript; ExtractionError if unusable."""
    if not content or not content.strip():
        raise ExtractionError("the extraction model returned no JSON",
                              hint="use a model that supports JSON-schema output (response_format)")
    try:
        data = json.loads(_strip_fences(content))
    except json.JSONDecodeError as exc:
        raise ExtractionError(f"the extraction model's answer is not JSON: {exc.msg} at {exc.pos}",
                              hint="use a model that supports JSON-schema output (response_format)") from exc
    try:
        memory = ExtractedMemory.model_validate(data)
    except PydanticValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'answer'}: {e['msg']}" for e in exc.errors()[:5])
        raise ExtractionError(f"the extraction model's answer does not match the schema: {problems}",
                              hint="nothing was stored; retry, or use a model that follows JSON schemas") from exc
    cited = [*memory.preferences, *memory.facts, *memory.unresolved]
    for item in cited:
        if item.turn > turns:
            raise ExtractionError(f"the extraction cites turn {item.turn} for {item.key!r}, "
                                  f"but the transcript has {turns} messages", hint="nothing was stored; retry")
    try:
        for key in [*(i.key for i in cited), *memory.resolved,
                    *(i.issue_key for i in [*memory.preferences, *memory.facts] if i.issue_key)]:
            normalise_key(key)
    except ValidationError as exc:
        raise ExtractionError(f"the extraction model used an unusable key: {exc.message}",
                              hint="nothing was stored; keys must be short snake_case names") from exc
    return Extraction(conversation_id, turns, memory)


async def extract(model: ChatModel, transcript: Sequence[Message], conversation_id: str, *,
                  instructions: str = EXTRACTION_PROMPT, max_tokens: int = 1024) -> Extraction:
    """Ask `model` for the memories of `transcript`; validated, with provenance; stores nothing."""
    check_id("conversation id", conversation_id)
    messages = list(transcript)
    if not messages or not any(isinstance(m, UserMessage) for m in messages):
        raise ValidationError("the transcript to extract memories from has no user message",
                              hint="pass the conversation's messages (session history)")
    response = await model.complete(
        [SystemMessage(instructions), UserMessage(render_transcript(messages))],
        tool_choice="none",
        response_format=ExtractedMemory.model_json_schema(),
        settings=ModelSettings(temperature=0.0, max_tokens=max_tokens),
    )
    if response.message.tool_calls:
        raise ExtractionError("the extraction model answered with tool calls instead of JSON",
                              hint="nothing was stored; the extractor offers no tools")
    return parse_extraction(response.message.content, conversation_id, len(messages))
