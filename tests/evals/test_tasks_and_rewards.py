"""Task files are validated with errors that say where; each reward component does what tau2 says."""

from __future__ import annotations

import json

import pytest

from concierge.core.errors import ValidationError
from concierge.evals.rewards import Call, Rewards, action_reward, communicate_reward, env_assertion_reward
from concierge.evals.tasks import Action, EnvAssertion, load_tasks, parse_tasks, select_tasks

SCENARIO = {"instructions": {"reason_for_call": "cancel #W1", "known_info": "email a@b.c"}}


def task(**overrides):
    return {"id": "t1", "user_scenario": SCENARIO, **overrides}


def test_a_minimal_task_gets_tau2_defaults():
    (t,) = parse_tasks([task(evaluation_criteria={"actions": [
        {"action_id": "a", "requestor": None, "name": "get_order_details", "arguments": {"order_id": "#W1"}}],
        "nl_assertions": None})])
    criteria = t.evaluation_criteria
    assert criteria.actions[0].requestor == "assistant" and criteria.nl_assertions == []
    assert criteria.reward_basis == ["DB", "COMMUNICATE"] and t.opening == "cancel #W1"
    assert "What you know: email a@b.c" in t.user_scenario.describe()
    assert parse_tasks({"tasks": [task(id=7)]})[0].id == "7"


@pytest.mark.parametrize(("data", "message"), [
    ({"nope": 1}, "expected a list of tasks"),
    ([], "no tasks"),
    (["x"], "task #0: expected an object"),
    ([{"id": "t9"}], "task 't9': field user_scenario: Field required"),
    ([task(evaluation_criteria={"reward_basis": ["DB", "VIBES"]})], "task 't1': field evaluation_criteria.reward_basis.1"),
    ([task(evaluation_criteria={"reward_basis": []})], "reward_basis is empty"),
    ([task(), task()], "task 't1': duplicate task id"),
    ([task(initial_state={"message_history": [{"role": "user"}]})], "message history are not supported"),
])
def test_bad_tasks_name_the_file_the_task_and_the_field(data, message):
    with pytest.raises(ValidationError, match="tasks.json") as caught:
        parse_tasks(data, "tasks.json")
    assert message in str(caught.value)


def test_task_files_and_selection(tmp_path):
    with pytest.raises(ValidationError, match="not found"):
        load_tasks(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValidationError, match="bad.json: not valid JSON"):
        load_tasks(bad)
    good = tmp_path / "tasks.json"
    good.write_text(json.dumps([task(id="a"), task(id="b"), task(id="c")]))
    tasks = load_tasks(good)
    assert [t.id for t in select_tasks(tasks, ["c", "a"])] == ["a", "c"]
    assert [t.id for t in select_tasks(tasks, limit=2)] == ["a", "b"]
    with pytest.raises(ValidationError, match="unknown task ids: z"):
        select_tasks(tasks, ["z"])


def test_communicate_ignores_case_and_commas():
    assert communicate_reward(["1,234.50", "Delivered"], ["Your refund of $1234.50 is on its way.",
                                                         "The order was DELIVERED yesterday."]) == (1.0, [])
    assert communicate_reward(["1234.50", "pending"], ["It is 1,234.50 in total."]) == (0.0, ["pending"])
    assert communicate_reward([], []) == (1.0, [])


def test_action_compares_only_compare_args_when_given():
    expected = [Action(action_id="x", name="cancel_pending_order",
                       arguments={"order_id": "#W1", "reason": "no longer needed"}, compare_args=["order_id"])]
    assert action_reward(expected, [Call("cancel_pending_order", {"order_id": "#W1", "reason": "other"})])[0] == 1.0
    assert action_reward(expected, [Call("cancel_pending_order", {"order_id": "#W2", "reason": "x"})]) == (0.0, ["x"])
    strict = [expected[0].model_copy(update={"compare_args": None})]
    assert action_reward(strict, [Call("cancel_pending_order", {"order_id": "#W1", "reason": "other"})])[0] == 0.0
    by_user = [expected[0].model_copy(update={"requestor": "user"})]
    assert action_reward(by_user, [])[0] == 1.0  # the user's own actions are not the agent's to make


