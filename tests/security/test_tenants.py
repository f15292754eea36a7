"""The tenant directory on a SQLite file: tenants, API keys and bearer-token routing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from concierge.core.errors import ValidationError
from concierge.security.auth import AuthError, JwtConfig, hash_api_key, issue_jwt
from concierge.security.tenants import TenantDirectory


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "sub" / "tenants.db"


@pytest.fixture
async def directory(db_path: Path) -> AsyncIterator[TenantDirectory]:
    store = TenantDirectory(f"sqlite+aiosqlite:///{db_path}")
    yield store
    await store.close()


async def expect_401(awaitable: object) -> str:
    with pytest.raises(AuthError) as info:
        await awaitable  # type: ignore[misc]
    assert info.value.status == 401
    return info.value.message


async def test_create_get_list(directory: TenantDirectory) -> None:
    acme = await directory.create_tenant("acme", rate=(5.0, 10))
    assert acme.jwt_issuer == "concierge:acme" and acme.jwt_audience == "concierge"
    assert acme.rate == (5.0, 10) and acme.user_rate == (2.0, 10)
    assert len(acme.jwt_secret) >= 32 and len(acme.webhook_secret) >= 32 and acme.jwt_secret != acme.webhook_secret
    assert acme.jwt_secret not in repr(acme) and acme.webhook_secret not in repr(acme)
    await directory.create_tenant("globex")
    assert await directory.get_tenant("acme") == acme
    assert await directory.get_tenant("nobody") is None
    assert [t.name for t in await directory.list_tenants()] == ["acme", "globex"]
    assert (await directory.jwt_config("acme")).secret == acme.jwt_secret


async def test_records_survive_reopen(directory: TenantDirectory, db_path: Path) -> None:
    acme = await directory.create_tenant("acme")
    other = TenantDirectory(f"sqlite+aiosqlite:///{db_path}")
    try:
        assert await other.get_tenant("acme") == acme
    finally:
        await other.close()


async def test_duplicate_and_bad_names(directory: TenantDirectory) -> None:
    await directory.create_tenant("acme")
    with pytest.raises(ValidationError, match="already exists"):
        await directory.create_tenant("acme")
    for bad in ("", "Acme", "-acme", "a" * 64, "ac me", "acme/x", "émile"):
        with pytest.raises(ValidationError, match="invalid tenant name"):
            await directory.create_tenant(bad)
    with pytest.raises(ValidationError):
        await directory.create_tenant("ok", rate=(0.0, 10))
    await directory.create_tenant("a" * 63)


async def test_issue_authenticate_revoke(directory: TenantDirectory) -> None:
    await directory.create_tenant("acme")
    key = await directory.issue_key("acme", "service", label="backend")
    caller = await directory.authenticate_key(key)
    assert caller.kind == "api_key" and caller.tenant == "acme"
    assert caller.principal.user_id == "key:backend" and caller.principal.role == "service"
    assert caller.can("sessions:write") and not caller.can("ledger:read")

    unlabeled = await directory.issue_key("acme", "operator")
    assert (await directory.authenticate_key(unlabeled)).principal.user_id == f"key:{hash_api_key(unlabeled)[:8]}"

    assert await directory.revoke_key(key) is True
    assert await directory.revoke_key(key) is False
    revoked = await expect_401(directory.authenticate_key(key))
    unknown = await expect_401(directory.authenticate_key("ck_" + "A" * 43))
    assert revoked == unknown  # no hint whether a key ever existed

    assert await directory.revoke_key(hash_api_key(unlabeled)) is True
    await expect_401(directory.authenticate_key(unlabeled))


async def test_issue_key_rejects_unknown_tenant_and_role(directory: TenantDirectory) -> None:
    await directory.create_tenant("acme")
    with pytest.raises(ValidationError, match="unknown tenant"):
        await directory.issue_key("globex", "service")
    with pytest.raises(ValidationError, match="unknown role"):
        await directory.issue_key("acme", "root")


async def test_plaintext_key_never_stored(directory: TenantDirectory, db_path: Path) -> None:
    await directory.create_tenant("acme")
    keys = [await directory.issue_key("acme", role) for role in ("service", "admin", "operator")]
    await directory.close()
    raw = b"".join(p.read_bytes() for p in db_path.parent.iterdir())  # the file plus any WAL
    for key in keys:
        assert key.encode() not in raw and key[3:].encode() not in raw
        assert hash_api_key(key).encode() in raw


async def test_authenticate_routes_keys_and_jwts(directory: TenantDirectory) -> None:
    acme = await directory.create_tenant("acme")
    await directory.create_tenant("globex")
    key = await directory.issue_key("acme", "admin")
    by_key = await directory.authenticate(key)
    assert by_key.kind == "api_key" and by_key.tenant == "acme" and by_key.can("anything:at:all")

    token = issue_jwt(acme.jwt_config, subject="alice", customer_id="C-1")
    by_jwt = await directory.authenticate(token)
    assert by_jwt.kind == "jwt" and by_jwt.tenant == "acme" and by_jwt.principal.user_id == "alice"
    assert by_jwt.principal.customer_id == "C-1" and by_jwt.principal.role == "customer"

    assert (await directory.authenticate(token, tenant_hint="acme")).tenant == "acme"
    await expect_401(directory.authenticate(token, tenant_hint="globex"))
    key_elsewhere = await expect_401(directory.authenticate(key, tenant_hint="globex"))
    assert key_elsewhere == await expect_401(directory.authenticate("ck_nope"))


async def test_jwt_signed_with_another_tenants_secret(directory: TenantDirectory) -> None:
    acme = await directory.create_tenant("acme")
    globex = await directory.create_tenant("globex")
    forged = JwtConfig(secret=globex.jwt_secret, issuer=acme.jwt_issuer, audience=acme.jwt_audience)
    assert "bad signature" in await expect_401(directory.authenticate(issue_jwt(forged, subject="mallory")))


async def test_unknown_issuer_and_garbage(directory: TenantDirectory) -> None:
    await directory.create_tenant("acme")
    for issuer in ("concierge:nobody", "someone-else", "concierge:BAD NAME"):
        config = JwtConfig(secret="k" * 40, issuer=issuer, audience="concierge")
        assert "unknown issuer" in await expect_401(directory.authenticate(issue_jwt(config, subject="x")))
    assert "malformed" in await expect_401(directory.authenticate("garbage"))
    assert "missing credentials" in await expect_401(directory.authenticate(""))


async def test_tenant_cache_avoids_db(directory: TenantDirectory) -> None:
    acme = await directory.create_tenant("acme")
    token = issue_jwt(acme.jwt_config, subject="alice")
    await directory.authenticate(token)
    await directory.engine.dispose()
    calls = 0
    original = directory._load

    async def counting(name: str):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        return await original(name)

    directory._load = counting  # type: ignore[method-assign]
    for _ in range(5):
        await directory.authenticate(token)
    assert calls == 0
    directory._cache.clear()
    await directory.authenticate(token)
    assert calls == 1
    directory.cache_ttl_s = 0.0
    directory._cache.clear()
    await directory.authenticate(token)
    await directory.authenticate(token)
    assert calls == 3


async def test_key_cache_revocation_elsewhere_holds_within_ttl(directory: TenantDirectory, db_path: Path) -> None:
    """A live key is remembered briefly; a revocation by another process holds once that time is up."""
    await directory.create_tenant("acme")
    key = await directory.issue_key("acme", "service", label="backend")
    directory.key_cache_ttl_s = 0.2
    first = await directory.authenticate_key(key)
    other = TenantDirectory(f"sqlite+aiosqlite:///{db_path}")
    try:
        assert await other.revoke_key(key) is True
    finally:
        await other.close()
    assert await directory.authenticate_key(key) is first  # within the TTL: the remembered caller
    await asyncio.sleep(0.25)
    await expect_401(directory.authenticate_key(key))


async def test_key_cache_keeps_only_live_keys_and_is_bounded(directory: TenantDirectory) -> None:
    await directory.create_tenant("acme")
    directory.key_cache_size = 2
    keys = [await directory.issue_key("acme", "service", label=f"k{i}") for i in range(3)]
    for key in keys:
        await directory.authenticate_key(key)
    assert len(directory._keys) == 2 and hash_api_key(keys[0]) not in directory._keys
    for made_up in ("ck_" + "x" * 43, "ck_" + "y" * 43):
        await expect_401(directory.authenticate_key(made_up))
    assert set(directory._keys) == {hash_api_key(k) for k in keys[1:]}
    assert (await directory.authenticate_key(keys[0])).principal.user_id == "key:k0"  # looked up again


async def test_expired_tenant_record_is_loaded_once_for_concurrent_requests(directory: TenantDirectory) -> None:
    acme = await directory.create_tenant("acme")
    directory._cache.clear()
    loads = 0
    load = directory._load

    async def counted(name: str) -> object:
        nonlocal loads
        loads += 1
        return await load(name)

    directory._load = counted  # type: ignore[method-assign]
    records = await asyncio.gather(*(directory.get_tenant("acme") for _ in range(50)))
    assert all(r == acme for r in records) and loads == 1
    assert await directory.get_tenant("nobody") is None and await directory.get_tenant("nobody") is None
    assert loads == 3  # an unknown tenant is never cached


async def test_a_cancelled_caller_does_not_cancel_the_shared_load(directory: TenantDirectory) -> None:
    acme = await directory.create_tenant("acme")
    directory._cache.clear()
    first = asyncio.ensure_future(directory.get_tenant("acme"))
    second = asyncio.ensure_future(directory.get_tenant("acme"))
    await asyncio.sleep(0)
    first.cancel()
    assert await second == acme
    with pytest.raises(asyncio.CancelledError):
        await first
