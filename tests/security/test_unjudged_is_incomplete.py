"""Row 12 (evals): an NL assertion that was not judged counted as a pass.

Observed on the landed code: with no judge model, a trial whose reward basis holds NL_ASSERTION
was scored as the product of its judged components only, so it counted as a success in the pass
rate, in pass^k and in the regression gate (the run table printed `NL_ASSERTION 1.000 (11 not
judged)` next to a perfect pass rate). Such a trial is incomplete: neither a pass nor a fail, left
out of pass rates and pass^k, and counted beside them in the table, the JSON results, the HTML
report and the gate.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from concierge.cli import app
from concierge.domains.retail.eval_tasks import generate_tasks
from concierge.domains.retail.evaluation import RetailDomain
from concierge.domains.retail.generator import generate_store
from concierge.evals.gate import compare, render_text
from concierge.evals.reference import OracleModel
from concierge.evals.results import TrialResult, gate_metrics, summarize
from concierge.evals.runner import Contestant, EvalRunner
from concierge.evals.tasks import Task, parse_tasks
from concierge.evals.users import ConfirmingUser
from concierge.testing import FunctionModel

ASSERTION = "The agent told the customer what it did."
cli = CliRunner()


def _with_nl(task: Task) -> Task:
    """The task with an NL assertion in its reward basis (what tau2's tasks carry)."""
    criteria = task.evaluation_criteria.model_copy(update={
        "nl_assertions": [ASSERTION], "reward_basis": [*task.evaluation_criteria.reward_basis, "NL_ASSERTION"]})
    return task.model_copy(update={"evaluation_criteria": criteria})


@pytest.fixture(scope="module")
def generated() -> tuple[RetailDomain, list[Task], list[Task]]:
    db = generate_store(users=30, orders=80, seed=11)
    tasks = parse_tasks(generate_tasks(db, 3, seed=11))
    return RetailDomain(db), [_with_nl(t) for t in tasks[:1]], tasks[1:]


def _oracle(domain: RetailDomain) -> Contestant:
    return Contestant("oracle", lambda task, env: OracleModel(task, env, domain.writes()), signed_in=True)


def _incomplete(trials: list[TrialResult]) -> int:
    return sum(1 for t in trials if not t.complete)


def _judge(met: bool) -> FunctionModel:
    def answer(messages: Any, tools: Any) -> str:
        return json.dumps({"results": [{"met": met, "reason": "read the conversation"}]})
    return FunctionModel(answer)


async def test_an_unjudged_trial_is_incomplete_and_pass_hat_k_counts_complete_trials_only(generated) -> None:
    domain, with_nl, plain = generated
    runner = EvalRunner(domain, _oracle(domain), lambda t: ConfirmingUser(t.opening), concurrency=2)
    results = await runner.run([*with_nl, *plain], trials=2)
    unjudged = [r for r in results if r.task_id in {t.id for t in with_nl}]
    assert len(unjudged) == 2
    for r in unjudged:  # every other component is 1.0: the old code called this a pass
        assert r.components["NL_ASSERTION"] is None and r.components["DB"] == 1.0
        assert not r.success, "a trial whose NL assertion was not judged counted as a pass"
        assert not r.complete and r.outcome == "incomplete"
        assert r.to_dict()["outcome"] == "incomplete"
    summary = summarize(results)
    assert (summary["trials"], summary["complete"], summary["incomplete"]) == (6, 4, 2)
    assert summary["successes"] == 4 and summary["pass_rate"] == 1.0  # over the 4 complete trials
    assert summary["pass_hat_k"] == {1: 1.0, 2: 1.0} and summary["pass_hat_k_tasks"] == len(plain)
    assert summary["incomplete_tasks"] == sorted(t.id for t in with_nl)
    assert gate_metrics(results)["pass"] == (4, 4)


@pytest.mark.parametrize(("met", "outcome"), [(True, "pass"), (False, "fail")])
async def test_a_judged_trial_is_complete(generated, met: bool, outcome: str) -> None:
    domain, with_nl, _ = generated
    runner = EvalRunner(domain, _oracle(domain), lambda t: ConfirmingUser(t.opening), judge=_judge(met))
    (result,) = await runner.run(with_nl[:1])
    assert result.complete and result.outcome == outcome and result.components["NL_ASSERTION"] == float(met)


def test_a_trial_stored_by_an_older_run_is_read_as_incomplete() -> None:
    record = {"task_id": "t", "trial": 0, "reward": 1.0, "success": True, "complete": False,
              "components": {"DB": 1.0, "NL_ASSERTION": None}, "details": {}, "stop_reason": "user_stop"}
    trial = TrialResult.from_dict(record)
    assert not trial.success and trial.outcome == "incomplete"
    assert TrialResult.from_dict(trial.to_dict()) == trial


def test_the_gate_compares_complete_trials_and_says_how_many_were_incomplete() -> None:
    def trial(n: int, *, judged: bool, ok: bool = True) -> TrialResult:
        return TrialResult(task_id=f"t{n}", trial=0, reward=float(ok), success=ok, complete=judged,
                           components={"DB": float(ok), "NL_ASSERTION": float(ok) if judged else None},
                           details={}, stop_reason="user_stop")

    baseline = [trial(n, judged=True, ok=n % 10 != 0) for n in range(100)]  # 90% pass
    # Counted as passes, 70 unjudged trials hid a drop to 50% among the 30 judged ones (85% overall).
    new = [trial(n, judged=False) for n in range(70)] + [trial(n, judged=True, ok=n % 2 == 0) for n in range(30)]
    row = next(r for r in compare(gate_metrics(new), gate_metrics(baseline)).rows if r.metric == "pass")
    assert row.rate_new == 0.5 and row.verdict == "regression"
    report = compare(gate_metrics(new), gate_metrics(baseline), incomplete_new=_incomplete(new),
                     incomplete_base=_incomplete(baseline))
    assert not report.passed and report.to_dict()["incomplete"] == {"new": 70, "baseline": 0}
    assert "70 incomplete in the new run, 0 in the baseline" in render_text(report)


def test_table_json_report_and_gate_print_the_incomplete_count(tmp_path: Path) -> None:
    store = tmp_path / "store"
    made = cli.invoke(app, ["domain", "generate", "retail", "--users", "30", "--orders", "80", "--seed", "5",
                            "--tasks", "2", "--out", str(store)])
    assert made.exit_code == 0, made.output
    tasks = json.loads((store / "tasks.json").read_text())
    for task in tasks[:1]:
        task["evaluation_criteria"]["nl_assertions"] = [ASSERTION]
        task["evaluation_criteria"]["reward_basis"].append("NL_ASSERTION")
    (store / "tasks.json").write_text(json.dumps(tasks))
    run = tmp_path / "run"
    result = cli.invoke(app, ["eval", "run", "--tasks", str(store / "tasks.json"), "--agent-model", "oracle",
                              "--trials", "2", "--out", str(run)], terminal_width=200)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.replace("│", " ").split())  # the table's rows, borders dropped
    assert "1.000 (2/2 complete) · 2 incomplete" in text, result.output
    assert "pass^2 1.000 · 2 incomplete" in text, result.output
    assert "1.000 (4/4)" not in text and "1.000 (2 not judged)" not in text
    assert "not judged (2 trials incomplete)" in text
    lines = [json.loads(line) for line in (run / "trials.jsonl").read_text().splitlines()]
    assert sorted(t["outcome"] for t in lines) == ["incomplete"] * 2 + ["pass"] * 2
    assert all(not t["success"] for t in lines if t["outcome"] == "incomplete")
    correctness = next(s for s in json.loads((run / "suites.json").read_text()) if s["name"] == "correctness")
    assert correctness["figures"]["incomplete"] == 2 and correctness["figures"]["complete"] == 2
    page = (run / "report.html").read_text()
    assert "2 of 4 trials are incomplete" in page and "tr class='incomplete'" in page
    gate = cli.invoke(app, ["eval", "compare", str(run), str(run)], terminal_width=200)
    assert gate.exit_code == 0, gate.output
    assert "2 incomplete in the new run, 2 in the baseline" in " ".join(gate.output.split())


def test_a_run_with_no_complete_trial_has_no_pass_rate() -> None:
    from concierge.evals.report import render_report
    from concierge.evals.suites import Budgets, run_suites

    trials = [TrialResult(task_id="t", trial=n, reward=1.0, success=True, complete=False,
                          components={"DB": 1.0, "NL_ASSERTION": None}, details={}, stop_reason="user_stop",
                          turn_latency_ms=[1.0]) for n in range(2)]
    summary = summarize(trials)
    assert summary["pass_rate"] is None and summary["pass_hat_k"] == {} and summary["incomplete"] == 2
    correctness = run_suites(trials, Budgets(min_pass_rate=0.5))[0]
    assert correctness.verdict == "fail" and "no complete trial" in correctness.notes[-1]
    assert "pass" not in gate_metrics(trials)  # the gate reports it missing rather than a 100% pass
    page = render_report({"agent": "oracle"}, trials)
    assert "2 of 2 trials are incomplete" in page and "Every trial passed" not in page
