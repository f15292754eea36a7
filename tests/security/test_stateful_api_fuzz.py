"""Acceptance: a schemathesis stateful run against the live server, with an admin key.

The per-operation run (tests/serving/test_openapi_fuzz.py) sends each request on its own, so a
session it talks to is one it was handed. Here schemathesis's state machine chains calls through
the OpenAPI links the spec publishes: a session opened by `POST /v1/sessions` (or listed by
`GET /v1/sessions`) is then talked to, read, confirmed and declined in, audited and ended, with
one call in ten deliberately invalid. On the code as it landed the spec had no links: only the
links schemathesis guessed by itself chained calls, so about a third of them acted on a session
an earlier answer named (331 of 1,014; half got a 404), against two thirds with the links. At
least 1,000 calls: no 5xx, none slower than 1 s, every answer as the spec declares it.
`bench/api_fuzz.py` runs the same at 10,000 and more.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from concierge.testing.api_fuzz import LiveApi, live_api, stateful_fuzz

CASES = 1_000
SESSION_OPERATIONS = {("get", ""), ("post", "/messages"), ("get", "/turns"), ("get", "/ledger"), ("post", "/end"),
                      ("get", "/audit"), ("post", "/actions/{action_id}/confirm"),
                      ("post", "/actions/{action_id}/decline")}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    with live_api(tmp_path_factory.mktemp("stateful")) as running:
        yield running


def _link_targets(spec: dict, path: str, method: str, status: str) -> set[tuple[str, str]]:
    """(method, path suffix after /v1/sessions/{session_id}) of each operation a response links to."""
    ids = {op["operationId"]: (m, p) for p, item in spec["paths"].items() for m, op in item.items()
           if isinstance(op, dict) and "operationId" in op}
    links = spec["paths"][path][method]["responses"][status].get("links", {})
    found = set()
    for link in links.values():
        target_method, target_path = ids[link["operationId"]]
        assert link["parameters"]["path.session_id"].startswith("$response.body#/")
        found.add((target_method, target_path.removeprefix("/v1/sessions/{session_id}")))
    return found


def test_the_spec_links_a_created_session_to_every_operation_on_it(api: LiveApi) -> None:
    spec = httpx.get(f"{api.url}/openapi.json", timeout=30).json()
    assert _link_targets(spec, "/v1/sessions", "post", "201") == SESSION_OPERATIONS - {
        ("post", "/actions/{action_id}/confirm"), ("post", "/actions/{action_id}/decline")}
    assert _link_targets(spec, "/v1/sessions", "get", "200") == _link_targets(spec, "/v1/sessions", "post", "201")
    # A message's answer names the pending actions: confirm and decline follow from it.
    assert _link_targets(spec, "/v1/sessions/{session_id}/messages", "post", "200") == SESSION_OPERATIONS
    confirm = spec["paths"]["/v1/sessions/{session_id}/messages"]["post"]["responses"]["200"]["links"]
    assert {link["parameters"].get("path.action_id") for link in confirm.values()} == {
        None, "$response.body#/pending_actions/0/id"}


def test_a_stateful_run_of_1000_calls_with_an_admin_key(api: LiveApi) -> None:
    stats = stateful_fuzz(api.url, api.issue_key("admin", "stateful fuzzer"), cases=CASES)
    print(f"\nschemathesis stateful: {stats.summary()}")
    for label, count in sorted(stats.calls.items()):
        print(f"  {count:5d}  {label}")
    assert stats.total >= CASES
    assert stats.calls["POST /v1/sessions"] > 0 and len(stats.calls) >= len(SESSION_OPERATIONS) + 2
    assert stats.linked >= stats.total // 2, "most calls should act on a session an earlier answer named"
    assert stats.statuses[200] + stats.statuses[201] >= CASES // 3, stats.statuses
    assert not stats.server_errors, "\n".join(stats.server_errors[:20])
    assert not stats.slow, "\n".join(stats.slow[:20])
    assert not stats.failures, "\n\n".join(f"{name}\n{text}" for name, text in stats.failures.items())
