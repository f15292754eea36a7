"""The strategy router on a table of cases, the learned router's fallback, and the step records."""

from __future__ import annotations

import pytest

from concierge.core.errors import ValidationError
from concierge.reasoning.router import LearnedRouter, RuleRouter, TurnFeatures, feature_vector
from concierge.reasoning.steps import Action, ReasoningStep

CASES = [
    # (case, features, expected strategy)
    ("order status", TurnFeatures(matching_entities=1, max_effect="read"), "react"),
    ("FAQ answer", TurnFeatures(max_effect="none"), "react"),
    ("three orders match 'cancel my order'", TurnFeatures(matching_entities=3, max_effect="write"), "tot"),
    ("three orders match a status question", TurnFeatures(matching_entities=3, max_effect="read"), "react"),
    ("refund over $500", TurnFeatures(matching_entities=1, max_effect="write", amount_usd=812.40), "tot"),
    ("refund of exactly $500", TurnFeatures(matching_entities=1, max_effect="write", amount_usd=500.0), "react"),
    ("account deletion", TurnFeatures(max_effect="irreversible"), "tot"),
    ("cancel, refund and rebook", TurnFeatures(matching_entities=1, max_effect="write", planned_steps=3), "plan"),
    ("one write, long conversation", TurnFeatures(max_effect="write", conversation_turns=25), "plan"),
    ("unsure model about a write", TurnFeatures(max_effect="write", model_confidence=0.3), "tot"),
    ("unsure model about a lookup", TurnFeatures(max_effect="read", model_confidence=0.3), "react"),
    ("address change, one order", TurnFeatures(matching_entities=1, max_effect="write"), "react"),
]


@pytest.mark.parametrize(("case", "features", "expected"), CASES, ids=[c[0] for c in CASES])
def test_rule_router_on_a_table_of_cases(case: str, features: TurnFeatures, expected: str) -> None:
    decision = RuleRouter().route(features)
    assert decision.strategy == expected, (case, decision)
    assert decision.reasons and all(isinstance(r, str) and r for r in decision.reasons)


def test_the_thresholds_are_settings() -> None:
    features = TurnFeatures(max_effect="write", amount_usd=120.0)
    assert RuleRouter().route(features).strategy == "react"
    assert RuleRouter(high_stakes_usd=100).route(features).strategy == "tot"


def test_a_learned_router_defers_to_the_rules_when_unsure() -> None:
    seen: list[list[float]] = []

    def confident(vector):
        seen.append(vector)
        return ("plan", 0.9)

    features = TurnFeatures(matching_entities=3, max_effect="write")
    assert LearnedRouter(confident).route(features).strategy == "plan"
    assert seen == [feature_vector(features)]
    unsure = LearnedRouter(lambda vector: ("react", 0.4)).route(features)
    assert unsure.strategy == "tot" and "rules decide" in unsure.reasons[0]
    with pytest.raises(ValidationError, match="unknown strategy"):
        LearnedRouter(lambda vector: ("guess", 0.99)).route(features)  # type: ignore[arg-type,return-value]


@pytest.mark.parametrize("bad", [
    {"matching_entities": -1}, {"max_effect": "delete"}, {"amount_usd": -5.0}, {"amount_usd": float("nan")},
    {"model_confidence": 1.5}, {"planned_steps": True},
])
def test_bad_features_are_refused(bad: dict) -> None:
    with pytest.raises(ValidationError):
        TurnFeatures(**bad)


def test_reasoning_steps_validate_and_serialise() -> None:
    step = ReasoningStep("plan", "action", "cancel the pending order", 0.82, Action("cancel", {"order_id": "W1"}),
                         alternatives=("ask which order",), citations=("refunds#2",), latency_ms=12.5,
                         input_tokens=300, output_tokens=20)
    data = step.to_dict()
    assert data["action"] == {"tool": "cancel", "arguments": {"order_id": "W1"}}
    assert data["alternatives"] == ["ask which order"] and data["citations"] == ["refunds#2"]
    for bad in ({"confidence": 1.2}, {"confidence": float("nan")}, {"strategy": "guess"}, {"latency_ms": -1.0}):
        fields = {"strategy": "react", "kind": "thought", "text": "t", "confidence": 0.5, **bad}
        with pytest.raises(ValidationError):
            ReasoningStep(**fields)  # type: ignore[arg-type]
