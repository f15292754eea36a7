"""Money as integer cents, and the way back to tau2's float amounts.

The store keeps every price, balance and amount as whole cents so that sums and refunds are exact.
tau2 writes amounts as JSON floats. For any value with at most two decimals the round trip
`from_cents(to_cents(x)) == x` holds exactly: `n / 100` and `float("<n with the point moved>")`
are both the correctly rounded double of the same rational number, so they are the same float.
Values with more decimals (tau2 sometimes records an unrounded sum such as 0.04999999999999716)
are rounded to the cent, half away from zero, as a till would.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

_CENT = Decimal(1)


def to_cents(value: float) -> int:
    """Whole cents for an amount; `str` first so that 0.285 means 28.5 cents, not its binary neighbour."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"an amount must be a number, not {type(value).__name__}")
    return int((Decimal(str(value)) * 100).quantize(_CENT, rounding=ROUND_HALF_UP))


def from_cents(cents: int) -> float:
    """The float tau2 would have written for this many cents."""
    return cents / 100
