"""Retail stores of any size, in tau2-bench's JSON shape, generated from a seed.

The same arguments always give the same store, byte for byte once written: every draw comes
from one `random.Random(seed)`, taken in a fixed order (products, then users, then orders), and
nothing depends on time, hashing or set order. Because products and users are drawn before any
order, the catalogue depends only on the seed, and a store's first N users are the same whatever
the number of users asked for.

Every record is consistent with the store's policy, so that an agent working on a generated
store meets the same situations as on a hand-made one:
- each order belongs to a generated user, who lists it, and was paid with one of that user's
  payment methods; its items are existing variants, at the variant's price;
- money is kept in cents and written as floats with at most two decimals;
- the payment history nets to the items' total (a cancelled order is paid back in full);
- orders that never shipped (pending, modified while pending, cancelled) have no shipments;
  shipped ones have one shipment, sometimes two, covering every item exactly once;
- returns, exchanges, cancellations and item changes carry the fields the store's tools write
  when they make those changes.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ...core.errors import ValidationError
from .drawing import STATUS_WEIGHTS, Progress, Store, draw_store
from .vocabulary import CATALOGUE

__all__ = [
    "MAX_ORDERS", "MAX_USERS", "STATUS_WEIGHTS", "Progress", "Store", "check_arguments", "generate_store",
    "write_store",
]

MAX_USERS = 1_000_000  # user and payment ids stay short and unique well below this
MAX_ORDERS = 1_000_000  # order ids have seven digits: keep them sparse enough to draw quickly
_WRITE_BATCH = 16384  # encoder chunks joined per write: the pure-Python encoder yields tiny ones


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic collection while drawing: the records hold no cycles, and the collector's passes
    over millions of fresh dicts would otherwise take about half of the time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _check_count(name: str, value: object, low: int, high: int, hint: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{name} must be a whole number, got {value!r}", hint=hint)
    if not low <= value <= high:
        raise ValidationError(f"{name} must be between {low:,} and {high:,}, got {value:,}", hint=hint)
    return value


def check_arguments(*, users: int, orders: int, seed: int, products: int | None = None) -> None:
    """Raises `ValidationError` for arguments `generate_store` refuses, before any work starts."""
    _check_count("users", users, 1, MAX_USERS, "a store needs at least one user to own its orders")
    _check_count("orders", orders, 0, MAX_ORDERS, "ask for zero or more orders")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValidationError(f"seed must be a whole number of 0 or more, got {seed!r}",
                              hint="any non-negative integer; the same seed gives the same store")
    if products is not None:
        _check_count("products", products, 1, len(CATALOGUE),
                     f"the catalogue has {len(CATALOGUE)} kinds of product; leave it unset to use them all")


def generate_store(
    *, users: int, orders: int, seed: int, products: int | None = None, progress: Progress | None = None
) -> Store:
    """A store of `users` users and `orders` orders, the same for the same arguments.

    `products` picks that many product kinds from the built-in catalogue (default: all of it).
    `progress`, if given, is called now and then with how many users plus orders exist so far,
    out of `users + orders`, and once at the end.
    """
    check_arguments(users=users, orders=orders, seed=seed, products=products)
    with _gc_paused():
        return draw_store(users, orders, seed, products, progress)


def write_store(db: Store, folder: Path) -> Path:
    """Writes `folder/db.json` (what `json.dumps(db, indent=2)` gives, plus a newline) and the policy.

    The JSON is streamed, so a store of hundreds of megabytes never exists twice in memory, and
    lands under its final name only once complete.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "db.json"
    partial = folder / "db.json.partial"
    encoder = json.JSONEncoder(indent=2, sort_keys=False)
    try:
        with partial.open("w", encoding="utf-8", newline="\n") as handle:
            batch: list[str] = []
            for chunk in encoder.iterencode(db):
                batch.append(chunk)
                if len(batch) >= _WRITE_BATCH:
                    handle.write("".join(batch))
                    batch.clear()
            batch.append("\n")
            handle.write("".join(batch))
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    policy = Path(__file__).with_name("policy.md")
    if policy.is_file():
        shutil.copyfile(policy, folder / "policy.md")
    return target
