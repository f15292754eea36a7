"""PII masking for everything past bronze: silver, dead letters, conversations and gold.

Bronze keeps the raw event (it is the replayable source of truth and is covered by erasure);
every later layer sees only masked text. Masks are typed tokens (`[EMAIL]`, `[PHONE]`, `[CARD]`,
`[ADDRESS]`), so analysts can still count what kind of data customers sent. Cards are masked only
when the digits pass the Luhn check, so order numbers and tracking ids survive.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

EMAIL = "[EMAIL]"
PHONE = "[PHONE]"
CARD = "[CARD]"
ADDRESS = "[ADDRESS]"
REDACTED = "[REDACTED]"

# The local part starts where the previous character cannot be in it, and is taken whole (possessive):
# a long run of such characters without an "@" is then scanned once, not once per start position.
_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]++@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# 13-19 digits, optionally grouped by single spaces or dashes.
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
# International (+CC ...) and North American ((555) 123-4567, 555-123-4567, 555.123.4567).
_PHONE = re.compile(
    r"(?<![\w+])(?:"
    r"\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}"
    r"|(?:1[ .-]?)?(?:\(\d{3}\)[ .-]?|\d{3}[ .-])\d{3}[ .-]\d{4}"
    r")(?!\w)"
)
_SUFFIX = (r"Street|St|Avenue|Ave|Road|Rd|Lane|Ln|Drive|Dr|Boulevard|Blvd|Way|Court|Ct|Place|Pl"
           r"|Terrace|Ter|Circle|Cir|Parkway|Pkwy|Highway|Hwy")
_ADDRESS = re.compile(
    r"\b\d{1,6}[A-Za-z]?\s+(?:[A-Z0-9][A-Za-z0-9'.-]*\s+){1,4}(?:" + _SUFFIX + r")\b\.?"
    r"(?:,?\s+(?:Apt|Apartment|Unit|Suite|Ste|#)\.?\s*#?\s*[A-Za-z0-9-]+)?"
)
# Keys whose values are personal whatever they look like.
_PII_KEY = re.compile(
    r"e-?mail|phone|mobile|\btel\b|card|\bpan\b|cc_?num|address|street|\bzip|postcode|postal|\bssn\b|iban",
    re.IGNORECASE,
)


def luhn_ok(digits: str) -> bool:
    """The card-number checksum: cuts false positives on long order and tracking numbers."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return CARD if 13 <= len(digits) <= 19 and luhn_ok(digits) else match.group(0)


def mask_text(text: str) -> str:
    """The text with emails, cards, phones and street addresses replaced by typed tokens.

    Order matters: emails first (they contain digits), cards before phones (a card's digit groups
    would otherwise look like a phone number), addresses last.
    """
    if not text:
        return text
    text = _EMAIL.sub(EMAIL, text)
    text = _CARD.sub(_card, text)
    text = _PHONE.sub(PHONE, text)
    return _ADDRESS.sub(ADDRESS, text)


def is_pii_key(key: str) -> bool:
    return bool(_PII_KEY.search(key))


def mask_value(obj: Any, *, key: str | None = None) -> Any:
    """A JSON value with PII masked: strings by content, and every scalar under a PII-named key."""
    if isinstance(obj, dict):
        return {k: mask_value(v, key=str(k)) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [mask_value(v, key=key) for v in obj]
    if key is not None and is_pii_key(key) and obj is not None and not isinstance(obj, bool):
        return REDACTED if not isinstance(obj, str) or obj.strip() else obj
    if isinstance(obj, str):
        return mask_text(obj)
    return obj


def pseudonymize_user(user_id: str | None) -> str | None:
    """A user id that is itself PII (an email, a phone) becomes a stable hash; others stay.

    Stable, so erasure can find the rows again from the original id.
    """
    if not user_id or mask_text(user_id) == user_id:
        return user_id
    return "pii:" + hashlib.blake2b(user_id.encode(), digest_size=12).hexdigest()
