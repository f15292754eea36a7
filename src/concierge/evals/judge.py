"""LLM-as-judge: rubric scores, pairwise preference, natural-language assertions.

A judge is only as good as its agreement with people, so this module also measures that
agreement (`agreement_from_jsonl`) and guards against the known judge biases: position
(pairwise answers are judged in both orders), verbosity (every rubric says not to reward
length) and self-preference (`check_judge_family`).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from ..core.errors import ModelError, ValidationError
from ..core.messages import SystemMessage, UserMessage
from ..llm.base import ChatModel, ModelSettings
from .stats import cohen_kappa, raw_agreement

LENGTH_INSTRUCTION = (
    "Do not reward length; a short complete answer scores as high as a long one. "
    "Penalise padding, repetition and content the user did not need."
)
KAPPA_THRESHOLD = 0.7
_SETTINGS = ModelSettings(temperature=0)


class Criterion(BaseModel):
    name: str = Field(min_length=1)
    description: str = Field(min_length=1)


class Rubric(BaseModel):
    """What the judge scores, on an integer scale shared by every criterion."""

    name: str = Field(min_length=1)
    criteria: list[Criterion] = Field(min_length=1)
    scale_min: int = 1
    scale_max: int = 5

    @model_validator(mode="after")
    def _check(self) -> Rubric:
        if self.scale_min >= self.scale_max:
            raise ValueError(f"scale_min ({self.scale_min}) must be below scale_max ({self.scale_max})")
        names = [c.name for c in self.criteria]
        if len(set(names)) != len(names):
            raise ValueError(f"criterion names must be unique, got {names}")
        return self

    def text(self) -> str:
        """The rubric as the judge reads it; always carries the length-normalisation rule."""
        lines = [f"Rubric: {self.name}", f"Score each criterion from {self.scale_min} to {self.scale_max}."]
        lines.extend(f"- {c.name}: {c.description}" for c in self.criteria)
        lines.append(LENGTH_INSTRUCTION)
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Verdict:
    scores: dict[str, int]
    overall: float
    rationale: str


@dataclass(frozen=True, slots=True)
class PairwiseVerdict:
    """`winner` is "a"/"b" only when both presentation orders agree; otherwise "tie"."""

    winner: Literal["a", "b", "tie"]
    consistent: bool
    first_order: Literal["a", "b", "tie"]
    swapped_order: Literal["a", "b", "tie"]
    rationales: tuple[str, str]


@dataclass(frozen=True, slots=True)
class AssertionVerdict:
    assertion: str
    met: bool
    reason: str


async def _ask(model: ChatModel, system: str, user: str, schema: dict[str, Any]) -> dict[str, Any]:
    response = await model.complete(
        [SystemMessage(system), UserMessage(user)],
        # A bare JSON schema: the one shape every provider accepts (Anthropic uses it as a tool).
        response_format=schema,
        settings=_SETTINGS,
    )
    content = response.message.content or ""
    try:
        data = json.loads(content)
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        raise _bad_answer(model, content, "is not a JSON object")
    return data


_STRING = {"type": "string"}


def _object(**properties: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema object whose properties are all required."""
    return {"type": "object", "properties": properties, "required": list(properties)}


def _bad_answer(model: ChatModel, content: str, problem: str) -> ModelError:
    return ModelError(
        f"judge {model.name!r} answer {problem}: {content[:200]!r}",
        hint="use a judge model that follows JSON response formats, or check its prompt",
    )


