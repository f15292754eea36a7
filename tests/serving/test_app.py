"""The server over real HTTP and WebSockets: auth, tenant isolation, confirmations, webhooks, limits."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from concierge import Agent, Runtime, tool
from concierge.core.messages import Message, message_text
from concierge.memory import EXTRACTION_PROMPT, Memory
from concierge.runtime.sessions.sql import SqlSessionStore
from concierge.security.auth import JwtConfig, issue_jwt
from concierge.security.tenants import TenantDirectory
from concierge.serving.app import ServeOptions, create_app
from concierge.serving.ratelimit import InProcessRateLimiter
from concierge.serving.records import SessionDirectory
from concierge.serving.service import TurnService
from concierge.serving.webhooks import DELIVERY_HEADER, SIGNATURE_HEADER, DeliveryLog, sign
from concierge.testing import FunctionModel, call
from concierge.testing.embedders import KeywordEmbedder
from concierge.testing.serving import ServerThread
from concierge.tools.ledger import SqlLedger
from concierge.tools.pipeline import TransactionalExecutor

CANCELLED: list[str] = []


@tool(effect="read")
async def get_order(order_id: str) -> dict:
    """Look up an order."""
    return {"order_id": order_id, "status": "pending"}


@tool(effect="write", confirm=True, idempotent=True, scopes=("retail:write",))
async def cancel_order(order_id: str) -> dict:
    """Cancel a pending order."""
    CANCELLED.append(order_id)
    return {"order_id": order_id, "status": "cancelled"}


def planner(messages: Sequence[Message], tools: object) -> object:
    """Cancels W1 when asked (then reports), otherwise echoes: enough to drive every path; as the
    memory extractor, remembers the customer's contact preference."""
    if message_text(messages[0]).startswith(EXTRACTION_PROMPT[:40]):
        return json.dumps({"summary": "Asked to be contacted by email.", "facts": [], "unresolved": [],
                           "resolved": [], "satisfaction": "high",
                           "preferences": [{"key": "contact_channel", "value": "email", "turn": 1}]})
    last = messages[-1]
    if last.role == "tool":
        return f"Done: {message_text(last)}"
    text = message_text(last)
    if "cancel" in text.lower():
        return call("cancel_order", order_id="W1")
    return f"You said: {text}"


@dataclass
class Env:
    server: ServerThread
    keys: dict[str, str]
    jwt: dict[str, JwtConfig]
    webhook_secret: str
    model: FunctionModel

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.server.url, headers=headers, timeout=30)

    def user(self, tenant: str, name: str, **kwargs: object) -> str:
        return issue_jwt(self.jwt[tenant], subject=name, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    folder: Path = tmp_path_factory.mktemp("serve")
    url = f"sqlite+aiosqlite:///{folder}/serve.db"
    model = FunctionModel(planner, token_delay_s=0.001)
    holder: dict[str, TurnService] = {}

    def make_app():
        agent = Agent(instructions="You help.", model=model, tools=[get_order, cancel_order])
        memory = Memory(folder / "memory.db", folder / "memory-index", embedder=KeywordEmbedder())
        runtime = Runtime(agent, store=SqlSessionStore(url), executor=TransactionalExecutor(SqlLedger(url)),
                          memory=memory)
        service = TurnService(runtime, TenantDirectory(url), SessionDirectory(url), DeliveryLog(url),
                              InProcessRateLimiter())
        holder["service"] = service
        return create_app(service, ServeOptions(demo_tenant="acme"))

    with ServerThread(make_app) as server:
        tenants = holder["service"].tenants

        async def setup() -> tuple[dict[str, str], dict[str, JwtConfig], str]:
            acme = await tenants.create_tenant("acme", rate=(100.0, 200), user_rate=(100.0, 200))
            globex = await tenants.create_tenant("globex", rate=(100.0, 200), user_rate=(100.0, 200))
            await tenants.create_tenant("tiny", rate=(0.01, 3), user_rate=(100.0, 200))
            await tenants.create_tenant("peruser", rate=(100.0, 200), user_rate=(0.01, 2))
            keys = {"acme-operator": await tenants.issue_key("acme", "operator", "console"),
                    "acme-service": await tenants.issue_key("acme", "service", "backend"),
                    "globex-service": await tenants.issue_key("globex", "service", "backend"),
                    "tiny-service": await tenants.issue_key("tiny", "service", "backend"),
                    "peruser-service": await tenants.issue_key("peruser", "service", "backend")}
            return keys, {"acme": acme.jwt_config, "globex": globex.jwt_config}, acme.webhook_secret

        keys, jwts, secret = server.call(setup())
        yield Env(server, keys, jwts, secret, model)


def _new_session(client: httpx.Client, session_id: str, **body: object) -> None:
    response = client.post("/v1/sessions", json={"session_id": session_id, **body})
    assert response.status_code == 201, response.text


def _error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body["error"]) >= {"code", "message"}
    return body["error"]


