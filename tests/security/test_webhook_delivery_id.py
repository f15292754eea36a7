"""Row 5: the webhook delivery id was not covered by the signature, and a dead worker's claim was never retried.

Observed on the landed server: one body signed `"t." + body` and sent with `Concierge-Delivery`
d-1, d-2, d-3 ran three turns (each new id is a new delivery, and the id was not signed); a
delivery whose worker died stayed "processing" for good, every redelivery answering 409 without
saying when to retry. Now the signed string is `"t.<delivery id>." + body` (scheme `v2`), the
old string is refused unless the receiver opts in, and a claim older than the lease is taken
over by the next redelivery, which runs it once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from concierge import Agent, Runtime
from concierge.core.errors import ConfigError
from concierge.core.messages import Message, message_text
from concierge.runtime.sessions.sql import SqlSessionStore
from concierge.security.tenants import TenantDirectory
from concierge.serving.app import ServeOptions, create_app
from concierge.serving.ratelimit import InProcessRateLimiter
from concierge.serving.records import SessionDirectory
from concierge.serving.service import TurnService
from concierge.serving.webhooks import DeliveryLog, deliveries_table
from concierge.settings import ServeConfig
from concierge.testing import FunctionModel
from concierge.testing.serving import ServerThread


def reply(messages: Sequence[Message], tools: object) -> str:
    return f"You said: {message_text(messages[-1])}"


@dataclass
class Server:
    thread: ServerThread
    service: TurnService
    secret: str

    def deliver(self, body: bytes, delivery: str, signature: str) -> httpx.Response:
        headers = {"Concierge-Signature": signature, "Concierge-Delivery": delivery,
                   "Content-Type": "application/json"}
        return httpx.post(f"{self.thread.url}/v1/webhooks/acme", content=body, headers=headers, timeout=30)

    def turns(self, session_id: str) -> int:
        return len(self.thread.call(self.service.sessions.turns("acme", session_id)))


def _service(url: str) -> TurnService:
    runtime = Runtime(Agent(instructions="You help.", model=FunctionModel(reply)), store=SqlSessionStore(url))
    return TurnService(runtime, TenantDirectory(url), SessionDirectory(url), DeliveryLog(url), InProcessRateLimiter())


@contextmanager
def _running(url: str, options: Callable[[], ServeOptions], secret: str | None = None) -> Iterator[Server]:
    """A worker on the database at `url`; the first one creates the tenant `acme`."""
    made: dict[str, TurnService] = {}

    def make_app() -> FastAPI:
        made["service"] = _service(url)
        return create_app(made["service"], options())

    with ServerThread(make_app) as thread:
        if secret is None:
            secret = thread.call(made["service"].tenants.create_tenant("acme")).webhook_secret
        yield Server(thread, made["service"], secret)


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('webhook-delivery-id')}/serve.db"


@pytest.fixture(scope="module")
def server(url: str) -> Iterator[Server]:
    """A worker with the default settings."""
    with _running(url, ServeOptions) as running:
        yield running


def _v1(secret: str, body: bytes, t: int) -> str:
    """The old signature: HMAC-SHA256 of "t." + body, as senders computed it before."""
    return f"t={t},v1=" + hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def _v2(secret: str, body: bytes, t: int, delivery: str) -> str:
    """The documented signature: HMAC-SHA256 of "t.<delivery id>." + body."""
    signed = f"{t}.{delivery}.".encode() + body
    return f"t={t},v2=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def _migrating(secret: str, body: bytes, t: int, delivery: str) -> str:
    """Both schemes, as a sender being migrated signs: the receiver's settings pick which one counts."""
    return _v2(secret, body, t, delivery) + "," + _v1(secret, body, t).split(",")[1]


def _body(session_id: str) -> bytes:
    return json.dumps({"session_id": session_id, "user_id": "frank", "text": "refund me"}).encode()


def _error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    return response.json()["error"]


