"""Deterministic policy caps, enforced at the tool layer before any effect.

The prompt is not a control: a model talked into "refund $5,000" still calls a tool, and the
call is where the limit holds. `CapsCheck` wraps the transactional executor right after the
scope check (`TransactionalExecutor(checks=[caps_check(...)])`): for a tool with a `Measure`
it works out what the call would do in cap terms (an `Exposure`: refund, discount, payment
method), compares that with the tenant's `PolicyCaps`, and refuses a call over a cap without
asking the customer to confirm it, recording it or sending it. A measure that cannot tell (the
order is not found, the store is down) refuses too: fail closed.

Refunds are counted in a `UsageStore` per tenant, customer and UTC day and per order: reserved
atomically against both refund caps before the call runs, committed when it succeeded (or may
have: an unknown outcome), released otherwise or when a saga compensates it. `InMemoryUsage` lasts
as long as the process; `SqlUsage` (the sessions' database) and `RedisUsage` are shared by every
worker and survive restarts (`concierge.guardrails.usage`, docs/guardrails-caps.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import math
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from ..core.clock import Clock, SystemClock
from ..core.errors import ConfigError
from ..core.events import EventType
from ..core.messages import ToolCall
from ..tools.executor import ToolExecutor
from ..tools.ledger.base import AuditRecord, Ledger
from ..tools.outcome import ToolOutcome, refused
from ..tools.tool import Tool, ToolContext
from .usage import Claim, InMemoryUsage, Reservation, UsageStore

GUARDRAIL = "policy_cap"
_KIND_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


# --------------------------------------------------------------------------------------------
# Configuration


class PolicyCaps(BaseModel):
    """The limits one tenant's agent works under; a field left out (None) is no cap.

    Amounts are US dollars, `max_discount_pct` is a percentage (15 means 15 %), and
    `allowed_payment_methods` names payment method kinds (`gift_card`, `credit_card`, `paypal`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    max_refund_per_order_usd: float | None = Field(None, ge=0)
    max_refund_per_customer_per_day_usd: float | None = Field(None, ge=0)
    max_discount_pct: float | None = Field(None, ge=0, le=100)
    allowed_payment_methods: frozenset[str] | None = None

    @field_validator("allowed_payment_methods")
    @classmethod
    def _kinds(cls, value: frozenset[str] | None) -> frozenset[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("an empty set would refuse every payment; leave the key out for no cap")
        bad = sorted(kind for kind in value if not _KIND_RE.match(kind))
        if bad:
            raise ValueError(f"payment method kinds look like 'gift_card' or 'paypal' (lowercase), got {bad}")
        return value

    @property
    def empty(self) -> bool:
        """No cap is set: nothing to measure."""
        return all(getattr(self, name) is None for name in type(self).model_fields)


class TenantCaps(BaseModel):
    """Caps per tenant: `default` for every tenant, `tenants` overriding the fields they name.

    ```toml
    [caps.default]
    max_refund_per_order_usd = 500
    allowed_payment_methods = ["gift_card", "credit_card", "paypal"]

    [caps.tenants.acme]
    max_refund_per_order_usd = 100    # acme: a lower per-order cap, the rest as the default
    ```
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    default: PolicyCaps = PolicyCaps()
    tenants: dict[str, PolicyCaps] = {}
    _resolved: dict[str, PolicyCaps] = PrivateAttr(default_factory=dict)

    @field_validator("tenants")
    @classmethod
    def _tenant_names(cls, value: dict[str, PolicyCaps]) -> dict[str, PolicyCaps]:
        for name in value:
            if not name.strip():
                raise ValueError("a tenant name must not be empty")
        return value

    def model_post_init(self, context: Any, /) -> None:
        base = self.default.model_dump()
        for name, caps in self.tenants.items():
            self._resolved[name] = PolicyCaps(**{**base, **caps.model_dump(exclude_unset=True)})

    def for_tenant(self, tenant: str) -> PolicyCaps:
        return self._resolved.get(tenant, self.default)


def load_caps(data: Mapping[str, Any] | TenantCaps | PolicyCaps | None) -> TenantCaps:
    """Caps from a config mapping (a `[caps]` TOML section), raising `ConfigError` naming each bad key.

    A mapping without `default`/`tenants` keys is one `PolicyCaps` for every tenant."""
    if data is None:
        return TenantCaps()
    if isinstance(data, TenantCaps):
        return data
    if isinstance(data, PolicyCaps):
        return TenantCaps(default=data)
    if not isinstance(data, Mapping):
        raise ConfigError(f"caps must be a table/mapping, got {type(data).__name__}")
    try:
        if data and not {"default", "tenants"} & set(data):
            return TenantCaps(default=PolicyCaps.model_validate(dict(data)))
        return TenantCaps.model_validate(dict(data))
    except pydantic.ValidationError as exc:
        problems = "; ".join(f"caps.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid policy caps: {problems}",
                          hint="see docs/guardrails-caps.md for the keys and what they allow") from None


# --------------------------------------------------------------------------------------------
# What a call would do


class MeasureError(Exception):
    """A measure could not work out what a call would do; the call is refused (fail closed)."""


@dataclass(frozen=True, slots=True)
class Exposure:
    """What a call would do, in cap terms, worked out before it runs.

    `refund_usd`: money back to the customer; `discount_pct`: a price reduction in percent;
    `payment_method`: the kind of payment method the money moves through (`payment_methods`
    names further kinds when it moves through several); `order_id`: the order it concerns.
    """

    refund_usd: float | None = None
    discount_pct: float | None = None
    payment_method: str | None = None
    payment_methods: tuple[str, ...] = ()
    order_id: str | None = None

    def __post_init__(self) -> None:
        for name in ("refund_usd", "discount_pct"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                      or not math.isfinite(value) or value < 0):
                raise MeasureError(f"{name} must be a finite number >= 0, got {value!r}")

    @property
    def kinds(self) -> tuple[str, ...]:
        """Every payment method kind involved, each once."""
        found = [self.payment_method, *self.payment_methods]
        return tuple(dict.fromkeys(k for k in found if k))


# (normalised arguments, context) -> Exposure, computed without any effect.
Measure = Callable[[dict[str, Any], ToolContext], Awaitable[Exposure] | Exposure]


def from_arguments(*, refund_usd: str | None = None, discount_pct: str | None = None,
                   payment_method: str | None = None, order_id: str | None = None) -> Measure:
    """A measure reading the exposure straight from the call's arguments (names of the arguments)."""

    def number(arguments: dict[str, Any], name: str | None) -> float | None:
        if name is None:
            return None
        value = arguments.get(name)
        if value is None:
            raise MeasureError(f"the call has no {name!r} argument")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise MeasureError(f"argument {name!r} is not a number: {value!r}") from None

    def measure(arguments: dict[str, Any], context: ToolContext) -> Exposure:
        method = None if payment_method is None else arguments.get(payment_method)
        order = None if order_id is None else arguments.get(order_id)
        return Exposure(refund_usd=number(arguments, refund_usd), discount_pct=number(arguments, discount_pct),
                        payment_method=None if method is None else str(method),
                        order_id=None if order is None else str(order))

    return measure


# --------------------------------------------------------------------------------------------
# The check


@dataclass(frozen=True, slots=True)
class Violation:
    cap: str
    limit: float | list[str] | None
    amount: float | str | None
    message: str


def _cents(usd: float) -> int:
    return round(usd * 100)


def _usd(cents: int) -> str:
    return f"${cents / 100:,.2f}"


_AFTER = (" Do not retry it, split it or try another way; tell the customer this needs a person's "
          "approval and offer to hand them to a human agent.")
# A saga runs a step under confirmation id `<anchor>#<i>` and its compensation under `<anchor>#<i>/undo`
# (tools/saga.py): a compensation that succeeded releases what the step had counted.
_UNDO = "/undo"
# Outcomes after which the money may have moved: the reservation is committed; any other releases it.
_COUNTED = frozenset({"succeeded", "unknown"})


def _ref(context: ToolContext, confirmation_id: str) -> str:
    """Names a call run under a confirmation id set by trusted code, so its compensation can find it."""
    material = json.dumps([context.principal.tenant, context.session_id, confirmation_id])
    return hashlib.sha256(material.encode()).hexdigest()[:40]


class CapsCheck:
    """Refuses a call whose measured exposure is over the tenant's caps; other calls pass through.

    A refund is reserved in the `UsageStore` before the call runs, atomically against both refund
    caps, then committed (succeeded, unknown) or released (anything else) once the outcome is known."""

    def __init__(self, inner: ToolExecutor, caps: TenantCaps | PolicyCaps | Mapping[str, Any],
                 measures: Mapping[str, Measure], *, ledger: Ledger | None = None, clock: Clock | None = None,
                 usage: UsageStore | None = None) -> None:
        self.inner = inner
        self.caps = load_caps(caps)
        self.measures = dict(measures)
        self.audit = ledger
        self.clock = clock or SystemClock()
        self.usage: UsageStore = usage if usage is not None else InMemoryUsage(clock=self.clock)

    async def execute(self, tool: Tool, call: ToolCall, context: ToolContext) -> ToolOutcome:
        measure = self.measures.get(tool.name)
        caps = self.caps.for_tenant(context.principal.tenant)
        if caps.empty:
            return await self.inner.execute(tool, call, context)
        if measure is None:
            outcome = await self.inner.execute(tool, call, context)
        else:
            outcome = await self._checked(tool, call, context, measure, caps)
        undo = context.confirmation_id
        if undo is not None and undo.endswith(_UNDO) and outcome.status == "succeeded":
            await self.usage.release(ref=_ref(context, undo[: -len(_UNDO)]))
        return outcome

    async def _checked(self, tool: Tool, call: ToolCall, context: ToolContext, measure: Measure,
                       caps: PolicyCaps) -> ToolOutcome:
        tenant = context.principal.tenant
        customer = context.customer_id or context.principal.user_id
        try:
            found = measure(call.arguments, context)
            exposure = await found if inspect.isawaitable(found) else found
            if not isinstance(exposure, Exposure):
                raise MeasureError(f"the measure returned {type(exposure).__name__}, not an Exposure")
        except Exception as exc:  # noqa: BLE001 - fail closed: what cannot be measured is not done
            reason = str(exc) or type(exc).__name__
            message = (f"Not done: {tool.name} could not be checked against this store's limits "
                       f"({reason}), so it was not carried out.{_AFTER}")
            return await self._refuse(tool, call, context, Violation("measure_failed", None, None, message))
        reservation: str | None = None
        refund = _cents(exposure.refund_usd or 0.0)
        if refund > 0:
            ref = None if context.confirmation_id is None else _ref(context, context.confirmation_id)
            claim = Claim(tenant, customer, self.clock.now().date(), exposure.order_id, refund, ref)
            found_room = await self.usage.reserve(claim, order_limit=_limit(caps.max_refund_per_order_usd),
                                                  day_limit=_limit(caps.max_refund_per_customer_per_day_usd))
            if found_room.id is None:
                return await self._refuse(tool, call, context, _refund_violation(caps, found_room, refund, tool.name))
            reservation = found_room.id
        violation = _other_violation(caps, exposure, tool.name)
        if violation is not None:
            if reservation is not None:
                await self.usage.release(reservation)
            return await self._refuse(tool, call, context, violation)
        if reservation is None:
            return await self.inner.execute(tool, call, context)
        try:
            outcome = await self.inner.execute(tool, call, context)
        except BaseException:  # cancelled or crashed mid-call: the money may have moved, keep it counted
            await asyncio.shield(self.usage.commit(reservation, None))
            raise
        if outcome.status in _COUNTED:
            await self.usage.commit(reservation, outcome.key)
        else:  # failed, not applied, refused further down, or waiting for the customer's confirmation
            await self.usage.release(reservation)
        return outcome

    async def _refuse(self, tool: Tool, call: ToolCall, context: ToolContext, violation: Violation) -> ToolOutcome:
        details = {"cap": violation.cap, "limit": violation.limit, "amount": violation.amount}
        if self.audit is not None:
            await self.audit.audit(AuditRecord(self.clock.now(), context.session_id, tool.name, call.arguments,
                                               context.principal.to_dict(), GUARDRAIL, violation.message,
                                               dict(details)))
        if context.emit is not None:
            await context.emit(EventType.GUARDRAIL_TRIGGERED, guardrail=GUARDRAIL, tool=tool.name, **details)
        return refused(GUARDRAIL, violation.message, **details)



def _limit(usd: float | None) -> int | None:
    return None if usd is None else _cents(usd)


def _refund_violation(caps: PolicyCaps, found: Reservation, refund: int, tool: str) -> Violation:
    """The message for a refund the usage store found no room for (the per-order cap first)."""
    if found.over == "order":
        limit = _cents(caps.max_refund_per_order_usd or 0.0)
        earlier = found.order_spent
        so_far = f" ({_usd(earlier)} already refunded on it)" if earlier else ""
        return Violation("max_refund_per_order_usd", limit / 100, (earlier + refund) / 100,
                         f"Not done: {tool} would refund {_usd(refund)} on one order{so_far}, over "
                         f"this store's limit of {_usd(limit)} per order.{_AFTER}")
    limit = _cents(caps.max_refund_per_customer_per_day_usd or 0.0)
    earlier = found.day_spent
    return Violation("max_refund_per_customer_per_day_usd", limit / 100, (earlier + refund) / 100,
                     f"Not done: {tool} would refund {_usd(refund)}; with {_usd(earlier)} already "
                     f"refunded to this customer today that is {_usd(earlier + refund)}, over this "
                     f"store's limit of {_usd(limit)} per customer per day.{_AFTER}")


def _other_violation(caps: PolicyCaps, exposure: Exposure, tool: str) -> Violation | None:
    """The caps that need no running total: discount and payment method kinds."""
    discount, most = exposure.discount_pct, caps.max_discount_pct
    if discount is not None and most is not None and discount > most:
        return Violation("max_discount_pct", most, discount,
                         f"Not done: {tool} would give a {discount:g}% discount, over this store's limit "
                         f"of {most:g}%.{_AFTER}")
    if caps.allowed_payment_methods is not None:
        disallowed = [k for k in exposure.kinds if k not in caps.allowed_payment_methods]
        if disallowed:
            allowed = sorted(caps.allowed_payment_methods)
            return Violation("allowed_payment_methods", allowed, disallowed[0],
                             f"Not done: {tool} would move money through a {disallowed[0]} payment method; "
                             f"this store allows only {', '.join(allowed)} here.{_AFTER}")
    return None


def caps_check(caps: TenantCaps | PolicyCaps | Mapping[str, Any], measures: Mapping[str, Measure], *,
               ledger: Ledger | None = None, clock: Clock | None = None,
               usage: UsageStore | None = None) -> Callable[[ToolExecutor], CapsCheck]:
    """A wrapper for `TransactionalExecutor(checks=[...])`; pass the executor's own ledger for the audit.

    The caps are validated here, at start-up, not at the first call."""
    resolved = load_caps(caps)
    return lambda inner: CapsCheck(inner, resolved, measures, ledger=ledger, clock=clock, usage=usage)


def merge_measures(*groups: Mapping[str, Measure] | Iterable[tuple[str, Measure]]) -> dict[str, Measure]:
    """Several tool name → measure mappings as one; a name measured twice is a configuration error."""
    merged: dict[str, Measure] = {}
    for group in groups:
        for name, measure in (group.items() if isinstance(group, Mapping) else group):
            if name in merged:
                raise ConfigError(f"tool {name!r} has two measures", hint="give each tool one measure")
            merged[name] = measure
    return merged


__all__ = [
    "GUARDRAIL", "CapsCheck", "Exposure", "InMemoryUsage", "Measure", "MeasureError", "PolicyCaps", "TenantCaps",
    "UsageStore", "Violation", "caps_check", "from_arguments", "load_caps", "merge_measures",
]