def test_no_credentials_is_401_with_a_json_body(env: Env) -> None:
    with env.client() as client:
        assert _error(client.get("/v1/sessions"), 401)["message"] == "missing credentials"
    with env.client("ck_not-a-real-key") as client:
        assert _error(client.get("/v1/sessions"), 401)["code"] == "unauthenticated"
    with httpx.Client(base_url=env.server.url, headers={"Authorization": "Basic abc"}) as client:
        assert _error(client.get("/v1/sessions"), 401)["code"] == "unauthenticated"


def test_another_tenants_session_is_not_found(env: Env) -> None:
    with env.client(env.keys["acme-service"]) as acme:
        _new_session(acme, "iso-1", user_id="alice")
        assert acme.post("/v1/sessions/iso-1/messages", json={"text": "hello"}).status_code == 200
    with env.client(env.keys["globex-service"]) as globex:
        for response in (globex.get("/v1/sessions/iso-1"), globex.get("/v1/sessions/iso-1/turns"),
                         globex.get("/v1/sessions/iso-1/ledger"),
                         globex.post("/v1/sessions/iso-1/messages", json={"text": "hi"})):
            assert _error(response, 404)["message"] == "session not found"
        assert all(s["session_id"] != "iso-1" for s in globex.get("/v1/sessions").json()["sessions"])


def test_an_end_user_cannot_use_another_users_session(env: Env) -> None:
    with env.client(env.user("acme", "alice")) as alice:
        _new_session(alice, "alice-1")
        reply = alice.post("/v1/sessions/alice-1/messages", json={"text": "hello there"})
        assert reply.status_code == 200 and reply.json()["reply"] == "You said: hello there"
    with env.client(env.user("acme", "bob")) as bob:
        assert _error(bob.post("/v1/sessions/alice-1/messages", json={"text": "hi"}), 403)["code"] == "forbidden"
        assert _error(bob.get("/v1/sessions/alice-1"), 403)["code"] == "forbidden"
        assert all(s["user_id"] == "bob" for s in bob.get("/v1/sessions").json()["sessions"])
        assert _error(bob.post("/v1/sessions", json={"session_id": "b-2", "user_id": "alice"}), 403)
    with env.client(env.keys["acme-operator"]) as operator:  # operators read every session of their tenant
        assert operator.get("/v1/sessions/alice-1").json()["user_id"] == "alice"
        assert _error(operator.post("/v1/sessions/alice-1/messages", json={"text": "hi"}), 403)  # ...and write none


def test_expired_or_wrongly_signed_tokens_are_401(env: Env) -> None:
    expired = issue_jwt(env.jwt["acme"], subject="alice", ttl_s=60, now=time.time() - 3600)
    forged_config = JwtConfig(secret="x" * 40, issuer=env.jwt["acme"].issuer, audience="concierge")
    forged = issue_jwt(forged_config, subject="alice")
    for token, reason in ((expired, "expired"), (forged, "signature")):
        with env.client(token) as client:
            assert reason in _error(client.get("/v1/sessions"), 401)["message"]


def test_confirmation_runs_the_action_once_and_only_the_pending_one(env: Env) -> None:
    with env.client(env.user("acme", "carol")) as carol:
        _new_session(carol, "carol-1")
        asked = carol.post("/v1/sessions/carol-1/messages", json={"text": "Please cancel W1"}).json()
        assert asked["stopped_by"] == "awaiting_confirmation"
        [action] = asked["pending_actions"]
        assert action["tool"] == "cancel_order" and action["arguments"] == {"order_id": "W1"}
        before = len(CANCELLED)
        wrong = carol.post("/v1/sessions/carol-1/actions/nope/confirm")
        assert _error(wrong, 409)["code"] == "no_pending_action" and len(CANCELLED) == before
        done = carol.post(f"/v1/sessions/carol-1/actions/{action['id']}/confirm").json()
        assert done["stopped_by"] is None and "cancelled" in done["reply"]
        assert len(CANCELLED) == before + 1
        again = carol.post(f"/v1/sessions/carol-1/actions/{action['id']}/confirm")
        assert _error(again, 409)["code"] == "no_pending_action" and len(CANCELLED) == before + 1
        ledger = carol.get("/v1/sessions/carol-1/ledger").json()
        assert [(e["tool"], e["status"]) for e in ledger["entries"]] == [("cancel_order", "succeeded")]
        turns = carol.get("/v1/sessions/carol-1/turns").json()["turns"]
        assert [t["turn_no"] for t in turns] == [1, 2]
        assert [s["name"] for s in turns[1]["steps"] if s["kind"] == "tool"] == ["cancel_order"]


