"""Statistics for evaluation: pass^k reliability, a regression z-test and judge agreement.

Kept free of any evaluation-run types so each number can be checked against a reference
implementation (scipy, scikit-learn) on plain integers and label lists.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..core.errors import ConfigError, ValidationError

# ---------------------------------------------------------------------------------------- pass^k


def pass_hat_k(successes: int, trials: int, k: int) -> float:
    """Chance that k trials drawn without replacement from one task's trials all succeed.

    tau2-bench's pass^k: C(successes, k) / C(trials, k). Unlike pass@k it falls as k grows,
    which is the point: a customer-service agent must succeed every time, not once in k.
    """
    _check_count("trials", trials, minimum=1)
    _check_count("successes", successes, minimum=0)
    if successes > trials:
        raise ValidationError(
            f"successes ({successes}) exceed trials ({trials})", hint="successes must be between 0 and trials"
        )
    _check_count("k", k, minimum=1)
    if k > trials:
        raise ValidationError(f"k={k} exceeds the {trials} trials run", hint="run at least k trials per task")
    # Python divides big integers with correct rounding, so no overflow and no precision loss.
    return math.comb(successes, k) / math.comb(trials, k)


def pass_hat_k_mean(per_task: Mapping[str, Sequence[bool]], k: int) -> float:
    """pass^k averaged over tasks: every task counts once, however many trials it ran."""
    _check_tasks(per_task)
    total = 0.0
    for task_id, outcomes in per_task.items():
        if len(outcomes) < k:
            raise ValidationError(
                f"task {task_id!r} has {len(outcomes)} trials, fewer than k={k}",
                hint="run at least k trials for every task, or lower k",
            )
        total += pass_hat_k(sum(1 for ok in outcomes if ok), len(outcomes), k)
    return total / len(per_task)


def pass_hat_k_curve(per_task: Mapping[str, Sequence[bool]], max_k: int | None = None) -> dict[int, float]:
    """pass^k for k = 1..max_k (default: the fewest trials any task ran)."""
    _check_tasks(per_task)
    fewest_task, fewest = min(((t, len(o)) for t, o in per_task.items()), key=lambda item: item[1])
    if fewest < 1:
        raise ValidationError(f"task {fewest_task!r} has no trials", hint="run at least one trial per task")
    if max_k is None:
        max_k = fewest
    _check_count("max_k", max_k, minimum=1)
    if max_k > fewest:
        raise ValidationError(
            f"max_k={max_k} exceeds the {fewest} trials of task {fewest_task!r}",
            hint="lower max_k or run more trials",
        )
    return {k: pass_hat_k_mean(per_task, k) for k in range(1, max_k + 1)}


def _check_tasks(per_task: Mapping[str, Sequence[bool]]) -> None:
    if not per_task:
        raise ValidationError("no tasks given", hint="pass at least one task with its trial outcomes")


def _check_count(name: str, value: int, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValidationError(f"{name} must be an integer >= {minimum}, got {value!r}")


# ------------------------------------------------------------------------------------------ z-test


@dataclass(frozen=True, slots=True)
class ZTest:
    """One-sided two-proportion z-test that the new rate is lower than the baseline's.

    `diff` is rate_new - rate_base: negative means the new run is worse.
    """

    z: float
    p_value: float
    rate_new: float
    rate_base: float
    diff: float


def two_proportion_ztest(successes_new: int, n_new: int, successes_base: int, n_base: int) -> ZTest:
    """Is the new success rate lower than the baseline's? Pooled standard error, normal tail.

    Degenerate case: when the pooled rate is 0 or 1 (everything failed, or everything passed,
    on both sides) there is no variance and the two rates are necessarily equal. We return
    z = 0 and p = 1.0: under the plug-in null every outcome has difference 0, so "at least as
    low as observed" has probability 1, which is also what Fisher's exact test gives. We never
    divide by a zero standard error.
    """
    for name, successes, n in (("new", successes_new, n_new), ("baseline", successes_base, n_base)):
        _check_count(f"n_{name}", n, minimum=1)
        _check_count(f"successes_{name}", successes, minimum=0)
        if successes > n:
            raise ValidationError(f"{name}: successes ({successes}) exceed n ({n})")
    rate_new = successes_new / n_new
    rate_base = successes_base / n_base
    diff = rate_new - rate_base
    pooled = (successes_new + successes_base) / (n_new + n_base)
    variance = pooled * (1.0 - pooled) * (1.0 / n_new + 1.0 / n_base)
    if variance <= 0.0:
        return ZTest(0.0, 1.0, rate_new, rate_base, diff)
    z = diff / math.sqrt(variance)
    return ZTest(z, float(_norm().cdf(z)), rate_new, rate_base, diff)


def _norm() -> Any:
    """scipy's normal distribution, imported only when a test is run (it is an optional extra)."""
    try:
        from scipy.stats import norm
    except ModuleNotFoundError as exc:
        raise ConfigError(
            "the regression z-test needs scipy, which is not installed", hint="install concierge[eval]"
        ) from exc
    return norm


# --------------------------------------------------------------------------------------- agreement


def raw_agreement(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    """Fraction of items both raters labelled the same."""
    _check_pair(a, b)
    return sum(1 for x, y in zip(a, b, strict=True) if x == y) / len(a)


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    """Cohen's kappa (unweighted): agreement corrected for what chance alone would give.

    Matches sklearn.metrics.cohen_kappa_score. When expected agreement is 1 (both raters used
    one and the same label for every item) kappa is 0/0; like scikit-learn we return nan
    rather than pretend a value: such a sample cannot show agreement beyond chance.
    """
    _check_pair(a, b)
    n = len(a)
    disagreements = sum(1 for x, y in zip(a, b, strict=True) if x != y)
    counts_a, counts_b = Counter(a), Counter(b)
    same_label_pairs = sum(count * counts_b.get(label, 0) for label, count in counts_a.items())
    # kappa = 1 - observed disagreement / expected disagreement, both scaled by n^2 so the
    # ratio is one exact integer division.
    expected = n * n - same_label_pairs
    if expected == 0:
        return math.nan
    return 1.0 - (disagreements * n) / expected


def _check_pair(a: Sequence[Hashable], b: Sequence[Hashable]) -> None:
    if len(a) != len(b):
        raise ValidationError(
            f"label lists differ in length ({len(a)} vs {len(b)})",
            hint="give one label per item from each rater",
        )
    if not a:
        raise ValidationError("no labels given", hint="agreement needs at least one labelled item")
