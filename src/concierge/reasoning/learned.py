"""A learned router's classifier, trained from evaluation runs: k nearest neighbours over turn features.

Evaluation runs of the same tasks under different strategies say, per task, which strategy
passed at the lowest cost; the opening message's features (`feature_vector`) are the input.
With a few hundred labelled tasks a nearest-neighbour vote is as good as anything fancier, needs
no dependency, and its "probability" (the share of the vote) is honest about how sure it is, so
`LearnedRouter` falls back to the rules where the data is thin.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import ValidationError
from .steps import STRATEGIES, Strategy

FORMAT = "concierge.router.knn/1"


@dataclass(frozen=True, slots=True)
class Example:
    features: tuple[float, ...]
    strategy: Strategy


@dataclass(frozen=True, slots=True)
class NearestNeighbours:
    """`predict(features) -> (strategy, share of the k nearest examples that chose it)`."""

    examples: tuple[Example, ...]
    k: int = 5

    def __post_init__(self) -> None:
        if not self.examples:
            raise ValidationError("a learned router needs at least one example", hint="train it on eval runs")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValidationError(f"k must be a positive integer, got {self.k!r}")
        width = len(self.examples[0].features)
        for example in self.examples:
            if len(example.features) != width or not all(math.isfinite(x) for x in example.features):
                raise ValidationError(f"every example needs {width} finite features, got {example.features!r}")
            if example.strategy not in STRATEGIES:
                raise ValidationError(f"unknown strategy {example.strategy!r} in the examples")

    def __call__(self, features: Sequence[float]) -> tuple[Strategy, float]:
        if len(features) != len(self.examples[0].features):
            raise ValidationError(f"expected {len(self.examples[0].features)} features, got {len(features)}")
        scale = [max(abs(e.features[i]) for e in self.examples) or 1.0 for i in range(len(features))]

        def distance(example: Example) -> float:
            return sum(((a - b) / s) ** 2 for a, b, s in zip(features, example.features, scale, strict=True))

        nearest = sorted(self.examples, key=distance)[: self.k]
        votes = Counter(e.strategy for e in nearest)
        strategy, count = max(votes.items(), key=lambda kv: (kv[1], -STRATEGIES.index(kv[0])))
        return strategy, count / len(nearest)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"format": FORMAT, "k": self.k, "examples": [
            {"features": list(e.features), "strategy": e.strategy} for e in self.examples]}, indent=1))

    @classmethod
    def load(cls, path: Path) -> NearestNeighbours:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ValidationError(f"cannot read the router model {path}: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValidationError(f"{path} is not a router model ({FORMAT})",
                                  hint="make one with: concierge eval train-router RUN...")
        try:
            examples = tuple(Example(tuple(float(x) for x in e["features"]), e["strategy"]) for e in data["examples"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValidationError(f"{path}: malformed example ({exc})") from None
        return cls(examples, int(data.get("k", 5)))
