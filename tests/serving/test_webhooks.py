"""Webhook signatures (sign/verify, replay window, rotation) and the idempotent delivery log."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import update

from concierge.core.errors import ConfigError, ValidationError
from concierge.security.auth import AuthError
from concierge.serving.webhooks import (
    Claim,
    DeliveryLog,
    WebhookSignatureError,
    deliveries_table,
    sign,
    verify,
)

SECRET, OLD_SECRET = "whsec_current_" + "a" * 32, "whsec_old_" + "b" * 32
BODY = b'{"event": "order.shipped", "order_id": "A-1"}'
NOW = 1_800_000_000


def reason(secrets: list[str], header: str | None, body: bytes = BODY, now: float = NOW) -> str:
    with pytest.raises(WebhookSignatureError) as info:
        verify(secrets, header, body, now=now)
    assert isinstance(info.value, AuthError) and info.value.status == 401
    return info.value.reason


def test_sign_format_and_roundtrip() -> None:
    header = sign(SECRET, BODY, NOW)
    assert header.startswith(f"t={NOW},v1=") and len(header.split("v1=")[1]) == 64
    assert verify([SECRET], header, BODY, now=NOW + 10) == NOW
    assert verify([SECRET], header, BODY, now=NOW - 10) == NOW
    assert sign(SECRET, BODY, NOW) == header and sign(SECRET, BODY, NOW + 1) != header


def test_tampered_body_or_wrong_secret() -> None:
    header = sign(SECRET, BODY, NOW)
    assert reason([SECRET], header, BODY + b" ") == "no matching signature"
    assert reason([OLD_SECRET], header) == "no matching signature"
    # The timestamp is signed too: moving it breaks the signature.
    moved = header.replace(f"t={NOW}", f"t={NOW + 1}")
    assert reason([SECRET], moved) == "no matching signature"


def test_timestamp_tolerance_both_ways() -> None:
    assert reason([SECRET], sign(SECRET, BODY, NOW - 301)) == "timestamp outside tolerance"
    assert reason([SECRET], sign(SECRET, BODY, NOW + 301)) == "timestamp outside tolerance"
    assert verify([SECRET], sign(SECRET, BODY, NOW - 300), BODY, now=NOW) == NOW - 300
    assert verify([SECRET], sign(SECRET, BODY, NOW - 50), BODY, now=NOW, tolerance_s=60) == NOW - 50


@pytest.mark.parametrize("header", [
    "garbage", "t=abc,v1=00", f"t={NOW}", "v1=00", f"t={NOW},t={NOW},v1=00", f"t=-{NOW},v1=00",
    f"t={NOW},v1", "x" * 5000,
])
def test_malformed_headers(header: str) -> None:
    assert reason([SECRET], header) == "malformed header"


def test_missing_header_and_no_secrets() -> None:
    assert reason([SECRET], None) == "missing header"
    assert reason([SECRET], "") == "missing header"
    with pytest.raises(ConfigError):
        verify([], sign(SECRET, BODY, NOW), BODY, now=NOW)


def test_rotation_several_secrets_and_entries() -> None:
    old_header = sign(OLD_SECRET, BODY, NOW)
    assert verify([SECRET, OLD_SECRET], old_header, BODY, now=NOW) == NOW
    # A sender in mid-rotation signs with both keys; either receiver accepts.
    both = old_header + ",v1=" + sign(SECRET, BODY, NOW).split("v1=")[1] + ",v0=ignored"
    assert verify([SECRET], both, BODY, now=NOW) == NOW
    assert verify([OLD_SECRET], both, BODY, now=NOW) == NOW
    assert reason(["c" * 40], both) == "no matching signature"


# --- delivery log -----------------------------------------------------------------------------

@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'deliveries.db'}"


@pytest.fixture
async def log(url: str) -> AsyncIterator[DeliveryLog]:
    store = DeliveryLog(url)
    yield store
    await store.close()


async def test_first_claim_then_duplicate(log: DeliveryLog) -> None:
    assert await log.claim("acme", "d-1") == Claim(first=True, status="processing", result=None)
    assert await log.claim("acme", "d-1") == Claim(first=False, status="processing", result=None)
    # Delivery ids are per tenant.
    assert (await log.claim("globex", "d-1")).first is True


async def test_complete_returns_result_to_duplicates(log: DeliveryLog) -> None:
    await log.claim("acme", "d-1")
    await log.complete("acme", "d-1", {"ok": True, "ticket": "T-9"})
    assert await log.claim("acme", "d-1") == Claim(first=False, status="done", result={"ok": True, "ticket": "T-9"})
    await log.release("acme", "d-1")  # done stays done
    assert (await log.claim("acme", "d-1")).status == "done"
    with pytest.raises(ValidationError, match="never claimed"):
        await log.complete("acme", "d-2", {})


async def test_release_allows_retry(log: DeliveryLog) -> None:
    assert (await log.claim("acme", "d-1")).first
    await log.release("acme", "d-1")
    assert (await log.claim("acme", "d-1")).first
    assert not (await log.claim("acme", "d-1")).first


async def test_concurrent_claims_on_shared_file(url: str) -> None:
    logs = [DeliveryLog(url) for _ in range(4)]
    try:
        await logs[0].claim("acme", "warmup")  # create the schema once, as a running server would have
        claims = await asyncio.gather(*(logs[i % 4].claim("acme", "d-race") for i in range(20)))
        assert sum(c.first for c in claims) == 1
        assert all(c.status == "processing" for c in claims)
    finally:
        for store in logs:
            await store.close()


async def test_stale_claim_taken_over_once(log: DeliveryLog) -> None:
    await log.claim("acme", "d-1")
    assert not (await log.claim("acme", "d-1", stale_after_s=60)).first
    async with log.engine.begin() as conn:
        from datetime import UTC, datetime, timedelta
        await conn.execute(update(deliveries_table).values(received_at=datetime.now(UTC) - timedelta(hours=1)))
    claims = await asyncio.gather(*(log.claim("acme", "d-1", stale_after_s=60) for _ in range(5)))
    assert sum(c.first for c in claims) == 1


@pytest.mark.parametrize("delivery_id", ["", "x" * 201, "a\nb", "tab\there", 42])
async def test_delivery_id_validated(log: DeliveryLog, delivery_id: object) -> None:
    with pytest.raises(ValidationError):
        await log.claim("acme", delivery_id)  # type: ignore[arg-type]


async def test_tenant_validated(log: DeliveryLog) -> None:
    with pytest.raises(ValidationError):
        await log.claim("Not A Tenant", "d-1")
    assert (await log.claim("acme", "x" * 200)).first
