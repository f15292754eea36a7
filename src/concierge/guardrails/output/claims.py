"""Policy claims: a reply may only say an action happened when this session's record says so,
and may not promise more than the policy caps allow.

A *claim* is an assertive sentence that an action is done: "I've refunded $40", "your order
#W123 has been cancelled", "I applied a 30% discount", "your refund is on its way". Questions,
negations ("hasn't been cancelled") and hedged sentences ("once it is cancelled…", "would you
like me to…") are not claims. Each claim has a kind (refund, return, cancel, exchange, address,
payment, modify, discount), from its verb or, for a generic verb ("processed", "updated"), from
its nouns. It is backed when a succeeded action of that kind exists (`Action.kinds`; a return or
a cancellation backs "refund") and, when the sentence names order ids, one per id; or when a
succeeded lookup's result shows that state for the order ("status": "cancelled"). An unbacked
claim is replaced by an honest sentence that says what the record shows: the action did not go
through, is not confirmed yet, or there is no record of it.

A *cap* breach is a discount percentage above `max_discount_pct` or a refund amount above
`max_refund_per_order_usd`, promised, offered or claimed, unless a succeeded action of that kind
carries that very number (then it happened and saying so is true).

Detection is lexical and English-only: it catches the usual phrasings, not every paraphrase.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from .facts import Action, OutputFacts

NOUNS = {
    "refund": "refund", "return": "return", "cancel": "cancellation", "exchange": "exchange",
    "address": "address change", "payment": "payment method change", "modify": "change to your order",
    "discount": "discount",
}

_SPECIFIC = {
    "refunded": "refund", "reimbursed": "refund", "cancelled": "cancel", "canceled": "cancel",
    "returned": "return", "exchanged": "exchange",
}
_CHANGE = ("updated", "changed", "modified", "swapped", "replaced", "switched", "edited", "amended")
_GENERIC = ("processed", "issued", "completed", "initiated", "submitted", "applied", "arranged", "requested",
            "started", "set up", "put through", "sent", "scheduled", "approved", "created", "filed", "booked",
            "finalized", "finalised", "placed", "done", "taken care of", "gone through", "gone ahead with",
            "added", "given")
_VERBS = "|".join(sorted({*_SPECIFIC, *_CHANGE, *_GENERIC}, key=len, reverse=True)).replace(" ", r"\s+")
_FILL = r"(?:(?:just|now|already|successfully|also|then|fully|all|gone\s+ahead\s+and|went\s+ahead\s+and)\s+)*"
_FIRST_PERSON = re.compile(
    rf"\b(?:i|we)(?:'ve|\u2019ve|'d|\u2019d|\s+have|\s+had)?\s+{_FILL}(?P<verb>{_VERBS})\b", re.IGNORECASE)
_PERFECT = re.compile(
    rf"(?:\b(?:has|have|had)\s+|'s\s+|\u2019s\s+){_FILL}been\s+{_FILL}(?P<verb>{_VERBS})\b"
    rf"|\b(?:was|were|got|is\s+now|are\s+now|is\s+already|are\s+already)\s+{_FILL}(?P<verb2>{_VERBS})\b",
    re.IGNORECASE)
# Present state ("your order is cancelled") only for the state verbs and about the customer's things.
_STATE = re.compile(r"\b(?:is|are|'s|\u2019s)\s+(?P<verb>cancell?ed|canceled|refunded|returned|exchanged)\b",
                    re.IGNORECASE)
_ON_ITS_WAY = re.compile(
    r"\b(?:refunds?|money|reimbursement|funds)\b[^.!?]{0,40}?\b(?:is|are|'s|\u2019s)\s+(?:now\s+|already\s+)?"
    r"(?:on\s+(?:its|their|the)\s+way|being\s+(?:processed|issued|sent)|underway|in\s+progress|processing)",
    re.IGNORECASE)
_YOU_WILL_GET = re.compile(
    r"\byou(?:'ll|\u2019ll|\s+will|\s+should)\s+(?:now\s+)?(?:receive|get|see)\s+(?:a|your|the)\s+"
    r"(?:full\s+|partial\s+)?refund", re.IGNORECASE)

_NOUN_KINDS = (
    (re.compile(r"\brefund|\breimburse|\bmoney\s+back\b", re.IGNORECASE), "refund"),
    (re.compile(r"\breturns?\b", re.IGNORECASE), "return"),
    (re.compile(r"\bcancell?ation", re.IGNORECASE), "cancel"),
    (re.compile(r"\bexchanges?\b", re.IGNORECASE), "exchange"),
    (re.compile(r"\baddress", re.IGNORECASE), "address"),
    (re.compile(r"\bpayment\s+(?:method|details|card|option)", re.IGNORECASE), "payment"),
    (re.compile(r"\bdiscount|\bcoupon|\bpromo|%\s*off\b|\bpercent\s+off\b", re.IGNORECASE), "discount"),
)
_ITEMS = re.compile(r"\b(?:items?|order|size|colou?r)\b", re.IGNORECASE)
_HEDGE = re.compile(
    r"\b(?:if|once|when|whenever|after|before|unless|until|whether|would|could|should|might|may|shall"
    r"|in\s+case|assuming|as\s+soon\s+as|not\s+sure|want\s+me|like\s+me|ready\s+to|about\s+to|going\s+to"
    r"|to\s+see|check\s+if|need\s+to|needs\s+to|let\s+me\s+know)\b", re.IGNORECASE)
# A negation within the last few words of the same clause (a comma or semicolon ends its reach).
_NEGATION = re.compile(r"(?:\b(?:not|never|no|nothing|none|neither|nor|unable|cannot|failed|without)\b|n't|n\u2019t)"
                       r"(?:\s+[\w'\u2019$#%.-]+){0,4}\s*$", re.IGNORECASE)
_ORDER_ID = re.compile(r"#\s?(?P<a>[A-Za-z]{0,3}\d{3,}[A-Za-z0-9]*)"
                       r"|\border\s+(?:number\s+|id\s+|no\.?\s+)?(?P<b>[A-Za-z]{0,3}\d{3,}[A-Za-z0-9]*)\b",
                       re.IGNORECASE)
_NUMBER = r"(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
_PERCENT = re.compile(
    rf"{_NUMBER}\s?(?:%|percent\b|per\s+cent\b)\s*(?:off\b|discount\b|reduction\b)"
    rf"|\b(?:discount|reduction|off)\s+of\s+{_NUMBER}\s?(?:%|percent\b|per\s+cent\b)"
    rf"|{_NUMBER}\s?(?:%|percent\b|per\s+cent\b)\s+(?:coupon|promo|voucher)",
    re.IGNORECASE)
_MONEY = r"(?:US\$|USD\s?|\$)\s?" + _NUMBER
_REFUND_AMOUNT = re.compile(
    rf"\brefund(?:ed|ing|s)?\s+(?:you\s+)?(?:of\s+|for\s+)?(?:the\s+full\s+|a\s+total\s+of\s+|an?\s+)?{_MONEY}"
    rf"|{_MONEY}\s+(?:refund|back\b|reimburse)"
    rf"|\b(?:refund|reimbursement)\s+(?:of|for|amount\s+of|totall?ing)\s+{_MONEY}",
    re.IGNORECASE)
# A lookup's result backs a claim when one of its values is exactly such a state ("status": "cancelled").
_STATUS_WORDS = {
    "cancel": re.compile(r"\s*(?:cancell?ed|canceled)\s*", re.IGNORECASE),
    "return": re.compile(r"\s*(?:return[ _]requested|returned)\s*", re.IGNORECASE),
    "exchange": re.compile(r"\s*(?:exchange[ _]requested|exchanged)\s*", re.IGNORECASE),
    "refund": re.compile(r"\s*(?:refund|refunded)\s*", re.IGNORECASE),
}


@dataclass(frozen=True, slots=True)
class ClaimViolation:
    check: Literal["unsupported_claim", "over_cap"]
    kinds: tuple[str, ...]
    replacement: str
    detail: str


def _is_question(sentence: str) -> bool:
    return sentence.rstrip().rstrip("\"'\u2019\u201d)]*_ ").endswith("?")


def _negated(prefix: str) -> bool:
    return _NEGATION.search(prefix) is not None


def _claimed_kinds(sentence: str) -> list[str]:
    """The kinds of action `sentence` asserts are done (empty: it asserts none)."""
    if _is_question(sentence):
        return []
    kinds: list[str] = []
    matches: list[tuple[int, str]] = []  # (start, verb or special kind)
    for pattern in (_FIRST_PERSON, _PERFECT):
        for m in pattern.finditer(sentence):
            matches.append((m.start(), (m.group("verb") if pattern is _FIRST_PERSON
                                        else m.group("verb") or m.group("verb2")).lower()))
    if re.search(r"\byour\b|#", sentence, re.IGNORECASE):
        matches.extend((m.start(), m.group("verb").lower()) for m in _STATE.finditer(sentence))
    matches.extend((m.start(), "=refund") for m in _ON_ITS_WAY.finditer(sentence))
    matches.extend((m.start(), "=refund") for m in _YOU_WILL_GET.finditer(sentence))
    for start, verb in sorted(matches):
        prefix = sentence[:start]
        if _HEDGE.search(prefix) or _negated(prefix):
            continue
        verb = re.sub(r"\s+", " ", verb)
        found: list[str] = []
        if verb.startswith("="):
            found = [verb[1:]]
        elif verb in _SPECIFIC:
            found = [_SPECIFIC[verb]]
        else:
            found = [kind for pattern, kind in _NOUN_KINDS if pattern.search(sentence)]
            if not found and verb in _CHANGE and _ITEMS.search(sentence):
                found = ["modify"]
        kinds.extend(k for k in found if k not in kinds)
    return kinds


def order_ids(sentence: str) -> list[str]:
    ids: list[str] = []
    for m in _ORDER_ID.finditer(sentence):
        value = (m.group("a") or m.group("b")).upper()
        if value not in ids:
            ids.append(value)
    return ids


def _values(obj: Any) -> Iterable[Any]:
    """Every scalar inside a JSON-like value (a string holding JSON is opened too)."""
    if isinstance(obj, str) and obj[:1] in ("{", "["):
        try:
            obj = json.loads(obj)
        except ValueError:
            pass
    if isinstance(obj, dict):
        for value in obj.values():
            yield from _values(value)
    elif isinstance(obj, list | tuple | set | frozenset):
        for value in obj:
            yield from _values(value)
    else:
        yield obj


def _strings(action: Action) -> list[str]:
    return [v for v in (*_values(action.arguments), *_values(action.result)) if isinstance(v, str)]


def _mentions_id(action: Action, order_id: str) -> bool:
    for value in _strings(action):
        norm = value.strip().lstrip("#").upper()
        if norm == order_id or re.search(rf"(?<![A-Z0-9]){re.escape(order_id)}(?![A-Z0-9])", value.upper()):
            return True
    return False


def _numbers(action: Action) -> list[float]:
    out: list[float] = []
    for value in (*_values(action.arguments), *_values(action.result)):
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            out.append(float(value))
        elif isinstance(value, str):
            out.extend(float(n.replace(",", "")) for n in re.findall(_NUMBER, value))
    return out


def _carries(actions: Iterable[Action], kind: str, amount: float, cents: bool) -> bool:
    for action in actions:
        if kind in (action.kinds or ()):
            for n in _numbers(action):
                if abs(n - amount) < 0.005 or (cents and abs(n - amount * 100) < 0.5):
                    return True
    return False


def _backed(facts: OutputFacts, kind: str, ids: list[str]) -> bool:
    done = facts.succeeded
    writes = [a for a in done if kind in (a.kinds or ())]
    status = _STATUS_WORDS.get(kind)
    seen = [a for a in done if status is not None and any(status.fullmatch(s) for s in _strings(a))] if status else []
    if not ids:
        return bool(writes) or bool(seen)
    return all(any(_mentions_id(a, i) for a in (*writes, *seen)) for i in ids)


def _recorded_status(facts: OutputFacts, kinds: list[str], ids: list[str]) -> str | None:
    """The status of an unsuccessful attempt at one of `kinds` (for these ids), if any."""
    statuses = [a.status for a in facts.not_succeeded
                if set(kinds) & set(a.kinds or ()) and (not ids or any(_mentions_id(a, i) for i in ids))]
    if any(s in ("unknown", "attempted") for s in statuses):
        return "unknown"
    return "failed" if statuses else None


def _noun(kinds: list[str]) -> str:
    nouns = [NOUNS[k] for k in kinds]
    return nouns[0] if len(nouns) == 1 else ", ".join(nouns[:-1]) + " and " + nouns[-1]


def honest_sentence(kinds: list[str], status: str | None) -> str:
    noun = _noun(kinds)
    if status == "failed":
        return f"I'm sorry, but the {noun} did not go through, so please don't count on it yet."
    if status == "unknown":
        return f"I have not been able to confirm the {noun} yet, so please don't count on it until it is confirmed."
    return f"I have no record of the {noun} going through, so please don't count on it yet."


def _amount(text: str) -> str:
    value = float(text.replace(",", ""))
    return f"{value:g}" if value.is_integer() else f"{value:.2f}"


def _cap_breach(sentence: str, facts: OutputFacts) -> ClaimViolation | None:
    done = facts.succeeded
    cap = facts.max_discount_pct
    if cap is not None:
        for m in _PERCENT.finditer(sentence):
            value = float(next(g for g in m.groups() if g).replace(",", ""))
            if value > cap and not _negated(sentence[:m.start()]) and not _carries(done, "discount", value, False):
                return ClaimViolation("over_cap", ("discount",),
                                      f"I'm sorry, I can't offer a discount of more than {_amount(str(cap))}%.",
                                      f"discount {_amount(str(value))}% over the {_amount(str(cap))}% cap")
    cap = facts.max_refund_per_order_usd
    if cap is not None:
        for m in _REFUND_AMOUNT.finditer(sentence):
            value = float(next(g for g in m.groups() if g).replace(",", ""))
            if value > cap and not _negated(sentence[:m.start()]) and not _carries(done, "refund", value, True):
                return ClaimViolation("over_cap", ("refund",),
                                      f"I'm sorry, I can't refund more than ${_amount(str(cap))} on one order.",
                                      f"refund ${_amount(str(value))} over the ${_amount(str(cap))} cap")
    return None


def check_claims(sentence: str, facts: OutputFacts) -> ClaimViolation | None:
    """The first problem with what `sentence` claims or promises, or None."""
    breach = _cap_breach(sentence, facts)
    if breach is not None:
        return breach
    kinds = _claimed_kinds(sentence)
    if not kinds:
        return None
    ids = order_ids(sentence)
    unbacked = [k for k in kinds if not _backed(facts, k, ids)]
    if not unbacked:
        return None
    status = _recorded_status(facts, unbacked, ids)
    detail = f"{' and '.join(unbacked)} claimed" + (f" for {', '.join('#' + i for i in ids)}" if ids else "")
    detail += f"; record: {status or 'none'}"
    return ClaimViolation("unsupported_claim", tuple(unbacked), honest_sentence(unbacked, status), detail)