async def judge_single(model: ChatModel, rubric: Rubric, conversation_text: str, answer: str) -> Verdict:
    """Score one answer against the rubric."""
    score = {"type": "integer", "minimum": rubric.scale_min, "maximum": rubric.scale_max}
    schema = _object(
        scores=_object(**{c.name: score for c in rubric.criteria}),
        overall={"type": "number", "minimum": rubric.scale_min, "maximum": rubric.scale_max},
        rationale=_STRING,
    )
    system = (
        "You are a strict, impartial evaluator of customer-service answers.\n"
        f"{rubric.text()}\nAnswer with JSON only: scores per criterion, an overall score and a short rationale."
    )
    user = f"Conversation:\n{conversation_text}\n\nAnswer to evaluate:\n{answer}"
    data = await _ask(model, system, user, schema)
    raw_scores = data.get("scores")
    if not isinstance(raw_scores, dict):
        raise _bad_answer(model, json.dumps(data), "has no 'scores' object")
    scores: dict[str, int] = {}
    for criterion in rubric.criteria:
        value = raw_scores.get(criterion.name)
        if not _in_scale(value, rubric) or value != int(value):
            raise _bad_answer(model, json.dumps(data), f"has no valid score for {criterion.name!r}")
        scores[criterion.name] = int(value)
    overall = data.get("overall")
    if not _in_scale(overall, rubric):
        raise _bad_answer(model, json.dumps(data), "has no valid 'overall' score")
    return Verdict(scores, float(overall), str(data.get("rationale", "")))


def _in_scale(value: Any, rubric: Rubric) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and rubric.scale_min <= value <= rubric.scale_max
    )


async def judge_pairwise(
    model: ChatModel, rubric: Rubric, question: str, answer_a: str, answer_b: str
) -> PairwiseVerdict:
    """Which answer is better? Asked in both orders; a winner must win both (position bias)."""
    schema = _object(winner={"type": "string", "enum": ["1", "2", "tie"]}, rationale=_STRING)
    system = (
        "You compare two customer-service answers to the same conversation.\n"
        f"{rubric.text()}\nThe order of the answers says nothing about their quality. "
        'Answer with JSON only: "winner" is "1", "2" or "tie", plus a short rationale.'
    )

    async def ask(first: str, second: str) -> tuple[str, str]:
        user = f"Conversation:\n{question}\n\n[Answer 1]\n{first}\n\n[Answer 2]\n{second}"
        data = await _ask(model, system, user, schema)
        winner = data.get("winner")
        if winner not in ("1", "2", "tie"):
            raise _bad_answer(model, json.dumps(data), 'has no \'winner\' of "1", "2" or "tie"')
        return winner, str(data.get("rationale", ""))

    first, why_first = await ask(answer_a, answer_b)
    second, why_second = await ask(answer_b, answer_a)
    in_first: Literal["a", "b", "tie"] = {"1": "a", "2": "b", "tie": "tie"}[first]  # type: ignore[assignment]
    in_second: Literal["a", "b", "tie"] = {"1": "b", "2": "a", "tie": "tie"}[second]  # type: ignore[assignment]
    consistent = in_first == in_second
    return PairwiseVerdict(
        in_first if consistent else "tie", consistent, in_first, in_second, (why_first, why_second)
    )


async def judge_assertions(
    model: ChatModel, conversation_text: str, assertions: list[str]
) -> list[AssertionVerdict]:
    """Check natural-language assertions about a conversation (tau2's NL assertions)."""
    if not assertions:
        raise ValidationError("no assertions given", hint="pass at least one assertion to check")
    item = _object(met={"type": "boolean"}, reason=_STRING)
    count = len(assertions)
    schema = _object(results={"type": "array", "minItems": count, "maxItems": count, "items": item})
    system = (
        "You check whether statements about a customer-service conversation hold. Judge only from "
        "the conversation. Answer with JSON only: one result per assertion, in the given order."
    )
    numbered = "\n".join(f"{i}. {text}" for i, text in enumerate(assertions, 1))
    data = await _ask(model, system, f"Conversation:\n{conversation_text}\n\nAssertions:\n{numbered}", schema)
    results = data.get("results")
    if not isinstance(results, list) or len(results) != len(assertions):
        raise _bad_answer(model, json.dumps(data), f"does not hold exactly {len(assertions)} results")
    verdicts: list[AssertionVerdict] = []
    for text, result in zip(assertions, results, strict=True):
        if not isinstance(result, dict) or not isinstance(result.get("met"), bool):
            raise _bad_answer(model, json.dumps(data), f"has no boolean 'met' for {text!r}")
        verdicts.append(AssertionVerdict(text, result["met"], str(result.get("reason", ""))))
    return verdicts


