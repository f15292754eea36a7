"""Runs tasks × trials: agent × user simulator × a fresh copy of the domain's backend per trial.

Each trial runs the real runtime (context, confirmation gate, transactional executor, ledger)
against its own environment, then scores it with tau2's rewards. Trials run concurrently up to
`concurrency`, each under a timeout; a trial that fails or times out is recorded with its error
(reward 0, a complete fail whatever a judge would have said), never dropped. A trial with a
component of its basis not judged is incomplete: never a pass. Finished trials are written to the run folder as they end, so a
crashed run resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..core.errors import ValidationError
from ..core.principal import Principal
from ..guardrails.turn import TurnGuardrails
from ..llm.base import ChatModel
from ..runtime.runtime import Runtime
from ..runtime.strategy import TurnStrategy
from ..tools.ledger import InMemoryLedger
from ..tools.pipeline import TransactionalExecutor
from .environment import Domain, Environment
from .results import RunStore, TrialResult
from .rewards import Call, score
from .tasks import Task
from .users import OUT_OF_SCOPE, TRANSFER, UserSimulator, ends_conversation

TRANSFER_TOOL = "transfer_to_human_agents"


@dataclass(frozen=True, slots=True)
class Contestant:
    """The agent under evaluation: how to get its model for a trial, and whether it starts signed in.

    `model_for(task, environment)` is called once per trial, so stateful models (the oracle)
    start fresh. `signed_in` starts the session as the task's customer (a logged-in user);
    otherwise the agent must identify the customer itself, as in tau2.
    """

    name: str
    model_for: Callable[[Task, Environment], ChatModel]
    signed_in: bool = False


UserFactory = Callable[[Task], UserSimulator]


def _check_positive(name: str, value: object, *, allow_float: bool = False) -> None:
    kinds = (int, float) if allow_float else (int,)
    if isinstance(value, bool) or not isinstance(value, kinds) or value <= 0:  # type: ignore[operator]
        raise ValidationError(f"{name} must be a positive {'number' if allow_float else 'integer'}, got {value!r}")


class EvalRunner:
    def __init__(self, domain: Domain, contestant: Contestant, user: UserFactory, *,
                 judge: ChatModel | None = None, max_turns: int = 30, trial_timeout_s: float = 600.0,
                 concurrency: int = 1, store: RunStore | None = None, console: Console | None = None,
                 strategy: TurnStrategy | None = None, guardrails: TurnGuardrails | None = None) -> None:
        _check_positive("max_turns", max_turns)
        _check_positive("trial_timeout_s", trial_timeout_s, allow_float=True)
        _check_positive("concurrency", concurrency)
        self.domain, self.contestant, self.user, self.judge = domain, contestant, user, judge
        self.max_turns, self.trial_timeout_s, self.concurrency = max_turns, trial_timeout_s, concurrency
        self.store = store
        self.console = console
        self.strategy = strategy  # how the agent reasons each turn (None: the runtime's default, ReAct)
        self.guardrails = guardrails  # screen messages and check replies as in production (None: off)
        self._gold: dict[str, asyncio.Future[str]] = {}

    async def run(self, tasks: Sequence[Task], trials: int = 1) -> list[TrialResult]:
        """Every (task, trial) not already in the store; returns all trials of the run, in order."""
        _check_positive("trials", trials)
        done = {(r.task_id, r.trial): r for r in (self.store.load() if self.store else [])}
        todo = [(task, n) for task in tasks for n in range(trials) if (task.id, n) not in done]
        results = dict(done)
        semaphore = asyncio.Semaphore(self.concurrency)
        with self._progress(len(tasks) * trials, list(done.values())) as advance:
            async def one(task: Task, n: int) -> None:
                async with semaphore:
                    result = await self.run_trial(task, n)
                if self.store is not None:
                    self.store.append(result)
                results[(task.id, n)] = result
                advance(result)

            await asyncio.gather(*(one(task, n) for task, n in todo))
        order = {task.id: i for i, task in enumerate(tasks)}
        return sorted((r for r in results.values() if r.task_id in order), key=lambda r: (order[r.task_id], r.trial))

    def _progress(self, total: int, already: list[TrialResult]) -> Any:
        runner = self

        class _Bar:
            def __enter__(self) -> Callable[[TrialResult], None]:
                self.passed, self.finished = sum(r.success for r in already), len(already)
                self.incomplete = sum(1 for r in already if not r.complete)
                self.bar = None
                if runner.console is not None:
                    self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                        TimeElapsedColumn(), console=runner.console, transient=False)
                    self.bar.start()
                    self.task = self.bar.add_task(self._text(), total=total, completed=self.finished)
                return self.advance

            def _text(self) -> str:
                judged = self.finished - self.incomplete
                rate = f"{self.passed / judged:.0%}" if judged else "–"
                extra = f", {self.incomplete} incomplete" if self.incomplete else ""
                return f"trials · pass {self.passed}/{judged} ({rate}{extra})"

            def advance(self, result: TrialResult) -> None:
                self.finished += 1
                self.passed += result.success
                self.incomplete += not result.complete
                if self.bar is not None:
                    self.bar.update(self.task, advance=1, description=self._text())

            def __exit__(self, *exc: object) -> None:
                if self.bar is not None:
                    self.bar.stop()

        return _Bar()

    async def gold_hash(self, task: Task) -> str:
        """The final state of the expected actions replayed on a fresh copy (once per task)."""
        if task.id not in self._gold:
            future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            self._gold[task.id] = future
            environment = self.domain.environment(task)
            try:
                if task.initial_state is not None:
                    await environment.replay(task.initial_state.initialization_actions)
                await environment.replay(task.evaluation_criteria.actions)
                future.set_result(environment.state_hash())
            except BaseException as exc:
                future.set_exception(exc)
                raise
            finally:
                await environment.aclose()
        return await self._gold[task.id]

    async def run_trial(self, task: Task, trial: int) -> TrialResult:
        started = time.perf_counter()
        record = _Recorder()
        environment = self.domain.environment(task)
        try:
            try:
                stop = await asyncio.wait_for(self._converse(task, trial, environment, record),
                                              self.trial_timeout_s)
                error = None
            except TimeoutError:
                stop, error = "timeout", f"the trial took longer than {self.trial_timeout_s:g} s"
            except Exception as exc:  # noqa: BLE001 - one broken trial must not end the run
                stop, error = "error", f"{type(exc).__name__}: {exc}"
            gold = await self.gold_hash(task)
            rewards = await score(task, environment, gold_hash=gold, calls=record.calls,
                                  agent_messages=record.agent_messages, transcript=record.transcript(),
                                  judge=self.judge)
        finally:
            await environment.aclose()
        failed = error is not None
        return TrialResult(
            task_id=task.id, trial=trial, reward=0.0 if failed else rewards.reward,
            success=not failed and rewards.success, complete=failed or rewards.complete,
            components=rewards.components,
            details=rewards.details, stop_reason=stop, conversation=record.conversation,
            tool_calls=record.tool_calls, ledger=record.ledger, input_tokens=record.input_tokens,
            output_tokens=record.output_tokens, cost_usd=record.cost_usd, turn_latency_ms=record.turn_ms,
            first_response_ms=record.first_ms, duration_s=time.perf_counter() - started, error=error,
            model_calls=record.model_calls, strategies=dict(record.strategies),
        )

    async def _converse(self, task: Task, trial: int, environment: Environment, record: _Recorder) -> str:
        initial = task.initial_state
        if initial is not None and initial.initialization_actions:
            await environment.replay(initial.initialization_actions)
        model = self.contestant.model_for(task, environment)
        ledger = InMemoryLedger()
        runtime = Runtime(self.domain.agent(model, environment), executor=TransactionalExecutor(ledger),
                          strategy=self.strategy, guardrails=self.guardrails)
        customer = environment.customer_of(task.evaluation_criteria.actions) if self.contestant.signed_in else None
        principal = Principal(f"eval-{task.id}-{trial}", scopes=self.domain.customer_scopes, customer_id=customer)
        session = f"eval-{task.id}-{trial}-{next(_sessions)}"
        user = self.user(task)
        text = await user.start()
        try:
            for _ in range(self.max_turns):
                record.say("user", text)
                started = time.perf_counter()
                result = await runtime.turn(session, text, principal=principal)
                record.turn(result, (time.perf_counter() - started) * 1000)
                if result.stopped_by == "escalated":
                    return "escalated"
                if any(s.name == TRANSFER_TOOL and not s.error for s in result.tool_calls):
                    return "transfer"
                text = await user.reply(result)
                if ends_conversation(text):
                    record.say("user", text)
                    return "transfer" if TRANSFER in text else "out_of_scope" if OUT_OF_SCOPE in text else "user_stop"
            return "max_turns"
        finally:
            record.ledger = [e.to_dict() for e in await ledger.entries(session)]


_sessions = itertools.count(1)


class _Recorder:
    """Collects a trial's conversation, calls, usage and timings as the turns happen."""

    def __init__(self) -> None:
        self.conversation: list[dict[str, str]] = []
        self.agent_messages: list[str] = []
        self.calls: list[Call] = []
        self.tool_calls: list[dict[str, Any]] = []
        self.ledger: list[dict[str, Any]] = []
        self.input_tokens = self.output_tokens = 0
        self.cost_usd = 0.0
        self.turn_ms: list[float] = []
        self.first_ms: list[float] = []
        self.model_calls = 0
        self.strategies: Counter[str] = Counter()

    def say(self, role: str, text: str) -> None:
        self.conversation.append({"role": role, "text": text})

    def turn(self, result: Any, elapsed_ms: float) -> None:
        self.say("assistant", result.reply)
        self.agent_messages.append(result.reply)
        self.input_tokens += result.usage.input_tokens
        self.output_tokens += result.usage.output_tokens
        self.cost_usd += result.usage.cost_usd
        self.turn_ms.append(elapsed_ms)
        self.model_calls += sum(1 for s in result.steps if s.kind == "model")
        if result.reasoning:  # the strategy that ran the turn: the router's pick, else the first step's
            self.strategies[result.reasoning[0].strategy] += 1
        first_model = next((s for s in result.steps if s.kind == "model"), None)
        if first_model is not None:
            self.first_ms.append(first_model.latency_ms)
        for step in result.tool_calls:
            arguments = dict(step.arguments or {})
            self.calls.append(Call(step.name, arguments))
            self.tool_calls.append({"name": step.name, "arguments": arguments, "error": step.error,
                                    "result": step.result_summary, "latency_ms": round(step.latency_ms, 3)})

    def transcript(self) -> str:
        return "\n".join(f"{m['role']}: {m['text']}" for m in self.conversation)
