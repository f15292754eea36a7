"""Business-rule refusals: each names its rule and carries the exact text tau2 shows the agent.

Handlers raise `RuleViolation` before they change anything, so a refused request leaves the
store as it was; the app turns it into `{"error": {"rule": ..., "message": ...}}`.
"""

from __future__ import annotations

from typing import Any


class RuleViolation(Exception):
    """A request the store refuses: HTTP status, rule name and a message for the customer's agent."""

    def __init__(self, status: int, rule: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.rule = rule
        self.message = message

    def body(self) -> dict[str, Any]:
        """The JSON error body every refusal shares."""
        return {"error": {"rule": self.rule, "message": self.message}}


def not_found(rule: str, message: str) -> RuleViolation:
    """A missing record: 404, so a caller can tell it from a broken rule."""
    return RuleViolation(404, rule, message)


def broken(rule: str, message: str) -> RuleViolation:
    """A business rule the request breaks: 422 (never 409, which clients read as "outcome unknown")."""
    return RuleViolation(422, rule, message)


def not_your_account(what: str) -> RuleViolation:
    """The record exists but belongs to another customer than the one acting."""
    return RuleViolation(403, "not_your_account", f"This {what} belongs to another customer")


def acting_user_required() -> RuleViolation:
    """No authenticated customer on a request that touches a customer's data."""
    return RuleViolation(401, "acting_user_required",
                         "Identify the customer first (find the user id by email or by name and zip)")
