"""Erasure of one end user (GDPR art. 17) across every store, with a receipt.

Every store that can hold a user's data is an `ErasableStore`: it counts what it holds of the
user and erases it. `erase_user` counts every store first, erases store by store, counts again
(each must reach 0) and returns an `ErasureReceipt`. A store that fails does not stop the others;
the receipt records the failure and `ErasureFailed` (carrying the receipt) is raised at the end, so
nothing is skipped silently. A second run erases nothing and succeeds: erasure is idempotent.

`identifiers` are the user's id plus what else names them (emails, phones, names): stores match
free text (payloads, tool arguments) on them, with boundaries, so "u1" does not match "u10" and a
phone matches however it is punctuated.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from ..core.errors import ConciergeError, ValidationError

TOMBSTONE = "[ERASED]"

_PHONE_LIKE = re.compile(r"^\+?[\d\s().-]{7,}$")


@runtime_checkable
class ErasableStore(Protocol):
    """A store that can say how much it holds of a user and erase it."""

    name: str

    async def count(self, tenant: str, user_id: str, identifiers: Sequence[str]) -> int: ...

    async def erase(self, tenant: str, user_id: str, identifiers: Sequence[str]) -> int: ...


class IdentifierSource(Protocol):
    """Somewhere the user's other identifiers are known (a business's customer record)."""

    async def identifiers(self, tenant: str, user_id: str) -> Sequence[str]: ...


def normalize_identifiers(user_id: str, identifiers: Iterable[str] = ()) -> tuple[str, ...]:
    """The user id first, then each other identifier once (stripped, case-insensitively unique)."""
    seen: set[str] = set()
    out: list[str] = []
    for value in (user_id, *identifiers):
        if not isinstance(value, str):
            raise ValidationError(f"identifiers must be strings, got {value!r}")
        value = value.strip()
        if value and value.lower() not in seen:
            seen.add(value.lower())
            out.append(value)
    return tuple(out)


def _pattern(identifier: str) -> str:
    if _PHONE_LIKE.match(identifier) and sum(ch.isdigit() for ch in identifier) >= 7:
        digits = [ch for ch in identifier if ch.isdigit()]
        # Any punctuation between the digits: "+1 (555) 010-0199" matches "15550100199".
        return r"(?<!\d)" + r"[\s().+-]*".join(digits) + r"(?!\d)"
    return r"(?<![\w.@+-])" + re.escape(identifier) + r"(?![\w@-])"


class Matcher:
    """Finds mentions of a user's identifiers in text or JSON-able values."""

    def __init__(self, identifiers: Sequence[str]) -> None:
        self.identifiers = tuple(i for i in identifiers if i)
        self._regex = (re.compile("|".join(_pattern(i) for i in self.identifiers), re.IGNORECASE)
                       if self.identifiers else None)

    def mentions(self, value: Any) -> bool:
        if self._regex is None or value is None:
            return False
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if not isinstance(value, str):
            value = json.dumps(value, ensure_ascii=False, default=str)
        return self._regex.search(value) is not None


def hashed(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:16]


class StoreResult(BaseModel):
    """One store's part of the receipt; `after` must be 0 and `error` None for the store to be clean."""

    store: str
    before: int | None = None
    erased: int | None = None
    after: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.after == 0


class ErasureReceipt(BaseModel):
    """What an erasure found and removed, store by store; JSON-serialisable (`model_dump_json`)."""

    tenant: str
    user_id: str
    identifiers: int = Field(description="how many identifiers were matched (their values are not kept)")
    started_at: datetime
    finished_at: datetime
    stores: list[StoreResult]

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.stores)

    @property
    def erased(self) -> int:
        return sum(s.erased or 0 for s in self.stores)

    def store(self, name: str) -> StoreResult:
        for result in self.stores:
            if result.store == name:
                return result
        raise KeyError(name)


class ErasureFailed(ConciergeError):
    """A store could not be counted or erased, or still holds the user's data; see `receipt`."""

    def __init__(self, receipt: ErasureReceipt) -> None:
        bad = [f"{s.store}: {s.error or f'{s.after} left'}" for s in receipt.stores if not s.ok]
        super().__init__(f"erasure of the user incomplete in {len(bad)} store(s): " + "; ".join(bad),
                         hint="fix the cause and run the erasure again (it is idempotent)")
        self.receipt = receipt


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


async def collect_identifiers(tenant: str, user_id: str, sources: Iterable[IdentifierSource] = (),
                              identifiers: Iterable[str] = ()) -> tuple[str, ...]:
    found: list[str] = list(identifiers)
    for source in sources:
        found.extend(await source.identifiers(tenant, user_id))
    return normalize_identifiers(user_id, found)


async def count_user(tenant: str, user_id: str, stores: Sequence[ErasableStore], *,
                     identifiers: Iterable[str] = ()) -> dict[str, int | str]:
    """What each store holds of the user (an error's text where a store could not say): erases nothing."""
    ids = normalize_identifiers(_check(tenant, user_id), identifiers)
    out: dict[str, int | str] = {}
    for store in stores:
        try:
            out[store.name] = await store.count(tenant, user_id, ids)
        except Exception as exc:  # noqa: BLE001 - reported, not hidden
            out[store.name] = _describe(exc)
    return out


def _check(tenant: str, user_id: str) -> str:
    for name, value in (("tenant", tenant), ("user id", user_id)):
        if not isinstance(value, str) or not value.strip():
            raise ValidationError(f"erasure needs a {name}, got {value!r}")
    return user_id


async def erase_user(tenant: str, user_id: str, stores: Sequence[ErasableStore], *,
                     identifiers: Iterable[str] = (), sources: Iterable[IdentifierSource] = (),
                     now: Callable[[], datetime] | None = None) -> ErasureReceipt:
    """Erase the user from every store; the receipt, or `ErasureFailed` (with it) if any store failed.

    Counts every store BEFORE, then erases store by store in the order given (put the stores that
    tell which sessions are the user's last), then counts every store AFTER.
    """
    _check(tenant, user_id)
    names = [store.name for store in stores]
    if len(set(names)) != len(names):
        raise ValidationError(f"store names must be unique, got {names}")
    clock = now or (lambda: datetime.now(UTC))
    started = clock()
    ids = await collect_identifiers(tenant, user_id, sources, identifiers)
    results = [StoreResult(store=store.name) for store in stores]
    for store, result in zip(stores, results, strict=True):
        try:
            result.before = await store.count(tenant, user_id, ids)
        except Exception as exc:  # noqa: BLE001 - a failing store is reported; the others still run
            result.error = f"count before: {_describe(exc)}"
    for store, result in zip(stores, results, strict=True):
        try:
            result.erased = await store.erase(tenant, user_id, ids)
        except Exception as exc:  # noqa: BLE001
            result.error = (result.error + "; " if result.error else "") + f"erase: {_describe(exc)}"
    for store, result in zip(stores, results, strict=True):
        try:
            result.after = await store.count(tenant, user_id, ids)
        except Exception as exc:  # noqa: BLE001
            result.error = (result.error + "; " if result.error else "") + f"count after: {_describe(exc)}"
            continue
        if result.after and result.error is None:
            result.error = f"{result.after} item(s) of the user remain after erasure"
    receipt = ErasureReceipt(tenant=tenant, user_id=user_id, identifiers=len(ids), started_at=started,
                             finished_at=clock(), stores=results)
    if not receipt.ok:
        raise ErasureFailed(receipt)
    return receipt
