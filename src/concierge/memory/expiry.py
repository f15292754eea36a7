"""Expiry: which facts automatic forgetting removes.

A fact expires when it is older than its tenant's retention (`MemoryPolicy.retention_months`,
counted from `created_at`, a month being 30 days) or when its own `expires_at` has passed —
unless it is linked to an open issue (it is one, or its `issue_key` names one of the user's
open issues): what is still being worked on is never forgotten by age. Resolved issues age out
like everything else. Session notes expire separately, by a single TTL on their `updated_at`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from .checks import MemoryPolicy
from .profile import Fact, linked_to_open_issue


def is_expired(fact: Fact, now: datetime, policy: MemoryPolicy) -> bool:
    too_old = fact.created_at < now - policy.retention
    past_deadline = fact.expires_at is not None and fact.expires_at <= now
    return too_old or past_deadline


def expired_facts(candidates: Sequence[Fact], now: datetime, policy_for: Callable[[str], MemoryPolicy],
                  open_issues: Mapping[tuple[str, str], set[str]]) -> list[Fact]:
    """The candidates that expire at `now`; `open_issues` maps (tenant, user) to its open issue keys."""
    return [fact for fact in candidates
            if is_expired(fact, now, policy_for(fact.tenant))
            and not linked_to_open_issue(fact, open_issues.get((fact.tenant, fact.user_id), set()))]
