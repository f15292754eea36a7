"""Row 12 (session ids): ids made only of dots were accepted, and a client could open a specialist's session.

Observed on the landed server: `POST /v1/sessions {"session_id": ".."}` answered 201, and a
specialist's child session was named `<parent>.<name>` (`tenant:s1.order`), the very name the
runtime gives a client's session `s1.order`: opening it handed the specialist's conversation to
whoever asked. Now ids of dots alone are a 422 on every route, and child sessions are
`<parent>.:<name>`, a name no client-chosen id can reach (client ids cannot contain ':').
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from concierge import Agent, Runtime, tool
from concierge.core.errors import ValidationError
from concierge.core.messages import Message, message_text
from concierge.runtime.multiagent import Specialist, supervisor_agent
from concierge.runtime.sessions.sql import SqlSessionStore
from concierge.security.auth import issue_jwt
from concierge.security.tenants import TenantDirectory
from concierge.serving.app import ServeOptions, create_app
from concierge.serving.ratelimit import InProcessRateLimiter
from concierge.serving.records import SessionDirectory, check_session_id, runtime_session_id
from concierge.serving.service import TurnService
from concierge.serving.webhooks import DeliveryLog
from concierge.testing import FunctionModel, call
from concierge.testing.serving import ServerThread

DOTS = [".", "..", "...", "...."]


@tool(effect="read")
async def get_order(order_id: str) -> dict:
    """Look up an order."""
    return {"order_id": order_id, "status": "shipped", "secret_note": "ann's address is 1 Main St"}


def supervisor(messages: Sequence[Message], tools: object) -> object:
    last = messages[-1]
    if last.role == "tool":
        return f"Done: {message_text(last)}"
    if "order" in message_text(last).lower():
        return call("handoff_to_order", task="Where is W1? Ann's address is 1 Main St", context={"order_id": "W1"})
    return f"You said: {message_text(last)}"


def order_agent(messages: Sequence[Message], tools: object) -> object:
    return f"Done: {message_text(messages[-1])}" if messages[-1].role == "tool" else call("get_order", order_id="W1")


@dataclass
class Env:
    server: ServerThread
    ann: str
    bob: str

    def client(self, token: str) -> httpx.Client:
        return httpx.Client(base_url=self.server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    folder: Path = tmp_path_factory.mktemp("session-ids")
    url = f"sqlite+aiosqlite:///{folder}/serve.db"
    holder: dict[str, TurnService] = {}

    def make_app():  # a FastAPI app
        store = SqlSessionStore(url)
        order = Specialist("order", "Answers questions about orders.",
                           Agent("You handle orders.", FunctionModel(order_agent), tools=[get_order], name="order"),
                           context_fields=("order_id",))
        agent = supervisor_agent("You route requests.", FunctionModel(supervisor), [order], store=store)
        service = TurnService(Runtime(agent, store=store), TenantDirectory(url), SessionDirectory(url),
                              DeliveryLog(url), InProcessRateLimiter())
        holder["service"] = service
        return create_app(service, ServeOptions())

    with ServerThread(make_app) as server:
        tenants = holder["service"].tenants

        async def setup() -> tuple[str, str]:
            acme = await tenants.create_tenant("acme", rate=(100.0, 200), user_rate=(100.0, 200))
            return issue_jwt(acme.jwt_config, subject="ann"), issue_jwt(acme.jwt_config, subject="bob")

        ann, bob = server.call(setup())
        yield Env(server, ann, bob)


@pytest.mark.parametrize("session_id", DOTS)
def test_ids_made_of_dots_are_refused_on_create(env: Env, session_id: str) -> None:
    with env.client(env.ann) as client:
        response = client.post("/v1/sessions", json={"session_id": session_id})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_request"
    with pytest.raises(ValidationError, match="not only dots"):
        check_session_id(session_id)


@pytest.mark.parametrize("session_id", DOTS)
def test_ids_made_of_dots_are_refused_on_path_routes(env: Env, session_id: str) -> None:
    path = "%2E" * len(session_id)  # percent-encoded, so the client does not resolve "." and ".." away
    with env.client(env.ann) as client:
        for method, route in [("GET", ""), ("GET", "/turns"), ("POST", "/end"), ("GET", "/audit")]:
            response = client.request(method, f"/v1/sessions/{path}{route}")
            assert response.status_code == 422, (method, route, response.text)
        response = client.post(f"/v1/sessions/{path}/messages", json={"text": "hi"})
        assert response.status_code == 422, response.text
    with connect(f"{env.server.ws_url}/v1/sessions/{path}/stream?token={env.ann}", open_timeout=10) as socket:
        frame = json.loads(socket.recv(10))
        assert frame["type"] == "error" and frame["status"] == 422, frame
        with pytest.raises(ConnectionClosed):
            socket.recv(10)


def test_ids_with_dots_and_other_characters_still_work(env: Env) -> None:
    with env.client(env.ann) as client:
        for session_id in ("a.b", ".hidden", "ticket.42.", "ann@example.com"):
            assert client.post("/v1/sessions", json={"session_id": session_id}).status_code == 201, session_id


def test_a_client_cannot_open_a_specialists_child_session(env: Env) -> None:
    with env.client(env.ann) as ann:
        assert ann.post("/v1/sessions", json={"session_id": "s1"}).status_code == 201
        turn = ann.post("/v1/sessions/s1/messages", json={"text": "Where is my order W1?"})
        assert turn.status_code == 200, turn.text
        assert turn.json()["reply"].startswith("Done:") and "shipped" in turn.json()["reply"], turn.text
    history = env.server.call(child_sessions(env))
    [child] = [sid for sid in history if sid.startswith("acme:s1.")]
    with pytest.raises(ValidationError):  # the child's name, seen as a client id, is not one
        check_session_id(child.removeprefix("acme:"))
    with env.client(env.bob) as bob:
        assert bob.post("/v1/sessions", json={"session_id": child.removeprefix("acme:")}).status_code == 422
        # The old child name is now an ordinary, empty session of Bob's: nothing of Ann's in it.
        assert bob.post("/v1/sessions", json={"session_id": "s1.order"}).status_code == 201
        messages = bob.get("/v1/sessions/s1.order").json()["messages"]
    assert messages == [] and "1 Main St" not in json.dumps(messages)


async def child_sessions(env: Env) -> list[str]:
    """The runtime session ids the store holds (the child's is not listed in the serving directory)."""
    app = env.server.app
    assert app is not None
    store: SqlSessionStore = app.state.service.runtime.store
    found = []
    for session_id in (runtime_session_id("acme", "s1") + ".order", runtime_session_id("acme", "s1") + ".:order"):
        if await store.load(session_id) is not None:
            found.append(session_id)
    return found
