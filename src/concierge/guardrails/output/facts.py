"""What the output checks judge a reply against: plain data, built by the caller once per model call.

Nothing here reaches into the runtime or the tools: the caller (the runtime) turns its ledger
entries, principal, policy caps and agent instructions into an `OutputFacts`, and the checks
only read it. Building one validates it, so a malformed fact fails loudly where it was made
rather than silently weakening a check.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ...core.errors import ValidationError

SUCCEEDED = "succeeded"
# Everything that is not a confirmed success: the claim it would back is not (yet) true.
NOT_SUCCEEDED: frozenset[str] = frozenset({"failed", "not_applied", "unknown", "attempted"})
STATUSES: frozenset[str] = NOT_SUCCEEDED | {SUCCEEDED}

# Kinds of claim a reply can make, and the words that mark a tool as doing that kind of thing.
# A return or a cancellation pays the customer back, so either supports "refund" too.
KINDS: tuple[str, ...] = ("refund", "return", "cancel", "exchange", "address", "payment", "modify", "discount")
_TOOL_KINDS: tuple[tuple[re.Pattern[str], tuple[str, ...]], ...] = (
    (re.compile(r"refund|reimburs"), ("refund",)),
    (re.compile(r"return"), ("return", "refund")),
    (re.compile(r"cancel"), ("cancel", "refund")),
    (re.compile(r"exchange"), ("exchange",)),
    (re.compile(r"address"), ("address", "modify")),
    (re.compile(r"payment"), ("payment", "modify")),
    (re.compile(r"discount|coupon|promo|voucher"), ("discount",)),
    (re.compile(r"modify|update|change|edit"), ("modify",)),
)
# A tool named like a lookup backs no claim of a change, whatever else its name says.
_READ = re.compile(r"^(?:get|find|list|search|lookup|read|fetch|check|show|calculate)_")
MIN_NGRAM = 4


def kinds_of(tool: str) -> tuple[str, ...]:
    """The claim kinds a tool's name says it backs: `cancel_pending_order` -> (cancel, refund)."""
    name = tool.lower()
    if _READ.match(name):
        return ()
    kinds: list[str] = []
    for pattern, backs in _TOOL_KINDS:
        if pattern.search(name):
            kinds.extend(k for k in backs if k not in kinds)
    return tuple(kinds)


@dataclass(frozen=True, slots=True)
class Action:
    """One tool call of this session as the ledger (or the turn's trace) recorded it.

    `kinds` defaults to what the tool's name says (`kinds_of`); pass it for tools whose names
    say nothing (`kinds=("refund",)` for a `pay_back` tool).
    """

    tool: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    status: str = SUCCEEDED
    result: Any = None
    kinds: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.tool, str) or not self.tool.strip():
            raise ValidationError(f"action tool must be a non-empty string, got {self.tool!r}")
        if not isinstance(self.arguments, Mapping):
            raise ValidationError(f"action arguments must be a mapping, got {type(self.arguments).__name__}",
                                  hint="pass the call's arguments as a dict")
        if self.status not in STATUSES:
            raise ValidationError(f"unknown action status {self.status!r}",
                                  hint="use one of " + ", ".join(sorted(STATUSES)))
        kinds = kinds_of(self.tool) if self.kinds is None else self.kinds
        if isinstance(kinds, str) or not all(k in KINDS for k in kinds):
            raise ValidationError(f"unknown claim kinds {kinds!r}", hint="use any of " + ", ".join(KINDS))
        object.__setattr__(self, "kinds", tuple(kinds))
        object.__setattr__(self, "arguments", dict(self.arguments))

    @property
    def succeeded(self) -> bool:
        return self.status == SUCCEEDED


def _strings(value: Any, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, Iterable):
        raise ValidationError(f"{name} must be strings, got {type(value).__name__}")
    items = tuple(value)
    for item in items:
        if not isinstance(item, str):
            raise ValidationError(f"{name} must be strings, got {item!r}")
    return tuple(i for i in items if i.strip())


