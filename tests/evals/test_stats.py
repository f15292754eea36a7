"""Evaluation statistics checked against hand-computed values, scipy and scikit-learn."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import cohen_kappa_score

from concierge.core.errors import ValidationError
from concierge.evals.gate import compare
from concierge.evals.stats import (
    cohen_kappa,
    pass_hat_k,
    pass_hat_k_curve,
    pass_hat_k_mean,
    raw_agreement,
    two_proportion_ztest,
)

# ------------------------------------------------------------------------------------------ pass^k


def test_pass_hat_k_examples() -> None:
    assert pass_hat_k(3, 4, 2) == pytest.approx(0.5)  # C(3,2)/C(4,2) = 3/6
    assert pass_hat_k(4, 4, 4) == 1.0
    assert pass_hat_k(3, 4, 4) == 0.0
    assert pass_hat_k(0, 4, 1) == 0.0
    assert pass_hat_k(3, 4, 1) == pytest.approx(0.75)  # k=1 is the plain success rate


def test_pass_hat_k_large_counts_do_not_overflow() -> None:
    assert pass_hat_k(900, 1000, 300) == pytest.approx(math.comb(900, 300) / math.comb(1000, 300), rel=1e-12)


def test_pass_hat_k_mean_and_curve() -> None:
    per_task = {"t1": [True, True, True, False], "t2": [True, False, False, False], "t3": [True] * 4}
    assert pass_hat_k_mean(per_task, 1) == pytest.approx((0.75 + 0.25 + 1.0) / 3)
    assert pass_hat_k_mean(per_task, 2) == pytest.approx((0.5 + 0.0 + 1.0) / 3)
    curve = pass_hat_k_curve(per_task)
    assert list(curve) == [1, 2, 3, 4]
    assert curve[4] == pytest.approx(1 / 3)
    assert all(curve[k] >= curve[k + 1] for k in range(1, 4))
    assert list(pass_hat_k_curve(per_task, max_k=2)) == [1, 2]


def test_curve_stops_at_fewest_trials() -> None:
    assert list(pass_hat_k_curve({"a": [True] * 5, "b": [True, False]})) == [1, 2]


@pytest.mark.parametrize(
    ("successes", "trials", "k"),
    [(5, 4, 1), (-1, 4, 1), (2, 0, 1), (2, 4, 0), (2, 4, 5), (2, 4, 1.5), (True, 4, 1)],
)
def test_pass_hat_k_rejects_bad_input(successes: int, trials: int, k: int) -> None:
    with pytest.raises(ValidationError):
        pass_hat_k(successes, trials, k)


def test_pass_hat_k_mean_names_short_task() -> None:
    with pytest.raises(ValidationError, match="'short'"):
        pass_hat_k_mean({"long": [True] * 4, "short": [True]}, 2)
    with pytest.raises(ValidationError, match="no tasks"):
        pass_hat_k_mean({}, 1)
    with pytest.raises(ValidationError, match="'empty'"):
        pass_hat_k_curve({"empty": [], "full": [True]})
    with pytest.raises(ValidationError, match="max_k=3"):
        pass_hat_k_curve({"a": [True, True]}, max_k=3)


# ------------------------------------------------------------------------------------------ z-test


@pytest.mark.parametrize(
    ("s_new", "n_new", "s_base", "n_base"),
    [(455, 500, 475, 500), (472, 500, 475, 500), (90, 100, 80, 100), (10, 37, 30, 61), (1, 2, 999, 1000)],
)
def test_ztest_matches_direct_scipy_computation(s_new: int, n_new: int, s_base: int, n_base: int) -> None:
    p1, p2 = s_new / n_new, s_base / n_base
    pooled = (s_new + s_base) / (n_new + n_base)
    z = (p1 - p2) / math.sqrt(pooled * (1 - pooled) * (1 / n_new + 1 / n_base))
    result = two_proportion_ztest(s_new, n_new, s_base, n_base)
    assert result.z == pytest.approx(z, abs=1e-9)
    assert abs(result.p_value - norm.cdf(z)) < 1e-9
    assert result.rate_new == p1 and result.rate_base == p2
    assert result.diff == pytest.approx(p1 - p2)


def test_ztest_is_one_sided_towards_lower() -> None:
    worse = two_proportion_ztest(80, 100, 90, 100)
    better = two_proportion_ztest(90, 100, 80, 100)
    assert worse.p_value < 0.05 < better.p_value
    assert worse.p_value + better.p_value == pytest.approx(1.0)


@pytest.mark.parametrize(("s", "n"), [(0, 50), (50, 50)])
def test_ztest_degenerate_pooled_rate_has_no_evidence(s: int, n: int) -> None:
    result = two_proportion_ztest(s, n, 2 * s, 2 * n)
    assert (result.z, result.p_value, result.diff) == (0.0, 1.0, 0.0)


@pytest.mark.parametrize("args", [(5, 0, 5, 10), (11, 10, 5, 10), (5, 10, -1, 10), (5, 10, 5, 10.0)])
def test_ztest_rejects_bad_counts(args: tuple[int, int, int, int]) -> None:
    with pytest.raises(ValidationError):
        two_proportion_ztest(*args)


def test_gate_flags_95_vs_91_at_n500() -> None:
    # 475/500 = 95% baseline, 455/500 = 91% new: z = -2.48, p = 0.0066, drop 4 points.
    report = compare({"pass_rate": (455, 500)}, {"pass_rate": (475, 500)})
    assert [row.metric for row in report.regressions] == ["pass_rate"]
    assert report.rows[0].p == pytest.approx(0.00659, abs=1e-4)


@pytest.mark.parametrize("s_new", [472, 473])
def test_gate_passes_95_vs_94_5_at_n500(s_new: int) -> None:
    # 472/500 = 94.4% (p = 0.336) and 473/500 = 94.6% (p = 0.388): neither significant nor > 2 points.
    report = compare({"pass_rate": (s_new, 500)}, {"pass_rate": (475, 500)})
    assert report.passed
    assert report.rows[0].verdict == "ok"
    assert report.rows[0].p > 0.3


# --------------------------------------------------------------------------------------- agreement


def _sklearn_kappa(a: list, b: list) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(cohen_kappa_score(a, b))


def test_kappa_matches_sklearn_on_random_label_sets() -> None:
    rng = np.random.default_rng(20240611)
    for _ in range(50):
        n_labels = int(rng.integers(2, 6))
        length = int(rng.integers(5, 201))
        labels = [f"l{i}" for i in range(n_labels)]
        a = [labels[i] for i in rng.integers(0, n_labels, length)]
        # Correlate b with a part of the time so kappa spans more than values near 0.
        b = [x if rng.random() < 0.6 else labels[int(rng.integers(0, n_labels))] for x in a]
        expected = _sklearn_kappa(a, b)
        assert abs(cohen_kappa(a, b) - expected) < 1e-12
        assert raw_agreement(a, b) == pytest.approx(sum(x == y for x, y in zip(a, b)) / length)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (["x", "y", "x", "y"], ["x", "y", "x", "y"]),  # perfect agreement: 1.0
        (["x", "y"], ["y", "x"]),  # perfect disagreement: -1.0
        ([1, 1, 1], [1, 1, 2]),  # one rater constant: 0.0
        ([0, 1, 2], [3, 4, 5]),  # disjoint label sets
        ([True, False, True], [True, True, True]),
    ],
)
def test_kappa_edge_cases_match_sklearn(a: list, b: list) -> None:
    assert abs(cohen_kappa(a, b) - _sklearn_kappa(a, b)) < 1e-12


@pytest.mark.parametrize(("a", "b"), [(["x"], ["x"]), (["x", "x", "x"], ["x", "x", "x"])])
def test_kappa_is_nan_when_expected_agreement_is_one(a: list, b: list) -> None:
    assert math.isnan(_sklearn_kappa(a, b))
    assert math.isnan(cohen_kappa(a, b))
    assert raw_agreement(a, b) == 1.0


def test_agreement_rejects_bad_input() -> None:
    with pytest.raises(ValidationError, match="length"):
        cohen_kappa(["a"], ["a", "b"])
    with pytest.raises(ValidationError, match="no labels"):
        cohen_kappa([], [])
    with pytest.raises(ValidationError, match="length"):
        raw_agreement(["a", "b"], ["a"])
