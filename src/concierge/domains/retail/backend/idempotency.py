"""Idempotency keys for the store's writes, kept in the store's own database.

The key, a hash of the request and the response are written in the same transaction as the
effect, so a retried request either finds the stored response (and changes nothing) or finds
no key because the first attempt rolled back entirely.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Connection,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    insert,
    select,
)

from .errors import broken

metadata = MetaData()

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("key", String, primary_key=True),
    Column("request_hash", String, nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("response", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
)


def create_idempotency_table(engine: Engine) -> None:
    """Create the key table beside the store's tables when it is missing."""
    metadata.create_all(engine)


def request_hash(method: str, path: str, acting_user: str | None, body: Any) -> str:
    """What makes two requests "the same" for a key: route, acting customer and body."""
    material = json.dumps([method, path, acting_user, body], sort_keys=True, separators=(",", ":"),
                          default=str)
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def stored_response(conn: Connection, key: str, digest: str) -> tuple[int, Any] | None:
    """The response recorded under `key`; a key reused for a different request is refused."""
    row = conn.execute(select(idempotency_keys).where(idempotency_keys.c.key == key)).mappings().first()
    if row is None:
        return None
    if row["request_hash"] != digest:
        raise broken("idempotency_key_reused",
                     "This Idempotency-Key was already used for a different request")
    return int(row["status_code"]), row["response"]


def remember(conn: Connection, key: str, digest: str, status_code: int, response: Any) -> None:
    """Record the response in the effect's transaction."""
    conn.execute(insert(idempotency_keys).values(key=key, request_hash=digest, status_code=status_code,
                                                 response=response, created_at=time.time()))
