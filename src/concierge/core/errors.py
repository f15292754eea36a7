"""One error hierarchy for the whole platform.

Every error carries a `hint`: what the caller can do about it. User-facing surfaces (CLI,
HTTP) print `str(error)`, which joins the two, so a message always says what was wrong and
what to do next.
"""

from __future__ import annotations


class ConciergeError(Exception):
    """Base of every error concierge raises on purpose."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(ConciergeError):
    """A setting is missing or has a value that is not allowed."""


class ValidationError(ConciergeError):
    """Input handed to a public entry point is malformed."""


class ModelError(ConciergeError):
    """A model provider failed or answered with something unusable."""


class ModelHTTPError(ModelError):
    """The provider answered with an HTTP error status after all retries."""

    def __init__(self, message: str, *, status_code: int | None, body: str = "", hint: str | None = None):
        super().__init__(message, hint=hint)
        self.status_code = status_code
        self.body = body


class ModelUnavailableError(ModelError):
    """The model cannot be used here (missing extra, missing weights, blocked in tests)."""


class ToolError(ConciergeError):
    """Base for tool definition and execution problems."""


class ToolDefinitionError(ToolError):
    """A function cannot be turned into a tool (bad signature, duplicate name)."""


class ToolNotFoundError(ToolError):
    """The model asked for a tool the agent does not have."""


class ToolArgumentsError(ToolError):
    """The model's arguments do not match the tool's schema."""


class ToolTransientError(ToolError):
    """The call certainly had no effect (refused connection, 429, breaker open): safe to try again."""


class ToolOutcomeUnknown(ToolError):
    """The call may or may not have taken effect (timeout, reset, 5xx): never retry it blind."""


class SessionError(ConciergeError):
    """A session cannot be loaded or stored."""


class LimitExceeded(ConciergeError):
    """A per-turn hard limit tripped (steps, wall clock, tokens, cost)."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit
