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
    assert "1.000 (18/18)" in good.output
    bad = runner.invoke(app, ["eval", "run", "--tasks", tasks, "--agent-model", "flawed:skip_writes", "--trials", "2",
                              "--out", str(tmp_path / "bad"), "--baseline", str(tmp_path / "good")])
    assert bad.exit_code == 1, bad.output  # the gate fails the command
    assert "REGRESSION" in bad.output and "✗ task" in bad.output
    same = runner.invoke(app, ["eval", "compare", str(tmp_path / "good"), str(tmp_path / "good")])
    assert same.exit_code == 0 and "REGRESSION" not in same.output
    again = runner.invoke(app, ["eval", "run", "--tasks", tasks, "--agent-model", "oracle", "--trials", "2",
                                "--out", str(tmp_path / "good")])
    assert again.exit_code == 2 and "--resume" in again.output


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
def test_embedded_model_smoke_run_on_three_tasks(store, tmp_path):
    """The real offline model as the agent, the scripted customer: runs end to end and is scored."""
    result = runner.invoke(app, ["eval", "run", "--tasks", str(store / "tasks.json"), "--agent-model", "embedded",
                                 "--limit", "3", "--concurrency", "1", "--out", str(tmp_path / "smoke")])
    print(result.output)
    assert result.exit_code == 0, result.output
    trials = [json.loads(line) for line in (tmp_path / "smoke" / "trials.jsonl").read_text().splitlines()]
    assert len(trials) == 3
    for trial in trials:
        assert trial["error"] is None, trial["error"]
        assert trial["input_tokens"] > 0 and trial["turn_latency_ms"]
        assert any(m["role"] == "assistant" and m["text"].strip() for m in trial["conversation"])
        assert set(trial["components"]) >= {"DB", "ACTION", "COMMUNICATE", "ENV_ASSERTION"}
