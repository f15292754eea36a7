"""The regression gate: verdicts, missing metrics, exit codes and the rendered report."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from concierge.core.errors import ValidationError
from concierge.evals.gate import GateReport, MetricSample, compare, pick_failures, render_text

BASELINE = {"pass_rate": (475, 500), "db_match": (450, 500), "comm_info": (300, 500), "old_metric": (10, 20)}
RUN = {"pass_rate": (455, 500), "db_match": (452, 500), "comm_info": (360, 500), "new_metric": (5, 10)}


def test_verdicts_per_metric() -> None:
    report = compare(RUN, BASELINE)
    verdicts = {row.metric: row.verdict for row in report.rows}
    assert verdicts == {
        "pass_rate": "regression",
        "db_match": "ok",
        "comm_info": "improved",
        "old_metric": "missing",
        "new_metric": "missing",
    }
    assert [row.metric for row in report.regressions] == ["pass_rate"]
    assert not report.passed
    assert report.exit_code == 1


def test_missing_rows_keep_the_side_that_exists() -> None:
    rows = {row.metric: row for row in compare(RUN, BASELINE).rows}
    assert rows["old_metric"].rate_base == 0.5 and rows["old_metric"].rate_new is None
    assert rows["new_metric"].rate_new == 0.5 and rows["new_metric"].rate_base is None
    assert rows["new_metric"].p is None and rows["new_metric"].z is None


def test_missing_alone_passes_unless_asked_to_fail() -> None:
    run, base = {"pass_rate": (90, 100)}, {"pass_rate": (90, 100), "gone": (5, 10)}
    assert compare(run, base).exit_code == 0
    strict = compare(run, base, fail_on_missing=True)
    assert not strict.passed and strict.exit_code == 1


def test_significant_but_small_drop_is_not_a_regression() -> None:
    # 1.5-point drop on 100k items is highly significant but below min_drop.
    report = compare({"m": (93_500, 100_000)}, {"m": (95_000, 100_000)})
    assert report.rows[0].p < 1e-6
    assert report.rows[0].verdict == "ok"
    assert compare({"m": (93_500, 100_000)}, {"m": (95_000, 100_000)}, min_drop=0.01).exit_code == 1


def test_large_but_insignificant_drop_is_not_a_regression() -> None:
    report = compare({"m": (7, 10)}, {"m": (9, 10)})
    assert report.rows[0].diff == pytest.approx(-0.2)
    assert report.rows[0].verdict == "ok"


def test_drop_exactly_min_drop_is_not_more_than_min_drop() -> None:
    report = compare({"m": (93_000, 100_000)}, {"m": (95_000, 100_000)})
    assert report.rows[0].verdict == "ok"
    assert compare({"m": (92_999, 100_000)}, {"m": (95_000, 100_000)}).rows[0].verdict == "regression"


def test_metric_sample_input_is_accepted() -> None:
    report = compare({"m": MetricSample(455, 500)}, {"m": MetricSample(475, 500)})
    assert report.rows[0].verdict == "regression"


@pytest.mark.parametrize(
    ("run", "base", "kwargs"),
    [
        ({"m": (5, 0)}, {"m": (5, 10)}, {}),
        ({"m": (11, 10)}, {"m": (5, 10)}, {}),
        ({"m": (5,)}, {"m": (5, 10)}, {}),
        ({"m": (5, 10)}, {"m": (5, 10)}, {"alpha": 0.0}),
        ({"m": (5, 10)}, {"m": (5, 10)}, {"min_drop": -0.1}),
        ({}, {}, {}),
    ],
)
def test_bad_input_is_rejected(run: dict, base: dict, kwargs: dict) -> None:
    with pytest.raises(ValidationError):
        compare(run, base, **kwargs)


def test_render_text_lists_metrics_and_outcome() -> None:
    text = render_text(compare(RUN, BASELINE))
    for metric in ("pass_rate", "db_match", "comm_info", "old_metric", "new_metric"):
        assert metric in text
    assert "REGRESSION" in text
    assert "gate FAILED" in text
    assert "95.0%" in text and "91.0%" in text
    assert "gate PASSED" in render_text(compare({"m": (9, 10)}, {"m": (9, 10)}))


def test_render_text_of_empty_report() -> None:
    assert "gate PASSED" in render_text(GateReport([], 0.05, 0.02))


def test_to_dict_is_json_ready() -> None:
    report = compare(RUN, BASELINE)
    report.sample_failures.extend(
        pick_failures([{"task_id": "t2", "trace": []}, {"task_id": "t1", "trace": []}])
    )
    data = json.loads(json.dumps(report.to_dict()))
    assert data["passed"] is False and data["exit_code"] == 1
    assert data["regressions"] == ["pass_rate"]
    assert sorted(data["missing"]) == ["new_metric", "old_metric"]
    assert [f["task_id"] for f in data["sample_failures"]] == ["t1", "t2"]
    assert {row["metric"]: row["verdict"] for row in data["rows"]}["comm_info"] == "improved"


@dataclass
class Failure:
    task_id: str
    trial: int


def test_pick_failures_is_limited_and_ordered_by_task() -> None:
    failures = [Failure(f"task_{i:02d}", trial) for i in reversed(range(15)) for trial in (0, 1)]
    picked = pick_failures(failures)
    assert len(picked) == 10
    assert [(f.task_id, f.trial) for f in picked[:3]] == [("task_00", 0), ("task_00", 1), ("task_01", 0)]
    shuffled = failures[1::2] + failures[0::2]
    assert [f.task_id for f in pick_failures(shuffled)] == [f.task_id for f in picked]
    assert [f.task_id for f in pick_failures(failures, limit=3)] == ["task_00", "task_00", "task_01"]
    assert pick_failures(failures, limit=0) == []
    assert len(pick_failures(failures[:3])) == 3


def test_pick_failures_with_key_and_bad_input() -> None:
    assert pick_failures(["b", "a", "c"], limit=2, key=lambda s: s) == ["a", "b"]
    with pytest.raises(ValidationError, match="task_id"):
        pick_failures([{"trace": []}])
    with pytest.raises(ValidationError):
        pick_failures([], limit=-1)