def _cap(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValidationError(f"{name} must be a finite number >= 0 or None, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class OutputFacts:
    """The truth a reply is checked against.

    - `actions`: this session's tool calls (succeeded and not), from the ledger; reads may be
      included too, so that a status the agent looked up ("order #W1 is cancelled") is backed.
    - `max_discount_pct`, `max_refund_per_order_usd`: the policy caps a promise may not exceed
      (None: no cap), as in `guardrails.caps.PolicyCaps`.
    - `customer_emails`, `customer_phones`, `customer_names`, `customer_id`: the identifiers of
      the customer this session acts for; they may be shown back to them, other people's not.
    - `instructions`: the confidential system prompt; a reply may not quote `leak_ngram` or more
      consecutive words of it.
    """

    actions: tuple[Action, ...] = ()
    max_discount_pct: float | None = None
    max_refund_per_order_usd: float | None = None
    customer_emails: tuple[str, ...] = ()
    customer_phones: tuple[str, ...] = ()
    customer_names: tuple[str, ...] = ()
    customer_id: str | None = None
    instructions: str = ""
    leak_ngram: int = 8

    def __post_init__(self) -> None:
        actions = self.actions
        if isinstance(actions, Action) or not isinstance(actions, Iterable):
            raise ValidationError("actions must be a sequence of Action", hint="wrap a single action in a tuple")
        actions = tuple(actions)
        for action in actions:
            if not isinstance(action, Action):
                raise ValidationError(f"actions must be Action objects, got {type(action).__name__}",
                                      hint="build them with Action(...) or OutputFacts.from_ledger(...)")
        object.__setattr__(self, "actions", actions)
        object.__setattr__(self, "max_discount_pct", _cap(self.max_discount_pct, "max_discount_pct"))
        object.__setattr__(self, "max_refund_per_order_usd",
                           _cap(self.max_refund_per_order_usd, "max_refund_per_order_usd"))
        for name in ("customer_emails", "customer_phones", "customer_names"):
            object.__setattr__(self, name, _strings(getattr(self, name), name))
        if self.customer_id is not None and not isinstance(self.customer_id, str):
            raise ValidationError(f"customer_id must be a string or None, got {self.customer_id!r}")
        if not isinstance(self.instructions, str):
            raise ValidationError(f"instructions must be a string, got {type(self.instructions).__name__}")
        if isinstance(self.leak_ngram, bool) or not isinstance(self.leak_ngram, int) or self.leak_ngram < MIN_NGRAM:
            raise ValidationError(f"leak_ngram must be an integer >= {MIN_NGRAM}, got {self.leak_ngram!r}",
                                  hint="shorter runs of words are shared by ordinary sentences")

    @property
    def succeeded(self) -> tuple[Action, ...]:
        return tuple(a for a in self.actions if a.succeeded)

    @property
    def not_succeeded(self) -> tuple[Action, ...]:
        return tuple(a for a in self.actions if not a.succeeded)

    @classmethod
    def from_ledger(cls, entries: Iterable[Any], **facts: Any) -> OutputFacts:
        """Facts from ledger entries (`LedgerEntry` objects or their `to_dict()` form) plus `facts`.

        Entries are read by shape (`tool`, `arguments`, `status`, `result`), so the guardrails do
        not depend on the ledger's module.
        """
        actions: list[Action] = list(facts.pop("actions", ()))
        for entry in entries:
            get = entry.get if isinstance(entry, Mapping) else (lambda k, e=entry: getattr(e, k, None))
            status = get("status")
            if status not in STATUSES:
                raise ValidationError(f"ledger entry with unknown status {status!r}")
            actions.append(Action(str(get("tool") or ""), get("arguments") or {}, status, get("result")))
        return cls(actions=tuple(actions), **facts)
