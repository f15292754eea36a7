"""Calling a downstream HTTP API from a tool, with failures classified by what they mean.

The idempotency key from the ledger travels as the `Idempotency-Key` header. A refused
connection or a 429 certainly had no effect (`ToolTransientError`); a timeout after sending, a
dropped connection or a 5xx may have had one (`ToolOutcomeUnknown`); any other 4xx is the API
enforcing a rule (`ToolError` with the API's message, for the model to explain).
"""

from __future__ import annotations

from typing import Any

import httpx

from ..core.errors import ToolError, ToolOutcomeUnknown, ToolTransientError
from .tool import ToolContext

_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


async def call_api(client: httpx.AsyncClient, method: str, url: str, context: ToolContext | None = None,
                   *, json: Any = None, params: dict[str, Any] | None = None,
                   headers: dict[str, str] | None = None) -> Any:
    """Send one request (no retries here: the executor decides) and return the decoded JSON body.

    A refusal raises `ToolError` carrying the API's own message, so the model (and a comparison
    with a reference system) sees the rule exactly as the API states it."""
    headers = dict(headers or {})
    if context is not None and context.idempotency_key is not None:
        headers["Idempotency-Key"] = context.idempotency_key
    try:
        response = await client.request(method, url, json=json, params=params, headers=headers)
    except _NOT_SENT as exc:
        raise ToolTransientError(f"could not reach {url}: {type(exc).__name__}") from exc
    except httpx.TransportError as exc:  # read timeout, reset, protocol error: it may have landed
        raise ToolOutcomeUnknown(f"{method} {url} broke off ({type(exc).__name__}); the effect is unknown") from exc
    if response.status_code == 429:
        raise ToolTransientError(f"{url} is rate limiting; try again shortly")
    if response.status_code >= 500 or response.status_code == 409:
        raise ToolOutcomeUnknown(f"{method} {url} answered {response.status_code}; the effect is unknown")
    if response.status_code >= 400:
        raise ToolError(_message(response))
    return response.json() if response.content else None


def _message(response: httpx.Response) -> str:
    """`{"error": {"message": ...}}`, `{"error": "..."}`, `{"detail": ...}` or the raw text."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or f"HTTP {response.status_code}"
    if not isinstance(body, dict):
        return str(body)[:300]
    error = body.get("error")
    if isinstance(error, dict) and "message" in error:
        return str(error["message"])
    return str(error or body.get("detail") or body)[:300]
