"""A live API server to attack, and a schemathesis stateful run against it.

`live_api(folder)` serves the concierge app (sessions and ledger in SQLite, a model that echoes)
on a loopback port, as `tests/serving` and `bench/api_fuzz.py` both need it. `stateful_fuzz`
drives it with schemathesis's state machine: it follows the OpenAPI links of the published spec
(a session opened by one call is read, talked to, confirmed in, audited and ended by the next),
mixes in invalid requests, and times every call. The caller decides what to assert; the run
itself only records.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis
import schemathesis
from hypothesis.errors import Flaky
from schemathesis import Case, CheckContext, Response
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.generation.stateful.state_machine import StepInput, StepOutput
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.schemas import OpenApiSchema

from ..runtime.agent import Agent
from ..runtime.runtime import Runtime
from ..runtime.sessions.sql import SqlSessionStore
from ..security.tenants import TenantDirectory
from ..serving.app import ServeOptions, create_app
from ..serving.ratelimit import InProcessRateLimiter
from ..serving.records import SessionDirectory
from ..serving.service import TurnService
from ..serving.webhooks import DeliveryLog
from ..tools.ledger import SqlLedger
from ..tools.pipeline import TransactionalExecutor
from .models import EchoModel
from .serving import ServerThread

SLOW_S = 1.0  # an answer slower than this counts as slow


@dataclass
class LiveApi:
    """A running server and its tenant's directory (keys are issued on the server's loop)."""

    server: ServerThread
    service: TurnService
    tenant: str

    @property
    def url(self) -> str:
        return self.server.url

    def issue_key(self, role: str, label: str = "fuzzer") -> str:
        return self.server.call(self.service.tenants.issue_key(self.tenant, role, label))


@contextmanager
def live_api(folder: Path, *, tenant: str = "acme", demo: bool = True) -> Iterator[LiveApi]:
    """The app on a loopback port, with `tenant` created at rates no fuzzer reaches."""
    url = f"sqlite+aiosqlite:///{folder}/serve.db"
    holder: dict[str, TurnService] = {}

    def make_app() -> Any:
        agent = Agent(instructions="You help.", model=EchoModel())
        runtime = Runtime(agent, store=SqlSessionStore(url), executor=TransactionalExecutor(SqlLedger(url)))
        service = TurnService(runtime, TenantDirectory(url), SessionDirectory(url), DeliveryLog(url),
                              InProcessRateLimiter())
        holder["service"] = service
        return create_app(service, ServeOptions(demo_tenant=tenant if demo else None))

    with ServerThread(make_app) as server:
        service = holder["service"]
        server.call(service.tenants.create_tenant(tenant, rate=(100_000.0, 100_000),
                                                  user_rate=(100_000.0, 100_000)))
        yield LiveApi(server, service, tenant)


def error_body_shape(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Every 4xx/5xx carries `{"error": {"code": str, "message": str}}`."""
    if response.status_code < 400:
        return None
    try:
        body = response.json()
    except ValueError as exc:  # not JSON
        raise AssertionError(f"{response.status_code} without a JSON body: {response.text[:200]!r}") from exc
    error = body.get("error") if isinstance(body, dict) else None
    assert isinstance(error, dict), f"{response.status_code} body has no 'error' object: {body!r}"
    assert isinstance(error.get("code"), str) and error["code"], f"error.code missing: {body!r}"
    assert isinstance(error.get("message"), str) and error["message"], f"error.message missing: {body!r}"
    return None


# Beyond "no 5xx": declared statuses, content types and bodies, and invalid requests get a 4xx.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection]
# Statuses that reject invalid data besides schemathesis's defaults: a body over the size limit.
REJECTIONS = ("413",)


