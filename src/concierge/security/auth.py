"""Who is calling the server, and what they may touch.

Two kinds of credential reach the serving layer: API keys for backends (hashed at rest, see
`hash_api_key`) and short-lived HS256 JWTs for end users, signed with a per-tenant secret.
Both end as a `Caller` wrapping a `Principal`, so the runtime never sees how a caller logged in.
Errors carry an HTTP `status` and a stable `code`, and their messages say what was wrong with
the credential without revealing secrets or anything about other tenants.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

import jwt

from ..core.errors import ConciergeError, ConfigError, ValidationError
from ..core.principal import Principal

API_KEY_PREFIX = "ck_"
_HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
_MIN_SECRET_CHARS = 32


class AuthError(ConciergeError):
    """A request cannot go on as this caller; `status` is the HTTP status to answer with."""

    status: int = 401
    code: str = "unauthenticated"

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code


class Unauthenticated(AuthError):
    """No usable credential: missing, malformed, expired, revoked or signed with the wrong key."""

    status = 401
    code = "unauthenticated"


class Forbidden(AuthError):
    """The caller is known but its role does not allow this."""

    status = 403
    code = "forbidden"


class NotFound(ConciergeError):
    """Answered for resources of other tenants too, so a 403 never confirms that they exist."""

    status: int = 404
    code: str = "not_found"


# Role -> scopes. Roles are coarse on purpose: a tenant picks a role per key or per token, and the
# executor checks tool scopes against the principal, so a new tool needs no new role.
ROLES: Mapping[str, frozenset[str]] = MappingProxyType({
    "customer": frozenset({"retail:read", "retail:write", "kb:read", "sessions:own"}),
    # Read-only: every session, ledger and trace of the tenant, but never a message, confirm or end.
    "operator": frozenset({"sessions:read", "ledger:read", "traces:read", "kb:read"}),
    "admin": frozenset({"*"}),
    # A backend that chats on behalf of its own customers: it reads and writes every session of its
    # tenant (see `session_access`), so hold its key as carefully as an admin's.
    "service": frozenset({"retail:read", "retail:write", "kb:read", "sessions:read", "sessions:write"}),
})


def scopes_for(role: str) -> frozenset[str]:
    """The scopes `role` grants; unknown roles are an error, never an empty grant."""
    try:
        return ROLES[role]
    except (KeyError, TypeError):
        raise ValidationError(f"unknown role {role!r}", hint=f"use one of {', '.join(sorted(ROLES))}") from None


# --- API keys ---------------------------------------------------------------------------------

def new_api_key() -> str:
    """A fresh key: 'ck_' plus 256 random bits, shown to its owner once."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    """SHA-256 hex of the key: what the directory stores and looks up.

    No salt and no slow KDF: those defend guessable passwords, and a key holds 256 random bits,
    so a plain hash is already infeasible to reverse, and it lets lookup be one indexed equality.
    """
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def is_api_key(token: str) -> bool:
    return token.startswith(API_KEY_PREFIX)


# --- JWT for end users ------------------------------------------------------------------------

@dataclass(frozen=True)
class JwtConfig:
    """How one tenant's end-user tokens are signed and checked (HMAC only: the secret is shared)."""

    secret: str
    issuer: str
    audience: str
    leeway_s: int = 30
    algorithms: tuple[str, ...] = ("HS256",)

    def __post_init__(self) -> None:
        if not isinstance(self.secret, str) or len(self.secret) < _MIN_SECRET_CHARS:
            raise ConfigError("the JWT secret is too short", hint=f"use at least {_MIN_SECRET_CHARS} random characters")
        for name in ("issuer", "audience"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"the JWT {name} must be a non-empty string")
        if not isinstance(self.leeway_s, int) or self.leeway_s < 0:
            raise ConfigError(f"JWT leeway must be a non-negative number of seconds, got {self.leeway_s!r}")
        algorithms = tuple(self.algorithms)
        if not algorithms or not set(algorithms) <= _HMAC_ALGORITHMS:
            # 'none' or an asymmetric algorithm with a shared secret would let anyone mint tokens.
            raise ConfigError(f"unsupported JWT algorithms {algorithms!r}", hint="use HS256, HS384 or HS512")
        object.__setattr__(self, "algorithms", algorithms)

    def __repr__(self) -> str:
        return (f"JwtConfig(secret='***', issuer={self.issuer!r}, audience={self.audience!r}, "
                f"leeway_s={self.leeway_s}, algorithms={self.algorithms!r})")