def test_websocket_streams_tokens_and_confirms_through_a_message(env: Env) -> None:
    token = env.user("acme", "dave")
    with env.client(token) as dave:
        _new_session(dave, "dave-1")
    with connect(f"{env.server.ws_url}/v1/sessions/dave-1/stream?token={token}") as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "ready"
        ws.send(json.dumps({"type": "message", "text": "streaming works"}))
        events = _until_finished(ws)
        tokens = [e["text"] for e in events if e["type"] == "token"]
        assert len(tokens) == 4 and "".join(tokens) == "You said: streaming works" == events[-1]["reply"]
        ws.send(json.dumps({"type": "message", "text": "cancel it"}))
        events = _until_finished(ws)
        [asked] = [e for e in events if e["type"] == "confirmation_requested"]
        ws.send(json.dumps({"type": "confirm", "action_id": asked["actions"][0]["id"]}))
        events = _until_finished(ws)
        assert [e["name"] for e in events if e["type"] == "tool_finished"] == ["cancel_order"]
        assert events[-1]["stopped_by"] is None
        ws.send("not json")
        error = json.loads(ws.recv(timeout=10))
        assert error["type"] == "error" and error["status"] == 422


def test_websocket_takes_the_token_as_a_subprotocol(env: Env) -> None:
    token = env.user("acme", "dave")
    with connect(f"{env.server.ws_url}/v1/sessions/dave-1/stream", subprotocols=["concierge.bearer", token]) as ws:
        assert ws.subprotocol == "concierge.bearer"
        assert json.loads(ws.recv(timeout=10))["type"] == "ready"


def test_websocket_refuses_a_bad_token_and_another_users_session(env: Env) -> None:
    for token, code in (("garbage", 4401), (env.user("acme", "eve"), 4403)):
        with connect(f"{env.server.ws_url}/v1/sessions/dave-1/stream?token={token}") as ws:
            first = json.loads(ws.recv(timeout=10))
            assert first["type"] == "error" and first["status"] == code - 4000
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=10)
            assert ws.close_code == code


def _until_finished(ws) -> list[dict]:
    events = []
    while True:
        event = json.loads(ws.recv(timeout=30))
        events.append(event)
        if event["type"] in ("turn_finished", "error"):
            return events


def _deliver(env: Env, body: dict, delivery: str, *, secret: str | None = None) -> httpx.Response:
    raw = json.dumps(body).encode()
    headers = {SIGNATURE_HEADER: sign(secret or env.webhook_secret, raw, int(time.time()), delivery_id=delivery),
               DELIVERY_HEADER: delivery, "Content-Type": "application/json"}
    return httpx.post(f"{env.server.url}/v1/webhooks/acme", content=raw, headers=headers, timeout=30)


def test_a_redelivered_webhook_runs_one_turn(env: Env) -> None:
    body = {"session_id": "wh-1", "user_id": "frank", "text": "hello from a channel"}
    calls = len(env.model.requests)
    first = _deliver(env, body, "delivery-1")
    assert first.status_code == 200 and first.json()["duplicate"] is False
    second = _deliver(env, body, "delivery-1")
    assert second.status_code == 200 and second.json()["duplicate"] is True
    assert second.json()["reply"] == first.json()["reply"] == "You said: hello from a channel"
    assert len(env.model.requests) == calls + 1
    with env.client(env.keys["acme-operator"]) as operator:
        assert len(operator.get("/v1/sessions/wh-1/turns").json()["turns"]) == 1


def test_a_bad_webhook_signature_is_401_and_runs_nothing(env: Env) -> None:
    body = {"session_id": "wh-2", "user_id": "frank", "text": "hi"}
    calls = len(env.model.requests)
    assert _error(_deliver(env, body, "delivery-2", secret="wrong-secret"), 401)["code"] == "bad_signature"
    raw = json.dumps(body).encode()
    unsigned = httpx.post(f"{env.server.url}/v1/webhooks/acme", content=raw, headers={DELIVERY_HEADER: "d-3"})
    assert _error(unsigned, 401)["code"] == "bad_signature"
    # The delivery id is signed: the same signature under another id is refused.
    signed = _deliver(env, body, "delivery-2")
    assert signed.status_code == 200, signed.text
    replayed = {SIGNATURE_HEADER: signed.request.headers[SIGNATURE_HEADER], DELIVERY_HEADER: "delivery-2b"}
    again = httpx.post(f"{env.server.url}/v1/webhooks/acme", content=raw, headers=replayed)
    assert _error(again, 401)["code"] == "bad_signature"
    assert len(env.model.requests) == calls + 1


