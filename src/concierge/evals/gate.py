"""Regression gate: does a new evaluation run do significantly worse than the baseline?

A metric regresses only when the drop is both statistically significant (one-sided
two-proportion z-test, p < alpha) and large enough to matter (more than `min_drop`), so a
CI gate neither fails on noise nor on a significant-but-trivial wobble of a huge run.

The counts it is given are over complete trials; how many trials each side left out as
incomplete (not judged) is carried in the report and printed with the verdict.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, TypeVar

from ..core.errors import ValidationError
from .stats import two_proportion_ztest

Verdict: TypeAlias = Literal["regression", "ok", "improved", "missing"]
T = TypeVar("T")

# Float slack for "drop > min_drop": 0.95 - 0.93 is 0.0200000000000000018, which is not a
# drop of *more than* two points.
_EPS = 1e-12


@dataclass(frozen=True, slots=True)
class MetricSample:
    """A binary metric on one run: how many of `n` items succeeded."""

    successes: int
    n: int

    @property
    def rate(self) -> float:
        return self.successes / self.n


@dataclass(frozen=True, slots=True)
class GateRow:
    """One metric's comparison; rates and statistics are None where a side is missing."""

    metric: str
    verdict: Verdict
    rate_new: float | None
    rate_base: float | None
    diff: float | None
    z: float | None
    p: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "verdict": self.verdict,
            "rate_new": self.rate_new,
            "rate_base": self.rate_base,
            "diff": self.diff,
            "z": self.z,
            "p": self.p,
        }


@dataclass(slots=True)
class GateReport:
    """All metric rows plus failure samples; `passed` and `exit_code` are what CI looks at."""

    rows: list[GateRow]
    alpha: float
    min_drop: float
    fail_on_missing: bool = False
    sample_failures: list[dict[str, Any]] = field(default_factory=list)
    incomplete_new: int = 0  # trials of the new run left out of the counts: not judged
    incomplete_base: int = 0

    @property
    def regressions(self) -> list[GateRow]:
        return [row for row in self.rows if row.verdict == "regression"]

    @property
    def missing(self) -> list[GateRow]:
        return [row for row in self.rows if row.verdict == "missing"]

    @property
    def passed(self) -> bool:
        """No regression (and, with `fail_on_missing`, no metric missing from either side)."""
        return not self.regressions and not (self.fail_on_missing and self.missing)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "exit_code": self.exit_code,
            "alpha": self.alpha,
            "min_drop": self.min_drop,
            "fail_on_missing": self.fail_on_missing,
            "regressions": [row.metric for row in self.regressions],
            "missing": [row.metric for row in self.missing],
            "rows": [row.to_dict() for row in self.rows],
            "sample_failures": list(self.sample_failures),
            "incomplete": {"new": self.incomplete_new, "baseline": self.incomplete_base},
        }


def compare(
    run: Mapping[str, tuple[int, int] | MetricSample],
    baseline: Mapping[str, tuple[int, int] | MetricSample],
    *,
    alpha: float = 0.05,
    min_drop: float = 0.02,
    fail_on_missing: bool = False,
    incomplete_new: int = 0,
    incomplete_base: int = 0,
) -> GateReport:
    """Compare every metric of `run` against `baseline`, each given as (successes, n).

    `incomplete_new` and `incomplete_base` are the trials each side left out of its counts (not
    judged); they do not change a verdict, and the report states them.

    A metric is a "regression" when p < alpha and rate_base - rate_new > min_drop, and
    "improved" under the mirror-image condition. Metrics present on one side only are reported
    as "missing" rather than dropped, so a renamed or vanished metric is visible in the report.
    """
    if not 0.0 < alpha < 1.0:
        raise ValidationError(f"alpha must be in (0, 1), got {alpha!r}", hint="the usual choice is 0.05")
    if not 0.0 <= min_drop < 1.0:
        raise ValidationError(
            f"min_drop must be in [0, 1), got {min_drop!r}", hint="e.g. 0.02 for two points"
        )
    if not run and not baseline:
        raise ValidationError(
            "no metrics to compare", hint="pass at least one metric for the run and baseline"
        )
    rows: list[GateRow] = []
    for metric in sorted(set(run) | set(baseline)):
        if metric not in run or metric not in baseline:
            sample = _sample(metric, run[metric] if metric in run else baseline[metric])
            new_rate = sample.rate if metric in run else None
            base_rate = sample.rate if metric in baseline else None
            rows.append(GateRow(metric, "missing", new_rate, base_rate, None, None, None))
            continue
        new, base = _sample(metric, run[metric]), _sample(metric, baseline[metric])
        lower = two_proportion_ztest(new.successes, new.n, base.successes, base.n)
        higher = two_proportion_ztest(base.successes, base.n, new.successes, new.n)
        verdict: Verdict = "ok"
        if lower.p_value < alpha and -lower.diff > min_drop + _EPS:
            verdict = "regression"
        elif higher.p_value < alpha and lower.diff > min_drop + _EPS:
            verdict = "improved"
        rows.append(
            GateRow(metric, verdict, lower.rate_new, lower.rate_base, lower.diff, lower.z, lower.p_value)
        )
    for name, count in (("incomplete_new", incomplete_new), ("incomplete_base", incomplete_base)):
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValidationError(f"{name} must be a non-negative integer, got {count!r}")
    return GateReport(rows, alpha, min_drop, fail_on_missing,
                      incomplete_new=incomplete_new, incomplete_base=incomplete_base)


