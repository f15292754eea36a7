"""The input layer of guardrails: prompt-injection detection on what enters the conversation.

    guard = InputGuard()                                   # rules + classifier (scikit-learn)
    verdict = guard.check(user_text)                       # source="user"
    if verdict.action == "block": ...                      # refuse the turn, emit GUARDRAIL_TRIGGERED
    content = guard.mark(tool_result, "tool:get_order_details")   # wrap + neutralise tool output

Classes: `override` (replace the assistant's instructions), `escalation` (claim or ask for more
authority), `exfiltration` (other people's data, the system prompt), `indirect` (instructions
planted in data: order notes, documents, tool results), and `benign`.

Policy of `check`:

* source "user": a rule hit of class override/escalation/exfiltration → block; otherwise the
  classifier's attack probability (1 - P(benign)) ≥ `block_threshold` → block, ≥ `flag_threshold`
  → flag; a structural indirect rule hit (role markers, chat-template tokens) → at least flag.
* source "tool"/"document": never block (the data is what the customer asked for); anything
  suspicious → action "flag" and `verdict.sanitized` holds the neutralised, wrapped text that the
  model should see instead (see `untrusted.mark_untrusted`). Clean data is "allow" and is still
  wrapped in `sanitized`.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Literal

from ...core.errors import ValidationError
from .rules import ATTACK_LABELS, LABELS, SOURCES, RuleHit, match_rules, normalise
from .untrusted import REMOVED, mark_untrusted, needs_scan, neutralise

Action = Literal["allow", "flag", "block"]
_BLOCKING = frozenset({"override", "escalation", "exfiltration"})

__all__ = ["ATTACK_LABELS", "LABELS", "REMOVED", "InputGuard", "InputVerdict", "mark_untrusted", "match_rules",
           "normalise"]


@dataclass(frozen=True, slots=True)
class InputVerdict:
    action: Action
    label: str                 # "benign" or the attack class that decided
    score: float               # classifier attack probability, 1 - P(benign) (1.0 for a rule block without one)
    rules: tuple[str, ...]     # matched rule ids
    source: str                # "user" | "tool" | "document"
    sanitized: str | None = None  # tool/document: the wrapped, neutralised text to hand to the model

    @property
    def triggered(self) -> bool:
        return self.action != "allow"

    def event_payload(self) -> dict[str, Any]:
        """Payload for an `AgentEvent(type=EventType.GUARDRAIL_TRIGGERED, ...)`; carries no input text."""
        return {"guardrail": "input", "action": self.action, "label": self.label, "score": round(self.score, 4),
                "rules": list(self.rules), "source": self.source}


def _threshold(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not 0.0 < float(value) <= 1.0:
        raise ValidationError(f"{name} must be a number in (0, 1], got {value!r}")
    return float(value)


class InputGuard:
    """Rules plus (optionally) the learned classifier, with configurable thresholds.

    `classifier`: an `InjectionClassifier` to use; default the process-wide one, trained on first
    use (raises `ConfigError` without scikit-learn unless `use_classifier=False`).
    """

    def __init__(self, *, flag_threshold: float = 0.5, block_threshold: float = 0.9, use_classifier: bool = True,
                 classifier: Any = None, max_chars: int = 50_000) -> None:
        self.flag_threshold = _threshold("flag_threshold", flag_threshold)
        self.block_threshold = _threshold("block_threshold", block_threshold)
        if self.flag_threshold > self.block_threshold:
            raise ValidationError(f"flag_threshold {flag_threshold} is above block_threshold {block_threshold}",
                                  hint="flag_threshold must be <= block_threshold")
        if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
            raise ValidationError(f"max_chars must be a positive int, got {max_chars!r}")
        self.max_chars = max_chars
        if classifier is None and use_classifier:
            from .classifier import InjectionClassifier

            classifier = InjectionClassifier.default()
        self.classifier = classifier if use_classifier else None

    def check(self, text: str, *, source: str = "user", name: str | None = None) -> InputVerdict:
        """Judge one input. For tool/document input `name` (like "get_order_details") labels the wrapper."""
        if not isinstance(text, str):
            raise ValidationError(f"text must be a str, got {type(text).__name__}")
        if source not in SOURCES:
            raise ValidationError(f"unknown source {source!r}", hint=f"source must be one of {SOURCES}")
        if source == "user":
            return self._check_user(text)
        return self._check_data(text, source, name)

    def mark(self, text: str, origin: str) -> str:
        """`mark_untrusted(text, origin)` with this guard's classifier and flag threshold."""
        return mark_untrusted(text, origin, guard=self)

    # -- internals -------------------------------------------------------------------------------
    def _scores(self, text: str, norm: str | None = None) -> dict[str, float] | None:
        if self.classifier is None or not text.strip():
            return None
        score_normalised = getattr(self.classifier, "score_normalised", None)
        if norm is not None and score_normalised is not None:
            return score_normalised(norm)
        return self.classifier.score(text[: self.max_chars])

    def _check_user(self, text: str) -> InputVerdict:
        norm = normalise(text[: self.max_chars])
        hits: list[RuleHit] = match_rules(norm, source="user", normalised=True)
        rule_ids = tuple(h.rule_id for h in hits)
        scores = self._scores(text, norm)
        attack_p = 1.0 - scores["benign"] if scores else 0.0
        top = max(ATTACK_LABELS, key=lambda lb: scores[lb]) if scores else "benign"
        blocking = [h for h in hits if h.label in _BLOCKING]
        if blocking:
            return InputVerdict("block", blocking[0].label, attack_p if scores else 1.0, rule_ids, "user")
        if scores and attack_p >= self.block_threshold:
            return InputVerdict("block", top, attack_p, rule_ids, "user")
        if scores and attack_p >= self.flag_threshold:
            return InputVerdict("flag", top, attack_p, rule_ids, "user")
        if hits:
            return InputVerdict("flag", hits[0].label, attack_p, rule_ids, "user")
        return InputVerdict("allow", "benign", attack_p, rule_ids, "user")

    def _check_data(self, text: str, source: str, name: str | None) -> InputVerdict:
        origin = f"{source}:{name}" if name else source
        if not needs_scan(text):
            return InputVerdict("allow", "benign", 0.0, (), source, mark_untrusted(text, origin))
        body, removed = neutralise(text, guard=self)
        hits = match_rules(text[: self.max_chars], source=source)
        rule_ids = tuple(h.rule_id for h in hits)
        scores = self._scores(text)
        attack_p = 1.0 - scores["benign"] if scores else 0.0
        sanitized = mark_untrusted(body, origin)
        suspicious = removed > 0 or bool(hits) or attack_p >= self.flag_threshold
        if not suspicious:
            return InputVerdict("allow", "benign", attack_p, rule_ids, source, sanitized)
        label = "indirect"
        if scores and hits == [] and removed == 0:
            label = max(ATTACK_LABELS, key=lambda lb: scores[lb])
        return InputVerdict("flag", label, attack_p, rule_ids, source, sanitized)


def text_digest(text: str) -> str:
    """A short stable digest of an input, for audit events that must not carry the text itself."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()
