"""`concierge eval`: run tasks, compare a run with a baseline, check a judge against human labels.

Model specs name who plays each side: `oracle`, `flawed:wrong_order`, `flawed:skip_writes` (reference
agents), `embedded` (the offline SmolLM2), `openai:NAME@BASE_URL` (any OpenAI-compatible server;
key from OPENAI_API_KEY), `anthropic:NAME` (key from ANTHROPIC_API_KEY), and for the user
`scripted` (the task's `user_turns`, else a user who states the request and confirms).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from .cli_redteam import redteam
from .core.errors import ConciergeError, ConfigError, ValidationError
from .llm.base import ChatModel

eval_app = typer.Typer(no_args_is_help=True, help="Evaluate agents on tau2-format tasks; gate regressions.")
eval_app.command("redteam")(redteam)
console = Console(highlight=False)


def model_from_spec(spec: str, role: str) -> ChatModel:
    """A real model from a spec string (the reference agents and the scripted user are not models)."""
    if spec == "embedded":
        from .llm.embedded import EmbeddedModel

        return EmbeddedModel()
    kind, _, rest = spec.partition(":")
    if kind == "openai" and "@" in rest:
        from .llm.openai_compatible import OpenAICompatibleModel

        name, _, base_url = rest.partition("@")
        return OpenAICompatibleModel(name, base_url, api_key=os.environ.get("OPENAI_API_KEY"), timeout_s=120)
    if kind == "anthropic" and rest:
        from .llm.anthropic import AnthropicModel

        key = os.environ.get("ANTHROPIC_API_KEY")
        if not key:
            raise ConfigError("ANTHROPIC_API_KEY is not set", hint=f"export it to use {spec!r} as the {role}")
        return AnthropicModel(rest, key)
    raise ValidationError(
        f"unknown {role} model spec {spec!r}",
        hint="use embedded, openai:NAME@BASE_URL or anthropic:NAME" + (
            ", oracle, flawed:wrong_order or flawed:skip_writes" if role == "agent" else ", scripted"),
    )


def _contestant(spec: str, domain: Any) -> Any:
    from .evals.reference import FLAWS, OracleModel
    from .evals.runner import Contestant

    if spec == "oracle":
        return Contestant("oracle", lambda task, env: OracleModel(task, env, domain.writes()), signed_in=True)
    if spec.startswith("flawed:"):
        flaw = spec.split(":", 1)[1]
        if flaw not in FLAWS:
            raise ValidationError(f"unknown flaw {flaw!r}", hint="one of: " + ", ".join(FLAWS))
        return Contestant(spec, lambda task, env: OracleModel(task, env, domain.writes(), flaw=flaw),  # type: ignore[arg-type]
                          signed_in=True)
    model = model_from_spec(spec, "agent")
    return Contestant(spec, lambda task, env: model)


def _user_factory(spec: str, scripted_confirms: bool) -> Any:
    from .evals.users import ConfirmingUser, ModelUser, ScriptedUser

    if spec == "scripted":
        def scripted(task: Any) -> Any:
            if task.user_turns and not scripted_confirms:
                return ScriptedUser(task.user_turns)
            return ConfirmingUser(task.opening)
        return scripted
    model = model_from_spec(spec, "user")
    return lambda task: ModelUser(model, task)


def _guardrails() -> Any:
    from .guardrails.turn import TurnGuardrails

    return TurnGuardrails()


def _strategy(name: str, domain: Any, router_model: Path | None = None) -> Any:
    from .reasoning.learned import NearestNeighbours
    from .reasoning.routed import IdsInConversation, Routed, TextFeatures, strategy_named
    from .reasoning.router import LearnedRouter

    pattern = getattr(domain, "entity_pattern", None)
    entities = IdsInConversation(pattern) if pattern else None
    if router_model is None:
        return strategy_named(name, entities=entities)
    if name != "router":
        raise ValidationError("--router-model goes with --strategy router")
    return Routed(router=LearnedRouter(NearestNeighbours.load(router_model)), features=TextFeatures(entities))


def _domain(folder: Path) -> Any:
    from .domains.retail.evaluation import RetailDomain

    if not (folder / "db.json").is_file():
        raise ValidationError(f"no db.json in {folder}",
                              hint="point --domain-dir at a tau2-format folder (db.json, policy.md)")
    return RetailDomain.from_folder(folder)


def _print_summary(summary: dict[str, Any], folder: Path) -> None:
    table = Table(title=f"run {folder}", show_header=False)
    incomplete = summary["incomplete"]
    beside = f" · {incomplete} incomplete" if incomplete else ""
    table.add_row("trials", f"{summary['trials']} over {summary['tasks']} tasks, {summary['errors']} errors"
                            + (f", {incomplete} incomplete (not judged)" if incomplete else ""))
    if summary["pass_rate"] is None:
        table.add_row("pass^1 (pass rate)", f"– (no complete trial){beside}")
    else:
        table.add_row("pass^1 (pass rate)",
                      f"{summary['pass_rate']:.3f} ({summary['successes']}/{summary['complete']} complete){beside}")
    for k, value in summary["pass_hat_k"].items():
        if k > 1:
            table.add_row(f"pass^{k}", f"{value:.3f}{beside}")
    for name, comp in summary["components"].items():
        if comp["mean"] is None:
            text = f"not judged ({comp['not_judged']} trials incomplete)"
        else:
            text = f"{comp['mean']:.3f} over {comp['judged']} judged"
            text += f", {comp['not_judged']} not judged (incomplete)" if comp["not_judged"] else ""
        table.add_row(f"  {name}", text)
    latency = summary["turn_latency_ms"]
    if latency["p50"] is not None:
        table.add_row("turn latency p50/p95/p99", f"{latency['p50']:.0f} / {latency['p95']:.0f} / {latency['p99']:.0f} ms")
    per = summary["per_conversation"]
    table.add_row("per conversation", f"{per['model_calls']:.1f} LLM calls, {per['tokens']:,.0f} tokens, "
                                      f"{per['seconds']:.1f} s")
    if summary["strategies"]:
        table.add_row("turns by strategy", ", ".join(f"{k} {v}" for k, v in sorted(summary["strategies"].items())))
    table.add_row("cost per conversation", f"${summary['cost_usd']['mean']:.4f} (max ${summary['cost_usd']['max']:.4f})")
    table.add_row("stop reasons", ", ".join(f"{k} {v}" for k, v in summary["stop_reasons"].items()))
    console.print(table)
    if summary["partial"]:
        console.print(f"[yellow]{incomplete} of {summary['trials']} trials are incomplete: NL assertions were not "
                      "judged (no --judge-model). They count as neither pass nor fail; pass rates and pass^k "
                      "are over the complete trials only.[/]", soft_wrap=True)


def _fail(exc: ConciergeError) -> typer.Exit:
    console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
    return typer.Exit(2 if isinstance(exc, ConfigError | ValidationError) else 1)


@eval_app.command("run")
def run(
    tasks: Annotated[Path, typer.Option(help="tau2-format tasks JSON (db.json and policy.md beside it).")],
    agent_model: Annotated[str, typer.Option(help="oracle | flawed:FLAW | embedded | openai:NAME@URL | anthropic:NAME")],
    user_model: Annotated[str, typer.Option(help="scripted | embedded | openai:NAME@URL | anthropic:NAME")] = "scripted",
    judge_model: Annotated[str | None, typer.Option(help="Model that judges NL assertions (else: not judged).")] = None,
    domain_dir: Annotated[Path | None, typer.Option(help="Domain folder (default: the tasks file's folder).")] = None,
    trials: Annotated[int, typer.Option(min=1, help="Trials per task (pass^k needs k ≤ trials).")] = 1,
    concurrency: Annotated[int, typer.Option(min=1, help="Trials run at once.")] = 4,
    max_turns: Annotated[int, typer.Option(min=1, help="Customer messages per conversation at most.")] = 30,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds per trial before it counts as failed.")] = 600.0,
    task: Annotated[list[str] | None, typer.Option(help="Only these task ids (repeatable).")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N tasks.")] = None,
    out: Annotated[Path | None, typer.Option(help="Run folder (default: runs/<time>-<agent>).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run already in --out.")] = False,
    baseline: Annotated[Path | None, typer.Option(help="Compare with this run; exit 1 on a regression.")] = None,
    min_pass_rate: Annotated[float | None, typer.Option(min=0, max=1, help="Correctness suite: fail below this.")] = None,
    p95_turn_ms: Annotated[float | None, typer.Option(min=0, help="Latency suite: p95 per-turn budget.")] = None,
    cost_budget: Annotated[float | None, typer.Option(min=0, help="Cost suite: USD per conversation.")] = None,
    strategy: Annotated[str, typer.Option(help="How the agent reasons each turn: react | plan | tot | router.")] = "react",
    guardrails: Annotated[bool, typer.Option(
        help="Run the turn guardrails as in production (input screening, checked replies).")] = False,
    router_model: Annotated[Path | None, typer.Option(
        help="With --strategy router: a learned router (eval train-router); the rules decide where it is unsure.")] = None,
) -> None:
    """Run tasks × trials: the agent, a simulated customer, a fresh store per trial; tau2's rewards."""
    from .evals.judge import check_judge_family
    from .evals.results import RunStore, summarize
    from .evals.runner import EvalRunner
    from .evals.suites import Budgets, run_suites
    from .evals.tasks import load_tasks, select_tasks

    try:
        chosen = select_tasks(load_tasks(tasks), task, limit)
        domain = _domain(domain_dir or tasks.parent)
        contestant = _contestant(agent_model, domain)
        turn_strategy = _strategy(strategy, domain, router_model)
        judge = model_from_spec(judge_model, "judge") if judge_model else None
        if judge_model and (warning := check_judge_family(judge_model, agent_model)):
            console.print(f"[yellow]warning: {warning}[/]")
        budgets = Budgets(min_pass_rate=min_pass_rate, p95_turn_ms=p95_turn_ms,
                          max_cost_per_conversation_usd=cost_budget)
        folder = out or Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{agent_model.replace(':', '-').replace('/', '-')}"
        store = RunStore(folder)
        store.start({"tasks": str(tasks), "task_ids": [t.id for t in chosen], "trials": trials, "agent": agent_model,
                     "user": user_model, "judge": judge_model, "max_turns": max_turns, "strategy": strategy,
                     "guardrails": guardrails,
                     "started": time.strftime("%Y-%m-%d %H:%M:%S")}, resume=resume)
        user = _user_factory(user_model, scripted_confirms=contestant.signed_in)
        runner = EvalRunner(domain, contestant, user, judge=judge, max_turns=max_turns, trial_timeout_s=timeout,
                            concurrency=concurrency, store=store, console=console, strategy=turn_strategy,
                            guardrails=_guardrails() if guardrails else None)
        results = asyncio.run(runner.run(chosen, trials))
    except ConciergeError as exc:
        raise _fail(exc) from None
    _print_summary(summarize(results), folder)
    suites = run_suites(results, budgets)
    (folder / "suites.json").write_text(json.dumps([r.to_dict() for r in suites], indent=2), encoding="utf-8")
    for suite in suites:
        colour = {"pass": "green", "fail": "bold red"}.get(suite.verdict, "yellow")
        console.print(f"suite {suite.name}: [{colour}]{suite.verdict}[/] " + "; ".join(suite.notes), soft_wrap=True)
    _write_report(folder)
    code = _compare(folder, baseline, 0.05, 0.02) if baseline is not None else 0
    raise typer.Exit(code or int(any(s.verdict == "fail" for s in suites)))


def _write_report(folder: Path) -> None:
    try:
        from .evals.report import write_report
    except ImportError:
        return
    try:
        console.print(f"report: {write_report(folder)}")
    except ConciergeError as exc:
        console.print(f"[yellow]no report: {exc}[/]")


def _compare(run_folder: Path, baseline_folder: Path, alpha: float, min_drop: float) -> int:
    from .evals.gate import compare as gate_compare
    from .evals.gate import pick_failures, render_text
    from .evals.results import RunStore, gate_metrics, incomplete_count

    run_trials, base_trials = RunStore(run_folder).load(), RunStore(baseline_folder).load()
    for folder, found in ((run_folder, run_trials), (baseline_folder, base_trials)):
        if not found:
            raise ValidationError(f"{folder} holds no finished trials", hint="is it a run folder?")
    report = gate_compare(gate_metrics(run_trials), gate_metrics(base_trials), alpha=alpha, min_drop=min_drop,
                          incomplete_new=incomplete_count(run_trials),
                          incomplete_base=incomplete_count(base_trials))
    failures = pick_failures([t for t in run_trials if t.outcome == "fail"], key=lambda t: t.task_id)
    console.print(render_text(report))
    for trial in failures:
        last = " | ".join(f"{m['role']}: {' '.join(m['text'].split())[:80]}" for m in trial.conversation[-3:])
        console.print(f"[red]✗ task {trial.task_id} trial {trial.trial}[/] reward {trial.reward:.2f} "
                      f"{trial.components} stop {trial.stop_reason} · {last}", soft_wrap=True)
    return report.exit_code