def issue_jwt(config: JwtConfig, *, subject: str, role: str = "customer", ttl_s: int = 3600,
              customer_id: str | None = None, now: float | None = None) -> str:
    """A signed end-user token; tenants' own login systems mint these, we do for tests and the demo."""
    if not isinstance(subject, str) or not subject.strip():
        raise ValidationError("the JWT subject must be a non-empty string")
    scopes_for(role)
    if ttl_s <= 0:
        raise ValidationError(f"the JWT lifetime must be positive, got {ttl_s!r}")
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {"sub": subject, "iss": config.issuer, "aud": config.audience, "iat": issued,
                              "exp": issued + int(ttl_s), "role": role}
    if customer_id is not None:
        claims["customer_id"] = customer_id
    return jwt.encode(claims, config.secret, algorithm=config.algorithms[0])


def _jwt_reason(exc: jwt.InvalidTokenError) -> str:
    """A short, safe reason: which check failed, never the token or the secret."""
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "token expired"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "bad signature"
    if isinstance(exc, jwt.InvalidAudienceError):
        return "wrong audience"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "wrong issuer"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"missing claim {exc.claim!r}"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "token not yet valid"
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return "algorithm not allowed"
    if isinstance(exc, jwt.InvalidIssuedAtError):
        return "bad issued-at time"
    if isinstance(exc, jwt.DecodeError):
        return "malformed token"
    return "invalid token"


def verify_jwt(token: str, config: JwtConfig, *, tenant: str) -> Principal:
    """The principal a valid token names; any failed check is a 401 that says which check."""
    try:
        claims = jwt.decode(
            token, config.secret, algorithms=list(config.algorithms), audience=config.audience,
            issuer=config.issuer, leeway=config.leeway_s,
            options={"require": ["exp", "iat", "sub", "iss", "aud"]},
        )
    except jwt.InvalidTokenError as exc:
        raise Unauthenticated(f"invalid token: {_jwt_reason(exc)}") from None
    sub, role, customer_id = claims.get("sub"), claims.get("role", "customer"), claims.get("customer_id")
    if not isinstance(sub, str) or not sub.strip():
        raise Unauthenticated("invalid token: bad claim 'sub'")
    if not isinstance(role, str) or role not in ROLES:
        raise Unauthenticated("invalid token: unknown role")
    if customer_id is not None and (not isinstance(customer_id, str) or not customer_id.strip()):
        raise Unauthenticated("invalid token: bad claim 'customer_id'")
    try:
        return Principal(user_id=sub, tenant=tenant, role=role, scopes=scopes_for(role), customer_id=customer_id)
    except ValidationError:
        raise Unauthenticated("invalid token: bad claims") from None


# --- Callers and access checks ----------------------------------------------------------------

@dataclass(frozen=True)
class Caller:
    """An authenticated request's principal and how it logged in (for logs and key-only routes)."""

    principal: Principal
    kind: Literal["api_key", "jwt"]

    @property
    def tenant(self) -> str:
        return self.principal.tenant

    @property
    def user_id(self) -> str:
        return self.principal.user_id

    def can(self, scope: str) -> bool:
        return self.principal.allows(scope)


def require_scope(caller: Caller, scope: str) -> None:
    """403 unless the caller's role grants `scope`."""
    if not caller.can(scope):
        raise Forbidden(f"this action needs scope {scope!r}, which role {caller.principal.role!r} lacks")


SessionAccess = Literal["read", "write"]
"""What a route does to a session: `read` (history, turns, ledger, audit, watching the stream) or
`write` (a message, a confirm or decline, ending it): anything that runs a turn or consumes state."""


def session_access(caller: Caller, session_tenant: str, session_user: str) -> SessionAccess:
    """The most the caller may do with one session; the single place that decides it.

    - another tenant's session: 404 (its existence is not revealed);
    - a customer (`sessions:own`): read and write its own sessions only, 403 for anyone else's;
    - a service key (`sessions:write`): read and write every session of its tenant, since it
      speaks for the customers of the backend that holds it;
    - an operator (`sessions:read`): read every session of its tenant, write none;
    - admin (`*`): everything in its tenant.
    """
    if caller.tenant != session_tenant:
        raise NotFound("session not found")
    if caller.can("sessions:write") or (caller.can("sessions:own") and caller.user_id == session_user):
        return "write"
    if caller.can("sessions:read"):
        return "read"
    if caller.can("sessions:own"):
        raise Forbidden("this session belongs to another user")
    raise Forbidden(f"role {caller.principal.role!r} may not read sessions")


def check_session_access(caller: Caller, session_tenant: str, session_user: str,
                         access: SessionAccess = "read") -> None:
    """404 outside the caller's tenant, 403 unless `session_access` grants `access`."""
    if access not in ("read", "write"):
        raise ValueError(f"unknown session access {access!r}")
    granted = session_access(caller, session_tenant, session_user)
    if access == "write" and granted != "write":
        raise Forbidden(f"role {caller.principal.role!r} may read this session but not write to it",
                        hint="only the session's customer, a service key or an admin may send messages, "
                             "confirm, decline or end it")