# Token prefixes that name a model family; the o-series are OpenAI models like gpt.
_FAMILIES: dict[str, tuple[str, ...]] = {
    "gpt": ("gpt", "chatgpt"),
    "claude": ("claude",),
    "llama": ("llama",),
    "qwen": ("qwen",),
    "smollm": ("smollm",),
    "mistral": ("mistral", "mixtral", "ministral", "codestral"),
    "gemma": ("gemma",),
}
_OPENAI_O_SERIES = re.compile(r"^o[1-9]$")


def _family(model_name: str) -> str | None:
    for token in re.split(r"[^a-z0-9]+", model_name.lower()):
        if _OPENAI_O_SERIES.match(token):
            return "gpt"
        for family, prefixes in _FAMILIES.items():
            if token.startswith(prefixes):
                return family
    return None


def check_judge_family(judge_model_name: str, agent_model_name: str) -> str | None:
    """A warning when judge and agent share a family: judges tend to prefer their own family."""
    family = _family(judge_model_name)
    if family is None or family != _family(agent_model_name):
        return None
    return (
        f"judge {judge_model_name!r} and agent {agent_model_name!r} are both {family} models; "
        "a judge tends to favour answers from its own family: prefer a judge from another family"
    )


@dataclass(frozen=True, slots=True)
class LabelCount:
    label: Any
    human: int
    judge: int


@dataclass(frozen=True, slots=True)
class AgreementReport:
    """How well a judge matches human labels; `warning` says when not to trust it alone."""

    n: int
    raw_agreement: float
    kappa: float
    per_label: list[LabelCount]
    warning: str | None


def agreement_from_jsonl(path: Path, *, min_kappa: float = KAPPA_THRESHOLD) -> AgreementReport:
    """Judge-vs-human agreement from lines `{"id": ..., "human": <label>, "judge": <label>}`.

    Labels are any JSON scalar and compare as their JSON text, so 1, 1.0, true and "1" stay
    four distinct labels (Python alone would merge 1, 1.0 and true).
    """
    path = Path(path)
    if not path.is_file():
        raise ValidationError(f"{path}: no such file", hint="pass the JSONL file of human and judge labels")
    human: list[str] = []
    judge: list[str] = []
    values: dict[str, Any] = {}
    seen: set[str] = set()
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValidationError(f"{where}: not valid JSON ({exc.msg})", hint=_LINE_HINT) from exc
            if not isinstance(record, dict):
                raise ValidationError(f"{where}: expected a JSON object", hint=_LINE_HINT)
            for name in ("id", "human", "judge"):
                if name not in record:
                    raise ValidationError(f"{where}: missing {name!r}", hint=_LINE_HINT)
            item_id = json.dumps(record["id"], sort_keys=True)
            if item_id in seen:
                raise ValidationError(f"{where}: duplicate id {record['id']!r}", hint="label each item once")
            seen.add(item_id)
            for name, labels in (("human", human), ("judge", judge)):
                label = record[name]
                if isinstance(label, dict | list):
                    raise ValidationError(
                        f"{where}: {name!r} label must be a JSON scalar, got {type(label).__name__}",
                        hint=_LINE_HINT,
                    )
                key = json.dumps(label)
                values.setdefault(key, label)
                labels.append(key)
    if not human:
        raise ValidationError(f"{path}: no labelled items", hint=_LINE_HINT)
    kappa = cohen_kappa(human, judge)
    counts_h, counts_j = Counter(human), Counter(judge)
    per_label = [LabelCount(values[key], counts_h[key], counts_j[key]) for key in sorted(values)]
    warning = None
    if math.isnan(kappa):
        warning = (
            "kappa is undefined (humans and judge used one single label): the sample cannot show agreement"
        )
    elif kappa < min_kappa:
        warning = (
            f"judge agrees with humans less than kappa {min_kappa:g} (kappa={kappa:.3f}): "
            "do not rely on it unattended"
        )
    return AgreementReport(len(human), raw_agreement(human, judge), kappa, per_label, warning)


_LINE_HINT = 'each line must be {"id": ..., "human": <label>, "judge": <label>}'
