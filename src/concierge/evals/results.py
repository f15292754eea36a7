"""What a trial leaves behind, where it is kept, and the run's summary.

A run is a folder: `run.json` (how it was started) and `trials.jsonl` (one line per finished
trial, written and fsynced as each trial ends). A crashed run is resumed from that folder: the
trials already on disk are kept and only the missing ones run. A torn last line (the crash hit
mid-write) is dropped and its trial runs again.

Each trial's outcome is "pass", "fail" or "incomplete" (a component of its basis, an NL assertion
without a judge, was not judged). Pass rates, pass^k and the regression gate count complete
trials only, and every summary says how many were incomplete beside them.
"""

from __future__ import annotations

import json
import os
import statistics
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import ValidationError
from .rewards import Outcome
from .stats import pass_hat_k_curve

TRIALS_FILE = "trials.jsonl"
RUN_FILE = "run.json"


@dataclass(slots=True)
class TrialResult:
    task_id: str
    trial: int
    reward: float
    success: bool  # a pass: complete, and every component of the basis at 1
    complete: bool  # every component of the basis was judged (or the trial failed with an error)
    components: dict[str, float | None]
    details: dict[str, Any]
    stop_reason: str  # user_stop | transfer | out_of_scope | max_turns | escalated | timeout | error
    conversation: list[dict[str, str]] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    ledger: list[dict[str, Any]] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    turn_latency_ms: list[float] = field(default_factory=list)
    first_response_ms: list[float] = field(default_factory=list)
    duration_s: float = 0.0
    error: str | None = None
    model_calls: int = 0  # every model call the agent made, planning and branch proposals included
    strategies: dict[str, int] = field(default_factory=dict)  # turns per strategy that ran them

    def __post_init__(self) -> None:
        # An incomplete trial is never a pass, also when read from a run written before this rule.
        if not self.complete:
            self.success = False

    @property
    def outcome(self) -> Outcome:
        return "incomplete" if not self.complete else "pass" if self.success else "fail"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "outcome": self.outcome}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialResult:
        fields = {k: v for k, v in data.items() if k != "outcome"}  # derived, written for readers
        return cls(**fields)


class RunStore:
    """A run's folder on disk: its settings, and its trials appended one line at a time."""

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)

    def start(self, config: dict[str, Any], *, resume: bool) -> None:
        """Create the folder; an existing run is continued only with `resume` and the same tasks."""
        path = self.folder / RUN_FILE
        if path.exists():
            if not resume:
                raise ValidationError(f"{self.folder} already holds a run",
                                      hint="pass --resume to continue it, or choose another --out folder")
            old = json.loads(path.read_text(encoding="utf-8"))
            for key in ("tasks", "trials", "agent"):
                if old.get(key) != config.get(key):
                    raise ValidationError(f"cannot resume {self.folder}: {key} differs "
                                          f"({old.get(key)!r} then, {config.get(key)!r} now)")
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")

    def config(self) -> dict[str, Any]:
        path = self.folder / RUN_FILE
        if not path.exists():
            raise ValidationError(f"{self.folder} is not a run folder (no {RUN_FILE})")
        return dict(json.loads(path.read_text(encoding="utf-8")))

    def load(self) -> list[TrialResult]:
        path = self.folder / TRIALS_FILE
        if not path.exists():
            return []
        results: list[TrialResult] = []
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                results.append(TrialResult.from_dict(json.loads(line)))
            except (json.JSONDecodeError, TypeError) as exc:
                if number == len(lines):
                    break  # torn by a crash: that trial runs again
                raise ValidationError(f"{path}:{number}: not a trial record: {exc}") from exc
        return results

    def append(self, result: TrialResult) -> None:
        path = self.folder / TRIALS_FILE
        if path.exists() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
            with path.open("rb+") as f:  # drop a torn last line before adding to the file
                data = f.read()
                f.seek(0)
                f.truncate(data.rfind(b"\n") + 1)
        with path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(result.to_dict(), default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None}
    if len(values) == 1:
        return {"p50": values[0], "p95": values[0], "p99": values[0]}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": statistics.median(values), "p95": cuts[94], "p99": cuts[98]}


def per_task_successes(trials: list[TrialResult]) -> dict[str, list[bool]]:
    """Each task's outcomes over its complete trials; a task with none is left out."""
    grouped: dict[str, list[bool]] = defaultdict(list)
    for t in sorted(trials, key=lambda t: (t.task_id, t.trial)):
        if t.complete:
            grouped[t.task_id].append(t.success)
    return dict(grouped)


def incomplete_count(trials: list[TrialResult]) -> int:
    return sum(1 for t in trials if not t.complete)


def summarize(trials: list[TrialResult]) -> dict[str, Any]:
    """Pass rates, pass^k, reward components, latency percentiles and cost of a run.

    `pass_rate`, `successes`, `mean_reward` and `pass_hat_k` are over the complete trials (None,
    or an empty curve, when there is none); `incomplete` says how many were left out.
    """
    if not trials:
        return {"trials": 0}
    per_task = per_task_successes(trials)
    complete = [t for t in trials if t.complete]
    components: dict[str, dict[str, Any]] = {}
    for name in sorted({k for t in trials for k in t.components}):
        judged = [v for t in trials if (v := t.components.get(name)) is not None]
        not_judged = sum(1 for t in trials if name in t.components and t.components[name] is None)
        components[name] = {"mean": statistics.fmean(judged) if judged else None,
                            "judged": len(judged), "not_judged": not_judged}
    costs = [t.cost_usd for t in trials]
    return {
        "trials": len(trials),
        "tasks": len({t.task_id for t in trials}),
        "complete": len(complete),
        "incomplete": len(trials) - len(complete),
        "incomplete_tasks": sorted({t.task_id for t in trials if not t.complete}),
        "successes": sum(t.success for t in complete),
        "pass_rate": statistics.fmean(t.success for t in complete) if complete else None,
        "mean_reward": statistics.fmean(t.reward for t in complete) if complete else None,
        "pass_hat_k": pass_hat_k_curve(per_task) if per_task else {},
        "pass_hat_k_tasks": len(per_task),
        "partial": len(complete) < len(trials),
        "components": components,
        "turn_latency_ms": _percentiles([x for t in trials for x in t.turn_latency_ms]),
        "first_response_ms": _percentiles([x for t in trials for x in t.first_response_ms]),
        "cost_usd": {"mean": statistics.fmean(costs), "max": max(costs), "total": sum(costs)},
        "tokens": sum(t.input_tokens + t.output_tokens for t in trials),
        "per_conversation": {
            "model_calls": statistics.fmean(t.model_calls for t in trials),
            "tokens": statistics.fmean(t.input_tokens + t.output_tokens for t in trials),
            "seconds": statistics.fmean(t.duration_s for t in trials),
        },
        "strategies": dict(sum((Counter(t.strategies) for t in trials), Counter())),
        "stop_reasons": dict(Counter(t.stop_reason for t in trials)),
        "errors": sum(1 for t in trials if t.error),
    }


def gate_metrics(trials: list[TrialResult]) -> dict[str, tuple[int, int]]:
    """Binary metrics for the regression gate: success over the complete trials, each judged component.

    With no complete trial there is no "pass" metric (the gate then reports it missing).
    """
    complete = [t for t in trials if t.complete]
    metrics = {"pass": (sum(t.success for t in complete), len(complete))} if complete else {}
    for name in sorted({k for t in trials for k in t.components}):
        judged = [v for t in trials if (v := t.components.get(name)) is not None]
        if judged:
            metrics[name] = (sum(1 for v in judged if v >= 1.0 - 1e-6), len(judged))
    return metrics
