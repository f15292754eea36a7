"""Row 4 and row 12 (frames): bad WebSocket frames, and one bad event that stopped the audit pipeline.

Observed on the landed server: `{"type": "message", "text": "\\ud800"}` (a lone surrogate, which
REST refuses with 422) was taken as a message; the connection dropped without a close frame, the
event producer's flusher died on the event it could not serialise, and from then on every
`GET /v1/sessions/{id}/audit` answered 500 while `/readyz` still said 200. Binary frames and JSON
nested 100,000 deep dropped the connection too (a `KeyError`, a `RecursionError`).

Now a frame is validated with the REST body models (an error frame, the connection stays
usable), binary frames close with 1003, frames over the limit with 1009, the producer
dead-letters an event it cannot append and keeps flushing, and a flusher that stops anyway is
reported by `/readyz` and the audit route as 503.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from concierge import Agent, Runtime
from concierge.core.events import AgentEvent, EventType
from concierge.core.messages import Message, message_text
from concierge.events.log import EmbeddedLog
from concierge.events.producer import EventProducer
from concierge.runtime.sessions.sql import SqlSessionStore
from concierge.security.auth import issue_jwt
from concierge.security.tenants import TenantDirectory
from concierge.serving.app import ServeOptions, create_app
from concierge.serving.ratelimit import InProcessRateLimiter
from concierge.serving.records import SessionDirectory
from concierge.serving.server import attach_audit
from concierge.serving.service import TurnService
from concierge.serving.webhooks import DeliveryLog
from concierge.testing import FunctionModel
from concierge.testing.serving import ServerThread

LONE_SURROGATE = '{"type": "message", "text": "\\ud800"}'  # JSON text: the escape, not the code point


def reply(messages: Sequence[Message], tools: object) -> str:
    return f"You said: {message_text(messages[-1])}"


@dataclass
class Env:
    server: ServerThread
    producer: EventProducer
    operator: str
    customer: str

    @contextmanager
    def ws(self, session_id: str) -> Iterator[ClientConnection]:
        with connect(f"{self.server.ws_url}/v1/sessions/{session_id}/stream?token={self.customer}",
                     open_timeout=10, close_timeout=5, max_size=None) as socket:
            assert json.loads(socket.recv(10))["type"] == "ready"
            yield socket

    def get(self, path: str, token: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.get(f"{self.server.url}{path}", headers=headers, timeout=30)

    def post(self, path: str, body: object, token: str) -> httpx.Response:
        return httpx.post(f"{self.server.url}{path}", json=body, timeout=30,
                          headers={"Authorization": f"Bearer {token}"})


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    folder: Path = tmp_path_factory.mktemp("ws-frames")
    url = f"sqlite+aiosqlite:///{folder}/serve.db"
    made: dict[str, Any] = {}

    def make_app():  # a FastAPI app
        producer = EventProducer(EmbeddedLog(folder / "events.db", partitions=2), flush_interval_s=0.01)
        runtime = Runtime(Agent(instructions="You help.", model=FunctionModel(reply)), store=SqlSessionStore(url),
                          events=producer)
        service = TurnService(runtime, TenantDirectory(url), SessionDirectory(url), DeliveryLog(url),
                              InProcessRateLimiter())
        made["index"] = attach_audit(service, producer, f"sqlite+aiosqlite:///{folder}/audit.db")
        made["service"], made["producer"] = service, producer
        async def shutdown() -> None:
            await producer.close()
            await producer.log.close()

        return create_app(service, ServeOptions(), startup=producer.start, shutdown=shutdown)

    with ServerThread(make_app) as server:
        tenants = made["service"].tenants

        async def setup() -> tuple[str, str]:
            acme = await tenants.create_tenant("acme", rate=(100.0, 200), user_rate=(100.0, 200))
            return await tenants.issue_key("acme", "operator", "console"), issue_jwt(acme.jwt_config, subject="ann")

        operator, customer = server.call(setup())
        yield Env(server, made["producer"], operator, customer)
        server.call(made["index"].close())


def _session(env: Env, session_id: str) -> None:
    response = env.post("/v1/sessions", {"session_id": session_id}, env.customer)
    assert response.status_code == 201, response.text


def _error(socket: ClientConnection) -> dict[str, Any]:
    frame = json.loads(socket.recv(10))
    assert frame["type"] == "error", frame
    return frame


def _turn(socket: ClientConnection, text: str) -> dict[str, Any]:
    socket.send(json.dumps({"type": "message", "text": text}))
    while True:
        frame = json.loads(socket.recv(10))
        assert frame["type"] != "error", frame
        if frame["type"] == "turn_finished":
            return frame


def test_a_lone_surrogate_gets_the_rest_answer_and_the_audit_trail_keeps_working(env: Env) -> None:
    _session(env, "surrogate")
    rest = httpx.post(f"{env.server.url}/v1/sessions/surrogate/messages", content=LONE_SURROGATE.encode(),
                      headers={"Authorization": f"Bearer {env.customer}", "Content-Type": "application/json"})
    assert rest.status_code == 422 and rest.json()["error"]["code"] == "invalid_request"
    with env.ws("surrogate") as socket:
        socket.send(LONE_SURROGATE)
        frame = _error(socket)
        assert frame["status"] == 422 and frame["error"]["code"] == "invalid_request"
        # validated exactly like REST: the same problem, REST's at "body.text", the frame's at "text"
        assert rest.json()["error"]["message"] == "body." + frame["error"]["message"]
        assert _turn(socket, "still there?")["reply"] == "You said: still there?"  # the connection is usable
    audit = env.get("/v1/sessions/surrogate/audit", env.operator)
    assert audit.status_code == 200, audit.text
    assert env.get("/readyz").status_code == 200


@pytest.mark.parametrize(("frame", "problem"), [
    ("not json", "not JSON"),
    ('{"type": "message"}', "text: Field required"),
    ('{"type": "message", "text": ""}', "text: String should have at least 1 character"),
    ('{"type": "shout", "text": "hi"}', "does not match any of the expected tags"),
    ('{"type": "confirm"}', "action_id: Field required"),
    ('{"type": "message", "text": "hi", "extra": 1}', "extra: Extra inputs are not permitted"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('{"type": "message", "text": ' + "[" * 50_000 + "]" * 50_000 + "}", "nested too deeply"),
])
def test_an_invalid_frame_gets_an_error_frame_and_the_connection_stays_usable(env: Env, frame: str,
                                                                              problem: str) -> None:
    session_id = "bad-" + hashlib.sha256(frame.encode()).hexdigest()[:12]
    _session(env, session_id)
    with env.ws(session_id) as socket:
        socket.send(frame)
        error = _error(socket)
        assert error["status"] == 422 and error["error"]["code"] == "invalid_request"
        assert problem in error["error"]["message"], error
        assert _turn(socket, "hello")["reply"] == "You said: hello"


def test_deep_json_in_a_rest_body_is_a_4xx_with_the_error_body(env: Env) -> None:
    _session(env, "deep")
    for body in ("[" * 100_000 + "]" * 100_000, '{"text": ' + "[" * 100_000 + "]" * 100_000 + "}"):
        response = httpx.post(f"{env.server.url}/v1/sessions/deep/messages", content=body.encode(), timeout=30,
                              headers={"Authorization": f"Bearer {env.customer}", "Content-Type": "application/json"})
        assert 400 <= response.status_code < 500 and response.json()["error"]["code"], response.text


def test_a_binary_frame_closes_with_1003(env: Env) -> None:
    _session(env, "binary")
    with env.ws("binary") as socket:
        socket.send(b'{"type": "message", "text": "hi"}')
        assert _error(socket)["error"]["code"] == "unsupported_media_type"
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1003


def test_a_frame_over_the_limit_closes_with_1009(env: Env) -> None:
    _session(env, "big")
    with env.ws("big") as socket:
        socket.send(json.dumps({"type": "message", "text": "x" * (256 * 1024)}))  # the default limit: 256 KiB
        assert _error(socket)["error"]["code"] == "too_large"
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    with env.ws("big") as socket:  # just under the limit is a message (and a REST 422 for length)
        socket.send(json.dumps({"type": "message", "text": "x" * 40_000}))
        assert _error(socket)["error"]["message"] == "text: String should have at most 32000 characters"


async def test_the_producer_dead_letters_an_event_it_cannot_serialise_and_keeps_flushing(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path / "events.db", partitions=2)
    producer = EventProducer(log, batch_size=10, flush_interval_s=0.01)
    good = [AgentEvent(type=EventType.MESSAGE_RECEIVED, tenant="acme", conversation_id="acme:c1", payload={"n": i})
            for i in range(3)]
    bad = AgentEvent(type=EventType.RESPONSE_SENT, tenant="acme", conversation_id="acme:c1", turn=1,
                     payload={"text": "\ud800"})
    for event in (good[0], bad, good[1]):
        assert await producer.emit(event)
    await asyncio.wait_for(producer.flush(), 10)
    assert await producer.emit(good[2])  # the flusher is still there
    await asyncio.wait_for(producer.flush(), 10)
    stored = [AgentEvent.from_json(r.data) for p in range(2) for r in await log.read(p, 0, 100)]
    assert {e.event_id for e in good} <= {e.event_id for e in stored}  # its batch-mates were appended
    [stand_in] = [e for e in stored if e.type == EventType.ERROR]
    assert stand_in.payload["error"] == "event_dead_lettered" and stand_in.payload["event_id"] == bad.event_id
    assert (stand_in.conversation_id, stand_in.turn) == ("acme:c1", 1)
    [letter] = producer.dead_letters()
    assert letter.event is bad and "cannot be serialised" in letter.reason
    stats = producer.stats()
    assert stats.dead_lettered == {"response_sent": 1}
    assert producer.failure is None
    await producer.close()
    await log.close()


def test_a_stopped_flusher_makes_readyz_and_the_audit_route_say_503(env: Env) -> None:
    _session(env, "last")  # runs last in this module: it stops the shared server's flusher
    with env.ws("last") as socket:
        _turn(socket, "before")
    assert env.get("/v1/sessions/last/audit", env.operator).status_code == 200

    async def stop_the_flusher() -> None:
        task = env.producer._task  # what a crash inside the flusher leaves behind
        assert task is not None
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    env.server.call(stop_the_flusher())
    with env.ws("last") as socket:
        _turn(socket, "after")  # its events cannot reach the log any more
    ready = env.get("/readyz")
    assert ready.status_code == 503 and ready.json()["error"]["code"] == "events_unavailable", ready.text
    audit = env.get("/v1/sessions/last/audit", env.operator)
    assert audit.status_code == 503 and audit.json()["error"]["code"] == "events_unavailable", audit.text
