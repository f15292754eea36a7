"""Secrets never reach a log line: keys, tokens, passwords are blanked by the handler filter."""

from __future__ import annotations

import io
import logging
import logging.config

import pytest

from concierge.security.auth import new_api_key
from concierge.security.redaction import SecretRedactor, install, redact, uvicorn_log_config

KEY = new_api_key()
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbm4iLCJ0ZW5hbnQiOiJhY21lIn0.c2lnbmF0dXJlLXZhbHVl"


@pytest.mark.parametrize(("line", "secret"), [
    (f'127.0.0.1:5000 - "GET /v1/sessions/s1/stream?token={KEY} HTTP/1.1" 101', KEY),
    (f"Authorization: Bearer {JWT}", JWT),
    ("connecting to postgresql+psycopg://app:hunter2secret@db:5432/concierge", "hunter2secret"),
    ('{"api_key": "sk-ant-abcdefghijklmnopqrstuvwx"}', "sk-ant-abcdefghijklmnopqrstuvwx"),
    ("retrying with password=correct-horse-battery", "correct-horse-battery"),
    (f"token {KEY} rejected", KEY),
])
def test_secrets_are_redacted(line: str, secret: str) -> None:
    cleaned = redact(line)
    assert secret not in cleaned and "[redacted]" in cleaned


def test_ordinary_text_is_left_alone() -> None:
    text = "Order #W2378156: refund $40.50 to gift_card_123; 3 tokens used; key lime pie; admin@example.com"
    assert redact(text) == text


def test_the_filter_covers_arguments_and_tracebacks() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("concierge.test.redaction")
    logger.propagate = False
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    install(logger)
    install(logger)  # idempotent: one filter per handler
    assert sum(isinstance(f, SecretRedactor) for f in handler.filters) == 1
    try:
        logger.warning("login with %s from %s", KEY, "10.0.0.1")
        try:
            raise ValueError(f"bad token={KEY}")
        except ValueError:
            logger.exception("auth failed")
    finally:
        logger.removeHandler(handler)
    output = stream.getvalue()
    assert KEY not in output and output.count("[redacted]") >= 2 and "10.0.0.1" in output


def test_uvicorn_handlers_carry_the_filter() -> None:
    config = uvicorn_log_config()
    logging.config.dictConfig(config)
    access = logging.getLogger("uvicorn.access")
    try:
        assert access.handlers and all(any(isinstance(f, SecretRedactor) for f in h.filters) for h in access.handlers)
    finally:
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            for h in list(logging.getLogger(name).handlers):
                logging.getLogger(name).removeHandler(h)