def _sample(metric: str, value: tuple[int, int] | MetricSample) -> MetricSample:
    if isinstance(value, MetricSample):
        sample = value
    else:
        try:
            successes, n = value
        except (TypeError, ValueError) as exc:
            raise ValidationError(
                f"metric {metric!r}: expected (successes, n), got {value!r}", hint="give two integers"
            ) from exc
        sample = MetricSample(successes, n)
    ok_types = all(isinstance(v, int) and not isinstance(v, bool) for v in (sample.successes, sample.n))
    if not ok_types or sample.n <= 0 or not 0 <= sample.successes <= sample.n:
        raise ValidationError(
            f"metric {metric!r}: invalid counts successes={sample.successes!r}, n={sample.n!r}",
            hint="n must be a positive integer and successes between 0 and n",
        )
    return sample


def _task_id(item: Any) -> str:
    task_id = item.get("task_id") if isinstance(item, Mapping) else getattr(item, "task_id", None)
    if task_id is None:
        raise ValidationError(
            f"failure {item!r} has no task_id", hint="give each failure a 'task_id', or pass key="
        )
    return str(task_id)


def pick_failures(
    failures: Sequence[T], limit: int = 10, *, key: Callable[[T], str] | None = None
) -> list[T]:
    """The first `limit` failures in task-id order, so a report shows the same ones every run.

    Task ids come from `key`, else a mapping's "task_id" or an object's `task_id`; the sort is
    stable, so several failures of one task keep their given order.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValidationError(f"limit must be a non-negative integer, got {limit!r}")
    get_id = key or _task_id
    return sorted(failures, key=get_id)[:limit]


def render_text(report: GateReport) -> str:
    """A plain fixed-width table for terminals and CI logs."""
    header = ("metric", "new", "base", "diff", "z", "p", "verdict")
    lines = [
        [
            row.metric,
            _pct(row.rate_new),
            _pct(row.rate_base),
            _signed(row.diff),
            _num(row.z, "{:+.2f}"),
            _num(row.p, "{:.4f}"),
            row.verdict.upper() if row.verdict == "regression" else row.verdict,
        ]
        for row in report.rows
    ]
    widths = [max([len(header[i]), *(len(line[i]) for line in lines)]) for i in range(len(header))]
    out = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(header)).rstrip()]
    out.append("  ".join("-" * w for w in widths))
    out.extend("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip() for line in lines)
    status = "PASSED" if report.passed else "FAILED"
    out.append("")
    out.append(
        f"gate {status}: {len(report.regressions)} regression(s), {len(report.missing)} missing "
        f"(alpha={report.alpha:g}, min_drop={report.min_drop:g})"
    )
    if report.missing:
        out.append("missing on one side: " + ", ".join(row.metric for row in report.missing))
    if report.incomplete_new or report.incomplete_base:
        out.append(f"over complete trials only: {report.incomplete_new} incomplete in the new run, "
                   f"{report.incomplete_base} in the baseline (not judged: neither pass nor fail)")
    return "\n".join(out)


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f}%"


def _signed(diff: float | None) -> str:
    return "-" if diff is None else f"{diff * 100:+.1f}pt"


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)
