"""Output guardrails: what a reply may say before it reaches the customer.

`OutputGuard().check(text, facts)` judges a whole reply; `StreamingOutputGuard(facts)` does the
same to a streamed one, holding back at most one sentence. The checks: unbacked claims that an
action happened and promises over the policy caps (replaced by an honest sentence), other
people's emails, phones and card numbers (masked), and quotes of the system prompt (replaced).
See docs/guardrails-output.md.
"""

from .claims import ClaimViolation, check_claims, honest_sentence
from .facts import Action, OutputFacts, kinds_of
from .guard import GUARDRAIL, LEAK_REPLACEMENT, Finding, OutputGuard, OutputVerdict, event_payload
from .leakage import leaks
from .pii import CARD_MASK, EMAIL_MASK, PHONE_MASK, PiiMasker
from .segment import DEFAULT_MAX_CHARS, segments
from .stream import StreamingOutputGuard

__all__ = [
    "CARD_MASK", "DEFAULT_MAX_CHARS", "EMAIL_MASK", "GUARDRAIL", "LEAK_REPLACEMENT", "PHONE_MASK", "Action",
    "ClaimViolation", "Finding", "OutputFacts", "OutputGuard", "OutputVerdict", "PiiMasker", "StreamingOutputGuard",
    "check_claims", "event_payload", "honest_sentence", "kinds_of", "leaks", "segments",
]
