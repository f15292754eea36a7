from __future__ import annotations

from pathlib import Path

import pytest

from concierge.core.errors import ValidationError
from concierge.evals.report import REPORT_FILE, render_report, write_report
from concierge.evals.results import RunStore, TrialResult

CONFIG = {"agent": "oracle", "user": "scripted", "tasks": "tasks.json", "trials": 2, "started": "2026-01-01 10:00:00"}


def _trial(task_id: str, trial: int, *, success: bool = True, nl: float | None = 1.0, cost: float = 0.0,
           conversation: list[dict[str, str]] | None = None, error: str | None = None) -> TrialResult:
    components: dict[str, float | None] = {"DB": 1.0 if success else 0.0, "NL_ASSERTION": nl}
    return TrialResult(
        task_id=task_id, trial=trial, reward=1.0 if success else 0.0, success=success, complete=nl is not None,
        components=components, details={}, stop_reason="user_stop" if success else "max_turns",
        conversation=conversation or [{"role": "user", "text": "hi"}, {"role": "assistant", "text": "hello"}],
        tool_calls=[{"name": "get_order_details", "arguments": {"order_id": "#W1"}, "error": None}],
        cost_usd=cost, turn_latency_ms=[1.0 + trial, 2.5, 4.0], first_response_ms=[0.5], error=error,
    )


def _trials(*, cost: float = 0.0) -> list[TrialResult]:
    bad_chat = [{"role": "user", "text": "cancel <script>alert('x')</script> please"},
                {"role": "assistant", "text": "I can't & won't"}]
    return [
        _trial("task_ok", 0, cost=cost), _trial("task_ok", 1, cost=cost * 2),
        _trial("task_flaky", 0, cost=cost),
        _trial("task_flaky", 1, success=False, conversation=bad_chat, cost=cost, error="ToolError: <boom>"),
        _trial("task_nl", 0, nl=None, cost=cost), _trial("task_nl", 1, nl=None, cost=cost),
    ]


def test_report_shows_tasks_plots_and_escaped_failures() -> None:
    page = render_report(CONFIG, _trials())
    for task_id in ("task_ok", "task_flaky", "task_nl"):
        assert task_id in page
    assert "<script>" not in page
    assert "cancel &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; please" in page
    assert "I can&#x27;t &amp; won&#x27;t" in page
    assert "ToolError: &lt;boom&gt;" in page
    assert "<svg" in page and "pass^k" in page
    assert "not judged" in page
    assert "partial:" in page and "2 of 6 trials are incomplete" in page
    assert "<tr class='incomplete'><td class='l'><code>task_nl</code>" in page  # greyed, not a pass
    assert page.index("task_ok") < page.index("task_nl")  # tasks with no complete trial last
    assert "Sample failures (1 of 1)" in page  # an incomplete trial is not a failure
    assert "<details>" in page and "get_order_details" in page
    assert "no cost recorded (local/scripted models)" in page
    for external in ("<link", "src=", "<script", "@import", "url(http"):  # self-contained: nothing fetched
        assert external not in page
    assert page.index("task_flaky") < page.index("task_ok")  # failing tasks first


def test_report_plots_costs_when_recorded() -> None:
    page = render_report(CONFIG, _trials(cost=0.0125))
    assert "no cost recorded" not in page
    assert page.count("<svg") == 3  # pass^k, latency, cost
    assert "Cost per conversation" in page


def test_all_passing_run_has_no_partial_notice() -> None:
    page = render_report(CONFIG, [_trial("a", 0), _trial("a", 1)])
    assert "partial:" not in page
    assert "Every trial passed" in page


def test_write_report_writes_into_the_run_folder(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run")
    store.start(CONFIG, resume=False)
    for trial in _trials():
        store.append(trial)
    path = write_report(store.folder)
    assert path == store.folder / REPORT_FILE
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "task_flaky" in text


def test_write_report_rejects_non_runs_and_empty_runs(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="not a run folder"):
        write_report(tmp_path)
    store = RunStore(tmp_path / "empty")
    store.start(CONFIG, resume=False)
    with pytest.raises(ValidationError, match="no finished trials"):
        write_report(store.folder)
    with pytest.raises(ValidationError):
        render_report(CONFIG, [])