def test_a_webhook_needs_a_valid_delivery_id(env: Env) -> None:
    body = {"session_id": "wh-3", "user_id": "frank", "text": "hi"}
    raw = json.dumps(body).encode()
    signature = sign(env.webhook_secret, raw, int(time.time()), delivery_id="d-ok")
    for headers in ({SIGNATURE_HEADER: signature}, {SIGNATURE_HEADER: signature, DELIVERY_HEADER: "x" * 201},
                    {SIGNATURE_HEADER: signature, DELIVERY_HEADER: "two words"}):
        response = httpx.post(f"{env.server.url}/v1/webhooks/acme", content=raw, headers=headers)
        assert _error(response, 422)["code"] == "invalid_request"


def test_a_tenant_over_its_rate_gets_429_and_others_do_not(env: Env) -> None:
    with env.client(env.keys["tiny-service"]) as tiny, env.client(env.keys["globex-service"]) as globex:
        _new_session(tiny, "rl-1", user_id="u1")
        _new_session(globex, "rl-1", user_id="u1")
        statuses = [tiny.post("/v1/sessions/rl-1/messages", json={"text": f"m{i}"}) for i in range(5)]
        assert [r.status_code for r in statuses] == [200, 200, 200, 429, 429]
        assert int(statuses[3].headers["Retry-After"]) >= 1
        assert _error(statuses[3], 429)["code"] == "rate_limited"
        assert all(globex.post("/v1/sessions/rl-1/messages", json={"text": "x"}).status_code == 200
                   for _ in range(5))


def test_a_service_key_draws_on_each_customers_own_bucket(env: Env) -> None:
    with env.client(env.keys["peruser-service"]) as backend:
        for user in ("u1", "u2"):
            _new_session(backend, f"pu-{user}", user_id=user)
        first = [backend.post("/v1/sessions/pu-u1/messages", json={"text": "x"}).status_code for _ in range(3)]
        assert first == [200, 200, 429]
        assert [backend.post("/v1/sessions/pu-u2/messages", json={"text": "x"}).status_code
                for _ in range(2)] == [200, 200]


def test_bad_input_gets_clear_json_errors(env: Env) -> None:
    with env.client(env.keys["acme-service"]) as client:
        assert _error(client.post("/v1/sessions", json={"session_id": "bad id!"}), 422)["code"] == "invalid_request"
        _new_session(client, "dup-1", user_id="x")
        assert _error(client.post("/v1/sessions", json={"session_id": "dup-1"}), 409)["code"] == "conflict"
        assert _error(client.post("/v1/sessions/dup-1/messages", json={"text": ""}), 422)
        assert _error(client.post("/v1/sessions/dup-1/messages", content=b"{"), 422)
        assert _error(client.get("/v1/nowhere"), 404)["code"] == "not_found"
        assert _error(client.delete("/v1/sessions"), 405)["code"] == "method_not_allowed"


def test_health_readiness_openapi_and_demo_login(env: Env) -> None:
    assert httpx.get(f"{env.server.url}/healthz").json()["status"] == "ok"
    assert httpx.get(f"{env.server.url}/readyz").json()["status"] == "ready"
    spec = httpx.get(f"{env.server.url}/openapi.json").json()
    assert {"/v1/sessions", "/v1/sessions/{session_id}/messages", "/v1/webhooks/{tenant}"} <= set(spec["paths"])
    login = httpx.post(f"{env.server.url}/v1/demo/login").json()  # a fresh demo customer, never a chosen one
    with env.client(login["token"]) as visitor:
        me = visitor.get("/v1/me").json()
        assert me["user_id"] == login["user_id"] and me["user_id"].startswith("demo-") and me["role"] == "customer"


def test_ending_a_conversation_remembers_the_customer_for_the_next_one(env: Env) -> None:
    token = env.user("acme", "mem-user")
    with env.client(token) as client:
        _new_session(client, "mem-1")
        assert client.post("/v1/sessions/mem-1/messages", json={"text": "Please contact me by email"}).status_code == 200
        ended = client.post("/v1/sessions/mem-1/end")
        assert ended.status_code == 200, ended.text
        assert ended.json()["remembered"] == 1
        _new_session(client, "mem-2")
        assert client.post("/v1/sessions/mem-2/messages", json={"text": "Hi again about my contact"}).status_code == 200
    system = message_text(env.model.requests[-1].messages[0])
    assert "contact_channel: email" in system  # recalled from mem-1 into the new conversation
    with env.client(env.keys["globex-service"]) as other:
        _error(other.post("/v1/sessions/mem-1/end"), 404)
