"""Signed, idempotent inbound webhooks.

Senders sign `f"{timestamp}.{delivery_id}." + body` with HMAC-SHA256 and send
`t=<ts>,v2=<hex>` in `Concierge-Signature`. The timestamp bounds replays; the delivery id is
signed so a captured body cannot be replayed under fresh ids (each would run again); several
`v2` entries and secrets let a secret rotate without a gap. The older `v1` scheme (no delivery
id) is accepted only when the receiver opts in, for senders being migrated.

Senders retry, so `DeliveryLog` makes each `Concierge-Delivery` id run once per tenant: the
first claim wins, later ones see its status or stored result; a claim whose worker died is
taken over once its lease has passed.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
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
SCHEME = "v2"  # HMAC of "t.delivery_id." + body
LEGACY_SCHEME = "v1"  # HMAC of "t." + body: the delivery id is not covered
_MAX_HEADER_CHARS = 4096
_MAX_HEADER_ENTRIES = 16
# Unix seconds until the year 33658; longer digit runs are refused before any arithmetic (a 400-digit
# int compared with the float clock raises OverflowError).
_MAX_TIMESTAMP_DIGITS = 12
_MAX_DELIVERY_ID = 200
_DELIVERY_ID = re.compile(rf"[!-~]{{1,{_MAX_DELIVERY_ID}}}")  # visible ASCII: the signed string is ASCII
_IN_PROGRESS_RETRY_CAP_S = 30


class WebhookSignatureError(AuthError):
    """The body cannot be trusted to come from the tenant: answer 401 and do nothing."""

    status = 401
    code = "bad_signature"

    def __init__(self, reason: str) -> None:
        super().__init__(f"webhook signature rejected: {reason}")
        self.reason = reason


def signed_bytes(timestamp: int, body: bytes, delivery_id: str | None) -> bytes:
    """What the HMAC covers: `"<t>.<delivery id>." + body`, or `"<t>." + body` for the legacy scheme.

    The timestamp is digits and the delivery id visible ASCII, both taken from the headers, so a
    receiver rebuilds this string and never has to split it.
    """
    if delivery_id is None:
        return f"{timestamp}.".encode() + body
    return f"{timestamp}.{validate_delivery_id(delivery_id)}.".encode("ascii") + body


def _digest(secret: str, body: bytes, timestamp: int, delivery_id: str | None) -> str:
    return hmac.new(secret.encode("utf-8"), signed_bytes(timestamp, body, delivery_id), hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int, *, delivery_id: str) -> str:
    """The `Concierge-Signature` value for `body` sent at `timestamp` (Unix seconds) as `delivery_id`."""
    return f"t={int(timestamp)},{SCHEME}={_digest(secret, body, int(timestamp), delivery_id)}"


def sign_legacy(secret: str, body: bytes, timestamp: int) -> str:
    """The older `v1` signature, which leaves the delivery id out (accepted only when opted in)."""
    return f"t={int(timestamp)},{LEGACY_SCHEME}={_digest(secret, body, int(timestamp), None)}"


def _parse(header: str) -> tuple[int, dict[str, list[str]]]:
    """The timestamp and the signatures by scheme; any shape but `t=<digits>,<scheme>=<hex>,...` is refused."""
    if not isinstance(header, str) or len(header) > _MAX_HEADER_CHARS:
        raise WebhookSignatureError("malformed header")
    parts = header.split(",")
    if len(parts) > _MAX_HEADER_ENTRIES:
        raise WebhookSignatureError("malformed header")
    timestamp: int | None = None
    signatures: dict[str, list[str]] = {SCHEME: [], LEGACY_SCHEME: []}
    for part in parts:
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise WebhookSignatureError("malformed header")
        if key == "t":
            if (timestamp is not None or not value.isascii() or not value.isdigit()
                    or len(value) > _MAX_TIMESTAMP_DIGITS):
                raise WebhookSignatureError("malformed header")
            timestamp = int(value)
        elif key in signatures:
            signatures[key].append(value)
        # Other schemes (v0, v3...) are ignored, so a sender can add a new one before we know it.
    if timestamp is None or not any(signatures.values()):
        raise WebhookSignatureError("malformed header")
    return timestamp, signatures


def verify(secrets: Sequence[str], header: str | None, body: bytes, *, delivery_id: str | None, now: float,
           tolerance_s: int = 300, accept_legacy: bool = False) -> int:
    """The signed timestamp if a signature matches a secret; raises `WebhookSignatureError` otherwise.

    `v2` entries are checked against `delivery_id`; `v1` entries (no delivery id) only with
    `accept_legacy`. The tolerance applies both ways: an old timestamp is a replay, a future one
    a clock that would let a captured request be replayed later.
    """
    if isinstance(secrets, str) or not secrets or not all(isinstance(s, str) and s for s in secrets):
        raise ConfigError("no webhook secret configured", hint="pass a non-empty list of secrets")
    if not header:
        raise WebhookSignatureError("missing header")
    timestamp, signatures = _parse(header)
    if not math.isfinite(now) or abs(now - timestamp) > tolerance_s:
        raise WebhookSignatureError("timestamp outside tolerance")
    checks: list[tuple[str | None, list[str]]] = []  # (the delivery id signed, or None for v1; candidates)
    if signatures[SCHEME] and delivery_id is not None:
        checks.append((validate_delivery_id(delivery_id), signatures[SCHEME]))
    if signatures[LEGACY_SCHEME] and accept_legacy:
        checks.append((None, signatures[LEGACY_SCHEME]))
    if not checks:
        if signatures[SCHEME]:
            raise WebhookSignatureError(f"{SCHEME} signs the {DELIVERY_HEADER} header, which is missing")
        raise WebhookSignatureError(f"{LEGACY_SCHEME} does not sign the delivery id and is not accepted; "
                                    f"send {SCHEME}")
    matched = False
    for secret in secrets:
        for signed_id, candidates in checks:
            expected = _digest(secret, body, timestamp, signed_id).encode("ascii")
            for candidate in candidates:
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
    # When the current claim was made: its lease runs from there, and it fences `release`.
    claimed_at: datetime | None = field(default=None, compare=False)

    def retry_after_s(self, lease_s: float, now: datetime | None = None) -> int:
        """Whole seconds a sender should wait before redelivering a delivery still in progress.

        Until the lease ends a live worker may still finish (a retry then gets its result), so the
        wait is the lease left, capped, and at least a second.
        """
        if self.claimed_at is None:
            return 1
        left = lease_s - ((now or datetime.now(UTC)) - self.claimed_at).total_seconds()
        return max(1, math.ceil(min(left, _IN_PROGRESS_RETRY_CAP_S)))


def validate_delivery_id(delivery_id: str) -> str:
    """1-200 visible ASCII characters (no spaces): the id is part of the signed string."""
    if not isinstance(delivery_id, str) or not _DELIVERY_ID.fullmatch(delivery_id):
        raise ValidationError(f"invalid delivery id {delivery_id!r}"[:260],
                              hint=f"send 1-{_MAX_DELIVERY_ID} visible ASCII characters (no spaces) "
                                   f"in {DELIVERY_HEADER}")
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

        With `stale_after_s` (the lease), a 'processing' claim older than that (its worker died)
        is taken over by an UPDATE conditioned on the claim time that was read: of workers racing
        for the same stale claim, only the first UPDATE matches a row.
        """
        where = self._where(tenant, delivery_id)
        await self._ensure_schema()
        for _ in range(3):  # a claim released between our INSERT and SELECT: try again
            now = datetime.now(UTC)
            try:
                async with self.engine.begin() as conn:
                    await conn.execute(insert(deliveries_table).values(
                        tenant=tenant, delivery_id=delivery_id, received_at=now, status="processing", result=None))
                return Claim(first=True, status="processing", claimed_at=now)
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
                    return Claim(first=True, status="processing", claimed_at=now)
                continue
            return Claim(first=False, status=row.status, result=row.result, claimed_at=row.received_at)
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

    async def release(self, tenant: str, delivery_id: str, *, claimed_at: datetime | None = None) -> None:
        """Drop an unfinished claim after a failure, so the sender's retry can run it; done stays done.

        With `claimed_at` (the caller's `Claim.claimed_at`) only that claim is dropped: a worker
        whose claim was taken over after its lease does not drop the new owner's.
        """
        where = self._where(tenant, delivery_id)
        mine = () if claimed_at is None else (deliveries_table.c.received_at == claimed_at,)
        await self._ensure_schema()
        async with self.engine.begin() as conn:
            await conn.execute(delete(deliveries_table).where(*where, deliveries_table.c.status == "processing",
                                                              *mine))
