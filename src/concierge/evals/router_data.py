"""Training data for a learned router, from evaluation runs of the same tasks under different strategies.

Per task, the label is the strategy that passed most often over its complete trials, the cheaper
(fewer model calls) on a tie; tasks no strategy passed carry no signal and are left out. The input
is the features of the customer's opening message, as the router computes them at the first turn.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..core.errors import ValidationError
from ..reasoning.learned import Example
from ..reasoning.routed import features_of
from ..reasoning.router import feature_vector
from ..reasoning.steps import STRATEGIES
from ..tools.tool import Tool
from .results import RunStore, TrialResult


def router_examples(folders: Sequence[Path], tools: Iterable[Tool]) -> list[Example]:
    tools = list(tools)
    by_task: dict[str, dict[str, list[TrialResult]]] = defaultdict(lambda: defaultdict(list))
    for folder in folders:
        store = RunStore(folder)
        strategy = store.config().get("strategy", "react")
        if strategy not in STRATEGIES:
            raise ValidationError(f"{folder} ran the {strategy!r} strategy",
                                  hint="train on runs of one fixed strategy each: react, plan or tot")
        trials = store.load()
        if not trials:
            raise ValidationError(f"{folder} holds no finished trials", hint="is it a run folder?")
        for trial in trials:
            by_task[trial.task_id][strategy].append(trial)
    examples = []
    for runs in by_task.values():
        complete = {s: done for s, trials in runs.items() if (done := [t for t in trials if t.complete])}
        if not complete:
            continue  # only incomplete trials (not judged): no label
        scored = [(statistics.fmean(t.success for t in trials), -statistics.fmean(t.model_calls for t in trials), s)
                  for s, trials in complete.items()]
        rate, _, best = max(scored)
        if rate == 0:
            continue
        opening = _opening(next(iter(runs.values()))[0])
        if opening is not None:
            examples.append(Example(tuple(feature_vector(features_of(opening, tools))), best))  # type: ignore[arg-type]
    return examples


def _opening(trial: TrialResult) -> str | None:
    return next((m["text"] for m in trial.conversation if m.get("role") == "user"), None)
