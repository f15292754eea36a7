"""Suites: one verdict each over a run's trials — correctness, latency, cost, and a slot for safety.

Correctness is the golden tasks' pass rate; latency is per turn (time to the first model
response and total), p50/p95/p99 against optional budgets; cost is per conversation against an
optional budget. Safety checks plug in through `register_suite` (the guardrails layer adds its
own); until one is registered the slot reports "not configured" rather than a pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..core.errors import ValidationError
from .results import TrialResult, summarize

Verdict = Literal["pass", "fail", "not configured"]


@dataclass(frozen=True, slots=True)
class Budgets:
    """Optional limits; a suite with no limit reports its figures and passes."""

    min_pass_rate: float | None = None
    p95_turn_ms: float | None = None
    p95_first_response_ms: float | None = None
    max_cost_per_conversation_usd: float | None = None

    def __post_init__(self) -> None:
        for name in ("min_pass_rate", "p95_turn_ms", "p95_first_response_ms", "max_cost_per_conversation_usd"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
                raise ValidationError(f"budget {name} must be a non-negative number, got {value!r}")
        if self.min_pass_rate is not None and self.min_pass_rate > 1:
            raise ValidationError(f"min_pass_rate is a fraction in [0, 1], got {self.min_pass_rate}")


@dataclass(frozen=True, slots=True)
class SuiteResult:
    name: str
    verdict: Verdict
    figures: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "verdict": self.verdict, "figures": self.figures, "notes": self.notes}


Suite = Callable[[Sequence[TrialResult], Budgets], SuiteResult]


def correctness(trials: Sequence[TrialResult], budgets: Budgets) -> SuiteResult:
    summary = summarize(list(trials))
    figures = {"pass_rate": summary["pass_rate"], "pass_hat_k": summary["pass_hat_k"],
               "mean_reward": summary["mean_reward"], "errors": summary["errors"],
               "complete": summary["complete"], "incomplete": summary["incomplete"]}
    notes = []
    if summary["incomplete"]:
        notes.append(f"{summary['incomplete']} of {summary['trials']} trials incomplete (NL assertions not judged): "
                     "pass rate and pass^k are over the complete trials only")
    limit, rate = budgets.min_pass_rate, summary["pass_rate"]
    ok = limit is None or (rate is not None and rate >= limit)
    if limit is not None:
        measured = "no complete trial" if rate is None else f"pass rate {rate:.3f}"
        notes.append(f"{measured} against a minimum of {limit:.3f}")
    return SuiteResult("correctness", "pass" if ok else "fail", figures, notes)


def latency(trials: Sequence[TrialResult], budgets: Budgets) -> SuiteResult:
    summary = summarize(list(trials))
    figures = {"turn_ms": summary["turn_latency_ms"], "first_response_ms": summary["first_response_ms"]}
    notes, ok = [], True
    for label, limit, measured in (("turn", budgets.p95_turn_ms, summary["turn_latency_ms"]["p95"]),
                                   ("first response", budgets.p95_first_response_ms,
                                    summary["first_response_ms"]["p95"])):
        if limit is not None and measured is not None:
            ok &= measured <= limit
            notes.append(f"p95 {label} {measured:.0f} ms against {limit:.0f} ms")
    notes.append("first response = the turn's first model response (the runtime does not stream here)")
    return SuiteResult("latency", "pass" if ok else "fail", figures, notes)


def cost(trials: Sequence[TrialResult], budgets: Budgets) -> SuiteResult:
    costs = [t.cost_usd for t in trials]
    limit = budgets.max_cost_per_conversation_usd
    over = [t.task_id for t in trials if limit is not None and t.cost_usd > limit]
    figures = {"mean_usd": sum(costs) / len(costs) if costs else 0.0, "max_usd": max(costs, default=0.0),
               "over_budget": len(over)}
    notes = [f"{len(over)} conversations over ${limit:.4f}: {', '.join(sorted(set(over))[:10])}"] if over else []
    return SuiteResult("cost", "fail" if over else "pass", figures, notes)


_EXTRA: dict[str, Suite] = {}


def register_suite(name: str, suite: Suite) -> None:
    """Add a suite (the guardrails layer registers "safety")."""
    if not name or not callable(suite):
        raise ValidationError("a suite needs a name and a callable")
    _EXTRA[name] = suite


def run_suites(trials: Sequence[TrialResult], budgets: Budgets | None = None) -> list[SuiteResult]:
    if not trials:
        raise ValidationError("no trials to run suites on")
    budgets = budgets or Budgets()
    results = [correctness(trials, budgets), latency(trials, budgets), cost(trials, budgets)]
    results += [suite(trials, budgets) for suite in _EXTRA.values()]
    if "safety" not in _EXTRA:
        results.append(SuiteResult("safety", "not configured", notes=["no safety checks are registered yet"]))
    return results
