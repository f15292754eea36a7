"""Per-model prices → cost per call.

Prices are USD per million tokens, configured (settings `prices`) rather than hard-wired, since
they change. Unknown models cost 0 and are reported as such, never guessed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..core.errors import ConfigError
from ..core.usage import Usage


@dataclass(frozen=True, slots=True)
class Price:
    input_per_mtok: float
    output_per_mtok: float

    def __post_init__(self) -> None:
        if self.input_per_mtok < 0 or self.output_per_mtok < 0:
            raise ConfigError("a model price cannot be negative", hint="give USD per million tokens, >= 0")


class PriceTable:
    """Looks up a model's price by exact name, then by longest matching prefix."""

    def __init__(self, prices: Mapping[str, Price | tuple[float, float]] | None = None) -> None:
        self._prices: dict[str, Price] = {}
        for name, price in (prices or {}).items():
            self._prices[name] = price if isinstance(price, Price) else Price(*price)

    def price_for(self, model: str) -> Price | None:
        if model in self._prices:
            return self._prices[model]
        best = max((p for p in self._prices if model.startswith(p)), key=len, default=None)
        return self._prices[best] if best else None

    def cost(self, model: str, input_tokens: int, output_tokens: int) -> float:
        price = self.price_for(model)
        if price is None:
            return 0.0
        return (input_tokens * price.input_per_mtok + output_tokens * price.output_per_mtok) / 1_000_000

    def usage(self, model: str, input_tokens: int, output_tokens: int) -> Usage:
        return Usage(input_tokens, output_tokens, self.cost(model, input_tokens, output_tokens))


# Local models run on your own hardware: their marginal price is zero.
DEFAULT_PRICES = PriceTable({"smollm2": (0.0, 0.0)})
