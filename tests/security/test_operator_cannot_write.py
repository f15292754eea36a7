"""Row 1 of the serving threat model: a read-only operator must not write to a customer's session.

Observed on the server as it shipped: an operator key (documented as read-only) got 200 for
`POST /v1/sessions/{id}/messages`, `…/actions/{a}/confirm`, `…/decline` and `…/end` on any
customer's session of its tenant; its confirm used up the customer's pending action (the
customer's own confirm then got 409) and its decline threw the action away. The access check let
`sessions:read` through for every route and the service layer checked no write scope.

Now one function decides read versus write per route: operators read, customers read and write
only their own sessions, service keys read and write every session of their tenant (documented in
docs/security.md), admins do everything. A refused write is a 403 that consumes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from concierge import Agent, Runtime, tool
from concierge.core.messages import Message, message_text
from concierge.runtime.sessions.sql import SqlSessionStore
from concierge.security.auth import JwtConfig, issue_jwt
from concierge.security.tenants import TenantDirectory
from concierge.serving.app import ServeOptions, create_app
from concierge.serving.ratelimit import InProcessRateLimiter
from concierge.serving.records import SessionDirectory
from concierge.serving.service import TurnService
from concierge.serving.webhooks import DeliveryLog
from concierge.testing import FunctionModel, call
from concierge.testing.serving import ServerThread
from concierge.tools.ledger import SqlLedger
from concierge.tools.pipeline import TransactionalExecutor

CANCELLED: list[str] = []


@tool(effect="write", confirm=True, idempotent=True, scopes=("retail:write",))
async def cancel_order(order_id: str) -> dict[str, str]:
    """Cancel a pending order."""
    CANCELLED.append(order_id)
    return {"order_id": order_id, "status": "cancelled"}


def planner(messages: Sequence[Message], tools: object) -> object:
    """Asks to cancel the order the message names (after confirmation), otherwise echoes."""
    last = messages[-1]
    if last.role == "tool":
        return f"Done: {message_text(last)}"
    text = message_text(last)
    if text.lower().startswith("cancel "):
        return call("cancel_order", order_id=text.split()[1])
    return f"You said: {text}"


@dataclass
class Site:
    server: ServerThread
    keys: dict[str, str]
    jwt: JwtConfig
    model: FunctionModel

    def client(self, token: str) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"}
        return httpx.Client(base_url=self.server.url, headers=headers, timeout=30)

    def user(self, name: str, role: str = "customer") -> str:
        return issue_jwt(self.jwt, subject=name, role=role)

    def pending(self, session_id: str, owner: str) -> list[dict[str, Any]]:
        with self.client(self.user(owner)) as client:
            response = client.get(f"/v1/sessions/{session_id}")
        assert response.status_code == 200, response.text
        return list(response.json()["pending_actions"])

    def awaiting(self, session_id: str, owner: str, order_id: str) -> str:
        """A session of `owner` with a cancel of `order_id` waiting for its confirmation; the action id."""
        with self.client(self.user(owner)) as client:
            assert client.post("/v1/sessions", json={"session_id": session_id}).status_code == 201
            asked = client.post(f"/v1/sessions/{session_id}/messages", json={"text": f"cancel {order_id}"})
        assert asked.status_code == 200 and asked.json()["stopped_by"] == "awaiting_confirmation", asked.text
        [action] = asked.json()["pending_actions"]
        return str(action["id"])


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    folder: Path = tmp_path_factory.mktemp("operator-write")
    url = f"sqlite+aiosqlite:///{folder}/serve.db"
    model = FunctionModel(planner)
    holder: dict[str, TurnService] = {}

    def make_app() -> Any:
        runtime = Runtime(Agent(instructions="You help.", model=model, tools=[cancel_order]),
                          store=SqlSessionStore(url), executor=TransactionalExecutor(SqlLedger(url)))
        service = TurnService(runtime, TenantDirectory(url), SessionDirectory(url), DeliveryLog(url),
                              InProcessRateLimiter())
        holder["service"] = service
        return create_app(service, ServeOptions())

    with ServerThread(make_app) as server:
        tenants = holder["service"].tenants

        async def setup() -> tuple[dict[str, str], JwtConfig]:
            acme = await tenants.create_tenant("acme", rate=(1000.0, 1000), user_rate=(1000.0, 1000))
            await tenants.create_tenant("globex", rate=(1000.0, 1000), user_rate=(1000.0, 1000))
            keys = {role: await tenants.issue_key("acme", role, role)
                    for role in ("operator", "service", "admin")}
            keys["globex-service"] = await tenants.issue_key("globex", "service", "other")
            return keys, acme.jwt_config

        keys, jwt_config = server.call(setup())
        yield Site(server, keys, jwt_config, model)


def _forbidden(response: httpx.Response) -> None:
    assert response.status_code == 403, f"{response.status_code}: {response.text}"
    assert response.json()["error"]["code"] == "forbidden"


def _writes(client: httpx.Client, session_id: str, action_id: str) -> list[httpx.Response]:
    base = f"/v1/sessions/{session_id}"
    return [client.post(f"{base}/messages", json={"text": "cancel W9"}),
            client.post(f"{base}/actions/{action_id}/confirm"),
            client.post(f"{base}/actions/{action_id}/decline"),
            client.post(f"{base}/end")]


@pytest.mark.parametrize("credential", ["api key", "jwt"])
def test_an_operator_cannot_write_and_the_customers_pending_action_survives(site: Site,
                                                                           credential: str) -> None:
    session_id = f"op-{credential.replace(' ', '-')}"
    action_id = site.awaiting(session_id, "carol", "W1")
    cancelled, model_calls = len(CANCELLED), len(site.model.requests)
    operator = site.keys["operator"] if credential == "api key" else site.user("ops", role="operator")
    with site.client(operator) as client:
        for response in _writes(client, session_id, action_id):
            _forbidden(response)
        # reading is what an operator is for
        assert client.get(f"/v1/sessions/{session_id}").json()["user_id"] == "carol"
        assert client.get(f"/v1/sessions/{session_id}/ledger").status_code == 200
        assert len(client.get(f"/v1/sessions/{session_id}/turns").json()["turns"]) == 1
        assert session_id in {s["session_id"] for s in client.get("/v1/sessions").json()["sessions"]}
    # nothing was consumed: no turn ran, the action is still pending, and the customer confirms it
    assert len(site.model.requests) == model_calls and len(CANCELLED) == cancelled
    assert [a["id"] for a in site.pending(session_id, "carol")] == [action_id]
    with site.client(site.user("carol")) as carol:
        done = carol.post(f"/v1/sessions/{session_id}/actions/{action_id}/confirm")
        assert done.status_code == 200, done.text
        assert "cancelled" in done.json()["reply"]
        assert len(carol.get(f"/v1/sessions/{session_id}/turns").json()["turns"]) == 2
    assert CANCELLED[cancelled:] == ["W1"]


def test_an_operator_on_the_websocket_may_watch_but_not_write(site: Site) -> None:
    action_id = site.awaiting("op-ws", "dana", "W2")
    model_calls = len(site.model.requests)
    url = f"{site.server.ws_url}/v1/sessions/op-ws/stream"
    with connect(url, subprotocols=["concierge.bearer", site.keys["operator"]]) as ws:  # type: ignore[list-item]
        ready = json.loads(ws.recv(timeout=10))
        assert ready["type"] == "ready" and ready["access"] == "read"
        for frame in ({"type": "message", "text": "cancel W9"}, {"type": "confirm", "action_id": action_id},
                      {"type": "decline", "action_id": action_id}):
            ws.send(json.dumps(frame))
            error = json.loads(ws.recv(timeout=10))
            assert error["type"] == "error" and error["status"] == 403, error
            assert error["error"]["code"] == "forbidden"
    assert len(site.model.requests) == model_calls
    assert [a["id"] for a in site.pending("op-ws", "dana")] == [action_id]
    with connect(url, subprotocols=["concierge.bearer", site.user("dana")]) as ws:  # type: ignore[list-item]
        assert json.loads(ws.recv(timeout=10))["access"] == "write"
        ws.send(json.dumps({"type": "confirm", "action_id": action_id}))
        while (event := json.loads(ws.recv(timeout=30)))["type"] not in ("turn_finished", "error"):
            pass
        assert event["type"] == "turn_finished" and "cancelled" in event["reply"], event
    assert site.pending("op-ws", "dana") == []


def test_a_customer_cannot_write_to_another_customers_session(site: Site) -> None:
    action_id = site.awaiting("cust-1", "erin", "W3")
    with site.client(site.user("frank")) as frank:
        for response in [*_writes(frank, "cust-1", action_id), frank.get("/v1/sessions/cust-1")]:
            _forbidden(response)
        assert all(s["user_id"] == "frank" for s in frank.get("/v1/sessions").json()["sessions"])
    assert [a["id"] for a in site.pending("cust-1", "erin")] == [action_id]


def test_a_service_key_acts_for_every_customer_of_its_tenant_and_no_other(site: Site) -> None:
    # documented in docs/security.md: a service key is the tenant's backend, so it writes to sessions
    # it did not open too (here one the customer opened itself)
    action_id = site.awaiting("svc-1", "gina", "W4")
    with site.client(site.keys["globex-service"]) as other:
        for response in _writes(other, "svc-1", action_id):
            assert response.status_code == 404, response.text
    assert [a["id"] for a in site.pending("svc-1", "gina")] == [action_id]
    with site.client(site.keys["service"]) as backend:
        hello = backend.post("/v1/sessions/svc-1/messages", json={"text": "hello"})
        assert hello.json()["reply"] == "You said: hello"
        asked = backend.post("/v1/sessions/svc-1/messages", json={"text": "cancel W5"}).json()
        [action] = asked["pending_actions"]
        done = backend.post(f"/v1/sessions/svc-1/actions/{action['id']}/confirm")
        assert done.status_code == 200 and "cancelled" in done.json()["reply"], done.text
        assert backend.post("/v1/sessions/svc-1/end").status_code == 200
        _forbidden(backend.get("/v1/sessions/svc-1/audit"))  # ledgers and audit trails are for operators
    assert CANCELLED[-1] == "W5"


def test_an_admin_may_write_to_any_session_of_its_tenant(site: Site) -> None:
    site.awaiting("adm-1", "hank", "W6")
    with site.client(site.keys["admin"]) as admin:
        [action] = admin.get("/v1/sessions/adm-1").json()["pending_actions"]
        declined = admin.post(f"/v1/sessions/adm-1/actions/{action['id']}/decline")
        assert declined.status_code == 200, declined.text
        assert admin.post("/v1/sessions/adm-1/messages", json={"text": "noted"}).status_code == 200
        assert admin.post("/v1/sessions/adm-1/end").status_code == 200
    assert "W6" not in CANCELLED and site.pending("adm-1", "hank") == []