@eval_app.command("compare")
def compare(
    run_folder: Annotated[Path, typer.Argument(help="The new run's folder.")],
    baseline_folder: Annotated[Path, typer.Argument(help="The baseline run's folder.")],
    alpha: Annotated[float, typer.Option(min=0.0001, max=0.5, help="Significance level.")] = 0.05,
    min_drop: Annotated[float, typer.Option(min=0.0, max=1.0, help="Smallest drop that counts.")] = 0.02,
) -> None:
    """One-sided two-proportion z-test per metric; exit 1 when a metric regressed."""
    try:
        code = _compare(run_folder, baseline_folder, alpha, min_drop)
    except ConciergeError as exc:
        raise _fail(exc) from None
    raise typer.Exit(code)


@eval_app.command("agreement")
def agreement(labels: Annotated[Path, typer.Argument(help="JSONL lines {id, human, judge}.")]) -> None:
    """How far a judge agrees with human labels: raw agreement and Cohen's kappa."""
    from .evals.judge import agreement_from_jsonl

    try:
        report = agreement_from_jsonl(labels)
    except ConciergeError as exc:
        raise _fail(exc) from None
    console.print(f"{report.n} labelled items: raw agreement {report.raw_agreement:.3f}, "
                  f"Cohen's kappa {report.kappa:.3f}")
    for row in report.per_label:
        console.print(f"  {row.label}: human {row.human}, judge {row.judge}")
    if report.warning:
        console.print(f"[yellow]warning: {report.warning}[/]")


