"""Secrets never reach a log: a logging filter that blanks keys, tokens and passwords in every record.

A secret can enter a log line from anywhere: an access log with `?token=` on a WebSocket URL, an
exception that quotes a header, a debug line with a connection URL. Filtering at the handler
catches all of them, whoever logged. What it removes: concierge API keys (`ck_…`), JWTs, bearer
tokens, OpenAI/Anthropic-style keys, and the value of any `token=`, `key=`, `password=`,
`secret=` parameter, and a password in a URL's userinfo.
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

REDACTED = "[redacted]"
# Each pattern's `keep` group (if any) stays; the rest of the match is the secret.
_PATTERNS = [
    re.compile(r"\bck_[A-Za-z0-9_-]{16,}"),  # concierge API keys
    re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),  # JWTs
    re.compile(r"\b(?:sk|rk|pk)-(?:ant-)?[A-Za-z0-9_-]{16,}"),  # provider API keys
    re.compile(r"(?P<keep>(?i:bearer)\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"(?P<keep>(?i:\b(?:access_token|token|api[_-]?key|password|passwd|secret|client_secret))"
               r"[\"']?\s*[=:]\s*[\"']?)[^&\s\"',;}]+"),
    re.compile(r"(?P<keep>://[^/\s:@]+:)[^@/\s]+(?=@)"),  # password in scheme://user:password@host
]


def redact(text: str) -> str:
    """`text` with every secret it contains replaced by [redacted]."""
    for pattern in _PATTERNS:
        if "keep" in pattern.groupindex:
            text = pattern.sub(lambda m: m.group("keep") + REDACTED, text)
        else:
            text = pattern.sub(REDACTED, text)
    return text


class SecretRedactor(logging.Filter):
    """Add to a handler: every record it emits has its secrets blanked (message and arguments)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Put the filter on every handler of `logger` (the root logger by default)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, SecretRedactor) for f in handler.filters):
            handler.addFilter(SecretRedactor())


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's own logging config with the filter on its handlers (access lines carry query strings)."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["secrets"] = {"()": "concierge.security.redaction.SecretRedactor"}
    for handler in config["handlers"].values():
        handler.setdefault("filters", []).append("secrets")
    return config
