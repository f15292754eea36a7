"""Other people's contact and card data, masked in place before a reply leaves.

The sentence stays (it usually says something the customer needs); only the identifier is
replaced. The customer's own emails and phone numbers (from `OutputFacts`) are kept: showing
someone their own address is fine. A full card number is masked whoever it belongs to, since a
support reply never needs one. Cards must pass the Luhn check and phones need a `+` or the
usual separators, so order numbers, tracking numbers, prices and dates survive.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

EMAIL_MASK = "[email removed]"
PHONE_MASK = "[phone number removed]"
CARD_MASK = "[card number removed]"

EMAIL = re.compile(r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
CARD = re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])")
PHONE = re.compile(
    r"(?<![\w+#/-])(?:"
    r"\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}"  # +44 20 7946 0958
    r"|(?:1[ .-]?)?(?:\(\d{3}\)[ .-]?|\d{3}[ .-])\d{3}[ .-]\d{4}"  # (555) 123-4567, 555.123.4567
    r")(?![\w-])"
)


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def phone_key(phone: str) -> str:
    """A phone number compared by its last ten digits: "+1 (555) 123-4567" == "555.123.4567"."""
    return re.sub(r"\D", "", phone)[-10:]


class PiiMasker:
    """Masks emails, phones and card numbers in a sentence, except the customer's own contacts."""

    __slots__ = ("_emails", "_phones")

    def __init__(self, own_emails: Iterable[str] = (), own_phones: Iterable[str] = ()) -> None:
        self._emails = frozenset(e.strip().lower() for e in own_emails)
        self._phones = frozenset(k for p in own_phones if len(k := phone_key(p)) >= 7)

    def mask(self, sentence: str) -> tuple[str, list[str]]:
        """The sentence with foreign identifiers masked, and the kinds masked (in order found)."""
        found: list[str] = []

        def email(match: re.Match[str]) -> str:
            if match.group(0).lower() in self._emails:
                return match.group(0)
            found.append("email")
            return EMAIL_MASK

        def card(match: re.Match[str]) -> str:
            if not luhn_ok(re.sub(r"\D", "", match.group(0))):
                return match.group(0)
            found.append("card")
            return CARD_MASK

        def phone(match: re.Match[str]) -> str:
            if phone_key(match.group(0)) in self._phones:
                return match.group(0)
            found.append("phone")
            return PHONE_MASK

        if "@" in sentence:
            sentence = EMAIL.sub(email, sentence)
        if any(c.isdigit() for c in sentence):
            sentence = CARD.sub(card, sentence)  # before phones: a card's digit groups look like one
            sentence = PHONE.sub(phone, sentence)
        return sentence, found
