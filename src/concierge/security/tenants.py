"""The tenant directory: who the tenants are, their signing secrets, rate limits and API keys.

API keys are stored only as SHA-256 hashes (see `hash_api_key`): the plaintext is returned once
by `issue_key` and cannot be recovered from the database. Tenant records and live API keys are
cached in memory for a few seconds, so per-request checks rarely touch the database.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import jwt
from sqlalchemy import Column, Float, ForeignKey, Integer, MetaData, String, Table, insert, select, update
from sqlalchemy.exc import IntegrityError

from ..core.errors import ValidationError
from ..core.principal import Principal
from ..core.sqldb import SqlBacked, UTCDateTime
from .auth import (
    ROLES,
    Caller,
    JwtConfig,
    Unauthenticated,
    hash_api_key,
    is_api_key,
    new_api_key,
    scopes_for,
    verify_jwt,
)

TENANT_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
ISSUER_PREFIX = "concierge:"
DEFAULT_AUDIENCE = "concierge"
_BAD_KEY = "invalid API key"  # one message for unknown, revoked and other-tenant keys
_HEX64 = re.compile(r"^[0-9a-f]{64}$")

metadata = MetaData()

tenants_table = Table(
    "serving_tenants",
    metadata,
    Column("name", String(63), primary_key=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("jwt_secret", String(128), nullable=False),
    Column("jwt_issuer", String(255), nullable=False),
    Column("jwt_audience", String(255), nullable=False),
    Column("webhook_secret", String(128), nullable=False),
    Column("rate_per_second", Float, nullable=False),
    Column("rate_burst", Integer, nullable=False),
    Column("user_rate_per_second", Float, nullable=False),
    Column("user_rate_burst", Integer, nullable=False),
)

api_keys_table = Table(
    "serving_api_keys",
    metadata,
    Column("key_hash", String(64), primary_key=True),
    Column("tenant", String(63), ForeignKey("serving_tenants.name"), nullable=False, index=True),
    Column("role", String(32), nullable=False),
    Column("label", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime(), nullable=True),
)


def validate_tenant_name(name: str) -> str:
    """Tenant names appear in URLs, issuers and log lines, so keep them to a safe alphabet."""
    if not isinstance(name, str) or not TENANT_NAME_RE.match(name):
        raise ValidationError(f"invalid tenant name {name!r}",
                              hint="use 1-63 lowercase letters, digits, '_' or '-', starting with a letter or digit")
    return name


def _rate(value: tuple[float, int], what: str) -> tuple[float, int]:
    per_second, burst = value
    if not isinstance(per_second, int | float) or per_second <= 0 or not isinstance(burst, int) or burst < 1:
        raise ValidationError(f"bad {what} {value!r}", hint="use (requests per second > 0, burst >= 1)")
    return float(per_second), burst


@dataclass(frozen=True)
class TenantRecord:
    """One tenant's row; the secrets stay out of repr so a logged record leaks nothing."""

    name: str
    created_at: datetime
    jwt_secret: str = field(repr=False)
    jwt_issuer: str
    jwt_audience: str
    webhook_secret: str = field(repr=False)
    rate_per_second: float
    rate_burst: int
    user_rate_per_second: float
    user_rate_burst: int

    @property
    def jwt_config(self) -> JwtConfig:
        return JwtConfig(secret=self.jwt_secret, issuer=self.jwt_issuer, audience=self.jwt_audience)

    @property
    def rate(self) -> tuple[float, int]:
        return self.rate_per_second, self.rate_burst

    @property
    def user_rate(self) -> tuple[float, int]:
        return self.user_rate_per_second, self.user_rate_burst


