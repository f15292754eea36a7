"""Webhook signatures (sign/verify, the signed delivery id, replay window, rotation, the legacy scheme)
and the idempotent delivery log (claims, leases, takeover)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
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
    sign_legacy,
    signed_bytes,
    verify,
)

SECRET, OLD_SECRET = "whsec_current_" + "a" * 32, "whsec_old_" + "b" * 32
BODY = b'{"event": "order.shipped", "order_id": "A-1"}'
NOW = 1_800_000_000
DID = "d-1"


def reason(secrets: list[str], header: str | None, body: bytes = BODY, now: float = NOW, *,
           delivery_id: str | None = DID, accept_legacy: bool = False) -> str:
    with pytest.raises(WebhookSignatureError) as info:
        verify(secrets, header, body, delivery_id=delivery_id, now=now, accept_legacy=accept_legacy)
    assert isinstance(info.value, AuthError) and info.value.status == 401
    return info.value.reason


def test_sign_format_and_roundtrip() -> None:
    header = sign(SECRET, BODY, NOW, delivery_id=DID)
    assert header.startswith(f"t={NOW},v2=") and len(header.split("v2=")[1]) == 64
    assert verify([SECRET], header, BODY, delivery_id=DID, now=NOW + 10) == NOW
    assert verify([SECRET], header, BODY, delivery_id=DID, now=NOW - 10) == NOW
    assert sign(SECRET, BODY, NOW, delivery_id=DID) == header
    assert sign(SECRET, BODY, NOW + 1, delivery_id=DID) != header


def test_the_signed_string_is_timestamp_delivery_id_body() -> None:
    """The documented string, so a sender in any language can compute it."""
    assert signed_bytes(NOW, BODY, DID) == f"{NOW}.{DID}.".encode() + BODY
    digest = hmac.new(SECRET.encode(), f"{NOW}.{DID}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, BODY, NOW, delivery_id=DID) == f"t={NOW},v2={digest}"
    legacy = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign_legacy(SECRET, BODY, NOW) == f"t={NOW},v1={legacy}"


def test_tampered_body_delivery_id_or_wrong_secret() -> None:
    header = sign(SECRET, BODY, NOW, delivery_id=DID)
    assert reason([SECRET], header, BODY + b" ") == "no matching signature"
    assert reason([OLD_SECRET], header) == "no matching signature"
    # The timestamp and the delivery id are signed too: changing either breaks the signature.
    moved = header.replace(f"t={NOW}", f"t={NOW + 1}")
    assert reason([SECRET], moved) == "no matching signature"
    assert reason([SECRET], header, delivery_id="d-2") == "no matching signature"
    assert reason([SECRET], header, delivery_id=None) == "v2 signs the Concierge-Delivery header, which is missing"


def test_legacy_signatures_only_when_accepted() -> None:
    legacy = sign_legacy(SECRET, BODY, NOW)
    assert reason([SECRET], legacy).startswith("v1 does not sign the delivery id")
    assert verify([SECRET], legacy, BODY, delivery_id=DID, now=NOW, accept_legacy=True) == NOW
    assert verify([SECRET], legacy, BODY, delivery_id=None, now=NOW, accept_legacy=True) == NOW
    assert reason([OLD_SECRET], legacy, accept_legacy=True) == "no matching signature"
    # A sender being migrated sends both; a receiver that has moved on checks only v2.
    both = sign(SECRET, BODY, NOW, delivery_id=DID) + "," + legacy.split(",")[1]
    assert verify([SECRET], both, BODY, delivery_id=DID, now=NOW) == NOW
    assert reason([SECRET], both, delivery_id="d-2") == "no matching signature"
    assert verify([SECRET], both, BODY, delivery_id="d-2", now=NOW, accept_legacy=True) == NOW


def test_timestamp_tolerance_both_ways() -> None:
    assert reason([SECRET], sign(SECRET, BODY, NOW - 301, delivery_id=DID)) == "timestamp outside tolerance"
    assert reason([SECRET], sign(SECRET, BODY, NOW + 301, delivery_id=DID)) == "timestamp outside tolerance"
    assert verify([SECRET], sign(SECRET, BODY, NOW - 300, delivery_id=DID), BODY, delivery_id=DID, now=NOW) \
        == NOW - 300
    assert verify([SECRET], sign(SECRET, BODY, NOW - 50, delivery_id=DID), BODY, delivery_id=DID, now=NOW,
                  tolerance_s=60) == NOW - 50
    assert reason([SECRET], sign(SECRET, BODY, NOW, delivery_id=DID), now=float("nan")) \
        == "timestamp outside tolerance"


@pytest.mark.parametrize("header", [
    "garbage", "t=abc,v2=00", f"t={NOW}", "v2=00", f"t={NOW},t={NOW},v2=00", f"t=-{NOW},v2=00",
    f"t={NOW},v2", "x" * 5000, "t=" + "9" * 400 + ",v1=00", "t=" + "9" * 13 + ",v2=00",
    f"t={NOW},,v2=00", f"t={NOW},v2=00,", "t=\u0661\u0662,v2=00", f"t={NOW}," + "v2=00," * 20 + "v2=00",
    f"t={NOW},v3=00",
])
def test_malformed_headers(header: str) -> None:
    assert reason([SECRET], header) == "malformed header"
    assert reason([SECRET], header, accept_legacy=True) == "malformed header"


def test_missing_header_and_no_secrets() -> None:
    assert reason([SECRET], None) == "missing header"
    assert reason([SECRET], "") == "missing header"
    with pytest.raises(ConfigError):
        verify([], sign(SECRET, BODY, NOW, delivery_id=DID), BODY, delivery_id=DID, now=NOW)


def test_rotation_several_secrets_and_entries() -> None:
    old_header = sign(OLD_SECRET, BODY, NOW, delivery_id=DID)
    assert verify([SECRET, OLD_SECRET], old_header, BODY, delivery_id=DID, now=NOW) == NOW
    # A sender in mid-rotation signs with both keys; either receiver accepts.
    both = old_header + ",v2=" + sign(SECRET, BODY, NOW, delivery_id=DID).split("v2=")[1] + ",v0=ignored"
    assert verify([SECRET], both, BODY, delivery_id=DID, now=NOW) == NOW
    assert verify([OLD_SECRET], both, BODY, delivery_id=DID, now=NOW) == NOW
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
        await conn.execute(update(deliveries_table).values(received_at=datetime.now(UTC) - timedelta(hours=1)))
    claims = await asyncio.gather(*(log.claim("acme", "d-1", stale_after_s=60) for _ in range(5)))
    assert sum(c.first for c in claims) == 1


async def test_stale_claim_taken_over_once_across_stores(url: str) -> None:
    """Workers are separate processes with their own engines: the conditional UPDATE still has one winner."""
    logs = [DeliveryLog(url) for _ in range(4)]
    try:
        old = await logs[0].claim("acme", "d-1")
        async with logs[0].engine.begin() as conn:
            await conn.execute(update(deliveries_table).values(received_at=datetime.now(UTC) - timedelta(hours=1)))
        claims = await asyncio.gather(*(logs[i % 4].claim("acme", "d-1", stale_after_s=60) for i in range(12)))
        assert sum(c.first for c in claims) == 1
        winner = next(c for c in claims if c.first)
        # The dead worker, if it comes back and fails, drops only its own claim, not the new owner's.
        await logs[1].release("acme", "d-1", claimed_at=old.claimed_at)
        assert not (await logs[2].claim("acme", "d-1", stale_after_s=60)).first
        await logs[3].release("acme", "d-1", claimed_at=winner.claimed_at)
        assert (await logs[2].claim("acme", "d-1", stale_after_s=60)).first
    finally:
        for store in logs:
            await store.close()


async def test_in_progress_claim_says_how_long_to_wait(log: DeliveryLog) -> None:
    first = await log.claim("acme", "d-1")
    again = await log.claim("acme", "d-1", stale_after_s=300)
    assert not again.first and again.claimed_at == first.claimed_at
    assert again.retry_after_s(300) == 30  # capped: a live worker usually finishes sooner
    assert again.retry_after_s(10) == 10
    assert again.retry_after_s(10, now=datetime.now(UTC) + timedelta(seconds=60)) == 1


@pytest.mark.parametrize("delivery_id", ["", "x" * 201, "a\nb", "tab\there", 42, "caf\u00e9", "a b", "\x00"])
async def test_delivery_id_validated(log: DeliveryLog, delivery_id: object) -> None:
    with pytest.raises(ValidationError):
        await log.claim("acme", delivery_id)  # type: ignore[arg-type]


async def test_tenant_validated(log: DeliveryLog) -> None:
    with pytest.raises(ValidationError):
        await log.claim("Not A Tenant", "d-1")
    assert (await log.claim("acme", "x" * 200)).first