def test_env_assertions_and_the_product_over_the_basis():
    class Env:
        def check(self, func_name, arguments):
            return arguments["order_id"] == "#W1"

    passing = EnvAssertion(func_name="order_status_is", arguments={"order_id": "#W1", "status": "cancelled"})
    failing = EnvAssertion(func_name="order_status_is", arguments={"order_id": "#W2"}, message="W2 cancelled")
    negated = failing.model_copy(update={"assert_value": False})
    assert env_assertion_reward([passing, negated], Env()) == (1.0, [])  # type: ignore[arg-type]
    assert env_assertion_reward([passing, failing], Env()) == (0.0, ["W2 cancelled"])  # type: ignore[arg-type]
    rewards = Rewards({"DB": 1.0, "COMMUNICATE": 0.0, "NL_ASSERTION": None}, ["DB", "NL_ASSERTION"])
    assert rewards.reward == 1.0 and not rewards.complete  # COMMUNICATE is outside the basis
    assert not rewards.success and rewards.outcome == "incomplete"  # not judged is never a pass
    judged = Rewards({"DB": 1.0, "NL_ASSERTION": 1.0}, ["DB", "NL_ASSERTION"])
    assert judged.success and judged.outcome == "pass"
    assert Rewards({"DB": 0.0, "NL_ASSERTION": 1.0}, ["DB", "NL_ASSERTION"]).reward == 0.0


def test_suites_report_budgets_and_an_unconfigured_safety_slot():
    from concierge.evals.results import TrialResult
    from concierge.evals.suites import Budgets, run_suites

    def trial(n, success, cost):
        return TrialResult(task_id=f"t{n}", trial=0, reward=float(success), success=success, complete=True,
                           components={"DB": float(success)}, details={}, stop_reason="user_stop", cost_usd=cost,
                           turn_latency_ms=[100.0 * (n + 1)], first_response_ms=[50.0])

    trials = [trial(0, True, 0.01), trial(1, True, 0.02), trial(2, False, 0.05)]
    loose = {r.name: r for r in run_suites(trials)}
    assert [loose[n].verdict for n in ("correctness", "latency", "cost")] == ["pass"] * 3
    assert loose["safety"].verdict == "not configured"
    strict = {r.name: r for r in run_suites(trials, Budgets(min_pass_rate=0.9, p95_turn_ms=150,
                                                            max_cost_per_conversation_usd=0.03))}
    assert [strict[n].verdict for n in ("correctness", "latency", "cost")] == ["fail"] * 3
    assert strict["cost"].figures["over_budget"] == 1 and "t2" in strict["cost"].notes[0]
    with pytest.raises(ValidationError, match="min_pass_rate"):
        Budgets(min_pass_rate=1.5)


async def test_nl_assertions_are_judged_by_the_judge_or_reported_not_judged():
    from concierge.evals.rewards import nl_assertion_reward
    from concierge.testing import ScriptedModel

    verdict = '{"results": [{"met": true, "reason": "said"}, {"met": %s, "reason": "x"}]}'
    assertions = ["The agent confirmed before cancelling.", "The agent gave the refund amount."]
    assert await nl_assertion_reward(None, "transcript", assertions) == (None, [])
    assert (await nl_assertion_reward(None, "transcript", []))[0] == 1.0  # nothing to judge
    met, found = await nl_assertion_reward(ScriptedModel([verdict % "true"]), "transcript", assertions)
    assert met == 1.0 and [v["met"] for v in found] == [True, True]
    unmet, found = await nl_assertion_reward(ScriptedModel([verdict % "false"]), "transcript", assertions)
    assert unmet == 0.0 and found[1] == {"assertion": assertions[1], "met": False, "reason": "x"}
