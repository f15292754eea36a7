"""`OutputGuard`: the last check on a reply before it reaches the customer.

The reply is cut into sentences (`segment.py`) and each is judged on its own, in this order:

1. prompt leakage: a sentence quoting the instructions is replaced by a refusal to share them;
2. policy claims: an unbacked "done" claim or a promise over a cap is replaced by an honest
   sentence (`claims.py`);
3. other people's PII: emails, phones and card numbers are masked in place (`pii.py`).

A replaced sentence keeps its leading whitespace and list marker ("- ", "2. "), so the layout of
the reply survives. Everything that passes is returned byte for byte. Judging sentence by
sentence is what lets `StreamingOutputGuard` hold back at most one sentence while streaming and
still emit exactly `OutputGuard().check(text, facts).text`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from ...core.errors import ValidationError
from .claims import check_claims
from .facts import OutputFacts
from .leakage import leaks
from .pii import PiiMasker
from .segment import DEFAULT_MAX_CHARS, MIN_MAX_CHARS, segments

GUARDRAIL = "output"
LEAK_REPLACEMENT = "I'm sorry, but I can't share the details of my internal instructions."
CheckName = Literal["prompt_leakage", "unsupported_claim", "over_cap", "pii"]
_MARKER = re.compile(r"^(?:[-*+\u2022]\s+|\d{1,3}[.)]\s+|>\s+)")


@dataclass(frozen=True, slots=True)
class Finding:
    """One sentence the guard changed. `sentence` is the original with other people's PII masked
    (so a finding never carries what it removed); `detail` says why, in a few words."""

    check: CheckName
    sentence: str
    action: Literal["replaced", "masked"]
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"check": self.check, "sentence": self.sentence, "action": self.action, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class OutputVerdict:
    text: str
    findings: tuple[Finding, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.findings)

    def payload(self) -> dict[str, Any]:
        """The GUARDRAIL_TRIGGERED event payload (emit it only when `changed`)."""
        return event_payload(self.findings)


def event_payload(findings: tuple[Finding, ...] | list[Finding]) -> dict[str, Any]:
    return {"guardrail": GUARDRAIL, "checks": sorted({f.check for f in findings}),
            "findings": [f.to_dict() for f in findings]}


def _check_max_chars(max_chars: object) -> int:
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < MIN_MAX_CHARS:
        raise ValidationError(f"max_chars must be an integer >= {MIN_MAX_CHARS}, got {max_chars!r}")
    return max_chars


def _check_facts(facts: object) -> OutputFacts:
    if not isinstance(facts, OutputFacts):
        raise ValidationError(f"facts must be OutputFacts, got {type(facts).__name__}",
                              hint="build them with OutputFacts(...) or OutputFacts.from_ledger(...)")
    return facts


class SentenceChecker:
    """Judges one segment at a time against one `OutputFacts` (built once, reused per segment)."""

    __slots__ = ("_masker", "facts")

    def __init__(self, facts: OutputFacts) -> None:
        self.facts = _check_facts(facts)
        self._masker = PiiMasker(facts.customer_emails, facts.customer_phones)

    def __call__(self, segment: str) -> tuple[str, Finding | None]:
        body = segment.strip()
        if not body:
            return segment, None
        start = segment.index(body[0])
        lead, trail = segment[:start], segment[start + len(body):]
        masked, kinds = self._masker.mask(body)
        facts = self.facts
        if leaks(body, facts.instructions, facts.leak_ngram):
            return self._replace(lead, body, trail, LEAK_REPLACEMENT), Finding(
                "prompt_leakage", masked, "replaced", f"shares {facts.leak_ngram}+ consecutive words with the instructions")
        violation = check_claims(body, facts)
        if violation is not None:
            return self._replace(lead, body, trail, violation.replacement), Finding(
                violation.check, masked, "replaced", violation.detail)
        if kinds:
            return lead + masked + trail, Finding("pii", masked, "masked", ", ".join(dict.fromkeys(kinds)))
        return segment, None

    @staticmethod
    def _replace(lead: str, body: str, trail: str, replacement: str) -> str:
        marker = _MARKER.match(body)
        return lead + (marker.group(0) if marker else "") + replacement + trail


class OutputGuard:
    """Checks a whole reply: `OutputGuard().check(text, facts) -> OutputVerdict`."""

    __slots__ = ("max_chars",)

    def __init__(self, *, max_chars: int = DEFAULT_MAX_CHARS) -> None:
        self.max_chars = _check_max_chars(max_chars)

    def check(self, text: str, facts: OutputFacts) -> OutputVerdict:
        if not isinstance(text, str):
            raise ValidationError(f"text must be a string, got {type(text).__name__}")
        checker = SentenceChecker(facts)
        out: list[str] = []
        findings: list[Finding] = []
        for segment in segments(text, self.max_chars):
            checked, finding = checker(segment)
            out.append(checked)
            if finding is not None:
                findings.append(finding)
        return OutputVerdict("".join(out) if findings else text, tuple(findings))
