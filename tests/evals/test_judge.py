"""LLM-as-judge with scripted judges: parsing, position-bias control, family check, agreement."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import pytest

from concierge.core.errors import ModelError, ValidationError
from concierge.core.messages import Message, SystemMessage, UserMessage
from concierge.evals.judge import (
    LENGTH_INSTRUCTION,
    Criterion,
    Rubric,
    agreement_from_jsonl,
    check_judge_family,
    judge_assertions,
    judge_pairwise,
    judge_single,
)
from concierge.llm.base import ToolSpec
from concierge.testing import FunctionModel, ScriptedModel

RUBRIC = Rubric(
    name="support quality",
    criteria=[
        Criterion(name="correctness", description="The answer is factually right about the order."),
        Criterion(name="policy", description="The answer follows the refund policy."),
    ],
)
GOOD = "Your order W1 shipped yesterday and arrives Friday."
BAD = "I am not sure, maybe check later? " * 5


def _prompt(messages: Sequence[Message]) -> str:
    return "\n".join(m.content for m in messages if isinstance(m, SystemMessage | UserMessage))


async def test_single_verdict_is_parsed_and_prompt_carries_rubric() -> None:
    answer = {"scores": {"correctness": 5, "policy": 4}, "overall": 4.5, "rationale": "accurate, concise"}
    model = ScriptedModel([json.dumps(answer)])
    verdict = await judge_single(model, RUBRIC, "user: where is W1?", GOOD)
    assert verdict.scores == {"correctness": 5, "policy": 4}
    assert verdict.overall == 4.5
    assert verdict.rationale == "accurate, concise"
    request = model.requests[0]
    assert isinstance(request.messages[0], SystemMessage) and isinstance(request.messages[1], UserMessage)
    prompt = _prompt(request.messages)
    assert LENGTH_INSTRUCTION in prompt
    assert "do not reward length; a short complete answer scores as high as a long one" in prompt.lower()
    assert "correctness" in prompt and "refund policy" in prompt and GOOD in prompt
    schema = request.response_format
    assert schema is not None and schema["properties"]["scores"]["required"] == ["correctness", "policy"]


def test_rubric_text_always_has_length_instruction() -> None:
    assert LENGTH_INSTRUCTION in RUBRIC.text()
    with pytest.raises(ValueError):
        Rubric(name="r", criteria=[])
    with pytest.raises(ValueError):
        Rubric(name="r", criteria=[Criterion(name="a", description="d")], scale_min=5, scale_max=1)


@pytest.mark.parametrize(
    "reply",
    [
        "Sure! The answer is great, 5/5.",
        "[1, 2, 3]",
        json.dumps({"scores": {"correctness": 5}, "overall": 5, "rationale": ""}),
        json.dumps({"scores": {"correctness": 9, "policy": 1}, "overall": 5, "rationale": ""}),
        json.dumps({"scores": {"correctness": 2.5, "policy": 1}, "overall": 2, "rationale": ""}),
        json.dumps({"scores": {"correctness": 5, "policy": 5}, "overall": "high", "rationale": ""}),
    ],
)
async def test_unusable_single_verdict_raises_model_error(reply: str) -> None:
    with pytest.raises(ModelError) as info:
        await judge_single(ScriptedModel([reply]), RUBRIC, "conv", GOOD)
    assert reply[:20] in str(info.value) or "scores" in str(info.value)


async def test_unparsable_output_error_quotes_first_200_chars() -> None:
    reply = "not json " + "x" * 500
    with pytest.raises(ModelError) as info:
        await judge_single(ScriptedModel([reply], name="judge-x"), RUBRIC, "conv", GOOD)
    message = str(info.value)
    assert reply[:200] in message
    assert reply[:201] not in message
    assert "judge-x" in message


def _positions(messages: Sequence[Message]) -> tuple[str, str]:
    text = messages[-1].content
    first = text.split("[Answer 1]\n", 1)[1].split("\n\n[Answer 2]\n", 1)[0]
    second = text.split("[Answer 2]\n", 1)[1]
    return first, second


async def test_pairwise_first_position_bias_becomes_inconsistent_tie() -> None:
    model = FunctionModel(lambda messages, tools: json.dumps({"winner": "1", "rationale": "first is best"}))
    verdict = await judge_pairwise(model, RUBRIC, "where is W1?", GOOD, BAD)
    assert verdict.winner == "tie"
    assert verdict.consistent is False
    assert (verdict.first_order, verdict.swapped_order) == ("a", "b")
    # The second request really did swap the answers.
    assert _positions(model.requests[0].messages) == (GOOD, BAD)
    assert _positions(model.requests[1].messages) == (BAD, GOOD)


def _prefers(content: str):
    def judge(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> str:
        first, _ = _positions(messages)
        return json.dumps({"winner": "1" if first == content else "2", "rationale": "content"})

    return judge


@pytest.mark.parametrize(("preferred", "winner"), [(GOOD, "a"), (BAD, "b")])
async def test_pairwise_content_preference_survives_the_swap(preferred: str, winner: str) -> None:
    verdict = await judge_pairwise(FunctionModel(_prefers(preferred)), RUBRIC, "where is W1?", GOOD, BAD)
    assert verdict.winner == winner
    assert verdict.consistent is True
    assert verdict.rationales == ("content", "content")


async def test_pairwise_tie_both_ways_is_consistent_and_bad_winner_raises() -> None:
    tie = json.dumps({"winner": "tie", "rationale": "same"})
    verdict = await judge_pairwise(ScriptedModel([tie, tie]), RUBRIC, "q", GOOD, BAD)
    assert (verdict.winner, verdict.consistent) == ("tie", True)
    with pytest.raises(ModelError, match="winner"):
        await judge_pairwise(ScriptedModel([json.dumps({"winner": "A"})]), RUBRIC, "q", GOOD, BAD)


async def test_assertions_are_checked_in_order() -> None:
    reply = {"results": [{"met": True, "reason": "said Friday"}, {"met": False, "reason": "no refund"}]}
    model = ScriptedModel([json.dumps(reply)])
    assertions = ["The agent gives the delivery day.", "The agent offers a refund."]
    verdicts = await judge_assertions(model, "user: where is W1?\nagent: " + GOOD, assertions)
    assert [(v.assertion, v.met, v.reason) for v in verdicts] == [
        (assertions[0], True, "said Friday"),
        (assertions[1], False, "no refund"),
    ]
    prompt = _prompt(model.requests[0].messages)
    assert "1. The agent gives the delivery day." in prompt and "2. The agent offers a refund." in prompt


async def test_assertions_bad_input_and_bad_answers() -> None:
    with pytest.raises(ValidationError):
        await judge_assertions(ScriptedModel([]), "conv", [])
    with pytest.raises(ModelError, match="exactly 2"):
        await judge_assertions(ScriptedModel([json.dumps({"results": [{"met": True}]})]), "c", ["x", "y"])
    with pytest.raises(ModelError, match="boolean"):
        await judge_assertions(ScriptedModel([json.dumps({"results": [{"met": "yes"}]})]), "c", ["x"])


@pytest.mark.parametrize(
    ("judge", "agent", "family"),
    [
        ("gpt-4o", "gpt-4o-mini", "gpt"),
        ("o3-mini", "openai/gpt-4.1", "gpt"),
        ("claude-3-5-sonnet-latest", "anthropic/claude-3-haiku", "claude"),
        ("meta-llama/Llama-3.1-70B-Instruct", "llama3.2:3b", "llama"),
        ("Qwen/Qwen2.5-72B-Instruct", "qwen3-8b", "qwen"),
        ("HuggingFaceTB/SmolLM2-1.7B-Instruct", "smollm2-135m", "smollm"),
        ("mistral-large-latest", "mixtral-8x7b", "mistral"),
        ("gemma-2-27b-it", "google/gemma-3-4b", "gemma"),
    ],
)
def test_same_family_warns(judge: str, agent: str, family: str) -> None:
    warning = check_judge_family(judge, agent)
    assert warning is not None
    assert f"both {family} models" in warning and judge in warning and agent in warning


@pytest.mark.parametrize(
    ("judge", "agent"),
    [("gpt-4o", "claude-3-5-sonnet"), ("qwen2.5-7b", "llama-3-8b"), ("my-model", "my-model"), ("", "gpt-4o")],
)
def test_different_or_unknown_family_does_not_warn(judge: str, agent: str) -> None:
    assert check_judge_family(judge, agent) is None


def _write(tmp_path: Path, records: list[object | str]) -> Path:
    path = tmp_path / "labels.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n")
    return path


def test_agreement_report_for_a_good_judge(tmp_path: Path) -> None:
    human = ["pass", "pass", "fail", "fail", "pass", "fail", "pass", "fail", "pass", "pass"]
    judge = list(human)
    judge[0] = "fail"
    path = _write(tmp_path, [{"id": i, "human": h, "judge": j} for i, (h, j) in enumerate(zip(human, judge))])
    report = agreement_from_jsonl(path)
    assert report.n == 10
    assert report.raw_agreement == pytest.approx(0.9)
    # po = 0.9; pe = (0.6*0.5 + 0.4*0.5) = 0.5; kappa = 0.4 / 0.5 = 0.8
    assert report.kappa == pytest.approx(0.8)
    assert report.warning is None
    counts = {c.label: (c.human, c.judge) for c in report.per_label}
    assert counts == {"pass": (6, 5), "fail": (4, 5)}


def test_agreement_below_kappa_threshold_warns(tmp_path: Path) -> None:
    records = [
        {"id": "a", "human": 1, "judge": 1},
        {"id": "b", "human": 1, "judge": 0},
        {"id": "c", "human": 0, "judge": 0},
        {"id": "d", "human": 0, "judge": 1},
        {"id": "e", "human": True, "judge": True},
    ]
    report = agreement_from_jsonl(_write(tmp_path, records + [""]))
    assert report.n == 5
    assert report.kappa < 0.7
    assert report.warning is not None and "less than kappa 0.7" in report.warning
    assert "do not rely on it unattended" in report.warning
    # true and 1 are different JSON labels, not merged as Python would merge them.
    labels = [c.label for c in report.per_label]
    assert len(labels) == 3 and any(label is True for label in labels)


def test_agreement_single_label_has_undefined_kappa(tmp_path: Path) -> None:
    report = agreement_from_jsonl(
        _write(tmp_path, [{"id": i, "human": "ok", "judge": "ok"} for i in range(3)])
    )
    assert math.isnan(report.kappa) and report.raw_agreement == 1.0
    assert report.warning is not None and "undefined" in report.warning


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        (json.dumps({"id": 9, "human": "pass"}), "missing 'judge'"),
        (json.dumps({"human": "pass", "judge": "pass"}), "missing 'id'"),
        (json.dumps({"id": 9, "human": ["pass"], "judge": "pass"}), "scalar"),
        (json.dumps({"id": 1, "human": "pass", "judge": "pass"}), "duplicate id"),
    ],
)
def test_bad_line_names_file_and_line(tmp_path: Path, bad: str, problem: str) -> None:
    good = [{"id": 1, "human": "pass", "judge": "pass"}, {"id": 2, "human": "fail", "judge": "pass"}]
    path = _write(tmp_path, [*good, bad])
    with pytest.raises(ValidationError, match=problem) as info:
        agreement_from_jsonl(path)
    assert f"{path}:3" in str(info.value)


def test_empty_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    with pytest.raises(ValidationError, match="no labelled items"):
        agreement_from_jsonl(path)
    with pytest.raises(ValidationError, match="no such file"):
        agreement_from_jsonl(tmp_path / "missing.jsonl")
