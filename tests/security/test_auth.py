"""Roles, API key hashing, end-user JWTs and session access rules."""

from __future__ import annotations

import time

import jwt
import pytest

from concierge.core.errors import ConfigError, ValidationError
from concierge.core.principal import Principal
from concierge.security.auth import (
    ROLES,
    AuthError,
    Caller,
    Forbidden,
    JwtConfig,
    NotFound,
    Unauthenticated,
    check_session_access,
    hash_api_key,
    issue_jwt,
    new_api_key,
    require_scope,
    scopes_for,
    verify_jwt,
)

SECRET = "s" * 40


@pytest.fixture
def config() -> JwtConfig:
    return JwtConfig(secret=SECRET, issuer="concierge:acme", audience="concierge")


def caller(role: str, user: str = "u1", tenant: str = "acme") -> Caller:
    return Caller(Principal(user_id=user, tenant=tenant, role=role, scopes=scopes_for(role)), kind="jwt")


def reason_of(token: str, config: JwtConfig) -> str:
    with pytest.raises(AuthError) as info:
        verify_jwt(token, config, tenant="acme")
    assert info.value.status == 401 and info.value.code == "unauthenticated"
    return info.value.message


# --- roles and keys -------------------------------------------------------------------------

def test_roles_grant_expected_scopes() -> None:
    assert scopes_for("customer") == {"retail:read", "retail:write", "kb:read", "sessions:own"}
    assert scopes_for("operator") == {"sessions:read", "ledger:read", "traces:read", "kb:read"}
    assert scopes_for("admin") == {"*"}
    assert {"sessions:read", "sessions:write", "retail:write"} <= scopes_for("service")
    assert "sessions:read" not in scopes_for("customer")
    with pytest.raises(ValidationError, match="unknown role"):
        scopes_for("root")
    with pytest.raises(TypeError):
        ROLES["root"] = frozenset()  # type: ignore[index]


def test_api_keys_are_random_and_hashed() -> None:
    a, b = new_api_key(), new_api_key()
    assert a.startswith("ck_") and b.startswith("ck_") and a != b and len(a) > 40
    assert hash_api_key(a) == hash_api_key(a) and hash_api_key(a) != hash_api_key(b)
    assert len(hash_api_key(a)) == 64 and a not in hash_api_key(a)


# --- JWT --------------------------------------------------------------------------------------

def test_jwt_config_validates() -> None:
    with pytest.raises(ConfigError, match="too short"):
        JwtConfig(secret="short", issuer="i", audience="a")
    with pytest.raises(ConfigError, match="algorithms"):
        JwtConfig(secret=SECRET, issuer="i", audience="a", algorithms=("none",))
    with pytest.raises(ConfigError):
        JwtConfig(secret=SECRET, issuer="", audience="a")
    assert SECRET not in repr(JwtConfig(secret=SECRET, issuer="i", audience="a"))


def test_valid_jwt_gives_principal(config: JwtConfig) -> None:
    token = issue_jwt(config, subject="alice", customer_id="C-42")
    principal = verify_jwt(token, config, tenant="acme")
    assert principal == Principal(user_id="alice", tenant="acme", role="customer",
                                  scopes=scopes_for("customer"), customer_id="C-42")
    operator = verify_jwt(issue_jwt(config, subject="bob", role="operator"), config, tenant="acme")
    assert operator.role == "operator" and operator.allows("ledger:read") and operator.customer_id is None


def test_role_defaults_to_customer(config: JwtConfig) -> None:
    now = int(time.time())
    token = jwt.encode({"sub": "a", "iss": config.issuer, "aud": config.audience, "iat": now, "exp": now + 60},
                       SECRET, algorithm="HS256")
    assert verify_jwt(token, config, tenant="acme").role == "customer"


def test_expired_jwt(config: JwtConfig) -> None:
    token = issue_jwt(config, subject="alice", ttl_s=60, now=time.time() - 3600)
    assert "token expired" in reason_of(token, config)


def test_leeway_accepts_just_expired(config: JwtConfig) -> None:
    token = issue_jwt(config, subject="alice", ttl_s=60, now=time.time() - 70)
    assert verify_jwt(token, config, tenant="acme").user_id == "alice"


def test_wrong_secret(config: JwtConfig) -> None:
    other = JwtConfig(secret="x" * 40, issuer=config.issuer, audience=config.audience)
    message = reason_of(issue_jwt(other, subject="alice"), config)
    assert "bad signature" in message and SECRET not in message and "x" * 40 not in message


def test_wrong_audience(config: JwtConfig) -> None:
    other = JwtConfig(secret=SECRET, issuer=config.issuer, audience="someone-else")
    assert "wrong audience" in reason_of(issue_jwt(other, subject="alice"), config)


def test_wrong_issuer(config: JwtConfig) -> None:
    other = JwtConfig(secret=SECRET, issuer="concierge:globex", audience=config.audience)
    assert "wrong issuer" in reason_of(issue_jwt(other, subject="alice"), config)


def test_missing_sub(config: JwtConfig) -> None:
    now = int(time.time())
    token = jwt.encode({"iss": config.issuer, "aud": config.audience, "iat": now, "exp": now + 60},
                       SECRET, algorithm="HS256")
    assert "missing claim 'sub'" in reason_of(token, config)


def test_missing_exp(config: JwtConfig) -> None:
    now = int(time.time())
    token = jwt.encode({"sub": "a", "iss": config.issuer, "aud": config.audience, "iat": now},
                       SECRET, algorithm="HS256")
    assert "missing claim 'exp'" in reason_of(token, config)


def test_unknown_role(config: JwtConfig) -> None:
    now = int(time.time())
    token = jwt.encode({"sub": "a", "iss": config.issuer, "aud": config.audience, "iat": now, "exp": now + 60,
                        "role": "superuser"}, SECRET, algorithm="HS256")
    assert "unknown role" in reason_of(token, config)


def test_none_algorithm_and_garbage_rejected(config: JwtConfig) -> None:
    now = int(time.time())
    unsigned = jwt.encode({"sub": "a", "iss": config.issuer, "aud": config.audience, "iat": now,
                           "exp": now + 60, "role": "admin"}, None, algorithm="none")
    assert "algorithm not allowed" in reason_of(unsigned, config)
    assert "malformed token" in reason_of("not-a-jwt", config)


def test_issue_jwt_rejects_unknown_role(config: JwtConfig) -> None:
    with pytest.raises(ValidationError):
        issue_jwt(config, subject="a", role="root")


# --- session access ---------------------------------------------------------------------------

def test_other_tenant_gets_not_found() -> None:
    for role in ("customer", "operator", "admin", "service"):
        with pytest.raises(NotFound) as info:
            check_session_access(caller(role, tenant="globex"), "acme", "u1")
        assert info.value.status == 404 and info.value.message == "session not found"


def test_customer_sees_only_own_sessions() -> None:
    check_session_access(caller("customer", user="u1"), "acme", "u1")
    with pytest.raises(Forbidden) as info:
        check_session_access(caller("customer", user="u2"), "acme", "u1")
    assert info.value.status == 403 and "another user" in info.value.message


def test_operator_service_admin_read_any_session_of_their_tenant() -> None:
    for role in ("operator", "service", "admin"):
        assert check_session_access(caller(role, user="staff"), "acme", "u1") is None  # raises when refused


def test_require_scope() -> None:
    require_scope(caller("operator"), "ledger:read")
    with pytest.raises(Forbidden):
        require_scope(caller("customer"), "ledger:read")
    assert Unauthenticated("x").status == 401 and Forbidden("x").status == 403
