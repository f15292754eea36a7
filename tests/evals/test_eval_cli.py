"""`concierge eval` from the command line: a generated task set, a run, a gate, a smoke run of the real model."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from concierge.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("eval") / "store"
    result = runner.invoke(app, ["domain", "generate", "retail", "--users", "30", "--orders", "80", "--seed", "5",
                                 "--tasks", "9", "--out", str(folder)])
    assert result.exit_code == 0, result.output
    return folder


def test_a_run_a_regression_and_the_gate(store, tmp_path):
    tasks = str(store / "tasks.json")
    good = runner.invoke(app, ["eval", "run", "--tasks", tasks, "--agent-model", "oracle", "--trials", "2",
                               "--out", str(tmp_path / "good")])
    assert good.exit_code == 0, good.output
    assert "1.000 (18/18 complete)" in good.output
    bad = runner.invoke(app, ["eval", "run", "--tasks", tasks, "--agent-model", "flawed:skip_writes", "--trials", "2",
                              "--out", str(tmp_path / "bad"), "--baseline", str(tmp_path / "good")])
    assert bad.exit_code == 1, bad.output  # the gate fails the command
    assert "REGRESSION" in bad.output and "✗ task" in bad.output
    same = runner.invoke(app, ["eval", "compare", str(tmp_path / "good"), str(tmp_path / "good")])
    assert same.exit_code == 0 and "REGRESSION" not in same.output
    again = runner.invoke(app, ["eval", "run", "--tasks", tasks, "--agent-model", "oracle", "--trials", "2",
                                "--out", str(tmp_path / "good")])
    assert again.exit_code == 2 and "--resume" in again.output


def test_every_strategy_runs_with_the_oracle_and_records_its_cost(store, tmp_path):
    tasks = str(store / "tasks.json")
    calls = {}
    for strategy in ("react", "plan", "tot", "router"):
        out = tmp_path / strategy
        result = runner.invoke(app, ["eval", "run", "--tasks", tasks, "--agent-model", "oracle", "--strategy", strategy,
                                     "--limit", "3", "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert "LLM calls" in result.output and "turns by strategy" in result.output
        trials = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
        assert all(t["error"] is None and t["model_calls"] > 0 for t in trials)
        calls[strategy] = sum(t["model_calls"] for t in trials)
    # Planning and branch proposals are model calls of their own, counted with the rest.
    assert calls["plan"] > calls["react"] and calls["tot"] > calls["react"]
    result = runner.invoke(app, ["eval", "run", "--tasks", tasks, "--agent-model", "oracle", "--strategy", "greedy",
                                 "--out", str(tmp_path / "bad")])
    assert result.exit_code == 2 and "unknown strategy 'greedy'" in result.output


def test_guardrails_leave_a_correct_agent_correct(store, tmp_path):
    """Screening and reply checks on: the oracle still passes every task (no false refusal, no
    replaced true claim), and the run records that it ran with them."""
    result = runner.invoke(app, ["eval", "run", "--tasks", str(store / "tasks.json"), "--agent-model", "oracle",
                                 "--guardrails", "--out", str(tmp_path / "guarded")])
    assert result.exit_code == 0, result.output
    assert "1.000 (9/9 complete)" in result.output
    assert json.loads((tmp_path / "guarded" / "run.json").read_text())["guardrails"] is True


def test_a_router_trained_on_eval_runs_then_routes_a_run(store, tmp_path):
    """react with an agent that skips writes fails the write tasks that plan (oracle) passes: those
    tasks are labelled plan, the rest react (cheaper at an equal pass rate)."""
    tasks = str(store / "tasks.json")
    for strategy, agent in (("react", "flawed:skip_writes"), ("plan", "oracle")):
        result = runner.invoke(app, ["eval", "run", "--tasks", tasks, "--agent-model", agent, "--strategy", strategy,
                                     "--out", str(tmp_path / strategy)])
        assert result.exit_code in (0, 1), result.output
    react = [json.loads(line) for line in (tmp_path / "react" / "trials.jsonl").read_text().splitlines()]
    failed = sum(not t["success"] for t in react)
    assert 0 < failed < len(react)  # the data has both labels
    trained = runner.invoke(app, ["eval", "train-router", str(tmp_path / "react"), str(tmp_path / "plan"),
                                  "--out", str(tmp_path / "router.json"), "--k", "3"])
    assert trained.exit_code == 0, trained.output
    assert f"{len(react)} labelled tasks (plan {failed}, react {len(react) - failed})" in trained.output
    routed = runner.invoke(app, ["eval", "run", "--tasks", tasks, "--agent-model", "oracle", "--strategy", "router",
                                 "--router-model", str(tmp_path / "router.json"), "--out", str(tmp_path / "routed")])
    assert routed.exit_code == 0, routed.output
    bad = runner.invoke(app, ["eval", "train-router", str(tmp_path / "routed"), "--out", str(tmp_path / "x.json")])
    assert bad.exit_code == 2 and "ran the 'router' strategy" in bad.output
    bad = runner.invoke(app, ["eval", "run", "--tasks", tasks, "--agent-model", "oracle", "--strategy", "plan",
                              "--router-model", str(tmp_path / "router.json"), "--out", str(tmp_path / "y")])
    assert bad.exit_code == 2 and "--router-model goes with --strategy router" in bad.output


def test_bad_arguments_are_one_clear_line(store, tmp_path):
    result = runner.invoke(app, ["eval", "run", "--tasks", str(store / "tasks.json"), "--agent-model", "gpt"])
    assert result.exit_code == 2 and "unknown agent model spec 'gpt'" in result.output
    result = runner.invoke(app, ["eval", "run", "--tasks", str(tmp_path / "none.json"), "--agent-model", "oracle"])
    assert result.exit_code == 2 and "task file not found" in result.output
    result = runner.invoke(app, ["eval", "compare", str(tmp_path), str(tmp_path)])
    assert result.exit_code == 2 and "no finished trials" in result.output


def test_agreement_command(tmp_path):
    labels = tmp_path / "labels.jsonl"
    rows = [{"id": i, "human": h, "judge": j} for i, (h, j) in enumerate(["yy", "yy", "nn", "yn", "nn", "ny"])]
    labels.write_text("\n".join(json.dumps(r) for r in rows))
    result = runner.invoke(app, ["eval", "agreement", str(labels)])
    assert result.exit_code == 0 and "6 labelled items" in result.output and "kappa" in result.output


@pytest.mark.real_model
@pytest.mark.embedded
@pytest.mark.parametrize("strategy", ["react", "plan", "tot", "router"])
def test_embedded_model_smoke_run_on_three_tasks(store, tmp_path, strategy):
    """The real offline model as the agent under each strategy, the scripted customer: runs end to end
    and is scored (the score itself is whatever a 135M model earns; the smoke is that it runs)."""
    max_turns = "4"  # a smoke: enough turns to identify the customer and act; scores come from eval runs
    result = runner.invoke(app, ["eval", "run", "--tasks", str(store / "tasks.json"), "--agent-model", "embedded",
                                 "--strategy", strategy, "--limit", "3", "--concurrency", "1",
                                 "--max-turns", max_turns, "--out", str(tmp_path / "smoke")])
    print(result.output)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "smoke" / "run.json").read_text())["strategy"] == strategy
    trials = [json.loads(line) for line in (tmp_path / "smoke" / "trials.jsonl").read_text().splitlines()]
    assert len(trials) == 3
    for trial in trials:
        assert trial["error"] is None, trial["error"]
        assert trial["input_tokens"] > 0 and trial["turn_latency_ms"] and trial["model_calls"] > 0
        assert any(m["role"] == "assistant" and m["text"].strip() for m in trial["conversation"])
        assert set(trial["components"]) >= {"DB", "ACTION", "COMMUNICATE", "ENV_ASSERTION"}
        if strategy != "router":
            assert set(trial["strategies"]) == {strategy}, trial["strategies"]
        else:
            assert set(trial["strategies"]) <= {"react", "plan", "tot"} and trial["strategies"]