class TenantDirectory(SqlBacked):
    """Tenants and API keys in SQL, with short in-memory caches of tenant records and live keys.

    The tenant cache (`cache_ttl_s`, 5 s by default) means a secret rotated by another process
    takes effect within that time; changes made through this object apply at once. A live API key
    is remembered for `key_cache_ttl_s` (2 s) after its lookup, so a connection storm or a burst of
    requests with one key costs one query, not one per request: `revoke_key` on this object
    forgets the key at once (the next request gets 401), and a revocation written by another
    process (another worker, a script) holds within `key_cache_ttl_s`. Unknown and revoked keys
    are never cached (a flood of made-up keys cannot fill the cache), and at most
    `key_cache_size` keys are kept.
    """

    metadata = metadata
    what = "tenant directory"
    cache_ttl_s: float = 5.0
    key_cache_ttl_s: float = 2.0
    key_cache_size: int = 10_000

    def _setup(self, engine: Any, *args: Any, **kwargs: Any) -> None:
        super()._setup(engine, *args, **kwargs)
        self._cache: dict[str, tuple[float, TenantRecord]] = {}
        self._loading: dict[str, asyncio.Future[TenantRecord | None]] = {}  # a query in flight, per tenant
        self._keys: OrderedDict[str, tuple[float, Caller]] = OrderedDict()  # key hash -> (until, caller)

    async def create_tenant(self, name: str, *, rate: tuple[float, int] = (20.0, 40),
                            user_rate: tuple[float, int] = (2.0, 10)) -> TenantRecord:
        validate_tenant_name(name)
        per_second, burst = _rate(rate, "tenant rate")
        user_per_second, user_burst = _rate(user_rate, "per-user rate")
        record = TenantRecord(
            name=name, created_at=datetime.now(UTC), jwt_secret=secrets.token_urlsafe(32),
            jwt_issuer=f"{ISSUER_PREFIX}{name}", jwt_audience=DEFAULT_AUDIENCE,
            webhook_secret=secrets.token_urlsafe(32), rate_per_second=per_second, rate_burst=burst,
            user_rate_per_second=user_per_second, user_rate_burst=user_burst,
        )
        await self._ensure_schema()
        try:
            async with self.engine.begin() as conn:
                await conn.execute(insert(tenants_table).values(**asdict(record)))
        except IntegrityError:
            raise ValidationError(f"tenant {name!r} already exists") from None
        self._cache[name] = (time.monotonic() + self.cache_ttl_s, record)
        return record

    async def _load(self, name: str) -> TenantRecord | None:
        await self._ensure_schema()
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(tenants_table).where(tenants_table.c.name == name))).first()
        return None if row is None else TenantRecord(**row._mapping)

    async def get_tenant(self, name: str) -> TenantRecord | None:
        """The tenant, from the cache when fresh; None if there is no such tenant (never cached).

        When the cached record expires under load, every request of the tenant misses at once:
        they share one query (the first caller's) instead of each sending its own.
        """
        if not isinstance(name, str) or not TENANT_NAME_RE.match(name):
            return None
        cached = self._cache.get(name)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        loading = self._loading.get(name)
        if loading is None:
            loading = self._loading[name] = asyncio.ensure_future(self._refresh(name))
        # Shielded: a caller that is cancelled (its client left) does not cancel the others' query.
        return await asyncio.shield(loading)

    async def _refresh(self, name: str) -> TenantRecord | None:
        try:
            record = await self._load(name)
            if record is None:
                self._cache.pop(name, None)
            else:
                self._cache[name] = (time.monotonic() + self.cache_ttl_s, record)
            return record
        finally:
            self._loading.pop(name, None)

    async def list_tenants(self) -> list[TenantRecord]:
        await self._ensure_schema()
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(tenants_table).order_by(tenants_table.c.name))).all()
        return [TenantRecord(**row._mapping) for row in rows]

    async def jwt_config(self, tenant: str) -> JwtConfig:
        record = await self.get_tenant(tenant)
        if record is None:
            raise ValidationError(f"unknown tenant {tenant!r}")
        return record.jwt_config

    async def issue_key(self, tenant: str, role: str, label: str = "") -> str:
        """A new key for `tenant`; the plaintext is returned once and only its hash is stored."""
        scopes_for(role)
        if not isinstance(label, str) or len(label) > 64 or not label.isprintable():
            raise ValidationError(f"bad key label {label!r}", hint="use at most 64 printable characters")
        if await self._load(validate_tenant_name(tenant)) is None:
            raise ValidationError(f"unknown tenant {tenant!r}", hint="create the tenant first")
        key = new_api_key()
        async with self.engine.begin() as conn:
            await conn.execute(insert(api_keys_table).values(
                key_hash=hash_api_key(key), tenant=tenant, role=role, label=label,
                created_at=datetime.now(UTC), revoked_at=None,
            ))
        return key

    async def authenticate_key(self, key: str) -> Caller:
        """The caller a live key stands for; unknown and revoked keys get the same 401."""
        if not isinstance(key, str) or not is_api_key(key):
            raise Unauthenticated(_BAD_KEY)
        key_hash = hash_api_key(key)
        cached = self._keys.get(key_hash)
        if cached is not None:
            if cached[0] > time.monotonic():
                return cached[1]  # Caller and Principal are frozen: one instance serves every request
            del self._keys[key_hash]
        await self._ensure_schema()
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(api_keys_table).where(api_keys_table.c.key_hash == key_hash))).first()
        # Lookup is by hash in the index: timing can at most leak bits of a hash, never of a key.
        # A role removed from ROLES disables its keys rather than granting nothing silently.
        if row is None or row.revoked_at is not None or row.role not in ROLES:
            raise Unauthenticated(_BAD_KEY)
        principal = Principal(user_id=f"key:{row.label or key_hash[:8]}", tenant=row.tenant, role=row.role,
                              scopes=scopes_for(row.role))
        caller = Caller(principal=principal, kind="api_key")
        self._keys[key_hash] = (time.monotonic() + self.key_cache_ttl_s, caller)
        while len(self._keys) > self.key_cache_size:
            self._keys.popitem(last=False)  # the oldest lookup
        return caller

    async def revoke_key(self, key_or_hash: str) -> bool:
        """Revoke by plaintext key or by its hash; True if a live key was revoked."""
        key_hash = hash_api_key(key_or_hash) if is_api_key(key_or_hash) else key_or_hash
        if not _HEX64.match(key_hash):
            raise ValidationError("expected an API key or its SHA-256 hex hash")
        self._keys.pop(key_hash, None)  # from the next request on, whatever the update finds
        await self._ensure_schema()
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(api_keys_table)
                .where(api_keys_table.c.key_hash == key_hash, api_keys_table.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
        self._keys.pop(key_hash, None)  # and what a lookup racing with the update may have put back
        return result.rowcount == 1

    async def authenticate(self, token: str, tenant_hint: str | None = None) -> Caller:
        """The caller behind a bearer token: 'ck_' means an API key, anything else a tenant's JWT.

        A JWT's unverified 'iss' only picks which tenant's secret to verify with; the full check
        then confirms the issuer. With `tenant_hint` (the tenant in the URL), a credential of
        another tenant gets a 401 that does not say whether it is valid elsewhere.
        """
        if not isinstance(token, str) or not token.strip():
            raise Unauthenticated("missing credentials", hint="send 'Authorization: Bearer <token>'")
        if is_api_key(token):
            caller = await self.authenticate_key(token)
            if tenant_hint is not None and caller.tenant != tenant_hint:
                raise Unauthenticated(_BAD_KEY)
            return caller
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError:
            raise Unauthenticated("invalid token: malformed token") from None
        issuer = unverified.get("iss")
        name = issuer[len(ISSUER_PREFIX):] if isinstance(issuer, str) and issuer.startswith(ISSUER_PREFIX) else None
        if tenant_hint is not None and name is not None and name != tenant_hint:
            raise Unauthenticated("invalid token: wrong issuer")
        record = None if name is None else await self.get_tenant(name)
        if record is None:
            raise Unauthenticated("invalid token: unknown issuer")
        principal = verify_jwt(token, record.jwt_config, tenant=record.name)
        return Caller(principal=principal, kind="jwt")
