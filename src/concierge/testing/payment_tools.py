"""Agent tools that call the test payment service over HTTP, one per transactional shape.

The four shapes the executor must handle: a read; an idempotent write (the API honours the
`Idempotency-Key` header); a non-idempotent write that can be looked up afterwards (the
legacy endpoint keeps our key as `reference`); and one that cannot be looked up. Every write
sends the idempotency key as `reference`, so a test can count effects per logical action.
"""

from __future__ import annotations

from typing import Any

import httpx

from ..tools.http import call_api
from ..tools.retry import RetryPolicy
from ..tools.tool import Tool, ToolContext, make_tool

KINDS = ("read", "idempotent", "lookup", "blind")
TOOL_FOR_KIND = {"read": "get_balance", "idempotent": "charge", "lookup": "legacy_charge_traced",
                 "blind": "legacy_charge"}


def payment_tools(base_url: str, *, timeout_s: float = 0.5, confirm: bool = False,
                  retry: RetryPolicy | None = None) -> list[Tool]:
    """The four tools against a payment service at `base_url` (one shared HTTP client)."""
    client = httpx.AsyncClient(base_url=base_url, timeout=timeout_s)
    retry = retry or RetryPolicy(max_attempts=3, base_delay_s=0.02, max_delay_s=0.1)

    async def get_balance(account: str) -> Any:
        """Current balance of a payment account, in cents."""
        return await call_api(client, "GET", f"/accounts/{account}/balance")

    async def charge(account: str, amount_cents: int, context: ToolContext) -> Any:
        """Charge an account (idempotent: the API de-duplicates by Idempotency-Key)."""
        body = {"account": account, "amount_cents": amount_cents, "reference": context.idempotency_key}
        return await call_api(client, "POST", "/charges", context, json=body)

    async def legacy_charge_traced(account: str, amount_cents: int, context: ToolContext) -> Any:
        """Charge through the legacy API, which does not de-duplicate but can be searched."""
        body = {"account": account, "amount_cents": amount_cents, "reference": context.idempotency_key}
        return await call_api(client, "POST", "/legacy/charges", None, json=body)

    async def legacy_charge(account: str, amount_cents: int, context: ToolContext) -> Any:
        """Charge through the legacy API (no de-duplication, no search)."""
        body = {"account": account, "amount_cents": amount_cents, "reference": context.idempotency_key}
        return await call_api(client, "POST", "/legacy/charges", None, json=body)

    async def find_charge(arguments: dict[str, Any], context: ToolContext) -> Any:
        found = await call_api(client, "GET", "/charges", params={"reference": context.idempotency_key})
        return found["data"][0] if found["data"] else None

    # The tool's own deadline is a backstop behind the HTTP client's, which classifies better.
    common: dict[str, Any] = {"timeout_s": timeout_s * 2, "retry": retry, "confirm": confirm,
                              "downstream": "payments", "scopes": ("payments:write",)}
    return [
        make_tool(get_balance, timeout_s=timeout_s * 2, retry=retry, downstream="payments"),
        make_tool(charge, effect="write", idempotent=True, **common),
        make_tool(legacy_charge_traced, effect="write", lookup=find_charge, **common),
        make_tool(legacy_charge, effect="write", **common),
    ]
