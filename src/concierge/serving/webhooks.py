"""Signed, idempotent inbound webhooks.

Senders sign `f"{timestamp}." + body` with HMAC-SHA256 and send `t=<ts>,v1=<hex>` in
`Concierge-Signature`; the timestamp bounds replays, and several `v1` entries and secrets let a
secret rotate without a gap. Senders retry, so `DeliveryLog` makes each `Concierge-Delivery`
id run once per tenant: the first claim wins, later ones see its status or stored result.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from ..core.errors import ConfigError, ValidationError
from ..core.sqldb import SqlBacked, UTCDateTime
from ..security.auth import AuthError
from ..security.tenants import validate_tenant_name

SIGNATURE_HEADER = "Concierge-Signature"
DELIVERY_HEADER = "Concierge-Delivery"
_MAX_HEADER_CHARS = 4096
_MAX_DELIVERY_ID = 200


class WebhookSignatureError(AuthError):
    """The body cannot be trusted to come from the tenant: answer 401 and do nothing."""

    status = 401
    code = "bad_signature"

    def __init__(self, reason: str) -> None:
        super().__init__(f"webhook signature rejected: {reason}")
        self.reason = reason


def _digest(secret: str, body: bytes, timestamp: int) -> str:
    return hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The `Concierge-Signature` value for `body` sent at `timestamp` (Unix seconds)."""
    return f"t={int(timestamp)},v1={_digest(secret, body, int(timestamp))}"


def _parse(header: str) -> tuple[int, list[str]]:
    if len(header) > _MAX_HEADER_CHARS:
        raise WebhookSignatureError("malformed header")
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise WebhookSignatureError("malformed header")
        if key == "t":
            if timestamp is not None or not value.isascii() or not value.isdigit():
                raise WebhookSignatureError("malformed header")
            timestamp = int(value)
        elif key == "v1":
            signatures.append(value)
        # Other schemes (v0, v2...) are ignored, so a sender can add a new one before we know it.
    if timestamp is None or not signatures:
        raise WebhookSignatureError("malformed header")
    return timestamp, signatures


def verify(secrets: Sequence[str], header: str | None, body: bytes, *, now: float, tolerance_s: int = 300) -> int:
    """The signed timestamp if any `v1` matches any secret; raises `WebhookSignatureError` otherwise.

    The tolerance applies both ways: an old timestamp is a replay, a future one a clock that
    would let a captured request be replayed later.
    """
    if isinstance(secrets, str) or not secrets or not all(isinstance(s, str) and s for s in secrets):
        raise ConfigError("no webhook secret configured", hint="pass a non-empty list of secrets")
    if not header:
        raise WebhookSignatureError("missing header")
    timestamp, signatures = _parse(header)
    if abs(now - timestamp) > tolerance_s:
        raise WebhookSignatureError("timestamp outside tolerance")
    matched = False
    for secret in secrets:
        expected = _digest(secret, body, timestamp).encode("ascii")
        for candidate in signatures:
            # Compare every pair, so timing says nothing about which secret or entry matched.
            matched |= hmac.compare_digest(expected, candidate.encode("utf-8", "replace"))
    if not matched:
        raise WebhookSignatureError("no matching signature")
    return timestamp


# --- Idempotent delivery ----------------------------------------------------------------------

metadata = MetaData()

deliveries_table = Table(
    "serving_webhook_deliveries",
    metadata,
    Column("tenant", String(63), nullable=False),
    Column("delivery_id", String(_MAX_DELIVERY_ID), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("result", JSON, nullable=True),
    PrimaryKeyConstraint("tenant", "delivery_id"),
)


@dataclass(frozen=True)
class Claim:
    """`first`: this caller runs the delivery; otherwise `status`/`result` say what the first did."""

    first: bool
    status: str
    result: dict[str, Any] | None = None


def validate_delivery_id(delivery_id: str) -> str:
    if (not isinstance(delivery_id, str) or not 1 <= len(delivery_id) <= _MAX_DELIVERY_ID
            or not delivery_id.isprintable()):
        raise ValidationError(f"invalid delivery id {delivery_id!r}"[:260],
                              hint=f"send 1-{_MAX_DELIVERY_ID} printable characters in {DELIVERY_HEADER}")
    return delivery_id


class DeliveryLog(SqlBacked):
    """Which webhook deliveries each tenant has seen; the primary key makes claims atomic."""

    metadata = metadata
    what = "webhook delivery log"

    def _where(self, tenant: str, delivery_id: str) -> tuple[Any, Any]:
        validate_tenant_name(tenant)
        validate_delivery_id(delivery_id)
        return deliveries_table.c.tenant == tenant, deliveries_table.c.delivery_id == delivery_id

    async def claim(self, tenant: str, delivery_id: str, *, stale_after_s: float | None = None) -> Claim:
        """Claim a delivery: an INSERT, so of racing workers exactly one gets `first=True`.

        With `stale_after_s`, a 'processing' claim older than that (its worker died) is taken
        over by a conditional UPDATE, which again only one worker can win.
        """
        where = self._where(tenant, delivery_id)
        await self._ensure_schema()
        for _ in range(3):  # a claim released between our INSERT and SELECT: try again
            now = datetime.now(UTC)
            try:
                async with self.engine.begin() as conn:
                    await conn.execute(insert(deliveries_table).values(
                        tenant=tenant, delivery_id=delivery_id, received_at=now, status="processing", result=None))
                return Claim(first=True, status="processing")
            except IntegrityError:
                pass
            async with self.engine.connect() as conn:
                row = (await conn.execute(select(deliveries_table).where(*where))).first()
            if row is None:
                continue
            if (stale_after_s is not None and row.status == "processing"
                    and row.received_at < now - timedelta(seconds=stale_after_s)):
                async with self.engine.begin() as conn:
                    taken = await conn.execute(
                        update(deliveries_table)
                        .where(*where, deliveries_table.c.status == "processing",
                               deliveries_table.c.received_at == row.received_at)
                        .values(received_at=now))
                if taken.rowcount == 1:
                    return Claim(first=True, status="processing")
                continue
            return Claim(first=False, status=row.status, result=row.result)
        raise ValidationError(f"delivery {delivery_id!r} keeps changing hands", hint="retry the delivery later")

    async def complete(self, tenant: str, delivery_id: str, result: dict[str, Any]) -> None:
        """Record the outcome, so a redelivery answers with it instead of running again."""
        if not isinstance(result, dict):
            raise ValidationError(f"a delivery result must be a dict, got {type(result).__name__}")
        where = self._where(tenant, delivery_id)
        await self._ensure_schema()
        async with self.engine.begin() as conn:
            done = await conn.execute(update(deliveries_table).where(*where).values(status="done", result=result))
        if done.rowcount != 1:
            raise ValidationError(f"delivery {delivery_id!r} was never claimed", hint="call claim() first")

    async def release(self, tenant: str, delivery_id: str) -> None:
        """Drop an unfinished claim after a failure, so the sender's retry can run it; done stays done."""
        where = self._where(tenant, delivery_id)
        await self._ensure_schema()
        async with self.engine.begin() as conn:
            await conn.execute(delete(deliveries_table).where(*where, deliveries_table.c.status == "processing"))