@eval_app.command("train-router")
def train_router(
    runs: Annotated[list[Path], typer.Argument(help="Run folders of the same tasks, each with one fixed strategy.")],
    out: Annotated[Path, typer.Option(help="Where to write the router model (JSON).")],
    tasks: Annotated[Path | None, typer.Option(help="The runs' tasks file (default: from the first run).")] = None,
    k: Annotated[int, typer.Option(min=1, help="Neighbours that vote.")] = 5,
) -> None:
    """Train a learned router: per task, the strategy that passed at the lowest cost, from its opening message."""
    from .evals.results import RunStore
    from .evals.router_data import router_examples
    from .reasoning.learned import NearestNeighbours

    try:
        tasks_file = tasks or Path(RunStore(runs[0]).config().get("tasks", ""))
        domain = _domain(tasks_file.parent)
        examples = router_examples(runs, domain.tools())
        if not examples:
            raise ValidationError("no task passed under any strategy: nothing to learn from",
                                  hint="run more trials, or a stronger model")
        model = NearestNeighbours(tuple(examples), k=k)
        out.parent.mkdir(parents=True, exist_ok=True)
        model.save(out)
    except ConciergeError as exc:
        raise _fail(exc) from None
    counts = Counter(e.strategy for e in examples)
    console.print(f"{len(examples)} labelled tasks (" + ", ".join(f"{s} {n}" for s, n in sorted(counts.items()))
                  + f"), k={k}: wrote {out}")


@eval_app.command("report")
def report(run_folder: Annotated[Path, typer.Argument(help="A run folder.")]) -> None:
    """Write the run's self-contained HTML report (report.html in the run folder)."""
    from .evals.report import write_report

    try:
        console.print(f"report: {write_report(run_folder)}")
    except ConciergeError as exc:
        raise _fail(exc) from None
