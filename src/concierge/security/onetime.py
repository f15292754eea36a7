"""Tokens that work once, whichever worker process sees them: the console's demo sign-in.

A token is redeemed by inserting its SHA-256 into a table of the sessions' database; the primary
key makes the insert atomic, so of several workers (or several tabs) racing with the same token
exactly one wins, and a used token stays used across restarts. Only the hash is stored.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from sqlalchemy import Column, MetaData, String, Table, insert
from sqlalchemy.exc import IntegrityError

from ..core.errors import ValidationError
from ..core.sqldb import SqlBacked, UTCDateTime

metadata = MetaData()

used_tokens_table = Table(
    "serving_used_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("purpose", String(32), nullable=False),
    Column("used_at", UTCDateTime(), nullable=False),
)


class OneTimeTokens(SqlBacked):
    """Which one-time tokens have been used; share the tenant directory's engine (`from_engine`)."""

    metadata = metadata
    what = "one-time token store"

    async def redeem(self, token: str, purpose: str) -> bool:
        """True the first time `token` is redeemed, False every time after, in any process."""
        if not isinstance(token, str) or not token:
            raise ValidationError("a one-time token must be a non-empty string")
        digest = hashlib.sha256(token.encode("utf-8")).hexdigest()
        await self._ensure_schema()
        try:
            async with self.engine.begin() as conn:
                await conn.execute(insert(used_tokens_table).values(
                    token_hash=digest, purpose=purpose[:32], used_at=datetime.now(UTC)))
        except IntegrityError:
            return False
        return True
