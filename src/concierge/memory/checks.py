"""Input checks shared by the memory stores: ids, keys, budgets and the per-tenant policy."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..core.errors import ValidationError

# Tenant, user and conversation ids: no ':' or '/' so they are safe inside Redis keys and paths.
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+=-]{0,127}$")
# Conversation ids are runtime session ids, which may carry the tenant ("acme:s1"); always last in keys.
_CONVERSATION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@+=-]{0,127}$")
# Fact keys: lowercase snake case, e.g. `contact_channel`, `order_w123_refund`.
_KEY_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")

DAYS_PER_MONTH = 30  # retention is configured in months; a month counts as 30 days


def check_id(what: str, value: object) -> str:
    pattern = _CONVERSATION_RE if what == "conversation id" else _ID_RE
    if not isinstance(value, str) or not pattern.match(value):
        raise ValidationError(
            f"memory {what} {value!r} is not a valid id",
            hint=f"a {what} is 1-128 characters: letters, digits and _ . @ + = - (not starting with a symbol)",
        )
    return value


def normalise_key(value: object) -> str:
    """`"Contact Channel"` → `contact_channel`; an unusable key is a ValidationError."""
    if not isinstance(value, str):
        raise ValidationError(f"memory key must be a string, got {type(value).__name__}")
    key = re.sub(r"[\s-]+", "_", value.strip().lower())
    if not _KEY_RE.match(key):
        raise ValidationError(f"memory key {value!r} is not valid",
                              hint="keys are short snake_case names such as contact_channel")
    return key


def check_budget(budget_tokens: object) -> int:
    if isinstance(budget_tokens, bool) or not isinstance(budget_tokens, int) or budget_tokens < 0:
        raise ValidationError(f"budget_tokens must be an int >= 0, got {budget_tokens!r}",
                              hint="pass the number of context tokens memory may use, e.g. 300")
    return budget_tokens


def check_aware(what: str, value: object) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValidationError(f"{what} must be a timezone-aware datetime, got {value!r}",
                              hint="use the injected clock's now()")
    return value


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationError(f"memory policy {name} must be a finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class MemoryPolicy:
    """How one tenant's memories are ranked and kept.

    score = alpha·similarity + (1 − alpha)·0.5 ** (age_days / half_life_days) + issue_boost·[linked to an open issue]
    """

    alpha: float = 0.7
    half_life_days: float = 7.0
    issue_boost: float = 0.2
    retention_months: float = 6.0  # facts older than this go at expire(), unless linked to an open issue
    candidates: int = 200  # facts scored per recall (all of them for users with fewer facts)

    def __post_init__(self) -> None:
        alpha = _number("alpha", self.alpha)
        if not 0.0 <= alpha <= 1.0:
            raise ValidationError(f"memory policy alpha must lie in [0, 1], got {self.alpha!r}",
                                  hint="alpha weighs similarity against recency; the default is 0.7")
        for name in ("half_life_days", "retention_months"):
            if _number(name, getattr(self, name)) <= 0:
                raise ValidationError(f"memory policy {name} must be > 0, got {getattr(self, name)!r}")
        if _number("issue_boost", self.issue_boost) < 0:
            raise ValidationError(f"memory policy issue_boost must be >= 0, got {self.issue_boost!r}")
        if isinstance(self.candidates, bool) or not isinstance(self.candidates, int) or self.candidates < 1:
            raise ValidationError(f"memory policy candidates must be a positive int, got {self.candidates!r}")

    @property
    def retention(self) -> timedelta:
        return timedelta(days=self.retention_months * DAYS_PER_MONTH)
