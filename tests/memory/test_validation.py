"""Bad input is refused with ValidationError; bad model output with ExtractionError, and nothing is stored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from concierge.core.errors import ModelError, ValidationError
from concierge.core.messages import AssistantMessage, SystemMessage, UserMessage
from concierge.memory import ExtractionError, Memory, MemoryPolicy, extract
from concierge.memory.extract import parse_extraction
from concierge.testing.models import ScriptedModel, call

from .conftest import answer

TRANSCRIPT = [UserMessage("My order W1 is late."), AssistantMessage("Checking.")]


@pytest.mark.parametrize("kwargs", [
    {"alpha": 1.5}, {"alpha": -0.1}, {"alpha": float("nan")}, {"alpha": True}, {"half_life_days": 0},
    {"half_life_days": -7}, {"retention_months": 0}, {"issue_boost": -1}, {"candidates": 0},
])
def test_bad_policy(kwargs) -> None:
    with pytest.raises(ValidationError):
        MemoryPolicy(**kwargs)


async def test_bad_ids_budgets_and_queries(memory: Memory) -> None:
    for tenant, user in (("", "alice"), ("shop", ""), ("sh:op", "alice"), ("shop", "a/b"), ("shop", None),
                         ("shop", "x" * 200)):
        with pytest.raises(ValidationError):
            await memory.recall(tenant, user, "refund", 100)  # type: ignore[arg-type]
        with pytest.raises(ValidationError):
            await memory.erase_user(tenant, user)  # type: ignore[arg-type]
    for budget in (-1, 1.5, True, "100"):
        with pytest.raises(ValidationError, match="budget_tokens"):
            await memory.recall("shop", "alice", "refund", budget)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="query"):
        await memory.recall("shop", "alice", None, 100)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="exactly one"):
        await memory.forget("shop", "alice")
    with pytest.raises(ValidationError, match="exactly one"):
        await memory.forget("shop", "alice", "k", query="q")
    with pytest.raises(ValidationError, match="key"):
        await memory.forget("shop", "alice", "!!")
    with pytest.raises(ValidationError, match="kind"):
        await memory.forget("shop", "alice", "k", kind="gossip")
    with pytest.raises(ValidationError, match="timezone"):
        from datetime import datetime
        await memory.expire(datetime(2026, 1, 1))
    with pytest.raises(ValidationError):
        memory.set_policy("shop", {"alpha": 0.5})  # type: ignore[arg-type]


def test_bad_construction(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="notes store URL"):
        Memory(tmp_path / "m.db", None, notes="memcached://x")
    with pytest.raises(ValidationError, match="alpha"):
        Memory(tmp_path / "m.db", None, policies={"shop": MemoryPolicy(alpha=2)})
    with pytest.raises(ValidationError, match="notes_ttl_days"):
        Memory(tmp_path / "m.db", None, notes_ttl_days=0)


@pytest.mark.parametrize(("reply", "match"), [
    ("I think the customer likes email.", "not JSON"),
    ("", "no JSON"),
    (json.dumps({"preferences": []}), "summary"),
    (answer("x", satisfaction="ecstatic"), "satisfaction"),
    (answer("x", facts=[{"key": "a", "value": "b", "turn": 0}]), "turn"),
    (answer("x", facts=[{"key": "a", "value": "b", "turn": 3}]), "cites turn 3"),
    (answer("x", facts=[{"key": "a", "value": "b", "turn": 1, "secret": 1}]), "secret"),
    (answer("x", facts=[{"key": "!!!", "value": "b", "turn": 1}]), "unusable key"),
    (answer("x", resolved=["n?o"]), "unusable key"),
])
async def test_bad_model_output_stores_nothing(memory: Memory, reply: str, match: str) -> None:
    model = ScriptedModel([reply])
    with pytest.raises(ExtractionError, match=match) as caught:
        await memory.remember_conversation(model, "shop", "alice", "conv-1", TRANSCRIPT)
    assert isinstance(caught.value, ModelError) and caught.value.hint
    assert await memory.count_user("shop", "alice") == {"memory_notes": 0, "memory_facts": 0, "memory_vectors": 0}


async def test_extract_refuses_tool_calls_and_bad_transcripts() -> None:
    with pytest.raises(ExtractionError, match="tool calls"):
        await extract(ScriptedModel([call("lookup")]), TRANSCRIPT, "conv-1")
    model = ScriptedModel([])
    with pytest.raises(ValidationError, match="no user message"):
        await extract(model, [], "conv-1")
    with pytest.raises(ValidationError, match="no user message"):
        await extract(model, [SystemMessage("hi")], "conv-1")
    with pytest.raises(ValidationError, match="conversation id"):
        await extract(model, TRANSCRIPT, "conv 1")
    assert model.requests == []


async def test_fenced_json_is_accepted_and_turns_are_cited() -> None:
    reply = "```json\n" + answer("Late order.", unresolved=[
        {"key": "late_order_w1", "description": "order W1 is late", "turn": 1}]) + "\n```"
    extraction = await extract(ScriptedModel([reply]), TRANSCRIPT, "conv-1")
    assert extraction.turns == 2 and extraction.memory.unresolved[0].turn == 1
    assert parse_extraction(answer("s"), "conv-1", 1).memory.summary == "s"
