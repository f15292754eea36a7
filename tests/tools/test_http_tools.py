"""`call_api`: the idempotency key travels as a header; failures are classified by effect."""

from __future__ import annotations

import httpx
import pytest

from concierge.core import Principal, ToolError, ToolOutcomeUnknown, ToolTransientError
from concierge.tools import ToolContext, call_api

CTX = ToolContext("s1", Principal("u1"), {}, idempotency_key="ik_abc")


def client_for(handler) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url="http://payments.test", transport=httpx.MockTransport(handler))


async def test_idempotency_key_is_sent_as_header():
    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["key"] = request.headers.get("Idempotency-Key")
        return httpx.Response(201, json={"id": "ch_1"})

    async with client_for(handler) as client:
        assert await call_api(client, "POST", "/charges", CTX, json={"amount_cents": 5}) == {"id": "ch_1"}
        assert seen["key"] == "ik_abc"
        await call_api(client, "GET", "/charges/ch_1")
        assert seen["key"] is None  # no context, no key


def raise_(exc: Exception):
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


@pytest.mark.parametrize("handler, error, text", [
    (raise_(httpx.ConnectError("refused")), ToolTransientError, "could not reach"),
    (raise_(httpx.ReadTimeout("slow")), ToolOutcomeUnknown, "effect is unknown"),
    (raise_(httpx.RemoteProtocolError("reset")), ToolOutcomeUnknown, "effect is unknown"),
    (lambda r: httpx.Response(500, json={"error": "internal"}), ToolOutcomeUnknown, "answered 500"),
    (lambda r: httpx.Response(409, json={"error": "request_in_progress"}), ToolOutcomeUnknown, "answered 409"),
    (lambda r: httpx.Response(429), ToolTransientError, "rate limiting"),
    (lambda r: httpx.Response(400, json={"error": "refund_exceeds_charge"}), ToolError, "refund_exceeds_charge"),
])
async def test_failures_are_classified_by_what_they_mean_for_the_effect(handler, error, text):
    async with client_for(handler) as client:
        with pytest.raises(error, match=text) as caught:
            await call_api(client, "POST", "/refunds", CTX, json={})
    if error is ToolError:  # a business rejection is neither transient nor unknown
        assert not isinstance(caught.value, (ToolTransientError, ToolOutcomeUnknown))
