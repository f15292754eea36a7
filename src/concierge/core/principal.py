"""Who is asking: set by the serving layer from authentication, never by the model.

Tools read the principal to scope data and the executor checks its scopes before a call runs,
so nothing a model writes can widen what a session is allowed to do.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from .errors import ValidationError

_SCOPE_RE = re.compile(r"^[a-z0-9_.*-]+(:[a-z0-9_.*-]+)*$")


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: tenant, end user, role and the scopes the role grants.

    `customer_id` is the business's own id of the customer this session acts for. A logged-in
    caller arrives with it; an anonymous chat gets it when an identity check succeeds (the
    runtime binds it, see `ToolContext.bind_customer`), and from then on tools act as that
    customer whatever ids the model writes.
    """

    user_id: str
    tenant: str = "default"
    role: str = "customer"
    scopes: frozenset[str] = field(default_factory=frozenset)
    customer_id: str | None = None

    def __post_init__(self) -> None:
        for name in ("user_id", "tenant", "role"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValidationError(f"principal {name} must be a non-empty string, got {value!r}")
        if self.customer_id is not None and (not isinstance(self.customer_id, str) or not self.customer_id.strip()):
            raise ValidationError(f"principal customer_id must be a non-empty string or None, got {self.customer_id!r}")
        scopes = frozenset(self.scopes)
        for scope in scopes:
            if not isinstance(scope, str) or not _SCOPE_RE.match(scope):
                raise ValidationError(
                    f"invalid scope {scope!r}", hint="scopes look like 'refund:write' (lowercase, ':'-separated)"
                )
        object.__setattr__(self, "scopes", scopes)

    def allows(self, scope: str) -> bool:
        """True if a granted scope covers `scope`; 'refund:*' covers 'refund:write', '*' covers all."""
        if scope in self.scopes or "*" in self.scopes:
            return True
        parts = scope.split(":")
        return any(":".join(parts[:i]) + ":*" in self.scopes for i in range(1, len(parts)))

    def missing(self, required: Iterable[str]) -> list[str]:
        return [s for s in required if not self.allows(s)]

    def acting_for(self, customer_id: str | None) -> Principal:
        """This caller, bound to `customer_id` (unchanged when None or already bound to it)."""
        if customer_id is None or customer_id == self.customer_id:
            return self
        return replace(self, customer_id=customer_id)

    def to_dict(self) -> dict[str, object]:
        return {"user_id": self.user_id, "tenant": self.tenant, "role": self.role, "scopes": sorted(self.scopes),
                "customer_id": self.customer_id}


def as_principal(value: Principal | str) -> Principal:
    """A bare string names an end user with no scopes: enough to chat and read, not to write."""
    if isinstance(value, Principal):
        return value
    if isinstance(value, str) and value.strip():
        return Principal(user_id=value)
    raise ValidationError("the principal is empty", hint="pass a Principal or a non-empty user id")