def load_schema(base_url: str) -> OpenApiSchema:
    """The published spec, with checks that know every way the server rejects invalid data."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", timeout=30)
    rejection = schema.config.checks.negative_data_rejection
    rejection.expected_statuses = [*rejection.expected_statuses,
                                   *(s for s in REJECTIONS if s not in rejection.expected_statuses)]
    return schema


@dataclass
class FuzzStats:
    """What a stateful run saw: every call's operation, status and time, and what went wrong."""

    slow_s: float = SLOW_S
    calls: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    by_operation_ms: dict[str, list[float]] = field(default_factory=dict)
    statuses_by_operation: dict[str, Counter[int]] = field(default_factory=dict)
    server_errors: list[str] = field(default_factory=list)  # one line per 5xx answer
    slow: list[str] = field(default_factory=list)  # one line per call slower than slow_s
    failures: dict[str, str] = field(default_factory=dict)  # check failures, first per operation and check
    scenarios: int = 0
    restarts: int = 0  # runs Hypothesis ended early because the server's state changed under a replay
    linked: int = 0  # calls whose session id came from an earlier answer (a followed link)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    def record(self, case: Case, response: Response, elapsed_s: float) -> None:
        label = case.operation.label
        self.calls[label] += 1
        self.statuses[response.status_code] += 1
        self.latencies_ms.append(elapsed_s * 1000)
        self.by_operation_ms.setdefault(label, []).append(elapsed_s * 1000)
        self.statuses_by_operation.setdefault(label, Counter())[response.status_code] += 1
        line = f"{label} -> {response.status_code} in {elapsed_s * 1000:.0f} ms: {response.text[:200]!r}"
        if response.status_code >= 500:
            self.server_errors.append(line)
        if elapsed_s >= self.slow_s:
            self.slow.append(line)

    def fail(self, case: Case, response: Response, title: str, message: str) -> None:
        """Keep the first failure of each check on each operation (request and answer cut short)."""
        body = case.body if isinstance(case.body, dict | list | str) else None
        request = f"{case.operation.label} {case.path_parameters or {}} body {str(body)[:300]!r}"
        self.failures.setdefault(f"{case.operation.label}: {title}",
                                 f"{message[:600]}\n{request}\n-> {response.status_code} {response.text[:300]!r}")

    def percentile(self, q: float) -> float:
        """The q-th percentile (0-100) of the call latencies, in ms."""
        return percentile(self.latencies_ms, q)

    def summary(self) -> str:
        """One line: calls, scenarios, statuses, latencies, 5xx and slow calls."""
        return (f"{self.total:,} calls in {self.scenarios:,} scenarios ({self.linked:,} on a linked session) "
                f"in {self.seconds:.1f} s; statuses {dict(sorted(self.statuses.items()))}; "
                f"p50 {self.percentile(50):.1f} ms, p99 {self.percentile(99):.1f} ms, "
                f"max {max(self.latencies_ms, default=0.0):.1f} ms; {len(self.server_errors)} 5xx, "
                f"{len(self.slow)} slower than {self.slow_s:g} s")

    def table(self) -> str:
        """Markdown: calls per operation, status counts, latencies and the two counts that must be 0."""
        lines = ["| operation | calls | statuses | p50 ms | p99 ms | max ms |", "|---|---:|---|---:|---:|---:|"]
        for label, count in sorted(self.calls.items()):
            times = self.by_operation_ms[label]
            statuses = ", ".join(f"{code}×{n:,}" for code, n in sorted(self.statuses_by_operation[label].items()))
            lines.append(f"| `{label}` | {count:,} | {statuses} | {percentile(times, 50):.1f} | "
                         f"{percentile(times, 99):.1f} | {max(times):.1f} |")
        lines += ["", "| status | answers |", "|---|---:|"]
        lines += [f"| {status} | {count:,} |" for status, count in sorted(self.statuses.items())]
        lines += ["", "| measure | value |", "|---|---:|",
                  f"| calls | {self.total:,} |", f"| scenarios | {self.scenarios:,} |",
                  f"| runs ended early by a replay (server state changed) | {self.restarts:,} |",
                  f"| calls on a session from an earlier answer | {self.linked:,} |",
                  f"| p50 | {self.percentile(50):.1f} ms |", f"| p99 | {self.percentile(99):.1f} ms |",
                  f"| max | {max(self.latencies_ms, default=0.0):.1f} ms |",
                  f"| 5xx answers | {len(self.server_errors)} |",
                  f"| answers slower than {self.slow_s:g} s | {len(self.slow)} |",
                  f"| check failures (operation × check) | {len(self.failures)} |",
                  f"| wall time | {self.seconds:.1f} s |"]
        return "\n".join(lines)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100, inclusive method) of `values`; 0 when there are none."""
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=1000, method="inclusive")[min(999, max(1, round(q * 10))) - 1]


def stateful_fuzz(base_url: str, key: str, *, cases: int, steps: int = 25, scenarios_per_run: int = 40,
                  slow_s: float = SLOW_S, checks: bool = True) -> FuzzStats:
    """Run schemathesis's state machine against `base_url` with `key` until at least `cases` calls.

    Every call carries `key` (an admin key reaches every operation); scenarios of up to `steps`
    calls follow the spec's links from one answer to the next. Failures are recorded, not
    raised, so one run reports all of them.
    """
    machine = load_schema(base_url).as_state_machine()
    stats = FuzzStats(slow_s=slow_s)
    credentials = {"authorization", "x-api-key"}

    class Fuzz(machine):  # type: ignore[misc, valid-type]
        def setup(self) -> None:
            stats.scenarios += 1

        def step(self, input: StepInput) -> StepOutput:
            if input.transition is not None and any(name == "session_id" for _, name in input.applied_parameters):
                stats.linked += 1  # the session id came from an earlier answer
            return super().step(input)

        def before_call(self, case: Case) -> None:
            headers = {k: v for k, v in (case.headers or {}).items() if k.lower() not in credentials}
            case.headers = {**headers, "Authorization": f"Bearer {key}"}

        def get_call_kwargs(self, case: Case) -> dict[str, Any]:
            return {"base_url": base_url, "timeout": 30}

        def call(self, case: Case, **kwargs: Any) -> Response:
            started = time.perf_counter()
            response = super().call(case, **kwargs)
            stats.record(case, response, time.perf_counter() - started)
            return response

        def validate_response(self, response: Response, case: Case, additional_checks: Any = None,
                              **kwargs: Any) -> None:
            if not checks:
                return
            try:
                case.validate_response(response, checks=CHECKS, additional_checks=[error_body_shape],
                                       transport_kwargs=kwargs or None, recorder=self.recorder)
            except FailureGroup as group:  # recorded, so the run goes on and reports all
                for failure in group.exceptions:
                    stats.fail(case, response, failure.title, failure.message)
            except Exception as exc:  # noqa: BLE001 - one failed check (ours raise AssertionError)
                stats.fail(case, response, type(exc).__name__, str(exc))

    # A server run in this process (`live_api`) shares its heap: late in a long test session, one full
    # pass of the cyclic collector over it takes over a second and would land inside some call. What
    # exists before the run lives through it, so it is kept out of the collector (as `concierge serve`
    # does with its start-up heap).
    gc.collect()
    gc.freeze()
    started = time.perf_counter()
    scenarios = scenarios_per_run
    try:
        while stats.total < cases:
            before = stats.total
            settings = hypothesis.settings(max_examples=scenarios, stateful_step_count=steps, deadline=None,
                                           database=None, phases=[hypothesis.Phase.generate],
                                           suppress_health_check=list(hypothesis.HealthCheck))
            try:
                Fuzz.run(settings=settings)
            except Flaky:
                # The server's state changed under a replayed choice sequence (a bundle that was full
                # is empty now): Hypothesis ends the run; the calls made so far are recorded.
                stats.restarts += 1
            if stats.total == before:
                raise RuntimeError("the state machine made no call: are the spec's links and operations there?")
            # Just enough scenarios for the calls still to make, at the rate seen so far.
            per_scenario = stats.total / max(1, stats.scenarios)
            scenarios = max(2, min(scenarios_per_run, math.ceil((cases - stats.total) / per_scenario) + 1))
    finally:
        stats.seconds = time.perf_counter() - started
        gc.unfreeze()
    return stats
