"""Schemathesis against the published OpenAPI spec, over real HTTP to a live server.

Every operation gets generated requests (valid ones with a service key, valid ones aimed at a
session that exists, some without credentials, and some deliberately invalid ones). Whatever is
sent: no 5xx, every 4xx has our JSON error body, and answers match what the spec declares.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode

from concierge.testing.api_fuzz import CHECKS, error_body_shape, live_api, load_schema
from concierge.testing.serving import ServerThread

MAX_EXAMPLES = 50  # per operation; the whole run takes seconds
SESSION = "fuzz-1"


@dataclass
class Live:
    server: ServerThread
    key: str
    calls: dict[str, int] = field(default_factory=dict)
    statuses: dict[int, int] = field(default_factory=dict)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_api(tmp_path_factory.mktemp("fuzz")) as api:
        key = api.issue_key("service", "fuzzer")
        created = httpx.post(f"{api.url}/v1/sessions", json={"session_id": SESSION, "user_id": "fuzzer"},
                             headers={"Authorization": f"Bearer {key}"}, timeout=30)
        assert created.status_code == 201, created.text
        yield Live(api.server, key)


def _strategies(operation: Any, key: str) -> st.SearchStrategy[Case]:
    credentials = {"authorization": f"Bearer {key}", "x-api-key": key}
    header_names = {p["name"].lower() for p in operation.definition.raw.get("parameters", [])
                    if p.get("in") == "header"}
    authed = {k: v for k, v in credentials.items() if k in header_names}
    path_names = {p["name"] for p in operation.definition.raw.get("parameters", []) if p.get("in") == "path"}
    options = [operation.as_strategy(headers=authed or None),  # valid credentials (where the operation takes them)
               operation.as_strategy(),  # whatever credentials hypothesis makes up, often none
               operation.as_strategy(GenerationMode.NEGATIVE, headers=authed or None)]  # invalid requests
    if "session_id" in path_names:  # an existing session, so that the happy paths run too
        options.append(operation.as_strategy(headers=authed or None, path_parameters={"session_id": SESSION}))
    return st.one_of(options)


def test_the_api_survives_schemathesis(live: Live) -> None:
    schema = load_schema(live.server.url)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12, [op.label for op in operations]
    failures: dict[str, str] = {}
    started = time.perf_counter()

    for operation in operations:

        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=False,
                  phases=[Phase.explicit, Phase.generate, Phase.shrink],
                  suppress_health_check=list(HealthCheck))
        @given(case=_strategies(operation, live.key))
        def fuzz(case: Case) -> None:
            response = case.call(base_url=live.server.url, timeout=30)
            label = case.operation.label
            live.calls[label] = live.calls.get(label, 0) + 1
            live.statuses[response.status_code] = live.statuses.get(response.status_code, 0) + 1
            case.validate_response(response, checks=CHECKS, additional_checks=[error_body_shape])

        try:
            fuzz()
        except Exception as exc:  # noqa: BLE001 - collected, so every operation's failures are reported
            failures[operation.label] = f"{type(exc).__name__}: {exc}"

    elapsed = time.perf_counter() - started
    print(f"\nschemathesis: {len(live.calls)} operations, {sum(live.calls.values())} requests in {elapsed:.1f} s; "
          f"statuses {dict(sorted(live.statuses.items()))}")
    for label, count in sorted(live.calls.items()):
        print(f"  {count:4d}  {label}")
    assert not failures, "\n\n".join(f"{label}\n{text}" for label, text in failures.items())
    assert len(live.calls) == len(operations)
