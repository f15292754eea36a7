"""Row 2 of the serving threat model (and the `--no-demo` item of row 12): demo sign-in.

Observed on the server as it shipped, with demo sign-in on by default: `POST /v1/demo/login`
without any credential minted an **operator** token for the demo tenant (body
`{"role": "operator"}`), which listed and read every demo session, or a customer token for any
existing user id (`{"user_id": "alice"}`), which read that customer's session. With `--no-demo`
the same call answered 422 `unknown tenant ''` instead of the documented 404.

Now demo sign-in issues customer tokens for a fresh random user id only; the operator console
needs the one-time token `concierge serve` prints at start-up (good once, on any worker); demo
sign-in refuses a non-loopback host unless `--demo-public`; and off means 404 "demo sign-in is off".
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from concierge import Agent, Runtime
from concierge.cli import app as cli_app
from concierge.core.errors import ConfigError
from concierge.core.messages import Message, message_text
from concierge.runtime.sessions.sql import SqlSessionStore
from concierge.security.auth import issue_jwt
from concierge.security.tenants import TenantDirectory
from concierge.serving.app import ServeOptions, create_app
from concierge.serving.ratelimit import InProcessRateLimiter
from concierge.serving.records import SessionDirectory
from concierge.serving.server import build_app
from concierge.serving.service import TurnService
from concierge.serving.webhooks import DeliveryLog
from concierge.settings import load_settings
from concierge.testing import FunctionModel
from concierge.testing.serving import ServerThread

CONSOLE_TOKEN = "console-token-for-tests-0123456789abcdef"
DEMO_ID = re.compile(r"^demo-[0-9a-f]{16}$")


def echo(messages: Sequence[Message], tools: object) -> str:
    return f"You said: {message_text(messages[-1])}"


def _server(url: str, options: ServeOptions) -> tuple[ServerThread, dict[str, TurnService]]:
    holder: dict[str, TurnService] = {}

    def make_app() -> Any:
        agent = Agent(instructions="You help.", model=FunctionModel(echo))
        runtime = Runtime(agent, store=SqlSessionStore(url))
        service = TurnService(runtime, TenantDirectory(url), SessionDirectory(url), DeliveryLog(url),
                              InProcessRateLimiter())
        holder["service"] = service
        return create_app(service, options)

    return ServerThread(make_app), holder


@dataclass
class Site:
    url: str
    db: str
    alice: str  # a customer of the demo tenant with a session, "alice-1"

    def login(self, **kwargs: Any) -> httpx.Response:
        return httpx.post(f"{self.url}/v1/demo/login", timeout=30, **kwargs)

    def client(self, token: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    db = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('demo')}/serve.db"
    server, holder = _server(db, ServeOptions(demo_tenant="demo"))
    with server:
        demo = server.call(holder["service"].tenants.create_tenant("demo", rate=(1000.0, 1000),
                                                                    user_rate=(1000.0, 1000)))
        alice = issue_jwt(demo.jwt_config, subject="alice")
        found = Site(server.url, db, alice)
        with found.client(alice) as client:
            assert client.post("/v1/sessions", json={"session_id": "alice-1"}).status_code == 201
            said = client.post("/v1/sessions/alice-1/messages", json={"text": "my address is…"})
            assert said.status_code == 200, said.text
        yield found


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    return dict(response.json()["error"])


def test_sign_in_without_a_body_gives_a_fresh_customer_every_time(site: Site) -> None:
    first, second = site.login(), site.login(json={})
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    ids = [first.json()["user_id"], second.json()["user_id"]]
    assert all(DEMO_ID.match(i) for i in ids) and ids[0] != ids[1], ids
    for login in (first, second):
        assert login.json()["role"] == "customer" and login.json()["tenant"] == "demo"
        with site.client(login.json()["token"]) as client:
            me = client.get("/v1/me").json()
        assert (me["user_id"], me["role"]) == (login.json()["user_id"], "customer")
        assert "sessions:read" not in me["scopes"]


@pytest.mark.parametrize("body", [{"role": "operator"}, {"role": "admin"}, {"user_id": "alice"},
                                  {"user_id": "alice", "role": "customer"}])
def test_choosing_a_role_or_a_user_id_is_refused(site: Site, body: dict[str, str]) -> None:
    response = site.login(json=body)
    error = _error(response, 422)
    assert error["code"] == "invalid_request" and next(iter(body)) in error["message"]
    assert "token" not in response.json()


def test_a_demo_customer_cannot_list_or_read_other_sessions(site: Site) -> None:
    with site.client(site.login().json()["token"]) as visitor:
        assert visitor.get("/v1/sessions").json()["sessions"] == []
        assert _error(visitor.get("/v1/sessions/alice-1"), 403)["code"] == "forbidden"
        _error(visitor.post("/v1/sessions/alice-1/messages", json={"text": "hi"}), 403)
        assert visitor.post("/v1/sessions", json={"session_id": "mine-1"}).status_code == 201
        assert [s["session_id"] for s in visitor.get("/v1/sessions").json()["sessions"]] == ["mine-1"]
    with site.client(site.alice) as alice:
        assert {s["session_id"] for s in alice.get("/v1/sessions").json()["sessions"]} == {"alice-1"}


@pytest.fixture
def two_workers(site: Site) -> Iterator[tuple[str, str]]:
    """Two more server processes' worth of app on the demo site's database, each given the same
    console token (as `concierge serve` gives every worker through the environment)."""
    options = ServeOptions(demo_tenant="demo", console_token=CONSOLE_TOKEN)
    (a, _), (b, _) = _server(site.db, options), _server(site.db, options)
    with a, b:
        yield a.url, b.url


def test_the_console_token_signs_an_operator_in_once_on_any_worker(site: Site,
                                                                   two_workers: tuple[str, str]) -> None:
    a, b = two_workers

    def exchange(url: str, token: str) -> httpx.Response:
        return httpx.post(f"{url}/v1/demo/console-login", json={"token": token}, timeout=30)

    wrong = _error(exchange(a, CONSOLE_TOKEN[:-1] + "x"), 401)
    assert wrong["message"] == "invalid console token"
    first = exchange(a, CONSOLE_TOKEN)  # a wrong guess did not use it up
    assert first.status_code == 200, first.text
    assert first.json()["role"] == "operator"
    with httpx.Client(base_url=b, headers={"Authorization": f"Bearer {first.json()['token']}"}) as operator:
        assert operator.get("/v1/me").json()["role"] == "operator"
        assert "alice-1" in {s["session_id"] for s in operator.get("/v1/sessions").json()["sessions"]}
        _error(operator.post("/v1/sessions/alice-1/messages", json={"text": "hi"}), 403)  # read-only
    for url in (a, b):
        again = _error(exchange(url, CONSOLE_TOKEN), 401)
        assert again["message"] == "this console token was already used"
    _error(httpx.post(f"{a}/v1/demo/console-login", json={}, timeout=30), 422)


def test_demo_sign_in_on_a_non_loopback_host_needs_the_explicit_flag(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    public = load_settings(serve={"host": "0.0.0.0"}, sessions={"url": f"sqlite+aiosqlite:///{tmp_path}/s.db"})
    with pytest.raises(ConfigError, match="not a loopback address") as refused:
        public.serve.check_demo_exposure()
    assert "\n" not in str(refused.value) and "--demo-public" in str(refused.value)
    with pytest.raises(ConfigError, match="not a loopback address"):
        build_app(public)
    for serve in ({"host": "0.0.0.0", "demo_public": True}, {"host": "0.0.0.0", "demo_tenant": ""},
                  {"host": "127.0.0.2"}, {"host": "localhost"}, {"host": "::1"}):
        load_settings(serve=serve).serve.check_demo_exposure()
    # the command refuses before it starts anything (with two workers and no Redis it could not
    # start either, so a missing check fails here on another message instead of serving)
    for name in ("HOST", "WORKERS", "CONSOLE_TOKEN", "DEMO_PUBLIC", "DEMO_TENANT"):
        monkeypatch.setenv(f"CONCIERGE_SERVE__{name}", "")  # restored after the test
        monkeypatch.delenv(f"CONCIERGE_SERVE__{name}")
    result = CliRunner().invoke(cli_app, ["serve", "--host", "0.0.0.0", "--workers", "2"])
    assert result.exit_code == 2 and "not a loopback address" in result.output, result.output


def test_with_demo_off_both_sign_ins_are_404_with_the_documented_message(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONCIERGE_SERVE__DEMO_TENANT", "")  # what `concierge serve --no-demo` sets
    assert load_settings().serve.demo_tenant is None
    server, _ = _server(f"sqlite+aiosqlite:///{tmp_path}/off.db", ServeOptions(demo_tenant=""))
    with server:
        for path, body in (("/v1/demo/login", None), ("/v1/demo/console-login", {"token": CONSOLE_TOKEN})):
            response = httpx.post(f"{server.url}{path}", json=body, timeout=30)
            assert response.status_code == 404, response.text
            assert response.json() == {"error": {"code": "not_found", "message": "demo sign-in is off",
                                                 "hint": "start the server with --demo"}}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(what: str, found: Callable[[], str | None], process: subprocess.Popen[bytes], log: Path) -> str:
    deadline = time.monotonic() + 60
    while (value := found()) is None:
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"no {what}; `concierge serve` said:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.05)
    return value


def test_serve_prints_a_console_link_whose_token_signs_in_once(tmp_path: Path) -> None:
    port, log = _free_port(), tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONCIERGE_")}
    env.update(CONCIERGE_SESSIONS__URL=f"sqlite+aiosqlite:///{tmp_path}/serve.db",
               CONCIERGE_EVENTS__BUS="off", CONCIERGE_GUARDRAILS__ENABLED="false",
               CONCIERGE_MEMORY__ENABLED="false", PYTHONUNBUFFERED="1")
    command = [sys.executable, "-c", "from concierge.cli import main; main()", "serve",
               "--test-model", "echo", "--port", str(port)]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    try:
        pattern = re.compile(rf"console\s+http://127\.0\.0\.1:{port}/console\?token=([A-Za-z0-9_-]{{32,}})")

        def printed() -> str | None:
            match = pattern.search(log.read_text(errors="replace"))
            return match.group(1) if match else None

        def ready() -> str | None:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                return "ok" if answer.status_code == 200 else None
            except httpx.HTTPError:
                return None

        token = _wait_for("console link", printed, process, log)
        _wait_for("ready server", ready, process, log)
        url = f"http://127.0.0.1:{port}/v1/demo/console-login"
        first = httpx.post(url, json={"token": token}, timeout=30)
        assert first.status_code == 200 and first.json()["role"] == "operator", first.text
        assert httpx.post(url, json={"token": token}, timeout=30).status_code == 401
    finally:
        process.terminate()
        process.wait(20)