def test_a_body_signed_without_the_delivery_id_is_refused_under_any_id(server: Server) -> None:
    """The probe as observed: one v1-signed body, three delivery ids, three turns."""
    body = _body("wh-replay-v1")
    signature = _v1(server.secret, body, int(time.time()))
    answers = [server.deliver(body, delivery, signature) for delivery in ("d-1", "d-2", "d-3")]
    assert [a.status_code for a in answers] == [401, 401, 401], [a.text for a in answers]
    assert all(a.json()["error"]["code"] == "bad_signature" for a in answers)
    assert server.turns("wh-replay-v1") == 0


def test_a_signed_delivery_replayed_under_new_ids_runs_no_turn(server: Server) -> None:
    body = _body("wh-replay-v2")
    signature = _v2(server.secret, body, int(time.time()), "r-1")
    first = server.deliver(body, "r-1", signature)
    assert first.status_code == 200, first.text
    assert first.json()["duplicate"] is False
    for other in ("r-2", "r-3"):
        assert _error(server.deliver(body, other, signature), 401)["code"] == "bad_signature"
    assert server.deliver(body, "r-1", signature).json()["duplicate"] is True  # the real redelivery
    assert server.turns("wh-replay-v2") == 1


def test_the_legacy_signature_is_accepted_only_with_the_setting(server: Server, url: str) -> None:
    body, t = _body("wh-legacy"), int(time.time())
    refused = _error(server.deliver(body, "l-1", _v1(server.secret, body, t)), 401)
    assert "v1" in refused["message"]
    assert ServeConfig().webhook_accept_legacy_signatures is False
    # A second worker on the same database, set up for senders being migrated.
    with _running(url, lambda: ServeOptions(webhook_accept_legacy_signatures=True), server.secret) as legacy:
        accepted = legacy.deliver(body, "l-1", _v1(legacy.secret, body, t))
        assert accepted.status_code == 200 and accepted.json()["duplicate"] is False, accepted.text
        assert legacy.turns("wh-legacy") == 1
        # It takes v2 too, and a wrong v1 signature stays a 401 there.
        assert legacy.deliver(body, "l-2", _v2(legacy.secret, body, t, "l-2")).status_code == 200
        assert _error(legacy.deliver(body, "l-3", _v1("not-the-secret", body, t)), 401)["code"] == "bad_signature"


def _claim_dead(server: Server, delivery: str, age: timedelta) -> None:
    """A worker claimed `delivery` `age` ago and died before finishing or releasing it."""
    deliveries = server.service.deliveries

    async def claim() -> None:
        assert (await deliveries.claim("acme", delivery)).first
        async with deliveries.engine.begin() as conn:
            await conn.execute(update(deliveries_table).where(deliveries_table.c.delivery_id == delivery)
                               .values(received_at=datetime.now(UTC) - age))

    server.thread.call(claim())


def test_a_claim_older_than_the_lease_is_taken_over_and_runs_once(server: Server) -> None:
    body = _body("wh-stale")
    _claim_dead(server, "s-1", timedelta(seconds=905))  # the default lease is 900 s
    signature = _migrating(server.secret, body, int(time.time()), "s-1")
    taken = server.deliver(body, "s-1", signature)
    assert taken.status_code == 200, taken.text
    assert taken.json()["duplicate"] is False
    again = server.deliver(body, "s-1", signature)
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert server.turns("wh-stale") == 1


def test_a_fresh_claim_answers_409_with_retry_after(server: Server) -> None:
    body = _body("wh-busy")
    _claim_dead(server, "b-1", timedelta(seconds=0))
    busy = server.deliver(body, "b-1", _migrating(server.secret, body, int(time.time()), "b-1"))
    assert _error(busy, 409)["code"] == "in_progress"
    assert 1 <= int(busy.headers.get("Retry-After", "0")) <= 30, busy.headers
    assert server.turns("wh-busy") == 0


def test_a_lease_shorter_than_a_turn_is_a_config_error(tmp_path: Path) -> None:
    assert ServeConfig().webhook_lease_s == 900
    service = _service(f"sqlite+aiosqlite:///{tmp_path}/x.db")
    with pytest.raises(ConfigError, match="webhook_lease_s"):
        create_app(service, ServeOptions(webhook_lease_s=60))
